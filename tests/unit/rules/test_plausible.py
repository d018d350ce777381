"""rules/plausible.py: finite garbage that no producer writes, on the issue's own byte patterns
(through the oracle's whole-tensor forms, tests/helpers/direct_rules.py, which use its window,
subnormal bounds and saturation thresholds)."""

from __future__ import annotations

import numpy as np

from fp8doctor.layouts.codecs import decode
from fp8doctor.rules.plausible import sibling_outliers
from tests.helpers.direct_rules import implausible, saturated

HEAP = bytes.fromhex("c01e0d0deb7f0000f01e0d0deb7f0000201f0d0deb7f0000501f0d0deb7f0000")
"""An incrementing heap-pointer array as leftover memory holds it (the issue's evidence)."""


def _bad(encoding: str, data: bytes, shape: tuple[int, ...]) -> tuple[int, str]:
    dec = decode(encoding, data, shape)
    mask, why = implausible(encoding, dec.exponent, dec.valid)
    return int(mask.sum()), why


def test_heap_pointers_read_as_f32_are_implausible():
    n, why = _bad("f32", HEAP, (8,))
    assert n == 8 and "4 subnormal" in why and "4 below 2^-64" in why  # 2^-101 and 2^-134 alternately


def test_real_scales_are_plausible():
    rng = np.random.default_rng(0)
    amax = np.abs(rng.normal(0, 0.02, 4096)).astype(np.float32) + 1e-6
    assert _bad("f32", (amax / 448).astype("<f4").tobytes(), (4096,))[0] == 0
    e8m0 = (np.floor(np.log2(amax)) - 2 + 127).astype(np.uint8)
    assert _bad("e8m0", e8m0.tobytes(), (4096,))[0] == 0


def test_random_e8m0_bytes_are_mostly_implausible():
    data = np.random.default_rng(1).integers(0, 256, 32, dtype=np.uint8).tobytes()
    assert _bad("e8m0", data, (32,))[0] >= 8


def test_e4m3_and_f16_have_no_window():
    assert _bad("e4m3", bytes(range(0x01, 0x7E)), (125,))[0] == 0
    assert _bad("f16", np.array([6e-8, 60000], "<f2").tobytes(), (2,))[0] == 0


def test_saturation_needs_many_blocks_at_448():
    raw = np.full(4096, 0x70, dtype=np.uint8)
    raw[:7] = 0x7E  # what real NVFP4 exports have: the amax block and its ties
    box = np.ones(raw.shape, dtype=bool)
    assert saturated(raw, box) == 0
    raw[:2048] = 0x7E
    assert saturated(raw, box) == 2048


def test_single_entry_scales_against_their_siblings():
    exps = {f"m.{i}.weight_scale": -12 + (i % 3) for i in range(10)}
    assert sibling_outliers(exps) == {}
    exps["m.3.weight_scale"] = -101
    assert sibling_outliers(exps) == {"m.3.weight_scale": -90}
    assert sibling_outliers(dict(list(exps.items())[:3])) == {}  # too few to judge
