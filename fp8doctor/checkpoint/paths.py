"""Path safety: every file fp8doctor reads or writes in a checkpoint stays inside an allowed root.

One rule, in one place: a name is relative, has no `..` and no NUL, and every component of it,
symlinks resolved, stays inside `allowed` (the checkpoint directory by default). Opening goes one
step further: the resolved path is opened component by component from a directory descriptor of
`allowed`, each with O_NOFOLLOW, so a symlink swapped in after the check fails (ELOOP) instead of
redirecting the open; a device node is never opened. Callers that trust a wider folder (for
example a Hugging Face cache repo whose snapshot files link into its blobs/) pass that folder as
`allowed`.
"""

from __future__ import annotations

import errno
import os
import stat

O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


class PathEscape(OSError):
    """A name that leaves its allowed root (errno EXDEV); the message says where it leads."""


def unsafe_name(name: str) -> bool:
    """Absolute, `..`, a backslash-absolute form, or a NUL: never a name inside a checkpoint."""
    return (os.path.isabs(name) or name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/")
            or "\x00" in name or name in ("", "."))


def allowed_root(root: str) -> str:
    """The folder every path of the checkpoint at `root` must stay inside: the checkpoint directory
    itself; for a Hugging Face cache snapshot (`.../models--ORG--NAME/snapshots/REV`), that repo's
    folder `models--ORG--NAME/`, whose blobs/ its files link to (checkpoint/hfcache.py). Nothing
    wider: a link out of the repo folder still escapes."""
    from fp8doctor.checkpoint.hfcache import snapshot_of

    snap = snapshot_of(root)
    return snap.repo_folder if snap is not None else root


def _within(real: str, real_root: str) -> bool:
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def escapes(root: str, name: str, allowed: str | None = None) -> str | None:
    """Where `root/name` really leads when that is outside `allowed` (default allowed_root(root)), else None.
    Every component counts, not only the last one."""
    if unsafe_name(name):
        return name
    real = os.path.realpath(os.path.join(root, name))
    return None if _within(real, os.path.realpath(allowed if allowed is not None else allowed_root(root))) else real


def leads_out_of(path: str, root: str) -> str | None:
    """Where `path` really leads when it lies in the checkpoint directory `root` (as spelt, or once
    its directory is resolved) but resolves outside it, through a symlink the checkpoint holds; else
    None. A file the user names outside the checkpoint is theirs: None."""
    lexical = os.path.abspath(path)
    real_root = os.path.realpath(root)
    if not (_within(lexical, os.path.abspath(root)) or _within(os.path.realpath(os.path.dirname(lexical)), real_root)):
        return None
    real = os.path.realpath(lexical)
    return None if _within(real, real_root) else real


def refuse_device(name: str, dir_fd: int | None = None) -> None:
    """OSError(EINVAL) when `name` (relative to `dir_fd`, the link itself if a symlink) is a device
    node: opening one can act (a watchdog node arms a reboot, a tape rewinds), so fp8doctor never
    opens one where it expects a file. A checkpoint unpacked by root can hold them."""
    try:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except OSError:
        return  # absent (or unreadable): the open itself says so
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        raise OSError(errno.EINVAL, "not a regular file (a device node); not opened")


def open_dir_nofollow(path: str) -> int:
    """A descriptor of directory `path`, refusing a symlink as its last component (ELOOP/ENOTDIR)."""
    return os.open(path, os.O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)


def open_inside(root: str, name: str, flags: int, allowed: str | None = None, mode: int = 0o644) -> int:
    """Open `root/name` with `flags`, never leaving `allowed` (default allowed_root(root)): PathEscape when its
    resolved path is outside; OSError(ELOOP) when a component turns into a symlink during the open."""
    allowed = allowed if allowed is not None else allowed_root(root)
    where = escapes(root, name, allowed)
    if where is not None:
        raise PathEscape(errno.EXDEV, f"{name} leads to {where}, outside {allowed}")
    real_allowed = os.path.realpath(allowed)
    rel = os.path.relpath(os.path.realpath(os.path.join(root, name)), real_allowed)
    parts = [p for p in rel.split(os.sep) if p not in ("", ".")]
    if not parts:
        raise IsADirectoryError(errno.EISDIR, f"{name} is the checkpoint directory itself")
    fd = os.open(real_allowed, os.O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    try:
        for part in parts[:-1]:
            nfd = os.open(part, os.O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nfd
        refuse_device(parts[-1], fd)
        return os.open(parts[-1], flags | O_NOFOLLOW | O_CLOEXEC, mode, dir_fd=fd)
    finally:
        os.close(fd)
