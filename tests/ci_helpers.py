"""Helpers for the CI-integration tests: break and repair padded scale bytes, odd tensor names."""

from __future__ import annotations

import os

import numpy as np

from fp8doctor import synth
from fp8doctor.checkpoint.loader import open_checkpoint
from fp8doctor.layouts.model import fill_bytes
from fp8doctor.scanner import analyze

ODD_NAME = "odd%25 name,with:colons\nand newline"
"""A tensor-name prefix holding every character GitHub workflow commands must escape."""


def _padded_layouts(root: str, prefix: str = ""):
    with open_checkpoint(root) as ck:
        layouts = analyze(ck).layouts
    return [lay for name, lay in sorted(layouts.items()) if name.startswith(prefix) and lay.has_padding]


def break_padding(root: str, prefix: str = "layers.0.", seed: int = 7) -> int:
    """Fill the padded scale entries of tensors under `prefix` with leftover-memory bytes (as
    torch.empty leaves them); returns how many bytes changed."""
    rng = np.random.default_rng(seed)
    touched = 0
    for lay in _padded_layouts(root, prefix):
        with open(os.path.join(root, lay.scale.file), "r+b") as f:
            for a, b in lay.padding_ranges():
                n = (b - a) * lay.itemsize
                garbage = rng.integers(1, 256, size=n, dtype=np.uint8)
                garbage[::7] = 0xFF
                f.seek(lay.scale.offset + a * lay.itemsize)
                f.write(garbage.tobytes())
                touched += n
    return touched


def repair_padding(root: str, fill: str | int = "zero") -> int:
    """Write the fill byte into every padded scale entry (what `fp8doctor fix` does).

    TODO(lead): once the `fix` branch is merged, replace calls to this with `fp8doctor fix`.
    """
    written = 0
    for lay in _padded_layouts(root):
        if not lay.trusted:
            continue
        one = fill_bytes(fill, lay.encoding)
        with open(os.path.join(root, lay.scale.file), "r+b") as f:
            for a, b in lay.padding_ranges():
                f.seek(lay.scale.offset + a * lay.itemsize)
                f.write(one * (b - a))
                written += (b - a) * lay.itemsize
    return written


def odd_names_checkpoint(directory: str, prefix: str = ODD_NAME) -> str:
    """One FP8 linear whose tensor names hold %, ',', ':' and a newline; its padded scale entries
    hold garbage. Returns the scale tensor's name."""
    b = synth.Builder(seed=3)
    b.add(f"{prefix}.weight", b.fp8_weight((256, 192)))
    b.add(f"{prefix}.scale", b.e8m0_scales((4, 4), (2, 2)), (2, 2))
    b.write(directory, 1, {"quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "scale_fmt": "ue8m0",
                                                   "weight_block_size": [128, 128]}})
    break_padding(directory, prefix="")
    return f"{prefix}.scale"
