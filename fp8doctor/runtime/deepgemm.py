"""The runtime-only rule for F32 scales handed to DeepGEMM: every entry, padding included, must
pass `(bits & 0x807fffff) == 0` (+0.0, or a positive power of two with no mantissa bits); DeepGEMM
asserts it and a failing entry stops the kernel with a sticky CUDA error 719."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from fp8doctor.checkpoint.header import TensorInfo
from fp8doctor.findings import Finding, Region
from fp8doctor.layouts.codecs import describe_value
from fp8doctor.layouts.model import ScaleLayout
from fp8doctor.rules.catalog import emit
from fp8doctor.rules.content import RULE_SLAB

RULE = "scale-deepgemm-invalid"
MASK = 0x807FFFFF


def bad_mask(raw: np.ndarray) -> np.ndarray:
    return (raw & MASK) != 0


def check_deepgemm(t: TensorInfo, layout: ScaleLayout | None,
                   read_rows: Callable[[int, int], bytes | memoryview]) -> list[Finding]:
    """Findings for the real and the padded entries of F32 scale `t` that fail the check (row slabs
    of at most RULE_SLAB bytes, so any size is checked in bounded memory)."""
    shape = t.shape
    box = layout.logical_shape if layout is not None else shape
    regions = {Region.LOGICAL: _Bad(), Region.PADDING: _Bad()}
    if not shape:
        raw = np.frombuffer(read_rows(0, 1), dtype="<u4").reshape(1)
        regions[Region.LOGICAL].add(bad_mask(raw), raw, 0)
        return _findings(t, layout, regions)
    row_items = math.prod(shape[1:])
    rows_per = max(1, RULE_SLAB // max(1, 4 * row_items))
    rest = tuple(slice(0, b) for b in box[1:])
    for r0 in range(0, shape[0], rows_per):
        n = min(rows_per, shape[0] - r0)
        raw = np.frombuffer(read_rows(r0, n), dtype="<u4").reshape(n, *shape[1:])
        bad = bad_mask(raw)
        if not bad.any():
            continue
        in_box = np.zeros(raw.shape, dtype=bool)
        in_box[(slice(0, max(0, min(n, box[0] - r0))), *rest)] = True
        regions[Region.LOGICAL].add(bad & in_box, raw, r0 * row_items)
        regions[Region.PADDING].add(bad & ~in_box, raw, r0 * row_items)
    return _findings(t, layout, regions)


class _Bad:
    """Entries of one region that fail the check: how many, the first (flat index) and its bits."""

    def __init__(self) -> None:
        self.count = 0
        self.first: int | None = None
        self.value = 0

    def add(self, sel: np.ndarray, raw: np.ndarray, base: int) -> None:
        k = int(np.count_nonzero(sel))
        if not k:
            return
        if self.first is None:
            local = int(sel.reshape(-1).argmax())
            self.first, self.value = base + local, int(raw.reshape(-1)[local])
        self.count += k


def _findings(t: TensorInfo, layout: ScaleLayout | None, regions: dict[Region, _Bad]) -> list[Finding]:
    out = []
    for region, acc in regions.items():
        count, first, value = acc.count, acc.first, acc.value
        if not count or first is None:
            continue
        index = tuple(int(i) for i in np.unravel_index(first, t.shape)) if t.shape else ()
        which = "real" if region is Region.LOGICAL else "padded"
        total = (math.prod(layout.logical_shape) if layout is not None else t.numel) if region is Region.LOGICAL \
            else (layout.padded_count if layout is not None else 0)
        msg = (f"{count:,} of {total:,} {which} entries of {t.name} {'is' if count == 1 else 'are'} neither +0.0 "
               f"nor a positive power of two (first {describe_value('f32', value)}, bits 0x{value:08X}, at "
               f"{list(index)}): DeepGEMM asserts (bits & 0x807fffff) == 0 and stops with CUDA error 719")
        found = emit(RULE, None, t.name, msg, count=count, index=index,
                     fixable=region is Region.PADDING and layout is not None and layout.trusted)
        out.append(replace(found, region=region))  # the catalog's region is logical; padded entries say so
    return out
