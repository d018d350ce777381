"""Writing a plan into the checkpoint in place, finishing an interrupted fix, and undoing one.

Order of a fix: open every shard for writing and recheck size, mtime and the bytes to overwrite
(anything different: stop, nothing written); journal (durable); patch with os.pwrite; fsync;
re-read and verify; mark the journal done. Recovery rolls an interrupted journal forward (or back,
for `--undo`) after checking that every patched byte is still either its old or its new value.
"""

from __future__ import annotations

import errno
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
from fp8doctor.repair import spans as sv
from fp8doctor.repair.errors import FixError, JournalError, ReadOnly, ShardChanged
from fp8doctor.repair.hooks import CRASH_ENV, crash_point
from fp8doctor.repair.plan import SAMPLE_BYTES, RepairPlan, TensorChange, phase
from fp8doctor.scanner import Progress


@dataclass(frozen=True)
class Applied:
    journal: jr.Journal
    bytes_written: int
    shards_touched: int
    writes: int = 0


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


def _write(j: jr.Journal, fds: dict[str, int], new: bool, points: tuple[str, str] | None = None,
           progress: Progress | None = None) -> tuple[int, int, int]:
    """Write every span's new (or old) bytes, one pwrite a span, fsync each shard. Returns (bytes
    set, bytes handed to pwrite, pwrite calls). `points` names the test crash points (torn first
    span, first shard done) this write may stop at."""
    partial_point, shard_point = points or ("", "")
    changed = written = calls = 0
    torn = bool(points) and os.environ.get(CRASH_ENV) == partial_point
    for s in j.shards:
        fd = fds[s.file]
        for sp in j.spans(s):
            data = sv.composed(fd, sp, new)
            if torn and sp.nbytes > 1:  # a torn write of the first multi-byte span, for the crash tests
                half = int(sp.pos[sp.nbytes // 2])
                jr.write_all(fd, memoryview(data)[:half], sp.offset)
                os.fsync(fd)
                crash_point(partial_point)
            jr.write_all(fd, data, sp.offset)
            changed += sp.nbytes
            written += len(data)
            calls += 1
            if progress is not None:
                progress.advance(sp.nbytes)
        os.fsync(fd)
        if progress is not None:
            progress.file_done()
        if points:
            crash_point(shard_point)
    return changed, written, calls


def _verify(j: jr.Journal, fds: dict[str, int], new: bool) -> None:
    for s in j.shards:
        for sp in j.spans(s):
            if not sv.holds(fds[s.file], sp, sp.new if new else sp.old):
                raise FixError(f"verification failed: {s.file} at 0x{sp.offset:x} does not read back what was "
                               f"written ({sp.tensor})")


def _mtimes(j: jr.Journal, fds: dict[str, int]) -> None:
    for s in j.shards:
        s.mtime_ns_after = os.fstat(fds[s.file]).st_mtime_ns


def apply_in_place(plan: RepairPlan, journal_dir: str, target: str, tool_version: str,
                   progress: Progress | None = None) -> Applied:
    """Patch the checkpoint in place, journaled; raises FixError with every file as it was."""
    with _shards(plan.root, [(s.file, s.size, s.mtime_ns, s.identity) for s in plan.shards]) as fds:
        for s in plan.shards:
            for p in s.patches:
                for sp in p.spans():
                    if not sv.holds(fds[s.file], sp, sp.old):
                        raise ShardChanged(f"shard {s.file} changed since the scan (bytes of {p.tensor} at "
                                           f"0x{sp.offset:x} differ); nothing was written. Run fix again to rescan it")
        j = jr.create(journal_dir, plan, target, tool_version)
        phase(progress, "writing", sum(p.covered for s in plan.shards for p in s.patches), len(j.shards))
        try:
            _, written, calls = _write(j, fds, True, ("partial-run", "first-shard"), progress)
            crash_point("after-patch")
            _verify(j, fds, True)
            crash_point("after-verify")
        except (OSError, FixError) as e:
            msg = str(jr.os_error(e, "writing the patch failed")) if isinstance(e, OSError) else str(e)
            raise _roll_back_after_failure(j, fds, msg) from None
        _mtimes(j, fds)
        jr.set_state(j, jr.DONE, crash="done-tmp")
        crash_point("after-done")
        return Applied(j, written, len(j.shards), calls)


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
        for sp in j.spans(s):
            cur = sv.current(fds[s.file], sp)
            if cur.size != sp.old.size or not ((cur == sp.old) | (cur == sp.new)).all():
                raise JournalError(f"shard {s.file} changed after the interrupted fix (bytes at 0x{sp.offset:x} of "
                                   f"{sp.tensor} are neither the original nor the repaired ones); nothing was "
                                   f"written. The journal {j.json_path} is kept for inspection")


def finish(j: jr.Journal, to_new: bool) -> int:
    """Complete an interrupted journal: write every patch's new bytes (roll forward) or old bytes
    (roll back). Returns bytes written."""
    j.data()  # checks the journal's sha256 before anything else
    with _shards(j.root, [(s.file, s.size, None, None) for s in j.shards]) as fds:
        _check_old_or_new(j, fds)
        _, written, _ = _write(j, fds, to_new)
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


def undo_last(journal_dir: str, root: str, progress: Progress | None = None) -> Applied:
    """Restore the original bytes of the latest completed fix of this checkpoint."""
    done = [j for j in jr.load_all(journal_dir, root) if j.state == jr.DONE]
    if not done:
        raise FixError(f"nothing to undo: no completed fix of {root} is recorded in {journal_dir}")
    j = done[-1]
    j.data()
    with _shards(j.root, [(s.file, s.size, None, None) for s in j.shards]) as fds:
        for s in j.shards:
            for sp in j.spans(s):
                if not sv.holds(fds[s.file], sp, sp.new):
                    raise ShardChanged(f"shard {s.file} changed since the fix {j.id} (its patched bytes are not "
                                       "what fix wrote); nothing was restored")
        jr.set_state(j, jr.UNDOING)
        crash_point("undo-marked")
        phase(progress, "restoring", sum(sp.nbytes for s in j.shards for sp in j.spans(s)), len(j.shards))
        _, written, calls = _write(j, fds, False, ("undo-partial", "undo-first-shard"), progress)
        _verify(j, fds, False)
        jr.set_state(j, jr.UNDONE)
    return Applied(j, written, len(j.shards), calls)


def journal_changes(j: jr.Journal, undo: bool = False) -> tuple[TensorChange, ...]:
    """Per-tensor changes recorded in a journal (before/after swapped for an undo)."""
    out = []
    for s in j.shards:
        if j.version >= 3:
            for t in s.v3:
                after = (t.fill * SAMPLE_BYTES)[:len(t.before)]
                before, after = (after, t.before) if undo else (t.before, after)
                out.append(TensorChange(t.name, s.file, t.encoding, t.entries, t.entries * t.itemsize, t.runs,
                                        t.first, before, after))
            continue
        for tensor, enc, off, ln, old, new in j.ranges(s):
            first = int(np.argmin(off))
            n = int(ln[first])
            at = int((np.cumsum(ln) - ln)[first])
            a, b = old[at:at + n].tobytes(), new[at:at + n].tobytes()
            before, after = (b, a) if undo else (a, b)
            nbytes = int(ln.sum())
            out.append(TensorChange(tensor, s.file, enc, nbytes // ITEMSIZE.get(enc, 1), nbytes, int(ln.size),
                                    int(off[first]), before[:SAMPLE_BYTES], after[:SAMPLE_BYTES]))
    return tuple(sorted(out, key=lambda c: (c.file, c.first_offset)))
