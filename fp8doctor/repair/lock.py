"""One fix per checkpoint at a time, and one per journal directory.

The checkpoint lock is an flock on the checkpoint directory itself, so two fixes with different
`--journal-dir` still exclude each other (and a read-only checkpoint directory can be locked). The
journal directory's `lock` file holds the owner's pid, host and start time (for the error message)
and is flocked too. Both locks are dropped by the kernel when their owner dies, so a SIGKILLed fix
never leaves a lock that blocks the next one (its file is simply taken over, and reported as stale).

The lock file is opened relative to the journal directory's descriptor, never through a symlink,
and must be a regular file with one link: a planted `lock -> ../victim` or a hard link to a file
outside is refused, never truncated.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat
import time

from fp8doctor.checkpoint.paths import O_CLOEXEC, O_DIRECTORY, O_NOFOLLOW, refuse_device
from fp8doctor.repair.errors import FixError, LockHeld

LOCK_NAME = "lock"


class Lock:
    def __init__(self, root: str, directory: str | None = None) -> None:
        """Lock the checkpoint directory `root`; the lock file lives in `directory` (the journal
        directory; default: `root` itself is the journal directory, as in older callers)."""
        self.root = root
        self.directory = directory if directory is not None else root
        self.path = os.path.join(self.directory, LOCK_NAME)
        self._root_fd = -1
        self._dir_fd = -1
        self._fd = -1
        self.stale: str | None = None
        """The previous owner's line when a dead owner's lock file was taken over."""

    def _owner(self) -> str:
        try:
            refuse_device(LOCK_NAME, self._dir_fd)
            fd = os.open(LOCK_NAME, os.O_RDONLY | os.O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC, dir_fd=self._dir_fd)
        except OSError:
            return "another process"
        try:
            return os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        finally:
            os.close(fd)

    def _held(self, what: str) -> LockHeld:
        return LockHeld(f"another fix is running on this {what} ({self._owner()}; lock {self.path}); "
                        "wait for it to finish")

    def acquire(self) -> Lock:
        try:
            self._acquire()
        except BaseException:
            self._close()
            raise
        return self

    def _acquire(self) -> None:
        try:
            self._root_fd = os.open(self.root, os.O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        except OSError as e:
            raise FixError(f"cannot open the checkpoint directory {self.root}: {e.strerror or e}") from None
        try:
            self._dir_fd = os.open(self.directory, os.O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        except OSError as e:
            if os.path.islink(self.directory):
                raise FixError(f"the journal directory {self.directory} is a symlink; refusing to follow it "
                               "(remove it, or pass --journal-dir DIR)") from None
            raise FixError(f"cannot open the journal directory {self.directory}: {e.strerror or e}") from None
        try:
            fcntl.flock(self._root_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise self._held("checkpoint") from None
        for _ in range(10):
            try:
                refuse_device(LOCK_NAME, self._dir_fd)
                fd = os.open(LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC, 0o644,
                             dir_fd=self._dir_fd)
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise FixError(f"the lock {self.path} is a symlink; refusing to follow it (remove it to "
                                   "continue)") from None
                if e.errno == errno.EINVAL:
                    raise FixError(f"the lock {self.path} is not a regular file; refusing to open it (remove it to "
                                   "continue)") from None
                raise FixError(f"cannot open the lock {self.path}: {e.strerror or e}") from None
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                os.close(fd)
                what = "not a regular file" if not stat.S_ISREG(st.st_mode) else f"has {st.st_nlink} hard links"
                raise FixError(f"the lock {self.path} is {what}; refusing to write it (remove it to continue)")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._held("journal directory") from None
            try:
                same = st.st_ino == os.stat(LOCK_NAME, dir_fd=self._dir_fd, follow_symlinks=False).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the owner released (unlinked) it between our open and flock: retry
                os.close(fd)
                continue
            previous = os.pread(fd, 200, 0).decode(errors="replace").strip()
            self.stale = previous or None
            os.ftruncate(fd, 0)
            info = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
            os.pwrite(fd, info.encode(), 0)
            self._fd = fd
            return
        raise LockHeld(f"could not take the lock {self.path}: it keeps changing")

    def _close(self) -> None:
        for name in ("_fd", "_dir_fd", "_root_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)

    def release(self) -> None:
        if self._fd >= 0:
            try:
                if os.stat(LOCK_NAME, dir_fd=self._dir_fd, follow_symlinks=False).st_ino == os.fstat(self._fd).st_ino:
                    os.unlink(LOCK_NAME, dir_fd=self._dir_fd)
            except OSError:
                pass
        self._close()

    def __enter__(self) -> Lock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
