"""The repair plan: from an analysis, the exact bytes `fix` will write, and nothing else.

Pure apart from reading the scale tensors it patches. Every patch lies inside one
`ScaleLayout.padding_ranges()` range of a trusted layout whose finding is fixable; the plan builder
asserts it, so a layout bug can never turn into a write over real scales.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from fp8doctor.findings import Finding
from fp8doctor.layouts.codecs import raw_view
from fp8doctor.layouts.model import ScaleLayout, fill_bytes
from fp8doctor.rules.catalog import RULES
from fp8doctor.scanner import Analysis, ScanOptions

FIX_RULE = "scale-padding-nonzero"
"""The one rule whose findings `fix` repairs."""

SAMPLE_BYTES = 16
"""Bytes of before/after shown per tensor."""


@dataclass(frozen=True, slots=True)
class Patch:
    """One run of consecutive padded entries to overwrite: `old` is what the plan read there."""

    file: str
    offset: int
    old: bytes
    new: bytes
    tensor: str
    encoding: str

    @property
    def length(self) -> int:
        return len(self.new)


@dataclass(frozen=True)
class ShardPlan:
    """Patches of one shard, plus the size and mtime the shard had when it was scanned."""

    file: str
    size: int
    mtime_ns: int
    patches: tuple[Patch, ...]
    identity: tuple[int, int] | None = None
    """(st_dev, st_ino) of the file the scan read: fix writes only through a descriptor of that file."""

    @property
    def nbytes(self) -> int:
        return sum(p.length for p in self.patches)


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


def fill_name(fill: str | int) -> str:
    return fill if isinstance(fill, str) else f"0x{fill:02X}"


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open [start, end) runs of True in a 1-D bool array."""
    if not mask.any():
        return []
    edges = np.diff(np.concatenate(([0], mask.view(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    return list(zip(starts.tolist(), ends.tolist()))


def tensor_patches(layout: ScaleLayout, data: bytes, fill: str | int) -> list[Patch]:
    """Runs of padded entries of one scale tensor that differ from the fill, as byte patches."""
    if not layout.trusted:
        raise ValueError(f"{layout.name}: layout not trusted; refusing to plan writes")
    t = layout.scale
    if len(data) != t.nbytes:
        raise ValueError(f"{t.name}: read {len(data)} bytes, tensor has {t.nbytes}")
    isz = layout.itemsize
    want = fill_bytes(fill, layout.encoding)
    want_raw = raw_view(layout.encoding, want, (1,))[0]
    raw = raw_view(layout.encoding, data, (t.numel,))
    ranges = layout.padding_ranges()
    # Runs of wrong entries over the whole tensor at once (a padded column is thousands of ranges)
    bad = np.zeros(t.numel, dtype=bool)
    for a, b in ranges:
        bad[a:b] = True
    bad &= raw != want_raw
    starts = [a for a, _ in ranges]
    patches = []
    for lo, hi in _runs(bad):
        a, b = ranges[bisect.bisect_right(starts, lo) - 1]
        if not a <= lo < hi <= b <= t.numel:  # never outside one padding range (explicit: survives -O)
            raise ValueError(f"{t.name}: planned entries {lo}..{hi} leave padding range {a}..{b}")
        patches.append(Patch(t.file, t.offset + lo * isz, data[lo * isz:hi * isz], want * (hi - lo), t.name,
                             layout.encoding))
    return patches


def build_plan(analysis: Analysis, options: ScanOptions) -> RepairPlan:
    """The patches that repair every wanted fixable finding; everything else is unfixable."""
    ckpt = analysis.checkpoint
    wanted = [f for f in analysis.findings if options.wants(f)]
    by_file: dict[str, list[Patch]] = {}
    changes: list[TensorChange] = []
    unfixable: list[Finding] = []
    done: set[str] = set()
    for f in sorted(wanted, key=lambda f: f.sort_key):
        layout = analysis.layouts.get(f.tensor or "")
        if f.rule == FIX_RULE and not f.fixable and f.severity is RULES[FIX_RULE].accepted_severity:
            continue  # padding that holds the other accepted fill throughout: a choice, left alone
        if not (f.fixable and f.rule == FIX_RULE and layout is not None and layout.trusted):
            unfixable.append(f)
            continue
        if layout.name in done:
            continue
        done.add(layout.name)
        patches = tensor_patches(layout, ckpt.read(layout.scale), options.fill)
        if not patches:
            continue
        by_file.setdefault(layout.scale.file, []).extend(patches)
        nbytes = sum(p.length for p in patches)
        changes.append(TensorChange(layout.name, layout.scale.file, layout.encoding, nbytes // layout.itemsize,
                                    nbytes, len(patches), patches[0].offset, patches[0].old[:SAMPLE_BYTES],
                                    patches[0].new[:SAMPLE_BYTES]))
    shards = []
    for file in sorted(by_file):
        src = ckpt.source(file)
        patches = tuple(sorted(by_file[file], key=lambda p: p.offset))
        for prev, nxt in itertools.pairwise(patches):
            if prev.offset + prev.length > nxt.offset:
                raise ValueError(f"{file}: overlapping patches at 0x{nxt.offset:x}")
        shards.append(ShardPlan(file, src.size(), getattr(src, "mtime_ns", 0), patches, getattr(src, "identity", None)))
    changes.sort(key=lambda c: (c.file, c.first_offset))
    return RepairPlan(ckpt.root, options.fill, tuple(shards), tuple(changes), tuple(unfixable))
