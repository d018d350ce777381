"""Time `fp8doctor verify` on one DeepSeek-V3.2-sized layer (full attention + indexer dims, full-size
experts) and report wall time and peak RSS. Weights are synthetic codes (speed does not depend on
their values). Usage: python benchmarks/verify_fullsize.py [DIR] [--experts N] [--device cpu|cuda]"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

from fp8doctor.testing import synth


def build_v32(directory: str, experts: int) -> None:
    b = synth.Builder(0)
    p, a = "model.layers.3", "model.layers.3.self_attn"
    hidden, H = 7168, 128
    b.add(f"{p}.input_layernorm.weight", b.bf16((hidden,)))
    b.add(f"{p}.post_attention_layernorm.weight", b.bf16((hidden,)))
    for proj, n, k in (("q_a_proj", 1536, hidden), ("q_b_proj", H * 192, 1536), ("kv_a_proj_with_mqa", 576, hidden),
                       ("kv_b_proj", H * 256, 512), ("o_proj", hidden, H * 128), ("indexer.wq_b", 64 * 128, 1536),
                       ("indexer.wk", 128, hidden)):
        synth._fp8_linear(b, f"{a}.{proj}", n, k, "weight_scale_inv", "F32")
    b.add(f"{a}.q_a_layernorm.weight", b.bf16((1536,)))
    b.add(f"{a}.kv_a_layernorm.weight", b.bf16((512,)))
    b.add(f"{a}.indexer.k_norm.weight", b.bf16((128,)))
    b.add(f"{a}.indexer.k_norm.bias", b.bf16((128,)))
    b.add(f"{a}.indexer.weights_proj.weight", b.bf16((64, hidden)))
    for e in range(experts):
        for proj, n, k in (("gate_proj", 2048, hidden), ("up_proj", 2048, hidden), ("down_proj", hidden, 2048)):
            synth._fp8_linear(b, f"{p}.mlp.experts.{e}.{proj}", n, k, "weight_scale_inv", "F32")
    for proj, n, k in (("gate_proj", 2048, hidden), ("up_proj", 2048, hidden), ("down_proj", hidden, 2048)):
        synth._fp8_linear(b, f"{p}.mlp.shared_experts.{proj}", n, k, "weight_scale_inv", "F32")
    b.add(f"{p}.mlp.gate.weight", b.bf16((experts, hidden)))
    config = {"model_type": "deepseek_v32", "hidden_size": hidden, "num_attention_heads": H, "q_lora_rank": 1536,
              "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
              "index_n_heads": 64, "index_head_dim": 128, "index_topk": 2048, "n_routed_experts": experts,
              "num_experts_per_tok": 8, "moe_intermediate_size": 2048, "scoring_func": "sigmoid",
              "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128],
                                      "scale_fmt": "ue8m0"}}
    b.write(directory, 1, config)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", nargs="?", default="/tmp/fp8doctor-fullsize-v32")
    ap.add_argument("--experts", type=int, default=8, help="routed experts stored in the layer")
    ap.add_argument("--tokens", default="4")
    ap.add_argument("--context", default="256")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args()
    if not os.path.exists(os.path.join(args.dir, "config.json")):
        t = time.perf_counter()
        build_v32(args.dir, args.experts)
        print(f"built {args.dir} in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    rc = subprocess.call([sys.executable, "-m", "fp8doctor", "verify", args.dir, "--layer", "3", "--tokens",
                          args.tokens, "--context", args.context, "--experts", "all", "--device", args.device, "-q"])
    wall = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"verify: exit {rc}, {wall:.1f} s wall, peak RSS {rss:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
