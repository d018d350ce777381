"""`scan` output routing: paired --format/--output, stdout vs stderr, --quiet, colour, progress."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from fp8doctor.cli.app import app
from fp8doctor.cli.progress import BarProgress
from fp8doctor.cli.scan import pair_outputs
from tests.conftest import run_cli
from tests.helpers.ci_helpers import break_padding

runner = CliRunner()


def test_pairing_rules():
    assert pair_outputs([], []) == [("console", "-")]
    assert pair_outputs(["sarif", "json"], ["a.sarif"]) == [("sarif", "a.sarif"), ("json", "-")]
    assert pair_outputs(["github", "sarif"], ["-", "x"]) == [("github", "-"), ("sarif", "x")]
    with pytest.raises(ValueError, match="more than one report would go to stdout"):
        pair_outputs(["json", "sarif"], [])
    with pytest.raises(ValueError, match="cannot tell the report format of --output b"):
        pair_outputs(["json"], ["a", "b"])
    with pytest.raises(ValueError, match="same --output"):
        pair_outputs(["json", "sarif"], ["a", "a"])


def test_output_format_from_extension():
    assert pair_outputs([], ["r.json"]) == [("json", "r.json")]
    assert pair_outputs([], ["r.SARIF", "r.xml", "r.md"]) == [("sarif", "r.SARIF"), ("junit", "r.xml"),
                                                              ("markdown", "r.md")]
    assert pair_outputs(["sarif"], ["r.json"]) == [("sarif", "r.json")]  # an explicit --format wins
    assert pair_outputs(["json"], ["a.json", "b.md"]) == [("json", "a.json"), ("markdown", "b.md")]
    for name in ("report.txt", "report"):
        with pytest.raises(ValueError, match="add --format"):
            pair_outputs([], [name])


def test_output_json_by_extension_writes_json(v4, tmp_path):
    break_padding(v4)
    out = tmp_path / "report.json"
    r = run_cli("scan", v4, "-o", str(out))
    assert r.returncode == 1
    assert json.loads(out.read_text())["summary"]["errors"] > 0
    assert "scale-padding-nonzero" in r.stderr  # the console report went to stderr
    r = run_cli("scan", v4, "-o", str(tmp_path / "report.txt"))
    assert r.returncode == 2 and "cannot tell the report format" in r.stderr
    assert not (tmp_path / "report.txt").exists()


def test_several_reports_in_one_run(v4, tmp_path):
    break_padding(v4)
    files = {fmt: tmp_path / f"r.{fmt}" for fmt in ("sarif", "junit", "markdown", "console")}
    args = ["scan", v4]
    for fmt in files:
        args += ["--format", fmt]
    args += ["--format", "json"]
    for p in files.values():
        args += ["--output", str(p)]
    r = run_cli(*args)
    assert r.returncode == 1, r.stderr
    assert json.loads(r.stdout)["summary"]["errors"] == 9  # the one unpaired format: stdout
    assert json.loads(files["sarif"].read_text())["version"] == "2.1.0"
    assert files["junit"].read_text().startswith("<?xml")
    assert files["markdown"].read_text().startswith("## ")
    console_text = files["console"].read_text()
    assert "Findings by rule" in console_text and "\x1b[" not in console_text
    assert "9 errors" in r.stderr and "Findings by rule" in r.stderr  # console summary on stderr


def test_console_to_stdout_has_no_stderr_copy(v4, tmp_path):
    break_padding(v4)
    r = runner.invoke(app, ["scan", v4, "-f", "console", "-f", "json", "-o", "-", "-o", str(tmp_path / "r.json")])
    assert r.exit_code == 1 and "9 errors" in r.stdout and r.stderr == ""


def test_json_to_stdout_alone_keeps_stderr_empty(v4):
    r = runner.invoke(app, ["scan", v4, "--format", "json"])
    assert r.exit_code == 0 and r.stderr == "" and json.loads(r.stdout)["findings"] == []
    assert "baseline" not in json.loads(r.stdout)  # the JSON contract is unchanged without a baseline


def test_bad_pairs_and_unwritable_outputs_exit_2(v4, tmp_path):
    r = runner.invoke(app, ["scan", v4, "-f", "json", "-f", "sarif"])
    assert r.exit_code == 2 and "more than one report" in r.stderr
    r = runner.invoke(app, ["scan", v4, "-f", "sarif", "-o", str(tmp_path / "no" / "dir" / "x.sarif")])
    assert r.exit_code == 2 and "cannot write the sarif report" in r.stderr
    r = runner.invoke(app, ["scan", v4, "-f", "yaml"])
    assert r.exit_code == 2


def test_quiet_prints_one_line(v4):
    break_padding(v4)
    r = runner.invoke(app, ["scan", v4, "--quiet"])
    assert r.exit_code == 1 and len(r.stdout.strip().splitlines()) == 1 and "9 errors" in r.stdout
    r = runner.invoke(app, ["scan", v4, "-q", "-f", "sarif", "-o", os.devnull])
    assert r.exit_code == 1 and r.stdout == "" and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("how", ["flag", "env"])
def test_no_color(v4, how):
    break_padding(v4)
    base = {"FORCE_COLOR": "1", "TERM": "xterm-256color"}
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    colored = subprocess.run([sys.executable, "-m", "fp8doctor", "scan", v4], capture_output=True, text=True,
                             env={**env, **base})
    assert "\x1b[31m" in colored.stdout or "\x1b[1;31m" in colored.stdout  # red really is there...
    extra = ["--no-color"] if how == "flag" else []
    env2 = {**env, **base, **({"NO_COLOR": "1"} if how == "env" else {})}
    plain = subprocess.run([sys.executable, "-m", "fp8doctor", "scan", v4, *extra], capture_output=True, text=True,
                           env=env2)
    assert plain.returncode == 1 and "9 errors" in plain.stdout
    assert "\x1b[31m" not in plain.stdout and "\x1b[1;31m" not in plain.stdout and "\x1b[33m" not in plain.stdout


def test_progress_bar_is_held_back_then_drawn():
    buf = io.StringIO()
    quick = BarProgress(delay=60, file=buf)
    quick.start(100, 1)
    quick.advance(100)
    quick.finish()
    assert buf.getvalue() == ""
    buf = io.StringIO()
    slow = BarProgress(delay=0, file=buf)
    slow.start(100, 1)
    assert slow.shown
    slow.advance(50)
    slow.finish()
    assert not slow.shown


def test_progress_bar_only_on_a_terminal(v4):
    # not a terminal (CliRunner, pipes): no bar, stderr stays empty
    r = run_cli("scan", v4, "--format", "json")
    assert r.returncode == 0 and r.stderr == ""
    assert BarProgress.wanted(quiet=True) is False
    # a terminal, but a scan shorter than the bar's delay: nothing flashes on stderr
    master, slave = pty.openpty()
    try:
        p = subprocess.run([sys.executable, "-m", "fp8doctor", "scan", v4, "--format", "json"], stdout=subprocess.PIPE,
                           stderr=slave, env={**os.environ, "NO_COLOR": "1"}, timeout=120)
        os.close(slave)
        seen = b""
        while select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
    assert p.returncode == 0 and json.loads(p.stdout)["findings"] == []
    assert p.stdout and seen == b""
