"""Helpers for the CI-integration tests: break and repair padded scale bytes, odd tensor names."""

from __future__ import annotations

from fp8doctor.testing import synth

ODD_NAME = "odd%25 name,with:colons\nand newline"
"""A tensor-name prefix holding every character GitHub workflow commands must escape."""


def break_padding(root: str, prefix: str = "layers.0.", seed: int = 7) -> int:
    """Leftover-memory bytes in the padded scale entries under `prefix` (see synth.garble_padding)."""
    return synth.garble_padding(root, prefix, seed)


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


def broken_checkpoint_repo(tmp_path) -> tuple:
    """A git repository holding a broken V4 checkpoint two directories down (models/v4)."""
    import subprocess

    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    ckpt = root / "models" / "v4"
    synth.deepseek_v4(str(ckpt))
    break_padding(str(ckpt))
    return root, ckpt


def grow_headers(root: str, pad: int = 4096) -> None:
    """Rewrite every shard under `root` with `pad` more header bytes (a `__metadata__` entry), as a
    re-save by another tool would: the data stays, every absolute byte offset moves."""
    import json
    import os
    import struct

    for name in sorted(os.listdir(root)):
        if not name.endswith(".safetensors"):
            continue
        path = os.path.join(root, name)
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
            body = fh.read()
        header.setdefault("__metadata__", {})["rewritten_by"] = "x" * pad
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
        with open(path, "wb") as fh:
            fh.write(struct.pack("<Q", len(raw)) + raw + body)
