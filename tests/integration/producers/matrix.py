"""What each producer export should look like to fp8doctor, and the corruptions the tests apply.

`expected(info)` turns the producer's own account of what it wrote (producer.json, from
tests.integration.producers.build) into the scale tensors, blocks and logical boxes a scan must report.
`corrupt(path, info, kind)` writes one kind of real-world damage into the bytes of one scale tensor
(the layer-0 q_proj's, or its second-level scale) and returns the tensor's name, or None when the
kind does not apply to the scheme (no padding, no second-level scale).

`python -m tests.integration.producers.matrix DEST` prints the producer x scheme table of the issue's closing
note (clean, layout, corruption recall, fix), measured on exports already built in DEST.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass

import numpy as np

from fp8doctor.checkpoint.loader import open_checkpoint

TARGET = "model.layers.0.self_attn.q_proj"

POINTER = bytes.fromhex("c01e0d0deb7f0000")
"""One x86-64 heap pointer (0x7feb0d0d1ec0) as leftover memory holds it, little-endian."""

CORRUPTIONS = ("random", "nan", "pointer", "heap-array", "zero", "padding", "second-level-nan")


@dataclass(frozen=True)
class Expect:
    scale: str
    weight: str
    block: tuple[int, int] | None  # None: one scale for the whole tensor
    logical_count: int  # real scale entries
    padded: int  # padded entries (stored - real)
    swizzled: bool = False


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _names(producer: str, scheme: str, module: str) -> tuple[str, str, list[str]]:
    """(weight, scale, second-level scales) of one quantized module, as each producer names them."""
    m = module
    if producer == "torchao":
        second = [f"{m}._weight_per_tensor_scale"] if scheme == "nvfp4" else []
        return f"{m}._weight_qdata", f"{m}._weight_scale", second
    if producer == "transformers":
        return f"{m}.weight", f"{m}.weight_scale_inv", []
    if producer == "llmcompressor":
        packed = scheme in ("NVFP4", "NVFP4A16", "MXFP4A16", "W4A16")
        second = {"NVFP4": [f"{m}.weight_global_scale", f"{m}.input_global_scale"],
                  "NVFP4A16": [f"{m}.weight_global_scale"], "FP8": [f"{m}.input_scale"]}.get(scheme, [])
        return f"{m}.weight_packed" if packed else f"{m}.weight", f"{m}.weight_scale", second
    second = {"NVFP4": [f"{m}.weight_scale_2", f"{m}.input_scale"], "FP8": [f"{m}.input_scale"]}.get(scheme, [])
    return f"{m}.weight", f"{m}.weight_scale", second


def expected(info: dict) -> tuple[list[Expect], list[str]]:
    """Every quantized module's main scale, and every second-level scale name."""
    producer, scheme = info["producer"], info["scheme"]
    out: list[Expect] = []
    second: list[str] = []
    for mod in info["modules"]:
        n, k = mod["shape"]
        weight, scale, sec = _names(producer, scheme, mod["module"])
        second += sec
        swizzled = False
        padded = 0
        if producer == "torchao":
            block = (1, mod["group"])
            swizzled = mod["swizzled"]
            padded = len(mod["padding"])
        elif producer == "transformers":
            block = tuple(mod["block"])
        elif producer == "llmcompressor":
            strategy = mod["strategy"]
            if strategy == "block":
                block = tuple(mod["block"])
            elif strategy == "channel":
                block = (1, k)
            elif strategy == "tensor":
                block = None
            else:  # group, tensor_group
                block = (1, mod["group"])
        else:
            bs = {int(a): b for a, b in mod["block_sizes"].items()}
            if -2 in bs:
                block = (bs[-2], bs[-1])
            elif -1 in bs:
                block = (1, bs[-1])
            elif mod["axis"] == 0:
                block = (1, k)
            else:
                block = None
        count = 1 if block is None else _cdiv(n, block[0]) * _cdiv(k, block[1])
        out.append(Expect(scale, weight, block, count, padded, swizzled))
    return out, second


def _tensor(path: str, name: str):
    with open_checkpoint(path) as ck:
        return ck.tensors.get(name)


def _write(path: str, t, rel: int, data: bytes) -> None:
    with open(os.path.join(path, t.file), "r+b") as f:
        f.seek(t.offset + rel)
        f.write(data[: max(0, t.nbytes - rel)])


def _itemsize(t) -> int:
    return {"F32": 4, "BF16": 2, "F16": 2}.get(t.dtype, 1)


def corrupt(path: str, info: dict, kind: str, seed: int = 0) -> str | None:
    """Damage one scale tensor of the export at `path`; its name, or None when `kind` does not apply."""
    exp, _ = expected(info)
    target = next(e for e in exp if e.scale.startswith(TARGET + "."))
    _, _, second = _names(info["producer"], info["scheme"], TARGET)
    name = target.scale
    if kind == "second-level-nan":
        if not second:
            return None
        name = second[0]
    t = _tensor(path, name)
    item = _itemsize(t)
    rng = np.random.default_rng(seed)
    if kind == "random":
        _write(path, t, 0, rng.integers(0, 256, t.nbytes, dtype=np.uint8).tobytes())
    elif kind in ("nan", "second-level-nan"):
        _write(path, t, 0, b"\xff" * item)  # NaN in every encoding (E8M0 0xFF, E4M3 0xFF, float all-ones)
    elif kind == "pointer":
        _write(path, t, 0, POINTER)
    elif kind == "heap-array":
        n = min(t.nbytes, 512) // 8
        ptrs = (0x00007FEB0D0D1EC0 + 0x30 * np.arange(max(n, 1), dtype=np.uint64)).astype("<u8")
        _write(path, t, 0, ptrs.tobytes())
    elif kind == "zero":
        _write(path, t, 0, b"\x00" * item)  # entry 0 (real in every layout) over a non-zero weight block
    elif kind == "padding":
        if not target.padded:
            return None
        pads = [i for m in info["modules"] if m["module"] == TARGET for i in m["padding"]]
        for i in pads[:: max(1, len(pads) // 16)]:
            _write(path, t, i * item, b"\xc7" * item)  # E8M0 2^72, E4M3 -3.75: never the fill
    else:
        raise ValueError(kind)
    return name


def shard_bytes(path: str) -> dict[str, bytes]:
    out = {}
    for f in sorted(os.listdir(path)):
        if f.endswith(".safetensors"):
            with open(os.path.join(path, f), "rb") as fh:
                out[f] = fh.read()
    return out


def _main(dest: str) -> int:  # pragma: no cover - a report generator, run by hand
    import shutil
    import tempfile

    from fp8doctor import Severity, fix, scan
    from tests.integration.producers.build import SCHEMES
    from tests.integration.producers.conftest import producer_load

    rows = ["| producer | scheme | clean | layout | corruption recall | fix |", "|---|---|---|---|---|---|"]
    for producer, schemes in SCHEMES.items():
        for scheme in schemes:
            src = os.path.join(dest, f"{producer}-{scheme}")
            with open(os.path.join(src, "producer.json")) as f:
                info = json.load(f)
            rep = scan(src)
            clean = "clean" if not rep.findings else ", ".join(f"{r} x{c}" for r, c in rep.by_rule().items())
            exp, second = expected(info)
            lay = {d["scale"]: d for d in rep.layouts}
            ok = sum(1 for e in exp if e.scale in lay and lay[e.scale]["weight"] == e.weight
                     and (tuple(lay[e.scale]["block"]) if lay[e.scale]["block"] and e.block else None) == e.block
                     and math.prod(lay[e.scale]["logical_shape"]) == e.logical_count)
            ok2 = sum(1 for s in second if s in lay)
            hit = tried = 0
            for kind in CORRUPTIONS:
                with tempfile.TemporaryDirectory() as td:
                    p = os.path.join(td, "c")
                    shutil.copytree(src, p)
                    name = corrupt(p, info, kind)
                    if name is None:
                        continue
                    tried += 1
                    hit += any(f.tensor == name and f.severity == Severity.ERROR for f in scan(p).findings)
            with tempfile.TemporaryDirectory() as td:
                p = os.path.join(td, "c")
                shutil.copytree(src, p)
                before = shard_bytes(p)
                fixed = "n/a (no padding)"
                if corrupt(p, info, "padding"):
                    res = fix(p)
                    same = shard_bytes(p) == before
                    loaded = producer_load(producer, p)[p]
                    fixed = f"{res.entries_changed} entries, bytes {'= clean' if same else 'DIFFER'}, " \
                            f"loader {'ok' if loaded['ok'] else 'FAILS'}"
            rows.append(f"| {producer} | {scheme} | {clean} | {ok}/{len(exp)} scales, {ok2}/{len(second)} second-level "
                        f"| {hit}/{tried} | {fixed} |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main(sys.argv[1]))
