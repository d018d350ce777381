"""Decode scale bytes into what the rules ask about: NaN, zero, negative, exponent, power of two.

Decoding is done on raw bytes with numpy (no torch, no ml_dtypes): float-to-E8M0 conversions
disagree between libraries, and the rules need the bytes' exact meaning, not a library's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fp8doctor.layouts.encodings import BY_NAME


@dataclass(frozen=True)
class Decoded:
    """Per-entry facts about a scale tensor (all arrays have the stored shape)."""

    nan: np.ndarray
    zero: np.ndarray
    negative: np.ndarray
    exponent: np.ndarray
    """int32: floor(log2(|x|)) where finite and non-zero; elsewhere meaningless (0, or b - 127 for
    E8M0): read it under `valid`."""
    pow2: np.ndarray  # exact power of two (finite, positive)
    raw: np.ndarray  # the entries as unsigned ints of their width (for fill comparisons)

    @property
    def valid(self) -> np.ndarray:
        """Entries with a usable exponent: finite, non-zero, non-negative."""
        valid: np.ndarray = ~(self.nan | self.zero | self.negative)
        return valid


def raw_view(encoding: str, data: bytes | memoryview, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(data, dtype=BY_NAME[encoding].raw).reshape(shape)


def _floats(encoding: str, raw: np.ndarray) -> np.ndarray:
    return BY_NAME[encoding].to_float(raw)


def decode(encoding: str, data: bytes | memoryview, shape: tuple[int, ...]) -> Decoded:
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
    raw = np.array([entry], dtype=BY_NAME[encoding].raw)
    val = float(_floats(encoding, raw)[0])
    return f"{val:.6g}"
