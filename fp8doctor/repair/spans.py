"""The unit of I/O of `fix`: a span of one scale tensor, read once and written once.

A fix changes byte ranges (padded entries); a padded column of a scale tensor is one range per
row, thousands per tensor. Ranges of one tensor whose gaps are shorter than a page are grouped
into one span: every page of the span is dirtied anyway, so rewriting the bytes between the ranges
(read just before, written back identical) costs no extra disk I/O, and turns thousands of
`pwrite` calls into one. Only the ranges' bytes ever take a new value; everything between them is
written back as it was read.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

PAGE = 4096
"""Ranges closer than this share one write (and one read)."""

MAX_SPAN = 64 << 20
"""A span never grows past this many bytes (bounded buffers for huge tensors)."""


@dataclass(slots=True)
class Span:
    """Byte ranges of one tensor covered by one read and one write."""

    offset: int          # file offset of the span's first byte
    length: int          # bytes from `offset`
    pos: np.ndarray      # int64: positions of the ranges' bytes inside the span, ascending
    old: np.ndarray      # uint8: the bytes the ranges held before the fix, in `pos` order
    new: np.ndarray      # uint8: the bytes the fix writes there
    tensor: str

    @property
    def nbytes(self) -> int:
        """Bytes inside the ranges (the rest of the span is written back unchanged)."""
        return int(self.pos.size)


def group(offsets: np.ndarray, lengths: np.ndarray, old: np.ndarray, new: np.ndarray, tensor: str) -> Iterator[Span]:
    """Spans of sorted, disjoint byte ranges (absolute `offsets`, `lengths`; `old`/`new` their bytes
    concatenated in range order)."""
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    n = offsets.size
    if n == 0:
        return
    ends = offsets + lengths
    if int(lengths.sum()) != old.size or old.size != new.size:
        raise ValueError(f"{tensor}: range bytes do not match the ranges")
    # a new span where the gap to the previous range is a page or more, or the span would grow too large
    breaks = np.flatnonzero(offsets[1:] - ends[:-1] >= PAGE) + 1
    bounds = [0, *breaks.tolist(), n]
    cum = np.concatenate(([0], np.cumsum(lengths)))
    for a, b in itertools.pairwise(bounds):
        while a < b:
            lo = int(offsets[a])
            # the last range that still keeps the span within MAX_SPAN (at least one range)
            c = max(a + 1, int(np.searchsorted(ends[a:b], lo + MAX_SPAN, side="right")) + a)
            off, ln = offsets[a:c], lengths[a:c]
            total = int(cum[c] - cum[a])
            pos = np.repeat(off - lo - (cum[a:c] - cum[a]), ln) + np.arange(total, dtype=np.int64)
            yield Span(lo, int(ends[c - 1]) - lo, pos, old[cum[a]:cum[c]], new[cum[a]:cum[c]], tensor)
            a = c


def pread_exact(fd: int, length: int, offset: int) -> bytearray:
    """`length` bytes at `offset` (shorter only at end of file)."""
    buf = bytearray(length)
    view = memoryview(buf)
    got = 0
    while got < length:
        n = os.preadv(fd, [view[got:]], offset + got)
        if n <= 0:
            break
        got += n
    view.release()
    if got < length:
        del buf[got:]
    return buf


def current(fd: int, span: Span) -> np.ndarray:
    """What the span's ranges hold on disk now (uint8, in `pos` order)."""
    buf = pread_exact(fd, span.length, span.offset)
    if len(buf) != span.length:
        return np.zeros(0, dtype=np.uint8)
    out: np.ndarray = np.frombuffer(buf, dtype=np.uint8)[span.pos]
    return out


def holds(fd: int, span: Span, want: np.ndarray) -> bool:
    cur = current(fd, span)
    return cur.size == want.size and bool(np.array_equal(cur, want))


def composed(fd: int, span: Span, to_new: bool) -> bytearray:
    """The span as it must be: read now, the ranges set to their new (or old) bytes."""
    buf = pread_exact(fd, span.length, span.offset)
    if len(buf) != span.length:
        raise OSError(5, f"short read at 0x{span.offset:x}")
    np.frombuffer(buf, dtype=np.uint8)[span.pos] = span.new if to_new else span.old
    return buf
