"""The direct evaluation of the content rules: the whole tensor decoded at once, each rule one
boolean mask over the stored entries. This is the test oracle the production evaluator
(fp8doctor/rules/content.py: row slabs, byte histograms, the tally's fast path) is proven equal to
by tests/unit/rules/test_rule_paths.py; it shares only the rules' messages and thresholds with it.
Never imported by the package."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from fp8doctor.checkpoint.header import TensorInfo
from fp8doctor.findings import Finding
from fp8doctor.layouts.codecs import Decoded, decode, describe_value, raw_view
from fp8doctor.layouts.encodings import FLOAT_ENCODINGS
from fp8doctor.layouts.model import ENCODINGS, ITEMSIZE, ScaleLayout, fill_bytes
from fp8doctor.rules import content
from fp8doctor.rules.catalog import emit
from fp8doctor.rules.content import (
    UNINIT_FAR,
    ContentOptions,
    ReadWeight,
    TensorSummary,
    _msg_accepted,
    _msg_implausible,
    _msg_nan,
    _msg_negative,
    _msg_not_pow2,
    _msg_outlier,
    _msg_padding,
    _msg_saturated,
    _msg_zero_erased,
    _msg_zero_unchecked,
    _msg_zero_unverified,
    _uninitialized_why,
    _zero_blocks,
    accepted_fill,
    kind_of,
)
from fp8doctor.rules.plausible import (
    E4M3_MAX_BYTE,
    PLAUSIBLE_LOG2,
    SUBNORMAL_BELOW,
    WINDOW_ENCODINGS,
    saturated_count,
    why_implausible,
)

MarkSink = Callable[[Finding, np.ndarray], None]
"""Receives each finding with the boolean mask (stored shape) of the entries it is about."""


def implausible(encoding: str, exponent: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, str]:
    """`out_of_window`, and why (the counts a `scale-implausible` message gives)."""
    if encoding not in WINDOW_ENCODINGS:
        return np.zeros(exponent.shape, dtype=bool), ""
    lo, hi = PLAUSIBLE_LOG2
    low = valid & (exponent < lo)
    high = valid & (exponent > hi)
    sub = SUBNORMAL_BELOW.get(encoding)
    n_sub = int(np.count_nonzero(low & (exponent < sub))) if sub is not None else 0
    return low | high, why_implausible(n_sub, int(np.count_nonzero(low)) - n_sub, int(np.count_nonzero(high)))


def saturated(raw: np.ndarray, in_box: np.ndarray) -> int:
    """How many real E4M3 entries sit at 448 when that many cannot come from real blocks (else 0)."""
    n = int(np.count_nonzero(in_box & ((raw & 0x7F) == E4M3_MAX_BYTE)))
    return n if saturated_count(n, int(np.count_nonzero(in_box))) else 0


def _first(mask: np.ndarray) -> tuple[int, tuple[int, ...]] | None:
    flat = mask.reshape(-1)
    i = int(flat.argmax()) if flat.size else 0
    if not flat.size or not flat[i]:
        return None
    return i, tuple(int(x) for x in np.unravel_index(i, mask.shape)) if mask.ndim else ()


def _finding(rule: str, t: TensorInfo, mask: np.ndarray, message: str, itemsize: int, count: int | None = None,
             fixable: bool = False, sink: MarkSink | None = None, accepted: bool = False) -> Finding:
    first = _first(mask)
    flat, index = first if first else (None, None)
    f = emit(rule, t.file, t.name, message, accepted=accepted,
             byte_offset=t.offset + flat * itemsize if flat is not None else None,
             count=int(np.count_nonzero(mask)) if count is None else count, index=index, fixable=fixable)
    if sink is not None:
        sink(f, mask)
    return f


def check_padding(layout: ScaleLayout, dec: Decoded, fill: str | int,
                  sink: MarkSink | None = None, explicit: bool = False) -> Iterator[Finding]:
    return check_padding_raw(layout, dec.raw, fill, sink, explicit)


def check_padding_raw(layout: ScaleLayout, raw: np.ndarray, fill: str | int,
                      sink: MarkSink | None = None, explicit: bool = False) -> Iterator[Finding]:
    """The padding rule on raw entries (stored shape): needs no decoding of the real box."""
    if not layout.has_padding:
        return
    want = fill_bytes(fill, layout.encoding)
    want_raw = raw_view(layout.encoding, want, (1,))[0]
    bad = layout.padding_mask()
    bad &= raw != want_raw
    n = int(np.count_nonzero(bad))
    if not n:
        return
    t = layout.scale
    values = raw[bad]
    if values.dtype.itemsize <= 2:  # a histogram instead of a sort
        hist = np.bincount(values, minlength=1 << (8 * values.dtype.itemsize))
        vals = np.flatnonzero(hist)
        counts = hist[vals]
    else:
        vals, counts = np.unique(values, return_counts=True)
    values_seen = dict(zip(vals.tolist(), counts.tolist()))
    if accepted_fill(layout, n, values_seen, int(want_raw), explicit):
        yield _finding("scale-padding-nonzero", t, bad, _msg_accepted(layout, int(vals[0])), layout.itemsize,
                       sink=sink, accepted=True)
        return
    msg = _msg_padding(layout, n, values_seen, int(want_raw))
    yield _finding("scale-padding-nonzero", t, bad, msg, layout.itemsize,
                   fixable=layout.trusted, sink=sink)


def _is_uninitialized(dec: Decoded, logical: np.ndarray) -> tuple[bool, str]:
    """Leftover memory spreads over the byte range; real scales sit within a few dozen binades."""
    n = dec.raw[logical].size
    if n < 16:
        return False, ""
    valid = dec.valid[logical]
    exps = dec.exponent[logical]
    if valid.sum() == 0:
        median = 0
    else:
        median = int(np.median(exps[valid]))
    far = (~valid) | (np.abs(exps - median) > UNINIT_FAR)
    frac = float(far.mean())
    distinct = np.unique(dec.raw[logical]).size
    why = _uninitialized_why(frac, distinct, n, median)
    return why is not None, why or ""


def check_logical(layout: ScaleLayout | None, t: TensorInfo, dec: Decoded, opts: ContentOptions,
                  read_weight: ReadWeight | None, sink: MarkSink | None = None) -> tuple[list[Finding], int | None]:
    """Value rules on the logical region; returns findings and the tensor's median exponent."""
    out: list[Finding] = []
    encoding = ENCODINGS[t.dtype] if layout is None else layout.encoding
    itemsize = ITEMSIZE[encoding]
    in_box = layout.real_mask() if layout is not None else np.ones(dec.raw.shape, dtype=bool)
    uninit, why = _is_uninitialized(dec, in_box)
    if uninit:
        out.append(_finding("scale-uninitialized", t, in_box & ~dec.valid,
                            f"{t.name} looks like leftover memory, not scales: {why}", itemsize,
                            count=int(in_box.sum()), sink=sink))
        return out, None

    nan = in_box & dec.nan
    if nan.any():
        first = _first(nan)
        assert first is not None
        out.append(_finding("scale-nan", t, nan,
                            _msg_nan(int(nan.sum()), t.name, first[1]), itemsize, sink=sink))
    neg = in_box & dec.negative
    if neg.any():
        out.append(_finding("scale-negative", t, neg,
                            _msg_negative(int(neg.sum()), t.name), itemsize, sink=sink))
    zero = in_box & dec.zero
    if zero.any():
        out.extend(_check_zero(layout, t, zero, opts, read_weight, itemsize, sink))
    bad, why = implausible(encoding, dec.exponent, in_box & dec.valid)
    if bad.any():
        first = _first(bad)
        assert first is not None
        out.append(_finding("scale-implausible", t, bad,
                            _msg_implausible(int(bad.sum()), t.name, why,
                                             describe_value(encoding, int(dec.raw.reshape(-1)[first[0]])), first[1]),
                            itemsize, sink=sink))
    if encoding == "e4m3":
        n_sat = saturated(dec.raw, in_box)
        if n_sat:
            at_max = in_box & ((dec.raw & 0x7F) == 0x7E)
            out.append(_finding("scale-saturated", t, at_max,
                                _msg_saturated(n_sat, int(in_box.sum()), t.name), itemsize, sink=sink))

    valid = in_box & dec.valid & ~bad
    median = int(np.median(dec.exponent[valid])) if valid.any() else None
    if median is not None:
        far = valid & (np.abs(dec.exponent - median) > opts.outlier_span)
        if far.any():
            first = _first(far)
            assert first is not None
            val = int(dec.raw[first[1]]) if first[1] else int(dec.raw.reshape(-1)[first[0]])
            out.append(_finding("scale-outlier", t, far,
                                _msg_outlier(int(far.sum()), t.name, opts.outlier_span, median,
                                             describe_value(encoding, val), first[1]), itemsize, sink=sink))
    if opts.ue8m0 and encoding in FLOAT_ENCODINGS:
        npow2 = valid & ~dec.pow2
        if npow2.any():
            out.append(_finding("scale-not-power-of-two", t, npow2,
                                _msg_not_pow2(int(npow2.sum()), int(valid.sum()), t.name), itemsize, sink=sink))
    return out, median


def _check_zero(layout: ScaleLayout | None, t: TensorInfo, zero: np.ndarray, opts: ContentOptions,
                read_weight: ReadWeight | None, itemsize: int, sink: MarkSink | None = None) -> list[Finding]:
    """Zero scales are fine over all-zero weight blocks; confirm by reading those blocks."""
    flat = np.flatnonzero(zero.reshape(-1))
    can_verify = (opts.verify_zero_blocks and read_weight is not None and layout is not None
                  and layout.weight is not None and layout.kind in ("block", "group"))
    if not can_verify:
        return [_finding("scale-zero", t, zero,
                         _msg_zero_unverified(flat.size, t.name), itemsize, sink=sink)]
    assert layout is not None and read_weight is not None  # can_verify
    try:
        is_zero, checked = _zero_blocks(layout, flat, read_weight, content.ZERO_CHECK_BYTES)
    except OSError:  # a failed weight read: no zero entry counts as proven harmless
        is_zero, checked = np.zeros(flat.size, dtype=bool), np.ones(flat.size, dtype=bool)
    out: list[Finding] = []
    bad = np.zeros(zero.size, dtype=bool)
    bad[flat[checked & ~is_zero]] = True  # proven erased: zero over non-zero weights
    count = int(bad.sum())
    if count:
        out.append(_finding("scale-zero", t, bad.reshape(zero.shape), _msg_zero_erased(count, t.name, 0), itemsize,
                            count=count, sink=sink))
    left = flat[~checked]  # the weight-read budget ran out: could not be checked, which is not erased
    if left.size:
        mask = np.zeros(zero.size, dtype=bool)
        mask[left] = True
        out.append(_finding("scale-zero-unchecked", t, mask.reshape(zero.shape),
                            _msg_zero_unchecked(int(left.size), t.name), itemsize, count=int(left.size), sink=sink))
    return out


def direct_check_tensor(layout: ScaleLayout | None, t: TensorInfo, data: bytes, opts: ContentOptions,
                 read_weight: ReadWeight | None,
                 sink: MarkSink | None = None) -> tuple[list[Finding], TensorSummary | None]:
    """Every content rule on one scale tensor's bytes (`sink` sees each finding's entry mask)."""
    encoding = layout.encoding if layout is not None else ENCODINGS.get(t.dtype)
    if encoding is None:
        return [], None
    dec = decode(encoding, data, t.shape)
    findings: list[Finding] = []
    if layout is not None:
        findings.extend(check_padding(layout, dec, opts.fill, sink, opts.fill_explicit))
    logical, median = check_logical(layout, t, dec, opts, read_weight, sink)
    findings.extend(logical)
    summary = None
    if median is not None:
        summary = TensorSummary(t.name, t.file, t.offset, median, kind_of(t.name))
    return findings, summary


