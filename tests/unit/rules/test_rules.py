"""Value rules: each fault found exactly, and the false positives real checkpoints would trigger avoided."""

from __future__ import annotations

import json
import os

import numpy as np

from fp8doctor import LayoutOverride, ScanOptions, scan
from fp8doctor.testing import synth
from fp8doctor.testing.synth import Builder
from tests.conftest import poke, tensor_info


def test_zero_scale_over_zero_weight_block_is_fine(v4):
    # an all-zero weight block legitimately gets any scale, 0x00 included
    w = tensor_info(v4, "layers.0.attn.wq_a.weight")  # [192, 320] -> block (0, 1) = rows 0..127, cols 128..255
    with open(os.path.join(v4, w.file), "r+b") as f:
        for row in range(128):
            f.seek(w.offset + row * 320 + 128)
            f.write(b"\x80" * 64 + b"\x00" * 64)  # -0 and +0 codes
    poke(v4, "layers.0.attn.wq_a.scale", 1, b"\x00")
    assert scan(v4).findings == ()


def test_zero_scale_over_real_weights_is_an_error(v4):
    off = poke(v4, "layers.0.attn.wq_a.scale", 1, b"\x00")
    [f] = scan(v4).findings
    assert (f.rule, f.byte_offset, f.index, f.count) == ("scale-zero", off, (0, 1), 1)


def test_zero_scale_in_fp4_expert(v4):
    name = "layers.1.ffn.experts.0.w2.scale"  # [320, 3], K real 80 -> 3 groups, last one partial
    off = poke(v4, name, 7 * 3 + 2, b"\x00")
    [f] = scan(v4).findings
    assert (f.rule, f.tensor, f.byte_offset, f.index) == ("scale-zero", name, off, (7, 2))


def test_partial_last_block_is_logical(v4):
    # wkv weight [80, 320]: one row block covers only 80 rows, col block 2 covers 64 columns. Both real.
    name = "layers.0.attn.wkv.scale"
    poke(v4, name, 2, b"\xff")
    [f] = scan(v4).findings
    assert (f.rule, f.region.value, f.index) == ("scale-nan", "logical", (0, 2))


def test_outlier_within_tensor(v4):
    name = "layers.0.ffn.experts.1.w2.scale"
    off = poke(v4, name, 30, bytes([117 + 40]))
    [f] = scan(v4).findings
    assert (f.rule, f.severity.value, f.byte_offset) == ("scale-outlier", "warning", off)


def test_wide_but_legit_range_is_not_an_outlier(v4):
    # 2^-22 (clamped amax of an all-zero-ish block) next to 2^-8 scales: 14 binades apart, normal
    poke(v4, "layers.0.ffn.experts.1.w2.scale", 30, bytes([105]))
    poke(v4, "layers.0.ffn.experts.1.w2.scale", 31, bytes([135]))
    assert scan(v4).findings == ()


def test_outlier_tensor_among_its_kind(tmp_path):
    d = str(tmp_path / "m")
    synth.deepseek_v4(d, layers=4)
    t = tensor_info(d, "layers.2.attn.wq_a.scale")  # logical [2, 3] of stored [4, 4]
    with open(os.path.join(d, t.file), "r+b") as f:
        for r in range(2):
            f.seek(t.offset + 4 * r)
            f.write(bytes([117 + 50] * 3))
    fs = [f for f in scan(d).findings if f.tensor == t.name]
    assert [f.rule for f in fs] == ["scale-outlier"] and "tensors like it" in fs[0].message


def test_uninitialized_logical_region(v4):
    name = "layers.1.ffn.experts.1.w1.scale"  # [96, 10], logical [80, 10]
    rng = np.random.default_rng(1)
    poke(v4, name, 0, rng.integers(0, 256, 800, dtype=np.uint8).tobytes())
    fs = scan(v4).findings
    assert [(f.rule, f.tensor) for f in fs] == [("scale-uninitialized", name)]
    assert fs[0].count == 800


def test_uninitialized_f32(v3):
    name = "model.layers.1.mlp.experts.0.down_proj.weight_scale_inv"  # [3, 1]
    # too small for statistics: only individual rules apply
    poke(v3, name, 0, np.float32(np.inf).tobytes())
    assert [f.rule for f in scan(v3).findings] == ["scale-nan"]


def test_not_power_of_two_only_with_ue8m0(tmp_path):
    d = str(tmp_path / "m")
    synth.deepseek_v3(d)
    name = "model.layers.0.self_attn.o_proj.weight_scale_inv"
    poke(d, name, 0, np.float32(0.0003).tobytes())
    [f] = scan(d).findings
    assert (f.rule, f.severity.value, f.tensor) == ("scale-not-power-of-two", "warning", name)
    with open(os.path.join(d, "config.json")) as fh:
        cfg = json.load(fh)
    del cfg["quantization_config"]["scale_fmt"]
    with open(os.path.join(d, "config.json"), "w") as fh:
        json.dump(cfg, fh)
    assert scan(d).findings == ()


def test_scale_missing_orphan_and_shape_mismatch(tmp_path):
    b = Builder(3)
    b.add("a.weight", b.fp8_weight((256, 256)))  # no scale
    b.add("b.weight", b.fp8_weight((256, 256)))
    b.add("b.scale", b.e8m0_scales((1, 2), (1, 2)))  # needs [2, 2]
    b.add("c.scale", b.e8m0_scales((2, 2), (2, 2)))  # no weight
    b.add("norm.scale", b.bf16((256,)))  # a norm called scale: not a scale
    d = str(tmp_path / "m")
    b.write(d, config={"quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]}})
    got = sorted((f.rule, f.tensor) for f in scan(d).findings)
    assert got == [("scale-missing", "a.weight"), ("scale-orphan", "c.scale"), ("scale-shape-mismatch", "b.scale")]


def test_block_inferred_without_config(tmp_path):
    d = str(tmp_path / "m")
    synth.deepseek_v3(d)
    os.remove(os.path.join(d, "config.json"))
    assert scan(d).findings == ()


def test_layout_override_block(tmp_path):
    b = Builder(4)
    b.add("x.weight", b.fp8_weight((100, 100)))
    b.add("x.scale", b.e8m0_scales((4, 4), (2, 2)))  # 64x64 blocks: [2, 2] real, padded to 4
    d = str(tmp_path / "m")
    b.write(d)
    r = scan(d)
    # one tensor: 128x128 (1x1 real), 64x64 and 32x32 all fit -> ambiguous, padding not fixable
    assert "layout-ambiguous" in r.by_rule()
    assert not r.fixable
    r = scan(d, ScanOptions(overrides=(LayoutOverride("x.*", block=(64, 64)),)))
    assert r.findings == ()
    poke(d, "x.scale", 15, b"\xff")
    [f] = scan(d, ScanOptions(overrides=(LayoutOverride("x.*", block=(64, 64)),))).findings
    assert (f.rule, f.fixable, f.index) == ("scale-padding-nonzero", True, (3, 3))


def test_layout_override_parse():
    o = LayoutOverride.parse("layers.*.w1.weight:block=1x32,logical=80x320")
    assert (o.pattern, o.block, o.logical_shape) == ("layers.*.w1.weight", (1, 32), (80, 320))
    for bad in ("noclon", "x:block=12", "x:shape=1x2", "x:block=0x4"):
        try:
            LayoutOverride.parse(bad)
        except ValueError as e:
            assert str(e)
        else:
            raise AssertionError(bad)


def test_fill_one_accepts_0x7f_padding(v4):
    name = "layers.0.attn.wq_b.scale"
    poke(v4, name, 8, b"\x7f" * 8)  # rows 2, 3
    rows = [(r, c) for r in range(4) for c in range(4) if r >= 2 or c >= 2]
    assert scan(v4, ScanOptions(fill="one")).by_rule()["scale-padding-nonzero"] > 0  # the other tensors hold 0x00
    for r, c in rows:
        poke(v4, name, r * 4 + c, b"\x7f")
    report = scan(v4, ScanOptions(fill="one", select=("scale-padding-nonzero",)))
    assert name not in {f.tensor for f in report.findings}
    assert name in {f.tensor for f in scan(v4).findings}


def test_select_and_ignore(v4):
    poke(v4, "layers.0.attn.wq_b.scale", 15, b"\xff")
    poke(v4, "layers.0.attn.wq_b.scale", 0, b"\xff")
    assert set(scan(v4, ScanOptions(select=("scale-nan",))).by_rule()) == {"scale-nan"}
    assert set(scan(v4, ScanOptions(ignore=("scale-nan",))).by_rule()) == {"scale-padding-nonzero"}


def test_gpt_oss_padded_experts_via_config(tmp_path):
    d = str(tmp_path / "oss")
    synth.gpt_oss(d, experts=4)
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    cfg["intermediate_size"] = 40  # stored 64 = 40 rounded up to 32: rows 80..127 of gate_up are padding
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    r = scan(d)
    lay = {x["scale"]: x for x in r.layouts}
    assert lay["model.layers.0.mlp.experts.gate_up_proj_scales"]["logical_shape"] == [4, 80, 3]
    assert lay["model.layers.0.mlp.experts.down_proj_scales"]["logical_shape"] == [4, 96, 2]
    # the generator filled those rows with real-looking scales: now they are padding that is not zero
    assert r.by_rule() == {"scale-padding-nonzero": 1}
