"""The JSON report: the machine-readable contract (documented in README, "JSON report")."""

from __future__ import annotations

import json
from typing import Any

from fp8doctor.findings import Report
from fp8doctor.reporters import RenderContext
from fp8doctor.reporters.envelope import SCHEMA_VERSION, envelope

__all__ = ["SCHEMA_VERSION", "render", "render_report", "report_dict"]


def report_dict(report: Report, version: str) -> dict[str, Any]:
    return envelope(version, target=report.target, summary=report.summary(),
                    findings=[f.to_dict() for f in report.findings])


def render(report: Report, version: str) -> str:
    return json.dumps(report_dict(report, version), indent=2, ensure_ascii=True) + "\n"


def render_report(report: Report, ctx: RenderContext) -> str:
    """The JSON report; with a baseline, a top-level `baseline` object says what it suppressed."""
    data = report_dict(report, ctx.version)
    if ctx.baseline is not None:
        data["baseline"] = {"file": ctx.baseline, "suppressed": ctx.suppressed}
    return json.dumps(data, indent=2, ensure_ascii=True) + "\n"
