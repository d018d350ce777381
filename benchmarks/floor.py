"""The floor: the least work that can judge E8M0 scales. Parse each header, pread each scale tensor
once (in bounded chunks), take a byte histogram (for F32 scales, of the exponent byte). Single
thread, no layouts, no rules, no report: any real checker does at least this much."""

from __future__ import annotations

import os
import sys

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import is_scale, read_header, shard_files

CHUNK = 16 << 20


def pread_only(root: str) -> dict[str, int]:
    """The I/O floor: pread every scale tensor's bytes once (same chunks as the floor), nothing else."""
    tensors = nbytes = 0
    for path in shard_files(root):
        fd = os.open(path, os.O_RDONLY)
        try:
            start, header = read_header(fd)
            for name, e in header.items():
                if name == "__metadata__" or not is_scale(name, e["dtype"]):
                    continue
                b, end = e["data_offsets"]
                for off in range(b, end, CHUNK):
                    nbytes += len(os.pread(fd, min(CHUNK, end - off), start + off))
                tensors += 1
        finally:
            os.close(fd)
    return {"tensors": tensors, "bytes": nbytes}


def floor_scan(root: str) -> dict[str, int]:
    hist = np.zeros(256, dtype=np.int64)
    tensors = nbytes = 0
    for path in shard_files(root):
        fd = os.open(path, os.O_RDONLY)
        try:
            start, header = read_header(fd)
            for name, e in header.items():
                if name == "__metadata__" or not is_scale(name, e["dtype"]):
                    continue
                b, end = e["data_offsets"]
                for off in range(b, end, CHUNK):
                    data = os.pread(fd, min(CHUNK, end - off), start + off)
                    raw = np.frombuffer(data, dtype=np.uint8)
                    if e["dtype"] == "F32":
                        raw = ((np.frombuffer(data, dtype="<u4") >> 23) & 0xFF).astype(np.uint8)
                    hist += np.bincount(raw, minlength=256)
                tensors += 1
                nbytes += end - b
        finally:
            os.close(fd)
    return {"tensors": tensors, "bytes": nbytes, "nan": int(hist[255])}


if __name__ == "__main__":
    print(floor_scan(sys.argv[1]))
