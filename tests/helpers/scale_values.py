"""What raw scale entries mean, computed from the format definitions with plain Python/numpy: the
references unit tests check fp8doctor's decoders (layouts/encodings.py, codecs, the tally) against."""

from __future__ import annotations

import math

import numpy as np


def e4m3fn(b: int) -> float:
    """OCP FP8 E4M3 ('fn': no infinities; S.1111.111 is NaN): bias 7, 3 mantissa bits, subnormals."""
    s, x, m = b >> 7, (b >> 3) & 0xF, b & 7
    if x == 0xF and m == 7:
        return math.nan
    v = math.ldexp(m, -9) if x == 0 else math.ldexp(8 + m, x - 10)
    return -v if s else v


def values(encoding: str, raw: np.ndarray) -> np.ndarray:
    """float64 value of each raw entry (unsigned ints of the encoding's width), same shape. E8M0 byte
    b is 2^(b-127) (0x00 is 2^-127, not zero), 0xFF NaN; BF16 is the top half of a float32."""
    raw = np.asarray(raw)
    with np.errstate(invalid="ignore"):
        if encoding == "e8m0":
            return np.where(raw == 0xFF, np.nan, np.ldexp(1.0, raw.astype(np.int64) - 127))
        if encoding == "e4m3":
            return np.array([e4m3fn(int(b)) for b in raw.reshape(-1)], dtype=np.float64).reshape(raw.shape)
        if encoding == "f16":
            return raw.astype(np.uint16).view(np.float16).astype(np.float64)
        if encoding == "bf16":
            return (raw.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        if encoding == "f32":
            return raw.astype(np.uint32).view(np.float32).astype(np.float64)
    raise KeyError(encoding)
