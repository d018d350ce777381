"""Run the fuzz target for N cases: `python fuzz/run.py --cases 100000 [--seed S] [--engine random|atheris]`.

The random engine is deterministic (seeded structure-aware mutations plus raw random bytes) and
needs nothing beyond the project; atheris (coverage-guided, `pip install atheris`) is used when
asked for and installed. Any exception other than a finding is a crash: the input is saved and the
run exits 1."""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import mutate, one_input

_CONFIGS = [None, b"{}", b"{garbage", b'{"quantization_config": {"weight_block_size": [128, 128]}}',
            b'{"quantization_config": {"weight_block_size": [1, 32]}, "moe_inter_dim": 80}',
            b'{"quantization_config": {"scale_fmt": "ue8m0", "weight_block_size": [64, 64]}}']


def run_random(cases: int, seed: int) -> int:
    rng = random.Random(seed)
    t0 = time.time()
    for i in range(cases):
        if rng.random() < 0.1:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        else:
            data = mutate(rng)
        config = rng.choice(_CONFIGS)
        try:
            one_input(data, config)
        except Exception:
            path = f"fuzz-crash-{seed}-{i}.safetensors"
            with open(path, "wb") as f:
                f.write(data)
            traceback.print_exc()
            print(f"crash on case {i}; input saved to {path}", file=sys.stderr)
            return 1
        if (i + 1) % 10000 == 0:
            print(f"{i + 1:,} cases, {time.time() - t0:.0f} s", file=sys.stderr)
    print(f"fuzz: {cases:,} cases, no crash ({time.time() - t0:.1f} s, seed {seed})")
    return 0


def run_atheris(cases: int) -> int:
    import atheris

    def target(data: bytes) -> None:
        one_input(data)

    atheris.Setup([sys.argv[0], f"-runs={cases}"], target)
    atheris.Fuzz()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--engine", choices=["random", "atheris"], default="random")
    args = ap.parse_args()
    if args.engine == "atheris":
        return run_atheris(args.cases)
    return run_random(args.cases, args.seed)


if __name__ == "__main__":
    sys.exit(main())
