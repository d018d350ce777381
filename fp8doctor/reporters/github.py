"""GitHub Actions workflow commands: one `::error file=...,title=...::message` line per finding.

Escaping follows the runner's rules (@actions/core): in the message `%`, CR and LF become %25,
%0D and %0A; in property values `:` and `,` too (%3A, %2C). Other control characters from
checkpoint headers are shown as visible escapes, so no name can start a command of its own. The
list stops after --max-findings annotations (GitHub shows only a few per step anyway) and always
ends with one summary notice.
"""

from __future__ import annotations

import re

from fp8doctor.findings import Finding, Report, Severity
from fp8doctor.reporters import RenderContext
from fp8doctor.reporters.common import plain, plural

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

    shown = report.findings[: max(ctx.max_findings, 0)]
    lines = [] if ctx.quiet else [annotation(f, ctx) for f in shown]
    summary = verdict(report, ctx.fail_on, ctx.suppressed, ctx.config_suppressed).plain
    hidden = len(report.findings) - (0 if ctx.quiet else len(shown))
    if hidden:
        summary += f"; {plural(hidden, 'more finding')} not annotated (see the SARIF or JSON report)"
    lines.append(f"::notice title=fp8doctor scan::{escape_data(summary)}")
    return "\n".join(lines) + "\n"
