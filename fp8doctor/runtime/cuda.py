"""The device side of the in-memory checks: the scan's Tally (rules/tally.py) decided on the GPU.

For each CUDA scale tensor the scan's clean/unsure decision needs a histogram of the sign+exponent
field over the real box, the count of padded entries that are not the fill, and (ue8m0 float
scales) the count of entries with mantissa bits. Real scales occupy a handful of bins, so the
histogram is never built entry by entry (a bincount's atomics on a few hot bins run at ~2 GB/s):

1. Tensors of one kind (device, dtype, stored shape, real box, fill, DeepGEMM check) are stacked
   into a staging buffer of at most STAGE_BYTES (one `torch.stack`: a few copy kernels for
   thousands of small tensors); a tensor larger than that is read in place, in row slabs of at most
   STAGE_BYTES, as views. The real box and the padding are strided views of the batch: no copies.
2. Quick test, a few fused reductions over the whole batch at once: the field's min and max per
   tensor, entries with mantissa bits, padded entries that are not the fill, entries failing
   DeepGEMM's `(bits & 0x807fffff) == 0`. One small copy to the host.
3. For tensors whose field spans at most WINDOW bins inside the valid range (every real scale
   tensor), the histogram is `count(field <= min + j)` for j < span: span - 1 more reductions over
   the batch and one more small copy. A wider tensor gets its own bincount (shared-memory bins).
4. `tally.verdicts` decides on the host from those histograms, exactly as for files.

Only tensors that are not clean by then are read back to the host and judged by the scan's own
rules (runtime/check.py). Extra device memory is bounded by the staging batch and its temporaries,
whatever the number or size of the scale tensors: the batch (STAGE_BYTES), the field (STAGE_BYTES,
F32 only), and each count's comparison (1 byte an entry) which torch's `sum` widens to int64 (8
bytes an entry): at most (2 + 9 / entry size) x STAGE_BYTES, i.e. 88 MiB for 1-byte (E8M0) and
34 MiB for F32 scales (rows of a scale tensor larger than STAGE_BYTES count as a batch). Measured on
an H200: 77.7 and 34.2 MiB (benchmarks/RESULTS.md, "In-memory checks (CUDA)"); the widening is
the next thing to remove (counts into an int32 buffer, a few tensors at a time).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from fp8doctor.checkpoint.header import TensorInfo
from fp8doctor.layouts.model import ENCODINGS, ScaleLayout
from fp8doctor.rules.content import UNINIT_FAR, ContentOptions
from fp8doctor.rules.judge import tally_for
from fp8doctor.rules.tally import Tally, verdicts
from fp8doctor.runtime.deepgemm import MASK
from fp8doctor.runtime.tensors import MemTensor, torch_module

STAGE_BYTES = 8 << 20
"""Bytes of scale entries reduced in one batch (bounds the extra device memory, see above)."""
MAX_TENSORS = 4096
"""Tensors stacked into one batch (bounds the per-batch summaries and the stack's input list)."""
WINDOW = 16
"""Widest field span (bins) counted by comparisons; a wider tensor gets its own bincount."""

_MASK_I32 = MASK - (1 << 32)  # 0x807fffff as a signed int32


@dataclass(frozen=True)
class DeviceOutcome:
    """What the device decided about one scale tensor."""

    judged: bool
    """False when the tally does not know the encoding (E4M3 scales): the host judges it."""
    median: int | None = None
    """The median exponent when no rule on the real box can fire (Tally.verdict), else None."""
    pad_bad: int = 0
    """Padded entries that are not the fill."""
    deepgemm_bad: int = 0
    """Entries failing the DeepGEMM check (counted only for tensors that asked for it)."""

    @property
    def clean(self) -> bool:
        return self.judged and self.median is not None and not self.pad_bad


def _signed(value: int, dtype: Any, torch: Any) -> int:
    """A raw unsigned value as the (signed) torch dtype holding the raw entries sees it."""
    if dtype == torch.uint8:
        return value
    bits = torch.iinfo(dtype).bits
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


def _padding_views(x: Any, shape: tuple[int, ...], box: tuple[int, ...]) -> list[Any]:
    """The complement of the box at the origin, as disjoint views of batch `x` [n, *shape] (as
    Tally._add walks it); empty views left out."""
    views = []
    if box[0] < shape[0]:
        views.append(x[:, box[0]:])
    lead = x[:, :box[0]]
    for axis in range(1, len(shape)):
        if box[axis] < shape[axis]:
            idx = (slice(None), slice(None), *(slice(0, b) for b in box[1:axis]), slice(box[axis], None))
            views.append(lead[idx])
    return [v for v in views if v.numel()]


class _Kind:
    """What is counted for tensors of one kind (the scan's Tally for their dtype, shape and layout)."""

    def __init__(self, torch: Any, tally: Tally, encoding: str, dg: bool, raw_dtype: Any) -> None:
        self.torch, self.tally, self.encoding, self.dg = torch, tally, encoding, dg
        _, self.shift, self.bins, self.lo, self.hi, _, _ = tally.enc
        self.plain = self.shift == 0 and self.bins == 256 and raw_dtype == torch.uint8  # E8M0: the byte is the field
        self.want = None if tally.want is None else _signed(tally.want, raw_dtype, torch)
        self.mant = tally.mant

    def field(self, real: Any) -> Any:
        return real if self.plain else real.bitwise_right_shift(self.shift).bitwise_and_(self.bins - 1)


class _Slab:
    """One batch [n, *rows] of entries: n whole tensors stacked, or one row slab of a large tensor."""

    def __init__(self, x: Any, shape: tuple[int, ...], box: tuple[int, ...]) -> None:
        self.x, self.shape, self.box = x, shape, box
        self.dims = tuple(range(1, x.dim()))
        self.n_box = math.prod(box)

    def real(self) -> Any:
        return self.x[(slice(None), *(slice(0, b) for b in self.box))]

    def quick(self, kind: _Kind) -> Any:
        """[n, 5] int64 on the device: field min, field max, entries with mantissa bits, padded
        entries not the fill, entries failing DeepGEMM (zeros where not counted)."""
        torch = kind.torch
        n = self.x.shape[0]
        zeros = torch.zeros(n, dtype=torch.int64, device=self.x.device)
        lo = hi = mant = zeros
        if self.n_box:
            real = self.real()
            f = kind.field(real)
            lo, hi = f.amin(self.dims).long(), f.amax(self.dims).long()
            del f
            if kind.mant:
                mant = real.bitwise_and(kind.mant).ne_(0).sum(self.dims)
        pad = zeros
        if kind.want is not None:
            for v in _padding_views(self.x, self.shape, self.box):
                pad = pad + v.ne(kind.want).sum(self.dims)
        dg = self.x.bitwise_and(_MASK_I32).ne_(0).sum(self.dims) if kind.dg else zeros
        return torch.stack([lo, hi, mant, pad, dg], 1)

    def counts(self, kind: _Kind, lo: Any, span: int) -> Any:
        """[n, span - 1] int64: entries of the real box with field <= lo + j, for j < span - 1."""
        f = kind.field(self.real())
        thr = lo.view(-1, 1) + kind.torch.arange(span - 1, device=lo.device)  # one [n, span - 1] of thresholds
        shape = (-1, *([1] * (f.dim() - 1)))
        cols = [f.le(thr[:, j].view(shape)).sum(self.dims) for j in range(span - 1)]
        return kind.torch.stack(cols, 1)

    def bincount(self, kind: _Kind, row: int) -> Any:
        f = kind.field(self.real()[row:row + 1])
        return kind.torch.bincount(f.reshape(-1), minlength=kind.bins)  # integer codes: no widening


Unit = tuple[list[int], list[_Slab]]
"""Tensor positions and the slabs that hold them."""


def extra_bound(itemsize: int) -> int:
    """The most extra device memory a check of scales of this entry size takes (see above)."""
    return 2 * STAGE_BYTES + 9 * STAGE_BYTES // itemsize


def _units(kind: _Kind, raws: list[Any], shape: tuple[int, ...], box: tuple[int, ...]) -> Iterator[Unit]:
    """Batches over tensors `raws` of one kind, made one at a time (a staging batch lives only while
    it is reduced): small tensors are stacked several to a slab; a tensor over STAGE_BYTES is one
    unit of row-slab views (no copy)."""
    torch = kind.torch
    nbytes = math.prod(shape) * raws[0].element_size()
    per = min(MAX_TENSORS, STAGE_BYTES // max(1, nbytes))
    if per >= 1:
        for a in range(0, len(raws), per):
            part = raws[a:a + per]
            x = part[0].unsqueeze(0) if len(part) == 1 else torch.stack(part)
            yield list(range(a, a + len(part))), [_Slab(x, shape, box)]
            del x
        return
    row_bytes = math.prod(shape[1:]) * raws[0].element_size()
    step = max(1, STAGE_BYTES // max(1, row_bytes))
    for i, raw in enumerate(raws):
        slabs = []
        for r0 in range(0, shape[0], step):
            n = min(step, shape[0] - r0)
            sub = (min(n, max(0, box[0] - r0)), *box[1:])
            slabs.append(_Slab(raw[r0:r0 + n].unsqueeze(0), (n, *shape[1:]), sub))
        yield [i], slabs


def _decide(kind: _Kind, units: Iterator[Unit], n_tensors: int,
            content: ContentOptions) -> list[DeviceOutcome]:
    torch = kind.torch
    out: list[DeviceOutcome | None] = [None] * n_tensors
    for ids, slabs in units:
        single = len(ids) == 1 and len(slabs) > 1  # one large tensor in row slabs: combine them
        q = torch.cat([s.quick(kind) for s in slabs]).cpu().numpy()
        if single:
            has = np.array([s.n_box > 0 for s in slabs])
            lo = int(q[has, 0].min()) if has.any() else 0
            hi = int(q[has, 1].max()) if has.any() else -1
            q = np.array([[lo, hi, *q[:, 2:].sum(axis=0)]], dtype=np.int64)
        n_box = sum(s.n_box for s in slabs) if single else slabs[0].n_box
        lo, hi, mant, pad, dg = (q[:, c] for c in range(5))
        ok = (lo >= kind.lo) & (hi <= kind.hi) & (mant == 0) & (n_box > 0)
        span = hi - lo + 1
        window = ok & (span <= WINDOW)
        wmax = int(span[window].max()) if window.any() else 1
        cum = np.zeros((len(ids), 0), dtype=np.int64)
        if wmax > 1:
            lo_dev = torch.from_numpy(lo).to(slabs[0].x.device)
            cum = sum(s.counts(kind, lo_dev, wmax).cpu().numpy() for s in slabs)
        # entries at field lo + j, j < wmax: zero past a tensor's own span (its cumulative count is n_box there)
        per_bin = np.diff(np.concatenate([cum, np.full((len(ids), 1), n_box, dtype=np.int64)], axis=1),
                          axis=1, prepend=0)
        wide = np.zeros((len(ids), kind.bins + wmax), dtype=np.int64)
        rows = np.flatnonzero(window)
        wide[rows[:, None], lo[rows, None] + np.arange(wmax)] = per_bin[rows]
        hists = wide[:, :kind.bins]
        for r in np.flatnonzero(ok & ~window).tolist():  # rare: a wide but valid span, its own histogram
            hists[r] = sum(s.bincount(kind, 0 if single else r).cpu().numpy() for s in slabs if s.n_box)
        medians: list[int | None] = [None] * len(ids)
        sel = np.flatnonzero(ok)
        if sel.size:
            got = verdicts(kind.encoding, hists[sel], mant[sel] if kind.mant else None, content.outlier_span,
                           UNINIT_FAR)
            for r, m in zip(sel.tolist(), got):
                medians[r] = m
        for i, m, p, g in zip(ids, medians, pad.tolist(), dg.tolist()):
            out[i] = DeviceOutcome(True, m, p, g)
        del slabs  # the staging batch, before the next one is stacked
    return out  # type: ignore[return-value]


def device_tallies(items: list[tuple[MemTensor, ScaleLayout | None, TensorInfo, bool]],
                   content: ContentOptions) -> dict[str, DeviceOutcome]:
    """For each (CUDA tensor, layout, info, deepgemm?) item, what the device decided (see
    DeviceOutcome); the scan's Tally sets up what is counted (box, fill, mantissa check)."""
    torch = torch_module()
    results: dict[str, DeviceOutcome] = {}
    groups: dict[tuple, list[int]] = {}
    made: dict[tuple, Tally | None] = {}  # what is counted depends only on these: one Tally per kind
    for i, (mt, layout, info, dg) in enumerate(items):
        what = (info.dtype, info.shape, None if layout is None else (layout.encoding, layout.logical_shape,
                                                                      layout.has_padding))
        tally = made[what] if what in made else made.setdefault(what, tally_for(layout, info, content))
        if tally is None:
            results[info.name] = DeviceOutcome(False, deepgemm_bad=1 if dg else 0)  # the host checks it all
            continue
        encoding = layout.encoding if layout is not None else ENCODINGS[info.dtype]
        groups.setdefault((str(mt.raw.device), what, encoding, dg and encoding == "f32"), []).append(i)
    with torch.no_grad():
        for (_, kind_key, encoding, dg), idx in groups.items():
            tally = made[kind_key]
            assert tally is not None
            raws = [items[i][0].raw for i in idx]
            kind = _Kind(torch, tally, encoding, dg, raws[0].dtype)
            shape, box = tuple(raws[0].shape), tuple(tally.box)
            for i, outcome in zip(idx, _decide(kind, _units(kind, raws, shape, box), len(raws), content)):
                results[items[i][2].name] = outcome
    return results
