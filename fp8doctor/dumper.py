"""`dump`: the raw bytes of scale tensors exactly as they sit on disk, and what each entry means.

Pure core: a selection (exact names, globs, or the tensors the scan flags), a region (padding,
logical, all) and a row range become frozen `TensorDump` records holding the bytes as read, their
absolute offsets, and per-entry marks: padding, and the severity of any rule the entry breaks.
The marks come from the scan's own rules (rules/content.py mark_tensor_slabs: the whole tensor
judged in row slabs, each finding's entry mask handed out for the selected rows only), never from
a second copy of them, so memory follows the selection. `dump_streams` hands out a selection as
pieces of rows for renderers that stream (raw, JSON). Renderers live in fp8doctor/reporters/dump_*.py.

Rows: a scale tensor is viewed as 2-D, one row per index of its second-to-last axis and the last
axis as columns; tensors of rank 3 or more (gpt-oss experts [E, N, G]) have their leading axes
flattened, so row r of [E, N, G] is (r // N, r % N). A 1-D tensor is one row.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np

from fp8doctor.checkpoint.dtypes import DTYPE_BITS
from fp8doctor.checkpoint.header import TensorInfo
from fp8doctor.checkpoint.loader import Checkpoint, open_checkpoint
from fp8doctor.errors import Fp8DoctorError
from fp8doctor.findings import Finding, Severity
from fp8doctor.inspection import Inspection
from fp8doctor.interrupt import hold
from fp8doctor.layouts.codecs import Decoded, decode
from fp8doctor.layouts.model import ENCODINGS, ITEMSIZE, ScaleLayout
from fp8doctor.rules.content import RULE_SLAB, SlabMarks, mark_tensor_slabs
from fp8doctor.scanner import ScanOptions, analyze, ask_repair

REGIONS = ("all", "logical", "padding")

NO_MARK = -1
"""`TensorDump.severity` of an entry that breaks no rule (otherwise the Severity's rank)."""

_WHY_NO_LAYOUT = ("scale-orphan", "layout-unknown", "scale-shape-mismatch")


class DumpError(Fp8DoctorError, ValueError):
    """The selection cannot be dumped (unknown name, not a scale, glob matching nothing, bad rows).
    The message is one line; the CLI exits 2."""


@dataclass(frozen=True)
class RowRange:
    """A half-open range of rows, Python slice style: '3:8', '5' (one row), ':8', '3:', '-2:'."""

    start: int | None = None
    stop: int | None = None

    @classmethod
    def parse(cls, text: str) -> RowRange:
        t = text.strip()
        try:
            if ":" not in t:
                i = int(t)
                return cls(i, i + 1 if i != -1 else None)
            a, b = t.split(":")
            return cls(int(a) if a.strip() else None, int(b) if b.strip() else None)
        except ValueError:
            raise DumpError(f"--rows {text!r} is not a row range like 3:8, 5, :8 or 3:") from None

    def resolve(self, nrows: int) -> tuple[int, int]:
        start, stop, _ = slice(self.start, self.stop).indices(nrows)
        return start, max(start, stop)

    def __str__(self) -> str:
        return f"{'' if self.start is None else self.start}:{'' if self.stop is None else self.stop}"


@dataclass(frozen=True)
class DumpOptions:
    tensors: tuple[str, ...] = ()
    """Exact tensor names or globs (fnmatch, case-sensitive)."""
    findings: bool = False
    """Also select every scale tensor a scan finding names."""
    region: str = "all"
    rows: RowRange | None = None
    scan: ScanOptions = field(default_factory=ScanOptions)
    """Fill and layout overrides: dump marks exactly what `scan` with these options would flag."""
    marks: bool = True
    """False reads only the selected rows and runs no rule (what `--format raw` needs)."""

    def __post_init__(self) -> None:
        if self.region not in REGIONS:
            raise DumpError(f"region must be one of {', '.join(REGIONS)}, not {self.region!r}")


@dataclass(frozen=True, eq=False)
class TensorDump:
    """The selected entries of one scale tensor, as read, with their marks.

    `data` holds rows `rows[0]:rows[1]` exactly as on disk, starting at absolute offset
    `span_offset` of `file`; `selected`, `padding` and `severity` are per-entry arrays of shape
    (rows in span, row_len) saying which entries the selection kept, which are padding, and the
    worst rule each breaks (NO_MARK for none).
    """

    name: str
    file: str
    dtype: str
    shape: tuple[int, ...]
    logical_shape: tuple[int, ...]
    byte_offset: int
    encoding: str | None
    itemsize: int
    layout: ScaleLayout | None
    note: str
    region: str
    rows: tuple[int, int]
    row_len: int
    data: bytes
    selected: np.ndarray
    padding: np.ndarray
    severity: np.ndarray
    rules: tuple[tuple[str, Severity, int], ...] = ()
    """(rule, severity, selected entries that break it)."""
    findings: tuple[Finding, ...] = ()
    """Content findings on the whole tensor (only when marks were computed)."""
    marked: bool = True
    whole: SelectionSummary | None = None
    """Set on a preview (`TensorStream.preview`): the rows here are the first ones a grid shows, and
    this says what the whole selection holds (its rows, counts and `rules` are the selection's)."""

    @property
    def nrows(self) -> int:
        return math.prod(self.shape[:-1]) if len(self.shape) > 1 else 1

    @property
    def weight(self) -> TensorInfo | None:
        return self.layout.weight if self.layout is not None else None

    @property
    def first_index(self) -> int:
        """Flat stored index of the span's first entry."""
        return self.rows[0] * self.row_len

    @property
    def span_offset(self) -> int:
        return self.byte_offset + self.first_index * self.itemsize

    @property
    def count(self) -> int:
        return int(self.selected.sum())

    def offset_of(self, flat_index: int) -> int:
        """Absolute file offset of the entry at a flat stored index."""
        return self.byte_offset + flat_index * self.itemsize

    def entries(self) -> np.ndarray:
        """The span's bytes as an array (rows in span, row_len, itemsize) of uint8."""
        return np.frombuffer(self.data, dtype=np.uint8).reshape((*self.selected.shape, self.itemsize))

    def indices(self) -> np.ndarray:
        """Flat stored indices of the selected entries, ascending."""
        return np.flatnonzero(self.selected.reshape(-1)) + self.first_index

    def selected_bytes(self) -> bytes:
        """Every selected entry's bytes, in file order, unchanged."""
        if self.selected.all():
            return self.data
        return self.entries()[self.selected].tobytes()

    def decoded(self) -> Decoded | None:
        if self.encoding is None:
            return None
        return decode(self.encoding, self.data, self.selected.shape)

    def padding_ranges(self) -> list[tuple[int, int]]:
        """Selected padded entries as half-open flat stored-index ranges."""
        return _ranges(self.selected & self.padding, self.first_index)

    def selected_ranges(self) -> list[tuple[int, int]]:
        return _ranges(self.selected, self.first_index)

    def bad_ranges(self) -> list[tuple[int, int, Severity]]:
        """Selected entries that break a rule, as (start, end, worst severity) ranges."""
        out = []
        for sev in Severity:
            for a, b in _ranges(self.selected & (self.severity == sev.rank), self.first_index):
                out.append((a, b, sev))
        return sorted(out, key=lambda r: r[0])

    def row_label(self, row: int) -> str:
        """Row r as the index of the leading axes: '5', or '1,5' for a [E, N, G] tensor."""
        if len(self.shape) <= 2:
            return str(row)
        return ",".join(str(int(i)) for i in np.unravel_index(row, self.shape[:-1]))


def _ranges(mask: np.ndarray, base: int) -> list[tuple[int, int]]:
    flat = mask.reshape(-1).astype(np.int8)
    if not flat.any():
        return []
    edges = np.flatnonzero(np.diff(np.concatenate(([0], flat, [0]))))
    return [(int(a) + base, int(b) + base) for a, b in zip(edges[::2], edges[1::2])]


def _natural(name: str) -> list[object]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def select(ckpt: Checkpoint, patterns: Iterable[str], scale_names: set[str],
           findings: Iterable[Finding] | None = None) -> list[str]:
    """The scale tensors to dump, in the order asked (glob matches in natural name order)."""
    chosen: dict[str, None] = {}
    for pat in patterns:
        if pat in scale_names:
            chosen[pat] = None
        elif pat in ckpt.tensors:
            t = ckpt.tensors[pat]
            hint = next((s for s in sorted(scale_names) if s.rsplit(".", 1)[0] == pat.rsplit(".", 1)[0]
                         or s.removesuffix("_scales") == pat.removesuffix("_blocks")), None)
            raise DumpError(f"{pat} is not a scale tensor (it is {t.dtype} {list(t.shape)}); dump shows scale "
                            "tensors" + (f": did you mean {hint}?" if hint else ""))
        elif _is_glob(pat):
            matches = sorted((n for n in scale_names if fnmatch.fnmatchcase(n, pat)), key=_natural)
            if not matches:
                others = sum(1 for n in ckpt.tensors if fnmatch.fnmatchcase(n, pat))
                raise DumpError(f"--tensor {pat!r} matches no scale tensor" +
                                (f" ({others} other tensors match it)" if others else " (and no tensor at all)"))
            chosen.update(dict.fromkeys(matches))
        else:
            close = difflib.get_close_matches(pat, sorted(scale_names), n=1, cutoff=0.6)
            raise DumpError(f"no tensor named {pat} in the checkpoint" +
                            (f"; did you mean {close[0]}?" if close else ""))
    if findings is not None:
        flagged = sorted({f.tensor for f in findings if f.tensor in scale_names}, key=_natural)
        chosen.update(dict.fromkeys(flagged))
    return list(chosen)


def _geometry(shape: tuple[int, ...]) -> tuple[int, int]:
    """(rows, entries per row) of the 2-D view."""
    if not shape:
        return 1, 1
    return (math.prod(shape[:-1]) if len(shape) > 1 else 1), shape[-1]


def _padding_rows(shape: tuple[int, ...], box: tuple[int, ...] | None, row_len: int, r0: int, r1: int
                  ) -> np.ndarray:
    """The padding mask (ScaleLayout.padding_mask: outside the logical box at the origin) of rows
    r0:r1 of the 2-D view only: memory follows the selection, not the tensor."""
    rows = max(0, r1 - r0)
    if box is None or not shape:
        return np.zeros((rows, row_len), dtype=bool)
    full = tuple(box) + tuple(shape[len(box):])  # a shorter box leaves the trailing axes whole
    col = np.arange(row_len) >= full[len(shape) - 1]
    if len(shape) == 1:
        row = np.zeros(rows, dtype=bool)
    else:
        lead = np.unravel_index(np.arange(r0, r0 + rows), shape[:-1])
        row = np.zeros(rows, dtype=bool)
        for axis, idx in enumerate(lead):
            row |= idx >= full[axis]
    return row[:, None] | col[None, :]


def _itemsize(t: TensorInfo, encoding: str | None) -> int:
    if encoding is not None:
        return ITEMSIZE[encoding]
    bits = DTYPE_BITS[t.dtype]
    if bits % 8:
        raise DumpError(f"{t.name} is {t.dtype}, a sub-byte dtype; dump shows whole-byte entries only")
    return bits // 8


STREAM_BYTES = 1 << 20
"""Stored bytes of rows in each piece when a dump streams (`dump_pieces`)."""
_READ_WHOLE = RULE_SLAB
"""A marked tensor up to this size is read once, whole (rules and bytes from the one read)."""


@dataclass(frozen=True)
class _Planned:
    """One selected tensor, checked and resolved before any of its bytes is read."""

    t: TensorInfo
    layout: ScaleLayout | None
    note: str
    encoding: str | None
    itemsize: int
    row_len: int
    rows: tuple[int, int]


class _MarkCursor:
    """Walks the slab marks of one tensor (rules/content.py mark_tensor_slabs) forward, handing out
    each finding's mask over successive flat windows; a slab is dropped once it has been passed."""

    def __init__(self, findings: list[Finding], slabs: SlabMarks) -> None:
        self._order = {f.rule: i for i, f in enumerate(findings)}
        self._slabs = iter(slabs)
        self._cur: tuple[int, list[tuple[Finding, np.ndarray]]] | None = None

    def window(self, lo: int, hi: int) -> list[tuple[Finding, np.ndarray]]:
        """(finding, mask of flat stored entries lo:hi), in the findings' order."""
        acc: dict[str, tuple[Finding, np.ndarray]] = {}
        while hi > lo:
            if self._cur is None:
                self._cur = next(self._slabs, None)
                if self._cur is None:
                    break
            base, masks = self._cur
            end = base + masks[0][1].size
            if end <= lo:
                self._cur = None
                continue
            if base >= hi:
                break
            a, b = max(base, lo), min(end, hi)
            for f, m in masks:
                mask = acc.setdefault(f.rule, (f, np.zeros(hi - lo, dtype=bool)))[1]
                mask[a - lo:b - lo] |= m[a - base:b - base]
            if end > hi:
                break
            self._cur = None
        return sorted(acc.values(), key=lambda fm: self._order[fm[0].rule])


def _plan_one(ckpt: Checkpoint, t: TensorInfo, layout: ScaleLayout | None, note: str,
              options: DumpOptions) -> _Planned:
    encoding = layout.encoding if layout is not None else ENCODINGS.get(t.dtype)
    itemsize = _itemsize(t, encoding)
    nrows, row_len = _geometry(t.shape)
    if t.numel == 0:
        nrows = row_len = 0
    r0, r1 = options.rows.resolve(nrows) if options.rows is not None else (0, nrows)
    if not ckpt.readable(t):
        raise DumpError(f"{t.name} extends past the end of {t.file} (truncated file); its bytes cannot be read")
    return _Planned(t, layout, note, encoding, itemsize, row_len, (r0, r1))


def _dump_pieces(insp: Inspection, p: _Planned, options: DumpOptions,
                 piece_bytes: int | None) -> Iterator[TensorDump]:
    """The selected rows of one tensor as TensorDumps of consecutive row ranges (one piece for all
    of them when `piece_bytes` is None). The rules judge the whole tensor once, in row slabs; each
    piece holds its own rows' bytes and marks only, so memory follows the piece, not the tensor."""
    hold("dump-tensor")
    ckpt = insp.checkpoint
    t, layout, encoding, itemsize, row_len = p.t, p.layout, p.encoding, p.itemsize, p.row_len
    r0, r1 = p.rows
    logical_shape = tuple(layout.logical_shape) if layout is not None else t.shape
    box = logical_shape if layout is not None else None
    row_bytes = row_len * itemsize
    marked = options.marks and encoding is not None
    findings: list[Finding] = []
    cursor = None
    try:
        # a small tensor is read once, whole; a large one in slabs (the rules) and pieces (the bytes)
        whole = ckpt.read(t) if marked and t.nbytes <= _READ_WHOLE else None

        def read(start: int, length: int) -> bytes:
            return whole[start:start + length] if whole is not None else ckpt.read(t, start, length)

        if marked:
            lead_items = math.prod(t.shape[1:]) if t.shape else 1
            lead_bytes = lead_items * itemsize

            def read_rows(first: int, n: int) -> bytes:
                return read(first * lead_bytes, n * lead_bytes)

            # the leading-axis rows that hold the selected rows of the 2-D view
            lead = (r0 * row_len // lead_items, -(-r1 * row_len // lead_items)) if lead_items else (0, 0)
            findings, slabs = mark_tensor_slabs(layout, t, read_rows, insp.content, insp.read_weight, lead)
            cursor = _MarkCursor(findings, slabs)
        step = max(1, r1 - r0) if piece_bytes is None else max(1, piece_bytes // max(1, row_bytes))
        for p0 in range(r0, max(r1, r0 + 1), step):
            p1 = min(r1, p0 + step)
            data = read(p0 * row_bytes, (p1 - p0) * row_bytes)
            pad2 = _padding_rows(t.shape, box, row_len, p0, p1)
            severity = np.full((p1 - p0, row_len), NO_MARK, dtype=np.int8)
            masks = cursor.window(p0 * row_len, p1 * row_len) if cursor is not None else []
            if options.region == "padding":
                sel = pad2.copy()
            elif options.region == "logical":
                sel = ~pad2
            else:
                sel = np.ones_like(pad2)
            counts = []
            for f, m in masks:
                m2 = m.reshape(p1 - p0, row_len)
                np.maximum(severity, np.where(m2, f.severity.rank, NO_MARK).astype(np.int8), out=severity)
                counts.append((f.rule, f.severity, int((m2 & sel).sum())))
            yield TensorDump(
                name=t.name, file=t.file, dtype=t.dtype, shape=t.shape, logical_shape=tuple(logical_shape),
                byte_offset=t.offset, encoding=encoding, itemsize=itemsize, layout=layout, note=p.note,
                region=options.region, rows=(p0, p1), row_len=row_len, data=data, selected=sel, padding=pad2,
                severity=severity, rules=tuple(c for c in counts if c[2]), findings=tuple(findings), marked=marked)
    except OSError as e:
        raise DumpError(f"cannot read {t.name} from {t.file}: {e.strerror or e}") from None


def _plan(ckpt: Checkpoint, options: DumpOptions) -> tuple[list[_Planned], Inspection]:
    """The selected tensors, resolved and checked (names, dtypes, rows, readability) before any
    tensor's bytes are read, so a streamed dump never stops half way for a selection error."""
    if not options.tensors and not options.findings:
        raise DumpError("say which scale tensors to dump: --tensor NAME|GLOB (repeatable) or --findings")
    insp = Inspection.of(ckpt, options.scan)
    layouts = insp.layouts
    if options.findings:
        analysis = analyze(insp, options.scan)
        why = analysis.findings
        flagged: list[Finding] | None = [f for f in analysis.findings if options.scan.wants(f)]
    else:
        why, flagged = insp.pairing.findings, None
    names = select(ckpt, options.tensors, set(insp.pairing.scale_names), flagged)
    out = []
    for name in names:
        layout = layouts.get(name)
        note = ""
        if layout is None:
            reason = next((f for f in why if f.tensor == name and f.rule in _WHY_NO_LAYOUT), None)
            note = (f"layout unknown ({reason.rule}): logical = whole tensor, no padding located"
                    if reason else "layout unknown: logical = whole tensor, no padding located")
        elif layout.note:
            note = layout.note
        out.append(_plan_one(ckpt, ckpt.tensors[name], layout, note, options))
    if options.rows is not None and out and not any(p.rows[1] > p.rows[0] for p in out):
        most = max(math.prod(p.t.shape[:-1]) if len(p.t.shape) > 1 else 1 for p in out)
        raise DumpError(f"--rows {options.rows} selects no row: the selected tensors have at most {most} rows")
    return out, insp


def dump_checkpoint(ckpt: Checkpoint, options: DumpOptions) -> list[TensorDump]:
    """Dump the selected scale tensors of an open checkpoint. Reads only headers and the selected
    tensors' bytes (plus the weight blocks behind zero scales, as scan does), unless
    `options.findings` asks for a full scan first. Raises DumpError (one line) when it cannot."""
    planned, insp = _plan(ckpt, options)
    return [next(_dump_pieces(insp, p, options, None)) for p in planned]


@dataclass(frozen=True)
class SelectionSummary:
    """What a preview's rows cannot say about the whole selection they come from."""

    rows: tuple[int, int]
    """The selection's row range."""
    count: int
    """Selected entries."""
    selected_padding: int
    """Selected entries that are padding."""
    padding: int
    """Padded entries in the selection's rows."""
    selected_rows: int
    """Rows holding at least one selected entry."""
    next_row: int | None
    """The first row holding a selected entry after the preview's rows (None: there is none)."""
    value_width: int = 0
    """The widest decoded value in the selection (0 when not asked for)."""


def _selected_rows(d: TensorDump) -> np.ndarray:
    """Span-relative indices of the rows of `d` holding a selected entry."""
    n = d.rows[1] - d.rows[0]
    return np.flatnonzero(d.selected.reshape(n, -1).any(axis=1)) if n and d.selected.size else np.zeros(0, np.int64)


def _cut(d: TensorDump, stop: int) -> TensorDump:
    """`d`'s rows up to (not including) absolute row `stop`."""
    k = stop - d.rows[0]
    return replace(d, rows=(d.rows[0], stop), data=d.data[:k * d.row_len * d.itemsize], selected=d.selected[:k],
                   padding=d.padding[:k], severity=d.severity[:k])


def _joined(parts: list[TensorDump]) -> TensorDump:
    """Consecutive pieces of one tensor as one TensorDump."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    return replace(first, rows=(first.rows[0], parts[-1].rows[1]), data=b"".join(p.data for p in parts),
                   selected=np.concatenate([p.selected for p in parts]),
                   padding=np.concatenate([p.padding for p in parts]),
                   severity=np.concatenate([p.severity for p in parts]))


@dataclass(frozen=True, eq=False)
class TensorStream:
    """One selected tensor of an open checkpoint, dumped piece by piece on demand (`pieces`), as
    often as a renderer needs to pass over it; `rows` is the whole selection's row range."""

    _insp: Inspection
    _planned: _Planned
    _options: DumpOptions

    @property
    def rows(self) -> tuple[int, int]:
        return self._planned.rows

    def pieces(self, marks: bool = True, piece_bytes: int = STREAM_BYTES) -> Iterator[TensorDump]:
        """Consecutive TensorDumps of at most `piece_bytes` stored bytes of rows (at least one row,
        and one empty piece for an empty selection); `marks=False` runs no rule."""
        options = self._options if marks else replace(self._options, marks=False)
        return _dump_pieces(self._insp, self._planned, options, piece_bytes)

    def preview(self, max_rows: int, value_width: Callable[[TensorDump], int] | None = None,
                piece_bytes: int = STREAM_BYTES, each: Callable[[TensorDump], object] | None = None) -> TensorDump:
        """The first `max_rows` rows of the selection that hold a selected entry (and the rows
        between them), with `whole` and `rules` saying what the whole selection holds: what a grid
        capped at `max_rows` shows, in memory that follows a piece and the rows shown, not the
        tensor. `value_width(piece)`: the widest decoded value of a piece, taken over every piece;
        `each(piece)` sees every piece of the same pass (a histogram counts its bins there)."""
        need = max(max_rows, 1)
        kept: list[TensorDump] = []
        first: TensorDump | None = None
        have = count = sel_pad = pad = sel_rows = width = 0
        next_row: int | None = None
        totals: dict[str, tuple[Severity, int]] = {}
        order: dict[str, int] = {}
        for p in self.pieces(self._options.marks, piece_bytes):
            first = first or p
            order.update((f.rule, i) for i, f in enumerate(p.findings) if f.rule not in order)
            for rule, sev, n in p.rules:
                totals[rule] = (sev, totals.get(rule, (sev, 0))[1] + n)
            count += p.count
            sel_pad += int((p.selected & p.padding).sum())
            pad += int(p.padding.sum())
            if value_width is not None:
                width = max(width, value_width(p))
            if each is not None:
                each(p)
            idx = _selected_rows(p)
            sel_rows += int(idx.size)
            if have < need and (kept or idx.size):
                if idx.size > need - have:  # the rows shown end inside this piece
                    next_row = p.rows[0] + int(idx[need - have])
                    kept.append(_cut(p, p.rows[0] + int(idx[need - have - 1]) + 1))
                    have = need
                else:
                    kept.append(p)
                    have += int(idx.size)
            elif next_row is None and have >= need and idx.size:
                next_row = p.rows[0] + int(idx[0])
        assert first is not None  # pieces() yields at least one piece
        shown = _joined(kept) if kept else _cut(first, first.rows[0])
        rules = tuple((r, *totals[r]) for r in sorted(totals, key=order.__getitem__) if totals[r][1])
        return replace(shown, rules=rules, whole=SelectionSummary(self.rows, count, sel_pad, pad, sel_rows,
                                                                  next_row, width))

    def whole(self) -> TensorDump:
        """The whole selection as one TensorDump (what `dump` returns for this tensor)."""
        return next(_dump_pieces(self._insp, self._planned, self._options, None))


@contextmanager
def dump_streams(path: str | os.PathLike[str], options: DumpOptions) -> Iterator[list[TensorStream]]:
    """`dump`, streamed: the selected tensors as TensorStreams, valid inside the `with` block. Every
    selection error is raised on entry, before any tensor's bytes are read."""
    with open_checkpoint(path) as ckpt:
        ask_repair(ckpt)
        planned, insp = _plan(ckpt, options)
        yield [TensorStream(insp, p, options) for p in planned]


def dump_pieces(path: str | os.PathLike[str], options: DumpOptions,
                piece_bytes: int = STREAM_BYTES) -> Iterator[TensorDump]:
    """Every selected tensor's pieces in turn (TensorStream.pieces), so a whole-tensor dump holds
    one piece at a time. Selection errors are raised before the first piece."""
    with dump_streams(path, options) as streams:
        for s in streams:
            yield from s.pieces(options.marks, piece_bytes)


def dump(path: str | os.PathLike[str], options: DumpOptions) -> list[TensorDump]:
    """Open the checkpoint at `path` and dump the selected scale tensors (see `dump_checkpoint`).
    Raises CheckpointError when `path` is no checkpoint, DumpError when the selection fails."""
    with open_checkpoint(path) as ckpt:
        ask_repair(ckpt)
        return dump_checkpoint(ckpt, options)
