"""fp8doctor: inspect and repair the scale tensors of quantized safetensors checkpoints.

The public API mirrors the CLI verbs: `scan` (read-only check), `dump` (the raw scale bytes), `fix`
(repair padded scale entries, journaled), and the data types they return.
"""

from fp8doctor.checkpoint.loader import CheckpointError
from fp8doctor.dumper import DumpError, DumpOptions, RowRange, TensorDump, dump
from fp8doctor.findings import Finding, Region, Report, Severity
from fp8doctor.layouts.model import LayoutOverride, ScaleLayout
from fp8doctor.repair.errors import FixError
from fp8doctor.repair.fix import FixResult, fix
from fp8doctor.scanner import ScanOptions, scan

__version__ = "0.1.0"

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
    "ScaleLayout",
    "ScanOptions",
    "Severity",
    "TensorDump",
    "__version__",
    "dump",
    "fix",
    "scan",
]
