"""Every scale encoding fp8doctor decodes, one record each: the single place for its facts.

An encoding is how a scale tensor's bytes are read: which safetensors dtypes hold it, its width,
the unsigned integer view of one entry, the bytes of the `zero`/`one` fills, how raw entries turn
into floats, and where its sign+exponent field sits (what the histogram fast path of the rules
and their exponent thresholds work from). Codecs, the tally, the scanner, the dump renderers and
the synthetic checkpoints all read these records; adding an encoding is one record here.

U8 scales are E8M0 exponent bytes (gpt-oss and compressed-tensors MXFP4 store them as U8), so
the U8 dtype decodes as `e8m0`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


def _e4m3fn_table() -> np.ndarray:
    """float32 value of every E4M3FN byte (0x7F/0xFF are NaN; OCP FP8, the 'fn' variant)."""
    b = np.arange(256, dtype=np.int32)
    sign = np.where(b & 0x80, -1.0, 1.0)
    exp = (b >> 3) & 0xF
    man = b & 0x7
    val = np.where(exp == 0, man / 8.0 * 2.0 ** -6, (1 + man / 8.0) * 2.0 ** (exp - 7.0))
    val = sign * val
    val[(b & 0x7F) == 0x7F] = np.nan
    return val.astype(np.float32)


E4M3FN_TABLE = _e4m3fn_table()
"""float32 value of each E4M3FN byte (read-only): the one E4M3 table codecs, synth and verify use."""
E4M3FN_TABLE.setflags(write=False)


@dataclass(frozen=True)
class ExponentField:
    """Where a float encoding's biased sign+exponent field sits in the raw entry, for the
    histogram fast path: `raw >> shift` is the field; fields `lo..hi` are positive normal finite
    values inside the encoding's plausibility window (anything else sends the tensor to the
    mask-based rules), exponent = field - bias; `mantissa` masks the bits that make a value not a power of two."""

    shift: int
    bins: int
    lo: int
    hi: int
    bias: int
    mantissa: int


def _f32(raw: np.ndarray) -> np.ndarray:
    return raw.view(np.dtype("<f4")).astype(np.float32, copy=False)


def _bf16(raw: np.ndarray) -> np.ndarray:
    return (raw.astype(np.uint32) << 16).view(np.float32)


def _f16(raw: np.ndarray) -> np.ndarray:
    return raw.view(np.dtype("<f2")).astype(np.float32)


def _e4m3(raw: np.ndarray) -> np.ndarray:
    values: np.ndarray = E4M3FN_TABLE[raw]
    return values


def _e8m0(raw: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        out = np.ldexp(np.float32(1.0), raw.astype(np.int32) - 127).astype(np.float32)
    out[raw == 0xFF] = np.nan
    return out


@dataclass(frozen=True)
class Encoding:
    """One scale encoding. `name` is the string layouts, reports and options use ("e8m0")."""

    name: str
    dtypes: tuple[str, ...]
    """safetensors dtypes stored in this encoding."""
    raw: np.dtype
    """Unsigned integer view of one entry (little-endian)."""
    fills: dict[str, bytes]
    """Fill name -> the raw bytes of one padded entry."""
    to_float: Callable[[np.ndarray], np.ndarray]
    """Raw entries -> float32 values (NaN where the encoding says NaN)."""
    ieee_float: bool
    """A sign/exponent/mantissa float (F32/BF16/F16): can be negative, and in a ue8m0 checkpoint
    must be a power of two."""
    exponent_field: ExponentField | None
    """Set for encodings the histogram fast path handles."""
    decode_width: int
    """Columns `dump --decode` gives one decoded entry."""
    exponent_range: tuple[int, int] = field(default=(0, 0))
    """Smallest and largest exponent of a positive finite value (subnormals included)."""
    plausible: tuple[int, int] | None = None
    """Exponents a real scale in this encoding can take (rules/plausible.py); None when every finite
    value can be one (E4M3, F16 reach no further than real scales do)."""
    subnormal_below: int | None = None
    """Exponents below this are subnormal: no producer divides an amax into that."""

    @property
    def itemsize(self) -> int:
        return self.raw.itemsize


PLAUSIBLE_LOG2 = (-64, 64)
"""Binades a finite, non-zero scale may take where the encoding reaches further (E8M0, F32, BF16):
outside, no real weight or activation amax made it (rules/plausible.py says how it was chosen)."""
_PLO, _PHI = PLAUSIBLE_LOG2

E8M0 = Encoding("e8m0", ("F8_E8M0", "U8"), np.dtype(np.uint8), {"zero": b"\x00", "one": b"\x7f"}, _e8m0,
                ieee_float=False, exponent_field=ExponentField(0, 256, 127 + _PLO, 127 + _PHI, 127, 0),
                decode_width=6, exponent_range=(-127, 127), plausible=PLAUSIBLE_LOG2)
E4M3 = Encoding("e4m3", ("F8_E4M3",), np.dtype(np.uint8), {"zero": b"\x00", "one": b"\x38"}, _e4m3,
                ieee_float=False, exponent_field=None, decode_width=10, exponent_range=(-9, 8))
F32 = Encoding("f32", ("F32",), np.dtype("<u4"), {"zero": b"\x00\x00\x00\x00", "one": b"\x00\x00\x80\x3f"}, _f32,
               ieee_float=True, exponent_field=ExponentField(23, 512, 127 + _PLO, 127 + _PHI, 127, 0x7FFFFF),
               decode_width=12, exponent_range=(-149, 127), plausible=PLAUSIBLE_LOG2, subnormal_below=-126)
BF16 = Encoding("bf16", ("BF16",), np.dtype("<u2"), {"zero": b"\x00\x00", "one": b"\x80\x3f"}, _bf16,
                ieee_float=True, exponent_field=ExponentField(7, 512, 127 + _PLO, 127 + _PHI, 127, 0x7F),
                decode_width=12, exponent_range=(-133, 127), plausible=PLAUSIBLE_LOG2, subnormal_below=-126)
F16 = Encoding("f16", ("F16",), np.dtype("<u2"), {"zero": b"\x00\x00", "one": b"\x00\x3c"}, _f16,
               ieee_float=True, exponent_field=ExponentField(10, 64, 1, 30, 15, 0x3FF), decode_width=12,
               exponent_range=(-24, 15))

ALL: tuple[Encoding, ...] = (E8M0, F32, BF16, F16, E4M3)
BY_NAME: dict[str, Encoding] = {e.name: e for e in ALL}
BY_DTYPE: dict[str, Encoding] = {dt: e for e in ALL for dt in e.dtypes}

FLOAT_ENCODINGS: frozenset[str] = frozenset(e.name for e in ALL if e.ieee_float)
"""Names of the IEEE float encodings (the ones a ue8m0 checkpoint wants as powers of two)."""

EXPONENT_OFFSET = -min(e.exponent_range[0] for e in ALL) + 11
"""Added to any encoding's exponent to make it a non-negative histogram bin (160: f32 subnormals
reach -149)."""


def encoding(name: str) -> Encoding:
    """The record of encoding `name` (KeyError for an unknown one)."""
    return BY_NAME[name]


def of_dtype(dtype: str) -> Encoding | None:
    """The encoding a scale of safetensors dtype `dtype` is decoded with, or None."""
    return BY_DTYPE.get(dtype)


