"""The one entry point of the content rules: judge one scale tensor's bytes, given its layout and
options, and get its findings. The scanner calls it for every scale tensor it reads; library users
call it for tensors they hold in memory (see docs/architecture.md). Its name and signature are
stable.

Inside, the histogram fast path (rules/tally.py) decides the common clean tensor in one pass; a
tensor it is unsure about goes through the rules' one evaluator (rules/content.py), in row slabs of
bounded size. Both give exactly what the direct whole-tensor evaluation of every rule gives
(tests/helpers/direct_rules.py, the oracle; tests/unit/rules/test_rule_paths.py proves it on random
tensors).
"""

from __future__ import annotations

from collections.abc import Callable

from fp8doctor.checkpoint.header import TensorInfo
from fp8doctor.findings import Finding
from fp8doctor.layouts.codecs import raw_view
from fp8doctor.layouts.encodings import FLOAT_ENCODINGS
from fp8doctor.layouts.model import ENCODINGS, ScaleLayout
from fp8doctor.rules.content import (
    UNINIT_FAR,
    ContentOptions,
    ReadRows,
    ReadWeight,
    TensorSummary,
    check_padding_raw,
    check_tensor_slabs,
    kind_of,
    padding_fill_raw,
)
from fp8doctor.rules.tally import Tally, supported

Judgement = tuple[list[Finding], TensorSummary | None]
"""A tensor's findings, and its summary for the cross-tensor outlier rule (None when its real
entries have no median exponent, or a finding made the median meaningless)."""


QUICK = True
"""Judge 1-byte scale tensors by the quick test first (least and greatest code of the real box, at
memory speed; a histogram only for tensors that fail it). False: always the histogram (the property
tests compare both)."""


def tally_for(layout: ScaleLayout | None, t: TensorInfo, content: ContentOptions, quick: bool = False) -> Tally | None:
    """A Tally for the tensor (`quick`: a quick-test one where the encoding allows), or None when
    only the mask-based rules can judge it."""
    encoding = layout.encoding if layout is not None else ENCODINGS.get(t.dtype)
    if encoding is None or not supported(encoding, t.shape):
        return None
    want = None
    box = t.shape
    if layout is not None:
        box = layout.logical_shape
        if len(box) != len(t.shape) or layout.swizzle is not None:
            return None
        want = padding_fill_raw(layout, content.fill)
    return Tally(encoding, t.shape, box, want, content.ue8m0 and encoding in FLOAT_ENCODINGS, quick)


def clean_outcome(tally: Tally, t: TensorInfo, layout: ScaleLayout | None, content: ContentOptions,
                  raw: Callable[[], bytes | memoryview]) -> Judgement | None:
    """The outcome when the real box is clean (only the padding rule may fire); None when unsure.
    A quick tally decides from its band (the median then known as an interval, which the
    cross-tensor rule resolves only when it matters), a full one from its histogram."""
    summary: TensorSummary | None
    if tally.quick:
        band = tally.band(content.outlier_span, UNINIT_FAR)
        if band is None:
            return None
        lo, hi = band
        summary = TensorSummary(t.name, t.file, t.offset, lo, kind_of(t.name), hi if hi != lo else None)
    else:
        ok, median = tally.verdict(content.outlier_span, UNINIT_FAR)
        if not ok:
            return None
        summary = TensorSummary(t.name, t.file, t.offset, median, kind_of(t.name)) if median is not None else None
    findings: list[Finding] = []
    if tally.pad_bad and layout is not None:
        entries = raw_view(layout.encoding, raw(), t.shape)
        findings = list(check_padding_raw(layout, entries, content.fill, explicit=content.fill_explicit))
    return findings, summary


def judge_scale_tensor(tensor: TensorInfo, data: bytes | memoryview, layout: ScaleLayout | None,
                       options: ContentOptions, read_weight: ReadWeight | None = None) -> Judgement:
    """Every content rule on one scale tensor's stored bytes.

    `tensor` gives the dtype, stored shape and where findings point (file, byte offset); `layout`
    says which entries are padding (None: a scale of unknown layout, only value rules run);
    `read_weight(weight, offset, length)` reads weight bytes to confirm zero scales (None: zero
    scales are reported unconfirmed). Memory stays bounded by the tensor's size plus a slab."""
    rows = tensor.shape[0] if tensor.shape else 1
    row_bytes = len(data) // rows if rows else 0
    return _judge(tensor, lambda r0, n: data[r0 * row_bytes:(r0 + n) * row_bytes], layout, options, read_weight,
                  max(1, len(data)), data)


def judge_scale_rows(tensor: TensorInfo, read_rows: ReadRows, layout: ScaleLayout | None, options: ContentOptions,
                     read_weight: ReadWeight | None = None, slab_bytes: int = 64 << 20) -> Judgement:
    """`judge_scale_tensor` on a tensor read in row slabs of at most `slab_bytes` (a scale larger
    than one read): `read_rows(first_row, rows)` returns their stored bytes. The tally passes over
    the slabs first; a tensor it does not call clean (or whose padding is off: the padding rule would
    need the bytes again) goes through the rules' evaluator, slab by slab."""
    return _judge(tensor, read_rows, layout, options, read_weight, slab_bytes, None)


def _judge(t: TensorInfo, read_rows: ReadRows, layout: ScaleLayout | None, options: ContentOptions,
           read_weight: ReadWeight | None, slab_bytes: int, data: bytes | memoryview | None) -> Judgement:
    """The quick test, then (unsure) the histogram, over row slabs; then the evaluator. `data`: the
    whole tensor in hand, which lets the padding rule run beside a clean tally without a re-read."""
    n_rows = t.shape[0] if t.shape else 1
    row_bytes = t.nbytes // n_rows if n_rows else 0
    rows = max(1, slab_bytes // max(1, row_bytes))
    for quick in (True, False) if QUICK else (False,):
        tally = tally_for(layout, t, options, quick)
        if tally is None or (quick and not tally.quick):
            continue
        for r in range(0, n_rows, rows):
            tally.add(read_rows(r, min(rows, n_rows - r)), r)
        if data is not None or not tally.pad_bad:
            done = clean_outcome(tally, t, layout, options, lambda: data if data is not None else b"")
            if done is not None:
                return done
    return check_tensor_slabs(layout, t, read_rows, options, read_weight)


def exact_median(t: TensorInfo, layout: ScaleLayout | None, content: ContentOptions,
                 read: Callable[[int, int], bytes | memoryview], max_read: int = 64 << 20) -> int:
    """The exact median exponent of a tensor the quick test found clean (its summary holds an
    interval), from a histogram of its real box; `read(start, length)` reads the tensor's bytes, in
    row slabs of at most `max_read` bytes."""
    tally = tally_for(layout, t, content)
    if tally is None:
        raise ValueError(f"{t.name}: no histogram for this encoding")
    row_bytes = t.nbytes // t.shape[0] if t.shape and t.shape[0] else t.nbytes
    rows = max(1, max_read // max(1, row_bytes))
    for r in range(0, t.shape[0], rows):
        tally.add(read(r * row_bytes, min(rows, t.shape[0] - r) * row_bytes), r)
    ok, median = tally.verdict(content.outlier_span, UNINIT_FAR)
    if not ok or median is None:  # the band proved it clean, so the histogram must agree
        raise AssertionError(f"{t.name}: the quick test and the histogram disagree")
    return median
