"""verify before and after fix, on a small DeepSeek-V4-style checkpoint (for `make demo`).

Writes the checkpoint, fills the padded scale entries of layer 0 with leftover-memory bytes (what
torch.empty leaves), runs `fp8doctor verify` (FAIL), writes the zero fill into every padded range
(what `fix` does), runs verify again (PASS). `main(target)` is what examples/demo.py can call.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from fp8doctor import synth
from fp8doctor.checkpoint.loader import open_checkpoint
from fp8doctor.layouts.model import fill_bytes
from fp8doctor.scanner import analyze

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET = os.path.join(os.path.dirname(HERE), "demo-verify-checkpoint")


def _padded(root: str):
    with open_checkpoint(root) as ck:
        return [lay for lay in analyze(ck).layouts.values() if lay.has_padding and lay.trusted]


def break_padding(root: str, seed: int = 7) -> int:
    rng = np.random.default_rng(seed)
    n = 0
    for lay in _padded(root):
        with open(os.path.join(root, lay.scale.file), "r+b") as f:
            for a, b in lay.padding_ranges():
                garbage = rng.integers(0, 256, size=(b - a) * lay.itemsize, dtype=np.uint8)
                garbage[::7] = 0xFF
                f.seek(lay.scale.offset + a * lay.itemsize)
                f.write(garbage.tobytes())
                n += b - a
    return n


def zero_padding(root: str) -> int:
    """Stand-in for `fp8doctor fix` until it is merged: the zero fill into every padded range."""
    n = 0
    for lay in _padded(root):
        fill = fill_bytes("zero", lay.encoding)
        with open(os.path.join(root, lay.scale.file), "r+b") as f:
            for a, b in lay.padding_ranges():
                f.seek(lay.scale.offset + a * lay.itemsize)
                f.write(fill * (b - a))
                n += b - a
    return n


def verify_cli(root: str, *extra: str) -> int:
    args = ["verify", root, "--tokens", "8", "--context", "64", *extra]
    print("$ fp8doctor " + " ".join(args), flush=True)
    return subprocess.call([sys.executable, "-m", "fp8doctor", *args])


def main(target: str = TARGET) -> int:
    synth.deepseek_v4_mla(target)
    print(f"wrote {target}; garbage in {break_padding(target)} padded scale entries")
    if verify_cli(target) != 1:
        print("demo failed: garbage padding was not caught by verify")
        return 1
    print(f"zero fill written into {zero_padding(target)} padded scale entries")
    if verify_cli(target) != 0:
        print("demo failed: verify did not pass after the padding was zeroed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else TARGET))
