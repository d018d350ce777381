"""Writing a plan into the checkpoint in place, finishing an interrupted fix, and undoing one.

Order of a fix: open every shard for writing and recheck size, mtime and the bytes to overwrite
(anything different: stop, nothing written); journal (durable); patch with os.pwrite; fsync;
re-read and verify; mark the journal done. Recovery rolls an interrupted journal forward (or back,
for `--undo`) after checking that every patched byte is still either its old or its new value.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from fp8doctor.checkpoint.paths import PathEscape, open_inside
from fp8doctor.layouts.model import ITEMSIZE
from fp8doctor.repair import hooks
from fp8doctor.repair import journal as jr
from fp8doctor.repair.errors import FixError, JournalError, ReadOnly, ShardChanged
from fp8doctor.repair.hooks import CRASH_ENV, crash_point
from fp8doctor.repair.plan import SAMPLE_BYTES, RepairPlan, TensorChange


@dataclass(frozen=True)
class Applied:
    journal: jr.Journal
    bytes_written: int
    shards_touched: int


def pread_all(fd: int, length: int, offset: int) -> bytes:
    chunks, got = [], 0
    while got < length:
        chunk = os.pread(fd, length - got, offset + got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def open_shard(root: str, file: str, size: int, mtime_ns: int | None = None,
               identity: tuple[int, int] | None = None) -> int:
    """Open a shard for in-place writing, or say clearly why not (nothing is written on error).

    The shard is opened relative to the checkpoint's directory, component by component, never
    following a symlink (fp8doctor.checkpoint.paths.open_inside), and must be the very file the scan
    read (`identity`: st_dev, st_ino) with the size and mtime it had."""
    hooks.before_shard_open(root, file)
    try:
        fd = open_inside(root, file, os.O_RDWR | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ShardChanged(f"shard {file} no longer exists; nothing was written") from None
    except PathEscape as e:
        raise FixError(f"shard {file} is not inside the checkpoint ({e.strerror}); nothing was written") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ShardChanged(f"shard {file} changed since the scan (it is now a symlink); nothing was written. "
                               "Run fix again to rescan it") from None
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise ReadOnly(f"shard {file} is read-only ({e.strerror}); nothing was written. Make it writable "
                           "(chmod u+w) or write a repaired copy with --output DIR") from None
        raise jr.os_error(e, f"cannot open shard {file} for writing; nothing was written") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ShardChanged(f"shard {file} is no longer a regular file; nothing was written")
        if not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
            raise ReadOnly(f"shard {file} is read-only (mode {stat.filemode(st.st_mode)}); nothing was written. "
                           "Make it writable (chmod u+w) or write a repaired copy with --output DIR")
        if st.st_nlink > 1:
            raise FixError(f"shard {file} has {st.st_nlink} hard links: writing it in place would change every "
                           "linked copy; nothing was written. Break the link (cp) or write a repaired copy with "
                           "--output DIR")
        problems = []
        if identity is not None and (st.st_dev, st.st_ino) != tuple(identity):
            problems.append("it was replaced by another file")
        if st.st_size != size:
            problems.append(f"size {size:,} -> {st.st_size:,} bytes")
        if mtime_ns is not None and st.st_mtime_ns != mtime_ns:
            problems.append("modification time differs")
        if problems:
            raise ShardChanged(f"shard {file} changed since the scan ({', '.join(problems)}); nothing was "
                               "written. Run fix again to rescan it")
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextmanager
def _shards(root: str, files: list[tuple[str, int, int | None, tuple[int, int] | None]]
            ) -> Iterator[dict[str, int]]:
    fds: dict[str, int] = {}
    try:
        for file, size, mtime, identity in files:
            fds[file] = open_shard(root, file, size, mtime, identity)
        yield fds
    finally:
        for fd in fds.values():
            os.close(fd)


def _write(j: jr.Journal, fds: dict[str, int], new: bool, points: tuple[str, str] | None = None) -> int:
    """Write every patch's new (or old) bytes, fsync each shard; returns bytes written. `points`
    names the test crash points (torn first run, first shard done) this write may stop at."""
    partial_point, shard_point = points or ("", "")
    written = 0
    torn = bool(points) and os.environ.get(CRASH_ENV) == partial_point
    for s in j.shards:
        fd = fds[s.file]
        for p in j.patches(s):
            data = j.new(p) if new else j.old(p)
            if torn and len(data) > 1:  # a torn write of the first multi-byte run, for the crash tests
                jr.write_all(fd, data[:len(data) // 2], p.offset)
                os.fsync(fd)
                crash_point(partial_point)
            jr.write_all(fd, data, p.offset)
            written += len(data)
        os.fsync(fd)
        if points:
            crash_point(shard_point)
    return written


def _verify(j: jr.Journal, fds: dict[str, int], new: bool) -> None:
    for s in j.shards:
        for p in j.patches(s):
            want = j.new(p) if new else j.old(p)
            if pread_all(fds[s.file], p.length, p.offset) != want:
                raise FixError(f"verification failed: {s.file} at 0x{p.offset:x} does not read back what was "
                               f"written ({p.tensor})")


def _mtimes(j: jr.Journal, fds: dict[str, int]) -> None:
    for s in j.shards:
        s.mtime_ns_after = os.fstat(fds[s.file]).st_mtime_ns


def apply_in_place(plan: RepairPlan, journal_dir: str, target: str, tool_version: str) -> Applied:
    """Patch the checkpoint in place, journaled; raises FixError with every file as it was."""
    with _shards(plan.root, [(s.file, s.size, s.mtime_ns, s.identity) for s in plan.shards]) as fds:
        for s in plan.shards:
            for p in s.patches:
                if pread_all(fds[s.file], p.length, p.offset) != p.old:
                    raise ShardChanged(f"shard {s.file} changed since the scan (bytes of {p.tensor} at 0x{p.offset:x} "
                                       "differ); nothing was written. Run fix again to rescan it")
        j = jr.create(journal_dir, plan, target, tool_version)
        try:
            written = _write(j, fds, True, ("partial-run", "first-shard"))
            crash_point("after-patch")
            _verify(j, fds, True)
            crash_point("after-verify")
        except (OSError, FixError) as e:
            msg = str(jr.os_error(e, "writing the patch failed")) if isinstance(e, OSError) else str(e)
            raise _roll_back_after_failure(j, fds, msg) from None
        _mtimes(j, fds)
        jr.set_state(j, jr.DONE, crash="done-tmp")
        crash_point("after-done")
        return Applied(j, written, len(j.shards))


def _roll_back_after_failure(j: jr.Journal, fds: dict[str, int], msg: str) -> FixError:
    """Restore the old bytes after a failed write; returns the error to raise."""
    try:
        _write(j, fds, False)
        _verify(j, fds, False)
        jr.set_state(j, jr.ROLLED_BACK)
    except (OSError, FixError) as e2:
        return FixError(f"{msg}; restoring the original bytes also failed ({e2}). The journal {j.json_path} is "
                        "kept: run `fp8doctor fix PATH` to complete the fix or `fp8doctor fix --undo PATH` to "
                        "restore the original bytes")
    return FixError(f"{msg}; the original bytes were restored, every file is as it was")


def _check_old_or_new(j: jr.Journal, fds: dict[str, int]) -> None:
    """Every byte of every patched range must be its old or its new value, or we touch nothing."""
    for s in j.shards:
        for p in j.patches(s):
            cur = np.frombuffer(pread_all(fds[s.file], p.length, p.offset), dtype=np.uint8)
            old = np.frombuffer(j.old(p), dtype=np.uint8)
            new = np.frombuffer(j.new(p), dtype=np.uint8)
            if cur.size != old.size or not ((cur == old) | (cur == new)).all():
                raise JournalError(f"shard {s.file} changed after the interrupted fix (bytes at 0x{p.offset:x} of "
                                   f"{p.tensor} are neither the original nor the repaired ones); nothing was "
                                   f"written. The journal {j.json_path} is kept for inspection")


def finish(j: jr.Journal, to_new: bool) -> int:
    """Complete an interrupted journal: write every patch's new bytes (roll forward) or old bytes
    (roll back). Returns bytes written."""
    j.data()  # checks the journal's sha256 before anything else
    with _shards(j.root, [(s.file, s.size, None, None) for s in j.shards]) as fds:
        _check_old_or_new(j, fds)
        written = _write(j, fds, to_new)
        _verify(j, fds, to_new)
        if to_new:
            _mtimes(j, fds)
        state = jr.DONE if to_new else jr.UNDONE if j.state == jr.UNDOING else jr.ROLLED_BACK
        jr.set_state(j, state)
    return written


def recover(journal_dir: str, root: str, roll_back: bool = False) -> list[tuple[jr.Journal, str, int]]:
    """Finish every interrupted fix or undo of this checkpoint: (journal, what was done, bytes)."""
    jr.clean_orphans(journal_dir)
    out = []
    for j in jr.load_all(journal_dir, root):
        if j.state == jr.PENDING:
            n = finish(j, to_new=not roll_back)
            out.append((j, "rolled back an interrupted fix" if roll_back else "completed an interrupted fix", n))
        elif j.state == jr.UNDOING:
            n = finish(j, to_new=False)
            out.append((j, "completed an interrupted undo", n))
    return out


def undo_last(journal_dir: str, root: str) -> Applied:
    """Restore the original bytes of the latest completed fix of this checkpoint."""
    done = [j for j in jr.load_all(journal_dir, root) if j.state == jr.DONE]
    if not done:
        raise FixError(f"nothing to undo: no completed fix of {root} is recorded in {journal_dir}")
    j = done[-1]
    j.data()
    with _shards(j.root, [(s.file, s.size, None, None) for s in j.shards]) as fds:
        for s in j.shards:
            h = hashlib.sha256()
            for p in j.patches(s):
                h.update(pread_all(fds[s.file], p.length, p.offset))
            if h.hexdigest() != s.new_sha256:
                raise ShardChanged(f"shard {s.file} changed since the fix {j.id} (its patched bytes are not what "
                                   "fix wrote); nothing was restored")
        jr.set_state(j, jr.UNDOING)
        crash_point("undo-marked")
        written = _write(j, fds, False, ("undo-partial", "undo-first-shard"))
        _verify(j, fds, False)
        jr.set_state(j, jr.UNDONE)
    return Applied(j, written, len(j.shards))


def journal_changes(j: jr.Journal, undo: bool = False) -> tuple[TensorChange, ...]:
    """Per-tensor changes recorded in a journal (before/after swapped for an undo)."""
    acc: dict[tuple[str, str], list] = {}
    for s in j.shards:
        for p in j.patches(s):
            acc.setdefault((s.file, p.tensor), []).append(p)
    out = []
    for (file, tensor), ps in acc.items():
        nbytes = sum(p.length for p in ps)
        first = min(ps, key=lambda p: p.offset)
        before, after = (j.new(first), j.old(first)) if undo else (j.old(first), j.new(first))
        out.append(TensorChange(tensor, file, first.encoding, nbytes // ITEMSIZE.get(first.encoding, 1), nbytes,
                                len(ps), first.offset, before[:SAMPLE_BYTES], after[:SAMPLE_BYTES]))
    return tuple(sorted(out, key=lambda c: (c.file, c.first_offset)))
