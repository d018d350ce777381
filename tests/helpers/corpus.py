"""A bad-input corpus generated at test time (no committed blobs): each case is a function that
turns a fresh valid checkpoint directory into a broken one and returns the path to scan."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable

from fp8doctor.checkpoint.loader import INDEX_NAME, open_checkpoint
from fp8doctor.testing import synth

Case = tuple[str, Callable[[str], str]]
SHARD = "model-00001-of-00002.safetensors"


def _header_len(path: str) -> int:
    with open(path, "rb") as f:
        return struct.unpack("<Q", f.read(8))[0]


def _write_header(path: str, header: bytes | str, data: bytes = b"") -> None:
    raw = header.encode() if isinstance(header, str) else header
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + data)


def _truncate_at(offset: int, shard: str = SHARD) -> Callable[[str], str]:
    def case(root: str) -> str:
        with open(os.path.join(root, shard), "r+b") as f:
            f.truncate(offset)
        return root
    return case


def truncation_points(root: str, shard: str = SHARD) -> list[int]:
    """0..9, around the header's end, every tensor boundary +-1, and the middle of every tensor."""
    path = os.path.join(root, shard)
    n = _header_len(path)
    points = set(range(10)) | {8 + n // 2, 8 + n - 1, 8 + n, 8 + n + 1}
    with open_checkpoint(root) as ck:
        for t in ck.shards[shard].tensors.values():
            points |= {t.offset - 1, t.offset, t.offset + 1, t.offset + t.nbytes // 2, t.offset + t.nbytes - 1}
    size = os.path.getsize(path)
    return sorted(p for p in points if 0 <= p < size)


def _replace_shard_header(header: dict | str | bytes, data: bytes = b"\0" * 16) -> Callable[[str], str]:
    def case(root: str) -> str:
        h = header if isinstance(header, (str, bytes)) else json.dumps(header)
        _write_header(os.path.join(root, SHARD), h, data)
        return root
    return case


def _raw_shard(content: bytes) -> Callable[[str], str]:
    def case(root: str) -> str:
        with open(os.path.join(root, SHARD), "wb") as f:
            f.write(content)
        return root
    return case


def _index(mutate: Callable[[dict], object]) -> Callable[[str], str]:
    def case(root: str) -> str:
        p = os.path.join(root, INDEX_NAME)
        with open(p) as f:
            idx = json.load(f)
        out = mutate(idx)
        with open(p, "w") as f:
            f.write(out if isinstance(out, str) else json.dumps(out if out is not None else idx))
        return root
    return case


def _config(content: str) -> Callable[[str], str]:
    def case(root: str) -> str:
        with open(os.path.join(root, "config.json"), "w") as f:
            f.write(content)
        return root
    return case


def _fs(kind: str) -> Callable[[str], str]:
    def case(root: str) -> str:
        p = os.path.join(root, SHARD)
        os.remove(p)
        if kind == "dir":
            os.mkdir(p)
        elif kind == "fifo":
            os.mkfifo(p)
        elif kind == "loop":
            os.symlink(p, p)
        elif kind == "dangling":
            os.symlink(p + ".gone", p)
        elif kind == "outside":
            os.symlink("/etc/hostname", p)
        return root
    return case


def _wm(k, v):
    def f(idx):
        idx["weight_map"][k] = v
    return f


def _many_shards(idx):
    for i in range(3000):
        idx["weight_map"][f"t{i}.weight"] = f"shard-{i:05d}.safetensors"


def _entry(**kw):
    e = {"dtype": "U8", "shape": [16], "data_offsets": [0, 16]}
    e.update(kw)
    return {"t": e}


HEADER_CASES: list[Case] = [
    ("empty-file", _raw_shard(b"")),
    ("seven-bytes", _raw_shard(b"\x00" * 7)),
    ("zero-length-header", _raw_shard(b"\x00" * 8)),
    ("terabyte-header", _raw_shard(struct.pack("<Q", 1 << 40) + b"{}")),
    ("u64-max-header", _raw_shard(b"\xff" * 8 + b"{}")),
    ("over-limit-header", _raw_shard(struct.pack("<Q", 100_000_001) + b"{}")),
    ("not-utf8", _replace_shard_header(b'{"\xc3\x28": 1}')),
    ("not-json", _replace_shard_header("{oops")),
    ("json-list", _replace_shard_header("[]")),
    ("json-null", _replace_shard_header("null")),
    ("json-number", _replace_shard_header("1e999")),
    ("nested-deep", _replace_shard_header("[" * 200000 + "]" * 200000)),
    ("nested-object-deep", _replace_shard_header('{"a":' * 50000 + "1" + "}" * 50000)),
    ("entry-not-object", _replace_shard_header({"t": 5})),
    ("entry-missing-keys", _replace_shard_header({"t": {"dtype": "U8"}})),
    ("unknown-dtype", _replace_shard_header(_entry(dtype="Q7"))),
    ("dtype-not-string", _replace_shard_header(_entry(dtype=7))),
    ("shape-negative", _replace_shard_header(_entry(shape=[-16]))),
    ("shape-float", _replace_shard_header(_entry(shape=[16.0]))),
    ("shape-string", _replace_shard_header(_entry(shape="16"))),
    ("shape-bool", _replace_shard_header(_entry(shape=[True]))),
    ("shape-overflow", _replace_shard_header(_entry(shape=[1 << 62, 1 << 62, 16]))),
    ("shape-huge-int", _replace_shard_header(_entry(shape=[10**40]))),
    ("offsets-reversed", _replace_shard_header(_entry(data_offsets=[16, 0]))),
    ("offsets-three", _replace_shard_header(_entry(data_offsets=[0, 8, 16]))),
    ("offsets-negative", _replace_shard_header(_entry(data_offsets=[-16, 0]))),
    ("size-mismatch", _replace_shard_header(_entry(data_offsets=[0, 15]))),
    ("fp4-odd", _replace_shard_header(_entry(dtype="F4", shape=[3], data_offsets=[0, 2]))),
    ("offset-past-eof", _replace_shard_header(_entry(data_offsets=[1 << 50, (1 << 50) + 16]))),
    ("metadata-not-strings", _replace_shard_header({"__metadata__": {"a": [1]}, **_entry()})),
    ("metadata-list", _replace_shard_header({"__metadata__": [], **_entry()})),
    ("duplicate-key", _replace_shard_header(
        '{"t": {"dtype": "U8", "shape": [16], "data_offsets": [0, 16]}, '
        '"t": {"dtype": "U8", "shape": [16], "data_offsets": [0, 16]}}')),
    ("overlap", _replace_shard_header({"a": {"dtype": "U8", "shape": [16], "data_offsets": [0, 16]},
                                       "b": {"dtype": "U8", "shape": [8], "data_offsets": [8, 16]}})),
    ("gap", _replace_shard_header({"a": {"dtype": "U8", "shape": [8], "data_offsets": [8, 16]}})),
    ("control-chars-name", _replace_shard_header({"\x1b[2J\x07evil\u202e.weight": {
        "dtype": "F8_E4M3", "shape": [16], "data_offsets": [0, 16]}})),
    ("markup-name", _replace_shard_header({"[link=file:///etc]x[/link].scale": {
        "dtype": "F8_E8M0", "shape": [16], "data_offsets": [0, 16]}})),
    ("e8m0-scale-wrong-rank", _replace_shard_header({"w.weight": {"dtype": "F8_E4M3", "shape": [4, 4],
                                                                  "data_offsets": [0, 16]},
                                                     "w.scale": {"dtype": "F8_E8M0", "shape": [1, 1, 1, 1],
                                                                 "data_offsets": [16, 17]}}, b"\x01" * 17)),
    ("scale-bad-dtype", _replace_shard_header({"w.weight": {"dtype": "F8_E4M3", "shape": [4, 4],
                                                            "data_offsets": [0, 16]},
                                               "w.weight_scale_inv": {"dtype": "I64", "shape": [1, 1],
                                                                      "data_offsets": [16, 24]}}, b"\x01" * 24)),
    ("zero-size-weight", _replace_shard_header({"w.weight": {"dtype": "F8_E4M3", "shape": [0, 4],
                                                             "data_offsets": [0, 0]},
                                                "w.scale": {"dtype": "F8_E8M0", "shape": [0, 1],
                                                            "data_offsets": [0, 0]}}, b"")),
    ("random-bytes", _raw_shard(bytes(range(256)) * 64)),
]

INDEX_CASES: list[Case] = [
    ("index-not-json", _index(lambda idx: "{nope")),
    ("index-list", _index(lambda idx: "[]")),
    ("index-weight-map-list", _index(lambda idx: {"weight_map": []})),
    ("index-values-int", _index(lambda idx: {"weight_map": {"a": 1}})),
    ("index-dotdot", _index(_wm("x.weight", "../x.safetensors"))),
    ("index-absolute", _index(_wm("x.weight", "/etc/passwd"))),
    ("index-nul", _index(_wm("x.weight", "a\x00b.safetensors"))),
    ("index-missing-shard", _index(_wm("x.weight", "nope.safetensors"))),
    ("index-thousands-of-shards", _index(_many_shards)),
    ("index-empty-map", _index(lambda idx: {"weight_map": {}})),
    ("index-deep", _index(lambda idx: '{"weight_map":' + "[" * 100000 + "]" * 100000 + "}")),
    ("config-garbage", _config("\x00\xff garbage")),
    ("config-list", _config("[1,2]")),
    ("config-quant-string", _config('{"quantization_config": "fp8"}')),
    ("config-block-bad", _config('{"quantization_config": {"weight_block_size": [0, -1]}}')),
    ("config-groups-bad", _config('{"quantization_config": {"config_groups": {"g": 5}}}')),
    ("config-dims-strings", _config('{"moe_inter_dim": "80", "hidden_size": null}')),
    ("config-deep", _config("[" * 100000 + "]" * 100000)),
    ("shard-is-dir", _fs("dir")),
    ("shard-is-fifo", _fs("fifo")),
    ("shard-symlink-loop", _fs("loop")),
    ("shard-dangling-symlink", _fs("dangling")),
    ("shard-symlink-outside", _fs("outside")),
]


def all_cases(template: str) -> list[Case]:
    """Every case; truncation points are computed from a valid checkpoint like the ones cases get."""
    trunc = [(f"truncate-{shard[6:11]}-{p}", _truncate_at(p, shard))
             for shard in (SHARD, "model-00002-of-00002.safetensors") for p in truncation_points(template, shard)]
    return HEADER_CASES + INDEX_CASES + trunc


def make_template(path: str) -> str:
    synth.deepseek_v4(path, layers=2)
    return path
