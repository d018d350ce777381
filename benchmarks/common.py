"""Helpers shared by the benchmark scripts: which tensors are scales, and the shard list."""

from __future__ import annotations

import json
import os
import struct

SCALE_SUFFIXES = (".scale", ".weight_scale_inv", "_scales", ".weight_scale")


def is_scale(name: str, dtype: str) -> bool:
    return name.endswith(SCALE_SUFFIXES) and dtype in ("F8_E8M0", "U8", "F32", "BF16", "F16")


def shard_files(root: str) -> list[str]:
    index = os.path.join(root, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as f:
            names = dict.fromkeys(json.load(f)["weight_map"].values())
        return [os.path.join(root, n) for n in names]
    return sorted(os.path.join(root, n) for n in os.listdir(root) if n.endswith(".safetensors"))


def read_header(fd: int) -> tuple[int, dict]:
    """(data start, header dict) of one open shard."""
    (n,) = struct.unpack("<Q", os.pread(fd, 8, 0))
    return 8 + n, json.loads(os.pread(fd, n, 8))
