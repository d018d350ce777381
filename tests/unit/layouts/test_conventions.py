"""Unit tests of the convention registry (layouts/conventions/) and the pairing that runs it."""

from __future__ import annotations

from fp8doctor.checkpoint.header import TensorInfo
from fp8doctor.layouts.conventions import (
    CONVENTIONS,
    DIM_RULES,
    SCALE_SUFFIXES,
    SECOND_LEVEL,
    expected_scale_names,
    needs_scale,
)
from fp8doctor.layouts.dims import logical_weight_shape
from fp8doctor.layouts.pairing import find_pairs_by_convention, find_second_level
from tests.helpers.headers import info as _t
from tests.helpers.repo import repo_path


def _pairs(*tensors: TensorInfo) -> dict[str, str]:
    pairs, _, conv = find_pairs_by_convention({t.name: t for t in tensors})
    return {s: conv[s].name for s, w in pairs.items() if w is not None}


def test_every_convention_has_a_unique_name_and_a_summary():
    names = [c.name for c in CONVENTIONS]
    assert len(set(names)) == len(names)
    assert all(c.summary and c.weight_suffixes for c in CONVENTIONS)
    assert SCALE_SUFFIXES == (".weight_scale_inv", ".weight_scale", ".scale", "_scales", "._weight_scale")


def test_each_convention_claims_its_pairs():
    assert _pairs(_t("a.weight", "F8_E4M3", (256, 256)), _t("a.weight_scale_inv", "F32", (2, 2))) == {
        "a.weight_scale_inv": "deepseek-v3"}
    assert _pairs(_t("a.weight_packed", "U8", (8, 64)), _t("a.weight_scale", "U8", (8, 4))) == {
        "a.weight_scale": "compressed-tensors-packed"}
    assert _pairs(_t("a.weight", "F8_E4M3", (256, 256)), _t("a.weight_scale", "F8_E8M0", (2, 2))) == {
        "a.weight_scale": "weight-scale"}
    assert _pairs(_t("a.weight", "F8_E4M3", (256, 256)), _t("a.scale", "F8_E8M0", (2, 2))) == {
        "a.scale": "deepseek-v4"}
    assert _pairs(_t("a.weight", "I8", (8, 64)), _t("a.scale", "F8_E8M0", (8, 4))) == {"a.scale": "deepseek-v4-fp4"}
    assert _pairs(_t("e.gate_up_proj_blocks", "U8", (2, 8, 4, 16)), _t("e.gate_up_proj_scales", "U8", (2, 8, 4))) == {
        "e.gate_up_proj_scales": "gpt-oss"}
    assert _pairs(_t("a.weight", "U8", (256, 128)), _t("a.weight_scale", "F8_E4M3", (256, 16))) == {
        "a.weight_scale": "modelopt"}  # NVFP4: packed X.weight
    assert _pairs(_t("a.weight", "F8_E4M3", (256, 256)), _t("a.weight_scale", "F32", (2, 1, 2, 1))) == {
        "a.weight_scale": "modelopt"}  # 2D blockwise, rank 4
    assert _pairs(_t("a.weight_packed", "I32", (256, 32)), _t("a.weight_scale", "BF16", (256, 2))) == {
        "a.weight_scale": "compressed-tensors-packed"}  # pack-quantized W4A16
    assert _pairs(_t("a._weight_qdata", "F8_E4M3", (320, 320)), _t("a._weight_scale", "F8_E8M0", (96, 48))) == {
        "a._weight_scale": "torchao"}


def test_second_level_scales_are_every_conventions_companions():
    assert SECOND_LEVEL == {".weight_global_scale": "global", ".input_global_scale": "input", ".input_scale": "input",
                            ".weight_scale_2": "global", "._weight_per_tensor_scale": "global"}
    found = find_second_level({t.name: t for t in (
        _t("a.weight_packed", "U8", (8, 64)), _t("a.weight_global_scale", "F32", (1,)),
        _t("b._weight_qdata", "U8", (8, 64)), _t("b._weight_per_tensor_scale", "F32", ()),
        _t("c.input_scale", "F32", ()))})
    assert {n: (role, w.name if w else None) for n, (_, role, w) in found.items()} == {
        "a.weight_global_scale": ("global", "a.weight_packed"),
        "b._weight_per_tensor_scale": ("global", "b._weight_qdata"), "c.input_scale": ("input", None)}


def test_layouts_page_table_names_every_convention():

    page = open(repo_path("docs", "layouts.md"), encoding="utf-8").read()
    table = "\n".join(line for line in page.split("\n") if line.startswith("| "))
    for c in CONVENTIONS:
        assert f"`{c.name}`" in table, c.name


def test_a_float_scale_beside_an_unquantized_weight_is_a_norm_not_a_scale():
    pairs, _, _ = find_pairs_by_convention({t.name: t for t in (
        _t("n.weight", "BF16", (64,)), _t("n.scale", "F32", (64,)))})
    assert pairs == {}


def test_needs_scale_and_the_names_looked_for():
    assert needs_scale(_t("a.weight", "F8_E4M3", (4, 4)), None)
    assert needs_scale(_t("a.weight_packed", "U8", (4, 4)), None)
    assert needs_scale(_t("x_blocks", "U8", (4, 4, 16)), None)
    assert not needs_scale(_t("a.weight", "I8", (4, 4)), None)  # I8 is FP4 only when config.json says so
    assert not needs_scale(_t("a.weight", "BF16", (4, 4)), None)
    assert expected_scale_names("a.weight") == "a.weight_scale_inv, a.weight_scale, a.scale"
    assert expected_scale_names("x_blocks") == "x_scales"
    assert expected_scale_names("x._weight_qdata") == "x._weight_scale"
    assert needs_scale(_t("a.weight_packed", "I32", (4, 4)), None)
    assert needs_scale(_t("a._weight_qdata", "U8", (4, 4)), None)


def test_config_dims_shrink_only_padded_expert_dims():
    assert len(DIM_RULES) == 4
    dims = {"moe_intermediate_size": 80}
    assert logical_weight_shape("layers.0.ffn.experts.3.w1.weight", (96, 320), dims) == (80, 320)
    assert logical_weight_shape("layers.0.ffn.experts.3.w2.weight", (320, 96), dims) == (320, 80)
    assert logical_weight_shape("layers.0.attn.wq.weight", (96, 320), dims) == (96, 320)
    assert logical_weight_shape("layers.0.ffn.experts.3.w1.weight", (200, 320), dims) == (200, 320)  # not padding
