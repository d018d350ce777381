"""Every rule of the safetensors reference reader becomes a finding, never an exception."""

from __future__ import annotations

import json
import os
import struct

import pytest

from fp8doctor.testing.synth import Tensor, write_safetensors
from tests.helpers.helpers_scan import scan


def raw_file(path, header, data: bytes = b"", *, raw_header: bytes | None = None, prefix: bytes | None = None):
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(prefix if prefix is not None else struct.pack("<Q", len(h)))
        f.write(h)
        f.write(data)
    return str(path)


def entry(dtype="U8", shape=(4,), offsets=(0, 4)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


def rules_of(path):
    return [(f.rule, f.tensor) for f in scan(path).findings]


def test_valid_file_written_by_safetensors(tmp_path):
    import numpy as np

    p = str(tmp_path / "ok.safetensors")
    write_safetensors(p, {"a": Tensor("U8", (4,), np.arange(4, dtype=np.uint8)),
                          "empty": Tensor("F32", (0, 3), np.zeros(0, dtype=np.uint8)),
                          "scalar": Tensor("F32", (), np.zeros(4, dtype=np.uint8))})
    assert scan(p).findings == ()


@pytest.mark.parametrize("content", [b"", b"\x01\x02\x03"])
def test_shorter_than_8_bytes(tmp_path, content):
    p = tmp_path / "short.safetensors"
    p.write_bytes(content)
    [f] = scan(str(p)).findings
    assert f.rule == "header-invalid" and "shorter than the 8-byte" in f.message


def test_header_length_over_limit(tmp_path):
    p = raw_file(tmp_path / "x.safetensors", {}, prefix=struct.pack("<Q", 100_000_001))
    [f] = scan(p).findings
    assert f.rule == "header-invalid" and "limit" in f.message


def test_header_length_claims_terabytes(tmp_path):
    p = raw_file(tmp_path / "x.safetensors", {}, prefix=struct.pack("<Q", 1 << 42))
    [f] = scan(p).findings
    assert f.rule == "header-invalid"


def test_header_past_end_of_file(tmp_path):
    p = raw_file(tmp_path / "x.safetensors", None, raw_header=b'{"a":', prefix=struct.pack("<Q", 500))
    [f] = scan(p).findings
    assert f.rule == "header-invalid" and "past" not in f.message and "only" in f.message


def test_not_utf8(tmp_path):
    p = raw_file(tmp_path / "x.safetensors", None, raw_header=b'{"\xff\xfe": 1}')
    [f] = scan(p).findings
    assert f.rule == "header-invalid" and "UTF-8" in f.message and f.byte_offset == 8 + 2


@pytest.mark.parametrize("raw,needle", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2, 3]", "not an object"),
    (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
])
def test_not_json_object(tmp_path, raw, needle):
    p = raw_file(tmp_path / "x.safetensors", None, raw_header=raw)
    [f] = scan(p).findings
    assert f.rule == "header-invalid" and needle in f.message


@pytest.mark.parametrize("bad_entry,needle", [
    ("nope", "not an object"),
    ({"dtype": "U8", "shape": [4]}, "lacks data_offsets"),
    (entry(dtype="Q4"), "unknown dtype"),
    (entry(shape=(-1,)), "shape"),
    (entry(shape=(True,)), "shape"),
    (entry(offsets=(4, 0)), "data_offsets"),
    (entry(offsets=(0, 3)), "shape [4] x U8 is 4 bytes but data_offsets span 3"),
    (entry(dtype="F4", shape=(3,), offsets=(0, 2)), "not a whole number of bytes"),
    (entry(shape=(1 << 40, 1 << 40), offsets=(0, 4)), "overflows 64 bits"),
])
def test_bad_entries(tmp_path, bad_entry, needle):
    p = raw_file(tmp_path / "x.safetensors", {"t": bad_entry}, b"\0" * 4)
    fs = scan(p).findings
    assert any(f.rule == "header-invalid" and f.tensor == "t" and needle in f.message for f in fs), fs


def test_metadata_must_be_string_map(tmp_path):
    p = raw_file(tmp_path / "x.safetensors", {"__metadata__": {"a": 1}, "t": entry()}, b"\0" * 4)
    assert rules_of(p) == [("header-invalid", None)]


def test_duplicate_keys(tmp_path):
    raw = b'{"t": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}, ' \
          b'"t": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}}'
    p = raw_file(tmp_path / "x.safetensors", None, b"\0" * 4, raw_header=raw)
    [f] = scan(p).findings
    assert f.rule == "header-invalid" and f.tensor == "t" and "more than once" in f.message


def test_offsets_gap_overlap_and_nonzero_start(tmp_path):
    p = raw_file(tmp_path / "gap.safetensors", {"a": entry(offsets=(0, 4)), "b": entry(offsets=(6, 10))}, b"\0" * 10)
    assert ("header-invalid", "b") in rules_of(p)
    p = raw_file(tmp_path / "ovl.safetensors", {"a": entry(offsets=(0, 4)), "b": entry(offsets=(2, 6))}, b"\0" * 6)
    fs = scan(p).findings
    assert any(f.rule == "header-invalid" and f.tensor == "b" and "overlaps" in f.message for f in fs)
    p = raw_file(tmp_path / "start.safetensors", {"a": entry(offsets=(4, 8))}, b"\0" * 8)
    fs = scan(p).findings
    assert any(f.rule == "header-invalid" and "gap" in f.message for f in fs)


def test_truncated_and_trailing_data(tmp_path):
    p = raw_file(tmp_path / "short.safetensors", {"a": entry(offsets=(0, 4)), "b": entry(offsets=(4, 8))}, b"\0" * 5)
    [f] = scan(p).findings
    assert f.rule == "file-truncated" and "3 bytes missing" in f.message
    size = os.path.getsize(p)
    assert f.byte_offset == size
    p = raw_file(tmp_path / "long.safetensors", {"a": entry()}, b"\0" * 9)
    [f] = scan(p).findings
    assert f.rule == "file-truncated" and "after the last tensor" in f.message


def test_truncated_scale_is_skipped_not_called_clean(v4):
    from tests.conftest import tensor_info

    t = tensor_info(v4, "layers.1.ffn.experts.1.w2.scale")
    path = os.path.join(v4, t.file)
    with open(path, "r+b") as f:
        f.truncate(t.offset + 10)
    report = scan(v4)
    rules = report.by_rule()
    assert rules.get("file-truncated") == 1
    assert report.stats.skipped >= 1
    assert report.stats.scale_tensors_checked < report.stats.scale_tensors


def test_every_known_dtype_is_accepted(tmp_path):
    from fp8doctor.checkpoint.dtypes import DTYPE_BITS

    header, off = {}, 0
    for i, (dtype, bits) in enumerate(sorted(DTYPE_BITS.items())):
        n = 8 * bits // 8
        header[f"t{i}"] = entry(dtype=dtype, shape=(8,), offsets=(off, off + n))
        off += n
    p = raw_file(tmp_path / "all.safetensors", header, b"\x7f" * off)
    # the lone F8_E8M0 tensor is an orphan scale; nothing else, and no header finding
    e8m0 = f"t{sorted(DTYPE_BITS).index('F8_E8M0')}"
    assert [(f.rule, f.tensor) for f in scan(p).findings] == [("scale-orphan", e8m0)]
