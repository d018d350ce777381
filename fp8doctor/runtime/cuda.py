"""The device side of the in-memory checks: the scan's Tally (rules/tally.py), filled on the GPU.

For each CUDA scale tensor the scan's clean/unsure decision needs three things: a histogram of the
sign+exponent field over the real box, the count of padded entries that are not the fill, and
(ue8m0 float scales) the count of entries with mantissa bits. They are computed here with torch
reductions over chunks of at most CHUNK entries: the chunk's pieces (real boxes and padding slabs
of many small tensors, or row slabs of a large one) are concatenated, each entry is keyed by its
tensor, and one bincount per chunk counts every tensor at once. Only those counts (a few hundred
integers per tensor) come back to the host, where `Tally.verdict` decides as it does for files.
The DeepGEMM bit check counts failing entries the same way. Extra device memory is a few times
CHUNK entries (see benchmarks/RESULTS.md, "In-memory checks (CUDA)"), whatever the model.
"""

from __future__ import annotations

import math
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

CHUNK = 1 << 22
"""Entries counted by one batch of device reductions (bounds the extra device memory)."""
MAX_TENSORS = 1024
"""Tensors keyed in one batch (bounds the bincount's output: MAX_TENSORS x 512 bins)."""

_MASK_I32 = MASK - (1 << 32)  # 0x807fffff as a signed int32


def _row_pieces(view: Any, limit: int) -> list[Any]:
    """`view` split along its leading axis into pieces of at most `limit` entries (one row when a
    row is larger)."""
    if view.numel() == 0:
        return []
    if view.dim() == 0:
        return [view.reshape(1)]
    row = max(1, math.prod(view.shape[1:]))
    step = max(1, limit // row)
    return [view[r:r + step] for r in range(0, view.shape[0], step)]


def _padding_views(raw: Any, shape: tuple[int, ...], box: tuple[int, ...]) -> list[Any]:
    """The complement of the box at the origin as disjoint views (as Tally._add walks it)."""
    views = []
    if box[0] < shape[0]:
        views.append(raw[box[0]:])
    lead = raw[:box[0]]
    for axis in range(1, len(shape)):
        if box[axis] < shape[axis]:
            idx = (slice(None), *(slice(0, b) for b in box[1:axis]), slice(box[axis], None))
            views.append(lead[idx])
    return views


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


class _Batch:
    """Pieces of one encoding, counted together when CHUNK entries or MAX_TENSORS are reached. A
    tensor split over several batches is summed on the host; each tensor is decided (tally.verdicts,
    many at once) in the flush after its last piece."""

    def __init__(self, torch: Any, device: Any, encoding: str, tally: Tally, dg: bool, content: ContentOptions,
                 results: dict[int, DeviceOutcome]) -> None:
        self.torch, self.device, self.encoding, self.content = torch, device, encoding, content
        _, self.shift, self.bins, _, _, _, self.mant_mask = tally.enc
        self.mant = tally.mant  # non-zero when mantissa bits are a finding (ue8m0 float scales)
        self.want = tally.want
        self.dg = dg
        self.results = results
        self.real: list[tuple[int, Any]] = []
        self.pad: list[tuple[int, Any]] = []
        self.entries = 0
        self.local: dict[int, int] = {}
        self.open: int | None = None  # the tensor whose pieces are being added
        self.partial: dict[int, list] = {}  # tensor -> [hist, n_mant, pad_bad, dg_bad] summed so far

    def add(self, i: int, view: Any, padding: bool) -> None:
        n = view.numel()
        if self.entries and (self.entries + n > CHUNK or (i not in self.local and len(self.local) >= MAX_TENSORS)):
            self.flush()
        self.open = i
        self.local.setdefault(i, len(self.local))
        (self.pad if padding else self.real).append((i, view))
        self.entries += n

    def close(self, i: int) -> None:
        """Every piece of tensor `i` has been added."""
        self.local.setdefault(i, len(self.local))  # a tensor with no entries is decided too
        self.open = None

    def flush(self) -> None:
        """Count every piece of the batch: one concatenation, then one bincount over keys that say
        (tensor, sign+exponent field, mantissa bits?) for real entries and (tensor, not the fill?,
        fails DeepGEMM?) for padded ones, and one copy of the counts to the host. The keys reuse the
        id buffer and the concatenated codes are rewritten in place: a few bytes per entry."""
        if not self.local:
            return
        torch = self.torch
        k = len(self.local)
        pieces = self.real + self.pad
        n_real = sum(v.numel() for _, v in self.real)
        total = self.entries
        meta = torch.tensor([[self.local[i] for i, _ in pieces], [v.numel() for _, v in pieces]], dtype=torch.int64)
        meta = meta.to(self.device, non_blocking=True)
        codes = torch.cat([v.reshape(-1) for _, v in pieces])
        keys = torch.repeat_interleave(meta[0].to(torch.int32), meta[1], output_size=total)
        if codes.dtype == torch.int16:
            codes = codes.to(torch.int32).bitwise_and_(0xFFFF)
        split = self.mant_mask != 0 and (self.mant or self.dg)  # real keys carry a mantissa-bits bit
        real_bins = k * self.bins * (2 if split else 1)
        if n_real:
            real, key = codes[:n_real], keys[:n_real]
            bit = (real & self.mant_mask).ne_(0) if split else None
            if self.shift:
                real.bitwise_right_shift_(self.shift).bitwise_and_(self.bins - 1)
            key.mul_(self.bins).add_(real)
            if bit is not None:
                key.mul_(2).add_(bit)
            del real, key, bit
        if n_real < total:
            pad, key = codes[n_real:], keys[n_real:]
            key.mul_(2).add_(pad != self.want).mul_(2)
            if self.dg:
                key.add_((pad & _MASK_I32).ne_(0))
            key.add_(real_bins)
            del pad, key
        del codes
        counts = torch.bincount(keys, minlength=real_bins + 4 * k)
        del keys
        host = counts.cpu().numpy()
        if split:
            by_bit = host[:real_bins].reshape(k, self.bins, 2)
            hists = by_bit.sum(axis=2)
            n_mant = by_bit[:, :, 1].sum(axis=1)
            dg_real = by_bit[:, self.bins // 2:, :].sum(axis=(1, 2)) + by_bit[:, :self.bins // 2, 1].sum(axis=1)
        else:
            hists = host[:real_bins].reshape(k, self.bins).copy()
            n_mant = dg_real = np.zeros(k, dtype=np.int64)
        pad4 = host[real_bins:].reshape(k, 2, 2)
        pad_bad = pad4[:, 1, :].sum(axis=1)
        dg_bad = dg_real + pad4[:, :, 1].sum(axis=1) if self.dg else np.zeros(k, dtype=np.int64)
        rest = np.stack([n_mant if self.mant else np.zeros(k, dtype=np.int64), pad_bad, dg_bad])
        done_i: list[int] = []
        done_j: list[int] = []
        for i, j in self.local.items():
            if i in self.partial or i == self.open:  # split over batches: sum on the host
                acc = self.partial.setdefault(i, [np.zeros(self.bins, dtype=np.int64), 0, 0, 0])
                acc[0] += hists[j]
                acc[1] += int(rest[0, j])
                acc[2] += int(rest[1, j])
                acc[3] += int(rest[2, j])
                if i == self.open:
                    continue
                hists[j], rest[:, j] = acc[0], acc[1:]
                del self.partial[i]
            done_i.append(i)
            done_j.append(j)
        if done_j:
            sel = np.asarray(done_j)
            medians = verdicts(self.encoding, hists[sel], rest[0, sel] if self.mant else None,
                               self.content.outlier_span, UNINIT_FAR)
            for i, j, median in zip(done_i, done_j, medians):
                self.results[i] = DeviceOutcome(True, median, int(rest[1, j]), int(rest[2, j]))
        self.real, self.pad, self.entries, self.local = [], [], 0, {}


def device_tallies(items: list[tuple[MemTensor, ScaleLayout | None, TensorInfo, bool]],
                   content: ContentOptions) -> dict[str, DeviceOutcome]:
    """For each (CUDA tensor, layout, info, deepgemm?) item, what the device decided (see
    DeviceOutcome); the scan's Tally sets up what is counted (box, fill, mantissa check)."""
    torch = torch_module()
    results: dict[int, DeviceOutcome] = {}
    batches: dict[tuple, _Batch] = {}
    made: dict[tuple, Tally | None] = {}  # what is counted depends only on these: one Tally per kind
    with torch.no_grad():
        for i, (mt, layout, info, dg) in enumerate(items):
            kind = (info.dtype, info.shape, None if layout is None else (layout.encoding, layout.logical_shape,
                                                                          layout.has_padding))
            tally = made[kind] if kind in made else made.setdefault(kind, tally_for(layout, info, content))
            if tally is None:
                results[i] = DeviceOutcome(False, deepgemm_bad=1 if dg else 0)  # the host checks it all
                continue
            encoding = layout.encoding if layout is not None else ENCODINGS[info.dtype]
            device = mt.raw.device
            key = (str(device), encoding, tally.mant, tally.want, dg and encoding == "f32")
            batch = batches.get(key)
            if batch is None:
                batch = batches[key] = _Batch(torch, device, encoding, tally, key[-1], content, results)
            raw = mt.raw
            box = tally.box
            real = raw if tuple(box) == tuple(raw.shape) else raw[tuple(slice(0, b) for b in box)]
            for piece in _row_pieces(real, CHUNK):
                batch.add(i, piece, padding=False)
            if tally.want is not None:
                for view in _padding_views(raw, tuple(raw.shape), box):
                    for piece in _row_pieces(view, CHUNK):
                        batch.add(i, piece, padding=True)
            batch.close(i)
        for batch in batches.values():
            batch.flush()
    return {items[i][2].name: outcome for i, outcome in results.items()}
