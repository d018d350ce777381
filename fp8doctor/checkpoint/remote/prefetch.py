"""RemoteFile, the byte source of one remote shard: keeps the header probe, and fetches the ranges the
scanner announces (`prefetch`) ahead of it, `concurrency` at a time within `prefetch_bytes`."""

from __future__ import annotations

import bisect
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fp8doctor.checkpoint.model import CheckpointError
from fp8doctor.checkpoint.source import ReadError

if TYPE_CHECKING:
    from fp8doctor.checkpoint.remote.store import RemoteStore


@dataclass
class _Planned:
    start: int
    end: int
    future: Future[bytes] | None = None


class RemoteFile:
    """A ByteSource over range requests. Keeps the first ~100 kB (the header, usually whole) and
    fetches the ranges announced with `prefetch` ahead of the reader, `concurrency` at a time."""

    def __init__(self, store: RemoteStore, name: str) -> None:
        self.name = name
        self.path = store.path_of(name)
        self._store = store
        self._size: int | None = None
        self._error: BaseException | None = None
        self._head = b""
        self._lock = threading.Lock()
        self._head_lock = threading.Lock()
        self._plan: dict[int, _Planned] = {}
        self._starts: list[int] = []
        self._cursor = 0
        self._inflight_bytes = 0
        self._inflight = 0
        self.bytes_read = 0

    def size(self) -> int:
        if self._size is None:
            with self._head_lock:
                if self._error is not None:
                    raise self._error
                if self._size is None:
                    try:
                        data, total = self._store.fetch(self.name, 0, self._store.options.head_probe)
                    except (OSError, CheckpointError) as e:
                        self._error = e
                        raise
                    self._head, self._size = data, total
        return self._size

    def probe(self) -> None:
        """size() for a background thread: errors are kept and raised to the reader."""
        try:
            self.size()
        except (OSError, CheckpointError):
            pass

    def pread(self, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        size = self.size()
        end = offset + length
        if offset < 0 or end > size:
            raise ReadError(f"{self.path}: wanted {length} bytes at offset {offset}, the file has {size}")
        head = self._head
        if end <= len(head):
            data = head[offset:end]
        elif offset < len(head):  # starts in the probe's bytes: fetch only the rest
            rest = self._take(len(head), end)
            if rest is None:
                rest = self._fetch(len(head), end)
            if 0 < offset <= 8:  # the rest of a header larger than the probe (parse_header): keep it
                with self._lock:
                    if len(self._head) == len(head):
                        self._head = head + rest
            data = head[offset:] + rest
        else:
            taken = self._take(offset, end)
            data = taken if taken is not None else self._fetch(offset, end)
        with self._lock:
            self.bytes_read += length
        return data

    def prefetch(self, ranges: list[tuple[int, int]]) -> None:
        """Announce the [start, end) ranges about to be read (in order): they are fetched ahead."""
        self.size()
        with self._lock:
            for start, end in ranges:
                start = max(start, len(self._head))  # the probe's bytes are at hand already
                if end > start and start not in self._plan:
                    self._plan[start] = _Planned(start, end)
            self._starts = sorted(self._plan)
            self._cursor = 0
            self._fill()

    def _fetch(self, start: int, end: int) -> bytes:
        return self._store.fetch(self.name, start, end)[0]

    def _submit(self, p: _Planned) -> None:
        p.future = self._store.pool().submit(self._fetch, p.start, p.end)
        self._inflight += 1
        self._inflight_bytes += p.end - p.start

    def _fill(self) -> None:
        opts = self._store.options
        while self._cursor < len(self._starts):
            p = self._plan.get(self._starts[self._cursor])
            if p is not None and p.future is None:
                if self._inflight and (self._inflight >= 2 * opts.concurrency
                                       or self._inflight_bytes + p.end - p.start > opts.prefetch_bytes):
                    return
                self._submit(p)
            self._cursor += 1

    def _take(self, offset: int, end: int) -> bytes | None:
        with self._lock:
            i = bisect.bisect_right(self._starts, offset) - 1
            p = self._plan.get(self._starts[i]) if i >= 0 else None
            if p is None or end > p.end:
                return None
            if p.future is None:
                self._submit(p)
            future = p.future
        assert future is not None
        try:
            data = future.result()
        except BaseException:
            self._done(p)
            raise
        if end >= p.end:
            self._done(p)
        return data[offset - p.start:end - p.start]

    def _done(self, p: _Planned) -> None:
        with self._lock:
            if self._plan.pop(p.start, None) is not None:
                self._inflight -= 1
                self._inflight_bytes -= p.end - p.start
                self._fill()

    def close(self) -> None:
        with self._lock:
            for p in self._plan.values():
                if p.future is not None:
                    p.future.cancel()
            self._plan.clear()
            self._starts = []
            self._inflight = self._inflight_bytes = 0
