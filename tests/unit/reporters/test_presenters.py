"""reporters/presenters.py: one registry, one signature, for every command's result."""

from __future__ import annotations

import inspect

from fp8doctor.cli.dump import DumpFormat
from fp8doctor.cli.verify import VerifyFormat
from fp8doctor.reporters import FORMATS, RenderContext
from fp8doctor.reporters.presenters import PRESENTERS, present
from fp8doctor.scanner import scan


def test_every_command_format_has_a_presenter():
    assert set(PRESENTERS) == {"scan", "scan-many", "dump", "fix", "verify"}
    assert set(PRESENTERS["scan"]) == set(FORMATS)
    assert set(PRESENTERS["scan-many"]) == set(FORMATS)
    assert set(PRESENTERS["dump"]) == {f.value for f in DumpFormat}
    assert set(PRESENTERS["verify"]) == {f.value for f in VerifyFormat}
    assert set(PRESENTERS["fix"]) == {"console", "json"}


def test_one_signature():
    shapes = {tuple(inspect.signature(p).parameters)[1:] for kind in PRESENTERS.values() for p in kind.values()}
    assert shapes == {("ctx", "console")}  # (result, ctx, console)


def test_a_view_without_a_console_is_text(v4):
    report = scan(v4)
    text = "".join(present("scan", "console", report, RenderContext(), None))
    assert "fp8doctor scan" in text
    assert "".join(present("scan", "json", report, RenderContext(), None)).startswith("{")


def test_several_checkpoints_console_report_to_a_file(tmp_path):
    """`scan A B -f console -o FILE` writes the console sections as text (it was an internal error)."""
    from conftest import run_cli

    from fp8doctor.testing import synth

    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    synth.deepseek_v3(a)
    synth.deepseek_v4(b)
    synth.garble_padding(b, prefix="")
    out = tmp_path / "out.txt"
    r = run_cli("scan", a, b, "-f", "console", "-o", str(out))
    assert r.returncode == 1, r.stderr
    text = out.read_text()
    assert f"fp8doctor scan {a}" in text and f"fp8doctor scan {b}" in text
    assert "2 checkpoints: 1 failed, 1 passed" in text
    assert "\x1b[" not in text  # plain text in a file
