"""safetensors dtypes: bits per element, as the reference reader (safetensors >= 0.6.1) knows them."""

from __future__ import annotations

DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}

FP8_WEIGHT_DTYPES = frozenset({"F8_E4M3", "F8_E5M2", "F8_E4M3FNUZ", "F8_E5M2FNUZ"})
"""Dtypes of block-quantized FP8 weights."""

PACKED_WEIGHT_DTYPES = frozenset({"I8", "U8", "F4"})
"""Dtypes FP4 weights are stored in: two codes per byte (I8/U8), or counted per element (F4)."""

# Which dtypes hold scales, and how they decode: layouts/encodings.py (one record per encoding).


def nbytes(dtype: str, numel: int) -> int | None:
    """Bytes for `numel` elements, or None when they do not fill a whole number of bytes."""
    bits = DTYPE_BITS[dtype] * numel
    if bits % 8:
        return None
    return bits // 8
