"""Streamed dumps (dumper.dump_streams / dump_pieces, reporters/dump_json.write_stream) say exactly
what the one-piece dump says: the same JSON text byte for byte and the same raw bytes, whatever the
piece size (ranges cut at piece boundaries are joined again); and on a tensor large enough for
the row-slab rules, dump's marks are the whole-tensor evaluation's masks."""

from __future__ import annotations

import numpy as np
import pytest

from fp8doctor import DumpOptions, RowRange, dump
from fp8doctor.checkpoint.loader import open_checkpoint
from fp8doctor.dumper import NO_MARK, dump_pieces, dump_streams
from fp8doctor.layouts.pairing import LayoutBuilder
from fp8doctor.reporters import dump_json
from fp8doctor.rules.content import RULE_SLAB, ContentOptions
from fp8doctor.testing import synth
from fp8doctor.testing.synth import Tensor, write_safetensors
from tests.conftest import poke
from tests.helpers.direct_rules import direct_check_tensor


def _streamed_json(path: str, options: DumpOptions, piece_bytes: int) -> str:
    out: list[str] = []
    with dump_streams(path, options) as streams:
        dump_json.write_stream(streams, path, "0", out.append, piece_bytes)
    return "".join(out)


@pytest.fixture(scope="module")
def dirty(tmp_path_factory):
    """A V4 and a gpt-oss checkpoint with garbage padding, a NaN and an outlier in real entries."""
    out = {}
    for make in (synth.deepseek_v4, synth.gpt_oss):
        d = str(tmp_path_factory.mktemp(make.__name__))
        make(d)
        synth.garble_padding(d, prefix="")
        out[make.__name__] = d
    poke(out["deepseek_v4"], "layers.0.attn.wq_b.scale", 1, b"\xff")
    poke(out["gpt_oss"], "model.layers.0.mlp.experts.down_proj_scales", 3, b"\xff\x01")
    return out


@pytest.mark.parametrize("region", ["all", "logical", "padding"])
@pytest.mark.parametrize("rows", [None, RowRange(1, 3), RowRange(-2, None), RowRange(50, 60)])
@pytest.mark.parametrize("piece_bytes", [1, 5, 64])
def test_streamed_json_and_raw_are_the_one_piece_dump(dirty, region, rows, piece_bytes):
    for path in dirty.values():
        options = DumpOptions(tensors=("*scale*",), region=region, rows=rows)
        try:
            whole = dump(path, options)
        except Exception as e:  # a row range no tensor has: both ways refuse it alike
            with pytest.raises(type(e), match="selects no row"):
                _streamed_json(path, options, piece_bytes)
            continue
        assert _streamed_json(path, options, piece_bytes) == dump_json.render(whole, path, "0")
        raw = b"".join(p.selected_bytes() for p in dump_pieces(path, options, piece_bytes))
        assert raw == b"".join(d.selected_bytes() for d in whole)


def test_marks_of_a_large_tensor_are_the_whole_tensor_masks(tmp_path):
    """2 MiB of E8M0 (row slabs of RULE_SLAB): NaN, zero, outlier and implausible entries; every
    row range dumped shows exactly the masks the direct evaluation (the oracle) gives."""
    rng = np.random.default_rng(3)
    shape = (2048, 1024)
    assert shape[0] * shape[1] > RULE_SLAB
    vals = rng.integers(120, 134, shape).astype(np.uint8)
    vals[rng.random(shape) < 0.001] = 0xFF
    vals[rng.random(shape) < 0.001] = 0x00
    vals[rng.random(shape) < 0.0005] = 127 + 45  # 2^45: an outlier, inside the plausible window
    vals[rng.random(shape) < 0.0005] = 0xF0  # 2^113: implausible
    d = str(tmp_path / "ck")
    (tmp_path / "ck").mkdir()
    write_safetensors(d + "/model.safetensors", {"big.scale": Tensor("F8_E8M0", shape, vals.reshape(-1))})
    with open_checkpoint(d) as ck:
        t = ck.tensors["big.scale"]
        layouts = {lay.scale.name: lay for lay in LayoutBuilder(ck.tensors, ck.config).build().layouts}
        want = np.full(shape, NO_MARK, dtype=np.int8)
        rules: dict[str, int] = {}

        def sink(f, m):
            np.maximum(want, np.where(m, f.severity.rank, NO_MARK).astype(np.int8), out=want)
            rules[f.rule] = int(m.sum())

        findings, _ = direct_check_tensor(layouts.get("big.scale"), t, ck.read(t), ContentOptions(), None, sink)
    assert {"scale-nan", "scale-zero", "scale-outlier", "scale-implausible"} <= set(rules)
    for rows in (RowRange(0, 1), RowRange(700, 1500), RowRange(-1, None), None):
        [got] = dump(d, DumpOptions(tensors=("big.scale",), rows=rows))
        r0, r1 = got.rows
        assert np.array_equal(got.severity, want[r0:r1]), rows
        assert list(got.findings) == findings
        if rows is None:
            assert {r: n for r, _, n in got.rules} == {r: n for r, n in rules.items() if n}
