"""Fuzz target: any bytes, turned into a checkpoint, must never make scan, the layout model or the
rules raise. Two input shapes: raw file bytes, and structure-aware mutations of a valid shard
(header JSON edits, truncation, byte flips), since random bytes rarely get past the length prefix."""

from __future__ import annotations

import json
import os
import random
import struct
import tempfile

from fp8doctor import CheckpointError
from fp8doctor.scanner import scan
from fp8doctor.testing import synth

_TEMPLATE: bytes | None = None
_DIR = tempfile.mkdtemp(prefix="fp8doctor-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)


def template() -> bytes:
    """One valid V4-style shard (FP8 + E8M0 padded scales, FP4 experts), built once."""
    global _TEMPLATE
    if _TEMPLATE is None:
        d = os.path.join(_DIR, "tpl")
        synth.deepseek_v4(d, layers=1, shards=1, with_config=False)
        with open(os.path.join(d, "model.safetensors"), "rb") as f:
            _TEMPLATE = f.read()
    return _TEMPLATE


def _split(data: bytes) -> tuple[dict, bytes]:
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def _join(header: object, body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


_JUNK = [None, -1, 0, 1, 2**63, 2**64, 1e308, "x", "", [], {}, [0], [1, 2, 3], True, "F8_E8M0", "F4", [0, 0]]


def mutate(rng: random.Random) -> bytes:
    """A structure-aware mutation of the template shard."""
    data = template()
    header, body = _split(data)
    op = rng.randrange(9)
    names = [k for k in header if k != "__metadata__"]
    name = rng.choice(names)
    entry = header[name]
    if op == 0:
        entry[rng.choice(["dtype", "shape", "data_offsets"])] = rng.choice(_JUNK)
    elif op == 1:
        entry["shape"] = [rng.choice([0, 1, 2, 3, 4, 7, 96, 1 << 31, 1 << 62]) for _ in range(rng.randrange(5))]
    elif op == 2:
        a, b = entry["data_offsets"]
        entry["data_offsets"] = [a + rng.randrange(-3, 4), b + rng.randrange(-3, 4)]
    elif op == 3:
        entry["dtype"] = rng.choice(["F8_E8M0", "U8", "I8", "F32", "BF16", "F8_E4M3", "F4", "I64", "BOOL"])
    elif op == 4:
        header[rng.choice(names) + rng.choice([".scale", ".weight", "_scales", "_blocks", ".weight_scale_inv"])] = \
            dict(entry)
    elif op == 5:
        del header[name]
    elif op == 6:
        return data[: rng.randrange(len(data) + 1)]
    elif op == 7:
        buf = bytearray(data)
        for _ in range(rng.randrange(1, 16)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        return bytes(buf)
    else:
        body = bytes(rng.randrange(256) for _ in range(min(len(body), 4096))) + body[4096:]
    return _join(header, body)


def one_input(data: bytes, config: bytes | None = None) -> None:
    """Write the bytes as a shard (and optional config.json) and scan it; only findings may come back."""
    d = os.path.join(_DIR, "case")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(data)
    cfg = os.path.join(d, "config.json")
    if config is not None:
        with open(cfg, "wb") as f:
            f.write(config)
    elif os.path.exists(cfg):
        os.remove(cfg)
    try:
        report = scan(d)
    except CheckpointError:
        return
    for finding in report.findings:
        finding.to_dict()  # every finding must serialise
