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
import stat
from collections.abc import Callable
from dataclasses import dataclass

from fp8doctor.checkpoint.paths import O_CLOEXEC, escapes, leads_out_of, open_inside
from fp8doctor.repair import journal as jr
from fp8doctor.repair import spans as sv
from fp8doctor.repair.errors import FixError, ShardChanged
from fp8doctor.repair.plan import RepairPlan

FICLONE = 0x40049409
"""Linux ioctl: make dst share src's extents (copy-on-write), where the filesystem can."""


@dataclass(frozen=True)
class Copied:
    bytes_written: int
    shards_touched: int
    notes: tuple[str, ...]
    writes: int = 0


def _open_source(root: str, file: str, identity: tuple[int, int] | None = None) -> tuple[int, os.stat_result]:
    """A read descriptor of the checkpoint's `file`, opened inside it without following a link
    (open_inside): a file swapped for a symlink after the containment check fails instead of
    carrying what the link points to into the copy. Must be a regular file (and the scanned one)."""
    try:
        fd = open_inside(root, file, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise ShardChanged(f"{file} changed since the scan ({e.strerror or e}); no copy was written") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (identity is not None and (st.st_dev, st.st_ino) != tuple(identity)):
        os.close(fd)
        raise ShardChanged(f"{file} changed since the scan (not the regular file it was); no copy was written")
    return fd, st


def _reflink(src_fd: int, dst_fd: int) -> bool:
    try:
        fcntl.ioctl(dst_fd, FICLONE, src_fd)
        return True
    except OSError:
        return False


def _copy(src_fd: int, dst_fd: int, size: int) -> None:
    done = 0
    while done < size:
        chunk = os.pread(src_fd, min(16 << 20, size - done), done)
        if not chunk:
            break
        jr.write_all(dst_fd, chunk, done)
        done += len(chunk)


def _clone(root: str, file: str, dst: str, identity: tuple[int, int] | None = None) -> str:
    """Reflink if the filesystem can, else a full copy, from a descriptor of the source; returns which."""
    fd, st = _open_source(root, file, identity)
    try:
        out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_CLOEXEC, 0o600)
        try:
            how = "reflinked" if _reflink(fd, out) else "copied"
            if how == "copied":
                _copy(fd, out, st.st_size)
            os.fchmod(out, stat.S_IMODE(st.st_mode))
        finally:
            os.close(out)
    finally:
        os.close(fd)
    return how


def _link(root: str, file: str, dst: str) -> tuple[str, str]:
    """Hard-link an unchanged file into the copy: the link must be the very inode open_inside found
    inside the checkpoint (a name swapped in between is unlinked again, never kept)."""
    fd, st = _open_source(root, file)
    try:
        try:
            os.link(_cache_source(root, file), dst, follow_symlinks=False)
        except OSError as e:
            why = e.strerror or str(e)
        else:
            got = os.lstat(dst)
            if (got.st_dev, got.st_ino) == (st.st_dev, st.st_ino):
                return "linked", ""
            os.unlink(dst)
            raise ShardChanged(f"{file} changed since the scan (it was replaced while being linked); no copy was "
                               "written")
    finally:
        os.close(fd)
    return _clone(root, file, dst), why


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
    """A symlink that may be copied as a symlink: relative, resolving inside `root`, and never leaving
    it even on the way (`../ckpt/x` resolves inside the source, but in the copy names the file of
    whatever `../ckpt` is beside DIR)."""
    target = os.readlink(path)
    rel = os.path.relpath(path, root)
    lexical = os.path.normpath(os.path.join(os.path.dirname(rel), target))
    return (not os.path.isabs(target) and lexical != ".." and not lexical.startswith(".." + os.sep)
            and escapes(root, rel) is None)


def _special(path: str) -> bool:
    """Neither a directory, a regular file nor a symlink: a device or FIFO is never read into a copy
    (a /dev/zero node would fill the disk, a FIFO never ends)."""
    mode = os.lstat(path).st_mode
    return not (stat.S_ISDIR(mode) or stat.S_ISREG(mode) or stat.S_ISLNK(mode))


def _outside_links(root: str, left_out: list[str], special: list[str]) -> Callable[[str, list[str]], set[str]]:
    """A shutil.copytree `ignore` that leaves out (and records) symlinks leading outside `root`, and
    devices and FIFOs."""
    def ignore(directory: str, names: list[str]) -> set[str]:
        out = set()
        for n in names:
            p = os.path.join(directory, n)
            if os.path.islink(p) and not _link_points_inside(root, p):
                out.add(n)
                left_out.append(os.path.relpath(p, root))
            elif _special(p):
                out.add(n)
                special.append(os.path.relpath(p, root))
        return out
    return ignore


def write_copy(plan: RepairPlan, out: str, shard_files: list[str], carry: list[str]) -> Copied:
    """Build the repaired copy of the checkpoint at plan.root in `out`."""
    root = os.path.realpath(plan.root)
    real_out = os.path.realpath(out)
    if real_out == root or real_out.startswith(root.rstrip(os.sep) + os.sep):
        raise FixError(f"--output {out} is inside the checkpoint directory; choose a directory outside it")
    where = leads_out_of(out, plan.root)
    if where is not None:
        raise FixError(f"--output {out} lies in the checkpoint but leads to {where} through a link the checkpoint "
                       "holds; choose a directory outside the checkpoint")
    if os.path.lexists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise FixError(f"--output {out} already exists and is not an empty directory; nothing was written")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise FixError(f"--output {out}: its parent directory {parent} does not exist")
    tmp = os.path.join(parent, f".{os.path.basename(os.path.abspath(out))}.fp8doctor-tmp-{os.getpid()}")
    patched = {s.file: s for s in plan.shards}
    notes: list[str] = []
    written = calls = 0
    left_out: list[str] = []
    special: list[str] = []
    for name in list(shard_files) + list(carry):  # never a file (or link) leading out of the checkpoint
        full = os.path.join(plan.root, name)
        cache_link = _cache_source(plan.root, name) != full  # a snapshot's link to its blob: copied as the blob
        if escapes(plan.root, name) is not None or (os.path.islink(full) and not cache_link
                                                   and not _link_points_inside(root, full)):
            if name in patched:
                raise FixError(f"shard {name} leads outside the checkpoint; no copy was written")
            left_out.append(name)
        elif name not in patched and os.path.lexists(full) and _special(full):
            special.append(name)
    shard_files = [n for n in shard_files if n not in left_out and n not in special]
    carry = [n for n in carry if n not in left_out and n not in special]
    try:
        os.mkdir(tmp)
        for file in shard_files:
            dst = os.path.join(tmp, file)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            sp = patched.get(file)
            if sp is None:
                how, why = _link(plan.root, file, dst)
                if how != "linked":
                    notes.append(f"{file}: {how}, not hard-linked ({why})")
                continue
            _check_source(plan.root, file, sp.size, sp.mtime_ns)
            how = _clone(plan.root, file, dst, sp.identity)
            notes.append(f"{file}: {how} and patched")
            _check_source(plan.root, file, sp.size, sp.mtime_ns)
            fd = os.open(dst, os.O_RDWR)
            try:
                for p in sp.patches:
                    for span in p.spans():
                        if not sv.holds(fd, span, span.old):
                            raise ShardChanged(f"shard {file} changed since the scan (bytes of {p.tensor} differ); "
                                               "no copy was written")
                for p in sp.patches:
                    for span in p.spans():
                        data = sv.composed(fd, span, True)
                        jr.write_all(fd, data, span.offset)
                        written += len(data)
                        calls += 1
                os.fsync(fd)
                for p in sp.patches:
                    for span in p.spans():
                        if not sv.holds(fd, span, span.new):
                            raise FixError(f"verification failed: the copy of {file} at 0x{span.offset:x} does not "
                                           "read back what was written")
            finally:
                os.close(fd)
        for name in carry:
            src, dst = _cache_source(plan.root, name), os.path.join(tmp, name)
            if os.path.isdir(src) and not os.path.islink(src):
                shutil.copytree(src, dst, symlinks=True, ignore=_outside_links(root, left_out, special))
            elif os.path.islink(src):
                os.symlink(os.readlink(src), dst)
            else:
                _clone(plan.root, name, dst)  # through a descriptor opened inside the checkpoint
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
    notes.extend(f"{name}: not copied (a device or FIFO, not a regular file)" for name in special)
    return Copied(written, len(plan.shards), tuple(notes), calls)
