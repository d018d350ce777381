"""`make demo`: write a small DeepSeek-V4-style checkpoint whose padded scales hold garbage (what
torch.empty leaves behind), scan it, and show the findings. Exits 0 when the demo ran as intended."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np

from fp8doctor import synth
from fp8doctor.checkpoint.loader import open_checkpoint

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET = os.path.join(os.path.dirname(HERE), "demo-checkpoint")


def step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m" if sys.stdout.isatty() else f"\n== {title}", flush=True)


def fp8doctor(*args: str) -> int:
    print("$ fp8doctor " + " ".join(args), flush=True)
    return subprocess.call([sys.executable, "-m", "fp8doctor", *args])


def break_padding(root: str) -> int:
    """Fill every padded scale entry of layer 0 with leftover-memory bytes, like torch.empty."""
    rng = np.random.default_rng(7)
    from fp8doctor.scanner import analyze

    touched = 0
    with open_checkpoint(root) as ck:
        layouts = analyze(ck).layouts
    for name, lay in layouts.items():
        if not name.startswith("layers.0.") or not lay.has_padding:
            continue
        with open(os.path.join(root, lay.scale.file), "r+b") as f:
            for a, b in lay.padding_ranges():
                garbage = rng.integers(0, 256, size=b - a, dtype=np.uint8)
                garbage[:: 7] = 0xFF  # some NaNs, as leftover memory often has
                f.seek(lay.scale.offset + a)
                f.write(garbage.tobytes())
                touched += b - a
    return touched


def main() -> int:
    shutil.rmtree(TARGET, ignore_errors=True)
    step("1. write a small DeepSeek-V4-style checkpoint (FP8 attention, FP4 experts, padded E8M0 scales)")
    synth.deepseek_v4(TARGET, layers=2)
    print(f"wrote {TARGET}")
    step("2. a clean scan")
    if fp8doctor("scan", TARGET) != 0:
        print("demo failed: the clean checkpoint did not scan clean")
        return 1
    step("3. simulate torch.empty: garbage in the padded scale entries of layer 0")
    print(f"overwrote {break_padding(TARGET)} padded scale bytes")
    step("4. scan again: the findings")
    if fp8doctor("scan", TARGET) != 1:
        print("demo failed: the broken checkpoint was not flagged")
        return 1
    print("\ndemo ran as intended: garbage padding found (exit code 1 above is the scan's verdict)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
