"""The thread pool and the histogram fast path must not change a single finding."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from benchmarks import make_checkpoint
from fp8doctor import synth
from fp8doctor.checkpoint.loader import open_checkpoint
from fp8doctor.layouts.pairing import LayoutBuilder
from fp8doctor.rules.content import ContentOptions, check_tensor
from fp8doctor.scanner import ScanOptions, _check_one, scan
from tests.conftest import poke


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
    return check_tensor(layout, t, data, opts, lambda w, s, n: bytes(n))


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
                for data in variants:
                    fast = _check_one(t, lay, data, opts, lambda w, s, n: bytes(n))
                    assert fast == _slow(lay, t, data, opts), name
