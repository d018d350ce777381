"""The hex grid: one scale row per line (wrapped when wider than the terminal), each entry's bytes
in hex as stored, the absolute file offset of the line's first entry at its start. Padded entries
are dim and prefixed '.', entries that break a rule are coloured by severity and prefixed '!'/'?'
(so the marks survive without colour). `--decode` adds each entry's value."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

from fp8doctor.dumper import NO_MARK, TensorDump
from fp8doctor.layouts.codecs import describe_value
from fp8doctor.layouts.encodings import BY_NAME
from fp8doctor.reporters.dump_header import (
    PAD_MARK,
    PAD_STYLE,
    RANK_SEVERITY,
    SEVERITY_CELL,
    SEVERITY_MARK,
    header,
    rules_line,
)

_E8M0_VALUE = ["2^-127"] + [f"2^{b - 127}" for b in range(1, 255)] + ["NaN"]


def decode_values(d: TensorDump) -> list[str] | None:
    """Each span entry's value as text (row-major): 2^e for E8M0 and for floats that are exact
    powers of two, a decimal for floats that are not; None when the dtype cannot be decoded."""
    dec = d.decoded()
    if dec is None or d.encoding is None:
        return None
    raw = dec.raw.reshape(-1)
    if d.encoding == "e8m0":
        return [_E8M0_VALUE[int(b)] for b in raw]
    pow2 = dec.pow2.reshape(-1)
    exp = dec.exponent.reshape(-1)
    return [f"2^{int(e)}" if p else describe_value(d.encoding, int(r)) for r, p, e in zip(raw, pow2, exp)]


def value_width(d: TensorDump, values: list[str] | None = None) -> int:
    """The widest decoded value among `d`'s entries (0 when they cannot be decoded). A value is a
    function of the entry's bytes: without `values`, each distinct entry is decoded once."""
    if values is None:
        if d.encoding is None or not d.data:
            return 0
        raw = np.unique(np.frombuffer(d.data, dtype=BY_NAME[d.encoding].raw))
        values = decode_values(replace(d, data=raw.tobytes(), selected=np.ones((1, raw.size), dtype=bool)))
    return max((len(v) for v in values), default=0) if values is not None else 0


def _per_line(d: TensorDump, width: int, prefix: int, cell: int) -> int:
    fit = max(1, (width - prefix + 1) // (cell + 1))
    if fit >= d.row_len:
        return max(1, d.row_len)
    n = 1
    while n * 2 <= fit:
        n *= 2
    return n


MAX_ROWS = 64
"""Rows of each tensor the grid shows unless --rows or --all says otherwise."""

_PLAIN, _PAD = -2, -3
"""Cell classes beside the severity ranks (and NO_MARK, which never reaches a cell: it is _PLAIN)."""


class _Body:
    """The grid's lines as rich Segments: one segment per run of plain or padded cells, so a 2048x128
    tensor renders in a fraction of a second (a Text per cell took 20 s), and recording consoles
    (export_html, export_text) still see every style."""

    def __init__(self, lines: list[list[tuple[str, Style | None]]]) -> None:
        self.lines = lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        newline = Segment.line()
        for parts in self.lines:
            for text, style in parts:
                yield Segment(text, style)
            yield newline


def render_grid(d: TensorDump, console: Console, decode: bool = False, max_rows: int | None = None) -> None:
    """The grid of `d`; at most `max_rows` selected rows (None: all), then one line saying how many
    more there are and how to see them."""
    whole = d.whole  # a preview (TensorStream.preview): the first rows shown, the selection's summary
    rows_all = whole.rows if whole is not None else d.rows
    values = decode_values(d) if decode else None
    dw = (BY_NAME[d.encoding].decode_width if d.encoding in BY_NAME else 0) if values is not None else 0
    if values is not None:
        dw = max(dw, whole.value_width if whole is not None else value_width(d, values))
    cell = 1 + 2 * d.itemsize + (1 + dw if dw else 0)
    span_rows = d.rows[1] - d.rows[0]
    any_row = d.selected.reshape(span_rows, -1).any(axis=1) if span_rows else np.zeros(0, dtype=bool)
    all_shown = [int(r) for r in np.flatnonzero(any_row)]
    if not all_shown:
        console.print(Text(f"  nothing selected in rows {rows_all[0]}:{rows_all[1]} (region {d.region})", "yellow"))
        return
    shown = all_shown if max_rows is None else all_shown[:max(max_rows, 1)]
    labels = {r: d.row_label(d.rows[0] + r) for r in shown}
    label_w = max(3, *(len(s) for s in labels.values()), len(f"+{d.row_len}"))
    last = d.offset_of(rows_all[1] * d.row_len)
    off_w = max(8, len(f"{last:x}"))
    prefix = 2 + label_w + 2 + 2 + off_w + 1
    per = _per_line(d, console.width, prefix, cell)

    head = Text()
    head.append(f"  {'row':>{label_w}}  {'offset':<{off_w + 2}} ", "dim")
    for c in range(per):
        head.append(f"{'+' + str(c) if c else '+0':>{cell}}" + (" " if c < per - 1 else ""), "dim")
    console.print(head, soft_wrap=True)

    rl = d.row_len
    rows = np.asarray(shown)
    flat = (rows[:, None] * rl + np.arange(rl)[None, :]).reshape(-1)  # flat span indices of the shown rows
    sel = d.selected.reshape(-1)[flat]
    sev = d.severity.reshape(-1)[flat].astype(np.int64)
    cls = np.where(sev != NO_MARK, sev, np.where(d.padding.reshape(-1)[flat], _PAD, _PLAIN))
    cls = np.where(sel, cls, _PLAIN)
    ent = d.entries().reshape(-1, d.itemsize)[flat]
    hexes = [bytes(h).hex() for h in ent] if d.itemsize > 1 else [f"{b:02x}" for b in ent[:, 0].tolist()]
    mark = {_PLAIN: " ", _PAD: PAD_MARK, **{k: SEVERITY_MARK[v] for k, v in RANK_SEVERITY.items()}}
    blank = " " * cell
    if values is not None:
        vals = [values[i] for i in flat.tolist()]
        texts = [blank if not s_ else mark[c] + h + f" {v:<{dw}}" for s_, c, h, v in
                 zip(sel.tolist(), cls.tolist(), hexes, vals)]
    else:
        texts = [blank if not s_ else mark[c] + h for s_, c, h in zip(sel.tolist(), cls.tolist(), hexes)]
    styles: dict[int, Style | None] = {_PLAIN: None, _PAD: Style.parse(PAD_STYLE),
                                       **{k: Style.parse(SEVERITY_CELL[v]) for k, v in RANK_SEVERITY.items()}}
    bold, dim = Style.parse("bold"), Style.parse("dim")
    cls_list = cls.tolist()
    sel_list = sel.tolist()
    lines: list[list[tuple[str, Style | None]]] = []
    for k, r in enumerate(shown):
        base = k * rl
        for c0 in range(0, rl, per):
            a, b = base + c0, base + min(c0 + per, rl)
            if not any(sel_list[a:b]):
                continue
            label = labels[r] if c0 == 0 else f"+{c0}"
            parts: list[tuple[str, Style | None]] = [
                (f"  {label:>{label_w}}  ", bold if c0 == 0 else dim),
                (f"0x{d.span_offset + (r * rl + c0) * d.itemsize:0{off_w}x}", dim), (" ", None)]
            i = a
            while i < b:  # one segment per run of one class; the separators stay unstyled
                j = i + 1
                c = cls_list[i]
                while j < b and cls_list[j] == c and c in (_PLAIN, _PAD):  # a bad entry stands alone
                    j += 1
                if i > a:
                    parts.append((" ", None))
                parts.append((" ".join(texts[i:j]), styles[c]))
                i = j
            lines.append(parts)
    console.print(_Body(lines), soft_wrap=True)
    more = (whole.selected_rows if whole is not None else len(all_shown)) - len(shown)
    if more:
        # the next row with a selected entry: in these rows, else (a preview) the summary's
        nxt = d.rows[0] + all_shown[len(shown)] if len(all_shown) > len(shown) else whole and whole.next_row
        console.print(Text(f"  {more:,} more row{'s' if more != 1 else ''}: --rows {nxt}: for the next ones, --all for "
                           "every row", "yellow"), soft_wrap=True)


def legend(d: TensorDump, decode: bool) -> list[Text]:
    key = Text("  ")
    key.append(PAD_MARK + "00", PAD_STYLE)
    key.append(" padded entry   ")
    for s in sorted((sev for sev in RANK_SEVERITY.values() if sev.value != "info"), key=lambda x: -x.rank):
        key.append(SEVERITY_MARK[s] + "ff", SEVERITY_CELL[s])
        key.append(f" breaks a{'n' if s.value[0] in 'aeiou' else ''} {s.value} rule   ")
    key.rstrip()
    out = [key]
    if decode and d.encoding == "e8m0":
        out.append(Text("  value = 2^(byte - 127); ff = NaN; 00 = 2^-127, the byte that stands for 0", "dim"))
    elif decode and d.encoding is not None:
        out.append(Text("  2^e: an exact power of two; a decimal: not a power of two", "dim"))
    out.append(rules_line(d))
    return out


def render(dumps: list[TensorDump], console: Console, decode: bool = False, max_rows: int | None = None) -> None:
    for n, d in enumerate(dumps):
        if n:
            console.print()
        for line in header(d):
            console.print(line, soft_wrap=True)
        render_grid(d, console, decode, max_rows)
        for line in legend(d, decode):
            console.print(line, soft_wrap=True)

