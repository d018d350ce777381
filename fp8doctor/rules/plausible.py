"""Finite garbage: scale values that decode to a number but cannot be a scale a producer computed.

A scale is amax / qmax of real weights (or of calibration activations): for bf16/f32 models that
is within a few dozen binades of 1. Leftover memory decodes to values far outside that: a heap
pointer `c01e0d0d eb7f0000` read as two F32s is 2^-101 and a subnormal 2^-134; random E8M0 bytes
are exponents spread over -127..127; 1e30 next to 1e-3. The window below is wide enough for every
export the producers wrote in the tests (their scales span 2^-16..2^14, global and input scales
and all-zero rows included; see tests/integration/producers) with 48 binades to spare on each side, and
narrow enough that such garbage falls outside it.

E4M3 scales (NVFP4 block scales) live in [2^-9, 448] by construction: every finite value is
plausible there; what goes wrong is saturation (many blocks clamped to 448 by a wrong global
scale) — `saturated_count`.
"""

from __future__ import annotations

import numpy as np

from fp8doctor.layouts.encodings import ALL, PLAUSIBLE_LOG2

SUBNORMAL_BELOW = {e.name: e.subnormal_below for e in ALL if e.subnormal_below is not None}
"""Exponents below these are subnormal in the encoding: no producer divides an amax into that."""

WINDOW_ENCODINGS = tuple(e.name for e in ALL if e.plausible is not None)
"""Encodings whose range reaches beyond the window (F16 and E4M3 cannot hold such values)."""

__all__ = [
    "PLAUSIBLE_LOG2",
    "SUBNORMAL_BELOW",
    "WINDOW_ENCODINGS",
    "out_of_window",
    "saturated_count",
    "sibling_outliers",
    "why_implausible",
]

E4M3_MAX_BYTE = 0x7E  # 448
SATURATED_MIN = 8
"""Entries at 448 beyond which an E4M3 scale tensor counts as saturated (with SATURATED_FRACTION)."""
SATURATED_FRACTION = 0.05
"""In real exports only the block holding the tensor's amax (and its ties) reach 448 exactly."""


def why_implausible(subnormal: int, below: int, above: int) -> str:
    """'3 subnormal, 1 below 2^-64': the counts a `scale-implausible` message gives (below excludes
    the subnormal ones)."""
    lo, hi = PLAUSIBLE_LOG2
    parts = [f"{subnormal:,} subnormal"] if subnormal else []
    parts += [f"{below:,} below 2^{lo}"] if below else []
    parts += [f"{above:,} above 2^{hi}"] if above else []
    return ", ".join(parts)


def out_of_window(encoding: str, exponent: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Entries (of `valid`: finite, positive, non-zero) whose magnitude no producer writes."""
    if encoding not in WINDOW_ENCODINGS:
        return np.zeros(exponent.shape, dtype=bool)
    lo, hi = PLAUSIBLE_LOG2
    return valid & ((exponent < lo) | (exponent > hi))


def saturated_count(n: int, total: int) -> bool:
    """True when `n` of `total` real E4M3 entries at 448 are more than real blocks reach."""
    return n >= SATURATED_MIN and n > SATURATED_FRACTION * total


def sibling_outliers(exponents: dict[str, int], span: int = 24, minimum: int = 4) -> dict[str, int]:
    """Single-entry scales (per-tensor, global, input) compared with the others of their role:
    name -> its distance in binades from their median, for those further than `span`. With fewer
    than `minimum` siblings nothing is judged."""
    if len(exponents) < minimum:
        return {}
    center = int(np.median(list(exponents.values())))
    return {n: e - center for n, e in exponents.items() if abs(e - center) > span}
