"""The floor: the least work that can judge E8M0 scales. Parse each header, pread each scale tensor
once (in bounded chunks), take a byte histogram (for F32 scales, of the exponent byte). Single
thread, no layouts, no rules, no report: any real checker does at least this much."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import is_scale, read_header, shard_files

CHUNK = 16 << 20


def scale_chunks(root: str) -> Iterator[tuple[str, bytes | None]]:
    """Every scale tensor's bytes, pread once in bounded chunks: (dtype, chunk) pairs, and
    (dtype, None) after each tensor's last chunk."""
    for path in shard_files(root):
        fd = os.open(path, os.O_RDONLY)
        try:
            start, header = read_header(fd)
            for name, e in header.items():
                if name == "__metadata__" or not is_scale(name, e["dtype"]):
                    continue
                b, end = e["data_offsets"]
                for off in range(b, end, CHUNK):
                    yield e["dtype"], os.pread(fd, min(CHUNK, end - off), start + off)
                yield e["dtype"], None
        finally:
            os.close(fd)


def pread_only(root: str) -> dict[str, int]:
    """The I/O floor: pread every scale tensor's bytes once (same chunks as the floor), nothing else."""
    tensors = nbytes = 0
    for _, data in scale_chunks(root):
        if data is None:
            tensors += 1
        else:
            nbytes += len(data)
    return {"tensors": tensors, "bytes": nbytes}


def floor_scan(root: str) -> dict[str, int]:
    hist = np.zeros(256, dtype=np.int64)
    tensors = nbytes = 0
    for dtype, data in scale_chunks(root):
        if data is None:
            tensors += 1
            continue
        raw = np.frombuffer(data, dtype=np.uint8)
        if dtype == "F32":
            raw = ((np.frombuffer(data, dtype="<u4") >> 23) & 0xFF).astype(np.uint8)
        hist += np.bincount(raw, minlength=256)
        nbytes += len(data)
    return {"tensors": tensors, "bytes": nbytes, "nan": int(hist[255])}


if __name__ == "__main__":
    print(floor_scan(sys.argv[1]))
