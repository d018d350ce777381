"""The vectorised plan and its spans: equal to a direct per-entry reference on random layouts, one
write per page-close group, only padded bytes take new values; progress phases; the capped list."""

from __future__ import annotations

import math
import os
import random

import numpy as np
import pytest
from typer.testing import CliRunner

import fp8doctor
from fp8doctor.checkpoint.header import TensorInfo
from fp8doctor.cli.app import app
from fp8doctor.layouts.model import ScaleLayout, fill_bytes, padding_arrays
from fp8doctor.repair import spans as sv
from fp8doctor.repair.plan import RUN_ROW, tensor_patch
from fp8doctor.testing import synth
from tests.conftest import poke

runner = CliRunner()


def _layout(shape: tuple[int, ...], box: tuple[int, ...], dtype: str, encoding: str) -> ScaleLayout:
    itemsize = {"e8m0": 1, "f32": 4, "bf16": 2}[encoding]
    n = math.prod(shape) * itemsize
    t = TensorInfo("x.scale", dtype, shape, 0, n, "f.safetensors", 1000)
    return ScaleLayout(t, None, "block", encoding, (1, 1), shape, box, box, "config")


def _reference(shape, box, data: bytes, itemsize: int, want: bytes) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Per entry, in Python: which entries are padded and wrong, and their runs."""
    numel = math.prod(shape)
    wrong = np.zeros(numel, dtype=bool)
    for flat in range(numel):
        idx = np.unravel_index(flat, shape)
        padded = any(i >= b for i, b in zip(idx, box))
        if padded and data[flat * itemsize:(flat + 1) * itemsize] != want:
            wrong[flat] = True
    runs, start = [], None
    for i, w in enumerate([*wrong.tolist(), False]):
        if w and start is None:
            start = i
        elif not w and start is not None:
            runs.append((start, i))
            start = None
    return wrong, runs


def test_padding_arrays_equal_padding_ranges():
    rng = random.Random(0)
    for _ in range(2000):
        shape = tuple(rng.randint(0, 7) for _ in range(rng.randint(1, 4)))
        box = tuple(rng.randint(0, n) for n in shape)
        a, e = padding_arrays(shape, box)
        lay = _layout(shape, box, "F8_E8M0", "e8m0")
        assert list(zip(a.tolist(), e.tolist())) == lay.padding_ranges(), (shape, box)


@pytest.mark.parametrize("seed", range(40))
def test_tensor_patch_equals_the_per_entry_reference(seed):
    rng = np.random.default_rng(seed)
    r = random.Random(seed)
    encoding, dtype = r.choice([("e8m0", "F8_E8M0"), ("f32", "F32"), ("bf16", "BF16")])
    isz = {"e8m0": 1, "f32": 4, "bf16": 2}[encoding]
    shape = tuple(r.randint(1, 9) for _ in range(r.randint(1, 3)))
    box = tuple(r.randint(0, n) for n in shape)
    lay = _layout(shape, box, dtype, encoding)
    fill = r.choice(["zero", "one"])
    want = fill_bytes(fill, encoding)
    numel = math.prod(shape)
    # mostly the fill, with wrong entries of a random density (a few, or nearly all)
    data = bytearray(want * numel)
    density = r.choice([0.02, 0.3, 0.95])
    for i in np.flatnonzero(rng.random(numel) < density).tolist():
        data[i * isz:(i + 1) * isz] = rng.integers(0, 256, isz, dtype=np.uint8).tobytes()
    data = bytes(data)
    wrong, runs = _reference(shape, box, data, isz, want)
    p = tensor_patch(lay, data, fill)
    if not wrong.any():
        assert p is None
        return
    assert p is not None
    assert p.entries == int(wrong.sum()) and p.runs == len(runs) and p.nbytes == p.entries * isz
    assert p.first == lay.scale.offset + runs[0][0] * isz
    assert p.before == data[runs[0][0] * isz:runs[0][1] * isz][:16]
    padded = lay.padded_count * isz
    # the journal keeps whichever is smaller: every padded byte, or the wrong bytes plus a row a run
    journal = p.covered + (RUN_ROW * p.runs if p.mode == "runs" else 0)
    assert journal == min(padded, p.nbytes + RUN_ROW * p.runs)
    assert p.mode == ("padding" if padded <= p.nbytes + RUN_ROW * p.runs else "runs")
    # applying the spans to the tensor's bytes gives the reference result, nothing else moves
    out = np.frombuffer(data, dtype=np.uint8).copy()
    for span in p.spans():
        rel = span.offset - lay.scale.offset
        assert np.array_equal(out[rel + span.pos], span.old)
        out[rel + span.pos] = span.new
    expect = np.frombuffer(data, dtype=np.uint8).copy().reshape(numel, isz)
    expect[wrong] = np.frombuffer(want, dtype=np.uint8)
    assert np.array_equal(out, expect.reshape(-1))


def test_spans_group_ranges_closer_than_a_page():
    offsets = np.array([0, 10, 100, 100 + sv.PAGE + 50, 100 + 3 * sv.PAGE], dtype=np.int64)
    lengths = np.array([2, 5, 1, 3, 4], dtype=np.int64)
    n = int(lengths.sum())
    old = np.arange(n, dtype=np.uint8)
    new = old + 100
    spans = list(sv.group(offsets, lengths, old, new, "t"))
    # 0..101 in one span; the next range is a page away from it; so is the last
    assert [(s.offset, s.length) for s in spans] == [(0, 101), (100 + sv.PAGE + 50, 3), (100 + 3 * sv.PAGE, 4)]
    assert spans[0].pos.tolist() == [0, 1, 10, 11, 12, 13, 14, 100]
    assert np.concatenate([s.old for s in spans]).tolist() == old.tolist()
    assert sum(s.nbytes for s in spans) == n


def test_padded_columns_one_write_per_tensor(tmp_path):
    """Garbage in the padded columns of every real row (a padded export's layout: one run a row) is
    written with one pwrite for the tensor, and undone with one."""
    path = str(tmp_path / "v4")
    synth.deepseek_v4(path)
    lay = next(d for d in fp8doctor.scan(path).layouts
               if d["logical_shape"][-1] < d["shape"][-1] and d["logical_shape"][0] >= 2)
    shape, logical = lay["shape"], lay["logical_shape"]
    pad = shape[1] - logical[1]
    for row in range(logical[0]):
        poke(path, lay["scale"], row * shape[1] + logical[1], b"\x91" * pad)
    res = fp8doctor.fix(path)
    assert res.writes == 1 and res.bytes_changed == logical[0] * pad
    assert [c.runs for c in res.changes] == [logical[0]]
    assert fp8doctor.scan(path).findings == ()
    undo = fp8doctor.fix(path, undo=True)
    assert undo.writes == 1 and undo.bytes_changed == res.bytes_changed


class Recorder:
    def __init__(self) -> None:
        self.label = "checking"
        self.phases: list[tuple[str, int, int]] = []
        self.advanced: dict[str, int] = {}

    def start(self, total_bytes: int, files: int) -> None:
        self.phases.append((self.label, total_bytes, files))

    def advance(self, nbytes: int) -> None:
        self.advanced[self.label] = self.advanced.get(self.label, 0) + nbytes

    def file_done(self) -> None:
        pass

    def finish(self) -> None:
        pass


def test_progress_through_planning_writing_and_restoring(tmp_path):
    from tests.helpers.fix_helpers import dirty_v4

    path = dirty_v4(str(tmp_path / "v4"))
    rec = Recorder()
    fp8doctor.fix(path, progress=rec)
    labels = [p[0] for p in rec.phases]
    assert labels[0] == "checking" and labels[-2:] == ["planning", "writing"]
    for label, total, _ in rec.phases[1:]:
        assert rec.advanced[label] == total > 0
    rec = Recorder()
    fp8doctor.fix(path, undo=True, progress=rec)
    assert [p[0] for p in rec.phases] == ["restoring"] and rec.advanced["restoring"] == rec.phases[0][1]


def test_console_list_of_changes_is_capped_with_totals(tmp_path):
    from tests.helpers.fix_helpers import dirty_v4

    path = dirty_v4(str(tmp_path / "v4"))
    res = runner.invoke(app, ["fix", path, "--dry-run", "--max-findings", "1", "--no-color"])
    out = " ".join(res.output.split())
    assert "(1 of 3 tensors, largest first)" in out
    assert "... 2 more tensors: 5 entries, 5 bytes" in out
    assert "layers.0.ffn.experts.0.w1.scale" in out  # the largest (160 bytes) is the one shown
    full = runner.invoke(app, ["fix", path, "--dry-run", "--no-color"])
    assert "more tensor" not in full.output and os.path.isdir(path)
