"""`dump` grid speed: one 2048x128 E8M0 tensor (262,144 entries, 8,192 grid lines at 120 columns)
and a 256-expert glob, against a floor measured in the same run: the same bytes as plain hex lines
(" ".join of two-digit hex per entry, no marks, no styles), the least any hex dump does.

    python benchmarks/dump_grid.py        # prints a Markdown table; ratios are what to compare

The grid is rendered to an in-memory truecolor console (what a terminal gets), in this process,
after one warm-up; CPU seconds (time.process_time), best of 3.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import time

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rich.console import Console

from fp8doctor import DumpOptions, dump
from fp8doctor.reporters import dump_grid
from fp8doctor.testing.synth import Tensor, write_safetensors


def _best(fn, runs: int = 3) -> float:
    fn()
    best = float("inf")
    for _ in range(runs):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def _floor(data: bytes, row_len: int) -> None:
    out = io.StringIO()
    for r in range(0, len(data), row_len):
        out.write(" ".join(f"{b:02x}" for b in data[r:r + row_len]) + "\n")


def _grid(dumps, max_rows: int | None, decode: bool = False) -> None:
    console = Console(file=io.StringIO(), width=120, force_terminal=True, color_system="truecolor")
    dump_grid.render(dumps, console, decode=decode, max_rows=max_rows)


def main() -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        big = rng.integers(110, 130, size=(2048, 128)).astype(np.uint8)
        big[100, 5] = 0xFF  # one NaN, so the marks path runs
        experts = {f"layers.0.mlp.experts.{e}.w1.weight_scale_inv":
                   Tensor("F8_E8M0", (64, 56), rng.integers(110, 130, size=(64, 56)).astype(np.uint8))
                   for e in range(256)}
        write_safetensors(os.path.join(d, "model.safetensors"),
                          {"m.weight_scale_inv": Tensor("F8_E8M0", (2048, 128), big), **experts})
        one = dump(d, DumpOptions(tensors=("m.weight_scale_inv",)))
        many = dump(d, DumpOptions(tensors=("layers.0.mlp.experts.*.w1.weight_scale_inv",)))
        floor = _best(lambda: _floor(big.tobytes(), 128))
        rows = [
            ("2048x128, every row (--all)", _best(lambda: _grid(one, None))),
            ("2048x128, every row, --decode", _best(lambda: _grid(one, None, decode=True))),
            ("2048x128, default cap (64 rows)", _best(lambda: _grid(one, dump_grid.MAX_ROWS))),
            ("256 experts 64x56, default cap", _best(lambda: _grid(many, dump_grid.MAX_ROWS))),
            ("dump() of the 256 experts (read + marks)",
             _best(lambda: dump(d, DumpOptions(tensors=("layers.0.mlp.experts.*.w1.weight_scale_inv",))))),
        ]
    print(f"floor (plain hex lines of the 2048x128 tensor): {floor:.3f} s CPU\n")
    print("| case | CPU s | x floor |\n| --- | ---: | ---: |")
    for name, t in rows:
        print(f"| {name} | {t:.3f} | {t / floor:.1f} |")


if __name__ == "__main__":
    main()
