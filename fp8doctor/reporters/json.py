"""The JSON report: the machine-readable contract (documented in README, "JSON report")."""

from __future__ import annotations

import json
from typing import Any

from fp8doctor.findings import Report

SCHEMA_VERSION = 1


def report_dict(report: Report, version: str) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "fp8doctor", "version": version},
        "target": report.target,
        "summary": report.summary(),
        "findings": [f.to_dict() for f in report.findings],
    }


def render(report: Report, version: str) -> str:
    return json.dumps(report_dict(report, version), indent=2, ensure_ascii=True) + "\n"
