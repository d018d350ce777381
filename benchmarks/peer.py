"""The peer: what a user writes today to check scales. `safe_open(framework="pt")` + `get_tensor`
per scale tensor, then torch checks (NaN/Inf, zero, negative, outliers against the median)."""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import SCALE_SUFFIXES, shard_files


def check(t) -> int:
    import torch

    if t.dtype == torch.uint8:  # MXFP4 scales stored as U8: E8M0 with bias 127
        x = torch.pow(2.0, t.to(torch.float32) - 127)
        x[t == 255] = float("nan")
    else:
        x = t.float()
    bad = int(torch.isnan(x).sum()) + int(torch.isinf(x).sum()) + int((x == 0).sum()) + int((x < 0).sum())
    ok = x[torch.isfinite(x) & (x > 0)]
    if ok.numel():
        e = torch.log2(ok)
        bad += int(((e - e.median()).abs() > 32).sum())
    return bad


def peer_scan(root: str) -> dict[str, int]:
    from safetensors import safe_open

    tensors = bad = 0
    for path in shard_files(root):
        with safe_open(path, framework="pt") as f:
            for name in f.keys():
                if name.endswith(SCALE_SUFFIXES):
                    bad += check(f.get_tensor(name))
                    tensors += 1
    return {"tensors": tensors, "bad": bad}


if __name__ == "__main__":
    print(peer_scan(sys.argv[1]))
