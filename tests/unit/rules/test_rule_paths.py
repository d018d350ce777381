"""The rules are evaluated once, in rules/content.py, and its fast paths are optimisations only:
on random scale tensors (every encoding, random padding, NaN, zeros, garbage, outliers, swizzled
and 0-d tensors) the histogram verdict (rules/tally.py), the row-slab evaluator at any slab size
with and without its E8M0 byte-histogram pass (check_tensor_slabs, check_tensor), its entry masks
for `dump` (mark_tensor_slabs) and the entry point judge_scale_tensor give exactly what the direct
whole-tensor evaluation of every rule (tests/helpers/direct_rules.py, the oracle) gives."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fp8doctor.checkpoint.header import TensorInfo
from fp8doctor.layouts.encodings import ALL, BY_NAME
from fp8doctor.layouts.model import ScaleLayout
from fp8doctor.rules import content
from fp8doctor.rules.content import UNINIT_FAR, ContentOptions, check_tensor, check_tensor_slabs
from fp8doctor.rules.judge import exact_median, judge_scale_tensor, tally_for
from tests.helpers.direct_rules import direct_check_tensor

DTYPES = [(dt, e.name) for e in ALL for dt in e.dtypes]


def _values(enc: str, rng: np.random.Generator, n: int, center: int, mix: float) -> bytes:
    """n entries: most valid scales near 2^center, a share `mix` of anything at all."""
    e = BY_NAME[enc]
    exps = np.clip(center + rng.integers(-3, 4, n), -20, 20)
    if enc == "e8m0":
        raw = (exps + 127).astype(np.uint8)
    elif enc == "e4m3":
        raw = np.clip((np.clip(exps, -6, 8) + 7) << 3, 0, 0x7E).astype(np.uint8)
    else:
        ftype = {"f32": np.float32, "bf16": np.float32, "f16": np.float16}[enc]
        vals = np.ldexp(np.ones(n), exps).astype(ftype)
        if enc == "bf16":
            raw = (vals.view(np.uint32) >> 16).astype(np.uint16)
        else:
            raw = vals.view(e.raw)
    garbage = rng.integers(0, 1 << (8 * e.itemsize), n, dtype=np.uint64).astype(e.raw)
    pick = rng.random(n) < mix
    special = rng.random(n) < 0.5 * mix
    out = np.where(pick, garbage, raw).astype(e.raw)
    out = np.where(special, np.zeros(n, dtype=e.raw), out)  # zero stand-ins
    return out.astype(e.raw).tobytes()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dtype=st.sampled_from(DTYPES), rows=st.integers(1, 40), cols=st.integers(1, 24),
       pad_r=st.integers(0, 5), pad_c=st.integers(0, 5), center=st.integers(-10, 10),
       mix=st.sampled_from([0.0, 0.0, 0.01, 0.1, 0.5, 1.0]), ue8m0=st.booleans(),
       fill=st.sampled_from(["zero", "one", 0x00]), with_layout=st.booleans(),
       garble_pad=st.booleans(), slab=st.sampled_from([1, 7, 64, 1 << 20]), seed=st.integers(0, 2**31),
       saturate=st.booleans())
def test_every_path_gives_the_direct_evaluations_findings(dtype, rows, cols, pad_r, pad_c, center, mix, ue8m0, fill,
                                                          with_layout, garble_pad, slab, seed, saturate):
    dt, enc = dtype
    rng = np.random.default_rng(seed)
    itemsize = BY_NAME[enc].itemsize
    shape = (rows + pad_r, cols + pad_c)
    n = shape[0] * shape[1]
    entries = np.frombuffer(_values(enc, rng, n, center, mix), dtype=BY_NAME[enc].raw).reshape(shape).copy()
    if saturate and enc == "e4m3":  # scale-saturated: many blocks clipped at 448
        entries[rng.random(shape) < 0.3] = 0x7E
    layout = None
    t = TensorInfo("m.layers.0.w.scale", dt, shape, 0, n * itemsize, "m.safetensors", 8)
    if with_layout:
        w = TensorInfo("m.layers.0.w.weight", "F8_E4M3", (shape[0] * 128, shape[1] * 128), 0,
                       shape[0] * shape[1] * 128 * 128, "m.safetensors", 8)
        logical = (rows, cols)
        layout = ScaleLayout(t, w, "block", enc, (128, 128), w.shape, (rows * 128, cols * 128), logical, "config")
        if not garble_pad:
            fill_raw = np.frombuffer(BY_NAME[enc].fills["one" if fill == "one" else "zero"], dtype=BY_NAME[enc].raw)[0]
            pad = np.ones(shape, dtype=bool)
            pad[:rows, :cols] = False
            entries[pad] = fill_raw
    data = entries.tobytes()
    opts = ContentOptions(fill=fill, ue8m0=ue8m0, verify_zero_blocks=False)

    direct = direct_check_tensor(layout, t, data, opts, None)
    rb = len(data) // shape[0]
    slabs = check_tensor_slabs(layout, t, lambda r0, k: data[r0 * rb:(r0 + k) * rb], opts, None, slab_bytes=slab)
    assert slabs == direct
    assert check_tensor(layout, t, data, opts, None) == direct
    content.BYTE_HISTOGRAM = False  # the E8M0 byte-histogram pass is an optimisation of the decoded one
    try:
        decoded = check_tensor_slabs(layout, t, lambda r0, k: data[r0 * rb:(r0 + k) * rb], opts, None,
                                     slab_bytes=slab)
    finally:
        content.BYTE_HISTOGRAM = True
    assert decoded == direct
    # the entry point (quick test first for 1-byte encodings): the same findings, and a median
    # interval that holds the direct median, resolved to it by exact_median
    findings, summary = judge_scale_tensor(t, data, layout, opts)
    if summary is not None and summary.median_hi is not None:
        assert direct[1] is not None and summary.median_exponent <= direct[1].median_exponent <= summary.median_hi
        exact = exact_median(t, layout, opts, lambda a, k: data[a:a + k], max_read=slab * rb)
        summary = dataclasses.replace(summary, median_exponent=exact, median_hi=None)
    assert (findings, summary) == direct
    quick = tally_for(layout, t, opts, quick=True)
    if quick is not None and quick.quick:
        quick.add(data, 0)
        if quick.band(opts.outlier_span, UNINIT_FAR) is not None:  # the quick test only ever says "clean"
            assert [f for f in direct[0] if f.rule != "scale-padding-nonzero"] == []

    tally = tally_for(layout, t, opts)
    if tally is not None:
        tally.add(data, 0)
        ok, median = tally.verdict(opts.outlier_span, UNINIT_FAR)
        if ok:  # "clean" is only ever said of a tensor whose real entries have no finding
            assert [f for f in direct[0] if f.rule != "scale-padding-nonzero"] == []
            assert direct[1] is not None and direct[1].median_exponent == median


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dtype=st.sampled_from(DTYPES), lead=st.integers(1, 4), rows=st.integers(1, 30), cols=st.integers(1, 20),
       pad_r=st.integers(0, 4), pad_c=st.integers(0, 4), center=st.integers(-10, 10),
       mix=st.sampled_from([0.0, 0.01, 0.1, 0.5, 1.0]), ue8m0=st.booleans(), with_layout=st.booleans(),
       verify=st.booleans(), bands=st.sampled_from([0, 1, 2, 5, 10**6]),
       fail_read=st.sampled_from([False, False, True]),
       slab=st.sampled_from([1, 7, 64, 1 << 20]), window=st.tuples(st.integers(0, 8), st.integers(0, 8)),
       seed=st.integers(0, 2**31), saturate=st.booleans())
def test_slab_marks_are_the_direct_evaluations_masks_for_the_rows_asked(
        dtype, lead, rows, cols, pad_r, pad_c, center, mix, ue8m0, with_layout, verify, bands, fail_read, slab,
        window, seed, saturate):
    """What `dump` marks for a few rows (mark_tensor_slabs, bounded memory) is exactly what the
    whole-tensor evaluation's MarkSink receives for those rows: same findings, same masks, including
    zero scales confirmed against their weights until the weight-read budget runs out."""
    dt, enc = dtype
    rng = np.random.default_rng(seed)
    itemsize = BY_NAME[enc].itemsize
    stored = (rows + pad_r, cols + pad_c)
    shape = (lead, *stored) if lead > 1 else stored
    n = int(np.prod(shape))
    entries = np.frombuffer(_values(enc, rng, n, center, mix), dtype=BY_NAME[enc].raw).copy()
    if saturate and enc == "e4m3":  # scale-saturated: many blocks clipped at 448
        entries[rng.random(n) < 0.3] = 0x7E
    data = entries.tobytes()
    t = TensorInfo("m.layers.0.w.scale", dt, shape, 0, n * itemsize, "m.safetensors", 8)
    layout = None
    weights = None
    if with_layout:
        wshape = (*shape[:-2], stored[0] * 128, stored[1] * 128)
        w = TensorInfo("m.layers.0.w.weight", "F8_E4M3", wshape, 0, int(np.prod(wshape)), "m.safetensors", 8)
        layout = ScaleLayout(t, w, "block", enc, (128, 128), wshape, (*shape[:-2], rows * 128, cols * 128),
                             (*shape[:-2], rows, cols), "config")
        # weight blocks: about half all-zero, half not (so zero scales are sometimes fine)
        nz = rng.random((*shape[:-2], stored[0], stored[1])) < 0.5
        weights = np.repeat(np.repeat(nz, 128, axis=-2), 128, axis=-1).astype(np.uint8).tobytes()

    def read_weight(wt, start, length):
        if fail_read:
            raise OSError("unreadable")
        return weights[start:start + length]

    opts = ContentOptions(ue8m0=ue8m0, verify_zero_blocks=verify)
    rw = read_weight if weights is not None else None
    old = content.ZERO_CHECK_BYTES
    content.ZERO_CHECK_BYTES = bands * 128 * stored[1] * 128  # weight bands of 128 rows
    try:
        whole: list = []
        direct, _ = direct_check_tensor(layout, t, data, opts, rw,
                                        lambda f, m: whole.append((f, m.reshape(-1).copy())))
        rb = len(data) // shape[0]
        a, b = sorted(min(x, shape[0]) for x in window)
        found, slabs = content.mark_tensor_slabs(layout, t, lambda r0, k: data[r0 * rb:(r0 + k) * rb], opts, rw,
                                                 (a, b), slab_bytes=slab)
        got = {}
        for base, masks in slabs:
            assert [f for f, _ in masks] == direct
            for f, m in masks:
                got.setdefault(f.rule, {})[base] = m
    finally:
        content.ZERO_CHECK_BYTES = old
    assert found == direct
    per_row = n // shape[0]
    for f, m in whole:
        want = m[a * per_row:b * per_row]
        have = np.concatenate([v for _, v in sorted(got.get(f.rule, {}).items())]) if b > a else want[:0]
        assert np.array_equal(have, want), (f.rule, a, b)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(enc=st.sampled_from(["e8m0", "e4m3"]), rows=st.integers(1, 300), cols=st.integers(1, 12),
       center=st.integers(-8, 8), mix=st.sampled_from([0.0, 0.01, 0.2, 1.0]), garble_pad=st.booleans(),
       slab=st.sampled_from([1, 7, 1 << 20]), window=st.tuples(st.integers(0, 520), st.integers(0, 520)),
       seed=st.integers(0, 2**31))
def test_swizzled_layouts_are_judged_in_slabs_like_the_direct_evaluation(enc, rows, cols, center, mix, garble_pad,
                                                                         slab, window, seed):
    """A swizzled layout (torchao's to_blocked tiles: the real entries are no box) goes through the
    same row-slab evaluator, its real entries from the layout's mask: findings and masks as the oracle."""
    from fp8doctor.layouts.swizzle import Swizzle

    rng = np.random.default_rng(seed)
    sw = Swizzle(rows, cols)
    stored = sw.stored_shape
    n = int(np.prod(stored))
    entries = np.frombuffer(_values(enc, rng, n, center, mix), dtype=np.uint8).copy()
    dt = "F8_E8M0" if enc == "e8m0" else "F8_E4M3"
    t = TensorInfo("m.layers.0.w.weight_scale", dt, tuple(stored), 0, n, "m.safetensors", 8)
    w = TensorInfo("m.layers.0.w.weight", "U8", (rows, cols * 16), 0, rows * cols * 16, "m.safetensors", 8)
    layout = ScaleLayout(t, w, "group", enc, (1, 32), (rows, cols * 32), (rows, cols * 32), (rows, cols), "format",
                         swizzle=sw)
    if not garble_pad:
        entries[layout.padding_mask().reshape(-1)] = 0
    data = entries.tobytes()
    opts = ContentOptions(verify_zero_blocks=False)
    whole: list = []
    direct = direct_check_tensor(layout, t, data, opts, None, lambda f, m: whole.append((f, m.reshape(-1).copy())))
    rb = len(data) // stored[0]
    assert check_tensor_slabs(layout, t, lambda r0, k: data[r0 * rb:(r0 + k) * rb], opts, None,
                              slab_bytes=slab) == direct
    assert judge_scale_tensor(t, data, layout, opts) == direct
    a, b = sorted(min(x, stored[0]) for x in window)
    found, slabs = content.mark_tensor_slabs(layout, t, lambda r0, k: data[r0 * rb:(r0 + k) * rb], opts, None,
                                             (a, b), slab_bytes=slab)
    assert found == direct[0]
    got: dict = {}
    for base, masks in slabs:
        for f, m in masks:
            got.setdefault(f.rule, {})[base] = m
    for f, m in whole:
        want = m[a * rb:b * rb]
        have = np.concatenate([v for _, v in sorted(got.get(f.rule, {}).items())]) if b > a else want[:0]
        assert np.array_equal(have, want), (f.rule, a, b)


@given(dt=st.sampled_from([dt for dt, _ in DTYPES]), seed=st.integers(0, 2**31))
@settings(max_examples=40, deadline=None)
def test_a_0d_scale_is_judged_like_the_direct_evaluation(dt, seed):
    """A 0-d scale tensor (one entry, no axis) is one row of one entry for the evaluator."""
    enc = dict(DTYPES)[dt]
    e = BY_NAME[enc]
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 1 << (8 * e.itemsize), 1, dtype=np.uint64).astype(e.raw).tobytes()
    t = TensorInfo("m.layers.0.w.input_scale", dt, (), 0, e.itemsize, "m.safetensors", 8)
    opts = ContentOptions(ue8m0=True)
    assert check_tensor(None, t, data, opts, None) == direct_check_tensor(None, t, data, opts, None)
    assert judge_scale_tensor(t, data, None, opts) == direct_check_tensor(None, t, data, opts, None)
