"""The JSON report of `fix` (documented in docs/fix.md, "JSON result")."""

from __future__ import annotations

import json
from typing import Any

from fp8doctor.repair.fix import FixResult
from fp8doctor.reporters.envelope import SCHEMA_VERSION, envelope

__all__ = ["SCHEMA_VERSION", "render", "result_dict"]


def result_dict(result: FixResult, version: str) -> dict[str, Any]:
    return envelope(version, command="fix", **result.to_dict())


def render(result: FixResult, version: str) -> str:
    return json.dumps(result_dict(result, version), indent=2, ensure_ascii=True) + "\n"
