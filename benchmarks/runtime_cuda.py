"""In-memory checks on CUDA: a model's worth of scale tensors checked on the device, against a plain
torch pass over the same bytes measured in the same run.

Two realistic sets, generated on the GPU (weights on the meta device: pairing needs only their
shapes): DeepSeek-V3-like F32 block scales (61 layers, 256 experts, ~47k small tensors) and
DeepSeek-V4-like E8M0 MX scales of FP4 experts with padded rows/columns (larger tensors). Reports
scale tensors and GB per second, the ratio to the baselines, and the extra device memory
(torch.cuda.max_memory_allocated above what the tensors themselves hold).

    python benchmarks/runtime_cuda.py [--v3-layers 61] [--v4-layers 8] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

import fp8doctor

BLOCK = 128
DEVICE = "cuda"


def _sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _pow2(shape: tuple[int, ...], gen: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    exps = torch.randint(-13, -7, shape, device=DEVICE, generator=gen).to(torch.float32)
    return torch.exp2(exps).to(dtype)


def v3_set(layers: int, experts: int = 256) -> tuple[dict, dict]:
    """DeepSeek-V3.1 HF names: F8_E4M3 weights (meta) + F32 weight_scale_inv [N/128, K/128]."""
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    named: dict[str, torch.Tensor] = {}

    def linear(name: str, n: int, k: int) -> None:
        named[f"{name}.weight"] = torch.empty((n, k), dtype=torch.float8_e4m3fn, device="meta")
        named[f"{name}.weight_scale_inv"] = _pow2((-(-n // BLOCK), -(-k // BLOCK)), gen, torch.float32)

    for L in range(layers):
        p = f"model.layers.{L}"
        linear(f"{p}.self_attn.q_a_proj", 1536, 7168)
        linear(f"{p}.self_attn.q_b_proj", 24576, 1536)
        linear(f"{p}.self_attn.kv_a_proj_with_mqa", 576, 7168)
        linear(f"{p}.self_attn.kv_b_proj", 32768, 512)
        linear(f"{p}.self_attn.o_proj", 7168, 16384)
        if L < 3:
            for proj, (n, k) in (("gate_proj", (18432, 7168)), ("up_proj", (18432, 7168)),
                                 ("down_proj", (7168, 18432))):
                linear(f"{p}.mlp.{proj}", n, k)
            continue
        for e in range(experts):
            for proj, (n, k) in (("gate_proj", (2048, 7168)), ("up_proj", (2048, 7168)), ("down_proj", (7168, 2048))):
                linear(f"{p}.mlp.experts.{e}.{proj}", n, k)
        for proj, (n, k) in (("gate_proj", (2048, 7168)), ("up_proj", (2048, 7168)), ("down_proj", (7168, 2048))):
            linear(f"{p}.mlp.shared_experts.{proj}", n, k)
    config = {"quantization_config": {"quant_method": "fp8", "weight_block_size": [BLOCK, BLOCK],
                                      "scale_fmt": "ue8m0"}}
    return named, config


def v4_set(layers: int, experts: int = 256, inter: int = 2000, stored_inter: int = 2048,
           hidden: int = 7168) -> tuple[dict, dict]:
    """DeepSeek-V4-style native names: FP4 experts (I8 packed, meta) + E8M0 .scale [N, K/32], the
    intermediate dim padded 2000 -> 2048 (real rows/columns of the scales: 2000 and 63 of 64)."""
    gen = torch.Generator(device=DEVICE).manual_seed(1)
    named: dict[str, torch.Tensor] = {}
    for L in range(layers):
        for e in range(experts):
            p = f"layers.{L}.ffn.experts.{e}"
            for w, (n, k) in (("w1", (stored_inter, hidden)), ("w3", (stored_inter, hidden)),
                              ("w2", (hidden, stored_inter))):
                named[f"{p}.{w}.weight"] = torch.empty((n, k // 2), dtype=torch.int8, device="meta")
                s = torch.zeros((n, k // 32), dtype=torch.float8_e8m0fnu, device=DEVICE)
                real = (inter, k // 32) if w != "w2" else (n, -(-inter // 32))
                s[:real[0], :real[1]] = _pow2(real, gen, torch.float8_e8m0fnu)
                named[f"{p}.{w}.scale"] = s
    config = {"moe_inter_dim": inter, "dim": hidden, "expert_dtype": "fp4",
              "quantization_config": {"scale_fmt": "ue8m0"}}
    return named, config


def _timed(fn, repeat: int = 3) -> float:
    fn()  # warm-up: CUDA context, kernels, caches
    _sync()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        _sync()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(label: str, named: dict, config: dict, garble: int = 0) -> dict:
    scales = [t for t in named.values() if t.device.type == DEVICE]
    nbytes = sum(t.numel() * t.element_size() for t in scales)
    entries = sum(t.numel() for t in scales)

    def per_tensor_pass() -> None:  # the plain torch pass an engine test would write: one reduction per tensor
        for t in scales:
            t.view(torch.uint8).amax()

    flat = [torch.empty(nbytes // 4, dtype=torch.int32, device=DEVICE)]

    def one_pass() -> None:  # the same bytes in one buffer: memory bandwidth
        flat[0].amax()

    base_tensor = _timed(per_tensor_pass)
    base_flat = _timed(one_pass)
    flat.clear()
    _sync()
    cuda = DEVICE == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        held = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    report = None

    def check() -> None:
        nonlocal report
        report = fp8doctor.check_tensors(named, config=config)

    seconds = _timed(check, repeat=2)
    extra = torch.cuda.max_memory_allocated() - held if cuda else 0
    from fp8doctor.runtime import cuda as device_side

    tallies = device_side.device_tallies
    spent = [0.0]

    def timed_tallies(*a, **k):  # the device side's share of one more check (the rest: wrapping, pairing, Python)
        t0 = time.perf_counter()
        try:
            return tallies(*a, **k)
        finally:
            _sync()
            spent[0] += time.perf_counter() - t0

    device_side.device_tallies = timed_tallies
    try:
        check()
    finally:
        device_side.device_tallies = tallies
    assert report is not None
    out = {
        "set": label, "scale_tensors": len(scales), "scale_bytes": nbytes, "entries": entries,
        "findings": len(report.findings), "check_s": round(seconds, 4),
        "scale_tensors_per_s": round(len(scales) / seconds), "check_GBps": round(nbytes / seconds / 1e9, 2),
        "per_tensor_pass_s": round(base_tensor, 4), "per_tensor_pass_GBps": round(nbytes / base_tensor / 1e9, 2),
        "one_pass_s": round(base_flat, 5), "one_pass_GBps": round(nbytes / base_flat / 1e9, 1),
        "ratio_vs_per_tensor_pass": round(seconds / base_tensor, 2),
        "ratio_vs_one_pass": round(seconds / base_flat, 1),
        "device_side_s": round(spent[0], 4),
        "extra_device_MiB": round(extra / 2**20, 1),
        "extra_bound_MiB": round(device_side.extra_bound(scales[0].element_size()) / 2**20, 1),
        "largest_scale_MiB": round(max(t.numel() * t.element_size() for t in scales) / 2**20, 2),
    }
    if garble:  # leftover memory in the padding of `garble` tensors: the findings path (host slabs)
        padded = [n for n, t in named.items() if t.device.type == DEVICE and n.endswith((".w1.scale", ".w3.scale"))]
        for n in padded[:garble]:
            named[n].view(torch.uint8)[2000:] = 0x99
        t0 = time.perf_counter()
        rep = fp8doctor.check_tensors(named, config=config)
        _sync()
        out["garbled_tensors"] = len(padded[:garble])
        out["garbled_findings"] = len(rep.findings)
        out["garbled_check_s"] = round(time.perf_counter() - t0, 3)
    return out


def cuda_chunk() -> int:
    from fp8doctor.runtime.cuda import STAGE_BYTES

    return STAGE_BYTES


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--v3-layers", type=int, default=61)
    ap.add_argument("--v4-layers", type=int, default=8)
    ap.add_argument("--experts", type=int, default=256)
    ap.add_argument("--device", default="cuda", help="cuda; cpu only to try the script itself")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(0) if DEVICE == "cuda" else "cpu"
    results = {"device": name, "torch": torch.__version__, "stage_bytes": cuda_chunk(), "sets": []}
    named, config = v3_set(args.v3_layers, args.experts)
    results["sets"].append(measure(f"DeepSeek-V3-like F32 block scales, {args.v3_layers} layers", named, config))
    del named
    if DEVICE == "cuda":
        torch.cuda.empty_cache()
    named, config = v4_set(args.v4_layers, args.experts)
    label = f"DeepSeek-V4-like padded E8M0 MX scales, {args.v4_layers} layers x {args.experts} experts"
    results["sets"].append(measure(label, named, config, garble=64))
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
