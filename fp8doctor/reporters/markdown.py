"""A Markdown summary for $GITHUB_STEP_SUMMARY or a pull-request comment.

Names from checkpoint headers go into HTML `<code>` with `&`, `<`, `>`, `|` and backticks escaped,
so no tensor name can break the table or inject markup.
"""

from __future__ import annotations

import html
from collections import defaultdict

from fp8doctor.findings import Finding, Report, Severity
from fp8doctor.reporters import RenderContext, TargetResult, per_target
from fp8doctor.reporters.common import capped, hidden_summary, human_bytes, location, plain, plural

ICON = {Severity.ERROR: "🔴", Severity.WARNING: "🟡", Severity.INFO: "🔵"}


def cell(text: str | None) -> str:
    """Text safe inside a Markdown table cell."""
    if not text:
        return ""
    return html.escape(plain(text), quote=False).replace("|", "&#124;").replace("`", "&#96;").replace("*", "&#42;") \
        .replace("_", "&#95;").replace("[", "&#91;").replace("]", "&#93;")


def code(text: str | None) -> str:
    return f"<code>{cell(text)}</code>" if text else ""


def _where(f: Finding) -> str:
    return " ".join(location(f, file=code))


def render_report(report: Report, ctx: RenderContext) -> str:
    from fp8doctor.reporters.console import verdict

    s = report.stats
    failed = report.failed(ctx.fail_on)
    mark = "❌" if failed else ("⚠️" if report.findings or s.skipped else "✅")
    out = [f"## {mark} fp8doctor scan of {code(report.target)}", "",
           cell(verdict(report, ctx.fail_on, ctx.suppressed, ctx.config_suppressed).plain), "",
           f"{plural(s.files, 'file')}, {plural(s.tensors, 'tensor')}, "
           f"{plural(s.scale_tensors_checked, 'scale tensor')} checked "
           f"({human_bytes(s.scale_bytes_read)} of scales) "
           f"in {s.seconds:.2f} s; fails on {ctx.fail_on.value} and above."]
    if ctx.baseline is not None:
        out += ["", f"Baseline {code(ctx.baseline)}: {plural(ctx.suppressed, 'known finding')} suppressed."]
    if ctx.quiet or not report.findings:
        return "\n".join(out) + "\n"

    by_rule: dict[str, list[Finding]] = defaultdict(list)
    for f in report.findings:
        by_rule[f.rule].append(f)
    out += ["", "| severity | rule | findings | entries | fixable |", "| --- | --- | ---: | ---: | ---: |"]
    for rule, fs in sorted(by_rule.items(), key=lambda kv: (-kv[1][0].severity.rank, kv[0])):
        sev = fs[0].severity
        out.append(f"| {ICON[sev]} {sev.value} | `{rule}` | {len(fs):,} | {sum(f.count for f in fs):,} | "
                   f"{sum(1 for f in fs if f.fixable):,} |")

    shown, hidden = capped(report.findings, ctx.max_findings)
    out += ["", f"<details{' open' if failed else ''}><summary>Findings (worst {len(shown)} of "
            f"{len(report.findings)})</summary>", "",
            "| severity | rule | tensor | where | message |", "| --- | --- | --- | --- | --- |"]
    for f in shown:
        out.append(f"| {f.severity.value} | `{f.rule}` | {code(f.tensor)} | {_where(f)} | {cell(f.message)} |")
    if hidden:
        out += ["", f"… {cell(hidden_summary(hidden))}; see the JSON or SARIF report."]
    out += ["", "</details>"]
    if report.fixable:
        out += ["", f"{plural(len(report.fixable), 'finding')} can be repaired with "
                f"`fp8doctor fix {plain(report.target).replace('`', '')}`."]
    return "\n".join(out) + "\n"


def render_many(results: list[TargetResult]) -> str:
    """Several checkpoints: one section per checkpoint, in order, after a one-line overview."""
    failed = sum(r.failed for r in results)
    errors = sum(r.error is not None for r in results)
    head = [f"# fp8doctor: {plural(len(results), 'checkpoint')}, {failed} failed"
            + (f", {errors} could not be scanned" if errors else ""), ""]
    parts = per_target(results, render_report,
                       lambda r: f"## ❌ fp8doctor scan of {code(r.target)}\n\nCould not be scanned: {cell(r.error)}\n")
    return "\n".join(head) + "\n" + "\n".join(parts)
