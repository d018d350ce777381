"""`X.weight` FP8 + `X.weight_scale` (E8M0 or float): compressed-tensors FP8 per tensor / channel /
block and MXFP8, ModelOpt FP8 / per-channel / MXFP8, DeepSeek V4 re-exports and other exporters;
block from config.json, else voted (`X.input_scale` beside it when activations are static)."""

from __future__ import annotations

from fp8doctor.layouts.conventions.base import Convention, quantized_fp8_weight
from fp8doctor.layouts.conventions.experts import ROUTED_EXPERT_DIMS

CONVENTION = Convention(
    name="weight-scale",
    summary="X.weight (FP8) + X.weight_scale (E8M0/F32): compressed-tensors FP8, other exporters",
    scale_suffix=".weight_scale",
    weight_suffixes=(".weight",),
    dims=ROUTED_EXPERT_DIMS,
    needs_scale=quantized_fp8_weight,
    companions=((".input_scale", "input"),),
)
