"""JUnit XML for GitLab, Jenkins and other CI test views: one testcase per rule.

A rule with findings at or above --fail-on is a failed testcase whose failure text lists them; a
rule whose findings are all below the threshold passes, with the findings in its system-out; a
rule that did not run (--select/--ignore) is skipped. Names from checkpoint headers are shown with
control characters escaped, since XML 1.0 cannot carry most of them at all.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import defaultdict

from fp8doctor.findings import Finding, Report
from fp8doctor.reporters import RenderContext, TargetResult, tool_version
from fp8doctor.reporters.common import location, plain, plural


def _line(f: Finding) -> str:
    where = location(f)
    head = f"{f.severity.value}: {plain(f.tensor) if f.tensor else '-'}"
    return f"{head}  {' '.join(where)}\n    {plain(f.message)}"


def _suite(report: Report, ctx: RenderContext, name: str = "fp8doctor scan") -> ET.Element:
    from fp8doctor.rules.catalog import RULES

    by_rule: dict[str, list[Finding]] = defaultdict(list)
    for f in report.findings:
        by_rule[f.rule].append(f)
    active = set(ctx.rules) if ctx.rules else set(RULES)
    ids = list(RULES) + sorted(r for r in by_rule if r not in RULES)

    suite = ET.Element("testsuite", name=name, hostname="fp8doctor")
    props = ET.SubElement(suite, "properties")
    for prop, value in (("target", plain(report.target)), ("fail_on", ctx.fail_on.value),
                        ("version", ctx.version), ("baseline", ctx.baseline or ""),
                        ("suppressed_by_baseline", str(ctx.suppressed))):
        ET.SubElement(props, "property", name=prop, value=value)
    failures = skipped = 0
    for rid in ids:
        case = ET.SubElement(suite, "testcase", name=rid, classname=f"fp8doctor.{plain(report.target)}",
                             time="0")
        found = by_rule.get(rid, [])
        failing = [f for f in found if f.severity.rank >= ctx.fail_on.rank]
        if failing:
            failures += 1
            title = RULES[rid].title if rid in RULES else rid
            failure = ET.SubElement(case, "failure", type=rid,
                                    message=f"{plural(len(failing), 'finding')}: {title}")
            failure.text = "\n".join(_line(f) for f in failing)
        elif rid not in active and not found:
            skipped += 1
            ET.SubElement(case, "skipped", message="rule not selected")
        below = [f for f in found if f.severity.rank < ctx.fail_on.rank]
        if below:
            ET.SubElement(case, "system-out").text = "\n".join(_line(f) for f in below)
    suite.set("tests", str(len(ids)))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", str(skipped))
    suite.set("time", f"{report.stats.seconds:.3f}")
    return suite


def _document(suites: list[ET.Element]) -> str:
    totals = {k: sum(int(s.get(k, "0")) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    seconds = sum(float(s.get("time", "0")) for s in suites)
    root = ET.Element("testsuites", name="fp8doctor", tests=str(totals["tests"]), failures=str(totals["failures"]),
                      errors=str(totals["errors"]), skipped=str(totals["skipped"]), time=f"{seconds:.3f}")
    root.extend(suites)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def render_report(report: Report, ctx: RenderContext) -> str:
    return _document([_suite(report, ctx)])


def _error_suite(target: str, error: str | None, version: str) -> ET.Element:
    suite = ET.Element("testsuite", name=f"fp8doctor scan {plain(target)}", hostname="fp8doctor")
    props = ET.SubElement(suite, "properties")
    for prop, value in (("target", plain(target)), ("version", version)):
        ET.SubElement(props, "property", name=prop, value=value)
    case = ET.SubElement(suite, "testcase", name="scan", classname=f"fp8doctor.{plain(target)}", time="0")
    ET.SubElement(case, "error", type="could-not-scan", message=plain(error))
    for key, value in (("tests", "1"), ("failures", "0"), ("errors", "1"), ("skipped", "0"), ("time", "0.000")):
        suite.set(key, value)
    return suite


def render_many(results: list[TargetResult]) -> str:
    """Several checkpoints: one <testsuite> per checkpoint (named after it) under one <testsuites>
    with the totals; one that could not be scanned is a suite with one <error>."""
    version = tool_version(results)
    return _document([_suite(r.report, r.ctx, f"fp8doctor scan {plain(r.target)}")
                      if r.report is not None and r.ctx is not None else _error_suite(r.target, r.error, version)
                      for r in results])
