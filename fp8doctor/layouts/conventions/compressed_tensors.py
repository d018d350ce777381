"""compressed-tensors MXFP4 (and other packed formats): `X.weight_packed` U8 [N, K/2] (two FP4
codes a byte) + `X.weight_scale` U8/E8M0 [N, K/group]; the group from config.json, else 32."""

from __future__ import annotations

from fp8doctor.layouts.conventions.base import Convention, packed_weight_named
from fp8doctor.layouts.conventions.experts import ROUTED_EXPERT_DIMS

CONVENTION = Convention(
    name="compressed-tensors-packed",
    summary="X.weight_packed (U8) + X.weight_scale (U8/E8M0): compressed-tensors MXFP4",
    scale_suffix=".weight_scale",
    weight_suffixes=(".weight_packed",),
    dims=ROUTED_EXPERT_DIMS,
    needs_scale=packed_weight_named(".weight_packed"),
    ignored_suffixes=(".input_scale", ".weight_global_scale", ".input_global_scale", ".output_scale"),
)
