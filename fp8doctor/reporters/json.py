"""The JSON report: the machine-readable contract (documented in README, "JSON report")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fp8doctor.findings import Report
from fp8doctor.reporters import SLOT, RenderContext, stream_json
from fp8doctor.reporters.envelope import SCHEMA_VERSION, envelope

__all__ = ["SCHEMA_VERSION", "render", "render_report", "report_dict"]


def report_dict(report: Report, version: str, findings: bool = True) -> dict[str, Any]:
    return envelope(version, target=report.target, summary=report.summary(),
                    findings=[f.to_dict() for f in report.findings] if findings else [])


def render(report: Report, version: str) -> str:
    return json.dumps(report_dict(report, version), indent=2, ensure_ascii=True) + "\n"


def render_report(report: Report, ctx: RenderContext) -> str:
    """The JSON report; with a baseline, a top-level `baseline` object says what it suppressed."""
    return "".join(render_chunks(report, ctx))


def render_chunks(report: Report, ctx: RenderContext) -> Iterator[str]:
    """The JSON report in pieces: the findings are encoded one by one as they are written."""
    data = report_dict(report, ctx.version, findings=False)
    data["findings"] = SLOT
    data["config"] = ctx.config
    data["summary"]["suppressed"] = dict(sorted(ctx.suppressed_by_rule.items()))
    if ctx.baseline is not None:
        data["baseline"] = {"file": ctx.baseline, "suppressed": ctx.suppressed}
    return stream_json(data, (f.to_dict() for f in report.findings))
