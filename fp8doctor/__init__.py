"""fp8doctor: inspect and repair the scale tensors of quantized safetensors checkpoints.

The public API mirrors the CLI verbs: `scan` (read-only check), and the data types it returns.
Names are imported on first use (PEP 562), so `fp8doctor --help` never pays for numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "CheckpointError": "fp8doctor.checkpoint.loader",
    "Finding": "fp8doctor.findings",
    "Region": "fp8doctor.findings",
    "Report": "fp8doctor.findings",
    "Severity": "fp8doctor.findings",
    "LayoutOverride": "fp8doctor.layouts.model",
    "ScaleLayout": "fp8doctor.layouts.model",
    "ScanOptions": "fp8doctor.scanner",
    "scan": "fp8doctor.scanner",
}

__all__ = [
    "CheckpointError",
    "Finding",
    "LayoutOverride",
    "Region",
    "Report",
    "ScaleLayout",
    "ScanOptions",
    "Severity",
    "__version__",
    "scan",
]

if TYPE_CHECKING:
    from fp8doctor.checkpoint.loader import CheckpointError
    from fp8doctor.findings import Finding, Region, Report, Severity
    from fp8doctor.layouts.model import LayoutOverride, ScaleLayout
    from fp8doctor.scanner import ScanOptions, scan


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fp8doctor' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
