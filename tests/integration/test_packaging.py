"""Packaging: `python -m build` makes an sdist and a wheel; the wheel, installed into a fresh venv
without torch (by the GitHub Action's install step, see conftest.action_install), scans, reports
its version, runs as a console script and as `python -m fp8doctor`, and completes in the shell.
One place for the version; the changelog and the README's install lines stay in step with it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser

import pytest

from fp8doctor import __version__
from fp8doctor.testing import synth
from tests.helpers.ci_helpers import break_padding

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from tests.helpers.repo import ROOT


def pyproject() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        return tomllib.load(fh)


def venv_python(install) -> str:
    return os.path.join(os.path.dirname(install.outputs["bin"]), "python")


def run(argv, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(argv, capture_output=True, text=True, env={**env, "NO_COLOR": "1", **kw.pop("env", {})},
                          cwd=kw.pop("cwd", "/"), timeout=300, **kw)


def test_the_version_lives_in_one_place():
    project = pyproject()["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert pyproject()["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "fp8doctor.__version__"}
    changelog = open(os.path.join(ROOT, "CHANGELOG.md")).read()
    assert f"## [{__version__}]" in changelog and "## [Unreleased]" in changelog
    assert "keepachangelog.com" in changelog


def test_sdist_and_wheel_hold_the_package_and_its_metadata(dist):
    sdist, wheel = dist
    assert os.path.basename(wheel) == f"fp8doctor-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = Parser().parsestr(z.read(f"fp8doctor-{__version__}.dist-info/METADATA").decode())
        entry_points = z.read(f"fp8doctor-{__version__}.dist-info/entry_points.txt").decode()
    assert "fp8doctor/__init__.py" in names and "fp8doctor/py.typed" in names and "fp8doctor/cli/app.py" in names
    assert not any(n.startswith(("tests/", "scripts/", "benchmarks/")) for n in names)
    assert meta["Version"] == __version__ and meta["Requires-Python"] == ">=3.10"
    assert set(meta.get_all("Provides-Extra")) >= {"verify", "remote"}
    requires = meta.get_all("Requires-Dist")
    torch = [r for r in requires if r.startswith("torch")]
    assert torch and all("extra ==" in r for r in torch)  # torch only through an extra
    assert any(c.startswith("Programming Language :: Python :: 3.11") for c in meta.get_all("Classifier"))
    assert any(u.startswith("Changelog, ") for u in meta.get_all("Project-URL"))
    assert "fp8doctor = fp8doctor.cli.app:main" in entry_points
    with tarfile.open(sdist) as t:
        members = {m.split("/", 1)[1] for m in t.getnames() if "/" in m}
    assert {"pyproject.toml", "README.md", "CHANGELOG.md", "docs/scan.md", "docs/reports.md", "fp8doctor/__init__.py",
            "fp8doctor/py.typed"} <= members


def test_the_wheel_runs_in_a_fresh_venv_without_torch(action_install, tmp_path):
    exe, python = action_install.outputs["bin"], venv_python(action_install)
    assert run([python, "-c", "import torch"]).returncode != 0  # the wheel's dependencies never bring torch
    assert run([exe, "--version"]).stdout == f"fp8doctor {__version__}\n"
    assert run([python, "-m", "fp8doctor", "--version"]).stdout == f"fp8doctor {__version__}\n"
    ckpt = tmp_path / "ck"
    synth.deepseek_v4(str(ckpt))
    assert run([exe, "scan", str(ckpt)]).returncode == 0
    break_padding(str(ckpt))
    r = run([exe, "scan", str(ckpt), "--format", "json"])
    assert r.returncode == 1 and json.loads(r.stdout)["summary"]["errors"] == 9
    r = run([python, "-m", "fp8doctor", "scan", str(ckpt), "-f", "sarif"])
    assert r.returncode == 1 and json.loads(r.stdout)["runs"][0]["tool"]["driver"]["version"] == __version__
    # verify needs torch: without it, one line naming the extra and exit 2, never a traceback
    r = run([exe, "verify", str(ckpt), "--layer", "0"])
    assert r.returncode == 2 and "Traceback" not in r.stderr and "fp8doctor[verify]" in r.stderr, r.stderr


def test_shell_completion_is_installed_with_the_console_script(action_install):
    exe = action_install.outputs["bin"]
    script = run([exe, "--show-completion", "bash"])
    assert script.returncode == 0 and "_FP8DOCTOR_COMPLETE=complete_bash" in script.stdout
    assert "complete -o default -F _fp8doctor_completion fp8doctor" in script.stdout

    def complete(words: str) -> list[str]:
        env = {"_FP8DOCTOR_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
        r = run([exe], env=env)
        assert r.returncode == 0, r.stderr
        return r.stdout.split()

    assert complete("fp8doctor sc") == ["scan"]
    assert "--format" in complete("fp8doctor scan --fo")
    assert complete("fp8doctor scan --format ja") == []
    assert set(complete("fp8doctor scan --format s")) == {"sarif"}


@pytest.mark.parametrize("line", ["pip install fp8doctor", "pipx install fp8doctor", "uv tool install fp8doctor",
                                  "pip install 'fp8doctor[verify]'", "pip install 'fp8doctor[remote]'",
                                  "fp8doctor --install-completion"])
def test_readme_install_lines(line):
    assert line in open(os.path.join(ROOT, "README.md")).read()


def test_readme_documents_every_extra():
    readme = open(os.path.join(ROOT, "README.md")).read()
    install = readme[readme.index("## Install"):]
    install = install[:install.index("\n## ", 4)]
    for extra in pyproject()["project"]["optional-dependencies"]:
        if extra != "dev":
            assert re.search(rf"`{extra}`|\[{extra}\]", install), extra
