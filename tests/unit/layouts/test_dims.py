"""Unit tests of the shape arithmetic of a layout: layouts/dims.py (config dims that shrink padded
stored dims), the element shapes and default groups of layouts/conventions/, and the stored vs
logical boxes the layout builder derives from them (ceil-div at the block, padding boxes of
ScaleLayout). The references are computed here from the definitions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from fp8doctor.checkpoint.config import ModelConfig, QuantConfig
from fp8doctor.layouts import dims as dims_mod
from fp8doctor.layouts.conventions import CONVENTIONS, DIM_RULES
from fp8doctor.layouts.conventions.base import MX_GROUP, NV_GROUP, dim, group_for, stored_element_shape
from fp8doctor.layouts.dims import dims_rule, logical_weight_shape
from fp8doctor.layouts.model import ScaleLayout
from fp8doctor.layouts.pairing import LayoutBuilder
from tests.helpers.headers import info as _t

ALIGNMENTS = (16, 32, 64, 128, 256, 512, 1024)
BY_NAME = {c.name: c for c in CONVENTIONS}


def _layouts(tensors, dims=None, block=None, group=None) -> dict[str, ScaleLayout]:
    config = ModelConfig(quant=QuantConfig(block_size=block, group_size=group), dims=dims or {})
    res = LayoutBuilder({t.name: t for t in tensors}, config).build()
    assert not [f for f in res.findings if f.rule != "config-mismatch"], res.findings
    return {lay.name: lay for lay in res.layouts}


# -- config dims --------------------------------------------------------------------------------


def test_a_stored_dim_shrinks_only_when_it_is_the_real_dim_rounded_up():
    name = "model.layers.1.mlp.experts.7.up_proj.weight"
    for stored, real in itertools.product(range(1, 300), range(1, 300)):
        want = real if real < stored and any(stored == math.ceil(real / a) * a for a in ALIGNMENTS) else stored
        assert logical_weight_shape(name, (stored, 64), {"moe_intermediate_size": real}) == (want, 64), (stored, real)
    # the big ones: DeepSeek-V3's 2048 rows of a 1920 (or 2000) intermediate size; never up, never below a multiple
    assert logical_weight_shape(name, (2048, 7168), {"moe_intermediate_size": 1920}) == (1920, 7168)
    assert logical_weight_shape(name, (2048, 7168), {"moe_intermediate_size": 2000}) == (2000, 7168)
    assert logical_weight_shape(name, (2048, 7168), {"moe_intermediate_size": 900}) == (2048, 7168)  # 2048 != 1024
    assert logical_weight_shape(name, (2048, 7168), {"moe_intermediate_size": 4096}) == (2048, 7168)


@pytest.mark.parametrize(("module", "axis"), [("gate_proj", -2), ("up_proj", -2), ("w1", -2), ("w3", -2),
                                              ("down_proj", -1), ("w2", -1)])
@pytest.mark.parametrize("suffix", ["weight", "weight_packed"])
def test_routed_expert_names_say_which_axis_is_the_intermediate_size(module, axis, suffix):
    for prefix in ("", "model.layers.3.mlp.", "layers.60.ffn."):
        name = f"{prefix}experts.12.{module}.{suffix}"
        got = logical_weight_shape(name, (96, 96), {"moe_intermediate_size": 80, "hidden_size": 64})
        want = [96, 96]
        want[axis] = 80
        assert got == tuple(want), name
        assert dims_rule(name) >= 0
    # fused leading axes (one tensor for all experts) are left alone: only the last two axes are named
    assert logical_weight_shape(f"experts.0.{module}.{suffix}", (4, 96, 96), {"moe_intermediate_size": 80})[0] == 4


@pytest.mark.parametrize("name", [
    "model.layers.3.mlp.shared_experts.gate_proj.weight",  # not a routed expert: no dim rule
    "model.layers.3.mlp.gate_proj.weight",
    "model.layers.3.mlp.experts.0.gate_proj.weight_scale_inv",  # scales are never shrunk by name
    "model.layers.3.mlp.experts.0.gate_proj.bias",
    "model.layers.3.mlp.experts.x.gate_proj.weight",
    "model.layers.3.mlp.myexperts.0.gate_proj.weight",
])
def test_other_names_keep_their_stored_shape(name):
    assert logical_weight_shape(name, (96, 96), {"moe_intermediate_size": 80, "hidden_size": 80}) == (96, 96)
    assert dims_rule(name) == -1


def test_missing_dims_and_short_shapes_keep_the_stored_shape():
    name = "model.layers.3.mlp.experts.0.down_proj.weight"
    assert logical_weight_shape(name, (64, 96), {}) == (64, 96)
    assert logical_weight_shape(name, (64, 96), {"hidden_size": 80}) == (64, 96)  # the wrong dim for this axis
    assert logical_weight_shape(name, (96,), {"moe_intermediate_size": 80}) == (80,)  # -1 exists
    assert logical_weight_shape("experts.0.gate_proj.weight", (96,), {"moe_intermediate_size": 80}) == (96,)
    assert logical_weight_shape(name, (), {"moe_intermediate_size": 80}) == ()


def test_gpt_oss_fused_experts_use_three_config_dims():
    dims = {"num_experts": 8, "intermediate_size": 40, "hidden_size": 80}
    gate_up = "model.layers.0.mlp.experts.gate_up_proj_blocks"
    down = "model.layers.0.mlp.experts.down_proj_blocks"
    assert logical_weight_shape(gate_up, (8, 96, 96), dims) == (8, 80, 80)  # N = 2 * intermediate_size
    assert logical_weight_shape(gate_up, (16, 96, 96), dims) == (8, 80, 80)  # 16 is 8 rounded up to 16
    assert logical_weight_shape(down, (8, 96, 64), dims) == (8, 80, 40)
    assert logical_weight_shape(down, (8, 96, 96), dims) == (8, 80, 96)  # 96 is not 40 rounded up
    assert logical_weight_shape(gate_up, (96, 96), dims) == (80, 80)  # an axis the shape lacks is skipped
    assert dims_rule(gate_up) != dims_rule(down) and min(dims_rule(gate_up), dims_rule(down)) >= 0


def test_dims_rule_names_the_rule_logical_weight_shape_applies():
    """Names with the same rule index get the same logical shape from the same stored shape and dims
    (the pairing's memo relies on it)."""
    dims = {"moe_intermediate_size": 80, "num_experts": 8, "intermediate_size": 40, "hidden_size": 80}
    names = ["a.experts.1.w1.weight", "b.experts.99.gate_proj.weight_packed", "c.experts.3.w2.weight",
             "x.experts.down_proj_blocks", "y.experts.gate_up_proj_blocks", "z.mlp.gate_proj.weight", "q.weight"]
    seen: dict[int, tuple[int, ...]] = {}
    for n in names:
        i = dims_rule(n)
        assert -1 <= i < len(DIM_RULES)
        got = logical_weight_shape(n, (8, 96, 96), dims)
        assert seen.setdefault(i, got) == got, n
        if i >= 0:
            assert DIM_RULES[i].pattern.search(n) and not any(r.pattern.search(n) for r in DIM_RULES[:i])
    assert seen[-1] == (8, 96, 96)


def test_the_expert_fast_path_matches_the_rules(monkeypatch):
    names = ["a.experts.1.w1.weight", "a.experts.1.w2.weight", "a.mlp.w1.weight", "e.experts.down_proj_blocks"]
    fast = [dims_rule(n) for n in names]
    monkeypatch.setattr(dims_mod, "_ALL_EXPERTS", False)
    assert [dims_rule(n) for n in names] == fast


def test_dim_getters():
    assert dim("hidden_size")({"hidden_size": 7}) == 7
    assert dim("intermediate_size", 2)({"intermediate_size": 7}) == 14
    assert dim("hidden_size")({}) is None


# -- element shapes and groups --------------------------------------------------------------------


def test_element_shapes_of_the_stored_weights():
    assert stored_element_shape(_t("w", "F8_E4M3", (256, 512))) == ((256, 512), "block")
    assert stored_element_shape(_t("w", "U8", (256, 256))) == ((256, 512), "group")  # two FP4 codes a byte
    assert stored_element_shape(_t("w", "I8", (4, 256, 256))) == ((4, 256, 512), "group")
    assert stored_element_shape(_t("w", "F4", (256, 512))) == ((256, 512), "group")  # F4 counts elements
    assert stored_element_shape(_t("w", "U8", ())) == ((), "block")
    gpt = BY_NAME["gpt-oss"].element_shape
    assert gpt(_t("e.gate_up_proj_blocks", "U8", (8, 96, 3, 16))) == ((8, 96, 96), "group")  # G x 16 bytes = 32G
    ct = BY_NAME["compressed-tensors-packed"].element_shape
    assert ct(_t("a.weight_packed", "I32", (256, 32))) == ((256, 256), "group")  # 8 int4 an int32
    assert ct(_t("a.weight_packed", "U8", (256, 32))) == ((256, 64), "group")


def test_default_groups():
    assert (MX_GROUP, NV_GROUP) == (32, 16)
    assert group_for("e4m3") == 16  # NVFP4
    assert [group_for(e) for e in ("e8m0", "f32", "bf16", "f16")] == [32] * 4
    assert all(c.default_group("e4m3") == 16 and c.default_group("e8m0") == 32 for c in CONVENTIONS)


# -- stored vs logical boxes ------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "k"), [(1, 300), (129, 257), (300, 200), (7168, 2048), (2000, 7168)])
@pytest.mark.parametrize("block", [(128, 128), (64, 64), (1, 128)])
def test_the_scale_grid_is_the_ceil_div_of_the_weight_at_the_block(n, k, block):
    grid = (-(-n // block[0]), -(-k // block[1]))
    lay = _layouts([_t("m.w.weight", "F8_E4M3", (n, k)), _t("m.w.weight_scale_inv", "F32", grid)],
                   block=block)["m.w.weight_scale_inv"]
    assert grid == (math.ceil(n / block[0]), math.ceil(k / block[1]))
    assert (lay.kind, lay.block, lay.logical_shape, lay.padded_count) == ("block", block, grid, 0)
    assert lay.weight_shape == lay.logical_weight_shape == (n, k)
    short = (grid[0] - 1, grid[1]) if grid[0] > 1 else (grid[0], grid[1] - 1)  # an entry short: no cover
    res = LayoutBuilder({t.name: t for t in (_t("m.w.weight", "F8_E4M3", (n, k)),
                                             _t("m.w.weight_scale_inv", "F32", short))},
                        ModelConfig(quant=QuantConfig(block_size=block))).build()
    assert [f.rule for f in res.findings] == ["scale-shape-mismatch"] and not res.layouts


def test_aligned_grids_have_their_padding_past_the_logical_box():
    # 300 x 200 at 128: 3 x 2 entries are real; a buffer aligned to 4 entries has 4 x 4
    lay = _layouts([_t("m.w.weight", "F8_E4M3", (300, 200)), _t("m.w.scale", "F8_E8M0", (4, 4))],
                   block=(128, 128))["m.w.scale"]
    assert (lay.logical_shape, lay.padded_count, lay.source, lay.trusted) == ((3, 2), 10, "config", True)
    want = np.ones((4, 4), dtype=bool)
    want[:3, :2] = False
    assert np.array_equal(lay.padding_mask(), want) and np.array_equal(lay.real_mask(), ~want)
    assert lay.padding_ranges() == [(2, 4), (6, 8), (10, 16)]


def test_config_dims_shrink_the_logical_box_of_padded_experts():
    dims = {"moe_intermediate_size": 1920}
    gate, down = "model.layers.3.mlp.experts.0.gate_proj", "model.layers.3.mlp.experts.0.down_proj"
    lays = _layouts([_t(gate + ".weight", "F8_E4M3", (2048, 7168)), _t(gate + ".weight_scale_inv", "F32", (16, 56)),
                     _t(down + ".weight", "F8_E4M3", (7168, 2048)), _t(down + ".weight_scale_inv", "F32", (56, 16))],
                    dims=dims, block=(128, 128))
    g, d = lays[gate + ".weight_scale_inv"], lays[down + ".weight_scale_inv"]
    assert (g.weight_shape, g.logical_weight_shape, g.logical_shape, g.padded_count) == (
        (2048, 7168), (1920, 7168), (15, 56), 56)
    assert (d.weight_shape, d.logical_weight_shape, d.logical_shape, d.padded_count) == (
        (7168, 2048), (7168, 1920), (56, 15), 56)
    assert g.padding_mask()[15:].all() and not g.padding_mask()[:15].any()
    assert d.padding_mask()[:, 15:].all() and not d.padding_mask()[:, :15].any()
    # without the dims the same tensors are unpadded
    plain = _layouts([_t(gate + ".weight", "F8_E4M3", (2048, 7168)), _t(gate + ".weight_scale_inv", "F32", (16, 56))],
                     block=(128, 128))[gate + ".weight_scale_inv"]
    assert (plain.logical_shape, plain.padded_count) == ((16, 56), 0)


def test_fused_experts_logical_box_in_groups():
    dims = {"num_experts": 4, "intermediate_size": 40, "hidden_size": 80}
    gu, dn = "model.layers.0.mlp.experts.gate_up_proj", "model.layers.0.mlp.experts.down_proj"
    lays = _layouts([_t(gu + "_blocks", "U8", (4, 96, 3, 16)), _t(gu + "_scales", "U8", (4, 96, 3)),
                     _t(dn + "_blocks", "U8", (4, 80, 3, 16)), _t(dn + "_scales", "U8", (4, 80, 3))], dims=dims)
    g, d = lays[gu + "_scales"], lays[dn + "_scales"]
    assert (g.kind, g.block, g.encoding) == ("group", (1, MX_GROUP), "e8m0")
    assert (g.weight_shape, g.logical_weight_shape, g.logical_shape, g.padded_count) == (
        (4, 96, 96), (4, 80, 80), (4, 80, 3), 4 * 16 * 3)
    mask = g.padding_mask()
    assert mask[:, 80:].all() and not mask[:, :80].any()
    # K stored 96 is not 40 rounded up: left as stored, nothing called padding
    assert (d.logical_weight_shape, d.logical_shape, d.padded_count) == ((4, 80, 96), (4, 80, 3), 0)


def test_groups_from_config_and_partial_groups():
    # 100 elements a row in groups of 32: 4 groups, the last one partial (real, not padding)
    lays = _layouts([_t("a.weight_packed", "U8", (8, 50)), _t("a.weight_scale", "U8", (8, 4)),
                     _t("b.weight_packed", "U8", (8, 64)), _t("b.weight_scale", "F8_E4M3", (8, 8))])
    assert (lays["a.weight_scale"].logical_shape, lays["a.weight_scale"].padded_count) == ((8, 4), 0)
    assert lays["b.weight_scale"].block == (1, NV_GROUP)  # E4M3 scales: NVFP4's 16
    cfg = _layouts([_t("b.weight_packed", "U8", (8, 64)), _t("b.weight_scale", "U8", (8, 2))], group=64)
    assert (cfg["b.weight_scale"].block, cfg["b.weight_scale"].source) == ((1, 64), "config")


def test_rank4_modelopt_grids_keep_their_singleton_axes():
    lay = _layouts([_t("m.weight", "F8_E4M3", (300, 200)), _t("m.weight_scale", "F32", (4, 1, 4, 1))],
                   block=(128, 128))["m.weight_scale"]
    assert lay.grid_shape == (4, 4) and lay.logical_shape == (3, 1, 2, 1) and lay.padded_count == 10
    want = np.ones((4, 1, 4, 1), dtype=bool)
    want[:3, :, :2, :] = False
    assert np.array_equal(lay.padding_mask(), want)


def test_per_channel_and_per_tensor_scales_have_no_padding():
    lays = _layouts([_t("c.weight", "F8_E4M3", (300, 200)), _t("c.weight_scale", "F32", (300, 1)),
                     _t("v.weight", "F8_E4M3", (300, 200)), _t("v.weight_scale", "F32", (300,)),
                     _t("t.weight", "F8_E4M3", (300, 200)), _t("t.weight_scale", "F32", ()),
                     _t("u.weight", "F8_E4M3", (300, 200)), _t("u.weight_scale", "F32", (1,)),
                     _t("w.weight", "F8_E4M3", (300, 200)), _t("w.weight_scale", "F32", (1, 1))])
    assert (lays["c.weight_scale"].block, lays["c.weight_scale"].logical_shape) == ((1, 200), (300, 1))
    assert (lays["v.weight_scale"].block, lays["v.weight_scale"].logical_shape) == ((1, 200), (300,))
    for name in ("t.weight_scale", "u.weight_scale", "w.weight_scale"):  # one entry of any rank: per tensor
        assert (lays[name].kind, lays[name].block, lays[name].logical_shape) == (
            "tensor", (300, 200), lays[name].stored_shape)
    assert all(lay.padded_count == 0 and lay.padding_ranges() == [] for lay in lays.values())
