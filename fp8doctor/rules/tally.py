"""The fast, exact decision for the common case: a scale tensor with no finding.

The content rules (rules/content.py) build per-entry masks, which costs a dozen passes and a few
allocations of the tensor's size. For a clean tensor every one of those rules can be decided from
two numbers per entry class: a histogram of the sign+exponent field over the real box, and the
count of padded entries that differ from the fill. `Tally` accumulates those over row slabs of
bounded size (so a scale tensor of any size is checked in bounded memory) and `verdict` says
either "clean, with this median exponent" or "not sure": then the mask-based rules run and word
the findings. It never decides that a tensor has a finding, so findings are the rules' own.
"""

from __future__ import annotations

import math

import numpy as np

from fp8doctor.layouts.encodings import ALL as ALL_ENCODINGS

SLAB = 1 << 20
"""Bytes of entries histogrammed at once (np.bincount widens to 8 bytes per entry)."""
QUICK_SLABS = 8
"""Slabs the quick test takes at once (its min/max allocate nothing; the padding masks one byte an entry)."""

# encoding -> (raw dtype, shift to the sign+exponent field, bins, first and last valid field, bias,
#              mantissa mask). A valid field is a positive, finite, normal, non-zero entry.
# The valid fields of E8M0/F32/BF16 stop at their plausibility window (layouts/encodings.py): a
# value outside it is not "clean", so the mask-based rules run and report it.
_FIELDS = {
    e.name: (e.raw, f.shift, f.bins, f.lo, f.hi, f.bias, f.mantissa)
    for e in ALL_ENCODINGS if (f := e.exponent_field) is not None
}

def byte_histogram(codes: np.ndarray) -> np.ndarray:
    """np.bincount(codes, minlength=256) for a flat uint8 array, about twice as fast: bincount
    widens every entry to 8 bytes, so count byte pairs (as uint16) and fold the 256x256 table."""
    n = codes.size
    if n < 4096 or not codes.flags.c_contiguous:
        return np.bincount(codes, minlength=256)
    pairs = np.bincount(codes[:n - n % 2].view(np.uint16), minlength=1 << 16).reshape(256, 256)
    hist = pairs.sum(axis=0) + pairs.sum(axis=1)
    if n % 2:
        hist[codes[-1]] += 1
    out: np.ndarray = hist
    return out


TALLY_ITEMSIZE = {e.name: e.itemsize for e in ALL_ENCODINGS if e.exponent_field is not None}


def supported(encoding: str, shape: tuple[int, ...]) -> bool:
    return encoding in _FIELDS and len(shape) >= 1 and math.prod(shape) > 0


class Tally:
    """Histogram of the real box and padding mismatches of one scale tensor, fed row slab by slab."""

    __slots__ = ("_rest", "box", "dtype", "enc", "hi", "hist", "lo", "mant", "n_mant", "pad_bad", "quick",
                 "row_items", "shape", "want")

    def __init__(self, encoding: str, shape: tuple[int, ...], box: tuple[int, ...], want: int | None,
                 check_mantissa: bool, quick: bool = False) -> None:
        self.enc = _FIELDS[encoding]
        self.dtype = self.enc[0]
        self.shape = shape
        self.box = box
        self.want = want  # raw fill value of padded entries, None when there is no padding to check
        self.mant = self.enc[6] if check_mantissa else 0
        self.hist = np.zeros(self.enc[2], dtype=np.int64)
        self.pad_bad = 0
        self.n_mant = 0
        self.row_items = math.prod(shape[1:])
        self._rest = tuple(slice(0, b) for b in box[1:])
        # quick test (1-byte codes): only the least and greatest code of the real box, at memory speed
        self.quick = quick and self.dtype == np.uint8 and not self.enc[1] and not self.mant
        self.lo, self.hi = 1 << 16, -1

    def rows_per_slab(self) -> int:
        return max(1, SLAB // max(1, self.row_items))

    def add(self, data: bytes | memoryview, row0: int) -> None:
        """Entries of rows [row0, row0 + len(data) / row size) of the leading axis."""
        raw = np.frombuffer(data, dtype=self.dtype).reshape(-1, *self.shape[1:])
        # min/max widen nothing: larger slabs for the quick test (the padding comparison's masks stay bounded)
        step = self.rows_per_slab() * (QUICK_SLABS if self.quick else 1)
        for a in range(0, raw.shape[0], step):
            self._add(raw[a:a + step], row0 + a)

    def _add(self, raw: np.ndarray, r0: int) -> None:
        box, shift = self.box, self.enc[1]
        real_rows = min(raw.shape[0], max(0, box[0] - r0))
        real = raw[:real_rows][(slice(None), *self._rest)] if self._rest else raw[:real_rows]
        if real.size and self.quick:  # strided reductions: no copy of a padded tensor's real box
            self.lo = min(self.lo, int(real.min()))
            self.hi = max(self.hi, int(real.max()))
        elif real.size:
            codes = real.reshape(-1) if real.flags.c_contiguous else real.ravel()
            if codes.dtype == np.uint8:
                self.hist += byte_histogram(codes)
            else:
                self.hist += np.bincount(codes >> shift if shift else codes, minlength=self.hist.size)
            if self.mant:
                self.n_mant += int(np.count_nonzero(codes & self.mant))
        if self.want is None:
            return
        if real_rows < raw.shape[0]:
            self.pad_bad += int(np.count_nonzero(raw[real_rows:] != self.want))
        if real_rows:
            lead = raw[:real_rows]
            for axis in range(1, len(self.shape)):  # the box's complement, axis by axis
                if box[axis] < self.shape[axis]:
                    idx = (slice(None), *self._rest[:axis - 1], slice(box[axis], None))
                    self.pad_bad += int(np.count_nonzero(lead[idx] != self.want))

    def band(self, outlier_span: int, far: int) -> tuple[int, int] | None:
        """Quick mode: (low, high) bounds of the median exponent when the least and greatest code of
        the real box prove it clean, None when unsure (then a histogram decides). Every code valid
        and all within min(outlier_span, far) binades of each other: no entry is NaN, zero, negative
        or subnormal, none is further than that from the median (which lies between them), so
        neither the outlier rule nor the uninitialized rule's far count can fire; `verdict` would
        say clean."""
        if not self.quick or self.n_mant:
            return None
        _, _, _, lo, hi, bias, _ = self.enc
        if self.hi < 0 or self.lo < lo or self.hi > hi or self.hi - self.lo > min(outlier_span, far):
            return None
        return self.lo - bias, self.hi - bias

    def verdict(self, outlier_span: int, far: int) -> tuple[bool, int | None]:
        """(True, median exponent) when no rule on the real box can fire; (False, None) when unsure.
        Padding is judged apart: `pad_bad` counts padded entries that differ from the fill."""
        if self.n_mant:
            return False, None
        _, _, _, lo, hi, bias, _ = self.enc
        # A handful of occupied bins: plain Python over them beats a dozen tiny numpy calls.
        bins = np.flatnonzero(self.hist).tolist()
        if not bins or bins[0] < lo or bins[-1] > hi:  # NaN, zero, negative or subnormal (or nothing)
            return False, None
        counts = self.hist[bins].tolist()
        n = sum(counts)
        exps = [b - bias for b in bins]

        def order_stat(i: int) -> int:
            acc = 0
            for e, c in zip(exps, counts):
                acc += c
                if acc > i:
                    return e
            raise AssertionError("order statistic out of range")

        if n % 2:
            median = order_stat(n // 2)
        else:
            median = int((order_stat(n // 2 - 1) + order_stat(n // 2)) / 2)
        if max(abs(exps[0] - median), abs(exps[-1] - median)) > outlier_span:
            return False, None
        if sum(c for e, c in zip(exps, counts) if abs(e - median) > far) * 4 > n:  # uninitialized rule's far part
            return False, None
        return True, median


BATCH_ENTRIES = 1 << 20
"""Entries histogrammed at once by `medians_of_many` (ids and keys are 8 bytes per entry)."""
BATCH_TENSORS = 1024
"""Tensors judged at once by `medians_of_many` (a few arrays of tensors x bins)."""


def medians_of_many(encoding: str, data: bytes | memoryview, starts: list[int], counts: list[int],
                    check_mantissa: bool, outlier_span: int, far: int) -> list[int | None]:
    """`Tally.verdict` for many small tensors with no padding, at once: tensor i holds entries
    [starts[i], starts[i] + counts[i]) of `data` viewed as the encoding's raw entries (sorted, not
    overlapping). Returns each tensor's median exponent when it is clean, None when unsure.

    One bincount over (tensor, field) keys replaces a Tally per tensor: for thousands of tensors of
    a few KB (DeepSeek-V3's F32 scales) per-tensor Python, not bytes, was the cost."""
    out: list[int | None] = []
    i = 0
    while i < len(starts):  # groups of tensors spanning at most BATCH_ENTRIES entries
        j = i + 1
        while j < len(starts) and j - i < BATCH_TENSORS and starts[j] + counts[j] - starts[i] <= BATCH_ENTRIES:
            j += 1
        out.extend(_medians(encoding, data, starts[i:j], counts[i:j], check_mantissa, outlier_span, far))
        i = j
    return out


def _medians(encoding: str, data: bytes | memoryview, starts: list[int], counts: list[int],
             check_mantissa: bool, outlier_span: int, far: int) -> list[int | None]:
    dtype, shift, bins, _, _, _, mant = _FIELDS[encoding]
    k = len(starts)
    base, stop = starts[0], starts[-1] + counts[-1]
    itemsize = np.dtype(dtype).itemsize
    raw = np.frombuffer(data, dtype=dtype, count=stop - base, offset=base * itemsize)
    # segment ids: tensor i, and the gap before it (other bytes of the read) as id k
    st = np.asarray(starts, dtype=np.intp)
    ct = np.asarray(counts, dtype=np.intp)
    seg_lens = np.empty(2 * k, dtype=np.intp)
    seg_lens[0::2] = st - np.concatenate(([base], st[:-1] + ct[:-1]))
    seg_lens[1::2] = ct
    seg_ids = np.full(2 * k, k, dtype=np.intp)
    seg_ids[1::2] = np.arange(k)
    ids = np.repeat(seg_ids, seg_lens)
    codes = raw >> shift if shift else raw
    hist = np.bincount(ids * bins + codes, minlength=(k + 1) * bins).reshape(k + 1, bins)[:k]
    n_mant = np.bincount(ids, weights=(raw & mant) != 0, minlength=k + 1)[:k] if check_mantissa and mant else None
    return verdicts(encoding, hist, n_mant, outlier_span, far)


def verdicts(encoding: str, hist: np.ndarray, n_mant: np.ndarray | None, outlier_span: int,
             far: int) -> list[int | None]:
    """`Tally.verdict` for k tensors at once from their field histograms (k x bins, as Tally.hist)
    and counts of entries with mantissa bits (None: not checked): each one's median exponent when
    it is clean, None when unsure. Shared by `medians_of_many` and the in-memory device checks."""
    _, _, _, lo, hi, bias, _ = _FIELDS[encoding]
    k = hist.shape[0]
    cols = np.flatnonzero(hist.any(axis=0))  # the occupied bins of any tensor: usually a few dozen
    if cols.size == 0:
        return [None] * k
    hist = hist[:, cols]
    occ = hist > 0
    ok = occ.any(axis=1)
    first = cols[occ.argmax(axis=1)]
    last = cols[cols.size - 1 - occ[:, ::-1].argmax(axis=1)]
    ok &= (first >= lo) & (last <= hi)
    if n_mant is not None:
        ok &= n_mant == 0
    cs = hist.cumsum(axis=1)
    n = cs[:, -1]
    e_lo = cols[(cs > ((n - 1) // 2)[:, None]).argmax(axis=1)] - bias
    e_hi = cols[(cs > (n // 2)[:, None]).argmax(axis=1)] - bias
    median = np.where(n % 2 == 1, e_hi, np.trunc((e_lo + e_hi) / 2).astype(np.int64))
    exps = cols - bias
    ok &= np.maximum(np.abs(first - bias - median), np.abs(last - bias - median)) <= outlier_span
    far_count = (hist * (np.abs(exps[None, :] - median[:, None]) > far)).sum(axis=1)
    ok &= far_count * 4 <= n
    return [int(m) if g else None for m, g in zip(median.tolist(), ok.tolist())]
