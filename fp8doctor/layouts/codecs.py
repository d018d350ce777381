"""Decode scale bytes into what the rules ask about: NaN, zero, negative, exponent, power of two.

Decoding is done on raw bytes with numpy (no torch, no ml_dtypes): float-to-E8M0 conversions
disagree between libraries, and the rules need the bytes' exact meaning, not a library's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _e4m3fn_table() -> np.ndarray:
    """float32 value of every E4M3FN byte (0x7F/0xFF are NaN)."""
    b = np.arange(256, dtype=np.int32)
    sign = np.where(b & 0x80, -1.0, 1.0)
    exp = (b >> 3) & 0xF
    man = b & 0x7
    val = np.where(exp == 0, man / 8.0 * 2.0 ** -6, (1 + man / 8.0) * 2.0 ** (exp - 7.0))
    val = sign * val
    val[(b & 0x7F) == 0x7F] = np.nan
    return val.astype(np.float32)


_E4M3FN = _e4m3fn_table()


@dataclass(frozen=True)
class Decoded:
    """Per-entry facts about a scale tensor (all arrays have the stored shape)."""

    nan: np.ndarray
    zero: np.ndarray
    negative: np.ndarray
    exponent: np.ndarray  # int32: floor(log2(|x|)) where finite and non-zero, else 0
    pow2: np.ndarray  # exact power of two (finite, positive)
    raw: np.ndarray  # the entries as unsigned ints of their width (for fill comparisons)

    @property
    def valid(self) -> np.ndarray:
        """Entries with a usable exponent: finite, non-zero, non-negative."""
        return ~(self.nan | self.zero | self.negative)


def raw_view(encoding: str, data: bytes, shape: tuple[int, ...]) -> np.ndarray:
    dtype = {"e8m0": np.uint8, "e4m3": np.uint8, "f32": np.dtype("<u4"), "bf16": np.dtype("<u2"),
             "f16": np.dtype("<u2")}[encoding]
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _floats(encoding: str, raw: np.ndarray) -> np.ndarray:
    if encoding == "f32":
        return raw.view(np.dtype("<f4")).astype(np.float32, copy=False)
    if encoding == "bf16":
        return (raw.astype(np.uint32) << 16).view(np.float32)
    if encoding == "f16":
        return raw.view(np.dtype("<f2")).astype(np.float32)
    if encoding == "e4m3":
        return _E4M3FN[raw]
    raise ValueError(encoding)


def decode(encoding: str, data: bytes, shape: tuple[int, ...]) -> Decoded:
    raw = raw_view(encoding, data, shape)
    if encoding == "e8m0":
        nan = raw == 0xFF
        zero = raw == 0x00
        neg = np.zeros(raw.shape, dtype=bool)
        exponent = raw.astype(np.int32) - 127
        return Decoded(nan, zero, neg, exponent, ~nan, raw)
    with np.errstate(all="ignore"):
        x = _floats(encoding, raw)
        nan = ~np.isfinite(x)
        zero = x == 0
        neg = (x < 0) & ~nan
        mant, exp = np.frexp(np.abs(np.where(nan, 1.0, x)))
    exponent = np.where(nan | zero, 0, exp - 1).astype(np.int32)
    pow2 = (mant == 0.5) & ~nan & ~zero & ~neg
    return Decoded(nan, zero, neg, exponent, pow2, raw)


def describe_value(encoding: str, entry: int) -> str:
    """Human text for one raw entry: '0xFF (NaN)', '0x85 (2^6)', '1.5e-05'."""
    if encoding == "e8m0":
        if entry == 0xFF:
            return "0xFF (NaN)"
        if entry == 0:
            return "0x00 (2^-127, zero)"
        return f"0x{entry:02X} (2^{entry - 127})"
    raw = np.array([entry], dtype={"f32": np.uint32, "e4m3": np.uint8}.get(encoding, np.uint16))
    val = float(_floats(encoding, raw)[0])
    return f"{val:.6g}"
