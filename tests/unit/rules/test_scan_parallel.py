"""The thread pool and the histogram fast path must not change a single finding."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from benchmarks import make_checkpoint
from fp8doctor.checkpoint.loader import open_checkpoint
from fp8doctor.layouts.pairing import LayoutBuilder
from fp8doctor.rules.content import ContentOptions, check_tensor, check_tensor_slabs
from fp8doctor.scanner import ScanOptions, _check_one, scan
from fp8doctor.testing import synth
from tests.conftest import poke
from tests.helpers.direct_rules import direct_check_tensor


def _same(a, b) -> None:
    assert a.findings == b.findings
    assert a.layouts == b.layouts
    strip = {"seconds": 0.0}
    assert dataclasses.replace(a.stats, **strip) == dataclasses.replace(b.stats, **strip)


def test_threads_give_the_same_report_as_one_worker(tmp_path):
    d = str(tmp_path / "v4")
    make_checkpoint.build("v4-flash", d, layers=1, shards=4, moe_pad=64, garbage=20)
    one = scan(d, ScanOptions(workers=1))
    many = scan(d, ScanOptions(workers=4))
    _same(one, many)
    rules = {f.rule for f in one.findings}
    assert {"scale-padding-nonzero", "scale-nan", "scale-outlier"} <= rules


def test_threads_same_report_on_f32_scales(v3):
    poke(v3, "model.layers.0.self_attn.q_a_proj.weight_scale_inv", 4, np.array([np.nan], "<f4").tobytes())
    _same(scan(v3, ScanOptions(workers=1)), scan(v3, ScanOptions(workers=3)))


def _slow(layout, t, data, opts):
    return direct_check_tensor(layout, t, data, opts, lambda w, s, n: bytes(n))


def resolved(outcome, t, layout, opts, data):
    """A quick-test outcome with its median interval resolved the way the scan resolves it (exact
    median from a histogram), after checking the direct median lies in the interval."""
    from fp8doctor.rules.judge import exact_median

    findings, summary = outcome
    if summary is None or summary.median_hi is None:
        return outcome
    median = exact_median(t, layout, opts, lambda a, n: data[a:a + n])
    assert summary.median_exponent <= median <= summary.median_hi
    return findings, dataclasses.replace(summary, median_exponent=median, median_hi=None)


@pytest.mark.parametrize("builder", [synth.deepseek_v4, synth.deepseek_v3, synth.gpt_oss])
def test_fast_path_matches_the_mask_rules(tmp_path, builder):
    """Random faults in every tensor: the histogram verdict plus the rules it defers to must give
    exactly what the mask-based rules give on their own."""
    d = str(tmp_path / "ck")
    builder(d)
    rng = np.random.default_rng(1)
    with open_checkpoint(d) as ck:
        layouts = {lay.scale.name: lay for lay in LayoutBuilder(ck.tensors, ck.config).build().layouts}
        for ue8m0 in (False, True):
            opts = ContentOptions(ue8m0=ue8m0)
            for name, lay in layouts.items():
                t = lay.scale
                clean = ck.read(t)
                variants = [clean]
                for _ in range(6):
                    buf = bytearray(clean)
                    kind = rng.integers(0, 4)
                    i = int(rng.integers(0, len(buf)))
                    if kind == 0:
                        buf[i] = int(rng.integers(0, 256))
                    elif kind == 1:
                        buf[:] = rng.integers(0, 256, len(buf), dtype=np.uint8).tobytes()
                    elif kind == 2:
                        buf[i] = 0xFF
                    else:
                        buf[i] ^= 0x40
                    variants.append(bytes(buf))
                rb = t.nbytes // t.shape[0] if t.shape and t.shape[0] else 0
                for data in variants:
                    slow = _slow(lay, t, data, opts)
                    fast = _check_one(t, lay, data, opts, lambda w, s, n: bytes(n))
                    assert resolved(fast, t, lay, opts, data) == slow, name
                    for slab in (1, rb * 3 + 1):  # one row per slab, and a few
                        slabs = check_tensor_slabs(lay, t, lambda r0, n, d=data, rb=rb: d[r0 * rb:(r0 + n) * rb], opts,
                                                   lambda w, s, n: bytes(n), slab_bytes=slab)
                        assert slabs == slow, name


@pytest.mark.parametrize("ue8m0", [False, True])
def test_batched_tally_matches_one_tensor_at_a_time(ue8m0):
    """Small tensors judged together (one histogram per read) give what each judged alone gives,
    with gaps and mixed dtypes and alignments in the read, clean and broken tensors side by side."""
    from fp8doctor.checkpoint.header import TensorInfo
    from fp8doctor.scanner import _check_batch

    rng = np.random.default_rng(7)
    opts = ContentOptions(ue8m0=ue8m0)
    blob = bytearray()
    batch = []
    for i in range(400):
        dtype = ["F32", "BF16", "F16", "F8_E8M0"][int(rng.integers(0, 4))]
        shape = (int(rng.integers(1, 9)), int(rng.integers(1, 9)))
        n = shape[0] * shape[1]
        center = int(rng.integers(-20, 10))
        exps = center + rng.integers(-3, 4, n)
        if rng.random() < 0.2:
            exps[int(rng.integers(0, n))] += int(rng.choice([-40, 30, 50]))
        vals = np.ldexp(np.ones(n), exps)
        if rng.random() < 0.2:
            vals[int(rng.integers(0, n))] *= 1.5  # not a power of two
        kind = rng.integers(0, 8)
        if kind == 0:
            vals[int(rng.integers(0, n))] = np.nan
        elif kind == 1:
            vals[int(rng.integers(0, n))] = 0.0
        elif kind == 2:
            vals[int(rng.integers(0, n))] *= -1
        if dtype == "F32":
            data = vals.astype("<f4").tobytes()
        elif dtype == "F16":
            data = np.clip(vals, -6e4, 6e4).astype("<f2").tobytes()
        elif dtype == "BF16":
            data = (vals.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()
        else:
            data = np.clip(np.nan_to_num(exps + 127, nan=255), 0, 255).astype(np.uint8).tobytes()
        if kind == 3:
            data = rng.integers(0, 256, len(data), dtype=np.uint8).tobytes()
        blob += bytes(int(rng.choice([0, 0, 0, 1, 2, 4, 6])))  # gaps, sometimes unaligned
        batch.append(TensorInfo(f"model.layers.{i}.x.weight_scale_inv", dtype, shape, len(blob),
                                len(blob) + len(data), "a.safetensors", 0))
        blob += data
    for t in batch[::50]:  # tensors overlapping others (a broken header) are judged alone
        batch.append(dataclasses.replace(t, name=t.name + ".alias"))
    batch.sort(key=lambda t: t.offset)
    mv = memoryview(bytes(blob))
    got = [resolved(g, t, None, opts, mv[t.offset:t.offset + t.nbytes])
           for g, t in zip(_check_batch(batch, 0, mv, {}, opts, lambda w, s, n: bytes(n)), batch)]
    want = [resolved(_check_one(t, None, mv[t.offset:t.offset + t.nbytes], opts, lambda w, s, n: bytes(n)), t, None,
                     opts, mv[t.offset:t.offset + t.nbytes]) for t in batch]
    assert got == want
    assert sum(1 for f, _ in want if f) > 20  # broken tensors were there to be found
    assert sum(1 for f, s in want if not f and s) > 100  # and clean ones, judged by the batch


@pytest.mark.parametrize("budget", [64 << 20, 3000])
def test_slabs_match_the_mask_rules_on_zero_scales(tmp_path, monkeypatch, budget):
    """Zero scales verified against weight blocks slab by slab: the same verdicts, the same byte
    budget (a small one runs out part-way), the same answer when a weight read fails."""
    from fp8doctor.rules import content

    monkeypatch.setattr(content, "ZERO_CHECK_BYTES", budget)
    d = str(tmp_path / "ck")
    synth.deepseek_v4(d)
    rng = np.random.default_rng(3)
    with open_checkpoint(d) as ck:
        layouts = LayoutBuilder(ck.tensors, ck.config).build().layouts
        ones = lambda w, s, n: b"\x01" * n  # noqa: E731
        mixed = lambda w, s, n: bytes(ck.read(w, s, n)) if s % 2 else b"\x01" * n  # noqa: E731

        def failing(w, s, n):
            if s > 0:
                raise OSError("gone")
            return bytes(n)

        checked = 0
        for lay in layouts:
            t = lay.scale
            if lay.kind not in ("block", "group") or len(t.shape) < 2 or t.shape[0] < 2:
                continue
            buf = bytearray(ck.read(t))
            for i in rng.integers(0, len(buf), 1 + len(buf) // 50):
                buf[int(i)] = 0
            data = bytes(buf)
            rb = t.nbytes // t.shape[0]
            for rw in (ones, mixed, failing, lambda w, s, n: bytes(n)):
                slow = direct_check_tensor(lay, t, data, ContentOptions(), rw)
                assert check_tensor(lay, t, data, ContentOptions(), rw) == slow, t.name
                for slab in (1, rb * 2):
                    rows = lambda r0, n, d=data, rb=rb: d[r0 * rb:(r0 + n) * rb]  # noqa: E731
                    got = check_tensor_slabs(lay, t, rows, ContentOptions(), rw, slab_bytes=slab)
                    assert got == slow, t.name
            checked += 1
        assert checked >= 3
