"""The peer fix: what a user writes today to zero garbage padding. For each affected shard,
`safetensors.torch.load_file` + patch the padded entries + `save_file` of the whole shard.
Which entries are padding comes from fp8doctor's layouts (the peer has to know that somehow)."""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def peer_fix(root: str) -> dict[str, int]:
    import torch
    from safetensors.torch import load_file, save_file

    from fp8doctor.scanner import ScanOptions, scan

    report = scan(root, ScanOptions(select=("scale-padding-nonzero",)))
    by_file: dict[str, list[str]] = {}
    for f in report.findings:
        by_file.setdefault(f.file, []).append(f.tensor)
    boxes = {lay["scale"]: lay["logical_shape"] for lay in report.layouts}
    for file, names in sorted(by_file.items()):
        path = os.path.join(root, file)
        tensors = load_file(path)
        for name in names:
            t = tensors[name].view(torch.uint8)
            keep = t[tuple(slice(0, n) for n in boxes[name])].clone()
            t.zero_()
            t[tuple(slice(0, n) for n in boxes[name])] = keep
        save_file(tensors, path, metadata={"format": "pt"})
    return {"shards": len(by_file), "tensors": sum(len(v) for v in by_file.values())}
