"""GitHub Actions workflow commands: one `::error file=...,title=...::message` line per finding.

Escaping follows the runner's rules (@actions/core): in the message `%`, CR and LF become %25,
%0D and %0A; in property values `:` and `,` too (%3A, %2C). Other control characters from
checkpoint headers are shown as visible escapes, so no name can start a command of its own. The
list holds the --max-findings worst findings (Finding.rank_key: unfixable real-entry problems
first; GitHub shows only a few per step anyway) and always ends with one summary notice that says
what the cap left out.
"""

from __future__ import annotations

import re

from fp8doctor.findings import Finding, Report, Severity
from fp8doctor.reporters import RenderContext, TargetResult, per_target
from fp8doctor.reporters.common import capped, hidden_summary, plain

COMMAND = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}
_LINE_BREAK = re.compile(r"(\r\n|\r|\n)")


def _visible(text: str) -> str:
    """Escape control characters except line breaks, which the command escaping carries."""
    return "".join(part if _LINE_BREAK.fullmatch(part) else plain(part) for part in _LINE_BREAK.split(text))


def escape_data(text: str) -> str:
    return _visible(text).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(f: Finding, ctx: RenderContext) -> str:
    props = []
    if f.file is not None:
        path, inside = ctx.artifact_path(f.file)
        if inside:
            props.append(f"file={escape_property(path)}")
    title = f"fp8doctor {f.rule}" + (f": {f.tensor}" if f.tensor else "")
    props.append(f"title={escape_property(title)}")
    where = f" (byte offset 0x{f.byte_offset:x})" if f.byte_offset is not None else ""
    return f"::{COMMAND[f.severity]} {','.join(props)}::{escape_data(f.message + where)}"


def render_report(report: Report, ctx: RenderContext) -> str:
    from fp8doctor.reporters.console import verdict

    shown, hidden = capped(report.findings, 0 if ctx.quiet else ctx.max_findings)
    lines = [annotation(f, ctx) for f in shown]
    summary = verdict(report, ctx.fail_on, ctx.suppressed, ctx.config_suppressed).plain
    if hidden:
        summary += f"; {hidden_summary(hidden, 'not annotated')} (see the SARIF or JSON report)"
    lines.append(f"::notice title=fp8doctor scan::{escape_data(summary)}")
    return "\n".join(lines) + "\n"


def render_many(results: list[TargetResult]) -> str:
    """Several checkpoints: each one's annotations (capped per checkpoint) and summary notice, in
    order; one that could not be scanned is one error annotation."""
    return "".join(per_target(results, render_report, lambda r: "::error title=fp8doctor scan::"
                              f"{escape_data(plain(r.target) + ': ' + (r.error or ''))}\n"))
