"""Rules over a scale tensor's bytes: padding, NaN, zero, negative, outlier, uninitialized,
not-power-of-two. Each function takes decoded bytes and yields findings; nothing here does I/O
except through the `read_weight` callable used to confirm zero scales against their weights.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from fp8doctor.checkpoint.header import TensorInfo
from fp8doctor.findings import Finding
from fp8doctor.layouts.codecs import Decoded, decode, describe_value, raw_view
from fp8doctor.layouts.encodings import EXPONENT_OFFSET, FLOAT_ENCODINGS
from fp8doctor.layouts.model import ENCODINGS, ITEMSIZE, ScaleLayout, fill_bytes
from fp8doctor.rules.catalog import emit
from fp8doctor.rules.plausible import (
    E4M3_MAX_BYTE,
    PLAUSIBLE_LOG2,
    SUBNORMAL_BELOW,
    WINDOW_ENCODINGS,
    out_of_window,
    saturated_count,
    why_implausible,
)
from fp8doctor.rules.tally import byte_histogram

ReadWeight = Callable[[TensorInfo, int, int], bytes]
ZERO_CHECK_BYTES = 64 << 20
"""Weight bytes per tensor read to tell zero scales over all-zero blocks from erased blocks."""

UNINIT_FAR = 24
"""Binades from the median beyond which an entry counts as far out for the uninitialized test."""


@dataclass(frozen=True)
class ContentOptions:
    fill: str | int = "zero"
    fill_explicit: bool = False
    """The fill was asked for (--fill, configuration): padding holding the other accepted fill is then
    an error too, not an accepted choice."""
    outlier_span: int = 32
    ue8m0: bool = False
    verify_zero_blocks: bool = True


@dataclass(frozen=True)
class TensorSummary:
    """Per-tensor statistics kept for the cross-tensor outlier rule. When `median_hi` is set, the
    tensor was judged by the quick test (min/max of its real entries) and its median exponent is
    only known to lie in [median_exponent, median_hi]; `check_kinds` asks for the exact value only
    when the interval could change its outcome."""

    name: str
    file: str
    offset: int
    median_exponent: int
    kind: str
    median_hi: int | None = None


_DIGITS = re.compile(r"\.\d+(?=\.)")


def kind_of(name: str) -> str:
    """Tensors of one kind across layers/experts: 'model.layers.*.mlp.experts.*.up_proj.weight_scale_inv'."""
    return _DIGITS.sub(".*", name)


# Finding messages (tests/helpers/direct_rules.py, the oracle, says exactly the same with them).
def _real(n: int) -> str:
    return f"{n:,} real {'entry' if n == 1 else 'entries'}"


def _are(n: int) -> str:
    return "is" if n == 1 else "are"


def _msg_nan(n: int, name: str, first: tuple[int, ...]) -> str:
    return (f"{_real(n)} of {name} {_are(n)} NaN/Inf (first at {list(first)}): every output touching "
            f"{'that block' if n == 1 else 'those blocks'} is NaN")


def _msg_negative(n: int, name: str) -> str:
    return f"{_real(n)} of {name} {_are(n)} negative"


def _msg_zero_unverified(n: int, name: str) -> str:
    return f"{_real(n)} of {name} {_are(n)} zero: their weight blocks are erased (weights not read to confirm)"


def _msg_zero_erased(n: int, name: str, unchecked: int) -> str:
    extra = f"; {unchecked:,} of them could not be checked against their weights" if unchecked else ""
    return (f"{_real(n)} of {name} {_are(n)} zero over non-zero weight blocks: those weights are erased "
            f"(fluent but wrong outputs){extra}")


def _msg_zero_unchecked(n: int, name: str) -> str:
    return (f"{_real(n)} of {name} {_are(n)} zero and could not be checked against their weight blocks (the "
            f"weight-read budget of {ZERO_CHECK_BYTES:,} bytes per tensor ran out); not known to be harmful")


def _msg_outlier(n: int, name: str, span: int, median: int, first_value: str, first: tuple[int, ...]) -> str:
    return (f"{n:,} {'entry' if n == 1 else 'entries'} of {name} {_are(n)} more than 2^{span} from the "
            f"tensor's median 2^{median} (first {first_value} at {list(first)})")


def _msg_not_pow2(n: int, valid: int, name: str) -> str:
    return (f"{n:,} of {valid:,} real entries of {name} {_are(n)} not exact powers of two although config.json "
            "says scale_fmt ue8m0 (DeepGEMM's check (bits & 0x807fffff) == 0 fails on them: it asserts at load)")


def _msg_implausible(n: int, name: str, why: str, first_value: str, first: tuple[int, ...]) -> str:
    lo, hi = PLAUSIBLE_LOG2
    return (f"{_real(n)} of {name} {_are(n)} finite but no producer writes such a scale ({why}; first "
            f"{first_value} at {list(first)}; real scales lie within 2^{lo}..2^{hi}): leftover memory")


def _msg_saturated(n: int, total: int, name: str) -> str:
    return (f"{n:,} of {total:,} real E4M3 block scales of {name} are 448, the format's maximum: the FP32 -> E4M3 "
            "cast saturated (a wrong global scale); those blocks are clipped")


def _msg_padding(layout: ScaleLayout, n: int, values: dict[int, int], want_raw: int) -> str:
    """`values`: raw entry -> how many padded entries hold it (only entries that differ from the fill)."""
    top = sorted(((c, v) for v, c in values.items()), reverse=True)[:3]
    seen = ", ".join(f"{describe_value(layout.encoding, int(v))} x{c}" for c, v in top)
    danger = ""
    if layout.encoding == "e8m0":
        nans = values.get(0xFF, 0)
        huge = sum(c for v, c in values.items() if v > 127 + 16) - nans
        if nans or huge > 0:
            danger = f"; {nans} NaN and {max(huge, 0)} above 2^16 will leak into outputs"
    trust = "" if layout.trusted else f" ({layout.note}; not fixable until the layout is configured)"
    t = layout.scale
    return (f"{n:,} of {layout.padded_count:,} padded entries of {t.name} (stored {list(t.shape)}, real "
            f"{list(layout.logical_shape)}) {_are(n)} not the fill {describe_value(layout.encoding, want_raw)}: "
            f"{seen}{danger}{trust}")


def accepted_fill(layout: ScaleLayout, n: int, values: dict[int, int], want_raw: int, explicit: bool) -> bool:
    """Padding the padding rule accepts: every padded entry holds one accepted fill (zero or one) other
    than the wanted one, and no fill was asked for. `values`: raw entry -> count, of entries that
    differ from the wanted fill; `n` their number. Used by every path that evaluates the rule."""
    if explicit or n != layout.padded_count or len(values) != 1:
        return False
    (value,) = values
    others = {int(raw_view(layout.encoding, fill_bytes(f, layout.encoding), (1,))[0]) for f in ("zero", "one")}
    return value in others - {want_raw}


def _msg_accepted(layout: ScaleLayout, value: int) -> str:
    t = layout.scale
    shown = describe_value(layout.encoding, value)
    return (f"all {layout.padded_count:,} padded entries of {t.name} hold {shown}, the other accepted fill: a "
            "deliberate choice, left alone (pass --fill to require one fill)")


def _uninitialized_why(frac_far: float, distinct: int, n: int, median: int) -> str | None:
    """Leftover memory spreads over the byte range: over a quarter of the entries far out (NaN, zero,
    negative, or beyond 2^UNINIT_FAR of the median) across many distinct values. The reason, or None."""
    if frac_far > 0.25 and distinct >= min(48, n // 2):
        return (f"{frac_far:.0%} of entries are NaN, zero, negative or more than 2^{UNINIT_FAR} from the "
                f"median 2^{median}, over {distinct} distinct values")
    return None


def _zero_blocks(layout: ScaleLayout, entries: np.ndarray, read_weight: ReadWeight,
                 budget: int, state: list[Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For flat scale indices `entries`, whether each one's weight block holds only signed zeros.

    Reads each needed band of weight rows once (all flagged columns of a block-row share it).
    Returns (is_zero per entry, checked per entry: False where the byte budget ran out first).
    `state` ([bytes spent, budget ran out]) carries the budget across calls on successive row
    slabs of one tensor (check_tensor_slabs): together they check what one call would.
    """
    w = layout.weight
    assert w is not None and layout.block is not None
    shape = layout.weight_shape
    grid = layout.grid_shape
    sshape = grid if len(grid) == len(shape) else (*grid, 1)
    if layout.swizzle is not None:  # stored order -> the unswizzled grid's row-major order
        entries = layout.swizzle.canonical_of_stored()[entries]
    bn, bk = layout.block
    n_rows, k = (shape[-2], shape[-1]) if len(shape) >= 2 else (1, shape[-1])
    packed = layout.kind == "group"
    row_bytes = w.nbytes // max(1, int(np.prod(shape[:-1])))
    zero_mask = 0x77 if packed else 0x7F  # FP4 E2M1 nibbles / FP8 codes that are +-0
    idx = np.unravel_index(entries, sshape)
    lead_flat = np.ravel_multi_index(idx[:-2], sshape[:-2]) if len(sshape) > 2 else np.zeros_like(entries)
    rows, cols = idx[-2], idx[-1]
    result = np.zeros(entries.size, dtype=bool)
    checked = np.zeros(entries.size, dtype=bool)
    spent = state[0] if state is not None else 0
    for key in dict.fromkeys(zip(lead_flat.tolist(), rows.tolist())) if not (state and state[1]) else ():
        lead, r = key
        r0, r1 = r * bn, min((r + 1) * bn, n_rows)
        if r0 >= n_rows:
            continue
        nbytes = (r1 - r0) * row_bytes
        if spent + nbytes > budget:
            if state is not None:
                state[1] = True
            break
        spent += nbytes
        band = np.frombuffer(read_weight(w, (lead * n_rows + r0) * row_bytes, nbytes), dtype=np.uint8)
        nonzero_cols = ((band.reshape(r1 - r0, row_bytes) & zero_mask) != 0).any(axis=0)
        prefix = np.concatenate(([0], np.cumsum(nonzero_cols)))  # nonzero byte columns before each byte
        sel = np.flatnonzero((lead_flat == lead) & (rows == r))
        c0 = np.minimum(cols[sel] * bk, k)
        c1 = np.minimum((cols[sel] + 1) * bk, k)
        b0, b1 = ((c0 // 2, (c1 + 1) // 2) if packed else (c0, c1))
        b0, b1 = np.minimum(b0, row_bytes), np.minimum(b1, row_bytes)
        result[sel] = prefix[b1] - prefix[b0] == 0
        checked[sel] = True
    if state is not None:
        state[0] = spent
    return result, checked


def check_kinds(summaries: list[TensorSummary], span: int,
                exact: Callable[[TensorSummary], int] | None = None) -> Iterator[Finding]:
    """A tensor whose median exponent is far from the other tensors of its kind. Summaries with a
    median interval (`median_hi`) are resolved with `exact` only when the intervals leave the
    outcome open: the kind's center is int(median of medians), non-decreasing in every member's
    median, so it lies between the center of the lows and the center of the highs, and a member
    whose interval stays within `span` of that whole range is no outlier whatever its median."""
    groups: dict[str, list[TensorSummary]] = {}
    for s in summaries:
        groups.setdefault(s.kind, []).append(s)
    for kind, members in groups.items():
        if len(members) < 3:
            continue
        if any(m.median_hi is not None for m in members):
            lows = [m.median_exponent for m in members]
            highs = [m.median_exponent if m.median_hi is None else m.median_hi for m in members]
            c_lo, c_hi = int(np.median(lows)), int(np.median(highs))
            if all(max(h - c_lo, c_hi - lo) <= span for lo, h in zip(lows, highs)):
                continue
            if exact is None:
                raise ValueError(f"{kind}: median intervals need a resolver to decide the outlier rule")
            members = [m if m.median_hi is None else replace(m, median_exponent=exact(m), median_hi=None)
                       for m in members]
        center = int(np.median([m.median_exponent for m in members]))
        for m in members:
            if abs(m.median_exponent - center) > span:
                yield emit("scale-outlier", m.file, m.name,
                           f"{m.name}'s median scale 2^{m.median_exponent} is more than 2^{span} from the median "
                           f"2^{center} of the {len(members)} tensors like it ({kind})",
                           byte_offset=m.offset, count=1)


RULE_SLAB = 1 << 20
"""Bytes of entries decoded at once by check_tensor_slabs (decoding takes ~10x that in arrays)."""

_EXP_OFFSET = EXPONENT_OFFSET  # exponents of every encoding shifted to non-negative bins (160)
_EXP_BINS = 320


def _hist_order_stat(cs: np.ndarray, i: int) -> int:
    return int(np.argmax(cs > i)) - _EXP_OFFSET


def _hist_median(hist: np.ndarray) -> int | None:
    """int(np.median(values)) from a histogram of the values."""
    cs = np.cumsum(hist)
    m = int(cs[-1])
    if not m:
        return None
    if m % 2:
        return _hist_order_stat(cs, m // 2)
    return int((_hist_order_stat(cs, m // 2 - 1) + _hist_order_stat(cs, m // 2)) / 2)


class _First:
    """Count and first flat index (stored shape) of the entries a rule is about, slab by slab."""

    __slots__ = ("count", "first")

    def __init__(self) -> None:
        self.count = 0
        self.first: int | None = None

    def add(self, mask: np.ndarray, base: int) -> None:
        n = int(np.count_nonzero(mask))
        if n:
            if self.first is None:
                self.first = base + int(mask.reshape(-1).argmax())
            self.count += n


def _pad_slab(pad: _First, values: dict[int, int], bad: np.ndarray, raw: np.ndarray, base: int) -> None:
    """Padded entries of one slab that are not the fill: count, first index, values seen."""
    before = pad.count
    pad.add(bad, base)
    if pad.count == before:
        return
    seen = raw[bad]
    if seen.dtype.itemsize <= 2:  # a histogram instead of a sort
        hist = np.bincount(seen, minlength=1 << (8 * seen.dtype.itemsize))
        vals = np.flatnonzero(hist)
        counts = hist[vals]
    else:
        vals, counts = np.unique(seen, return_counts=True)
    for v, c in zip(vals.tolist(), counts.tolist()):
        values[v] = values.get(v, 0) + c


ReadRows = Callable[[int, int], bytes | memoryview]
"""`read_rows(first_row, rows)`: the stored bytes of rows first_row:first_row+rows of the leading
axis (a 0-d tensor is one row)."""

BYTE_HISTOGRAM = True
"""Count the rules of an E8M0 tensor's first pass from a byte histogram of its real box instead of
decoding it (an optimisation: False decodes, and the property tests compare both)."""


@dataclass(frozen=True)
class _Geometry:
    """How the evaluator walks a scale tensor: its encoding, its stored shape as row slabs (a 0-d
    tensor is one row of one entry), and which entries are real: the box at the origin, or a mask
    when the real entries are no box (a swizzled layout, a logical shape of another rank)."""

    encoding: str
    shape: tuple[int, ...]
    box: tuple[int, ...] | None
    real: np.ndarray | None
    n_real: int

    @property
    def row_items(self) -> int:
        return math.prod(self.shape[1:])

    def rows_per(self, slab_bytes: int) -> int:
        return max(1, slab_bytes // max(1, self.row_items * ITEMSIZE[self.encoding]))

    def in_box(self, r0: int, n: int) -> np.ndarray:
        """Which entries of leading rows r0:r0+n are real (their stored shape)."""
        if self.real is not None:
            return self.real[r0:r0 + n]
        assert self.box is not None
        mask = np.zeros((n, *self.shape[1:]), dtype=bool)
        mask[(slice(0, max(0, min(n, self.box[0] - r0))), *(slice(0, b) for b in self.box[1:]))] = True
        return mask


def _geometry(layout: ScaleLayout | None, t: TensorInfo) -> _Geometry | None:
    """None when there is nothing to judge: no known encoding, or no entry."""
    encoding = layout.encoding if layout is not None else ENCODINGS.get(t.dtype)
    if encoding is None or t.numel == 0:
        return None
    shape = t.shape or (1,)
    if layout is None:
        return _Geometry(encoding, shape, shape, None, math.prod(shape))
    box = tuple(layout.logical_shape)
    if layout.swizzle is None and t.shape and len(box) == len(t.shape):
        return _Geometry(encoding, shape, box, None, math.prod(min(b, n) for b, n in zip(box, shape)))
    real = layout.real_mask().reshape(shape)
    return _Geometry(encoding, shape, None, real, int(np.count_nonzero(real)))


def _slabs(g: _Geometry, read_rows: ReadRows, rows_per: int, first: int = 0,
           stop: int | None = None) -> Iterator[tuple[int, Decoded, np.ndarray]]:
    """(flat index of the slab's first entry, its entries decoded, which are real) for leading rows
    first:stop, `rows_per` at a time."""
    end = g.shape[0] if stop is None else min(stop, g.shape[0])
    for r0 in range(first, end, rows_per):
        n = min(rows_per, end - r0)
        yield r0 * g.row_items, decode(g.encoding, read_rows(r0, n), (n, *g.shape[1:])), g.in_box(r0, n)


# Each rule's entries in one slab, in one place: the judging passes count them, `dump` marks them.
# `dec`: the slab decoded; `real`: its real entries; `judged`: the real entries the median, outlier
# and power-of-two rules judge (valid and inside the plausible window).
def _uninitialized_entries(dec: Decoded, real: np.ndarray) -> np.ndarray:
    entries: np.ndarray = real & ~dec.valid
    return entries


def _nan_entries(dec: Decoded, real: np.ndarray) -> np.ndarray:
    entries: np.ndarray = real & dec.nan
    return entries


def _negative_entries(dec: Decoded, real: np.ndarray) -> np.ndarray:
    entries: np.ndarray = real & dec.negative
    return entries


def _zero_entries(dec: Decoded, real: np.ndarray) -> np.ndarray:
    entries: np.ndarray = real & dec.zero
    return entries


def _saturated_entries(dec: Decoded, real: np.ndarray) -> np.ndarray:
    entries: np.ndarray = real & ((dec.raw & 0x7F) == E4M3_MAX_BYTE)
    return entries


def _implausible_entries(encoding: str, dec: Decoded, real: np.ndarray) -> np.ndarray:
    return out_of_window(encoding, dec.exponent, real & dec.valid)


def _judged_entries(encoding: str, dec: Decoded, real: np.ndarray) -> np.ndarray:
    valid = real & dec.valid
    entries: np.ndarray = valid & ~out_of_window(encoding, dec.exponent, valid)
    return entries


def _outlier_entries(judged: np.ndarray, dec: Decoded, median: int, span: int) -> np.ndarray:
    entries: np.ndarray = judged & (np.abs(dec.exponent - median) > span)
    return entries


def _not_pow2_entries(judged: np.ndarray, dec: Decoded) -> np.ndarray:
    entries: np.ndarray = judged & ~dec.pow2
    return entries


def _padding_entries(dec: Decoded, real: np.ndarray, want_raw: int) -> np.ndarray:
    entries: np.ndarray = ~real & (dec.raw != want_raw)
    return entries


def padding_fill_raw(layout: ScaleLayout | None, fill: str | int) -> int | None:
    """The raw fill padded entries must hold (None: no padding to check)."""
    if layout is None or not layout.has_padding:
        return None
    return int(raw_view(layout.encoding, fill_bytes(fill, layout.encoding), (1,))[0])


def _can_verify(layout: ScaleLayout | None, opts: ContentOptions, read_weight: ReadWeight | None) -> bool:
    """Whether zero scales are confirmed against their weight blocks."""
    return (opts.verify_zero_blocks and read_weight is not None and layout is not None
            and layout.weight is not None and layout.kind in ("block", "group"))


def _emitter(t: TensorInfo, itemsize: int) -> Callable[..., Finding]:
    def finding(rule: str, first: int | None, count: int, message: str, fixable: bool = False,
                accepted: bool = False) -> Finding:
        return emit(rule, t.file, t.name, message, accepted=accepted,
                    byte_offset=t.offset + first * itemsize if first is not None else None,
                    count=count, index=_unravel(t, first), fixable=fixable)

    return finding


def _unravel(t: TensorInfo, flat: int | None) -> tuple[int, ...] | None:
    return None if flat is None else tuple(int(x) for x in np.unravel_index(flat, t.shape))


def _padding_finding(layout: ScaleLayout, pad: _First, values: dict[int, int], want_raw: int, explicit: bool,
                     finding: Callable[..., Finding]) -> Finding:
    if accepted_fill(layout, pad.count, values, want_raw, explicit):
        (value,) = values
        return finding("scale-padding-nonzero", pad.first, pad.count, _msg_accepted(layout, value), accepted=True)
    return finding("scale-padding-nonzero", pad.first, pad.count, _msg_padding(layout, pad.count, values, want_raw),
                   fixable=layout.trusted)


def check_padding_raw(layout: ScaleLayout, raw: np.ndarray, fill: str | int,
                      explicit: bool = False) -> Iterator[Finding]:
    """The padding rule alone, on raw entries (stored shape): for a tensor whose real box the tally
    found clean (no decoding of the real box)."""
    want_raw = padding_fill_raw(layout, fill)
    if want_raw is None:
        return
    pad, values = _First(), dict[int, int]()
    _pad_slab(pad, values, layout.padding_mask() & (raw != want_raw), raw, 0)
    if pad.count:
        yield _padding_finding(layout, pad, values, want_raw, explicit,
                               _emitter(layout.scale, layout.itemsize))


def check_tensor(layout: ScaleLayout | None, t: TensorInfo, data: bytes | memoryview, opts: ContentOptions,
                 read_weight: ReadWeight | None) -> tuple[list[Finding], TensorSummary | None]:
    """Every content rule on one scale tensor's stored bytes (row slabs of `data`)."""
    rows = t.shape[0] if t.shape else 1
    row_bytes = len(data) // rows if rows else 0
    return check_tensor_slabs(layout, t, lambda r0, n: data[r0 * row_bytes:(r0 + n) * row_bytes], opts,
                              read_weight)


def check_tensor_slabs(layout: ScaleLayout | None, t: TensorInfo, read_rows: ReadRows,
                       opts: ContentOptions, read_weight: ReadWeight | None,
                       slab_bytes: int = RULE_SLAB) -> tuple[list[Finding], TensorSummary | None]:
    """Every content rule on one scale tensor, in bounded memory: row slabs of the leading axis
    (`read_rows(first_row, rows)` returns their bytes). A first pass keeps counts, first indices,
    the exponent histogram of the real box (medians come from it) and the distinct values; a second
    pass, only when needed, verifies zero scales against their weight blocks and finds the first
    outlier and implausible entry."""
    findings, summary, _ = _judge_slabs(layout, t, read_rows, opts, read_weight, slab_bytes)
    return findings, summary


def _judge_slabs(layout: ScaleLayout | None, t: TensorInfo, read_rows: ReadRows, opts: ContentOptions,
                 read_weight: ReadWeight | None, slab_bytes: int
                 ) -> tuple[list[Finding], TensorSummary | None, bool]:
    """check_tensor_slabs, and whether a weight read failed while confirming zero scales."""
    g = _geometry(layout, t)
    if g is None:
        return [], None, False
    encoding, shape = g.encoding, g.shape
    itemsize = ITEMSIZE[encoding]
    row_items = g.row_items
    rows_per = g.rows_per(slab_bytes)
    n_box = g.n_real
    finding = _emitter(t, itemsize)

    def slabs() -> Iterator[tuple[int, Decoded, np.ndarray]]:
        return _slabs(g, read_rows, rows_per)

    want_raw = padding_fill_raw(layout, opts.fill)
    pad, invalid, nan, neg, zero, npow2 = _First(), _First(), _First(), _First(), _First(), _First()
    sat = _First()
    pad_values: dict[int, int] = {}
    hist = np.zeros(_EXP_BINS, dtype=np.int64)
    wide = itemsize > 2
    present = np.zeros(1 << (8 * itemsize), dtype=bool) if not wide else None
    seen = np.zeros(0, dtype=np.uint32)
    if encoding == "e8m0" and g.box is not None and BYTE_HISTOGRAM:
        # every first-pass count follows from a byte histogram of the real box: no decoding
        box = g.box
        rest = tuple(slice(0, b) for b in box[1:])
        byte_hist = np.zeros(256, dtype=np.int64)
        for r0 in range(0, shape[0], rows_per):
            n = min(rows_per, shape[0] - r0)
            raw = raw_view(encoding, read_rows(r0, n), (n, *shape[1:]))
            base = r0 * row_items
            if want_raw is not None:
                _pad_slab(pad, pad_values, ~g.in_box(r0, n) & (raw != want_raw), raw, base)
            k = max(0, min(n, box[0] - r0))
            real = raw[:k][(slice(None), *rest)] if rest else raw[:k]
            flat_real = real.reshape(-1)
            if not flat_real.size:
                continue
            h = byte_histogram(flat_real)
            byte_hist += h
            firsts = []
            for acc, value in ((nan, 0xFF), (zero, 0x00)):
                if h[value]:
                    j = int((flat_real == value).argmax())
                    local = int(np.ravel_multi_index(np.unravel_index(j, real.shape), raw.shape))
                    firsts.append(local)
                    if acc.first is None:
                        acc.first = base + local
                    acc.count += int(h[value])
            if firsts:
                invalid.count += int(h[0] + h[0xFF])
                if invalid.first is None:
                    invalid.first = base + min(firsts)
        hist[1 - 127 + _EXP_OFFSET:254 - 127 + _EXP_OFFSET + 1] = byte_hist[1:255]
        present = byte_hist > 0
    else:
        for base, dec, in_box in slabs():
            if want_raw is not None:
                _pad_slab(pad, pad_values, _padding_entries(dec, in_box, want_raw), dec.raw, base)
            invalid.add(_uninitialized_entries(dec, in_box), base)
            hist += np.bincount(dec.exponent[in_box & dec.valid] + _EXP_OFFSET, minlength=_EXP_BINS)
            real_raw = dec.raw[in_box]
            if present is not None:
                present[real_raw] = True
            else:
                seen = np.union1d(seen, real_raw)
            nan.add(_nan_entries(dec, in_box), base)
            neg.add(_negative_entries(dec, in_box), base)
            zero.add(_zero_entries(dec, in_box), base)
            npow2.add(_not_pow2_entries(_judged_entries(encoding, dec, in_box), dec), base)
            if encoding == "e4m3":
                sat.add(_saturated_entries(dec, in_box), base)

    findings: list[Finding] = []
    if pad.count and layout is not None:
        assert want_raw is not None  # padded entries differ from the fill only when there is one
        findings.append(_padding_finding(layout, pad, pad_values, want_raw, opts.fill_explicit, finding))

    exps = np.arange(_EXP_BINS) - _EXP_OFFSET
    valid_n = int(hist.sum())
    if n_box >= 16:  # leftover memory, not scales
        center = (_hist_median(hist) or 0) if valid_n else 0
        far_n = invalid.count + int(hist[np.abs(exps - center) > UNINIT_FAR].sum())
        frac = far_n / n_box
        distinct = int(np.count_nonzero(present)) if present is not None else int(seen.size)
        why = _uninitialized_why(frac, distinct, n_box, center)
        if why is not None:
            findings.append(finding("scale-uninitialized", invalid.first, n_box,
                                    f"{t.name} looks like leftover memory, not scales: {why}"))
            return findings, None, False

    if nan.count:
        findings.append(finding("scale-nan", nan.first, nan.count,
                                _msg_nan(nan.count, t.name, _unravel(t, nan.first) or ())))
    if neg.count:
        findings.append(finding("scale-negative", neg.first, neg.count,
                                _msg_negative(neg.count, t.name)))
    lo, hi = PLAUSIBLE_LOG2
    out_of_window_bins = (exps < lo) | (exps > hi)
    implausible_n = int(hist[out_of_window_bins].sum()) if encoding in WINDOW_ENCODINGS else 0
    hist_all = hist
    if implausible_n:  # the other rules judge what is left
        hist = np.where(out_of_window_bins, 0, hist)
    median = _hist_median(hist)
    far_n = int(hist[np.abs(exps - median) > opts.outlier_span].sum()) if median is not None else 0
    can_verify = _can_verify(layout, opts, read_weight)
    zero_bad, unchecked, far, far_value = _First(), _First(), _First(), 0
    odd, odd_value = _First(), 0
    failed = False
    if (zero.count and can_verify) or far_n or implausible_n:  # the second pass
        state = [0, False]
        for base, dec, in_box in slabs():
            z = _zero_entries(dec, in_box)
            if zero.count and can_verify and not failed and z.any():
                flat = np.flatnonzero(z.reshape(-1)) + base
                try:
                    is_zero, checked = _zero_blocks(layout, flat, read_weight, ZERO_CHECK_BYTES, state)  # type: ignore[arg-type]
                except OSError:
                    failed = True
                else:
                    left = flat[~checked]
                    if left.size:
                        if unchecked.first is None:
                            unchecked.first = int(left[0])
                        unchecked.count += int(left.size)
                    bad = flat[checked & ~is_zero]
                    if bad.size:
                        if zero_bad.first is None:
                            zero_bad.first = int(bad[0])
                        zero_bad.count += int(bad.size)
            if implausible_n and odd.first is None:
                odd.add(_implausible_entries(encoding, dec, in_box), base)
                if odd.first is not None:
                    odd_value = int(dec.raw.reshape(-1)[odd.first - base])
            if far_n and far.first is None:
                assert median is not None  # far entries are counted from the median
                far.add(_outlier_entries(_judged_entries(encoding, dec, in_box), dec, median, opts.outlier_span),
                        base)
                if far.first is not None:
                    far_value = int(dec.raw.reshape(-1)[far.first - base])
            if (not (zero.count and can_verify and not failed) and (not far_n or far.first is not None)
                    and (not implausible_n or odd.first is not None)):
                break  # nothing left to find
    if zero.count:
        if not can_verify:
            findings.append(finding("scale-zero", zero.first, zero.count,
                                    _msg_zero_unverified(zero.count, t.name)))
        else:
            if failed:  # one failed weight read: no zero entry counts as proven harmless
                zero_bad.count, zero_bad.first, unchecked = zero.count, zero.first, _First()
            if zero_bad.count:
                findings.append(finding("scale-zero", zero_bad.first,
                                        zero_bad.count, _msg_zero_erased(zero_bad.count, t.name, 0)))
            if unchecked.count:  # the budget ran out: could not be checked, which is not erased
                findings.append(finding("scale-zero-unchecked", unchecked.first,
                                        unchecked.count, _msg_zero_unchecked(unchecked.count, t.name)))
    if implausible_n:
        sub = int(hist_all[exps < SUBNORMAL_BELOW[encoding]].sum()) if encoding in SUBNORMAL_BELOW else 0
        why = why_implausible(sub, int(hist_all[exps < lo].sum()) - sub, int(hist_all[exps > hi].sum()))
        findings.append(finding("scale-implausible", odd.first, implausible_n,
                                _msg_implausible(implausible_n, t.name, why,
                                                 describe_value(encoding, odd_value), _unravel(t, odd.first) or ())))
    if sat.count and saturated_count(sat.count, n_box):
        findings.append(finding("scale-saturated", sat.first, sat.count,
                                _msg_saturated(sat.count, n_box, t.name)))
    if far_n:
        assert median is not None  # far entries are counted from the median
        findings.append(finding("scale-outlier", far.first, far_n,
                                _msg_outlier(far_n, t.name, opts.outlier_span, median,
                                             describe_value(encoding, far_value), _unravel(t, far.first) or ())))
    if opts.ue8m0 and encoding in FLOAT_ENCODINGS and npow2.count:
        findings.append(finding("scale-not-power-of-two", npow2.first,
                                npow2.count, _msg_not_pow2(npow2.count, int(hist.sum()), t.name)))
    summary = TensorSummary(t.name, t.file, t.offset, median, kind_of(t.name)) if median is not None else None
    return findings, summary, failed


SlabMarks = Iterator[tuple[int, list[tuple[Finding, np.ndarray]]]]
"""Per slab: (flat stored index of its first entry, [(finding, flat boolean mask over the slab's
entries of those the finding is about)]), in the order of the findings."""


def mark_tensor_slabs(layout: ScaleLayout | None, t: TensorInfo, read_rows: ReadRows, opts: ContentOptions,
                      read_weight: ReadWeight | None, rows: tuple[int, int],
                      slab_bytes: int = RULE_SLAB) -> tuple[list[Finding], SlabMarks]:
    """check_tensor_slabs' findings on the whole tensor, and each finding's entry mask for leading
    rows rows[0]:rows[1] only, one slab at a time (the same per-rule entries the judging counted).

    Memory follows the slab, not the tensor: whole-tensor facts (the median the outlier rule
    measures from, the uninitialized verdict, a failed weight read) come from the judging pass;
    the weight-read budget for zero scales is spent again from the first row, so an entry is
    'unchecked' exactly where the judging pass says so."""
    findings, summary, failed = _judge_slabs(layout, t, read_rows, opts, read_weight, slab_bytes)
    g = _geometry(layout, t)
    if g is None or not findings:
        return findings, iter(())
    return findings, _marks(g, layout, read_rows, opts, read_weight, rows, slab_bytes, findings,
                            summary.median_exponent if summary is not None else None, failed)


def _marks(g: _Geometry, layout: ScaleLayout | None, read_rows: ReadRows, opts: ContentOptions,
           read_weight: ReadWeight | None, rows: tuple[int, int], slab_bytes: int, findings: list[Finding],
           median: int | None, failed: bool) -> SlabMarks:
    encoding = g.encoding
    want_raw = padding_fill_raw(layout, opts.fill)
    rules = {f.rule for f in findings}
    verify = _can_verify(layout, opts, read_weight) and not failed and bool(
        rules & {"scale-zero", "scale-zero-unchecked"})
    state = [0, False]  # the weight-read budget, spent from the first row as the judging pass did
    first, stop = max(0, rows[0]), min(rows[1], g.shape[0])
    if first >= stop:
        return
    rows_per = g.rows_per(slab_bytes)

    def confirm(base: int, zero: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(erased, unchecked) among the zero entries of a slab, the budget spent in row order."""
        flat = np.flatnonzero(zero.reshape(-1))
        erased, unchecked = np.zeros(zero.size, dtype=bool), np.zeros(zero.size, dtype=bool)
        if flat.size:
            assert layout is not None and read_weight is not None  # verify
            try:
                is_zero, checked = _zero_blocks(layout, flat + base, read_weight, ZERO_CHECK_BYTES, state)
            except OSError:  # as the judging pass: a failed read proves no zero entry harmless
                is_zero, checked = np.zeros(flat.size, dtype=bool), np.ones(flat.size, dtype=bool)
            erased[flat[checked & ~is_zero]] = True
            unchecked[flat[~checked]] = True
        return erased.reshape(zero.shape), unchecked.reshape(zero.shape)

    if verify:  # the rows before the ones asked for spend the budget first, as in one whole pass
        for base, dec, in_box in _slabs(g, read_rows, rows_per, 0, first):
            if state[1]:
                break
            confirm(base, _zero_entries(dec, in_box))
    for base, dec, in_box in _slabs(g, read_rows, rows_per, first, stop):
        zero = _zero_entries(dec, in_box)
        erased, unchecked = confirm(base, zero) if verify else (None, None)
        judged = _judged_entries(encoding, dec, in_box)
        out: list[tuple[Finding, np.ndarray]] = []
        for f in findings:
            if f.rule == "scale-padding-nonzero":
                assert want_raw is not None  # a padding finding needs a fill
                m = _padding_entries(dec, in_box, want_raw)
            elif f.rule == "scale-uninitialized":
                m = _uninitialized_entries(dec, in_box)
            elif f.rule == "scale-nan":
                m = _nan_entries(dec, in_box)
            elif f.rule == "scale-negative":
                m = _negative_entries(dec, in_box)
            elif f.rule == "scale-zero":
                m = erased if erased is not None else zero
            elif f.rule == "scale-zero-unchecked":
                m = unchecked if unchecked is not None else np.zeros_like(zero)
            elif f.rule == "scale-implausible":
                m = _implausible_entries(encoding, dec, in_box)
            elif f.rule == "scale-saturated":
                m = _saturated_entries(dec, in_box)
            elif f.rule == "scale-outlier":
                assert median is not None  # an outlier is measured from the median
                m = _outlier_entries(judged, dec, median, opts.outlier_span)
            elif f.rule == "scale-not-power-of-two":
                m = _not_pow2_entries(judged, dec)
            else:  # a rule this path does not know has no mask: never a silent wrong one
                raise AssertionError(f"no slab mask for {f.rule}")
            out.append((f, m.reshape(-1)))
        yield base, out
