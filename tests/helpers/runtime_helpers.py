"""Shared by the in-memory check tests: load a checkpoint with safetensors, compare findings."""

from __future__ import annotations

import json
import os

from safetensors import safe_open

CHECKPOINT_ONLY = ("header-invalid", "file-truncated", "file-unreadable", "path-unsafe", "index-invalid",
                   "index-shard-missing", "index-mismatch", "fix-interrupted")
"""Rules about files, which tensors in memory cannot have."""


def load(root: str, device: str = "cpu") -> tuple[dict, dict | None]:
    """Every tensor of every shard (torch, through safetensors), and config.json when it parses."""
    named = {}
    for f in sorted(os.listdir(root)):
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(root, f), framework="pt", device=device) as s:
                for k in s.keys():
                    named[k] = s.get_tensor(k)
    config = None
    p = os.path.join(root, "config.json")
    if os.path.exists(p):
        try:
            with open(p) as fh:
                config = json.load(fh)
        except ValueError:
            config = None
    return named, config


def key(f) -> tuple:
    """A finding without where it is stored (file, byte offset, device)."""
    return (f.rule, f.severity.value, f.tensor, f.message, f.region.value, f.count, f.index, f.fixable)


def same_as_scan(scanned, checked, config_parsed: bool = True) -> None:
    want = [key(f) for f in scanned.findings if f.rule not in CHECKPOINT_ONLY
            and (config_parsed or f.rule != "config-invalid")]
    got = [key(f) for f in checked.findings]
    assert sorted(got, key=repr) == sorted(want, key=repr)
    assert checked.stats.scale_tensors == scanned.stats.scale_tensors
    assert checked.stats.scale_tensors_checked == scanned.stats.scale_tensors_checked
    assert all(f.file is None and f.byte_offset is None for f in checked.findings)
