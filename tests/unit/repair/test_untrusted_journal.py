"""A journal planted in the checkpoint (`CKPT/.fp8doctor-journal/`) is the attacker's: a pending one
with the right `root` is completed by the next `fix`. It may name only shards, patch only bytes inside
them, and whatever it says, the answer is a one-line error (exit 2), never an internal error; a scan
reads no more of it than a real journal could need."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

import fp8doctor
from fp8doctor.checkpoint.loader import open_checkpoint
from fp8doctor.cli.app import app
from fp8doctor.repair import journal as jr
from fp8doctor.repair.plan import TensorPatch, build_plan
from fp8doctor.scanner import ScanOptions, analyze
from tests.helpers.fix_helpers import checkpoint_files, dirty_v4

runner = CliRunner()


@pytest.fixture
def dirty(tmp_path):
    return dirty_v4(str(tmp_path / "v4"))


def _plan(root: str):
    with open_checkpoint(root) as ck:
        return build_plan(analyze(ck, ScanOptions()), ScanOptions())


def _plant(root: str, plan=None) -> jr.Journal:
    """A pending journal of `plan` (default: the checkpoint's real plan), as a crafted checkpoint ships it."""
    jdir = os.path.join(root, jr.JOURNAL_DIRNAME)
    os.makedirs(jdir, exist_ok=True)
    return jr.create(jdir, plan or _plan(root), root, "test")


def _edit(j: jr.Journal, change) -> None:
    with open(j.json_path) as f:
        doc = json.load(f)
    change(doc)
    with open(j.json_path, "w") as f:
        json.dump(doc, f)


def _one_line_error(res) -> None:
    assert res.exit_code == 2, res.output
    out = res.output.strip()
    assert "Traceback" not in out and "internal error" not in out, out
    assert out.startswith("error:") and len(out.splitlines()) <= 2, out


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "fp8doctor", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_negative_patch_count_is_one_line(dirty):
    j = _plant(dirty)
    before = checkpoint_files(dirty)
    def v2_negative(d):  # a version 2 journal (patch table in ID.bin) with a negative patch count
        d["version"] = 2
        d["shards"][0].update(patches=-1)
    _edit(j, v2_negative)
    proc = _cli("fix", dirty)
    assert proc.returncode == 2 and "internal error" not in proc.stderr, proc.stderr
    assert "journal" in proc.stderr
    assert checkpoint_files(dirty) == before


def test_negative_patch_offset_is_one_line(dirty):
    j = _plant(dirty)
    before = checkpoint_files(dirty)

    def v1_negative(d):
        d["version"] = 1
        for s in d["shards"]:
            s["patches"] = [[-5, 1, 16, "x", "e8m0"]]
    _edit(j, v1_negative)
    _one_line_error(runner.invoke(app, ["fix", dirty]))
    assert checkpoint_files(dirty) == before


def _byte_patch(file: str, old: bytes, new: bytes) -> TensorPatch:
    """One byte at offset 0 of `file` to be rewritten from `old` to `new` (a crafted journal's patch)."""
    return TensorPatch("x", file, "e8m0", 0, (1,), (0,), 1, new, "runs", np.array([0], dtype=np.int64),
                       np.array([1], dtype=np.int64), old, 1, 1, 0, old)


def _config_plan(root: str):
    """A consistent plan (old bytes as they are on disk) that overwrites the first byte of config.json."""
    plan = _plan(root)
    path = os.path.join(root, "config.json")
    with open(path, "rb") as f:
        first = f.read(1)
    st = os.stat(path)
    sp = replace(plan.shards[0], file="config.json", size=st.st_size, mtime_ns=st.st_mtime_ns,
                 patches=(_byte_patch("config.json", first, b"X"),), identity=None)
    return replace(plan, shards=(sp,))


def test_journal_may_name_only_shards(dirty):
    """A journal whose every byte is consistent but that names config.json (inside the checkpoint,
    not a shard) is refused: fix writes scale bytes of shards only."""
    _plant(dirty, _config_plan(dirty))
    before = checkpoint_files(dirty)
    res = runner.invoke(app, ["fix", dirty])
    _one_line_error(res)
    assert "config.json" in res.output
    assert checkpoint_files(dirty) == before


def test_journal_naming_a_journal_file_is_refused(dirty):
    plan = _plan(dirty)
    name = os.path.join(jr.JOURNAL_DIRNAME, "notes.safetensors")
    path = os.path.join(dirty, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"ab")
    st = os.stat(path)
    sp = replace(plan.shards[0], file=name, size=2, mtime_ns=st.st_mtime_ns,
                 patches=(_byte_patch(name, b"a", b"X"),), identity=None)
    _plant(dirty, replace(plan, shards=(sp,)))
    with pytest.raises(jr.JournalError):
        fp8doctor.fix(dirty)
    with open(path, "rb") as f:
        assert f.read() == b"ab"


def _limit_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # a regression is a MemoryError, not an OOM


def test_huge_journal_json_is_not_read_whole_by_scan(dirty):
    """A sparse 8 GiB `ID.json` in the journal directory: scan reports the journal as unusable
    instead of reading it into memory (run under a 3 GiB address-space cap)."""
    jdir = os.path.join(dirty, jr.JOURNAL_DIRNAME)
    os.mkdir(jdir)
    with open(os.path.join(jdir, "00000000000000000001-1.json"), "wb") as f:
        f.write(b'{"format":"fp8doctor-journal"')
        f.truncate(8 << 30)
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.run([sys.executable, "-m", "fp8doctor", "scan", dirty, "-f", "json"], capture_output=True,
                          text=True, env=env, timeout=120, preexec_fn=_limit_memory)
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    [f] = [f for f in doc["findings"] if f["rule"] == "fix-interrupted"]
    assert "larger than" in f["message"], f
