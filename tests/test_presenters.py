"""reporters/presenters.py: one registry, one signature, for every command's result."""

from __future__ import annotations

import inspect

from fp8doctor.cli.dump import DumpFormat
from fp8doctor.cli.verify import VerifyFormat
from fp8doctor.reporters import FORMATS, RenderContext
from fp8doctor.reporters.presenters import PRESENTERS, present
from fp8doctor.scanner import scan


def test_every_command_format_has_a_presenter():
    assert set(PRESENTERS) == {"scan", "dump", "fix", "verify"}
    assert set(PRESENTERS["scan"]) == set(FORMATS)
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
