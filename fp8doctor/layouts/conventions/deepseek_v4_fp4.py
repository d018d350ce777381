"""DeepSeek V4 FP4 experts: `X.weight` I8/U8 (two FP4 codes a byte) or F4 + `X.scale` E8M0 in MX
groups of 32 along K (the group from config.json when it gives one)."""

from __future__ import annotations

from fp8doctor.checkpoint.config import ModelConfig
from fp8doctor.checkpoint.dtypes import PACKED_WEIGHT_DTYPES
from fp8doctor.checkpoint.header import TensorInfo
from fp8doctor.layouts.conventions.base import Convention
from fp8doctor.layouts.conventions.experts import ROUTED_EXPERT_DIMS


def _packed_scale(scale: TensorInfo, weight: TensorInfo | None) -> bool:
    return weight is not None and weight.dtype in PACKED_WEIGHT_DTYPES


def fp4_checkpoint(config: ModelConfig | None) -> bool:
    """config.json says the experts are FP4 (then I8 `.weight` tensors are packed FP4 codes)."""
    if not config:
        return False
    quant = config.quant
    return ((quant is not None and (quant.quant_method or "").lower() == "mxfp4")
            or str(config.raw.get("expert_dtype", "")).lower() in ("fp4", "mxfp4"))


def _fp4_weight(t: TensorInfo, config: ModelConfig | None) -> bool:
    if t.dtype == "F4":
        return t.numel > 0 and t.name.endswith("weight")
    return t.dtype == "I8" and t.name.endswith(".weight") and len(t.shape) >= 2 and fp4_checkpoint(config)


CONVENTION = Convention(
    name="deepseek-v4-fp4",
    summary="X.weight (I8/U8 packed FP4, or F4) + X.scale (E8M0): DeepSeek V4 FP4 experts",
    scale_suffix=".scale",
    weight_suffixes=(".weight",),
    is_scale=_packed_scale,
    dims=ROUTED_EXPERT_DIMS,
    needs_scale=_fp4_weight,
)
