"""Rendering 10^4 and 10^5 findings as JSON and SARIF (issue 13: linear, streamed, under 5 s and
300 MB for 10^5). Each time is given as a ratio to a baseline measured in the same run: one
json.dumps (C encoder) of the findings' dicts, the floor any renderer pays.

    .venv/bin/python benchmarks/render_findings.py [N ...]
"""

from __future__ import annotations

import json
import os
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fp8doctor.findings import Finding, Region, Report, ScanStats, Severity
from fp8doctor.reporters import RenderContext, chunks


def report(n: int) -> Report:
    return Report("/ckpt", tuple(
        Finding("scale-nan", Severity.ERROR, f"model-{i % 100:05d}.safetensors", f"layers.{i}.w.scale",
                f"entry {i} is NaN " * 4, Region.PADDING, byte_offset=i, index=(i, 1)) for i in range(n)),
        ScanStats(files=100))


def measure(fn) -> tuple[float, int]:
    """(seconds untraced, peak bytes in a second, traced run: tracemalloc slows Python down a lot)."""
    t0 = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t0
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return seconds, peak


def main() -> None:
    sizes = [int(x) for x in sys.argv[1:]] or [10_000, 100_000]
    print("| findings | format | seconds | x baseline | peak MB (traced) |")
    print("|---:|---|---:|---:|---:|")
    for n in sizes:
        r = report(n)
        base, _ = measure(lambda r=r: json.dumps([f.__dict__ | {"severity": "error", "region": "padding"}
                                                  for f in r.findings]))
        for fmt in ("json", "sarif"):
            with open(os.devnull, "w") as out:
                seconds, peak = measure(lambda fmt=fmt, r=r, out=out: [
                    out.write(p) for p in chunks(fmt, r, RenderContext(version="1"))])
            print(f"| {n:,} | {fmt} | {seconds:.2f} | {seconds / base:.1f} | {peak / 2**20:.0f} |")


if __name__ == "__main__":
    main()
