"""`dump` core: every dumped byte and offset checked against bytes read independently (plain
open()/read and our own header parse, not fp8doctor's reader), for each layout, padded and unpadded,
sharded and single-file; marks against the scan's findings; selection errors; bytes read."""

from __future__ import annotations

import json
import math
import os
import struct

import numpy as np
import pytest

from fp8doctor import DumpError, DumpOptions, LayoutOverride, RowRange, ScanOptions, dump, scan
from fp8doctor.checkpoint.loader import open_checkpoint
from fp8doctor.dumper import NO_MARK, dump_checkpoint
from fp8doctor.findings import Severity
from fp8doctor.testing import synth
from tests.conftest import poke

ITEM = {"F8_E8M0": 1, "U8": 1, "F32": 4}


def raw_tensors(root: str) -> dict[str, tuple[str, int, str, tuple[int, ...], bytes]]:
    """name -> (file, absolute offset, dtype, shape, bytes), parsed with struct + json + open()."""
    out = {}
    for fname in sorted(os.listdir(root)):
        if not fname.endswith(".safetensors"):
            continue
        with open(os.path.join(root, fname), "rb") as f:
            blob = f.read()
        (n,) = struct.unpack("<Q", blob[:8])
        header = json.loads(blob[8:8 + n])
        for name, e in header.items():
            if name == "__metadata__":
                continue
            a, b = e["data_offsets"]
            out[name] = (fname, 8 + n + a, e["dtype"], tuple(e["shape"]), blob[8 + n + a: 8 + n + b])
    return out


def box_mask(shape: tuple[int, ...], logical: tuple[int, ...]) -> np.ndarray:
    """True on padded entries: everything outside the logical box at the origin."""
    m = np.ones(shape, dtype=bool)
    m[tuple(slice(0, n) for n in logical)] = False
    return m


def entries(raw: bytes, dtype: str) -> np.ndarray:
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, ITEM[dtype])


def ranges(mask: np.ndarray) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for i in np.flatnonzero(mask.reshape(-1)):
        if out and out[-1][1] == i:
            out[-1] = (out[-1][0], int(i) + 1)
        else:
            out.append((int(i), int(i) + 1))
    return out


def _v3_single(d):
    return synth.deepseek_v3(d, shards=1)


def _v4_single(d):
    return synth.deepseek_v4(d, shards=1)


def _oss_padded(d):
    b = synth.gpt_oss(d)
    cfg_path = os.path.join(d, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["intermediate_size"] = 48  # stored 64 = 48 rounded up to 64: experts' intermediate is padded
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    p = "model.layers.0.mlp.experts"
    b.padding[f"{p}.gate_up_proj_scales"] = (4, 96, 3)
    b.padding[f"{p}.down_proj_scales"] = (4, 96, 2)
    _zero_padding(d, b.padding)
    return b


def _ct_padded(d):
    """compressed-tensors with q_proj's real N = 100 of 112 stored rows (given as a layout override)."""
    b = synth.compressed_tensors_mxfp4(d)
    b.padding["model.layers.0.self_attn.q_proj.weight_scale"] = (100, 8)
    _zero_padding(d, b.padding)
    return b


def _zero_padding(root: str, boxes: dict) -> None:
    """What a correct export holds in padded entries: 0x00 (written with plain open())."""
    for name, (fname, off, _, shape, data) in raw_tensors(root).items():
        if name in boxes:
            arr = np.frombuffer(data, dtype=np.uint8).reshape(shape).copy()
            arr[box_mask(shape, boxes[name])] = 0
            with open(os.path.join(root, fname), "r+b") as f:
                f.seek(off)
                f.write(arr.tobytes())


CT_OVERRIDE = (LayoutOverride.parse("*q_proj*:logical=100x256"),)

# (builder, scan options, padded, sharded)
CASES = {
    "v3-sharded": (synth.deepseek_v3, ScanOptions(), False, True),
    "v3-single": (_v3_single, ScanOptions(), False, False),
    "v4-sharded": (synth.deepseek_v4, ScanOptions(), True, True),
    "v4-single": (_v4_single, ScanOptions(), True, False),
    "oss": (synth.gpt_oss, ScanOptions(), False, False),
    "oss-padded": (_oss_padded, ScanOptions(), True, False),
    "ct": (synth.compressed_tensors_mxfp4, ScanOptions(), False, False),
    "ct-padded": (_ct_padded, ScanOptions(overrides=CT_OVERRIDE), True, False),
}


def _expected_logical(case: str, b, name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    return b.padding.get(name, shape)


@pytest.mark.parametrize("case", list(CASES))
def test_every_byte_and_offset_matches_the_file(case, tmp_path):
    build, scan_opts, padded, sharded = CASES[case]
    root = str(tmp_path / case)
    b = build(root)
    raw = raw_tensors(root)
    assert (len({f for f, *_ in raw.values()}) > 1) == sharded
    scales = [n for n in b.padding]
    dumps = dump(root, DumpOptions(tensors=tuple(scales), scan=scan_opts))
    assert [d.name for d in dumps] == scales
    any_padding = False
    for d in dumps:
        fname, off, dtype, shape, data = raw[d.name]
        logical = _expected_logical(case, b, d.name, shape)
        pad = box_mask(shape, logical)
        any_padding |= bool(pad.any())
        assert (d.file, d.byte_offset, d.dtype, d.shape, d.logical_shape) == (fname, off, dtype, shape, logical)
        assert d.selected_bytes() == data
        assert d.padding_ranges() == ranges(pad)
        idx = d.indices()
        assert idx.tolist() == list(range(math.prod(shape)))
        assert [d.offset_of(int(i)) for i in idx] == [off + i * ITEM[dtype] for i in range(len(idx))]
        assert d.bad_ranges() == [] and d.rules == ()
        # the padded region, and the logical one, byte for byte
        ents = entries(data, dtype)
        [p] = dump(root, DumpOptions(tensors=(d.name,), region="padding", scan=scan_opts))
        assert p.selected_bytes() == ents[pad.reshape(-1)].tobytes()
        assert p.indices().tolist() == np.flatnonzero(pad).tolist()
        [lg] = dump(root, DumpOptions(tensors=(d.name,), region="logical", scan=scan_opts))
        assert lg.selected_bytes() == ents[~pad.reshape(-1)].tobytes()
        assert lg.padding_ranges() == []
    assert any_padding == padded


@pytest.mark.parametrize("case", ["v3-sharded", "v4-single", "oss-padded", "ct"])
@pytest.mark.parametrize("rows", ["1:3", "0", "-2:", ":1", "2:"])
def test_row_ranges_are_the_rows_on_disk(case, rows, tmp_path):
    build, scan_opts, _, _ = CASES[case]
    root = str(tmp_path / case)
    b = build(root)
    raw = raw_tensors(root)
    name = max(b.padding, key=lambda n: math.prod(raw[n][3][:-1]))  # the tensor with most rows
    _fname, off, dtype, shape, data = raw[name]
    row_len = shape[-1]
    nrows = math.prod(shape[:-1])
    rr = RowRange.parse(rows)
    r0, r1, _ = slice(rr.start, rr.stop).indices(nrows)
    for region in ("all", "padding", "logical"):
        [d] = dump(root, DumpOptions(tensors=(name,), rows=RowRange.parse(rows), region=region, scan=scan_opts))
        pad = box_mask(shape, _expected_logical(case, b, name, shape)).reshape(nrows, row_len)
        want_mask = np.zeros((nrows, row_len), dtype=bool)
        want_mask[r0:r1] = True
        if region == "padding":
            want_mask &= pad
        elif region == "logical":
            want_mask &= ~pad
        assert d.rows == (r0, r1)
        assert d.span_offset == off + r0 * row_len * ITEM[dtype]
        assert d.data == data[r0 * row_len * ITEM[dtype]: r1 * row_len * ITEM[dtype]]
        assert d.selected_bytes() == entries(data, dtype)[want_mask.reshape(-1)].tobytes()
        assert d.indices().tolist() == np.flatnonzero(want_mask).tolist()


def test_oss_rows_flatten_the_expert_axis(tmp_path):
    root = str(tmp_path / "oss")
    synth.gpt_oss(root)
    name = "model.layers.0.mlp.experts.down_proj_scales"  # [4, 96, 2]
    [d] = dump(root, DumpOptions(tensors=(name,), rows=RowRange(97, 99)))
    assert d.row_label(97) == "1,1" and d.row_label(5) == "0,5"
    _, off, _, _, data = raw_tensors(root)[name]
    assert d.data == data[97 * 2: 99 * 2] and d.span_offset == off + 97 * 2


def test_marks_are_the_bytes_the_rules_flag(v4):
    name = "layers.0.attn.wq_b.scale"  # stored [4, 4], logical [2, 2]
    poke(v4, name, 9, b"\xff\x90")  # padding [2,1], [2,2]
    poke(v4, name, 1, b"\xff")  # a real entry: NaN
    [d] = dump(v4, DumpOptions(tensors=(name,)))
    sev = d.severity.reshape(-1)
    assert set(np.flatnonzero(sev != NO_MARK).tolist()) == {1, 9, 10}
    assert (sev[[1, 9, 10]] == Severity.ERROR.rank).all()
    assert {r: n for r, _, n in d.rules} == {"scale-padding-nonzero": 2, "scale-nan": 1}
    assert d.bad_ranges() == [(1, 2, Severity.ERROR), (9, 11, Severity.ERROR)]
    by_rule = {f.rule: f for f in scan(v4).findings}
    assert by_rule["scale-padding-nonzero"].count == 2 and by_rule["scale-nan"].count == 1
    # a region keeps only its own marks
    [p] = dump(v4, DumpOptions(tensors=(name,), region="padding"))
    assert {r: n for r, _, n in p.rules} == {"scale-padding-nonzero": 2}


def test_warning_marks_f32_not_power_of_two(tmp_path):
    root = str(tmp_path / "v3")
    synth.deepseek_v3(root, shards=1)
    name = "model.layers.0.self_attn.o_proj.weight_scale_inv"
    poke(root, name, 0, struct.pack("<f", 0.0003))
    [d] = dump(root, DumpOptions(tensors=(name,)))
    assert d.severity.reshape(-1)[0] == Severity.WARNING.rank
    assert (d.severity.reshape(-1)[1:] == NO_MARK).all()
    assert d.rules == (("scale-not-power-of-two", Severity.WARNING, 1),)


def test_findings_selects_the_flagged_scale_tensors(v4):
    poke(v4, "layers.1.attn.wkv.scale", 15, b"\x99")
    poke(v4, "layers.0.ffn.experts.1.w3.scale", 900, b"\xff")  # row 90: padding
    dumps = dump(v4, DumpOptions(findings=True))
    assert [d.name for d in dumps] == ["layers.0.ffn.experts.1.w3.scale", "layers.1.attn.wkv.scale"]
    assert dump(v4, DumpOptions(findings=True, tensors=("layers.0.attn.wq_a.scale",)))[0].name == \
        "layers.0.attn.wq_a.scale"


def test_findings_on_a_clean_checkpoint_is_empty(ct):
    assert dump(ct, DumpOptions(findings=True)) == []


def test_glob_matches_in_natural_order(v4):
    names = [d.name for d in dump(v4, DumpOptions(tensors=("layers.*.attn.wkv.scale",)))]
    assert names == ["layers.0.attn.wkv.scale", "layers.1.attn.wkv.scale"]


@pytest.mark.parametrize("tensors, rows, message", [
    ((), None, "say which scale tensors"),
    (("layers.0.attn.wkv.weight",), None, "is not a scale tensor (it is F8_E4M3 [80, 320]); dump shows scale "
     "tensors: did you mean layers.0.attn.wkv.scale?"),
    (("layers.0.attn.wkv.scal",), None, "no tensor named layers.0.attn.wkv.scal in the checkpoint; did you mean "
     "layers.0.attn.wkv.scale?"),
    (("layers.*.nothing",), None, "matches no scale tensor (and no tensor at all)"),
    (("layers.*.attn_norm.weight",), None, "matches no scale tensor (2 other tensors match it)"),
    (("layers.0.attn.wkv.scale",), "10:20", "--rows 10:20 selects no row: the selected tensors have at most 4 rows"),
])
def test_selection_errors(v4, tensors, rows, message):
    with pytest.raises(DumpError) as e:
        dump(v4, DumpOptions(tensors=tensors, rows=RowRange.parse(rows) if rows else None))
    assert message in str(e.value)


def test_bad_row_text_and_region():
    with pytest.raises(DumpError, match="not a row range"):
        RowRange.parse("3-8")
    with pytest.raises(DumpError, match="region must be one of"):
        DumpOptions(region="middle")


def test_orphan_scale_dumps_whole_tensor_as_logical(tmp_path):
    root = str(tmp_path / "orphan")
    os.makedirs(root)
    data = np.arange(24, dtype=np.uint8) + 100
    synth.write_safetensors(os.path.join(root, "model.safetensors"),
                            {"lonely.scale": synth.Tensor("F8_E8M0", (4, 6), data)})
    [d] = dump(root, DumpOptions(tensors=("lonely.scale",), rows=RowRange(1, 3)))
    assert d.layout is None and "scale-orphan" in d.note and "logical = whole tensor" in d.note
    assert d.logical_shape == (4, 6) and d.padding_ranges() == []
    _, off, _, _, raw = raw_tensors(root)["lonely.scale"]
    assert d.selected_bytes() == raw[6:18] and d.span_offset == off + 6


def test_reads_only_the_selected_tensor(tmp_path):
    root = str(tmp_path / "v4")
    synth.deepseek_v4(root, shards=1, layers=3)
    name = "layers.2.ffn.experts.1.w1.scale"
    options = DumpOptions(tensors=(name,))
    with open_checkpoint(root) as ck:
        before = ck.bytes_read
        [d] = dump_checkpoint(ck, options)
        assert ck.bytes_read - before == ck.tensors[name].nbytes
    # raw bytes of a row range: only those rows
    with open_checkpoint(root) as ck:
        before = ck.bytes_read
        [d] = dump_checkpoint(ck, DumpOptions(tensors=(name,), rows=RowRange(5, 7), marks=False))
        assert ck.bytes_read - before == 2 * 10 == len(d.data)
        assert not d.marked


def test_truncated_tensor_is_a_clear_error(v4):
    name = "layers.1.ffn.experts.1.w3.scale"
    fname, off, *_ = raw_tensors(v4)[name]
    os.truncate(os.path.join(v4, fname), off + 1)
    with pytest.raises(DumpError, match="truncated"):
        dump(v4, DumpOptions(tensors=(name,)))
