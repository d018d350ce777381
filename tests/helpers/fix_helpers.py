"""Helpers for the fix tests: dirty checkpoints, padding byte masks, whole-file comparisons."""

from __future__ import annotations

import os
import shutil

import numpy as np

from fp8doctor.checkpoint.loader import open_checkpoint
from fp8doctor.repair.journal import JOURNAL_DIRNAME
from fp8doctor.scanner import ScanOptions, analyze
from fp8doctor.testing import synth
from tests.conftest import poke

V4_DIRT = [  # (tensor, offset into its data, bytes): all inside padded regions
    ("layers.0.attn.wq_b.scale", 2 * 4 + 1, b"\xff\x90"),          # padded row of an FP8 attention scale
    ("layers.0.attn.wq_b.scale", 1 * 4 + 2, b"\xfe"),              # padded column (row 1 is real)
    ("layers.1.ffn.experts.1.w3.scale", 85 * 10 + 4, b"\x90\x91"),  # padded FP4 expert rows 80..95
    ("layers.0.ffn.experts.0.w1.scale", 80 * 10, bytes(range(1, 161))),  # every padded entry
]


def checkpoint_files(root: str) -> dict[str, bytes]:
    """Every file under root except the journal directory."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != JOURNAL_DIRNAME]
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = fh.read()
    return out


def dirty_v4(directory: str, seed: int = 0) -> str:
    synth.deepseek_v4(directory, seed=seed)
    for name, rel, data in V4_DIRT:
        poke(directory, name, rel, data)
    return directory


def padding_masks(root: str, options: ScanOptions | None = None) -> dict[str, np.ndarray]:
    """file -> bool mask of the bytes fix may change (trusted layouts' padded entries)."""
    masks: dict[str, np.ndarray] = {}
    with open_checkpoint(root) as ck:
        an = analyze(ck, options or ScanOptions())
        for lay in an.layouts.values():
            if not lay.trusted:
                continue
            t = lay.scale
            m = masks.setdefault(t.file, np.zeros(os.path.getsize(os.path.join(root, t.file)), dtype=bool))
            for a, b in lay.padding_ranges():
                m[t.offset + a * lay.itemsize:t.offset + b * lay.itemsize] = True
    return masks


def assert_same_outside_padding(before: dict[str, bytes], after: dict[str, bytes],
                                masks: dict[str, np.ndarray]) -> int:
    """Every file has the same size and the same bytes except where the mask allows; returns the
    number of bytes that differ."""
    assert set(before) == set(after)
    changed = 0
    for name, old in before.items():
        new = after[name]
        assert len(new) == len(old), name
        o = np.frombuffer(old, dtype=np.uint8)
        n = np.frombuffer(new, dtype=np.uint8)
        diff = o != n
        allowed = masks.get(name, np.zeros(len(old), dtype=bool))
        outside = np.flatnonzero(diff & ~allowed)
        assert outside.size == 0, f"{name}: bytes outside padding changed at {outside[:5]}"
        changed += int(diff.sum())
    return changed


def copy_tree(src: str, dst: str) -> str:
    shutil.copytree(src, dst)
    return dst
