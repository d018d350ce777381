"""The repair plan: from an analysis, the exact bytes `fix` will write, and nothing else.

Pure apart from reading the scale tensors it patches. Every patch lies inside one
`ScaleLayout.padding_ranges()` range of a trusted layout whose finding is fixable; the plan builder
asserts it, so a layout bug can never turn into a write over real scales.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from fp8doctor.findings import Finding
from fp8doctor.layouts.codecs import raw_view
from fp8doctor.layouts.model import ScaleLayout, fill_bytes
from fp8doctor.layouts.model import fill_name as fill_name  # re-exported
from fp8doctor.repair.spans import Span, group
from fp8doctor.rules.catalog import RULES
from fp8doctor.scanner import Analysis, Progress, ScanOptions

FIX_RULE = "scale-padding-nonzero"
"""The one rule whose findings `fix` repairs."""

SAMPLE_BYTES = 16
"""Bytes of before/after shown per tensor."""


RUN_ROW = 16
"""Journal bytes a run of wrong entries costs in "runs" mode (its row in the journal's run table)."""


@dataclass(frozen=True, eq=False)
class TensorPatch:
    """Every byte `fix` writes in one scale tensor: sorted, disjoint byte ranges relative to the
    tensor's first byte (`starts`, `lengths`: int64 arrays), the bytes the plan read there (`old`,
    concatenated), and the fill (`fill` repeated is the new bytes).

    `mode` "padding": the ranges are every padded entry of the tensor (they follow from `shape` and
    `logical`, so the journal stores only the old bytes); "runs": only the runs of entries that
    differ from the fill (the journal stores a 16-byte row a run as well). The plan picks whichever
    costs the journal fewer bytes."""

    tensor: str
    file: str
    encoding: str
    offset: int
    shape: tuple[int, ...]
    logical: tuple[int, ...]
    itemsize: int
    fill: bytes
    mode: str
    starts: np.ndarray
    lengths: np.ndarray
    old: bytes
    entries: int
    runs: int
    first: int
    before: bytes

    @property
    def nbytes(self) -> int:
        """Bytes that change (entries that differ from the fill)."""
        return self.entries * self.itemsize

    @property
    def covered(self) -> int:
        """Bytes inside the ranges (what the journal keeps)."""
        return len(self.old)

    def new(self) -> bytes:
        return self.fill * (len(self.old) // self.itemsize)

    def spans(self) -> Iterator[Span]:
        old = np.frombuffer(self.old, dtype=np.uint8)
        return group(self.offset + self.starts, self.lengths, old, np.frombuffer(self.new(), dtype=np.uint8),
                     self.tensor)


@dataclass(frozen=True)
class ShardPlan:
    """Patches of one shard, plus the size and mtime the shard had when it was scanned."""

    file: str
    size: int
    mtime_ns: int
    patches: tuple[TensorPatch, ...]
    identity: tuple[int, int] | None = None
    """(st_dev, st_ino) of the file the scan read: fix writes only through a descriptor of that file."""

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.patches)


@dataclass(frozen=True)
class TensorChange:
    """What changes (or changed) in one scale tensor."""

    tensor: str
    file: str
    encoding: str
    entries: int
    nbytes: int
    runs: int
    first_offset: int
    before: bytes
    after: bytes

    def to_dict(self) -> dict[str, Any]:
        return {"tensor": self.tensor, "file": self.file, "encoding": self.encoding, "entries": self.entries,
                "bytes": self.nbytes, "runs": self.runs, "first_offset": self.first_offset,
                "before": self.before.hex(), "after": self.after.hex()}


@dataclass(frozen=True)
class RepairPlan:
    root: str
    fill: str | int
    shards: tuple[ShardPlan, ...]
    changes: tuple[TensorChange, ...]
    unfixable: tuple[Finding, ...]

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.shards)

    @property
    def empty(self) -> bool:
        return not self.shards


def phase(progress: Progress | None, label: str, total_bytes: int, files: int) -> None:
    """Start the next phase of a fix on the progress bar (planning, writing, verifying)."""
    if progress is None:
        return
    progress.finish()
    if hasattr(progress, "label"):
        progress.label = label
    progress.start(total_bytes, files)


def positions(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Every index inside the half-open ranges [starts, ends), ascending (int64)."""
    lengths = ends - starts
    total = int(lengths.sum())
    return np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(total, dtype=np.int64)


def tensor_patch(layout: ScaleLayout, data: bytes, fill: str | int) -> TensorPatch | None:
    """What fix writes in one scale tensor (None: every padded entry already holds the fill).
    Vectorised over the padded entries only: no Python per run (a padded column is one run a row)."""
    if not layout.trusted:
        raise ValueError(f"{layout.name}: layout not trusted; refusing to plan writes")
    t = layout.scale
    if len(data) != t.nbytes:
        raise ValueError(f"{t.name}: read {len(data)} bytes, tensor has {t.nbytes}")
    if not layout.has_padding:
        return None
    isz = layout.itemsize
    want = fill_bytes(fill, layout.encoding)
    want_raw = raw_view(layout.encoding, want, (1,))[0]
    raw = raw_view(layout.encoding, data, (t.numel,))
    pa, pe = layout.padding_arrays()
    idx = positions(pa, pe)  # every padded entry, ascending
    # never outside the padding (explicit: survives -O): the ranges hold exactly the entries outside the box
    if idx.size != layout.padded_count or (idx.size and (int(idx[0]) < 0 or int(idx[-1]) >= t.numel)):
        raise ValueError(f"{t.name}: padding ranges disagree with the layout's padded entries")
    bad = raw[idx] != want_raw
    entries = int(np.count_nonzero(bad))
    if not entries:
        return None
    # runs of wrong entries: consecutive in the tensor and all wrong
    cont = np.concatenate(([False], (idx[1:] == idx[:-1] + 1) & bad[:-1] & bad[1:]))
    rs = idx[bad & ~cont]
    re_ = idx[bad & ~np.concatenate((cont[1:], [False]))] + 1
    entry_bytes = np.frombuffer(data, dtype=np.uint8).reshape(t.numel, isz)
    first = int(rs[0])
    before = data[first * isz:first * isz + min(int(re_[0] - rs[0]) * isz, SAMPLE_BYTES)]
    # "padding" mode rebuilds the ranges from shape and box: not for a swizzled layout (runs are explicit)
    if layout.swizzle is None and idx.size * isz <= entries * isz + RUN_ROW * rs.size:
        mode, starts, ends, old = "padding", pa, pe, entry_bytes[idx].tobytes()
    else:
        mode, starts, ends, old = "runs", rs, re_, entry_bytes[idx[bad]].tobytes()
    nruns = int(rs.size)
    return TensorPatch(t.name, t.file, layout.encoding, t.offset, tuple(t.shape), tuple(layout.logical_shape), isz,
                       want, mode, starts * isz, (ends - starts) * isz, old, entries, nruns, t.offset + first * isz,
                       before)


def change_of(p: TensorPatch) -> TensorChange:
    return TensorChange(p.tensor, p.file, p.encoding, p.entries, p.nbytes, p.runs, p.first, p.before,
                        (p.fill * SAMPLE_BYTES)[:len(p.before)])


def build_plan(analysis: Analysis, options: ScanOptions, progress: Progress | None = None) -> RepairPlan:
    """The patches that repair every wanted fixable finding; everything else is unfixable."""
    ckpt = analysis.checkpoint
    wanted = [f for f in analysis.findings if options.wants(f)]
    by_file: dict[str, list[TensorPatch]] = {}
    changes: list[TensorChange] = []
    unfixable: list[Finding] = []
    todo: dict[str, ScaleLayout] = {}
    for f in sorted(wanted, key=lambda f: f.sort_key):
        layout = analysis.layouts.get(f.tensor or "")
        if f.rule == FIX_RULE and not f.fixable and f.severity is RULES[FIX_RULE].accepted_severity:
            continue  # padding that holds the other accepted fill throughout: a choice, left alone
        if not (f.fixable and f.rule == FIX_RULE and layout is not None and layout.trusted):
            unfixable.append(f)
            continue
        todo.setdefault(layout.name, layout)
    phase(progress, "planning", sum(lay.scale.nbytes for lay in todo.values()), len({lay.scale.file
                                                                                    for lay in todo.values()}))
    for layout in sorted(todo.values(), key=lambda lay: (lay.scale.file, lay.scale.offset)):
        p = tensor_patch(layout, ckpt.read(layout.scale), options.fill)
        if progress is not None:
            progress.advance(layout.scale.nbytes)
        if p is None:
            continue
        by_file.setdefault(layout.scale.file, []).append(p)
        changes.append(change_of(p))
    shards = []
    for file in sorted(by_file):
        src = ckpt.source(file)
        patches = tuple(sorted(by_file[file], key=lambda p: p.offset))
        for prev, nxt in itertools.pairwise(patches):
            if prev.offset + int(prev.starts[-1] + prev.lengths[-1]) > nxt.offset + int(nxt.starts[0]):
                raise ValueError(f"{file}: overlapping patches at 0x{nxt.offset:x}")
        shards.append(ShardPlan(file, src.size(), getattr(src, "mtime_ns", 0), patches, getattr(src, "identity", None)))
        if progress is not None:
            progress.file_done()
    changes.sort(key=lambda c: (c.file, c.first_offset))
    return RepairPlan(ckpt.root, options.fill, tuple(shards), tuple(changes), tuple(unfixable))
