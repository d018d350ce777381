"""`fix --output DIR`: a repaired copy; the source is never opened for writing.

Shards with nothing to change are hard-linked (reflinked, then copied, where a link is impossible);
changed shards are reflinked or copied, then patched in the copy. Everything is built in a
temporary sibling of DIR and renamed into place at the end, so DIR never holds a half copy.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from dataclasses import dataclass

from fp8doctor.checkpoint.paths import escapes
from fp8doctor.repair import journal as jr
from fp8doctor.repair.apply import pread_all
from fp8doctor.repair.errors import FixError, ShardChanged
from fp8doctor.repair.plan import RepairPlan

FICLONE = 0x40049409
"""Linux ioctl: make dst share src's extents (copy-on-write), where the filesystem can."""


@dataclass(frozen=True)
class Copied:
    bytes_written: int
    shards_touched: int
    notes: tuple[str, ...]


def _reflink(src: str, dst: str) -> bool:
    try:
        with open(src, "rb") as fs, open(dst, "wb") as fd:
            fcntl.ioctl(fd.fileno(), FICLONE, fs.fileno())
        return True
    except OSError:
        try:
            os.unlink(dst)
        except FileNotFoundError:
            pass
        return False


def _clone(src: str, dst: str) -> str:
    """Reflink if the filesystem can, else a full copy; returns which."""
    how = "reflinked" if _reflink(src, dst) else "copied"
    if how == "copied":
        shutil.copyfile(src, dst)
    shutil.copymode(src, dst)
    return how


def _link(src: str, dst: str) -> tuple[str, str]:
    try:
        os.link(src, dst)
        return "linked", ""
    except OSError as e:
        why = e.strerror or str(e)
    return _clone(src, dst), why


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_source(root: str, file: str, size: int, mtime_ns: int) -> None:
    st = os.stat(os.path.join(root, file))
    if st.st_size != size or st.st_mtime_ns != mtime_ns:
        raise ShardChanged(f"shard {file} changed since the scan; no copy was written. Run fix again to rescan it")


def _cache_source(root: str, name: str) -> str:
    """The file to copy for `name`: in a Hugging Face cache snapshot, the blob its link points to
    (inside the snapshot's repo folder), so the copy holds files, not links back into the cache."""
    from fp8doctor.checkpoint.hfcache import snapshot_of

    path = os.path.join(root, name)
    if snapshot_of(root) is None or not os.path.islink(path) or escapes(root, name) is not None:
        return path
    return os.path.realpath(path)


def _link_points_inside(root: str, path: str) -> bool:
    """A symlink that may be copied as a symlink: relative, and resolving inside `root`."""
    target = os.readlink(path)
    return not os.path.isabs(target) and escapes(root, os.path.relpath(path, root)) is None


def _outside_links(root: str, left_out: list[str]):
    """A shutil.copytree `ignore` that leaves out (and records) symlinks leading outside `root`."""
    def ignore(directory: str, names: list[str]) -> set[str]:
        out = set()
        for n in names:
            p = os.path.join(directory, n)
            if os.path.islink(p) and not _link_points_inside(root, p):
                out.add(n)
                left_out.append(os.path.relpath(p, root))
        return out
    return ignore


def write_copy(plan: RepairPlan, out: str, shard_files: list[str], carry: list[str]) -> Copied:
    """Build the repaired copy of the checkpoint at plan.root in `out`."""
    root = os.path.realpath(plan.root)
    real_out = os.path.realpath(out)
    if real_out == root or real_out.startswith(root.rstrip(os.sep) + os.sep):
        raise FixError(f"--output {out} is inside the checkpoint directory; choose a directory outside it")
    if os.path.lexists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise FixError(f"--output {out} already exists and is not an empty directory; nothing was written")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise FixError(f"--output {out}: its parent directory {parent} does not exist")
    tmp = os.path.join(parent, f".{os.path.basename(os.path.abspath(out))}.fp8doctor-tmp-{os.getpid()}")
    patched = {s.file: s for s in plan.shards}
    notes: list[str] = []
    written = 0
    left_out: list[str] = []
    for name in list(shard_files) + list(carry):  # never a file (or link) leading out of the checkpoint
        full = os.path.join(plan.root, name)
        if escapes(plan.root, name) is not None or (os.path.islink(full) and not _link_points_inside(root, full)):
            if name in patched:
                raise FixError(f"shard {name} leads outside the checkpoint; no copy was written")
            left_out.append(name)
    shard_files = [n for n in shard_files if n not in left_out]
    carry = [n for n in carry if n not in left_out]
    try:
        os.mkdir(tmp)
        for file in shard_files:
            src, dst = _cache_source(plan.root, file), os.path.join(tmp, file)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            sp = patched.get(file)
            if sp is None:
                how, why = _link(src, dst)
                if how != "linked":
                    notes.append(f"{file}: {how}, not hard-linked ({why})")
                continue
            _check_source(plan.root, file, sp.size, sp.mtime_ns)
            how = _clone(src, dst)
            notes.append(f"{file}: {how} and patched")
            _check_source(plan.root, file, sp.size, sp.mtime_ns)
            fd = os.open(dst, os.O_RDWR)
            try:
                for p in sp.patches:
                    if pread_all(fd, p.length, p.offset) != p.old:
                        raise ShardChanged(f"shard {file} changed since the scan (bytes of {p.tensor} differ); "
                                           "no copy was written")
                for p in sp.patches:
                    jr.write_all(fd, p.new, p.offset)
                    written += p.length
                os.fsync(fd)
                for p in sp.patches:
                    if pread_all(fd, p.length, p.offset) != p.new:
                        raise FixError(f"verification failed: the copy of {file} at 0x{p.offset:x} does not read "
                                       "back what was written")
            finally:
                os.close(fd)
        for name in carry:
            src, dst = _cache_source(plan.root, name), os.path.join(tmp, name)
            if os.path.isdir(src) and not os.path.islink(src):
                shutil.copytree(src, dst, symlinks=True, ignore=_outside_links(root, left_out))
            elif os.path.islink(src):
                os.symlink(os.readlink(src), dst)
            else:
                shutil.copy2(src, dst)
                _fsync_file(dst)
        jr.fsync_dir(tmp)
        if os.path.isdir(out):
            os.rmdir(out)
        os.rename(tmp, out)
        jr.fsync_dir(parent)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise jr.os_error(e, f"cannot write the copy in {out}") from None
            raise FixError(f"cannot write the copy in {out}: {e.strerror or e}; nothing was written") from None
        raise
    notes.extend(f"{name}: not copied (a symlink leading outside the checkpoint)" for name in left_out)
    return Copied(written, len(plan.shards), tuple(notes))
