"""Clean checkpoints in every layout scan clean; each injected fault gives the exact rule, tensor, offset."""

from __future__ import annotations

import numpy as np
import pytest

from fp8doctor import LayoutOverride, ScanOptions, scan
from tests.conftest import poke, tensor_info


@pytest.mark.parametrize("fixture", ["v3", "v4", "oss", "ct"])
def test_clean_checkpoints_have_no_findings(fixture, request):
    path = request.getfixturevalue(fixture)
    report = scan(path)
    assert report.findings == ()
    assert report.stats.scale_tensors_checked == report.stats.scale_tensors > 0
    assert report.stats.skipped == 0


def test_v4_layouts_know_their_padding(v4):
    report = scan(v4)
    by_name = {lay["scale"]: lay for lay in report.layouts}
    wq_b = by_name["layers.0.attn.wq_b.scale"]
    # weight [256, 192] at 128x128 needs [2, 2]; stored padded to a multiple of 4
    assert wq_b["shape"] == [4, 4] and wq_b["logical_shape"] == [2, 2] and wq_b["padded_entries"] == 12
    w1 = by_name["layers.0.ffn.experts.0.w1.scale"]
    # FP4 expert: stored intermediate 96, config moe_inter_dim 80 -> rows 80..95 are padding
    assert w1["kind"] == "group" and w1["shape"] == [96, 10] and w1["logical_shape"] == [80, 10]
    w2 = by_name["layers.0.ffn.experts.0.w2.scale"]
    assert w2["shape"] == [320, 3] and w2["logical_shape"] == [320, 3]


def test_padding_garbage_e8m0(v4):
    name = "layers.0.attn.wq_b.scale"
    off = poke(v4, name, 2 * 4 + 1, b"\xff")  # row 2 is padding
    report = scan(v4)
    [f] = report.findings
    assert (f.rule, f.tensor, f.byte_offset, f.index, f.count, f.fixable) == (
        "scale-padding-nonzero", name, off, (2, 1), 1, True)
    assert f.region.value == "padding" and f.severity.value == "error"


def test_padding_garbage_in_padded_intermediate_rows(v4):
    name = "layers.1.ffn.experts.1.w3.scale"
    off = poke(v4, name, 85 * 10 + 4, b"\x90\x91")
    [f] = scan(v4).findings
    assert (f.rule, f.tensor, f.byte_offset, f.index, f.count) == ("scale-padding-nonzero", name, off, (85, 4), 2)


def test_padding_garbage_f32(v3):
    # kv_a_proj_with_mqa [112, 320] -> scale [1, 3]; no padding. Use a layout override to declare real dims.
    name = "model.layers.0.self_attn.q_b_proj.weight_scale_inv"  # weight [192, 192] -> [2, 2]
    poke(v3, name, 3 * 4, np.float32(2.0**40).tobytes())
    # declare the weight's real rows as 100: scale row 1 (rows 128..191) becomes padding, and holds
    # the generator's real values plus our 2^40
    opts = ScanOptions(overrides=(LayoutOverride("model.layers.0.*q_b_proj.weight", logical_shape=(100, 192)),))
    [f] = scan(v3, opts).findings
    assert (f.rule, f.tensor, f.index, f.count) == ("scale-padding-nonzero", name, (1, 0), 2)
    assert f.byte_offset == tensor_info(v3, name).offset + 8
    assert "2.0" not in f.message and "1.09951e+12" in f.message


@pytest.mark.parametrize("rule,payload,rel", [
    ("scale-nan", b"\xff", 1),
    ("scale-zero", b"\x00", 0),
])
def test_logical_faults_e8m0(v4, rule, payload, rel):
    name = "layers.1.attn.wkv.scale"
    off = poke(v4, name, rel, payload)
    [f] = scan(v4).findings
    assert (f.rule, f.tensor, f.byte_offset, f.region.value, f.fixable) == (rule, name, off, "logical", False)


def test_nan_and_negative_f32(v3):
    name = "model.layers.1.self_attn.o_proj.weight_scale_inv"
    off = poke(v3, name, 0, np.float32(np.nan).tobytes())
    off2 = poke(v3, name, 4, np.float32(-0.25).tobytes())
    rules = {(f.rule, f.byte_offset) for f in scan(v3).findings}
    assert ("scale-nan", off) in rules and ("scale-negative", off2) in rules


def test_gpt_oss_nan_scale(oss):
    name = "model.layers.0.mlp.experts.down_proj_scales"
    off = poke(oss, name, 17, b"\xff")
    [f] = scan(oss).findings
    assert (f.rule, f.tensor, f.byte_offset) == ("scale-nan", name, off)
