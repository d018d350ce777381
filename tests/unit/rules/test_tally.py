"""Unit tests of rules/tally.py against a direct numpy computation: the histogram and padding count
of `Tally` fed in any slabs, its verdict and quick band, `medians_of_many` over packed tensors in
any batches, `verdicts`, and `byte_histogram`, on random inputs; plus the edge cases (nothing fed,
all padding, one entry, NaN bytes). The reference decides "clean" from the decoded values, as the
rules define it (every real entry a positive normal finite value inside the plausibility window,
a power of two when asked, none further than the outlier span from the median, at most a quarter
further than the uninitialized rule's `far`), not from exponent fields."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fp8doctor.layouts.encodings import BY_NAME
from fp8doctor.rules import tally as tally_mod
from fp8doctor.rules.tally import TALLY_ITEMSIZE, Tally, byte_histogram, medians_of_many, supported, verdicts
from tests.helpers.scale_values import values

TALLIED = ["e8m0", "f32", "bf16", "f16"]
WINDOW = {"e8m0": (-64, 64), "f32": (-64, 64), "bf16": (-64, 64), "f16": (-14, 15)}
"""Exponents of the entries a tally may call clean: the plausibility window (F16: its normal range)."""
CENTERS = st.one_of(st.integers(-12, 12), st.integers(-70, 70))
"""Mostly inside every window (clean tensors), sometimes anywhere (implausible and out-of-range ones)."""
FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reference(enc: str, real: np.ndarray, check_mantissa: bool, span: int, far: int) -> tuple[bool, int | None]:
    """What Tally.verdict must say about the real entries `real`, computed directly."""
    x = values(enc, real.reshape(-1))
    if x.size == 0:
        return False, None
    lo, hi = WINDOW[enc]
    with np.errstate(all="ignore"):
        mant, e2 = np.frexp(np.where(np.isfinite(x) & (x > 0), x, 1.0))
    exps = e2.astype(np.int64) - 1
    valid = np.isfinite(x) & (x > 0) & (exps >= lo) & (exps <= hi)
    if enc == "e8m0":
        valid &= real.reshape(-1) != 0  # byte 0x00 counts as a zero scale (and is outside the window anyway)
    if not valid.all():
        return False, None
    if check_mantissa and enc != "e8m0" and not (mant == 0.5).all():
        return False, None
    median = int(np.median(exps))  # mean of the two middle ones, truncated towards zero
    dist = np.abs(exps - median)
    if dist.max() > span or np.count_nonzero(dist > far) * 4 > exps.size:
        return False, None
    return True, median


def _raw_entries(enc: str, rng: np.random.Generator, n: int, center: int, spread: int, mix: float,
                 mantissa: float) -> np.ndarray:
    """n raw entries: powers of two (or, a share `mantissa`, not) within `spread` binades of 2^center,
    a share `mix` of specials (NaN, zero, negative, infinity, subnormal, out of window, any bits)."""
    e = BY_NAME[enc]
    exps = center + rng.integers(-spread, spread + 1, n)
    frac = np.where(rng.random(n) < mantissa, 1.5, 1.0)
    if enc == "e8m0":
        raw = np.clip(exps + 127, 1, 254).astype(np.uint8)
    else:
        vals = np.ldexp(frac, exps)
        if enc == "f16":
            with np.errstate(over="ignore"):  # beyond F16's range: infinities and zeros, which is fine
                raw = vals.astype(np.float16).view(np.uint16)
        else:
            raw = vals.astype(np.float32).view(np.uint32)
            if enc == "bf16":
                raw = (raw >> 16).astype(np.uint16)
    specials = {
        "e8m0": [0xFF, 0x00, 0x01, 0xFE, 0x3E, 0xC0],
        "f32": [0x7FC00000, 0, 0x80000000, 0xBF800000, 0x7F800000, 0x00000001, 0x7E800000, 0x1F000000],
        "bf16": [0x7FC0, 0, 0x8000, 0xBF80, 0x7F80, 0x0001, 0x7E80, 0x1F00],
        "f16": [0x7E00, 0, 0x8000, 0xBC00, 0x7C00, 0x0001, 0x03FF],
    }[enc]
    pick = rng.random(n) < mix
    garbage = rng.integers(0, 1 << (8 * e.itemsize), n, dtype=np.uint64).astype(e.raw)
    special = np.asarray(specials, dtype=np.uint64).astype(e.raw)[rng.integers(0, len(specials), n)]
    out = np.where(pick, np.where(rng.random(n) < 0.5, special, garbage), raw.astype(e.raw))
    return out.astype(e.raw)


def _feed(t: Tally, data: bytes, rows: int, row_bytes: int, rng: np.random.Generator) -> None:
    """Feed `data` to `t` in row slabs of random sizes, as a reader of bounded reads would."""
    r = 0
    while r < rows:
        k = int(rng.integers(1, rows - r + 1))
        t.add(data[r * row_bytes:(r + k) * row_bytes], r)
        r += k


@FAST
@given(enc=st.sampled_from(TALLIED), rank=st.integers(1, 3), dims=st.lists(st.integers(1, 9), min_size=3, max_size=3),
       cut=st.lists(st.integers(0, 4), min_size=3, max_size=3), center=CENTERS,
       spread=st.sampled_from([0, 1, 3, 3, 20, 40]), mix=st.sampled_from([0.0, 0.0, 0.0, 0.02, 0.3]),
       mantissa=st.sampled_from([0.0, 0.0, 0.0, 0.1]), check_mantissa=st.booleans(),
       pad=st.sampled_from(["fill", "dirty", None]),
       span=st.sampled_from([0, 2, 8, 32, 32]), far=st.sampled_from([1, 4, 24, 24]), small_slab=st.booleans(),
       seed=st.integers(0, 2**31))
def test_tally_equals_the_direct_computation(enc, rank, dims, cut, center, spread, mix, mantissa, check_mantissa,
                                             pad, span, far, small_slab, seed):
    rng = np.random.default_rng(seed)
    e = BY_NAME[enc]
    f = e.exponent_field
    shape = tuple(dims[:rank])
    box = tuple(max(0, d - c) for d, c in zip(shape, cut[:rank]))
    raw = _raw_entries(enc, rng, math.prod(shape), center, spread, mix, mantissa).reshape(shape)
    real_mask = np.zeros(shape, dtype=bool)
    real_mask[tuple(slice(0, b) for b in box)] = True
    want = None
    if pad is not None:
        want = int(np.frombuffer(e.fills["zero" if rng.random() < 0.5 else "one"], dtype=e.raw)[0])
        if pad == "fill":
            raw[~real_mask] = want
    real = raw[tuple(slice(0, b) for b in box)]
    data = raw.tobytes()
    with pytest.MonkeyPatch.context() as mp:
        if small_slab:  # internal slabs of a few entries: rows split anywhere
            mp.setattr(tally_mod, "SLAB", e.itemsize * int(rng.integers(1, 4)))
        t = Tally(enc, shape, box, want, check_mantissa)
        _feed(t, data, shape[0], len(data) // shape[0], rng)

    assert np.array_equal(t.hist, np.bincount(real.reshape(-1) >> f.shift, minlength=f.bins)[: f.bins])
    assert t.hist.sum() == real.size
    assert t.pad_bad == (int(np.count_nonzero(raw[~real_mask] != want)) if want is not None else 0)
    if pad == "fill":
        assert t.pad_bad == 0
    assert t.verdict(span, far) == reference(enc, real, check_mantissa, span, far)


@FAST
@given(dims=st.lists(st.integers(1, 12), min_size=1, max_size=3), cut=st.integers(0, 3), center=CENTERS,
       spread=st.sampled_from([0, 1, 3, 20]), mix=st.sampled_from([0.0, 0.0, 0.05]),
       span=st.sampled_from([0, 2, 8, 32]), far=st.sampled_from([1, 4, 24]), seed=st.integers(0, 2**31))
def test_the_quick_band_is_the_least_and_greatest_exponent_when_that_proves_clean(dims, cut, center, spread, mix,
                                                                                  span, far, seed):
    rng = np.random.default_rng(seed)
    shape = tuple(dims)
    box = (max(0, shape[0] - cut), *shape[1:])
    raw = _raw_entries("e8m0", rng, math.prod(shape), center, spread, mix, 0.0).reshape(shape)
    real = raw[tuple(slice(0, b) for b in box)]
    quick = Tally("e8m0", shape, box, 0, False, quick=True)
    assert quick.quick
    _feed(quick, raw.tobytes(), shape[0], raw.nbytes // shape[0], rng)
    assert quick.hist.sum() == 0  # the quick test histograms nothing
    assert quick.pad_bad == int(np.count_nonzero(raw[box[0]:] != 0))
    exps = real.reshape(-1).astype(np.int64) - 127
    ok = (real.size > 0 and bool((real >= 127 - 64).all() and (real <= 127 + 64).all())
          and int(exps.max() - exps.min()) <= min(span, far))
    band = quick.band(span, far)
    assert band == ((int(exps.min()), int(exps.max())) if ok else None)
    if band is not None:
        clean, median = reference("e8m0", real, False, span, far)
        assert clean and band[0] <= median <= band[1]


def test_only_one_byte_exponent_codes_take_the_quick_test():
    assert Tally("e8m0", (4,), (4,), None, False, quick=True).quick
    assert not Tally("f32", (4,), (4,), None, False, quick=True).quick
    assert not Tally("bf16", (4,), (4,), None, True, quick=True).quick
    assert not Tally("e8m0", (4,), (4,), None, False).quick
    assert Tally("e8m0", (4,), (4,), None, False).band(32, 24) is None  # no band without the quick test


@FAST
@given(enc=st.sampled_from(TALLIED), sizes=st.lists(st.integers(0, 40), min_size=1, max_size=30),
       gaps=st.lists(st.integers(0, 5), min_size=30, max_size=30), center=CENTERS,
       spread=st.sampled_from([0, 1, 3, 30]), mix=st.sampled_from([0.0, 0.0, 0.05, 0.5]),
       mantissa=st.sampled_from([0.0, 0.05]), check_mantissa=st.booleans(), span=st.sampled_from([0, 2, 8, 32]),
       far=st.sampled_from([1, 4, 24]), batch=st.sampled_from([None, (7, 3), (64, 1000), (1, 1)]),
       seed=st.integers(0, 2**31))
def test_medians_of_many_equals_the_direct_computation_per_tensor(enc, sizes, gaps, center, spread, mix, mantissa,
                                                                  check_mantissa, span, far, batch, seed):
    rng = np.random.default_rng(seed)
    starts, counts, pos = [], [], 0
    for size, gap in zip(sizes, gaps):
        pos += gap  # other bytes of the read between tensors: never counted
        starts.append(pos)
        counts.append(size)
        pos += size
    raw = _raw_entries(enc, rng, pos, center, spread, mix, mantissa)
    groups = []
    inner = tally_mod._medians

    def spy(encoding, data, group_starts, group_counts, *rest):
        groups.append((group_starts, group_counts))
        return inner(encoding, data, group_starts, group_counts, *rest)

    with pytest.MonkeyPatch.context() as mp:
        if batch is not None:  # batches of a few entries or tensors: groups end anywhere
            mp.setattr(tally_mod, "BATCH_ENTRIES", batch[0])
            mp.setattr(tally_mod, "BATCH_TENSORS", batch[1])
        mp.setattr(tally_mod, "_medians", spy)
        got = medians_of_many(enc, raw.tobytes(), starts, counts, check_mantissa, span, far)
        max_entries, max_tensors = tally_mod.BATCH_ENTRIES, tally_mod.BATCH_TENSORS
    # every tensor judged once, in order, in groups of bounded size (one tensor may exceed the bound alone)
    assert [s for gs, _ in groups for s in gs] == starts and [c for _, gc in groups for c in gc] == counts
    for gs, gc in groups:
        assert len(gs) == 1 or (len(gs) <= max_tensors and gs[-1] + gc[-1] - gs[0] <= max_entries)
    want = []
    for s, c in zip(starts, counts):
        ok, median = reference(enc, raw[s:s + c], check_mantissa, span, far)
        want.append(median if ok else None)
    assert got == want


def test_medians_of_many_reads_from_an_offset_into_the_buffer():
    raw = np.array([0xFF] * 5 + [127, 128, 129] + [0xFF] * 3 + [100], dtype=np.uint8)  # NaN around the tensors
    assert medians_of_many("e8m0", raw.tobytes(), [5, 11], [3, 1], False, 8, 24) == [1, 100 - 127]
    f32 = np.array([np.nan, 1.0, 2.0, 4.0, 8.0], dtype="<f4")
    assert medians_of_many("f32", memoryview(f32.tobytes()), [1], [4], True, 8, 24) == [1]  # int((1 + 2) / 2)
    neg = np.array([2.0 ** -5, 2.0 ** -2], dtype="<f4")
    assert medians_of_many("f32", neg.tobytes(), [0], [2], True, 8, 24) == [-3]  # -3.5 truncated towards zero


def test_the_median_of_an_even_count_is_truncated_towards_zero():
    """Exponents -5 and -2: the mean -3.5 is -3 (as int() and np.median say), not -4 (floor)."""
    f32 = np.array([2.0 ** -5, 2.0 ** -2], dtype="<f4")
    t = Tally("f32", (2,), (2,), None, True)
    t.add(f32.tobytes(), 0)
    assert t.verdict(8, 24) == (True, -3) == reference("f32", f32.view(np.uint32), True, 8, 24)
    e8 = np.array([127 + 3, 127 + 6], dtype=np.uint8)  # 4.5 -> 4
    t = Tally("e8m0", (2,), (2,), None, False)
    t.add(e8.tobytes(), 0)
    assert t.verdict(8, 24) == (True, 4)


@pytest.mark.parametrize("n_far", [0, 1, 2])
def test_a_quarter_of_far_entries_is_still_clean(n_far):
    """The uninitialized rule's far part fires above a quarter of the entries, not at it."""
    codes = np.array([127] * (4 - n_far) + [127 + 10] * n_far, dtype=np.uint8)  # far=4 binades, span 32
    t = Tally("e8m0", (4,), (4,), None, False)
    t.add(codes.tobytes(), 0)
    want = (True, 0) if n_far <= 1 else (False, None)
    assert t.verdict(32, 4) == want == reference("e8m0", codes, False, 32, 4)
    assert medians_of_many("e8m0", codes.tobytes(), [0], [4], False, 32, 4) == [want[1]]


def test_verdicts_of_histograms_directly():
    bins = BY_NAME["e8m0"].exponent_field.bins
    hist = np.zeros((4, bins), dtype=np.int64)
    hist[0, 127] = 3  # three entries of 2^0
    hist[1, [120, 130]] = [1, 1]  # 2^-7 and 2^3: median int(-4 / 2) = -2
    hist[2, 0xFF] = 1  # NaN
    assert verdicts("e8m0", hist, None, 32, 24) == [0, -2, None, None]  # row 3: nothing
    assert verdicts("e8m0", hist, np.array([0, 1, 0, 0]), 32, 24) == [0, None, None, None]
    assert verdicts("e8m0", hist, None, 4, 24) == [0, None, None, None]  # 2^3 is 5 from -2
    assert verdicts("e8m0", np.zeros((3, bins), dtype=np.int64), None, 32, 24) == [None] * 3
    assert verdicts("e8m0", np.zeros((0, bins), dtype=np.int64), None, 32, 24) == []


@pytest.mark.parametrize("n", [0, 1, 2, 255, 4095, 4096, 4097, 10_001, 70_000])
def test_byte_histogram_is_bincount(n):
    codes = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8)
    if n > 10:
        codes[: n // 3] = 0xFF  # a heavy bin: pair counts well above one byte's worth
    assert np.array_equal(byte_histogram(codes), np.bincount(codes, minlength=256))
    strided = np.repeat(codes, 2)[::2]
    if n > 1:
        assert not strided.flags.c_contiguous
    assert np.array_equal(byte_histogram(strided), np.bincount(codes, minlength=256))


# -- edge cases ---------------------------------------------------------------------------------


def test_supported_encodings_and_shapes():
    assert TALLY_ITEMSIZE == {"e8m0": 1, "f32": 4, "bf16": 2, "f16": 2}
    assert all(supported(enc, (3, 4)) for enc in TALLIED)
    assert not supported("e4m3", (3, 4))  # E4M3 always goes to the mask-based rules
    assert not supported("f32", ())
    assert not supported("f32", (0, 4)) and not supported("e8m0", (4, 0))


@pytest.mark.parametrize("enc", TALLIED)
def test_nothing_fed_or_nothing_real_is_never_clean(enc):
    e = BY_NAME[enc]
    fill = int(np.frombuffer(e.fills["zero"], dtype=e.raw)[0])
    assert Tally(enc, (4, 4), (4, 4), None, False).verdict(32, 24) == (False, None)
    # all padding: a box of no rows or no columns
    raw = np.full((4, 4), fill, dtype=e.raw)
    raw[3, 3] = fill ^ 1
    for box in [(0, 4), (4, 0), (0, 0)]:
        t = Tally(enc, (4, 4), box, fill, False)
        t.add(raw.tobytes(), 0)
        assert t.hist.sum() == 0 and t.pad_bad == 1 and t.verdict(32, 24) == (False, None)


@pytest.mark.parametrize(("enc", "one", "nan"), [("e8m0", 0x84, 0xFF), ("f32", 0x42000000, 0x7FC00000),
                                                ("bf16", 0x4200, 0x7FC0), ("f16", 0x5000, 0x7E00)])
def test_a_single_entry_and_a_nan_entry(enc, one, nan):
    e = BY_NAME[enc]
    t = Tally(enc, (1,), (1,), None, True)
    t.add(np.array([one], dtype=e.raw).tobytes(), 0)
    assert t.verdict(0, 0) == (True, 5)  # every `one` is 32 = 2^5
    t = Tally(enc, (2, 3), (2, 3), None, False)
    entries = np.array([one] * 5 + [nan], dtype=e.raw)
    t.add(entries.tobytes(), 0)
    assert t.verdict(64, 64) == (False, None)
    assert t.hist[nan >> e.exponent_field.shift] == 1


def test_padding_mismatches_are_counted_in_every_axis():
    raw = np.zeros((3, 4, 5), dtype=np.uint8)
    raw[:2, :3, :4] = 127  # the real box
    raw[2, 0, 0] = raw[0, 3, 1] = raw[1, 1, 4] = 9  # one dirty entry past each axis of the box
    t = Tally("e8m0", raw.shape, (2, 3, 4), 0, False)
    t.add(raw[:1].tobytes(), 0)
    t.add(raw[1:].tobytes(), 1)
    assert t.pad_bad == 3 and t.verdict(8, 8) == (True, 0)
    assert t.rows_per_slab() == tally_mod.SLAB // 20
