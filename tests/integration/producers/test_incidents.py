"""The failures that broke real deployments (public trackers), reproduced on real producers' exports."""

from __future__ import annotations

import json
import os
import struct

import numpy as np

from fp8doctor import Severity, fix, scan
from tests.integration.producers.matrix import TARGET, _tensor, _write, shard_bytes


def _errors(path: str, rule: str | None = None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in scan(path).findings:
        if f.severity == Severity.ERROR and (rule is None or f.rule == rule):
            out.setdefault(f.tensor or "", []).append(f.rule)
    return out


def _config(path: str, edit) -> None:
    p = os.path.join(path, "config.json")
    with open(p) as f:
        cfg = json.load(f)
    edit(cfg)
    with open(p, "w") as f:
        json.dump(cfg, f)


def drop_tensor(path: str, name: str) -> None:
    """Rewrite the shard holding `name` without it (raw bytes; offsets renumbered)."""
    t = _tensor(path, name)
    file = os.path.join(path, t.file)
    with open(file, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    header.pop(name)
    out, parts, pos = {}, [], 0
    entries = [(k, v) for k, v in header.items() if k != "__metadata__"]
    for k, v in sorted(entries, key=lambda kv: kv[1]["data_offsets"]):
        a, b = v["data_offsets"]
        parts.append(data[a:b])
        out[k] = {**v, "data_offsets": [pos, pos + b - a]}
        pos += b - a
    if "__metadata__" in header:
        out["__metadata__"] = header["__metadata__"]
    blob = json.dumps(out).encode()
    blob += b" " * (-len(blob) % 8)
    with open(file, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob + b"".join(parts))


def test_e4m3_nan_bytes_0x7f_and_0xff_from_an_overflowed_cast(producer_ckpt):
    """vllm-omni #4025: NVFP4 E4M3 weight_scale bytes 0x7F/0xFF (FP32 -> E4M3 overflow)."""
    for name in ("llmcompressor-NVFP4", "modelopt-NVFP4", "torchao-nvfp4"):
        path, _ = producer_ckpt(name)
        scale = next(n for n in ("_weight_scale", "weight_scale") if _tensor(path, f"{TARGET}.{n}"))
        t = _tensor(path, f"{TARGET}.{scale}")
        _write(path, t, 0, b"\x7f\xff")
        [f] = [f for f in scan(path).findings if f.tensor == t.name]
        assert (f.rule, f.count, f.severity) == ("scale-nan", 2, Severity.ERROR), name


def test_e4m3_negative_and_saturated_block_scales(producer_ckpt):
    path, _ = producer_ckpt("llmcompressor-NVFP4")
    t = _tensor(path, f"{TARGET}.weight_scale")
    _write(path, t, 0, b"\xb8")  # -1.0
    _write(path, t, 64, b"\x7e" * (t.nbytes // 2))  # half the blocks clipped at 448
    rules = {f.rule for f in scan(path).findings if f.tensor == t.name and f.severity == Severity.ERROR}
    assert {"scale-negative", "scale-saturated"} <= rules


def test_clean_nvfp4_exports_have_only_a_few_blocks_at_448(producer_ckpt):
    """The saturation rule's tolerance, measured: real exports put only the amax block(s) at 448."""
    for name in ("llmcompressor-NVFP4", "modelopt-NVFP4", "torchao-nvfp4"):
        path, _ = producer_ckpt(name)
        assert "scale-saturated" not in scan(path).by_rule()


def test_global_scale_zero_negative_inf_and_absurd(producer_ckpt):
    """TensorRT-LLM #16447: a global scale of 0 for experts that saw no calibration tokens."""
    path, _ = producer_ckpt("modelopt-NVFP4")
    cases = {"model.layers.0.self_attn.q_proj.weight_scale_2": np.float32(0.0),
             "model.layers.0.self_attn.k_proj.weight_scale_2": np.float32(-3e-5),
             "model.layers.0.self_attn.v_proj.weight_scale_2": np.float32(np.inf),
             "model.layers.0.self_attn.o_proj.weight_scale_2": np.float32(1e30),
             "model.layers.0.mlp.up_proj.input_scale": np.float32(0.0)}
    for name, value in cases.items():
        _write(path, _tensor(path, name), 0, value.tobytes())
    errors = _errors(path)
    assert set(cases) <= set(errors), {n: errors.get(n) for n in cases}


def test_global_scale_written_as_multiplier_where_the_convention_divides(producer_ckpt):
    """modular #6600: compressed-tensors keeps (448 * 6) / amax; amax / (448 * 6) there is wrong."""
    path, _ = producer_ckpt("llmcompressor-NVFP4A16")
    name = f"{TARGET}.weight_global_scale"
    t = _tensor(path, name)
    with open(os.path.join(path, t.file), "rb") as f:
        f.seek(t.offset)
        divisor = np.frombuffer(f.read(4), "<f4")[0]
    _write(path, t, 0, np.float32(1.0 / divisor).tobytes())
    assert "scale-implausible" in _errors(path).get(name, [])


def test_missing_input_scale_of_one_module(producer_ckpt):
    """vLLM #45212: a missing per-expert input_scale (static activations)."""
    path, _ = producer_ckpt("modelopt-FP8")
    drop_tensor(path, f"{TARGET}.input_scale")
    assert _errors(path, "scale-companion-missing") == {f"{TARGET}.weight": ["scale-companion-missing"]}


def test_missing_global_scale(producer_ckpt):
    path, _ = producer_ckpt("llmcompressor-NVFP4A16")
    drop_tensor(path, f"{TARGET}.weight_global_scale")
    assert _errors(path, "scale-companion-missing") == {f"{TARGET}.weight_packed": ["scale-companion-missing"]}


def test_quantized_weight_written_without_its_scale(producer_ckpt):
    """imp #1450: an FP8 weight saved without its scale_inv."""
    path, _ = producer_ckpt("transformers-FP8")
    drop_tensor(path, f"{TARGET}.weight_scale_inv")
    assert _errors(path) == {f"{TARGET}.weight": ["scale-missing"]}


def test_ue8m0_declared_while_scales_are_not_powers_of_two(producer_ckpt):
    """sglang #29954: DeepGEMM asserts (bits & 0x807fffff) == 0 on F32 scales."""
    path, _ = producer_ckpt("transformers-FP8")
    _config(path, lambda c: c["quantization_config"].update(scale_fmt="ue8m0"))
    msgs = [f.message for f in scan(path).findings if f.rule == "scale-not-power-of-two"]
    assert msgs and all("0x807fffff" in m for m in msgs)


def test_module_listed_as_not_converted_but_stored_quantized(producer_ckpt):
    path, _ = producer_ckpt("llmcompressor-FP8_BLOCK")
    _config(path, lambda c: c["quantization_config"]["ignore"].append(TARGET))
    assert "config-mismatch" in _errors(path).get(f"{TARGET}.weight", [])
    path, _ = producer_ckpt("modelopt-MXFP8")
    _config(path, lambda c: c["quantization_config"]["ignore"].append("*self_attn.q_proj"))
    assert "config-mismatch" in _errors(path).get(f"{TARGET}.weight", [])


def test_clean_ignore_lists_match_nothing_quantized(producer_ckpt):
    for name in ("llmcompressor-FP8_BLOCK", "modelopt-FP8", "modelopt-NVFP4"):
        path, _ = producer_ckpt(name)
        assert "config-mismatch" not in scan(path).by_rule()


def test_expert_dtype_against_the_stored_experts(v4):
    """vLLM #42970: expert_dtype in config.json disagreeing with the stored experts."""
    _config(v4, lambda c: c.update(expert_dtype="fp8"))
    rules = scan(v4).by_rule()
    assert rules.get("config-mismatch") == 1


def test_quantization_config_nested_under_text_config(producer_ckpt):
    """Multimodal wrappers keep quantization_config in text_config: the group size still comes from it."""
    path, _ = producer_ckpt("llmcompressor-W4A16")

    def nest(c):
        c["text_config"] = {"quantization_config": c.pop("quantization_config"), "hidden_size": c["hidden_size"]}

    _config(path, nest)
    report = scan(path)
    assert report.findings == ()
    lay = {d["scale"]: d for d in report.layouts}[f"{TARGET}.weight_scale"]
    assert lay["block"] == [1, 128] and lay["source"] == "config"


def test_fix_rewrites_torchao_padding_only(producer_ckpt):
    path, _ = producer_ckpt("torchao-mxfp8")
    clean = shard_bytes(path)
    t = _tensor(path, f"{TARGET}._weight_scale")
    lay = {d["scale"]: d for d in scan(path).layouts}[t.name]
    assert lay["swizzle"] == "torchao-128x4" and lay["padded_entries"] > 0
    from fp8doctor.layouts.swizzle import Swizzle

    pad = np.flatnonzero(Swizzle(*lay["logical_shape"]).padding_mask())
    _write(path, t, int(pad[0]), b"\xff")
    [f] = scan(path).findings
    assert (f.rule, f.fixable, f.index) == ("scale-padding-nonzero", True,
                                            tuple(int(x) for x in np.unravel_index(pad[0], t.shape)))
    result = fix(path)
    assert result.entries_changed == 1 and shard_bytes(path) == clean


def test_modelopt_export_whose_config_json_says_nothing_is_read_from_hf_quant_config(producer_ckpt):
    """Older ModelOpt exports keep the quantization only in hf_quant_config.json."""
    path, _ = producer_ckpt("modelopt-FP8")
    _config(path, lambda c: c.pop("quantization_config"))
    assert scan(path).findings == ()
    from fp8doctor.checkpoint.loader import open_checkpoint

    with open_checkpoint(path) as ck:
        quant = ck.config.quant
    assert (quant.quant_method, quant.algo, quant.static_input) == ("modelopt", "FP8", True)
    assert "lm_head" in quant.modules_to_not_convert
