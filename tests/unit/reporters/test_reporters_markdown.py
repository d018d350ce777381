"""The Markdown summary: verdict, a table by rule, the worst findings, names escaped."""

from __future__ import annotations

from typer.testing import CliRunner

from fp8doctor.cli.app import app
from fp8doctor.findings import Finding, Region, Report, Severity
from fp8doctor.reporters import RenderContext, markdown
from tests.helpers.ci_helpers import break_padding

runner = CliRunner()


def test_markdown_summary_of_a_broken_checkpoint(v4, tmp_path):
    break_padding(v4)
    out = tmp_path / "summary.md"
    r = runner.invoke(app, ["scan", v4, "-f", "markdown", "-o", str(out), "--max-findings", "2"])
    assert r.exit_code == 1
    text = out.read_text()
    assert text.startswith("## ❌ fp8doctor scan of")
    assert "| 🔴 error | `scale-padding-nonzero` | 9 |" in text
    assert "Findings (worst 2 of 9)" in text and "7 more findings" in text
    assert text.count("\n| error | `scale-padding-nonzero` |") == 2
    assert "can be repaired with `fp8doctor fix" in text


def test_clean_and_quiet(v4):
    r = runner.invoke(app, ["scan", v4, "-f", "markdown"])
    assert r.exit_code == 0 and r.stdout.startswith("## ✅") and "|" not in r.stdout


def test_names_cannot_break_the_table():
    f = Finding("scale-nan", Severity.ERROR, "f.safetensors", "a|b`c<script>*_[x](y)\nz", "m|n", Region.LOGICAL)
    text = markdown.render_report(Report("ck", (f,)), RenderContext())
    [row] = [line for line in text.splitlines() if line.startswith("| error")]
    assert row.count("|") == 6  # the five cells' borders only
    assert "<script>" not in text and "&lt;script&gt;" in text and "\\x0az" in text
