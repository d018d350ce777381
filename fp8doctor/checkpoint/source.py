"""Byte sources: where a shard's bytes come from. Local files are read with os.pread, never mmap
(mmap read-ahead pulls whole weights into memory on cold or sparse files)."""

from __future__ import annotations

import errno
import os
import stat
from typing import Protocol


class ByteSource(Protocol):
    """Random access to one file's bytes. Remote sources implement the same three methods."""

    def size(self) -> int: ...

    def pread(self, offset: int, length: int) -> bytes: ...

    def close(self) -> None: ...


class ReadError(OSError):
    """A read returned fewer bytes than asked: the file is shorter than it was or unreadable."""


class LocalFile:
    """A local file read with os.pread. Keeps one descriptor open; counts the bytes it read."""

    def __init__(self, path: str | os.PathLike[str], fd: int | None = None) -> None:
        """Open `path`, or take over `fd` (already opened for reading, for example by
        fp8doctor.checkpoint.paths.open_inside; `path` then only names it in messages)."""
        self.path = os.fspath(path)
        # O_NONBLOCK: opening a FIFO named like a shard must not hang; only regular files are read
        self._fd = fd if fd is not None else os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
                                                     | getattr(os, "O_NONBLOCK", 0))
        st = os.fstat(self._fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(self._fd)
            self._fd = -1
            raise OSError(errno.EINVAL, "not a regular file")
        self._size = st.st_size
        self.mtime_ns = st.st_mtime_ns
        self.identity = (st.st_dev, st.st_ino)
        """The file the scan read: fix writes only to a descriptor with this (st_dev, st_ino)."""
        self.bytes_read = 0

    def size(self) -> int:
        return self._size

    def pread(self, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        chunks = []
        got = 0
        while got < length:
            chunk = os.pread(self._fd, min(length - got, 1 << 30), offset + got)
            if not chunk:
                raise ReadError(f"{self.path}: wanted {length} bytes at offset {offset}, file ends after {got}")
            chunks.append(chunk)
            got += len(chunk)
        self.bytes_read += got
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> LocalFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_small_file(path: str, limit: int, fd: int | None = None) -> bytes:
    """Read a whole JSON side file (index, config): regular files only, at most `limit` bytes."""
    with LocalFile(path, fd) as f:
        if f.size() > limit:
            raise OSError(errno.EFBIG, f"larger than {limit:,} bytes")
        return f.pread(0, f.size())
