"""Unit tests of layouts/pairing.py on hand-built headers: what the pairing does with what the
conventions claim (tests/unit/layouts/test_conventions.py has which convention claims which pair):
orphans, tensors that only look like scales, names two conventions could claim, scales whose
layout cannot be built (value-only), second-level companions, the block vote, and the memo
that shares one answer between alike pairs."""

from __future__ import annotations

import pytest

from fp8doctor.checkpoint.config import ModelConfig, QuantConfig
from fp8doctor.checkpoint.header import TensorInfo
from fp8doctor.layouts.model import LayoutOverride, ScaleLayout
from fp8doctor.layouts.pairing import LayoutBuilder, PairingResult, find_pairs, find_pairs_by_convention
from tests.helpers.headers import info as _t


def _build(*tensors: TensorInfo, block=None, quant_method=None, dims=None, overrides=()) -> PairingResult:
    config = ModelConfig(quant=QuantConfig(block_size=block, quant_method=quant_method), dims=dims or {})
    return LayoutBuilder({t.name: t for t in tensors}, config, tuple(overrides)).build()


def _rules(res: PairingResult) -> list[tuple[str, str | None]]:
    return [(f.rule, f.tensor) for f in res.findings]


def _layout(res: PairingResult, name: str) -> ScaleLayout:
    (lay,) = [lay for lay in res.layouts if lay.name == name]
    return lay


# -- find_pairs ---------------------------------------------------------------------------------


def test_find_pairs_maps_each_scale_to_its_weight_and_lists_the_scaled_weights():
    tensors = {t.name: t for t in (
        _t("l.0.q.weight", "F8_E4M3", (256, 256)), _t("l.0.q.weight_scale_inv", "F32", (2, 2)),
        _t("l.0.k.weight", "F8_E4M3", (256, 256)), _t("l.0.k.scale", "F8_E8M0", (2, 2)),
        _t("l.0.norm.weight", "BF16", (256,)), _t("lonely.weight_scale_inv", "F32", (2, 2)),
        _t("l.0.e.weight", "F8_E4M3", (256, 256)))}
    pairs, scaled = find_pairs(tensors)
    assert {s: (w.name if w else None) for s, w in pairs.items()} == {
        "l.0.q.weight_scale_inv": "l.0.q.weight", "l.0.k.scale": "l.0.k.weight", "lonely.weight_scale_inv": None}
    assert scaled == {"l.0.q.weight", "l.0.k.weight"}
    _, _, conventions = find_pairs_by_convention(tensors)
    assert set(conventions) == {"l.0.q.weight_scale_inv", "l.0.k.scale"}  # orphans have no convention


def test_any_e8m0_tensor_is_a_scale_whatever_its_name():
    pairs, scaled = find_pairs({t.name: t for t in (
        _t("model.mystery", "F8_E8M0", (4, 4)), _t("model.layers.0.ffn.gate_scales_x", "F8_E8M0", (8,)),
        _t("model.other", "U8", (4, 4)))})
    assert pairs == {"model.mystery": None, "model.layers.0.ffn.gate_scales_x": None} and scaled == set()


def test_tensors_that_only_look_like_scales_are_not_paired():
    res = _build(_t("m.norm.scale", "F32", (64,)),  # a norm weight some models call `.scale`
                 _t("m.attn.k_scale", "F32", ()), _t("m.attn.v_scale", "F32", ()),  # KV-cache scales
                 _t("m.proj.output_scale", "F32", ()),
                 _t("m.rope.inv_freq", "F32", (32,)))
    assert res.layouts == [] and res.value_only == [] and res.findings == [] and res.scale_names == frozenset()


def test_a_name_two_conventions_could_claim_goes_to_the_weight_that_exists():
    packed = {t.name: t for t in (_t("a.weight", "BF16", (8, 64)), _t("a.weight_packed", "U8", (8, 32)),
                                  _t("a.weight_scale", "U8", (8, 2)))}
    pairs, scaled, conv = find_pairs_by_convention(packed)
    assert pairs["a.weight_scale"].name == "a.weight_packed" and conv["a.weight_scale"].name == (
        "compressed-tensors-packed") and scaled == {"a.weight_packed"}
    # `.weight_scale` beside an FP8 `.weight`: the first convention whose is_scale says yes
    fp8 = {t.name: t for t in (_t("b.weight", "F8_E4M3", (64, 64)), _t("b.weight_scale", "F32", (64, 1)))}
    assert find_pairs_by_convention(fp8)[2]["b.weight_scale"].name == "weight-scale"
    # `.scale` beside a packed FP4 weight: DeepSeek V4's FP8 convention declines, its FP4 one claims
    fp4 = {t.name: t for t in (_t("c.weight", "U8", (64, 32)), _t("c.scale", "F8_E8M0", (64, 2)))}
    assert find_pairs_by_convention(fp4)[2]["c.scale"].name == "deepseek-v4-fp4"


def test_the_longest_suffix_decides():
    # `.weight_scale_inv` is not `X.weight_scale` + "_inv"; `._weight_scale` is not `X.` + `_weight_scale`
    _, _, conv = find_pairs_by_convention({t.name: t for t in (
        _t("a.weight", "F8_E4M3", (256, 256)), _t("a.weight_scale_inv", "F32", (2, 2)),
        _t("b._weight_qdata", "F8_E4M3", (32, 64)), _t("b._weight_scale", "F8_E8M0", (32, 2)))})
    assert {k: v.name for k, v in conv.items()} == {"a.weight_scale_inv": "deepseek-v3", "b._weight_scale": "torchao"}


# -- the findings and the value-only list ------------------------------------------------------------


def test_orphans_are_reported_and_still_value_checked():
    res = _build(_t("lonely.weight_scale_inv", "F32", (2, 2)), _t("gone.scale", "F8_E8M0", (2, 2)),
                 _t("x_scales", "U8", (4, 2)), _t("stray", "F8_E8M0", (3,)))
    orphans = ["lonely.weight_scale_inv", "gone.scale", "x_scales", "stray"]
    assert _rules(res) == [("scale-orphan", n) for n in orphans]
    assert [t.name for t in res.value_only] == orphans and res.layouts == []
    assert res.scale_names == frozenset(orphans)
    assert "F32 scale lonely.weight_scale_inv [2, 2] has no quantized weight" in res.findings[0].message


def test_a_quantized_weight_without_its_scale():
    res = _build(_t("h.weight", "F8_E4M3", (256, 256)), _t("h.input_scale", "F32", ()),  # an input scale is not it
                 _t("empty.weight", "F8_E4M3", (0, 256)),  # nothing to scale
                 _t("bf.weight", "BF16", (256, 256)))
    assert _rules(res) == [("scale-missing", "h.weight")]
    assert "looked for h.weight_scale_inv, h.weight_scale, h.scale" in res.findings[0].message
    assert res.companions == {"h.weight": {".input_scale"}}


def test_undecodable_scales_are_named_not_checked():
    res = _build(_t("a.weight", "F8_E4M3", (256, 256)), _t("a.weight_scale_inv", "F64", (2, 2)))
    assert _rules(res) == [("layout-unknown", "a.weight_scale_inv")] and "F64" in res.findings[0].message
    assert res.layouts == [] and res.value_only == [] and res.scale_names == {"a.weight_scale_inv"}


@pytest.mark.parametrize(("scale_shape", "why"), [((1, 2, 2), "rank 3 vs weight rank 2"),
                                                  ((1, 2), "axis 0 needs 2 entries at block 128x128, has 1"),
                                                  ((2, 1, 2), "rank 3")])
def test_a_scale_that_cannot_cover_its_weight_is_value_only(scale_shape, why):
    res = _build(_t("a.weight", "F8_E4M3", (256, 256)), _t("a.weight_scale_inv", "F32", scale_shape), block=(128, 128))
    assert _rules(res) == [("scale-shape-mismatch", "a.weight_scale_inv")] and why in res.findings[0].message
    assert [t.name for t in res.value_only] == ["a.weight_scale_inv"] and res.layouts == []


def test_a_configured_logical_shape_that_does_not_fit_is_refused():
    res = _build(_t("a.weight", "F8_E4M3", (256, 256)), _t("a.weight_scale_inv", "F32", (2, 2)), block=(128, 128),
                 overrides=[LayoutOverride.parse("a.*:logical=300x256")])
    assert _rules(res) == [("layout-unknown", "a.weight_scale_inv")]
    assert [t.name for t in res.value_only] == ["a.weight_scale_inv"]


# -- second-level scales and companions ----------------------------------------------------------------


def test_second_level_scales_become_tensor_layouts_and_companions():
    res = _build(_t("a.weight", "U8", (256, 256)), _t("a.weight_scale", "F8_E4M3", (256, 32)),
                 _t("a.weight_scale_2", "F32", ()), _t("a.input_scale", "F32", ()),
                 _t("b.weight_packed", "U8", (64, 32)), _t("b.weight_scale", "F8_E4M3", (64, 4)),
                 _t("b.weight_global_scale", "F32", (1,)),
                 _t("c._weight_qdata", "U8", (128, 32)), _t("c._weight_per_tensor_scale", "F8_E8M0", ()),
                 _t("z.weight_global_scale", "F32", (1,)),  # no weight: value-only, no companion
                 _t("y.input_scale", "I64", ()),  # undecodable: skipped
                 quant_method="modelopt")
    assert res.companions == {"a.weight": {".weight_scale_2", ".input_scale"}, "b.weight_packed": {
        ".weight_global_scale"}, "c._weight_qdata": {"._weight_per_tensor_scale"}}
    roles = {lay.name: (lay.kind, lay.role, lay.encoding, lay.weight.name)
             for lay in res.layouts if lay.kind == "tensor"}
    assert roles == {"a.weight_scale_2": ("tensor", "global", "f32", "a.weight"),
                     "a.input_scale": ("tensor", "input", "f32", "a.weight"),
                     "b.weight_global_scale": ("tensor", "global", "f32", "b.weight_packed"),
                     "c._weight_per_tensor_scale": ("tensor", "global", "e8m0", "c._weight_qdata")}
    assert [t.name for t in res.value_only] == ["z.weight_global_scale"]
    # an E8M0 per-tensor scale is a second-level scale, not an orphan block scale
    assert ("scale-orphan", "c._weight_per_tensor_scale") not in _rules(res)
    assert _layout(res, "a.weight_scale").block == (1, 16) and _layout(res, "b.weight_scale").block == (1, 16)


# -- the block: config, vote, overrides ---------------------------------------------------------------


def test_the_block_is_voted_from_shapes_when_config_says_none():
    res = _build(_t("a.weight", "F8_E4M3", (256, 512)), _t("a.weight_scale_inv", "F32", (2, 4)),
                 _t("b.weight", "F8_E4M3", (300, 300)), _t("b.weight_scale_inv", "F32", (3, 3)))
    assert res.findings == []
    assert {(lay.block, lay.source) for lay in res.layouts} == {((128, 128), "inferred")}
    res = _build(_t("a.weight", "F8_E4M3", (256, 512)), _t("a.weight_scale_inv", "F32", (4, 8)),
                 _t("b.weight", "F8_E4M3", (100, 100)), _t("b.weight_scale_inv", "F32", (2, 2)))
    assert {(lay.block, lay.source) for lay in res.layouts} == {((64, 64), "inferred")} and res.findings == []


def test_a_vote_that_does_not_fit_everything_says_so():
    res = _build(_t("a.weight", "F8_E4M3", (256, 512)), _t("a.weight_scale_inv", "F32", (2, 4)),
                 _t("b.weight", "F8_E4M3", (256, 512)), _t("b.weight_scale_inv", "F32", (3, 7)))
    assert _rules(res) == [("layout-ambiguous", None)]
    assert "inferred 128x128 from shapes (fits 1 of 2 FP8 scale tensors)" in res.findings[0].message
    b = _layout(res, "b.weight_scale_inv")
    assert (b.source, b.trusted, b.logical_shape) == ("ambiguous", False, (2, 4))  # fix never writes a guess
    assert _layout(res, "a.weight_scale_inv").trusted

    none = _build(_t("a.weight", "F8_E4M3", (256, 512)), _t("a.weight_scale_inv", "F32", (3, 7)))
    assert _rules(none) == [("layout-ambiguous", None), ("layout-unknown", "a.weight_scale_inv")]
    assert [t.name for t in none.value_only] == ["a.weight_scale_inv"]


def test_per_channel_scales_do_not_vote():
    res = _build(_t("a.weight", "F8_E4M3", (256, 512)), _t("a.weight_scale", "F32", (256, 1)),
                 _t("b.weight", "F8_E4M3", (256, 512)), _t("b.weight_scale_inv", "F32", (2, 4)))
    assert {lay.name: (lay.block, lay.source) for lay in res.layouts} == {
        "a.weight_scale": ((1, 512), "format"), "b.weight_scale_inv": ((128, 128), "inferred")}
    assert res.findings == []  # the per-channel scale is not counted as one the vote failed to fit


def test_a_config_block_that_the_grid_contradicts():
    # 128x128 needs a 2 x 3 grid; 4 x 6 is what 64x64 needs exactly and no alignment makes 3 into 6
    res = _build(_t("a.weight", "F8_E4M3", (256, 384)), _t("a.weight_scale_inv", "F32", (4, 6)), block=(128, 128))
    assert _rules(res) == [("config-mismatch", "a.weight_scale_inv")]
    lay = _layout(res, "a.weight_scale_inv")
    assert (lay.source, lay.trusted, lay.block) == ("mismatch", False, (128, 128))
    # 4 x 8 is 2 x 4 aligned up to 4 and 8, or exactly 64x64: ambiguous, no finding, not trusted
    res = _build(_t("a.weight", "F8_E4M3", (256, 512)), _t("a.weight_scale_inv", "F32", (4, 8)), block=(128, 128))
    lay = _layout(res, "a.weight_scale_inv")
    assert res.findings == [] and (lay.source, lay.trusted) == ("ambiguous", False)


def test_overrides_win_over_config_and_the_vote():
    tensors = (_t("a.weight", "F8_E4M3", (256, 512)), _t("a.weight_scale_inv", "F32", (4, 8)),
               _t("b.weight", "F8_E4M3", (256, 512)), _t("b.weight_scale_inv", "F32", (4, 8)))
    res = _build(*tensors, block=(128, 128), overrides=[LayoutOverride.parse("a.*:block=64x64,logical=200x512")])
    a, b = _layout(res, "a.weight_scale_inv"), _layout(res, "b.weight_scale_inv")
    assert (a.block, a.source, a.logical_weight_shape, a.logical_shape) == ((64, 64), "override", (200, 512), (4, 8))
    assert (a.padded_count, a.trusted) == (0, True)
    assert (b.block, b.source) == ((128, 128), "ambiguous")
    logical = _build(*tensors, block=(64, 64), overrides=[LayoutOverride.parse("b.weight:logical=200x500")])
    b = _layout(logical, "b.weight_scale_inv")
    assert (b.block, b.source, b.logical_shape, b.padded_count) == ((64, 64), "config", (4, 8), 0)
    assert _layout(_build(*tensors, block=(128, 128), overrides=[LayoutOverride.parse("b.weight:logical=200x300")]),
                   "b.weight_scale_inv").logical_shape == (2, 3)
    later = _build(*tensors, overrides=[LayoutOverride.parse("*:block=128x128"), LayoutOverride.parse("*:block=64x64")])
    assert {lay.block for lay in later.layouts} == {(64, 64)}  # the later override wins


# -- alike pairs share one answer ---------------------------------------------------------------------


def test_alike_pairs_get_the_layout_built_for_each():
    dims = {"moe_intermediate_size": 1920}
    names = [f"model.layers.{i}.mlp.experts.{j}.gate_proj" for i in range(2) for j in range(3)]
    tensors = [x for n in names for x in (_t(n + ".weight", "F8_E4M3", (2048, 7168)),
                                          _t(n + ".weight_scale_inv", "F32", (16, 56)))]
    # same dtypes and shapes, but no dims rule: not padded
    tensors += [_t("model.layers.0.mlp.gate_proj.weight", "F8_E4M3", (2048, 7168)),
                _t("model.layers.0.mlp.gate_proj.weight_scale_inv", "F32", (16, 56))]
    res = _build(*tensors, block=(128, 128), dims=dims)
    assert res.findings == []
    for lay in res.layouts:
        fresh = ScaleLayout(lay.scale, lay.weight, lay.kind, lay.encoding, lay.block, lay.weight_shape,
                            lay.logical_weight_shape, lay.logical_shape, lay.source, lay.note)
        assert lay == fresh and lay.describe() == fresh.describe()
        assert lay.weight.name == lay.name.replace("_scale_inv", "")
    shapes = {lay.name: lay.logical_shape for lay in res.layouts}
    assert shapes.pop("model.layers.0.mlp.gate_proj.weight_scale_inv") == (16, 56)
    assert set(shapes.values()) == {(15, 56)} and len(shapes) == 6
