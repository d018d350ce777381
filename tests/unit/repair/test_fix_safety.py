"""Every way `fix` can be stopped (lock, read-only, changed shard, full disk, failed write, damaged
journal) gives a clear error, exit code 2, and leaves every file as it was."""

from __future__ import annotations

import errno
import json
import os
import stat

import pytest
from typer.testing import CliRunner

import fp8doctor
from fp8doctor.cli.app import app
from fp8doctor.repair import journal as jr
from fp8doctor.repair.errors import DiskFull, FixError, LockHeld, ReadOnly, ShardChanged
from fp8doctor.repair.lock import Lock
from fp8doctor.repair.plan import tensor_patch
from fp8doctor.scanner import ScanOptions, analyze
from tests.helpers.fix_helpers import checkpoint_files, dirty_v4, padding_masks

runner = CliRunner()
SHARD1 = "model-00001-of-00002.safetensors"


@pytest.fixture
def dirty(tmp_path):
    return dirty_v4(str(tmp_path / "v4"))


def _journal_files(path: str) -> list[str]:
    d = os.path.join(path, jr.JOURNAL_DIRNAME)
    return sorted(n for n in os.listdir(d) if n != "lock") if os.path.isdir(d) else []


def test_plan_never_leaves_trusted_padding(tmp_path):
    """Whatever garbage sits anywhere in a scale tensor, planned bytes are padded bytes."""
    import numpy as np

    from fp8doctor.checkpoint.loader import open_checkpoint
    from fp8doctor.testing import synth

    path = str(tmp_path / "v4")
    synth.deepseek_v4(path)
    masks = padding_masks(path)
    rng = np.random.default_rng(1)
    with open_checkpoint(path) as ck:
        an = analyze(ck, ScanOptions())
        for lay in an.layouts.values():
            garbage = rng.integers(0, 256, size=lay.scale.nbytes, dtype=np.uint8).tobytes()
            p = tensor_patch(lay, garbage, "one")
            if not lay.has_padding:
                assert p is None
            if p is None:
                continue
            # every byte that takes a new value is a padded byte, in whichever journal mode
            for span in p.spans():
                assert masks[p.file][span.offset + span.pos].all(), lay.name
            covered = np.concatenate([span.offset + span.pos for span in p.spans()])
            assert covered.size == p.covered and np.unique(covered).size == covered.size


def test_lock_held_by_another_fix(dirty):
    before = checkpoint_files(dirty)
    jdir = os.path.join(dirty, jr.JOURNAL_DIRNAME)
    os.mkdir(jdir)
    with Lock(dirty, jdir):
        with pytest.raises(LockHeld, match="another fix is running"):
            fp8doctor.fix(dirty)
        res = runner.invoke(app, ["fix", dirty])
        assert res.exit_code == 2 and "another fix is running" in res.output and f"pid {os.getpid()}" in res.output
    assert checkpoint_files(dirty) == before
    assert fp8doctor.fix(dirty).bytes_changed == 165  # released: the next fix runs


def test_stale_lock_of_a_dead_process_is_taken_over(dirty):
    jdir = os.path.join(dirty, jr.JOURNAL_DIRNAME)
    os.mkdir(jdir)
    with open(os.path.join(jdir, "lock"), "w") as f:
        f.write("pid 999999 on elsewhere since 2020-01-01 00:00:00\n")
    result = fp8doctor.fix(dirty)
    assert result.bytes_changed == 165 and any("stale lock" in n and "999999" in n for n in result.notes)
    assert not os.path.exists(os.path.join(jdir, "lock"))


def test_read_only_shard(dirty):
    before = checkpoint_files(dirty)
    os.chmod(os.path.join(dirty, SHARD1), 0o444)
    res = runner.invoke(app, ["fix", dirty])
    assert res.exit_code == 2 and "read-only" in res.output and SHARD1 in res.output
    with pytest.raises(ReadOnly):
        fp8doctor.fix(dirty)
    assert checkpoint_files(dirty) == before and _journal_files(dirty) == []
    # --output still works from a read-only source
    os.chmod(os.path.join(dirty, SHARD1), 0o644)


def test_read_only_directory_needs_journal_dir(dirty, tmp_path):
    before = checkpoint_files(dirty)
    os.chmod(dirty, 0o555)
    try:
        res = runner.invoke(app, ["fix", dirty])
        assert res.exit_code == 2 and "--journal-dir" in res.output
        assert checkpoint_files(dirty) == before
        jdir = str(tmp_path / "journals")
        res = runner.invoke(app, ["fix", dirty, "--journal-dir", jdir])
        assert res.exit_code == 0, res.output
        assert len([n for n in os.listdir(jdir) if n.endswith(".json")]) == 1
        assert runner.invoke(app, ["fix", dirty, "--undo", "--journal-dir", jdir]).exit_code == 0
        assert checkpoint_files(dirty) == before
    finally:
        os.chmod(dirty, 0o755)


def _after_plan(monkeypatch, action):
    """Run `action` right after the plan is built: the shard changes between scan and write."""
    import fp8doctor.repair.fix as fixmod

    real = fixmod.build_plan

    def wrapped(*a, **kw):
        plan = real(*a, **kw)
        action()
        return plan

    monkeypatch.setattr(fixmod, "build_plan", wrapped)


@pytest.mark.parametrize("change", ["mtime", "size", "bytes-same-mtime"])
def test_shard_changed_since_scan(dirty, monkeypatch, change):
    shard = os.path.join(dirty, SHARD1)
    st = os.stat(shard)

    def act():
        if change == "mtime":
            os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
        elif change == "size":
            with open(shard, "ab") as f:
                f.write(b"\0")
        else:  # rewrite a planned padded byte, then put the mtime back
            from tests.conftest import poke
            poke(dirty, "layers.0.attn.wq_b.scale", 9, b"\x77")
            os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))

    _after_plan(monkeypatch, act)
    with pytest.raises(ShardChanged, match="changed since the scan") as e:
        fp8doctor.fix(dirty)
    assert "nothing was written" in str(e.value)
    after = checkpoint_files(dirty)
    monkeypatch.undo()
    # the other shard was not touched either, and no journal was committed
    assert _journal_files(dirty) == []
    with open(os.path.join(dirty, "model-00002-of-00002.safetensors"), "rb") as f:
        assert f.read() == after["model-00002-of-00002.safetensors"]
    assert fp8doctor.scan(dirty).findings  # still dirty: nothing was fixed


def test_shard_changed_via_cli(dirty, monkeypatch):
    shard = os.path.join(dirty, SHARD1)
    st = os.stat(shard)
    _after_plan(monkeypatch, lambda: os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9)))
    before = checkpoint_files(dirty)
    res = runner.invoke(app, ["fix", dirty])
    assert res.exit_code == 2 and "changed since the scan" in res.output
    assert checkpoint_files(dirty) == before


def _enospc_on_write(monkeypatch):
    real = os.write

    def failing(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", failing)
    return real


def test_disk_full_while_journaling(dirty, monkeypatch):
    before = checkpoint_files(dirty)
    _enospc_on_write(monkeypatch)
    with pytest.raises(DiskFull, match="no space left"):
        fp8doctor.fix(dirty)
    res = runner.invoke(app, ["fix", dirty])
    monkeypatch.undo()
    assert res.exit_code == 2 and "no space left" in res.output
    assert checkpoint_files(dirty) == before and _journal_files(dirty) == []


def test_disk_full_while_copying(dirty, tmp_path, monkeypatch):
    import fp8doctor.repair.output as outmod

    def full(src_fd, dst_fd, size):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outmod, "_copy", full)
    monkeypatch.setattr(outmod, "_reflink", lambda s, d: False)
    before = checkpoint_files(dirty)
    out = str(tmp_path / "out")
    with pytest.raises(DiskFull):
        fp8doctor.fix(dirty, output=out)
    assert not os.path.exists(out) and [n for n in os.listdir(tmp_path) if "fp8doctor-tmp" in n] == []
    assert checkpoint_files(dirty) == before


def test_write_error_mid_patch_rolls_back(dirty, monkeypatch):
    before = checkpoint_files(dirty)
    real = os.pwrite
    calls = {"n": 0}

    def flaky(fd, data, offset):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.EIO, "Input/output error")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", flaky)
    with pytest.raises(FixError, match="original bytes were restored"):
        fp8doctor.fix(dirty)
    monkeypatch.undo()
    assert checkpoint_files(dirty) == before
    [j] = jr.load_all(os.path.join(dirty, jr.JOURNAL_DIRNAME), dirty)
    assert j.state == jr.ROLLED_BACK
    assert fp8doctor.fix(dirty).bytes_changed == 165  # a later fix works normally


def test_hard_linked_shard_is_refused(dirty, tmp_path):
    os.link(os.path.join(dirty, SHARD1), str(tmp_path / "elsewhere"))
    before = checkpoint_files(dirty)
    res = runner.invoke(app, ["fix", dirty])
    assert res.exit_code == 2 and "hard links" in res.output
    assert checkpoint_files(dirty) == before


def test_damaged_pending_journal_is_not_applied(dirty, monkeypatch):
    # a journal committed but never applied (fix killed right after): then its bytes are damaged
    import fp8doctor.repair.apply as apmod

    def boom(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(apmod, "_write", boom)
    with pytest.raises(KeyboardInterrupt):
        fp8doctor.fix(dirty)
    monkeypatch.undo()
    before = checkpoint_files(dirty)
    jdir = os.path.join(dirty, jr.JOURNAL_DIRNAME)
    [j] = jr.load_all(jdir, dirty)
    assert j.state == jr.PENDING
    with open(j.bin_path, "r+b") as f:
        f.write(b"\x01")
    res = runner.invoke(app, ["fix", dirty])
    assert res.exit_code == 2 and "damaged" in res.output
    assert checkpoint_files(dirty) == before
    # an unreadable journal JSON is a clear error too
    with open(j.json_path, "w") as f:
        json.dump({"format": "something else"}, f)
    res = runner.invoke(app, ["fix", dirty])
    assert res.exit_code == 2 and "cannot be read" in res.output


def test_dry_run_and_output_do_not_need_write_access(dirty, tmp_path):
    for name in os.listdir(dirty):
        os.chmod(os.path.join(dirty, name), 0o444)
    os.chmod(dirty, 0o555)
    try:
        before = checkpoint_files(dirty)
        assert runner.invoke(app, ["fix", dirty, "--dry-run"]).exit_code == 0
        out = str(tmp_path / "out")
        assert runner.invoke(app, ["fix", dirty, "--output", out]).exit_code == 0
        assert checkpoint_files(dirty) == before
        assert fp8doctor.scan(out).findings == ()
        assert stat.S_IMODE(os.stat(os.path.join(out, SHARD1)).st_mode) == 0o444  # mode carried over
    finally:
        os.chmod(dirty, 0o755)
