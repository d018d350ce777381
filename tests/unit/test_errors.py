"""Unit tests of fp8doctor/errors.py: the exit-code table agrees with the documented one (docs/scan.md
and each command's page, "Exit codes"), every error class fp8doctor defines for a one-line refusal
derives from Fp8DoctorError and maps to the documented code, and the module imports nothing."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import pkgutil
import re
import subprocess
import sys

import pytest

import fp8doctor
from fp8doctor import errors
from fp8doctor.errors import EXIT_CODES, EXIT_ERROR, EXIT_FINDINGS, EXIT_INTERRUPTED, EXIT_OK, Fp8DoctorError
from tests.helpers.repo import repo_path

NOT_ONE_LINE_ERRORS = {
    "fp8doctor.checkpoint.source.ReadError": "an OSError for a short read: callers turn it into a finding",
    "fp8doctor.checkpoint.paths.PathEscape": "an OSError for a path leaving the checkpoint: fix refuses with FixError",
    "fp8doctor.runtime.tensors.UnsupportedTensor": "a TypeError: the caller passed something that is no tensor",
    "fp8doctor.interrupt.Cancelled": "control flow: tells worker threads to stop after Ctrl-C",
    "fp8doctor.cli.app.Interrupted": "control flow: Ctrl-C, which exits 130 with 'interrupted'",
}
"""Exception classes of fp8doctor that are not its one-line errors, and why (private `_X` ones are skipped)."""

DOCUMENTED = {  # the errors the docs name, and the module each is defined in
    "CheckpointError": "fp8doctor.errors", "VerifyError": "fp8doctor.errors", "DumpError": "fp8doctor.dumper",
    "FixError": "fp8doctor.repair.errors", "BaselineError": "fp8doctor.baseline",
    "ConfigError": "fp8doctor.config_file",
}


def _exception_classes() -> dict[str, type[BaseException]]:
    """Every public exception class defined in an fp8doctor module: the modules that define a class
    with a base are imported (the others, torch's reference modules among them, cannot define one)."""
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(fp8doctor.__path__, "fp8doctor."):
        if info.name.endswith("__main__"):
            continue
        spec = importlib.util.find_spec(info.name)
        tree = ast.parse(open(spec.origin, encoding="utf-8").read())
        if not any(isinstance(n, ast.ClassDef) and n.bases for n in ast.walk(tree)):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == info.name
                    and not name.startswith("_")):
                found[f"{info.name}.{name}"] = obj
    return found


def test_the_exit_code_table():
    assert (EXIT_OK, EXIT_FINDINGS, EXIT_ERROR, EXIT_INTERRUPTED) == (0, 1, 2, 130)
    assert list(EXIT_CODES) == [0, 1, 2, 130]
    assert all(isinstance(text, str) and text for text in EXIT_CODES.values())
    assert "clean" in EXIT_CODES[0] and "findings" in EXIT_CODES[1] and "could not run" in EXIT_CODES[2]
    assert Fp8DoctorError.exit_code == EXIT_ERROR


def _doc_table(page: str) -> dict[int, list[str]]:
    """code -> the cells of its row in the page's "## Exit codes" table."""
    text = open(repo_path("docs", page), encoding="utf-8").read()
    section = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"^\| (\d+) \|(.*)\|\s*$", line)
        if m:
            rows[int(m.group(1))] = [c.strip() for c in m.group(2).split("|")]
    return rows


@pytest.mark.parametrize("page", ["scan.md", "fix.md", "dump.md", "verify.md"])
def test_each_documented_exit_code_is_in_the_table(page):
    rows = _doc_table(page)
    assert rows and set(rows) <= set(EXIT_CODES), page
    assert EXIT_OK in rows and EXIT_ERROR in rows  # every command can succeed and can refuse
    assert any("could not" in cell for cell in rows[EXIT_ERROR]), page


def test_scan_md_gives_every_command_the_same_three_codes():
    rows = _doc_table("scan.md")
    assert sorted(rows) == sorted(EXIT_CODES)
    assert len({len(cells) for cells in rows.values()}) == 1  # a cell per command in every row


def test_every_public_error_class_derives_from_the_base():
    classes = _exception_classes()
    assert set(NOT_ONE_LINE_ERRORS) <= set(classes), "an allow-listed class moved or is gone: update the list"
    loose = sorted(name for name, cls in classes.items()
                   if not issubclass(cls, Fp8DoctorError) and name not in NOT_ONE_LINE_ERRORS)
    assert not loose, f"error classes that do not derive from Fp8DoctorError: {loose}"
    ours = {name: cls for name, cls in classes.items() if issubclass(cls, Fp8DoctorError)}
    for name, cls in ours.items():
        assert cls.exit_code in EXIT_CODES, name
        assert cls.exit_code == EXIT_ERROR, name  # every one-line error is "could not run" (docs/python.md)
        assert cls.__doc__, f"{name} says when it is raised"
    for cls_name, module in DOCUMENTED.items():
        assert f"{module}.{cls_name}" in ours


def test_the_hierarchy():
    from fp8doctor.baseline import BaselineError
    from fp8doctor.checkpoint.hfcache import CacheLookupError
    from fp8doctor.checkpoint.loader import CheckpointError as loader_error
    from fp8doctor.checkpoint.model import CheckpointError as model_error
    from fp8doctor.checkpoint.remote.options import RangeNotSupported, RemoteError
    from fp8doctor.config_file import ConfigError
    from fp8doctor.dumper import DumpError
    from fp8doctor.repair.errors import DiskFull, FixError, JournalError, LockHeld, ReadOnly, ShardChanged

    assert loader_error is model_error is errors.CheckpointError is fp8doctor.CheckpointError  # one class
    assert fp8doctor.VerifyError is errors.VerifyError and fp8doctor.FixError is FixError
    assert fp8doctor.DumpError is DumpError
    for cls in (RemoteError, RangeNotSupported, CacheLookupError):
        assert issubclass(cls, errors.CheckpointError)
    for cls in (LockHeld, ShardChanged, ReadOnly, DiskFull, JournalError):
        assert issubclass(cls, FixError)
    for cls in (DumpError, BaselineError, ConfigError):  # also ValueErrors, for callers that catch those
        assert issubclass(cls, ValueError) and issubclass(cls, Fp8DoctorError)
    assert not issubclass(errors.CheckpointError, FixError) and not issubclass(FixError, errors.CheckpointError)
    e = LockHeld("another fix holds /x/.fp8doctor.lock")
    assert isinstance(e, Fp8DoctorError) and e.exit_code == EXIT_ERROR
    assert str(e) == "another fix holds /x/.fp8doctor.lock"
    assert set(errors.__all__) == {"EXIT_CODES", "EXIT_ERROR", "EXIT_FINDINGS", "EXIT_INTERRUPTED", "EXIT_OK",
                                   "CheckpointError",
                                   "Fp8DoctorError", "VerifyError"}


def test_errors_imports_nothing():
    tree = ast.parse(open(errors.__file__, encoding="utf-8").read())
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [(n.module, [a.name for a in n.names]) for n in imports if isinstance(n, ast.ImportFrom)] == [
        ("__future__", ["annotations"])]
    assert not [n for n in imports if isinstance(n, ast.Import)]
    out = subprocess.run([sys.executable, "-c", "import sys; import fp8doctor.errors as e; "
                          "print(sorted(m for m in ('numpy', 'torch', 'rich', 'typer') if m in sys.modules))"],
                         capture_output=True, text=True, check=True, cwd=repo_path())
    assert out.stdout.strip() == "[]"
