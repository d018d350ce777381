"""The JSON report: the machine-readable contract (documented in docs/reports.md, "JSON report")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fp8doctor.findings import Report
from fp8doctor.reporters import SLOT, RenderContext, TargetResult, stream_json, tool_version
from fp8doctor.reporters.envelope import SCHEMA_VERSION, envelope

__all__ = ["SCHEMA_VERSION", "many_dict", "render", "render_many", "render_report", "report_dict"]


def report_dict(report: Report, version: str, findings: bool = True) -> dict[str, Any]:
    fields: dict[str, Any] = {"target": report.target}
    if report.hf_cache is not None:  # only for a Hugging Face cache snapshot: other reports are unchanged
        fields["hf_cache"] = dict(report.hf_cache)
    return envelope(version, **fields, summary=report.summary(),
                    findings=[f.to_dict() for f in report.findings] if findings else [])


def render(report: Report, version: str) -> str:
    return json.dumps(report_dict(report, version), indent=2, ensure_ascii=True) + "\n"


def _report_data(report: Report, ctx: RenderContext, findings: bool = True) -> dict[str, Any]:
    data = report_dict(report, ctx.version, findings=findings)
    data["config"] = ctx.config
    data["summary"]["suppressed"] = dict(sorted(ctx.suppressed_by_rule.items()))
    if ctx.baseline is not None:
        data["baseline"] = {"file": ctx.baseline, "suppressed": ctx.suppressed}
    return data


def render_report(report: Report, ctx: RenderContext) -> str:
    """The JSON report; with a baseline, a top-level `baseline` object says what it suppressed."""
    return "".join(render_chunks(report, ctx))


def render_chunks(report: Report, ctx: RenderContext) -> Iterator[str]:
    """The JSON report in pieces: the findings are encoded one by one as they are written."""
    data = _report_data(report, ctx, findings=False)
    data["findings"] = SLOT
    return stream_json(data, (f.to_dict() for f in report.findings))
def many_dict(results: list[TargetResult]) -> dict[str, Any]:
    """Several checkpoints: `targets` holds one single-checkpoint report each (without its
    schema_version and tool), or {"target", "error"} for one that could not be scanned; `summary`
    adds them up."""
    targets: list[dict[str, Any]] = []
    totals = {"targets": len(results), "scanned": 0, "could_not_scan": 0, "failed": 0, "errors": 0, "warnings": 0,
              "infos": 0, "fixable": 0}
    for r in results:
        if r.report is None or r.ctx is None:
            targets.append({"target": r.target, "error": r.error})
            totals["could_not_scan"] += 1
            continue
        data = _report_data(r.report, r.ctx)
        del data["schema_version"], data["tool"]
        targets.append(data)
        totals["scanned"] += 1
        totals["failed"] += r.failed
        for key in ("errors", "warnings", "infos", "fixable"):
            totals[key] += data["summary"][key]
    return envelope(tool_version(results), targets=targets, summary=totals)


def render_many(results: list[TargetResult]) -> str:
    return json.dumps(many_dict(results), indent=2, ensure_ascii=True) + "\n"
