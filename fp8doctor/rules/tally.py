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

SLAB = 1 << 20
"""Bytes of entries histogrammed at once (np.bincount widens to 8 bytes per entry)."""

# encoding -> (raw dtype, shift to the sign+exponent field, bins, first and last valid field, bias,
#              mantissa mask). A valid field is a positive, finite, normal, non-zero entry.
_FIELDS = {
    "e8m0": (np.uint8, 0, 256, 1, 254, 127, 0),
    "f32": (np.dtype("<u4"), 23, 512, 1, 254, 127, 0x7FFFFF),
    "bf16": (np.dtype("<u2"), 7, 512, 1, 254, 127, 0x7F),
    "f16": (np.dtype("<u2"), 10, 64, 1, 30, 15, 0x3FF),
}


def supported(encoding: str, shape: tuple[int, ...]) -> bool:
    return encoding in _FIELDS and len(shape) >= 1 and math.prod(shape) > 0


class Tally:
    """Histogram of the real box and padding mismatches of one scale tensor, fed row slab by slab."""

    __slots__ = ("_rest", "box", "dtype", "enc", "hist", "mant", "n_mant", "pad_bad", "row_items", "shape",
                 "want")

    def __init__(self, encoding: str, shape: tuple[int, ...], box: tuple[int, ...], want: int | None,
                 check_mantissa: bool) -> None:
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

    def rows_per_slab(self) -> int:
        return max(1, SLAB // max(1, self.row_items))

    def add(self, data: bytes | memoryview, row0: int) -> None:
        """Entries of rows [row0, row0 + len(data) / row size) of the leading axis."""
        raw = np.frombuffer(data, dtype=self.dtype).reshape(-1, *self.shape[1:])
        step = self.rows_per_slab()
        for a in range(0, raw.shape[0], step):
            self._add(raw[a:a + step], row0 + a)

    def _add(self, raw: np.ndarray, r0: int) -> None:
        box, shift = self.box, self.enc[1]
        real_rows = min(raw.shape[0], max(0, box[0] - r0))
        real = raw[:real_rows][(slice(None), *self._rest)] if self._rest else raw[:real_rows]
        if real.size:
            codes = real.reshape(-1) if real.flags.c_contiguous else real.ravel()
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
