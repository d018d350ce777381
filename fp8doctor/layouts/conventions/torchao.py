"""torchao tensor subclasses saved by `TorchAoConfig` + `save_pretrained` (MXTensor, NVFP4Tensor):
`X._weight_qdata` (F8_E4M3 [N, K] or U8 [N, K/2]) + `X._weight_scale` (F8_E8M0 for MX, groups of 32;
F8_E4M3 for NVFP4, groups of 16), stored swizzled by `to_blocked` as [32 * ceil(N/128),
16 * ceil(G/4)] (layouts/swizzle.py), and for NVFP4 `X._weight_per_tensor_scale` F32 []. Each
weight's subclass metadata (`_type`, `block_size`, `is_swizzled_scales`) is JSON in the shard's
`__metadata__` under `X.weight`; the shapes alone tell the layout, so it is not needed here.
"""

from __future__ import annotations

from fp8doctor.checkpoint.config import ModelConfig
from fp8doctor.checkpoint.dtypes import FP8_WEIGHT_DTYPES
from fp8doctor.checkpoint.header import TensorInfo
from fp8doctor.layouts.conventions.base import Convention


def _qdata(t: TensorInfo, config: ModelConfig | None) -> bool:
    return t.name.endswith("._weight_qdata") and (t.dtype in FP8_WEIGHT_DTYPES or t.dtype in ("U8", "I8"))


CONVENTION = Convention(
    name="torchao",
    summary="X._weight_qdata + X._weight_scale (E8M0 / E4M3, swizzled 128x4): torchao MXTensor, NVFP4Tensor",
    scale_suffix="._weight_scale",
    weight_suffixes=("._weight_qdata",),
    needs_scale=_qdata,
    companions=(("._weight_per_tensor_scale", "global"),),
    swizzled=True,
)
