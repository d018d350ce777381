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
from fp8doctor.reporters import RenderContext
from fp8doctor.reporters.common import location, plain, plural


def _line(f: Finding) -> str:
    where = location(f)
    head = f"{f.severity.value}: {plain(f.tensor) if f.tensor else '-'}"
    return f"{head}  {' '.join(where)}\n    {plain(f.message)}"


def render_report(report: Report, ctx: RenderContext) -> str:
    from fp8doctor.rules.catalog import RULES

    by_rule: dict[str, list[Finding]] = defaultdict(list)
    for f in report.findings:
        by_rule[f.rule].append(f)
    active = set(ctx.rules) if ctx.rules else set(RULES)
    ids = list(RULES) + sorted(r for r in by_rule if r not in RULES)

    suite = ET.Element("testsuite", name="fp8doctor scan", hostname="fp8doctor")
    props = ET.SubElement(suite, "properties")
    for name, value in (("target", plain(report.target)), ("fail_on", ctx.fail_on.value),
                        ("version", ctx.version), ("baseline", ctx.baseline or ""),
                        ("suppressed_by_baseline", str(ctx.suppressed))):
        ET.SubElement(props, "property", name=name, value=value)
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
    root = ET.Element("testsuites", name="fp8doctor", tests=str(len(ids)), failures=str(failures), errors="0",
                      skipped=str(skipped), time=f"{report.stats.seconds:.3f}")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
