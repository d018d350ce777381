"""The journal format: version 2 (patch table in ID.bin, small ID.json written once plus small state
updates), and version 1 journals from earlier releases, still completed and undone."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

import fp8doctor
from fp8doctor.repair import journal as jr
from tests.fix_helpers import checkpoint_files, copy_tree, dirty_v4


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


def test_version_2_layout(states, tmp_path):
    src, original, repaired, _ = states
    path = copy_tree(src, str(tmp_path / "ck"))
    done = fp8doctor.fix(path)
    assert checkpoint_files(path) == repaired and done.bytes_written == done.bytes_changed
    with open(done.journal) as f:
        doc = json.load(f)
    assert doc["version"] == 2 and doc["state"] == jr.DONE
    j = _only_journal(path)
    patches = [p for s in j.shards for p in j.patches(s)]
    assert sum(s.count for s in j.shards) == len(patches) == sum(c.runs for c in done.changes)
    # ID.bin: its magic, old and new bytes of every patch plus a 16-byte table row each; ID.json: no per-patch data
    assert os.path.getsize(j.bin_path) == (len(jr.BIN_MAGIC) + 2 * done.bytes_changed
                                           + jr.PATCH_TABLE.itemsize * len(patches))
    with open(j.bin_path, "rb") as f:
        assert f.read(len(jr.BIN_MAGIC)) == jr.BIN_MAGIC
    assert all(isinstance(s["patches"], int) for s in doc["shards"])
    for s in j.shards:
        old = b"".join(j.old(p) for p in j.patches(s))
        new = b"".join(j.new(p) for p in j.patches(s))
        assert hashlib.sha256(old).hexdigest() == s.old_sha256 and hashlib.sha256(new).hexdigest() == s.new_sha256
    assert {(p.tensor, p.encoding) for p in patches} == {(c.tensor, c.encoding) for c in done.changes}
    fp8doctor.fix(path, undo=True)
    assert checkpoint_files(path) == original


def _to_version_1(j: jr.Journal, state: str) -> None:
    """Rewrite a journal in the version 1 shape (ID.bin: only old/new bytes; patches listed in ID.json),
    as the previous release wrote it."""
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
    blob = b"".join(chunks)
    doc = {"format": "fp8doctor-journal", "version": 1, "id": j.id, "state": state, "root": j.root,
           "target": j.target, "fill": j.fill, "created": j.created, "tool_version": "0.1.0",
           "bin": os.path.basename(j.bin_path), "bin_size": len(blob), "bin_sha256": hashlib.sha256(blob).hexdigest(),
           "history": [["pending", j.created]], "shards": shards}
    with open(j.bin_path, "wb") as f:
        f.write(blob)
    with open(j.json_path, "w") as f:
        json.dump(doc, f)


def test_version_1_done_journal_is_undone(states, tmp_path):
    src, original, _, _ = states
    path = copy_tree(src, str(tmp_path / "ck"))
    fp8doctor.fix(path)
    _to_version_1(_only_journal(path), jr.DONE)
    j = _only_journal(path)
    assert j.version == 1 and j.state == jr.DONE
    res = fp8doctor.fix(path, undo=True)
    assert checkpoint_files(path) == original and res.bytes_written == j.nbytes
    with open(j.json_path) as f:
        doc = json.load(f)
    assert doc["version"] == 1 and doc["state"] == jr.UNDONE and isinstance(doc["shards"][0]["patches"], list)


@pytest.mark.parametrize("roll_back", [False, True])
def test_version_1_pending_journal_is_recovered(states, tmp_path, roll_back):
    """A version 1 journal left `pending` (the old fix killed before writing a shard) is completed,
    or rolled back by --undo."""
    src, original, repaired, _ = states
    path = copy_tree(src, str(tmp_path / "ck"))
    fp8doctor.fix(path)
    _to_version_1(_only_journal(path), jr.PENDING)
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
    assert j.version == 1 and j.state == (jr.ROLLED_BACK if roll_back else jr.DONE)
    if not roll_back:
        fp8doctor.fix(path, undo=True)
        assert checkpoint_files(path) == original


def test_damaged_table_is_refused(states, tmp_path):
    src = states[0]
    path = copy_tree(src, str(tmp_path / "ck"))
    fp8doctor.fix(path)
    j = _only_journal(path)
    with open(j.json_path) as f:
        doc = json.load(f)
    doc["shards"][0]["table"] = doc["bin_size"]  # points past the end of ID.bin
    with open(j.json_path, "w") as f:
        json.dump(doc, f)
    before = checkpoint_files(path)
    with pytest.raises(fp8doctor.FixError, match="patch table"):
        fp8doctor.fix(path, undo=True)
    assert checkpoint_files(path) == before
