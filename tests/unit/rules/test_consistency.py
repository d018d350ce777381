"""rules/consistency.py: companions, config against tensors, single-entry scales (header-level rules)."""

from __future__ import annotations

from fp8doctor.checkpoint.config import parse_config
from fp8doctor.checkpoint.header import TensorInfo
from fp8doctor.layouts.pairing import LayoutBuilder
from fp8doctor.rules.consistency import check_companions, check_config
from tests.helpers.headers import info as _t


def _experts(n: int, without_input: set[int]) -> dict[str, TensorInfo]:
    ts = []
    for e in range(n):
        stem = f"model.layers.0.mlp.experts.{e}.up_proj"
        ts += [_t(f"{stem}.weight", "F8_E4M3", (128, 256)), _t(f"{stem}.weight_scale", "F32", ())]
        if e not in without_input:
            ts.append(_t(f"{stem}.input_scale", "F32", ()))
    return {t.name: t for t in ts}


def _companions(tensors, config=None):
    res = LayoutBuilder(tensors, config).build()
    return [(f.rule, f.tensor) for f in check_companions(res.layouts, res.companions, config)]


def test_a_missing_per_expert_input_scale_is_found_from_its_siblings():
    assert _companions(_experts(8, set())) == []
    assert _companions(_experts(8, {5})) == [
        ("scale-companion-missing", "model.layers.0.mlp.experts.5.up_proj.weight")]


def test_static_activations_in_config_require_input_scales_everywhere():
    config, _ = parse_config({"quantization_config": {"quant_method": "modelopt", "quant_algo": "FP8"}})
    assert len(_companions(_experts(3, {0, 1, 2}), config)) == 3
    assert _companions(_experts(3, {0, 1, 2})) == []  # nothing says they should be there


def test_ignore_entries_match_as_their_producers_loaders_do():
    tensors = _experts(2, set())
    for qc, hit in (({"quant_method": "compressed-tensors", "ignore": ["re:.*experts\\.1\\..*"]}, True),
                    ({"quant_method": "compressed-tensors", "ignore": ["up_proj"]}, True),
                    ({"quant_method": "compressed-tensors", "ignore": ["lm_head"]}, False),
                    ({"quant_method": "modelopt", "exclude_modules": ["*experts.0*"]}, True),
                    ({"quant_method": "fp8", "modules_to_not_convert": ["experts"]}, True),
                    ({"quant_method": "fp8", "modules_to_not_convert": ["expert"]}, False)):
        config, _ = parse_config({"quantization_config": qc})
        res = LayoutBuilder(tensors, config).build()
        found = [f.rule for f in check_config(tensors, res.layouts, config)]
        assert found == (["config-mismatch"] if hit else []), qc
