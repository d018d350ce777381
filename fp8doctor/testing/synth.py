"""Small synthetic checkpoints in every supported layout, written with safetensors' own writer.

Used by `make demo`, the tests and the benchmarks: nothing downloads weights. Scales are realistic
E8M0/F32 powers of two around 2^-10; padded scale entries are zero-exponent bytes unless a fault
asks for garbage (what `torch.empty` leaves behind).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import numpy as np
from safetensors import TensorSpec, serialize_file

_NP_NAME = {  # safetensors dtype -> the writer's dtype name
    "F8_E8M0": "float8_e8m0fnu", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "U8": "uint8",
    "I8": "int8", "F32": "float32", "BF16": "bfloat16", "F16": "float16", "F4": "float4_e2m1fn_x2",
}


@dataclass
class Tensor:
    dtype: str
    shape: tuple[int, ...]
    data: np.ndarray  # raw bytes as uint8, C order


def write_safetensors(path: str, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write tensors given as raw bytes with safetensors' writer (any dtype, incl. F8_E8M0)."""
    specs = {}
    keep = []
    for name, t in tensors.items():
        buf = np.ascontiguousarray(t.data, dtype=np.uint8)
        keep.append(buf)
        shape = list(t.shape)
        if t.dtype == "F4":  # the writer counts float4_e2m1fn_x2 in byte pairs
            shape = [*shape[:-1], shape[-1] // 2]
        specs[name] = TensorSpec(dtype=_NP_NAME[t.dtype], shape=shape, data_ptr=buf.ctypes.data, data_len=buf.nbytes)
    serialize_file(specs, path, metadata)
    del keep


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _round_up(a: int, b: int) -> int:
    return _cdiv(a, b) * b


@dataclass
class Builder:
    """Collects tensors, then writes them into shards plus index and config."""

    seed: int = 0
    tensors: dict[str, Tensor] = field(default_factory=dict)
    padding: dict[str, tuple[int, ...]] = field(default_factory=dict)  # scale name -> logical box

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def fp8_weight(self, shape: tuple[int, ...]) -> Tensor:
        codes = self.rng.integers(0, 0x7E, size=shape, dtype=np.uint8)  # no NaN codes
        codes |= (self.rng.integers(0, 2, size=shape, dtype=np.uint8) << 7)
        return Tensor("F8_E4M3", shape, codes)

    def fp4_weight(self, shape: tuple[int, ...], dtype: str = "I8") -> Tensor:
        return Tensor(dtype, shape, self.rng.integers(0, 256, size=shape, dtype=np.uint8))

    def e8m0_scales(self, stored: tuple[int, ...], logical: tuple[int, ...], dtype: str = "F8_E8M0",
                    center: int = 117) -> Tensor:
        data = np.zeros(stored, dtype=np.uint8)
        box = tuple(slice(0, n) for n in logical)
        data[box] = self.rng.integers(center - 3, center + 4, size=logical, dtype=np.uint8)
        return Tensor(dtype, stored, data)

    def f32_scales(self, stored: tuple[int, ...], logical: tuple[int, ...], pow2: bool = True) -> Tensor:
        vals = np.zeros(stored, dtype=np.float32)
        box = tuple(slice(0, n) for n in logical)
        exps = self.rng.integers(-13, -7, size=logical)
        v = np.ldexp(1.0, exps).astype(np.float32)
        if not pow2:
            v = v * self.rng.uniform(1.0, 1.9, size=logical).astype(np.float32)
        vals[box] = v
        return Tensor("F32", stored, vals.view(np.uint8).reshape(-1))

    def add(self, name: str, t: Tensor, logical: tuple[int, ...] | None = None) -> None:
        self.tensors[name] = t
        if logical is not None:
            self.padding[name] = logical

    def bf16(self, shape: tuple[int, ...]) -> Tensor:
        vals = (self.rng.standard_normal(shape).astype(np.float32) * 0.02).view(np.uint32) >> 16
        return Tensor("BF16", shape, vals.astype("<u2").view(np.uint8).reshape(-1))

    def write(self, directory: str, shards: int = 1, config: dict | None = None) -> None:
        os.makedirs(directory, exist_ok=True)
        names = list(self.tensors)
        per = max(1, math.ceil(len(names) / shards))
        weight_map = {}
        parts = [names[i:i + per] for i in range(0, len(names), per)]
        for i, part in enumerate(parts):
            fname = "model.safetensors" if len(parts) == 1 else f"model-{i + 1:05d}-of-{len(parts):05d}.safetensors"
            write_safetensors(os.path.join(directory, fname), {n: self.tensors[n] for n in part},
                              {"format": "pt"})
            weight_map.update({n: fname for n in part})
        if len(parts) > 1:
            total = sum(t.data.nbytes for t in self.tensors.values())
            with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
                json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
        if config is not None:
            with open(os.path.join(directory, "config.json"), "w") as f:
                json.dump(config, f, indent=2)


def _fp8_linear(b: Builder, name: str, n: int, k: int, scale_suffix: str, dtype: str, block: int = 128,
                align: int = 1) -> None:
    b.add(f"{name}.weight", b.fp8_weight((n, k)))
    logical = (_cdiv(n, block), _cdiv(k, block))
    stored = (_round_up(logical[0], align), _round_up(logical[1], align))
    scale = b.e8m0_scales(stored, logical) if dtype == "F8_E8M0" else b.f32_scales(stored, logical)
    b.add(f"{name}.{scale_suffix}", scale, logical)


def deepseek_v3(directory: str, layers: int = 2, seed: int = 0, shards: int = 2, ue8m0: bool = True,
                hidden: int = 320, inter: int = 200, experts: int = 2, moe_inter: int = 72) -> Builder:
    """DeepSeek V3/V3.2 HF style: FP8 weights + F32 weight_scale_inv [ceil(N/128), ceil(K/128)]."""
    b = Builder(seed)
    b.add("model.embed_tokens.weight", b.bf16((64, hidden)))
    for layer in range(layers):
        p = f"model.layers.{layer}"
        b.add(f"{p}.input_layernorm.weight", b.bf16((hidden,)))
        for proj, n, k in (("q_a_proj", 192, hidden), ("q_b_proj", 4 * 48, 192),
                           ("kv_a_proj_with_mqa", 96 + 16, hidden), ("kv_b_proj", 4 * 64, 96),
                           ("o_proj", hidden, 4 * 32)):
            _fp8_linear(b, f"{p}.self_attn.{proj}", n, k, "weight_scale_inv", "F32")
        if layer == 0:
            for proj, n, k in (("gate_proj", inter, hidden), ("up_proj", inter, hidden), ("down_proj", hidden, inter)):
                _fp8_linear(b, f"{p}.mlp.{proj}", n, k, "weight_scale_inv", "F32")
        else:
            for e in range(experts):
                for proj, n, k in (("gate_proj", moe_inter, hidden), ("up_proj", moe_inter, hidden),
                                   ("down_proj", hidden, moe_inter)):
                    _fp8_linear(b, f"{p}.mlp.experts.{e}.{proj}", n, k, "weight_scale_inv", "F32")
            b.add(f"{p}.mlp.gate.weight", b.bf16((experts, hidden)))
    qc = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [128, 128]}
    if ue8m0:
        qc["scale_fmt"] = "ue8m0"
    config = {"model_type": "deepseek_v3", "hidden_size": hidden, "intermediate_size": inter,
              "moe_intermediate_size": moe_inter, "n_routed_experts": experts, "num_hidden_layers": layers,
              "q_lora_rank": 192, "kv_lora_rank": 96, "qk_rope_head_dim": 16, "qk_nope_head_dim": 48,
              "v_head_dim": 32, "num_attention_heads": 4, "quantization_config": qc}
    b.write(directory, shards, config)
    return b


def deepseek_v4(directory: str, layers: int = 2, seed: int = 0, shards: int = 2, hidden: int = 320,
                moe_inter: int = 80, moe_inter_stored: int = 96, experts: int = 2, align: int = 4,
                with_config: bool = True) -> Builder:
    """DeepSeek V4 native style: FP8 attention + E8M0 `.scale` (padded to a multiple of `align`),
    FP4 experts (I8 packed) + E8M0 `.scale` [N, K/32] with a padded intermediate size."""
    b = Builder(seed)
    b.add("embed.weight", b.bf16((64, hidden)))
    for layer in range(layers):
        p = f"layers.{layer}"
        b.add(f"{p}.attn_norm.weight", b.bf16((hidden,)))
        for proj, n, k in (("wq_a", 192, hidden), ("wq_b", 4 * 64, 192), ("wkv", 80, hidden),
                           ("wo_a", 160, 4 * 64), ("wo_b", hidden, 160)):
            _fp8_linear(b, f"{p}.attn.{proj}", n, k, "scale", "F8_E8M0", align=align)
        for e in range(experts):
            for proj, n, k, real in (("w1", moe_inter_stored, hidden, (moe_inter, hidden)),
                                     ("w3", moe_inter_stored, hidden, (moe_inter, hidden)),
                                     ("w2", hidden, moe_inter_stored, (hidden, moe_inter))):
                w = b.fp4_weight((n, k // 2))
                w.data[real[0]:, :] = 0  # padded channels quantize to zero codes
                w.data[:, real[1] // 2:] = 0
                b.add(f"{p}.ffn.experts.{e}.{proj}.weight", w)
                logical = (real[0], _cdiv(real[1], 32))
                b.add(f"{p}.ffn.experts.{e}.{proj}.scale", b.e8m0_scales((n, _cdiv(k, 32)), logical), logical)
        b.add(f"{p}.ffn.gate.weight", b.bf16((experts, hidden)))
    config = {"model_type": "deepseek_v4", "dim": hidden, "moe_inter_dim": moe_inter, "n_routed_experts": experts,
              "n_layers": layers, "expert_dtype": "fp4", "sliding_window": 16, "index_topk": 8,
              "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "scale_fmt": "ue8m0",
                                      "weight_block_size": [128, 128]}}
    b.write(directory, shards, config if with_config else None)
    return b


def gpt_oss(directory: str, layers: int = 1, seed: int = 0, experts: int = 4, hidden: int = 96,
            inter: int = 64) -> Builder:
    """gpt-oss MXFP4: `*_blocks` U8 [E, N, G, 16] + `*_scales` U8 [E, N, G]."""
    b = Builder(seed)
    for layer in range(layers):
        p = f"model.layers.{layer}.mlp.experts"
        for proj, n, k in (("gate_up_proj", 2 * inter, hidden), ("down_proj", hidden, inter)):
            g = _cdiv(k, 32)
            b.add(f"{p}.{proj}_blocks", b.fp4_weight((experts, n, g, 16), "U8"))
            b.add(f"{p}.{proj}_scales", b.e8m0_scales((experts, n, g), (experts, n, g), "U8", center=124),
                  (experts, n, g))
            b.add(f"{p}.{proj}_bias", b.bf16((experts, n)))
    config = {"model_type": "gpt_oss", "hidden_size": hidden, "intermediate_size": inter,
              "num_local_experts": experts, "num_hidden_layers": layers,
              "quantization_config": {"quant_method": "mxfp4", "modules_to_not_convert": ["model.layers.*.self_attn"]}}
    b.write(directory, 1, config)
    return b


def compressed_tensors_mxfp4(directory: str, seed: int = 0, n: int = 100, k: int = 256, n_stored: int = 112) -> Builder:
    """compressed-tensors MXFP4: `weight_packed` U8 [N, K/2] + `weight_scale` U8 [N, K/32]."""
    b = Builder(seed)
    for proj in ("q_proj", "o_proj"):
        name = f"model.layers.0.self_attn.{proj}"
        b.add(f"{name}.weight_packed", b.fp4_weight((n_stored, k // 2), "U8"))
        logical = (n_stored, k // 32)
        b.add(f"{name}.weight_scale", b.e8m0_scales((n_stored, k // 32), logical, "U8"), logical)
    config = {"model_type": "llama", "hidden_size": k,
              "quantization_config": {"quant_method": "compressed-tensors", "format": "mxfp4-pack-quantized",
                                      "config_groups": {"group_0": {"targets": ["Linear"], "weights": {
                                          "num_bits": 4, "type": "float", "strategy": "group", "group_size": 32}}}}}
    b.write(directory, 1, config)
    return b


def garble_padding(root: str, prefix: str = "layers.0.", seed: int = 7) -> int:
    """Fill the padded scale entries of tensors whose name starts with `prefix` with leftover-memory
    bytes, as torch.empty leaves them (random non-zero bytes, every 7th a NaN 0xFF). Returns the
    number of bytes changed. The demo, the examples and the tests break checkpoints with this."""
    from fp8doctor.checkpoint.loader import open_checkpoint
    from fp8doctor.scanner import analyze

    with open_checkpoint(root) as ck:
        layouts = analyze(ck).layouts
    rng = np.random.default_rng(seed)
    touched = 0
    for name, lay in sorted(layouts.items()):
        if not name.startswith(prefix) or not lay.has_padding:
            continue
        with open(os.path.join(root, lay.scale.file), "r+b") as f:
            for a, b in lay.padding_ranges():
                n = (b - a) * lay.itemsize
                garbage = rng.integers(1, 256, size=n, dtype=np.uint8)
                garbage[::7] = 0xFF
                f.seek(lay.scale.offset + a * lay.itemsize)
                f.write(garbage.tobytes())
                touched += n
    return touched


# -- MLA-consistent builders with real quantized values (for `verify`) -------------------------------


def _positive_table(fmt: str) -> np.ndarray:
    if fmt == "e4m3":
        from fp8doctor.layouts.encodings import E4M3FN_TABLE
        return E4M3FN_TABLE[:0x7F].astype(np.float64)  # codes 0x00..0x7E, increasing
    return np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])


def _nearest_codes(x: np.ndarray, fmt: str) -> np.ndarray:
    """Round to the nearest representable value (ties to the lower code), as codes."""
    vals = _positive_table(fmt)
    a = np.abs(x)
    hi = np.clip(np.searchsorted(vals, a), 1, len(vals) - 1)
    lo = hi - 1
    code = np.where(a - vals[lo] <= vals[hi] - a, lo, hi).astype(np.uint8)
    sign_bit = 0x80 if fmt == "e4m3" else 0x8
    return np.where((x < 0) & (code != 0), code | sign_bit, code).astype(np.uint8)


def _pow2_scale(amax: np.ndarray, fmax: float) -> np.ndarray:
    """DeepSeek's ue8m0 scale: 2^ceil(log2(amax / fmax)), with a floor for all-zero blocks."""
    return np.exp2(np.ceil(np.log2(np.maximum(amax / fmax, 2.0 ** -126))))


def quantize_fp8_blocks(w: np.ndarray, block: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """[N, K] float -> (E4M3 codes [N, K], power-of-two scales [ceil(N/b), ceil(K/b)])."""
    n, k = w.shape
    rn, rk = _cdiv(n, block), _cdiv(k, block)
    padded = np.zeros((rn * block, rk * block))
    padded[:n, :k] = w
    amax = np.abs(padded.reshape(rn, block, rk, block)).max(axis=(1, 3))
    scale = _pow2_scale(amax, 448.0)
    full = np.repeat(np.repeat(scale, block, 0), block, 1)[:n, :k]
    return _nearest_codes(w / full, "e4m3"), scale.astype(np.float32)


def quantize_fp4_groups(w: np.ndarray, group: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """[N, K] float -> (packed FP4 bytes [N, K/2], low nibble first; E8M0 bytes [N, K/group])."""
    n, k = w.shape
    g = w.reshape(n, k // group, group)
    scale = _pow2_scale(np.abs(g).max(axis=2), 6.0)
    codes = _nearest_codes(g / scale[..., None], "e2m1").reshape(n, k)
    packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)
    return packed, (np.log2(scale) + 127).astype(np.uint8)


def _sane_weight(b: Builder, n: int, k: int, real: tuple[int, int] | None = None) -> np.ndarray:
    """A random weight with unit-scale outputs for unit-RMS inputs; zero outside its real box."""
    w = np.zeros((n, k))
    rn, rk = real or (n, k)
    w[:rn, :rk] = b.rng.standard_normal((rn, rk)) / math.sqrt(rk)
    return w


def _fp8_block_linear(b: Builder, name: str, w: np.ndarray, scale_dtype: str, align: int,
                      real: tuple[int, int] | None = None) -> None:
    """An E4M3 weight quantized the DeepSeek way; scale grid padded to `align` with 0x00 / 0.0."""
    codes, scale = quantize_fp8_blocks(w)
    b.add(f"{name}.weight", Tensor("F8_E4M3", codes.shape, codes))
    rn, rk = real or w.shape
    logical = (_cdiv(rn, 128), _cdiv(rk, 128))
    stored = (_round_up(scale.shape[0], align), _round_up(scale.shape[1], align))
    if scale_dtype == "F8_E8M0":
        data = np.zeros(stored, dtype=np.uint8)
        data[:scale.shape[0], :scale.shape[1]] = (np.log2(scale) + 127).astype(np.uint8)
        b.add(f"{name}.scale", Tensor("F8_E8M0", stored, data), logical)
    else:
        vals = np.zeros(stored, dtype=np.float32)
        vals[:scale.shape[0], :scale.shape[1]] = scale
        b.add(f"{name}.weight_scale_inv", Tensor("F32", stored, vals.view(np.uint8).reshape(-1)), logical)


def _norm(b: Builder, n: int) -> Tensor:
    vals = (1.0 + 0.1 * b.rng.standard_normal(n)).astype(np.float32).view(np.uint32) >> 16
    return Tensor("BF16", (n,), vals.astype("<u2").view(np.uint8).reshape(-1))


def _f32(values: np.ndarray) -> Tensor:
    v = np.ascontiguousarray(values, dtype=np.float32)
    return Tensor("F32", v.shape, v.view(np.uint8).reshape(-1))


def deepseek_v32_mla(directory: str, layers: int = 1, seed: int = 0, hidden: int = 320, q_lora: int = 192,
                     kv_lora: int = 160, heads: int = 4, nope: int = 40, rope: int = 16, v_dim: int = 36,
                     index_heads: int = 4, index_dim: int = 48, index_topk: int = 24, experts: int = 4,
                     per_token: int = 2, moe_inter: int = 80, moe_inter_stored: int = 96, align: int = 4,
                     shards: int = 1) -> Builder:
    """DeepSeek V3.2 HF names with MLA-consistent dims, an indexer and routed + shared FP8 experts.
    Weights are real E4M3 codes from quantizing random matrices (F32 power-of-two `weight_scale_inv`,
    grids padded to `align`); the routed experts are stored with a padded intermediate size."""
    b = Builder(seed)
    fp8 = "F32"
    for layer in range(layers):
        p = f"model.layers.{layer}"
        a = f"{p}.self_attn"
        b.add(f"{p}.input_layernorm.weight", _norm(b, hidden))
        b.add(f"{p}.post_attention_layernorm.weight", _norm(b, hidden))
        for proj, n, k in (("q_a_proj", q_lora, hidden), ("q_b_proj", heads * (nope + rope), q_lora),
                           ("kv_a_proj_with_mqa", kv_lora + rope, hidden),
                           ("kv_b_proj", heads * (nope + v_dim), kv_lora),
                           ("o_proj", hidden, heads * v_dim), ("indexer.wq_b", index_heads * index_dim, q_lora),
                           ("indexer.wk", index_dim, hidden)):
            _fp8_block_linear(b, f"{a}.{proj}", _sane_weight(b, n, k), fp8, align)
        b.add(f"{a}.q_a_layernorm.weight", _norm(b, q_lora))
        b.add(f"{a}.kv_a_layernorm.weight", _norm(b, kv_lora))
        b.add(f"{a}.indexer.k_norm.weight", _norm(b, index_dim))
        b.add(f"{a}.indexer.k_norm.bias", b.bf16((index_dim,)))
        b.add(f"{a}.indexer.weights_proj.weight", b.bf16((index_heads, hidden)))
        for e in range(experts):
            for proj, n, k, real in (("gate_proj", moe_inter_stored, hidden, (moe_inter, hidden)),
                                     ("up_proj", moe_inter_stored, hidden, (moe_inter, hidden)),
                                     ("down_proj", hidden, moe_inter_stored, (hidden, moe_inter))):
                _fp8_block_linear(b, f"{p}.mlp.experts.{e}.{proj}", _sane_weight(b, n, k, real), fp8, align, real)
        for proj, n, k in (("gate_proj", moe_inter, hidden), ("up_proj", moe_inter, hidden),
                           ("down_proj", hidden, moe_inter)):
            _fp8_block_linear(b, f"{p}.mlp.shared_experts.{proj}", _sane_weight(b, n, k), fp8, align)
        b.add(f"{p}.mlp.gate.weight", b.bf16((experts, hidden)))
        b.add(f"{p}.mlp.gate.e_score_correction_bias", _f32(np.zeros(experts)))
    config = {"model_type": "deepseek_v32", "architectures": ["DeepseekV32ForCausalLM"], "hidden_size": hidden,
              "num_hidden_layers": layers, "num_attention_heads": heads, "q_lora_rank": q_lora,
              "kv_lora_rank": kv_lora, "qk_nope_head_dim": nope, "qk_rope_head_dim": rope, "v_head_dim": v_dim,
              "index_n_heads": index_heads, "index_head_dim": index_dim, "index_topk": index_topk,
              "n_routed_experts": experts, "num_experts_per_tok": per_token, "moe_intermediate_size": moe_inter,
              "n_shared_experts": 1, "scoring_func": "sigmoid", "norm_topk_prob": True,
              "routed_scaling_factor": 2.5, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
              "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                      "weight_block_size": [128, 128], "scale_fmt": "ue8m0"}}
    b.write(directory, shards, config)
    return b


def deepseek_v4_mla(directory: str, layers: int = 1, seed: int = 0, hidden: int = 320, q_lora: int = 192,
                    heads: int = 4, head_dim: int = 160, rope: int = 32, o_groups: int = 2, o_lora: int = 72,
                    window: int = 24, experts: int = 4, per_token: int = 2, moe_inter: int = 80,
                    moe_inter_stored: int = 96, align: int = 4, shards: int = 1) -> Builder:
    """DeepSeek V4 native names with consistent dims: FP8 attention (E8M0 `.scale`, grids padded to
    `align`), attention sink, grouped output projection, FP4 routed experts stored with a padded
    intermediate size (E8M0 group scales, padded rows 0x00), FP8 shared expert."""
    b = Builder(seed)
    e8 = "F8_E8M0"
    for layer in range(layers):
        p = f"layers.{layer}"
        a = f"{p}.attn"
        b.add(f"{p}.attn_norm.weight", _norm(b, hidden))
        b.add(f"{p}.ffn_norm.weight", _norm(b, hidden))
        for proj, n, k in (("wq_a", q_lora, hidden), ("wq_b", heads * head_dim, q_lora), ("wkv", head_dim, hidden),
                           ("wo_a", o_groups * o_lora, heads * head_dim // o_groups),
                           ("wo_b", hidden, o_groups * o_lora)):
            _fp8_block_linear(b, f"{a}.{proj}", _sane_weight(b, n, k), e8, align)
        b.add(f"{a}.q_norm.weight", _norm(b, q_lora))
        b.add(f"{a}.kv_norm.weight", _norm(b, head_dim))
        b.add(f"{a}.attn_sink", _f32(b.rng.standard_normal(heads)))
        for e in range(experts):
            for proj, n, k, real in (("w1", moe_inter_stored, hidden, (moe_inter, hidden)),
                                     ("w3", moe_inter_stored, hidden, (moe_inter, hidden)),
                                     ("w2", hidden, moe_inter_stored, (hidden, moe_inter))):
                packed, scale = quantize_fp4_groups(_sane_weight(b, n, k, real))
                name = f"{p}.ffn.experts.{e}.{proj}"
                b.add(f"{name}.weight", Tensor("I8", packed.shape, packed))
                logical = (real[0], _cdiv(real[1], 32))
                scale[logical[0]:, :] = 0
                scale[:, logical[1]:] = 0
                b.add(f"{name}.scale", Tensor(e8, scale.shape, scale), logical)
        for proj, n, k in (("w1", moe_inter, hidden), ("w3", moe_inter, hidden), ("w2", hidden, moe_inter)):
            _fp8_block_linear(b, f"{p}.ffn.shared_experts.{proj}", _sane_weight(b, n, k), e8, align)
        b.add(f"{p}.ffn.gate.weight", b.bf16((experts, hidden)))
        b.add(f"{p}.ffn.gate.bias", _f32(np.zeros(experts)))
    config = {"model_type": "deepseek_v4", "architectures": ["DeepseekV4ForCausalLM"], "hidden_size": hidden,
              "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": 1,
              "head_dim": head_dim, "qk_rope_head_dim": rope, "q_lora_rank": q_lora, "o_lora_rank": o_lora,
              "o_groups": o_groups, "sliding_window": window, "n_routed_experts": experts,
              "num_experts_per_tok": per_token, "moe_intermediate_size": moe_inter, "n_shared_experts": 1,
              "scoring_func": "sqrtsoftplus", "norm_topk_prob": True, "routed_scaling_factor": 1.5,
              "swiglu_limit": 10.0, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "expert_dtype": "fp4",
              "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "scale_fmt": "ue8m0",
                                      "activation_scheme": "dynamic", "weight_block_size": [128, 128]}}
    b.write(directory, shards, config)
    return b
