"""What a checkpoint naming convention is: the `Convention` record every file of this package
fills in, and the pieces several conventions share."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from fp8doctor.checkpoint.config import ModelConfig
from fp8doctor.checkpoint.dtypes import FP8_WEIGHT_DTYPES, PACKED_WEIGHT_DTYPES
from fp8doctor.checkpoint.header import TensorInfo

MX_GROUP = 32
"""Weight elements per scale entry of OCP MX formats (MXFP4, MXFP8): E8M0 scales."""
NV_GROUP = 16
"""Weight elements per scale entry of NVFP4: E4M3 scales."""

DimGetter = Callable[[dict[str, int]], "int | None"]


@dataclass(frozen=True, eq=False)  # identity: the registry lists a shared rule once
class DimRule:
    """Which config.json dims give the real size of a weight's stored (padded) dims.

    `pattern` is searched in the weight's name; `axes` maps an axis counted from the end of the
    weight's element shape (-1: K, -2: N, -3: experts of fused experts) to a getter of the real
    size from config dims. A config dim only shrinks a stored dim that looks like it rounded up."""

    pattern: re.Pattern[str]
    axes: dict[int, DimGetter]


def dim(key: str, mul: int = 1) -> DimGetter:
    """Getter of config dim `key` (times `mul`), None when config.json does not give it."""
    return lambda d: d[key] * mul if key in d else None


Shape = tuple[int, ...]


def stored_element_shape(weight: TensorInfo) -> tuple[Shape, str]:
    """The weight's shape in elements and whether its scales cover 2-D blocks ('block') or 1-D
    groups along K ('group'): packed FP4 (two codes per I8/U8 byte) and F4 weights are grouped."""
    shape = weight.shape
    if weight.dtype in ("I8", "U8") and shape:
        return (*shape[:-1], shape[-1] * 2), "group"
    if weight.dtype == "F4":
        return shape, "group"
    return shape, "block"


def group_for(encoding: str) -> int:
    """Group size when config.json gives none: NVFP4's 16 for E4M3 scales, else MX's 32."""
    return NV_GROUP if encoding == "e4m3" else MX_GROUP


def always(scale: TensorInfo, weight: TensorInfo | None) -> bool:
    return True


def never(t: TensorInfo, config: ModelConfig | None) -> bool:
    return False


def quantized_fp8_weight(t: TensorInfo, config: ModelConfig | None) -> bool:
    """An FP8 weight that must have a scale beside it."""
    return t.dtype in FP8_WEIGHT_DTYPES and t.numel > 0 and t.name.endswith("weight")


def packed_weight_named(suffix: str, dtypes: tuple[str, ...] = ("U8", "I8")
                        ) -> Callable[[TensorInfo, ModelConfig | None], bool]:
    """`needs_scale` of packed weights (two FP4 codes per U8/I8 byte, or ints packed in I32) named
    `...<suffix>`."""
    def needs(t: TensorInfo, config: ModelConfig | None) -> bool:
        return t.dtype in dtypes and t.name.endswith(suffix)
    return needs


def is_quantized(weight: TensorInfo | None) -> bool:
    return weight is not None and weight.dtype in FP8_WEIGHT_DTYPES | PACKED_WEIGHT_DTYPES


@dataclass(frozen=True)
class Convention:
    """One checkpoint naming convention: how its scale tensors are found beside their weights,
    where their block or group comes from, and which config dims shrink their weights' stored dims.

    Pairing: a tensor whose name ends with `scale_suffix` is a scale of the weight named with the
    suffix replaced by the first of `weight_suffixes` present, when `is_scale(scale, weight)`
    (weight None when none is present). Conventions sharing a scale suffix are tried in registry
    order; the first that claims the scale is its convention."""

    name: str
    summary: str
    scale_suffix: str
    weight_suffixes: tuple[str, ...]
    is_scale: Callable[[TensorInfo, TensorInfo | None], bool] = always
    element_shape: Callable[[TensorInfo], tuple[Shape, str]] = stored_element_shape
    """The weight's shape in elements and 'block' or 'group' (how its scale covers it)."""
    default_group: Callable[[str], int] = group_for
    """Group size (by scale encoding) of 'group' weights when config.json gives none."""
    dims: tuple[DimRule, ...] = ()
    """Config dims that shrink stored dims of weights named this way (matched on every weight)."""
    needs_scale: Callable[[TensorInfo, ModelConfig | None], bool] = never
    """Whether a tensor is a weight of this convention that must have a scale."""
    ignored_suffixes: tuple[str, ...] = field(default_factory=tuple)
    """Names ending so are scales of something else (activations, KV cache): never paired."""
    companions: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    """(suffix, role) of the second-level scales this convention keeps beside a quantized weight of
    the same module: role 'global' (NVFP4's per-tensor scale) or 'input' (activation scales). They
    are value-checked, and the completeness rules ask which a weight lacks."""
    divisors: tuple[str, ...] = field(default_factory=tuple)
    """Those global companions kept as divisors, (448 * 6) / amax (>= 1); the other global ones are
    multipliers, amax / (448 * 6) (< 2): the single-entry rule checks which side of 1 they sit."""
    swizzled: bool = False
    """Scales may be stored through torchao's `to_blocked` (128x4 tiles): a scale whose shape is the
    swizzled shape of its [rows, groups] grid (and not the grid itself) is laid out that way."""
