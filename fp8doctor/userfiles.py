"""Files the user names on the command line: reports (`scan -o FILE`, `--write-baseline FILE`) and
inputs (`--config FILE`, a baseline).

Writing: atomic (a temp file in the same directory, then rename) only when FILE is a regular file
or does not exist. A symlink, device or FIFO is written through, never replaced (`-o /dev/null` run
as root must not turn /dev/null into a regular file); a directory is refused.

A report path inside the scanned checkpoint must stay inside it: a symlink there (the file or a
directory on the way) leading outside is refused, not written through.

Reading: regular files only, and at most `limit` bytes, so a FIFO or /dev/zero named as an input is
a one-line error instead of a hang or an out-of-memory.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Sequence

from fp8doctor.checkpoint.paths import leads_out_of

O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def write_file(dest: str, data: str | bytes | Iterable[str | bytes],
               checkpoint: str | Sequence[str] | None = None) -> None:
    """Write `data` (text, bytes, or pieces of text written as they come) to `dest` as described
    above; OSError (with strerror) when it cannot. `checkpoint` (a local checkpoint directory, or
    several): a `dest` inside one that leads outside through one of its symlinks is refused, never
    written through (its links are the checkpoint author's; the report holds names the author chose)."""
    for root in [checkpoint] if isinstance(checkpoint, str) else checkpoint or ():
        where = leads_out_of(dest, root)
        if where is not None:
            raise OSError(errno.EXDEV, f"it lies in the checkpoint but leads to {where}, outside the checkpoint; "
                          "refusing to write through a link the checkpoint holds")
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory")
    if st is not None and not stat.S_ISREG(st.st_mode):
        # a symlink, device, FIFO or socket: write through it, never replace it
        fd = os.open(dest, os.O_WRONLY | O_CLOEXEC | (os.O_TRUNC if not stat.S_ISLNK(st.st_mode) else 0))
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                os.ftruncate(fd, 0)  # a symlink to a regular file: its target gets the new content
            _write_all(fd, data)
        finally:
            os.close(fd)
        return
    directory = os.path.dirname(os.path.abspath(dest))
    tmp = os.path.join(directory, f".{os.path.basename(dest)}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if st is not None:
            try:
                os.chmod(tmp, stat.S_IMODE(st.st_mode))
            except OSError:
                pass
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _write_all(fd: int, data: str | bytes | Iterable[str | bytes]) -> None:
    pieces = [data] if isinstance(data, (str, bytes)) else data
    buf: list[bytes] = []
    size = 0
    for piece in pieces:
        raw = piece.encode("utf-8") if isinstance(piece, str) else piece
        buf.append(raw)
        size += len(raw)
        if size >= 1 << 20:  # in blocks of about 1 MiB: few syscalls, bounded memory
            _write_bytes(fd, b"".join(buf))
            buf, size = [], 0
    if buf:
        _write_bytes(fd, b"".join(buf))


def _write_bytes(fd: int, raw: bytes) -> None:
    view = memoryview(raw)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def read_file(path: str, limit: int) -> bytes:
    """The whole of a regular file of at most `limit` bytes; OSError otherwise (one-line strerror)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or \
                stat.S_ISBLK(st.st_mode) else "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise OSError(errno.EINVAL, f"{kind}, not a regular file")
        if st.st_size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit:,} bytes")
        chunks, got = [], 0
        while got <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if got > limit:
            raise OSError(errno.EFBIG, f"larger than {limit:,} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)
