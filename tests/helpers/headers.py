"""Header entries built by hand, for unit tests of pairing, layouts and header-level rules."""

from __future__ import annotations

import math

from fp8doctor.checkpoint.dtypes import nbytes
from fp8doctor.checkpoint.header import TensorInfo


def info(name: str, dtype: str, shape: tuple[int, ...], file: str = "m.safetensors") -> TensorInfo:
    """The header entry of tensor `name` (its data at the start of the shard's data region)."""
    n = nbytes(dtype, math.prod(shape)) or 0
    return TensorInfo(name=name, dtype=dtype, shape=shape, begin=0, end=n, file=file, data_start=8)
