"""Issue 13, section 1: whatever a checkpoint (or the directory around it) holds, `fix` writes,
truncates, creates and deletes nothing outside it (or the --output / --journal-dir the user named).
Races are made deterministic with the in-process hooks of fp8doctor.repair.hooks."""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading

import pytest
from typer.testing import CliRunner

import fp8doctor
from fp8doctor.cli.app import app
from fp8doctor.repair import hooks
from fp8doctor.repair import journal as jr
from fp8doctor.repair.errors import FixError, JournalError
from tests.helpers.fix_helpers import checkpoint_files, dirty_v4

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
    from fp8doctor.checkpoint import model as loader  # where _read_index lives
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


@pytest.mark.skipif(os.geteuid() != 0, reason="creating a device node needs root (as a tarball unpacked by root does)")
def test_output_copy_never_reads_devices_or_fifos(dirty, tmp_path):
    """A checkpoint unpacked as root can hold device nodes (a `tokenizer.json` that is /dev/zero would
    fill the disk) and FIFOs (a read that never ends): --output leaves them out and says so."""
    os.mknod(os.path.join(dirty, "tokenizer.json"), 0o644 | stat.S_IFCHR, os.makedev(1, 3))
    os.mkfifo(os.path.join(dirty, "vocab.txt"))
    os.mkdir(os.path.join(dirty, "extra"))
    os.mknod(os.path.join(dirty, "extra", "dev"), 0o644 | stat.S_IFCHR, os.makedev(1, 3))
    with open(os.path.join(dirty, "extra", "ok.txt"), "w") as f:
        f.write("kept")
    out = str(tmp_path / "out")
    res = runner.invoke(app, ["fix", dirty, "--output", out])
    assert res.exit_code in (0, 1), res.output
    for name in ("tokenizer.json", "vocab.txt", os.path.join("extra", "dev")):
        assert not os.path.lexists(os.path.join(out, name)), name
        assert name in res.output
    assert _read(os.path.join(out, "extra", "ok.txt")) == b"kept"


def test_output_copy_never_holds_a_link_that_leaves_and_reenters(dirty, tmp_path):
    """`a -> ../v4/config.json` resolves inside the source checkpoint, but in the copy it names the
    source's file (or whatever `../v4` is beside DIR): such a link is left out, not copied."""
    os.symlink(os.path.join("..", os.path.basename(dirty), "config.json"), os.path.join(dirty, "loop.json"))
    os.symlink("config.json", os.path.join(dirty, "plain.json"))
    out = str(tmp_path / "out")
    res = runner.invoke(app, ["fix", dirty, "--output", out])
    assert res.exit_code in (0, 1), res.output
    assert not os.path.lexists(os.path.join(out, "loop.json")) and "loop.json" in res.output
    assert os.readlink(os.path.join(out, "plain.json")) == "config.json"


def _device_opens(monkeypatch) -> list[str]:
    """Record every os.open of a device node (opening one can have effects: a watchdog node arms a
    reboot, a tape rewinds), through a path or relative to a directory descriptor."""
    opened: list[str] = []
    real_open = os.open

    def spy(path, flags, mode=0o777, *, dir_fd=None):
        try:
            st = os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            st = None
        if st is not None and (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            opened.append(os.fspath(path))
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", spy)
    return opened


@pytest.mark.skipif(os.geteuid() != 0, reason="creating a device node needs root (as a tarball unpacked by root does)")
def test_device_nodes_in_the_checkpoint_are_never_opened(dirty, monkeypatch):
    for name in (SHARD2, "config.json"):  # a shard the index names, and the config
        os.unlink(os.path.join(dirty, name))
        os.mknod(os.path.join(dirty, name), 0o644 | stat.S_IFCHR, os.makedev(1, 3))
    opened = _device_opens(monkeypatch)
    findings = fp8doctor.scan(dirty).findings
    assert any(f.rule == "file-unreadable" and f.file == SHARD2 and "regular file" in f.message for f in findings)
    out = os.path.join(os.path.dirname(dirty), "out")
    fp8doctor.fix(dirty, output=out)  # repairs the shard that is a file; carries neither device
    assert not os.path.lexists(os.path.join(out, "config.json"))
    assert opened == []


@pytest.mark.skipif(os.geteuid() != 0, reason="creating a device node needs root (as a tarball unpacked by root does)")
@pytest.mark.parametrize("name", ["lock", "00000000000000000001-1.json"])
def test_device_nodes_in_the_journal_directory_are_never_opened(dirty, monkeypatch, name):
    jdir = os.path.join(dirty, jr.JOURNAL_DIRNAME)
    os.mkdir(jdir)
    os.mknod(os.path.join(jdir, name), 0o644 | stat.S_IFCHR, os.makedev(1, 3))
    opened = _device_opens(monkeypatch)
    with pytest.raises(FixError, match="regular file"):
        fp8doctor.fix(dirty)
    fp8doctor.scan(dirty)
    assert opened == []


@pytest.mark.parametrize("how", ["file", "directory"])
@pytest.mark.parametrize("flag", ["-o", "--write-baseline"])
def test_report_inside_the_checkpoint_never_goes_through_its_links(dirty, tmp_path, how, flag):
    """`scan CKPT -o CKPT/reports/r.json` (the GitHub action's default when the repository is the
    checkpoint): a planted `r.json -> ~/.bashrc`, or a `reports -> /etc/cron.d`, would carry tensor
    names the checkpoint chose into a file outside it. Refused, nothing outside written."""
    victim_dir = tmp_path / "victim"
    victim_dir.mkdir()
    victim = victim_dir / "bashrc"
    victim.write_text("keep me\n")
    reports = os.path.join(dirty, "reports")
    if how == "file":
        os.mkdir(reports)
        os.symlink(victim, os.path.join(reports, "r.json"))
    else:
        os.symlink(victim_dir, reports)
    args = ["scan", dirty, "-f", "json", "-o", os.path.join(reports, "r.json")] if flag == "-o" else \
        ["scan", dirty, "--write-baseline", os.path.join(reports, "r.json")]
    res = runner.invoke(app, args)
    _one_line_error(res)
    assert "outside the checkpoint" in res.output
    assert victim.read_text() == "keep me\n" and sorted(os.listdir(victim_dir)) == ["bashrc"]


def test_report_inside_the_checkpoint_through_plain_directories_is_written(dirty):
    os.mkdir(os.path.join(dirty, "reports"))
    dest = os.path.join(dirty, "reports", "r.json")
    res = runner.invoke(app, ["scan", dirty, "-f", "json", "-o", dest])
    assert res.exit_code == 1, res.output
    assert json.loads(_read(dest))["target"] == dirty


def test_output_through_a_link_in_the_checkpoint_is_refused(dirty, tmp_path):
    """`fix CKPT --output CKPT/link/fixed` with a planted `link -> /somewhere`: the copy would land
    outside the checkpoint, where the user did not ask for it. Refused."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, os.path.join(dirty, "link"))
    res = runner.invoke(app, ["fix", dirty, "--output", os.path.join(dirty, "link", "fixed")])
    _one_line_error(res)
    assert os.listdir(elsewhere) == []


def test_output_never_links_a_file_swapped_for_a_symlink(dirty, tmp_path, monkeypatch):
    """An unchanged file carried into the copy by hard link is swapped for a symlink to a secret
    after the containment check (when the temp directory is made): the copy never holds the secret."""
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret\n")
    extra = os.path.join(dirty, "zz-extra.safetensors")
    shutil.copy2(os.path.join(dirty, SHARD2), extra)
    real_mkdir = os.mkdir

    def swap_then_mkdir(path, *args, **kwargs):
        if ".fp8doctor-tmp-" in os.fspath(path):
            os.unlink(extra)
            os.symlink(secret, extra)
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", swap_then_mkdir)
    out = str(tmp_path / "out")
    try:
        fp8doctor.fix(dirty, output=out)
    except FixError:
        pass
    for dirpath, _, files in os.walk(out):
        for n in files:
            p = os.path.join(dirpath, n)
            assert not os.path.islink(p) or os.path.realpath(p).startswith(os.path.realpath(out) + os.sep), p
            assert _read(p) != b"top secret\n", p
