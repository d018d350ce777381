"""Scan memory must not grow with the checkpoint: tensors are streamed in bounded reads and
findings are the only thing kept. Checked with tracemalloc (numpy reports its buffers to it) on
two sizes of the same shape; no timing is asserted."""

from __future__ import annotations

import tracemalloc

from benchmarks import make_checkpoint
from fp8doctor.scanner import ScanOptions, scan


def _peak(path: str) -> int:
    tracemalloc.start()
    try:
        scan(path, ScanOptions(workers=2))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_scan_memory_does_not_grow_with_layers(tmp_path):
    small, large = str(tmp_path / "small"), str(tmp_path / "large")
    # gpt-oss shape: every layer adds two scale tensors of 33 and 66 MB (streamed in slabs); both sizes
    # have at least two shards so both workers are busy in each (each worker holds its own slab)
    make_checkpoint.build("gpt-oss-120b", small, layers=2, shards=2, garbage=0)
    make_checkpoint.build("gpt-oss-120b", large, layers=3, shards=3, garbage=0)
    _strip_faults(small), _strip_faults(large)
    p_small, p_large = _peak(small), _peak(large)
    assert p_large < p_small * 1.25 + (4 << 20), (p_small, p_large)
    assert p_large < 150 << 20  # far below one scale tensor's decoded size


def _strip_faults(path: str) -> None:
    """Undo the NaN/outlier bytes the builder injects: a clean checkpoint is the case measured."""
    import json
    import os

    with open(os.path.join(path, "faults.json")) as f:
        faults = json.load(f)["faults"]
    for fault in faults:
        with open(os.path.join(path, fault["file"]), "r+b") as fh:
            # the tensor's first entry is a real scale; restore the poked one to a typical value
            from fp8doctor.checkpoint.loader import open_checkpoint

            with open_checkpoint(path) as ck:
                t = ck.tensors[fault["tensor"]]
            flat = 0
            for i, n in zip(fault["index"], t.shape):
                flat = flat * n + i
            fh.seek(t.offset + flat)
            fh.write(b"\x75")


def test_scan_memory_stays_bounded_with_findings_in_large_tensors(tmp_path):
    """The builder's NaN and outlier faults sit in the real box of 33/66 MB scale tensors: the rules
    then run on row slabs (check_tensor_slabs), not on the whole tensor decoded (~20x its size)."""
    d = str(tmp_path / "faulty")
    make_checkpoint.build("gpt-oss-120b", d, layers=2, shards=2, garbage=0)
    tracemalloc.start()
    try:
        report = scan(d, ScanOptions(workers=2))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert {f.rule for f in report.findings} >= {"scale-nan", "scale-outlier"}
    assert peak < 150 << 20, peak
