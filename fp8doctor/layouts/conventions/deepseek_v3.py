"""DeepSeek V3/V3.1/V3.2 (HF): `X.weight` FP8 + `X.weight_scale_inv` F32 [ceil(N/b), ceil(K/b)],
the block from quantization_config.weight_block_size (else voted from shapes)."""

from __future__ import annotations

from fp8doctor.layouts.conventions.base import Convention, quantized_fp8_weight
from fp8doctor.layouts.conventions.experts import ROUTED_EXPERT_DIMS

CONVENTION = Convention(
    name="deepseek-v3",
    summary="X.weight (FP8) + X.weight_scale_inv (F32): DeepSeek V3/V3.1/V3.2 HF",
    scale_suffix=".weight_scale_inv",
    weight_suffixes=(".weight",),
    dims=ROUTED_EXPERT_DIMS,
    needs_scale=quantized_fp8_weight,
)
