"""The journal format: version 3 (old bytes only, a run table only where it is smaller than the
padding; small ID.json), and version 1 and 2 journals from earlier releases, still completed and
undone."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

import fp8doctor
from fp8doctor.repair import journal as jr
from fp8doctor.testing import synth
from tests.helpers.fix_helpers import checkpoint_files, copy_tree, dirty_v4


@pytest.fixture(scope="module")
def states(tmp_path_factory):
    """A dirty checkpoint, and its bytes before and after a complete fix."""
    base = tmp_path_factory.mktemp("journal")
    src = dirty_v4(str(base / "src"))
    ref = copy_tree(src, str(base / "ref"))
    res = fp8doctor.fix(ref)
    return src, checkpoint_files(src), checkpoint_files(ref), res


def _only_journal(path: str) -> jr.Journal:
    [j] = jr.load_all(os.path.join(path, jr.JOURNAL_DIRNAME), path)
    return j


def test_version_3_layout(states, tmp_path):
    src, original, repaired, _ = states
    path = copy_tree(src, str(tmp_path / "ck"))
    done = fp8doctor.fix(path)
    assert checkpoint_files(path) == repaired and done.bytes_changed <= done.bytes_written
    with open(done.journal) as f:
        doc = json.load(f)
    assert doc["version"] == 3 and doc["state"] == jr.DONE
    j = _only_journal(path)
    tensors = [t for s in j.shards for t in s.v3]
    assert {(t.name, t.encoding) for t in tensors} == {(c.tensor, c.encoding) for c in done.changes}
    # ID.bin: the old bytes only (the new ones are the fill), plus a 16-byte row a run for "runs" tensors
    runs = sum(t.count for t in tensors if t.mode == "runs")
    assert os.path.getsize(j.bin_path) == (len(jr.BIN_MAGIC) + sum(t.nbytes for t in tensors)
                                           + jr.PATCH_TABLE.itemsize * runs)
    # never more than the cheaper of: bytes changed + a row a run, every padded byte of the tensor
    by_name = {c.tensor: c for c in done.changes}
    for t in tensors:
        c = by_name[t.name]
        assert t.nbytes + (jr.PATCH_TABLE.itemsize * t.count if t.mode == "runs" else 0) <= \
            c.nbytes + jr.PATCH_TABLE.itemsize * c.runs
    patches = [p for s in j.shards for p in j.patches(s)]
    with open(j.bin_path, "rb") as f:
        assert f.read(len(jr.BIN_MAGIC)) == jr.BIN_MAGIC
    for s in j.shards:
        old = b"".join(j.old(p) for p in j.patches(s))
        new = b"".join(j.new(p) for p in j.patches(s))
        assert hashlib.sha256(old).hexdigest() == s.old_sha256 and hashlib.sha256(new).hexdigest() == s.new_sha256
    assert {p.tensor for p in patches} == set(by_name)
    fp8doctor.fix(path, undo=True)
    assert checkpoint_files(path) == original


def test_runs_mode_for_a_few_wrong_bytes_in_a_large_padding(tmp_path):
    """One wrong byte in a large padded region: the journal keeps that byte and a table row, not
    the whole padding."""
    from tests.conftest import poke

    path = str(tmp_path / "v4")
    synth.deepseek_v4(path)
    poke(path, "layers.0.ffn.experts.0.w1.scale", 80 * 10 + 7, b"\x90")  # one byte of 160 padded ones
    done = fp8doctor.fix(path)
    [t] = [t for s in _only_journal(path).shards for t in s.v3]
    assert t.mode == "runs" and t.nbytes == 1 and t.count == 1 and done.bytes_changed == 1
    assert os.path.getsize(_only_journal(path).bin_path) == len(jr.BIN_MAGIC) + 1 + jr.PATCH_TABLE.itemsize
    fp8doctor.fix(path, undo=True)
    assert fp8doctor.scan(path).by_rule() == {"scale-padding-nonzero": 1}


def _to_version_2(j: jr.Journal, state: str) -> None:
    """Rewrite a journal in the version 2 shape (ID.bin: each patch's old then new bytes, then a
    table row a patch), as the previous release wrote it."""
    chunks, pos, shards = [], 0, []
    for s in j.shards:
        data_pos, rows, tensors = pos, [], []
        for p in j.patches(s):
            key = [p.tensor, p.encoding]
            if key not in tensors:
                tensors.append(key)
            rows.append((p.offset, p.length, tensors.index(key)))
            chunks += [j.old(p), j.new(p)]
            pos += 2 * p.length
        table = np.array(rows, dtype=jr.PATCH_TABLE).tobytes()
        chunks.append(table)
        shards.append({"file": s.file, "size": s.size, "mtime_ns_before": s.mtime_ns_before,
                       "mtime_ns_after": s.mtime_ns_after, "old_sha256": s.old_sha256, "new_sha256": s.new_sha256,
                       "patches": len(rows), "bytes": sum(r[1] for r in rows), "data": data_pos, "table": pos,
                       "tensors": tensors})
        pos += len(table)
    _write_old(j, state, 2, b"".join(chunks), shards)


def _write_old(j: jr.Journal, state: str, version: int, blob: bytes, shards: list) -> None:
    doc = {"format": "fp8doctor-journal", "version": version, "id": j.id, "state": state, "root": j.root,
           "target": j.target, "fill": j.fill, "created": j.created, "tool_version": "0.1.0",
           "bin": os.path.basename(j.bin_path), "bin_size": len(blob), "bin_sha256": hashlib.sha256(blob).hexdigest(),
           "history": [["pending", j.created]], "shards": shards}
    with open(j.bin_path, "wb") as f:
        f.write(blob)
    with open(j.json_path, "w") as f:
        json.dump(doc, f)


def _to_version_1(j: jr.Journal, state: str) -> None:
    """Rewrite a journal in the version 1 shape (ID.bin: only old/new bytes; patches listed in ID.json),
    as the release before that wrote it."""
    chunks, pos, shards = [], 0, []
    for s in j.shards:
        rows = []
        for p in j.patches(s):
            rows.append([p.offset, p.length, pos, p.tensor, p.encoding])
            chunks += [j.old(p), j.new(p)]
            pos += 2 * p.length
        shards.append({"file": s.file, "size": s.size, "mtime_ns_before": s.mtime_ns_before,
                       "mtime_ns_after": s.mtime_ns_after, "old_sha256": s.old_sha256,
                       "new_sha256": s.new_sha256, "patches": rows})
    _write_old(j, state, 1, b"".join(chunks), shards)


CONVERT = {1: _to_version_1, 2: _to_version_2}


@pytest.mark.parametrize("version", [1, 2])
def test_old_done_journal_is_undone(states, tmp_path, version):
    src, original, _, _ = states
    path = copy_tree(src, str(tmp_path / "ck"))
    fp8doctor.fix(path)
    CONVERT[version](_only_journal(path), jr.DONE)
    j = _only_journal(path)
    assert j.version == version and j.state == jr.DONE
    res = fp8doctor.fix(path, undo=True)
    assert checkpoint_files(path) == original and res.bytes_changed == j.nbytes
    with open(j.json_path) as f:
        doc = json.load(f)
    assert doc["version"] == version and doc["state"] == jr.UNDONE
    assert isinstance(doc["shards"][0]["patches"], list if version == 1 else int)


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("roll_back", [False, True])
def test_old_pending_journal_is_recovered(states, tmp_path, roll_back, version):
    """A version 1 or 2 journal left `pending` (the old fix killed before writing a shard) is
    completed, or rolled back by --undo."""
    src, original, repaired, _ = states
    path = copy_tree(src, str(tmp_path / "ck"))
    fp8doctor.fix(path)
    CONVERT[version](_only_journal(path), jr.PENDING)
    # the old fix was killed halfway: the first shard is patched, the rest still original
    first = sorted(original)[0]
    for name, data in original.items():
        if name != first:
            with open(os.path.join(path, name), "wb") as f:
                f.write(data)
    [finding] = [f for f in fp8doctor.scan(path).findings if f.rule == "fix-interrupted"]
    assert "pending" in finding.message
    res = fp8doctor.fix(path, undo=roll_back)
    assert res.recovered and checkpoint_files(path) == (original if roll_back else repaired)
    j = _only_journal(path)
    assert j.version == version and j.state == (jr.ROLLED_BACK if roll_back else jr.DONE)
    if not roll_back:
        fp8doctor.fix(path, undo=True)
        assert checkpoint_files(path) == original


@pytest.mark.parametrize("version", [2, 3])
def test_damaged_table_is_refused(states, tmp_path, version):
    src = states[0]
    path = copy_tree(src, str(tmp_path / "ck"))
    fp8doctor.fix(path)
    j = _only_journal(path)
    if version == 2:
        _to_version_2(j, jr.DONE)
    with open(j.json_path) as f:
        doc = json.load(f)
    if version == 2:
        doc["shards"][0]["table"] = doc["bin_size"]  # points past the end of ID.bin
    else:
        doc["shards"][0]["tensors"][0][8] = doc["bin_size"]  # the old bytes start past the end of ID.bin
    with open(j.json_path, "w") as f:
        json.dump(doc, f)
    before = checkpoint_files(path)
    with pytest.raises(fp8doctor.FixError, match="patch table"):
        fp8doctor.fix(path, undo=True)
    assert checkpoint_files(path) == before
