"""Write full-size checkpoints as sparse files: weights are holes, headers and scale bytes are real.

Shapes follow the released configs and tensor names of DeepSeek-V4-Flash (native names, FP8
attention with 128x128 E8M0 block scales, 256 routed FP4 experts per layer with 32-element E8M0
group scales), DeepSeek-V3 (HF names, F32 `weight_scale_inv`) and gpt-oss-120b (MXFP4
`_blocks`/`_scales`). `--layers` scales a shape down (shard count follows); a few faults are
injected and listed in `faults.json` so a scan's findings can be checked.

    python benchmarks/make_checkpoint.py v4-flash benchmarks/out/v4 --layers 4
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

DTYPE_BYTES = {"F8_E4M3": 1, "F8_E8M0": 1, "I8": 1, "U8": 1, "BF16": 2, "F32": 4}
# safetensors' writer orders tensors by dtype (descending enum order), then by name: scales of one
# dtype end up next to each other in every shard. Mimic that so reads look like real files.
DTYPE_RANK = {"F32": 0, "BF16": 1, "F8_E8M0": 2, "F8_E4M3": 3, "I8": 4, "U8": 5}


@dataclass(frozen=True)
class Spec:
    name: str
    dtype: str
    shape: tuple[int, ...]
    logical: tuple[int, ...] | None = None  # scale tensors only: the real box
    scale: str = ""  # "" (weight: a hole) | "e8m0" | "f32"

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * DTYPE_BYTES[self.dtype]


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _fp8(name: str, n: int, k: int, scale_suffix: str, scale_dtype: str) -> Iterator[Spec]:
    yield Spec(f"{name}.weight", "F8_E4M3", (n, k))
    s = (_cdiv(n, 128), _cdiv(k, 128))
    yield Spec(f"{name}.{scale_suffix}", scale_dtype, s, s, "e8m0" if scale_dtype == "F8_E8M0" else "f32")


# --- DeepSeek-V4-Flash (deepseek-ai/DeepSeek-V4-Flash config.json) -------------------------------
V4_FLASH = {
    "architectures": ["DeepseekV4ForCausalLM"], "model_type": "deepseek_v4", "hidden_size": 4096,
    "num_hidden_layers": 43, "num_attention_heads": 64, "num_key_value_heads": 1, "head_dim": 512,
    "qk_rope_head_dim": 64, "q_lora_rank": 1024, "o_lora_rank": 1024, "o_groups": 8, "vocab_size": 129280,
    "n_routed_experts": 256, "n_shared_experts": 1, "num_experts_per_tok": 6, "moe_intermediate_size": 2048,
    "index_n_heads": 64, "index_head_dim": 128, "index_topk": 512, "sliding_window": 128, "expert_dtype": "fp4",
    "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                            "scale_fmt": "ue8m0", "weight_block_size": [128, 128]},
    "torch_dtype": "bfloat16",
}


def v4_flash(layers: int, moe_pad: int) -> tuple[list[Spec], dict, int]:
    c = V4_FLASH
    d, heads, hd, ql, ol, og = (c["hidden_size"], c["num_attention_heads"], c["head_dim"], c["q_lora_rank"],
                                c["o_lora_rank"], c["o_groups"])
    stored, n_exp = c["moe_intermediate_size"], c["n_routed_experts"]
    # moe_pad > 0: the tensors keep V4-Flash's shapes, but config.json declares `moe_pad` fewer real
    # expert channels, as an export padded for kernel alignment would: scales then hold padding.
    inter = stored - moe_pad
    ih, ihd = c["index_n_heads"], c["index_head_dim"]
    out = [Spec("embed.weight", "BF16", (c["vocab_size"], d))]
    for L in range(layers):
        p = f"layers.{L}"
        out += [Spec(f"{p}.attn_norm.weight", "BF16", (d,)), Spec(f"{p}.ffn_norm.weight", "BF16", (d,)),
                Spec(f"{p}.attn.q_norm.weight", "BF16", (ql,)), Spec(f"{p}.attn.kv_norm.weight", "BF16", (hd,)),
                Spec(f"{p}.attn.attn_sink", "F32", (heads,)),
                Spec(f"{p}.attn.compressor.wkv.weight", "BF16", (2 * hd, d)),
                Spec(f"{p}.attn.compressor.wgate.weight", "BF16", (2 * hd, d)),
                Spec(f"{p}.attn.compressor.ape", "F32", (4, 2 * hd)),
                Spec(f"{p}.attn.indexer.weights_proj.weight", "BF16", (ih, d)),
                Spec(f"{p}.ffn.gate.weight", "BF16", (n_exp, d)), Spec(f"{p}.ffn.gate.bias", "F32", (n_exp,))]
        for proj, n, k in (("wq_a", ql, d), ("wq_b", heads * hd, ql), ("wkv", hd, d),
                           ("wo_a", og * ol, heads * hd // og), ("wo_b", d, og * ol)):
            out += _fp8(f"{p}.attn.{proj}", n, k, "scale", "F8_E8M0")
        out += _fp8(f"{p}.attn.indexer.wq_b", ih * ihd, ql, "scale", "F8_E8M0")
        for proj, n, k in (("w1", inter, d), ("w3", inter, d), ("w2", d, inter)):
            out += _fp8(f"{p}.ffn.shared_experts.{proj}", n, k, "scale", "F8_E8M0")
        for e in range(n_exp):
            for proj, n, k, real in (("w1", stored, d, (inter, d // 32)), ("w3", stored, d, (inter, d // 32)),
                                     ("w2", d, stored, (d, inter // 32))):
                out.append(Spec(f"{p}.ffn.experts.{e}.{proj}.weight", "I8", (n, k // 2)))
                out.append(Spec(f"{p}.ffn.experts.{e}.{proj}.scale", "F8_E8M0", (n, _cdiv(k, 32)), real, "e8m0"))
    out += [Spec("norm.weight", "BF16", (d,)), Spec("head.weight", "BF16", (c["vocab_size"], d))]
    return out, {**c, "num_hidden_layers": layers, "moe_intermediate_size": inter}, 46


# --- DeepSeek-V3 (deepseek-ai/DeepSeek-V3 config.json) ---------------------------------------------
V3 = {
    "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "hidden_size": 7168,
    "intermediate_size": 18432, "moe_intermediate_size": 2048, "num_hidden_layers": 61, "first_k_dense_replace": 3,
    "n_routed_experts": 256, "n_shared_experts": 1, "num_attention_heads": 128, "q_lora_rank": 1536,
    "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "vocab_size": 129280,
    "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                            "weight_block_size": [128, 128]},
    "torch_dtype": "bfloat16",
}


def deepseek_v3(layers: int, moe_pad: int = 0) -> tuple[list[Spec], dict, int]:
    c = V3
    d, heads = c["hidden_size"], c["num_attention_heads"]
    nope, rope, vh, ql, kl = (c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"], c["q_lora_rank"],
                              c["kv_lora_rank"])
    dense = min(c["first_k_dense_replace"], layers)
    out = [Spec("model.embed_tokens.weight", "BF16", (c["vocab_size"], d))]
    for L in range(layers):
        p = f"model.layers.{L}"
        out += [Spec(f"{p}.input_layernorm.weight", "BF16", (d,)),
                Spec(f"{p}.post_attention_layernorm.weight", "BF16", (d,)),
                Spec(f"{p}.self_attn.q_a_layernorm.weight", "BF16", (ql,)),
                Spec(f"{p}.self_attn.kv_a_layernorm.weight", "BF16", (kl,))]
        for proj, n, k in (("q_a_proj", ql, d), ("q_b_proj", heads * (nope + rope), ql),
                           ("kv_a_proj_with_mqa", kl + rope, d), ("kv_b_proj", heads * (nope + vh), kl),
                           ("o_proj", d, heads * vh)):
            out += _fp8(f"{p}.self_attn.{proj}", n, k, "weight_scale_inv", "F32")
        mlps = [(f"{p}.mlp", c["intermediate_size"])] if L < dense else (
            [(f"{p}.mlp.experts.{e}", c["moe_intermediate_size"]) for e in range(c["n_routed_experts"])]
            + [(f"{p}.mlp.shared_experts", c["moe_intermediate_size"])])
        for q, inter in mlps:
            for proj, n, k in (("gate_proj", inter, d), ("up_proj", inter, d), ("down_proj", d, inter)):
                out += _fp8(f"{q}.{proj}", n, k, "weight_scale_inv", "F32")
        if L >= dense:
            out += [Spec(f"{p}.mlp.gate.weight", "BF16", (c["n_routed_experts"], d)),
                    Spec(f"{p}.mlp.gate.e_score_correction_bias", "F32", (c["n_routed_experts"],))]
    out += [Spec("model.norm.weight", "BF16", (d,)), Spec("lm_head.weight", "BF16", (c["vocab_size"], d))]
    return out, {**c, "num_hidden_layers": layers}, 163


# --- gpt-oss-120b (openai/gpt-oss-120b config.json) ------------------------------------------------
OSS = {
    "architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss", "hidden_size": 2880, "intermediate_size": 2880,
    "num_hidden_layers": 36, "num_local_experts": 128, "num_attention_heads": 64, "num_key_value_heads": 8,
    "head_dim": 64, "vocab_size": 201088, "experts_per_token": 4,
    "quantization_config": {"quant_method": "mxfp4",
                            "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                                       "model.embed_tokens", "lm_head"]},
    "torch_dtype": "bfloat16",
}


def gpt_oss(layers: int, moe_pad: int = 0) -> tuple[list[Spec], dict, int]:
    c = OSS
    d, inter, E, hd = c["hidden_size"], c["intermediate_size"], c["num_local_experts"], c["head_dim"]
    out = [Spec("model.embed_tokens.weight", "BF16", (c["vocab_size"], d))]
    for L in range(layers):
        p = f"model.layers.{L}"
        out += [Spec(f"{p}.input_layernorm.weight", "BF16", (d,)),
                Spec(f"{p}.post_attention_layernorm.weight", "BF16", (d,)),
                Spec(f"{p}.self_attn.sinks", "BF16", (c["num_attention_heads"],)),
                Spec(f"{p}.mlp.router.weight", "BF16", (E, d)), Spec(f"{p}.mlp.router.bias", "BF16", (E,))]
        for proj, n in (("q_proj", c["num_attention_heads"] * hd), ("k_proj", c["num_key_value_heads"] * hd),
                        ("v_proj", c["num_key_value_heads"] * hd)):
            out += [Spec(f"{p}.self_attn.{proj}.weight", "BF16", (n, d)),
                    Spec(f"{p}.self_attn.{proj}.bias", "BF16", (n,))]
        out += [Spec(f"{p}.self_attn.o_proj.weight", "BF16", (d, c["num_attention_heads"] * hd)),
                Spec(f"{p}.self_attn.o_proj.bias", "BF16", (d,))]
        for proj, n, k in (("gate_up_proj", 2 * inter, d), ("down_proj", d, inter)):
            g = _cdiv(k, 32)
            out += [Spec(f"{p}.mlp.experts.{proj}_blocks", "U8", (E, n, g, 16)),
                    Spec(f"{p}.mlp.experts.{proj}_scales", "U8", (E, n, g), (E, n, g), "e8m0"),
                    Spec(f"{p}.mlp.experts.{proj}_bias", "BF16", (E, n))]
    out += [Spec("model.norm.weight", "BF16", (d,)), Spec("lm_head.weight", "BF16", (c["vocab_size"], d))]
    return out, {**c, "num_hidden_layers": layers}, 15


SHAPES = {"v4-flash": (v4_flash, 43), "v3": (deepseek_v3, 61), "gpt-oss-120b": (gpt_oss, 36)}


class ScaleBytes:
    """Realistic scale bytes fast: slices of a pre-drawn pool of powers of two around 2^-10."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.e8m0 = rng.integers(114, 121, size=1 << 24, dtype=np.uint8)
        self.f32 = np.ldexp(1.0, rng.integers(-13, -7, size=1 << 22)).astype("<f4").view(np.uint8)
        self.rng = rng

    def make(self, s: Spec) -> np.ndarray:
        """The tensor's bytes (uint8, stored shape x itemsize): real box random, padding zero."""
        item = DTYPE_BYTES[s.dtype]
        pool = self.e8m0 if s.scale == "e8m0" else self.f32
        if s.logical == s.shape:
            n = s.nbytes
            if n <= pool.size:
                start = int(self.rng.integers(0, (pool.size - n) // item + 1)) * item
                return pool[start:start + n]
            return np.resize(pool, n)
        out = np.zeros((*s.shape[:-1], s.shape[-1] * item), dtype=np.uint8)
        box = (*s.logical[:-1], s.logical[-1] * item)
        n = math.prod(box)
        start = int(self.rng.integers(0, (pool.size - n) // item + 1)) * item
        out[tuple(slice(0, b) for b in box)] = pool[start:start + n].reshape(box)
        return out.reshape(-1)


def _fault_bytes(s: Spec, data: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Inject one fault into a scale tensor's bytes; returns the new bytes and a manifest entry."""
    item = DTYPE_BYTES[s.dtype]
    data = data.copy().reshape(*s.shape, item)
    if kind == "garbage-padding":  # what torch.empty leaves in padded entries
        mask = np.ones(s.shape, dtype=bool)
        mask[tuple(slice(0, n) for n in s.logical)] = False
        junk = rng.integers(0, 256, size=(int(mask.sum()), item), dtype=np.uint8)
        data[mask] = junk
        return data.reshape(-1), {"tensor": s.name, "fault": kind, "rule": "scale-padding-nonzero"}
    idx = tuple(int(rng.integers(0, n)) for n in s.logical)
    if kind == "nan":
        data[idx] = np.frombuffer(b"\xff" if item == 1 else np.array([np.nan], "<f4").tobytes(), np.uint8)
        rule = "scale-nan"
    elif kind == "outlier":
        # 2^57 (E8M0) / 2^60 (F32): far from the median, inside the plausibility window (beyond it is
        # scale-implausible, an error)
        data[idx] = np.frombuffer(b"\xb8" if item == 1 else np.array([2.0 ** 60], "<f4").tobytes(), np.uint8)
        rule = "scale-outlier"
    else:
        raise ValueError(kind)
    return data.reshape(-1), {"tensor": s.name, "fault": kind, "rule": rule, "index": list(idx)}


def _plan_faults(specs: list[Spec], garbage: int, seed: int) -> dict[str, str]:
    rng = np.random.default_rng(seed + 1)
    scales = [s for s in specs if s.scale]
    # garbage goes into the first layer's padded scales: a fix then touches one or two shards
    padded = [s for s in scales if s.logical != s.shape and s.name.split(".")[1:2] == ["0"]]
    padded = padded or [s for s in scales if s.logical != s.shape and ".0." in s.name]
    faults: dict[str, str] = {}
    if padded and garbage:
        for i in sorted(rng.choice(len(padded), size=min(garbage, len(padded)), replace=False).tolist()):
            faults[padded[i].name] = "garbage-padding"
    rest = [s for s in scales if s.name not in faults]
    for kind in ("nan", "outlier"):
        s = rest[int(rng.integers(0, len(rest)))]
        faults.setdefault(s.name, kind)
    return faults


def shard_plan(specs: list[Spec], shards: int) -> list[list[Spec]]:
    """Split tensors, in name order, into `shards` parts of roughly equal bytes."""
    total = sum(s.nbytes for s in specs)
    per = total / shards
    parts: list[list[Spec]] = [[]]
    acc = 0
    for s in specs:
        if parts[-1] and acc + s.nbytes / 2 > per * len(parts) and len(parts) < shards:
            parts.append([])
        parts[-1].append(s)
        acc += s.nbytes
    return parts


def write_shard(path: str, specs: list[Spec], gen: ScaleBytes, faults: dict[str, str],
                manifest: list[dict], rng: np.random.Generator) -> int:
    """One sparse safetensors file; returns the real (non-hole) bytes written."""
    ordered = sorted(specs, key=lambda s: (DTYPE_RANK[s.dtype], s.name))
    header: dict = {"__metadata__": {"format": "pt"}}
    offsets = {}
    pos = 0
    for s in ordered:
        header[s.name] = {"dtype": s.dtype, "shape": list(s.shape), "data_offsets": [pos, pos + s.nbytes]}
        offsets[s.name] = pos
        pos += s.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    data_start = 8 + len(text)
    written = data_start
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.pwrite(fd, len(text).to_bytes(8, "little") + text, 0)
        for s in ordered:
            if not s.scale:
                continue
            data = gen.make(s)
            if s.name in faults:
                data, entry = _fault_bytes(s, data, faults[s.name], rng)
                entry.update(file=os.path.basename(path), offset=data_start + offsets[s.name])
                manifest.append(entry)
            os.pwrite(fd, memoryview(np.ascontiguousarray(data)), data_start + offsets[s.name])
            written += s.nbytes
        os.ftruncate(fd, data_start + pos)
    finally:
        os.close(fd)
    return written


def build(shape: str, out: str, layers: int | None = None, shards: int | None = None, moe_pad: int = 0,
          garbage: int = 300, seed: int = 0, quiet: bool = True) -> dict:
    """Write the checkpoint; returns a summary (also saved as `faults.json` beside it)."""
    fn, full_layers = SHAPES[shape]
    layers = full_layers if layers is None else layers
    specs, config, full_shards = fn(layers, moe_pad)
    if shards is None:
        shards = max(2, round(full_shards * layers / full_layers))
    faults = _plan_faults(specs, garbage, seed)
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        if f.endswith((".safetensors", ".json")):
            os.unlink(os.path.join(out, f))
    gen = ScaleBytes(seed)
    rng = np.random.default_rng(seed + 2)
    parts = shard_plan(specs, shards)
    weight_map: dict[str, str] = {}
    manifest: list[dict] = []
    real = 0
    for i, part in enumerate(parts):
        fname = f"model-{i + 1:05d}-of-{len(parts):05d}.safetensors"
        real += write_shard(os.path.join(out, fname), part, gen, faults, manifest, rng)
        weight_map.update({s.name: fname for s in part})
        if not quiet:
            print(f"\r{shape}: shard {i + 1}/{len(parts)}", end="", file=sys.stderr, flush=True)
    if not quiet:
        print(file=sys.stderr)
    total = sum(s.nbytes for s in specs)
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=1)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    scales = [s for s in specs if s.scale]
    summary = {"shape": shape, "layers": layers, "shards": len(parts), "moe_pad": moe_pad, "tensors": len(specs),
               "scale_tensors": len(scales), "scale_bytes": sum(s.nbytes for s in scales),
               "padded_scale_tensors": sum(1 for s in scales if s.logical != s.shape),
               "logical_bytes": total, "real_bytes": real, "faults": manifest}
    with open(os.path.join(out, "faults.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("shape", choices=sorted(SHAPES))
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=None, help="layers to write (default: the full model)")
    ap.add_argument("--shards", type=int, default=None, help="shard count (default: scaled from the real one)")
    ap.add_argument("--moe-pad", type=int, default=0,
                    help="v4-flash: declare this many fewer real expert channels in config.json than "
                         "the stored 2048, as a padded export would; expert scales then carry padding")
    ap.add_argument("--garbage", type=int, default=300, help="padded scale tensors given garbage padding")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    s = build(a.shape, a.out, a.layers, a.shards, a.moe_pad, a.garbage, a.seed, quiet=False)
    print(f"{a.out}: {s['shards']} shards, {s['tensors']} tensors, {s['scale_tensors']} scale tensors, "
          f"{s['scale_bytes'] / 1e9:.2f} GB of scales, {s['logical_bytes'] / 1e9:.1f} GB logical, "
          f"{s['real_bytes'] / 1e9:.2f} GB real, {len(s['faults'])} faults")


if __name__ == "__main__":
    main()
