"""GitHub workflow-command annotations: escaped so that any tensor name round-trips and none can
start a command of its own; capped, with one summary line."""

from __future__ import annotations

import os
import re
import subprocess

from typer.testing import CliRunner

from fp8doctor.cli.app import app
from fp8doctor.findings import Finding, Region, Report, Severity
from fp8doctor.reporters import RenderContext, github
from tests.helpers.ci_helpers import ODD_NAME, break_padding, odd_names_checkpoint

runner = CliRunner()
COMMAND = re.compile(r"^::(error|warning|notice)(?: (?P<props>[^:]*))?::(?P<msg>.*)$")


def unescape_data(s: str) -> str:
    return s.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


def unescape_property(s: str) -> str:
    return unescape_data(s.replace("%3A", ":").replace("%2C", ","))


def parse(line: str) -> tuple[str, dict[str, str], str]:
    """Parse one workflow command the way the runner does."""
    m = COMMAND.match(line)
    assert m, line
    props = {}
    for item in (m.group("props") or "").split(","):
        if item:
            key, _, value = item.partition("=")
            props[key] = unescape_property(value)
    return m.group(1), props, unescape_data(m.group("msg"))


def test_escaping_round_trips_names_with_percent_comma_colon_newline():
    name = "a%b,c:d\ne\rf%0A"
    f = Finding("scale-nan", Severity.ERROR, "dir,x:y%/s\n.safetensors", name, f"{name} is NaN", Region.LOGICAL, 9)
    line = github.annotation(f, RenderContext(source_root="/r", checkpoint_root="/r/ck"))
    assert "\n" not in line and "\r" not in line
    level, props, msg = parse(line)
    assert level == "error"
    assert props["file"] == "ck/dir,x:y%/s\n.safetensors"
    assert props["title"] == f"fp8doctor scale-nan: {name}"
    assert msg == f"{name} is NaN (byte offset 0x9)"
    assert "%25" in line and "%2C" in line and "%3A" in line and "%0A" in line and "%0D" in line


def test_no_name_can_inject_a_command():
    name = "x\n::set-env name=PATH::/evil\n\x1b[31mred"
    f = Finding("scale-nan", Severity.ERROR, None, name, name, Region.LOGICAL)
    out = github.render_report(Report("ck", (f,)), RenderContext())
    lines = out.splitlines()
    assert len(lines) == 2 and all(line.startswith(("::error ", "::notice ")) for line in lines)
    assert "\x1b" not in out and "\\x1b[31mred" in out
    assert parse(lines[0])[1]["title"].endswith("x\n::set-env name=PATH::/evil\n\\x1b[31mred")


def test_capped_with_a_summary_line(v4):
    break_padding(v4)
    r = runner.invoke(app, ["scan", v4, "--format", "github", "--max-findings", "4"])
    assert r.exit_code == 1
    lines = r.stdout.splitlines()
    assert len(lines) == 5
    assert all(parse(line)[0] == "error" for line in lines[:4])
    level, props, msg = parse(lines[-1])
    assert level == "notice" and props["title"] == "fp8doctor scan"
    assert "9 errors" in msg and "5 more findings not annotated" in msg
    quiet = runner.invoke(app, ["scan", v4, "--format", "github", "--quiet"]).stdout.splitlines()
    assert len(quiet) == 1 and "9 more findings not annotated" in quiet[0]


def test_odd_names_end_to_end_in_a_git_repo(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    odd = tmp_path / "ckpts" / "odd"
    name = odd_names_checkpoint(str(odd))
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path / "ckpts")
        r = runner.invoke(app, ["scan", "odd", "--format", "github"])
    finally:
        os.chdir(cwd)
    first, summary = r.stdout.splitlines()
    level, props, msg = parse(first)
    assert level == "error" and props["file"] == "ckpts/odd/model.safetensors"
    assert props["title"] == f"fp8doctor scale-padding-nonzero: {name}"
    assert ODD_NAME in msg
    assert parse(summary)[0] == "notice"
