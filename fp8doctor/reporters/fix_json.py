"""The JSON report of `fix` (documented in README, "fix")."""

from __future__ import annotations

import json
from typing import Any

from fp8doctor.repair.fix import FixResult

SCHEMA_VERSION = 1


def result_dict(result: FixResult, version: str) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "tool": {"name": "fp8doctor", "version": version},
            "command": "fix", **result.to_dict()}


def render(result: FixResult, version: str) -> str:
    return json.dumps(result_dict(result, version), indent=2, ensure_ascii=True) + "\n"
