"""Issue 13, section 1: whatever a checkpoint (or the directory around it) holds, `fix` writes,
truncates, creates and deletes nothing outside it (or the --output / --journal-dir the user named).
Races are made deterministic with the in-process hooks of fp8doctor.repair.hooks."""

from __future__ import annotations

import json
import os
import shutil
import threading

import pytest
from typer.testing import CliRunner

import fp8doctor
from fp8doctor.cli.app import app
from fp8doctor.repair import hooks
from fp8doctor.repair import journal as jr
from fp8doctor.repair.errors import FixError, JournalError
from tests.fix_helpers import checkpoint_files, dirty_v4

runner = CliRunner()
SHARD1 = "model-00001-of-00002.safetensors"
SHARD2 = "model-00002-of-00002.safetensors"


@pytest.fixture
def dirty(tmp_path):
    return dirty_v4(str(tmp_path / "v4"))


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _one_line_error(res) -> None:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and "internal error" not in res.output
    assert res.output.strip().startswith("error:") and len(res.output.strip().splitlines()) <= 2


def test_symlinked_lock_is_refused_and_victim_untouched(dirty, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    jdir = os.path.join(dirty, jr.JOURNAL_DIRNAME)
    os.mkdir(jdir)
    os.symlink(os.path.relpath(victim, jdir), os.path.join(jdir, "lock"))
    before = checkpoint_files(dirty)
    res = runner.invoke(app, ["fix", dirty])
    _one_line_error(res)
    assert "symlink" in res.output
    assert victim.read_text() == "precious\n"
    assert os.path.islink(os.path.join(jdir, "lock"))
    assert checkpoint_files(dirty) == before


def test_hard_linked_lock_is_refused(dirty, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    jdir = os.path.join(dirty, jr.JOURNAL_DIRNAME)
    os.mkdir(jdir)
    os.link(victim, os.path.join(jdir, "lock"))
    res = runner.invoke(app, ["fix", dirty])
    _one_line_error(res)
    assert victim.read_text() == "precious\n"


def test_symlinked_journal_directory_is_refused(dirty, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, os.path.join(dirty, jr.JOURNAL_DIRNAME))
    before = checkpoint_files(dirty)
    res = runner.invoke(app, ["fix", dirty])
    _one_line_error(res)
    assert "symlink" in res.output
    assert os.listdir(elsewhere) == []
    assert checkpoint_files(dirty) == before


def test_journal_cleanup_keeps_user_files(dirty, tmp_path):
    user = tmp_path / "userdir"
    user.mkdir()
    keep = {
        "data.bin": b"user data",
        "notes.json.tmp": b"{}",
        # fp8doctor's own name pattern, but not a file it wrote (no magic/header)
        "00000000000000000001-1.bin": b"not a journal",
        "00000000000000000002-1.json.tmp": b'{"something": "else"}',
    }
    for n, data in keep.items():
        (user / n).write_bytes(data)
    res = runner.invoke(app, ["fix", dirty, "--journal-dir", str(user)])
    assert res.exit_code == 0, res.output
    for n, data in keep.items():
        assert (user / n).read_bytes() == data, n


def test_orphans_fp8doctor_wrote_are_still_cleaned(dirty, tmp_path):
    from fp8doctor.repair.hooks import CRASH_ENV
    from tests.conftest import run_cli

    proc = run_cli("fix", dirty, env={CRASH_ENV: "journal-bin"})
    assert proc.returncode == -9
    jdir = os.path.join(dirty, jr.JOURNAL_DIRNAME)
    assert [n for n in os.listdir(jdir) if n.endswith(".bin")]
    assert fp8doctor.fix(dirty).bytes_changed == 165
    assert not [n for n in os.listdir(jdir) if n.endswith(".bin") and n[:-4] + ".json" not in os.listdir(jdir)]


def _index_checkpoint_with_symlinked_subdir(dirty: str, tmp_path) -> tuple[str, str]:
    """An index naming sub/SHARD1 where `sub` is a symlink to a directory outside the checkpoint."""
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.move(os.path.join(dirty, SHARD1), outside / SHARD1)
    os.symlink(outside, os.path.join(dirty, "sub"))
    index = os.path.join(dirty, "model.safetensors.index.json")
    with open(index) as f:
        idx = json.load(f)
    idx["weight_map"] = {k: ("sub/" + v if v == SHARD1 else v) for k, v in idx["weight_map"].items()}
    with open(index, "w") as f:
        json.dump(idx, f)
    return str(outside / SHARD1), index


def test_symlinked_directory_component_is_path_unsafe(dirty, tmp_path):
    victim, _ = _index_checkpoint_with_symlinked_subdir(dirty, tmp_path)
    before = _read(victim)
    report = fp8doctor.scan(dirty)
    unsafe = [f for f in report.findings if f.rule == "path-unsafe"]
    assert unsafe and "sub/" + SHARD1 in unsafe[0].message
    runner.invoke(app, ["fix", dirty])
    assert _read(victim) == before


def _before_write(monkeypatch, action):
    monkeypatch.setattr(hooks, "before_shard_open", lambda root, file: action(root, file))


@pytest.mark.parametrize("swap", ["symlink", "copy"])
def test_shard_swapped_between_scan_and_write(dirty, tmp_path, monkeypatch, swap):
    """The shard is replaced (same bytes, same mtime) right before fix opens it for writing: a symlink to
    an outside copy, or a new file: neither is written, nothing outside changes."""
    outside = str(tmp_path / "outside.safetensors")
    shard = os.path.join(dirty, SHARD1)
    shutil.copy2(shard, outside)
    original = _read(outside)

    def act(root, file):
        if file != SHARD1:
            return
        st = os.stat(shard)
        os.unlink(shard)
        if swap == "symlink":
            os.symlink(outside, shard)
        else:
            shutil.copy2(outside, shard)
            os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))

    _before_write(monkeypatch, act)
    with pytest.raises(FixError, match=r"changed since the scan|not inside the checkpoint"):
        fp8doctor.fix(dirty)
    assert _read(outside) == original
    if swap == "copy":
        assert _read(shard) == original


def test_symlink_swapped_in_after_the_containment_check(dirty, tmp_path, monkeypatch):
    """The containment check itself raced (it says inside, then the shard becomes a symlink): the open,
    component by component with O_NOFOLLOW, still refuses it."""
    from fp8doctor.checkpoint import paths

    outside = str(tmp_path / "outside.safetensors")
    shard = os.path.join(dirty, SHARD1)
    shutil.copy2(shard, outside)
    original = _read(outside)
    real_escapes = paths.escapes

    def raced(root, name, allowed=None):
        verdict = real_escapes(root, name, allowed)
        if name == SHARD1 and not os.path.islink(shard) and hooks_armed:
            os.unlink(shard)
            os.symlink(outside, shard)
        return verdict

    hooks_armed = False  # armed once fix is about to open shards for writing (not during the scan)
    monkeypatch.setattr(paths, "escapes", raced)

    def arm(root, file):
        nonlocal hooks_armed
        hooks_armed = True

    monkeypatch.setattr(hooks, "before_shard_open", arm)
    with pytest.raises(FixError, match="changed since the scan"):
        fp8doctor.fix(dirty)
    assert _read(outside) == original


def test_pending_journal_naming_a_file_outside_is_refused(dirty, tmp_path):
    from fp8doctor.checkpoint.loader import open_checkpoint
    from fp8doctor.repair.plan import build_plan
    from fp8doctor.scanner import ScanOptions, analyze

    victim = os.path.join(os.path.dirname(dirty), "victim.bin")
    shutil.copy2(os.path.join(dirty, SHARD1), victim)
    original = _read(victim)
    jdir = os.path.join(dirty, jr.JOURNAL_DIRNAME)
    os.mkdir(jdir)
    with open_checkpoint(dirty) as ck:
        plan = build_plan(analyze(ck, ScanOptions()), ScanOptions())
    j = jr.create(jdir, plan, dirty, "test")
    with open(j.json_path) as f:
        d = json.load(f)
    for s in d["shards"]:
        if s["file"] == SHARD1:
            s["file"] = "../victim.bin"
    with open(j.json_path, "w") as f:
        json.dump(d, f)
    with pytest.raises(JournalError, match="outside the checkpoint"):
        fp8doctor.fix(dirty)
    res = runner.invoke(app, ["fix", dirty])
    _one_line_error(res)
    assert _read(victim) == original
    # scan says the journal cannot be used, rather than completing it
    assert any(f.rule == "fix-interrupted" for f in fp8doctor.scan(dirty).findings)


def test_output_copy_never_holds_symlinks_pointing_outside(dirty, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret\n")
    os.symlink(secret, os.path.join(dirty, "tokenizer.json"))
    os.mkdir(os.path.join(dirty, "extra"))
    os.symlink(secret, os.path.join(dirty, "extra", "leak.txt"))
    os.symlink("../config.json", os.path.join(dirty, "extra", "inside.json"))
    os.symlink(secret, os.path.join(dirty, "zz-leak.safetensors"))
    out = str(tmp_path / "out")
    res = runner.invoke(app, ["fix", dirty, "--output", out])
    assert res.exit_code in (0, 1), res.output  # 1: the stray zz-leak.safetensors is a finding of its own
    assert os.path.isdir(out)
    for dirpath, dirs, files in os.walk(out):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            if os.path.islink(p):
                real = os.path.realpath(p)
                assert real.startswith(os.path.realpath(out) + os.sep), p
            if os.path.isfile(p):
                assert _read(p) != b"top secret\n", p
    assert os.path.lexists(os.path.join(out, "extra", "inside.json"))
    assert "tokenizer.json" in res.output  # says what it left out


def test_report_to_a_symlink_writes_through_it(v4, tmp_path):
    target = tmp_path / "real.json"
    target.write_text("")
    link = tmp_path / "link.json"
    os.symlink(target, link)
    res = runner.invoke(app, ["scan", v4, "-f", "json", "-o", str(link)])
    assert res.exit_code in (0, 1), res.output
    assert os.path.islink(link)
    assert json.loads(target.read_text())["target"] == v4


def test_report_to_a_fifo_writes_through_it(v4, tmp_path):
    fifo = str(tmp_path / "pipe")
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(_read(fifo)), daemon=True)
    reader.start()
    res = runner.invoke(app, ["scan", v4, "-f", "json", "-o", fifo])
    reader.join(10)
    assert res.exit_code in (0, 1), res.output
    assert os.path.exists(fifo) and not os.path.isfile(fifo)  # still a FIFO, never replaced
    assert got and json.loads(got[0])["target"] == v4


def test_baseline_to_a_symlink_writes_through_it(v4, tmp_path):
    target = tmp_path / "real-baseline.json"
    target.write_text("")
    link = tmp_path / "baseline.json"
    os.symlink(target, link)
    res = runner.invoke(app, ["scan", v4, "--write-baseline", str(link)])
    assert res.exit_code == 0, res.output
    assert os.path.islink(link) and json.loads(target.read_text())["findings"] is not None


def test_report_to_a_directory_is_refused(v4, tmp_path):
    d = tmp_path / "adir"
    d.mkdir()
    res = runner.invoke(app, ["scan", v4, "-f", "json", "-o", str(d)])
    _one_line_error(res)
    assert d.is_dir()


def test_one_lock_per_checkpoint_whatever_the_journal_dir(dirty, tmp_path):
    """Two fixes with different --journal-dir on one checkpoint cannot run at once."""
    from fp8doctor.repair.errors import LockHeld
    from fp8doctor.repair.lock import Lock

    a, b = str(tmp_path / "ja"), str(tmp_path / "jb")
    os.mkdir(a)
    before = checkpoint_files(dirty)
    with Lock(dirty, a):
        with pytest.raises(LockHeld, match="another fix is running on this checkpoint"):
            fp8doctor.fix(dirty, journal_dir=b)
    assert checkpoint_files(dirty) == before
    assert fp8doctor.fix(dirty, journal_dir=b).bytes_changed == 165


def test_missing_shards_are_indexed_in_linear_time(tmp_path, monkeypatch):
    """N missing shards: the per-shard tensor counts come from one pass over the index, not one pass per
    missing shard (counted: iterations over the weight map, not seconds)."""
    from fp8doctor.checkpoint import loader
    from fp8doctor.checkpoint.loader import open_checkpoint

    d = tmp_path / "ck"
    d.mkdir()
    n = 2000
    wm = {f"t{i}.weight": f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(n)}
    (d / loader.INDEX_NAME).write_text(json.dumps({"weight_map": wm}))
    passes = 0
    real_values = dict.values

    class CountingDict(dict):
        def values(self):
            nonlocal passes
            passes += 1
            return real_values(self)

    real_read = loader._read_index
    monkeypatch.setattr(loader, "_read_index", lambda *a: CountingDict(real_read(*a)))
    with open_checkpoint(str(d)) as ck:
        missing = [f for f in ck.findings if f.rule == "index-shard-missing"]
    assert len(missing) == n and all(f.count == 1 for f in missing)
    assert passes < 10, passes
