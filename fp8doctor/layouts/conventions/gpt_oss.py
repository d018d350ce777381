"""gpt-oss MXFP4: `X_blocks` U8 [..., N, G, 16] (32 FP4 codes per 16 bytes) + `X_scales` U8
[..., N, G] E8M0, one per MX group of 32; fused experts' real dims from config.json."""

from __future__ import annotations

import re

from fp8doctor.checkpoint.header import TensorInfo
from fp8doctor.layouts.conventions.base import (
    Convention,
    DimRule,
    Shape,
    dim,
    packed_weight_named,
    stored_element_shape,
)


def _element_shape(weight: TensorInfo) -> tuple[Shape, str]:
    shape = weight.shape
    if len(shape) >= 2:
        return (*shape[:-2], shape[-2] * shape[-1] * 2), "group"
    return stored_element_shape(weight)


CONVENTION = Convention(
    name="gpt-oss",
    summary="X_blocks (U8 [..., G, 16]) + X_scales (U8 [..., G]): gpt-oss MXFP4",
    scale_suffix="_scales",
    weight_suffixes=("_blocks",),
    element_shape=_element_shape,
    # fused experts: [E, N, G, 16] blocks; element shape [E, N, K]
    dims=(DimRule(re.compile(r"(^|\.)experts\.gate_up_proj_blocks$"),
                  {-3: dim("num_experts"), -2: dim("intermediate_size", 2), -1: dim("hidden_size")}),
          DimRule(re.compile(r"(^|\.)experts\.down_proj_blocks$"),
                  {-3: dim("num_experts"), -2: dim("hidden_size"), -1: dim("intermediate_size")})),
    needs_scale=packed_weight_named("_blocks"),
)
