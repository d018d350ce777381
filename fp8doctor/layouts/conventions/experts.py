"""Routed MoE experts, one module per expert (DeepSeek HF and native names): the config dims that
give their real (unpadded) N or K. Shared by the conventions whose checkpoints have such experts."""

from __future__ import annotations

import re

from fp8doctor.layouts.conventions.base import DimRule, dim

ROUTED_EXPERT_DIMS = (
    DimRule(re.compile(r"(^|\.)experts\.\d+\.(gate_proj|up_proj|w1|w3)\.(weight|weight_packed)$"),
            {-2: dim("moe_intermediate_size")}),
    DimRule(re.compile(r"(^|\.)experts\.\d+\.(down_proj|w2)\.(weight|weight_packed)$"),
            {-1: dim("moe_intermediate_size")}),
)
