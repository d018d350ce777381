"""fp8doctor: inspect and repair the scale tensors of quantized safetensors checkpoints.

The public API mirrors the CLI verbs: `scan` (read-only check), `dump` (the raw scale bytes), `fix`
(repair padded scale entries, journaled), `verify` (reference forward; needs torch), and the data
types they return; `check_tensors` / `check_module` run the scan's checks over tensors in memory
(`RuntimeLayout` describes a runtime layout no convention knows). Names are imported on first use
(PEP 562), so `fp8doctor --help` never pays for numpy, and only `verify` and the in-memory checks of
torch tensors use torch.
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
    "DumpError": "fp8doctor.dumper",
    "DumpOptions": "fp8doctor.dumper",
    "RowRange": "fp8doctor.dumper",
    "TensorDump": "fp8doctor.dumper",
    "dump": "fp8doctor.dumper",
    "FixError": "fp8doctor.repair.errors",
    "FixResult": "fp8doctor.repair.fix",
    "fix": "fp8doctor.repair.fix",
    "VerifyError": "fp8doctor.errors",
    "VerifyOptions": "fp8doctor.reference.layer",
    "VerifyResult": "fp8doctor.reference.layer",
    "verify": "fp8doctor.reference.layer",
    "RuntimeLayout": "fp8doctor.runtime.layout",
    "check_module": "fp8doctor.runtime.check",
    "check_tensors": "fp8doctor.runtime.check",
}

__all__ = [
    "CheckpointError",
    "DumpError",
    "DumpOptions",
    "Finding",
    "FixError",
    "FixResult",
    "LayoutOverride",
    "Region",
    "Report",
    "RowRange",
    "RuntimeLayout",
    "ScaleLayout",
    "ScanOptions",
    "Severity",
    "TensorDump",
    "VerifyError",
    "VerifyOptions",
    "VerifyResult",
    "__version__",
    "check_module",
    "check_tensors",
    "dump",
    "fix",
    "scan",
    "verify",
]

if TYPE_CHECKING:
    from fp8doctor.checkpoint.loader import CheckpointError
    from fp8doctor.dumper import DumpError, DumpOptions, RowRange, TensorDump, dump
    from fp8doctor.errors import VerifyError
    from fp8doctor.findings import Finding, Region, Report, Severity
    from fp8doctor.layouts.model import LayoutOverride, ScaleLayout
    from fp8doctor.reference.layer import VerifyOptions, VerifyResult, verify
    from fp8doctor.repair.errors import FixError
    from fp8doctor.repair.fix import FixResult, fix
    from fp8doctor.runtime.check import check_module, check_tensors
    from fp8doctor.runtime.layout import RuntimeLayout
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
