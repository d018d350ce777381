"""JUnit XML: read back with junitparser, one testcase per rule, failures carry the findings."""

from __future__ import annotations

from junitparser import Failure, JUnitXml, Skipped
from typer.testing import CliRunner

from fp8doctor.cli.app import app
from fp8doctor.findings import Finding, Region, Report, Severity
from fp8doctor.reporters import RenderContext, junit
from fp8doctor.rules.catalog import RULES
from tests.helpers.ci_helpers import break_padding, odd_names_checkpoint

runner = CliRunner()


def cases(path):
    xml = JUnitXml.fromfile(str(path))
    [suite] = list(xml)
    return suite, {c.name: c for c in suite}


def test_junit_report_of_a_broken_checkpoint(v4, tmp_path):
    break_padding(v4)
    out = tmp_path / "junit.xml"
    r = runner.invoke(app, ["scan", v4, "--format", "junit", "--output", str(out), "--ignore", "scale-outlier"])
    assert r.exit_code == 1
    assert "9 errors" in r.stderr  # the console verdict went to stderr, the report to the file
    suite, by_name = cases(out)
    assert set(by_name) == set(RULES) and suite.tests == len(RULES)
    assert suite.failures == 1 and suite.skipped == 1 and suite.errors == 0
    [failure] = [r for r in by_name["scale-padding-nonzero"].result if isinstance(r, Failure)]
    assert failure.type == "scale-padding-nonzero" and failure.message.startswith("9 findings")
    assert "layers.0.attn.wq_b.scale" in failure.text and "@ 0x" in failure.text
    assert isinstance(by_name["scale-outlier"].result[0], Skipped)
    assert by_name["scale-nan"].is_passed


def test_findings_below_fail_on_pass_with_system_out(tmp_path):
    report = Report("ck", (Finding("scale-outlier", Severity.WARNING, "a.safetensors", "t", "far out",
                                   Region.LOGICAL, 8),))
    out = tmp_path / "j.xml"
    out.write_text(junit.render_report(report, RenderContext()))
    suite, by_name = cases(out)
    assert suite.failures == 0 and by_name["scale-outlier"].is_passed
    assert "far out" in by_name["scale-outlier"].system_out
    out.write_text(junit.render_report(report, RenderContext(fail_on=Severity.WARNING)))
    suite, by_name = cases(out)
    assert suite.failures == 1 and not by_name["scale-outlier"].is_passed


def test_control_characters_in_names_still_parse(tmp_path):
    report = Report("ck\x1b", (Finding("scale-nan", Severity.ERROR, "a.safetensors", "t\x00\x01\ud800\n<&>",
                                       "bad \x07", Region.LOGICAL),))
    out = tmp_path / "j.xml"
    out.write_text(junit.render_report(report, RenderContext()), encoding="utf-8")
    _, by_name = cases(out)
    text = by_name["scale-nan"].result[0].text
    assert "t\\x00\\x01\\ud800\\x0a<&>" in text and "bad \\x07" in text


def test_odd_names_through_the_cli(tmp_path):
    odd = tmp_path / "odd"
    odd_names_checkpoint(str(odd))
    out = tmp_path / "j.xml"
    assert runner.invoke(app, ["scan", str(odd), "-f", "junit", "-o", str(out)]).exit_code == 1
    _, by_name = cases(out)
    assert "odd%25 name,with:colons\\x0aand newline.scale" in by_name["scale-padding-nonzero"].result[0].text
