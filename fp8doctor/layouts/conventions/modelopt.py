"""NVIDIA ModelOpt HF exports (`export_hf_checkpoint`; `hf_quant_config.json` beside config.json):

- NVFP4: `X.weight` U8 [N, K/2] + `X.weight_scale` F8_E4M3 [N, K/16] + `X.weight_scale_2` F32 []
  (a multiplier, amax / (448 * 6)) + `X.input_scale` F32 [].
- MXFP4: `X.weight` U8 [N, K/2] + `X.weight_scale` U8 (E8M0) [N, K/32].
- FP8 2D blockwise (`fp8_pb_wo`): `X.weight` F8_E4M3 [N, K] + `X.weight_scale` F32
  [N/128, 1, K/128, 1] (rank 4: the grid with singleton axes; pairing squeezes them).
FP8 per tensor / per channel and MXFP8 look like compressed-tensors' and are the weight-scale
convention's. This one claims the packed `X.weight` (U8) and the rank-4 grids.
"""

from __future__ import annotations

from fp8doctor.checkpoint.config import ModelConfig
from fp8doctor.checkpoint.header import TensorInfo
from fp8doctor.layouts.conventions.base import Convention
from fp8doctor.layouts.conventions.experts import ROUTED_EXPERT_DIMS


def _owns(scale: TensorInfo, weight: TensorInfo | None) -> bool:
    if weight is None:
        return False
    return weight.dtype == "U8" or (len(scale.shape) == 4 and scale.shape[1] == 1 and scale.shape[3] == 1)


def _packed_weight(t: TensorInfo, config: ModelConfig | None) -> bool:
    """A U8 `X.weight` is packed FP4 only when config.json says ModelOpt wrote the checkpoint."""
    quant = config.quant if config is not None else None
    return (t.dtype == "U8" and t.name.endswith(".weight") and len(t.shape) >= 2 and quant is not None
            and (quant.quant_method or "").lower() == "modelopt")


CONVENTION = Convention(
    name="modelopt",
    summary="X.weight (U8 packed FP4 / FP8) + X.weight_scale (E4M3 / E8M0 / F32 rank 4) + X.weight_scale_2: ModelOpt",
    scale_suffix=".weight_scale",
    weight_suffixes=(".weight",),
    is_scale=_owns,
    dims=ROUTED_EXPERT_DIMS,
    needs_scale=_packed_weight,
    companions=((".weight_scale_2", "global"), (".input_scale", "input")),
)
