"""DeepSeek V4 native: `X.weight` FP8 + `X.scale` E8M0 (padded to an alignment multiple), block
from quantization_config (else voted). `.scale` is also what some models call norm weights: it is
a scale only when it is E8M0 or sits beside a quantized weight."""

from __future__ import annotations

from fp8doctor.checkpoint.dtypes import PACKED_WEIGHT_DTYPES
from fp8doctor.checkpoint.header import TensorInfo
from fp8doctor.layouts.conventions.base import Convention, is_quantized, quantized_fp8_weight
from fp8doctor.layouts.conventions.experts import ROUTED_EXPERT_DIMS


def _fp8_scale(scale: TensorInfo, weight: TensorInfo | None) -> bool:
    if weight is not None and weight.dtype in PACKED_WEIGHT_DTYPES:
        return False  # deepseek_v4_fp4's
    return scale.dtype == "F8_E8M0" or is_quantized(weight)


CONVENTION = Convention(
    name="deepseek-v4",
    summary="X.weight (FP8) + X.scale (E8M0): DeepSeek V4 native",
    scale_suffix=".scale",
    weight_suffixes=(".weight",),
    is_scale=_fp8_scale,
    dims=ROUTED_EXPERT_DIMS,
    needs_scale=quantized_fp8_weight,
    ignored_suffixes=(".k_scale", ".v_scale", ".q_scale"),
)
