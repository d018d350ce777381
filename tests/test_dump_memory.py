"""Issue 13, section 3: what `dump` holds follows the selection. The padding mask and the marks are
built for the selected rows only (a raw dump of one row of a 2^20-entry scale holds kilobytes, not
the megabytes of whole-tensor arrays)."""

from __future__ import annotations

import tracemalloc

import numpy as np

from fp8doctor.checkpoint.loader import open_checkpoint
from fp8doctor.dumper import DumpOptions, RowRange, _geometry, dump
from fp8doctor.layouts.pairing import LayoutBuilder
from fp8doctor.testing import synth
from fp8doctor.testing.synth import Tensor, write_safetensors


def test_padding_rows_match_the_layouts_mask(tmp_path):
    from fp8doctor.dumper import _padding_rows

    rng = np.random.default_rng(0)
    checked = 0
    for make in (synth.deepseek_v4, synth.deepseek_v3, synth.gpt_oss):
        d = str(tmp_path / make.__name__)
        make(d)
        with open_checkpoint(d) as ck:
            for lay in LayoutBuilder(ck.tensors, ck.config).build().layouts:
                shape = lay.scale.shape
                nrows, row_len = _geometry(shape)
                whole = lay.padding_mask().reshape(nrows, row_len)
                for _ in range(3):
                    r0 = int(rng.integers(0, nrows))
                    r1 = int(rng.integers(r0, nrows + 1))
                    got = _padding_rows(shape, tuple(lay.logical_shape), row_len, r0, r1)
                    assert np.array_equal(got, whole[r0:r1]), (lay.name, r0, r1)
                checked += 1
    assert checked > 20


def test_raw_dump_of_one_row_holds_the_row_not_the_tensor(tmp_path):
    n = 1 << 20
    d = str(tmp_path / "ck")
    (tmp_path / "ck").mkdir()
    write_safetensors(d + "/model.safetensors", {
        "mlp.experts_scales": Tensor("U8", (1, 1024, 1024), np.full(n, 127, np.uint8)),
        "mlp.experts_blocks": Tensor("U8", (1, 1024, 1024, 16), np.zeros(n * 16, np.uint8))})
    dump(d, DumpOptions(tensors=("mlp.experts_scales",), rows=RowRange(0, 1), marks=False))  # imports, warm
    tracemalloc.start()
    [got] = dump(d, DumpOptions(tensors=("mlp.experts_scales",), rows=RowRange(0, 1), marks=False))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert got.layout is not None and len(got.data) == 1024 and got.selected.shape == (1, 1024)
    assert peak < 512 << 10, peak  # whole-tensor masks alone would be 2 MiB
