"""The envelope every JSON output starts with (scan, dump, fix, verify): the one schema version.

`schema_version` changes only when a field is removed or changes meaning (never, so far); fields
are only ever added. Every JSON renderer builds its top-level object with `envelope`.
"""

from __future__ import annotations

from typing import Any

SCHEMA_VERSION = 1


def envelope(version: str, **fields: Any) -> dict[str, Any]:
    """{"schema_version", "tool": {"name", "version"}, then `fields` in the order given}."""
    return {"schema_version": SCHEMA_VERSION, "tool": {"name": "fp8doctor", "version": version}, **fields}
