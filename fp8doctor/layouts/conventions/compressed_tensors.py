"""compressed-tensors packed formats: `X.weight_packed` + `X.weight_scale`, the group from
config.json's `config_groups` (else 32 for E8M0, 16 for E4M3 scales).

- MXFP4 (`mxfp4-pack-quantized`): U8 [N, K/2] (two FP4 codes a byte) + U8/E8M0 [N, K/32].
- NVFP4 (`nvfp4-pack-quantized`): U8 [N, K/2] + F8_E4M3 [N, K/16] + `X.weight_global_scale` F32 [1]
  (a divisor, (448 * 6) / amax) and, with quantized activations, `X.input_global_scale`.
- pack-quantized (W4A16, W8A16, ...): I32 [N, K * bits / 32] + BF16/F32 [N, K/group] (and an I64
  `X.weight_shape`); elements per int32 from `num_bits` (pairing reads it from config.json).
"""

from __future__ import annotations

from fp8doctor.checkpoint.header import TensorInfo
from fp8doctor.layouts.conventions.base import Convention, Shape, packed_weight_named, stored_element_shape
from fp8doctor.layouts.conventions.experts import ROUTED_EXPERT_DIMS

INT4_PER_I32 = 8
"""Elements of a 4-bit pack-quantized weight per int32 (config.json's num_bits overrides)."""


def _packed(scale: TensorInfo, weight: TensorInfo | None) -> bool:
    return weight is None or weight.name.endswith(".weight_packed")


def _element_shape(weight: TensorInfo) -> tuple[Shape, str]:
    if weight.dtype == "I32" and weight.shape:
        return (*weight.shape[:-1], weight.shape[-1] * INT4_PER_I32), "group"
    return stored_element_shape(weight)


CONVENTION = Convention(
    name="compressed-tensors-packed",
    summary="X.weight_packed (U8/I32) + X.weight_scale (E8M0/E4M3/BF16): compressed-tensors MXFP4, NVFP4, W4A16",
    scale_suffix=".weight_scale",
    weight_suffixes=(".weight_packed",),
    is_scale=_packed,
    element_shape=_element_shape,
    dims=ROUTED_EXPERT_DIMS,
    needs_scale=packed_weight_named(".weight_packed", ("U8", "I8", "I32")),
    ignored_suffixes=(".output_scale",),
    companions=((".weight_global_scale", "global"), (".input_global_scale", "input"), (".input_scale", "input")),
    divisors=(".weight_global_scale",),
)
