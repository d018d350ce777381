"""Scale tensors in memory (torch on CPU or CUDA, numpy): the scan's conventions, rules and
findings, without a file. `check_tensors` and `check_module` are also exported from fp8doctor;
fp8doctor.testing.assert_scales_clean wraps them for engine test suites. torch is imported only
when the caller's tensors are torch tensors (which means the caller already imported it)."""

from __future__ import annotations

from fp8doctor.runtime.check import check_module, check_tensors
from fp8doctor.runtime.layout import RuntimeLayout
from fp8doctor.runtime.tensors import UnsupportedTensor

__all__ = ["RuntimeLayout", "UnsupportedTensor", "check_module", "check_tensors"]
