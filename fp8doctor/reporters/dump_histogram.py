"""`dump --histogram`: how many selected entries hold each exponent, real and padded apart, so a
tensor's spread and its garbage are visible at a glance. Bins holding entries that break a rule
are coloured by the worst severity."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from fp8doctor.dumper import NO_MARK, TensorDump
from fp8doctor.reporters.dump_header import PAD_STYLE, RANK_SEVERITY, SEVERITY_CELL, render_each

BAR = 30


Bin = tuple[str, str, int, int, int]
_SPECIAL = ("zero", "NaN", "negative")


def _keyed(d: TensorDump) -> dict[tuple[int, int], list]:
    """Bins of `d` keyed for order and merging: (0, exponent) ascending, then (1, i) for the special
    values zero, NaN, negative; each [value, byte or '', real, padded, worst severity rank]."""
    dec = d.decoded()
    if dec is None:
        return {}
    sel, pad, sev = d.selected, d.padding, d.severity
    keys = np.where(dec.valid, dec.exponent, 0).astype(np.int64)
    special = [dec.zero, dec.nan, dec.negative]
    out: dict[tuple[int, int], list] = {}
    for e in np.unique(keys[sel & dec.valid]):
        m = sel & dec.valid & (keys == e)
        byte = f"{int(e) + 127:02x}" if d.encoding == "e8m0" else ""
        out[(0, int(e))] = [f"2^{int(e)}", byte, int((m & ~pad).sum()), int((m & pad).sum()), int(sev[m].max())]
    for i, (label, mask) in enumerate(zip(_SPECIAL, special)):
        m = sel & mask
        if m.any():
            byte = {"zero": "00", "NaN": "ff"}.get(label, "") if d.encoding == "e8m0" else ""
            if label == "zero" and d.encoding == "e8m0":
                label = "2^-127 (zero)"
            out[(1, i)] = [label, byte, int((m & ~pad).sum()), int((m & pad).sum()), int(sev[m].max())]
    return out


def bins(d: TensorDump) -> list[Bin]:
    """(value, byte or '', real count, padded count, worst severity rank) per bin, in order."""
    return [tuple(v) for _, v in sorted(_keyed(d).items())]  # type: ignore[misc]


class BinCounter:
    """`bins` of a whole selection, counted piece by piece (TensorStream.pieces): `add` each piece,
    then `bins()`; one piece is held at a time."""

    def __init__(self) -> None:
        self._acc: dict[tuple[int, int], list] = {}

    def add(self, piece: TensorDump) -> None:
        for k, v in _keyed(piece).items():
            have = self._acc.get(k)
            if have is None:
                self._acc[k] = v
            else:
                have[2] += v[2]
                have[3] += v[3]
                have[4] = max(have[4], v[4])

    def bins(self) -> list[Bin]:
        return [tuple(v) for _, v in sorted(self._acc.items())]  # type: ignore[misc]


def stream_bins(pieces: Iterable[TensorDump]) -> list[Bin]:
    """`bins` of the whole selection from its pieces, one piece held at a time."""
    counter = BinCounter()
    for p in pieces:
        counter.add(p)
    return counter.bins()


def render_histogram(d: TensorDump, console: Console, rows: list[Bin] | None = None) -> None:
    """The histogram of `d` (or of `rows`, the bins of the selection `d` previews)."""
    rows = bins(d) if rows is None else rows
    if not rows:
        why = "nothing selected" if d.encoding else f"{d.dtype} entries cannot be decoded"
        console.print(Text(f"  no histogram: {why}", "yellow"))
        return
    top = max(r + p for _, _, r, p, _ in rows)
    table = Table(show_edge=False, pad_edge=False, box=None, padding=(0, 2, 0, 2))
    table.add_column("value", justify="right")
    if d.encoding == "e8m0":
        table.add_column("byte")
    table.add_column("real", justify="right")
    table.add_column("padded", justify="right")
    table.add_column("")
    for value, byte, real, padded, worst in rows:
        style = SEVERITY_CELL[RANK_SEVERITY[worst]] if worst != NO_MARK else ""
        n_real = round(BAR * real / top) if real else 0
        n_pad = round(BAR * padded / top) if padded else 0
        bar = Text.assemble(("█" * max(n_real, 1 if real else 0), "green"),
                            ("▒" * max(n_pad, 1 if padded else 0), PAD_STYLE))
        cells = [Text(value, style)] + ([Text(byte, style)] if d.encoding == "e8m0" else [])
        table.add_row(*cells, f"{real:,}", f"{padded:,}", bar)
    console.print(table)


def render(dumps: list[TensorDump], console: Console) -> None:
    render_each(dumps, console, render_histogram)


def render_streamed(items: list[tuple[TensorDump, list[Bin]]], console: Console) -> None:
    """`render` from previews (TensorStream.preview: the header's counts) and streamed bins."""
    rows = {id(d): r for d, r in items}
    render_each([d for d, _ in items], console, lambda d, c: render_histogram(d, c, rows[id(d)]))
