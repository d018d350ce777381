"""One fix per checkpoint at a time: a lock file in the journal directory.

The file holds the owner's pid, host and start time (for the error message); the lock itself is
an flock on it, which the kernel drops when its owner dies, so a SIGKILLed fix never leaves a lock
that blocks the next one (its file is simply taken over, and reported as stale).
"""

from __future__ import annotations

import fcntl
import os
import socket
import time

from fp8doctor.repair.errors import LockHeld

LOCK_NAME = "lock"


class Lock:
    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, LOCK_NAME)
        self._fd = -1
        self.stale: str | None = None
        """The previous owner's line when a dead owner's lock file was taken over."""

    def acquire(self) -> Lock:
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise LockHeld(f"another fix is running on this checkpoint ({owner}; lock {self.path}); "
                               "wait for it to finish") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
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
            return self
        raise LockHeld(f"could not take the lock {self.path}: it keeps changing")

    def release(self) -> None:
        if self._fd < 0:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = -1

    def __enter__(self) -> Lock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
