"""`dump --heatmap`: a whole scale tensor as a terminal picture, rows x columns downsampled to fit.

Colour is the exponent relative to the median of the real entries (blue below, green at, red
above), so garbage padding and outliers jump out; the character repeats the distance from the
median (░▒▓█) and, where there is no colour (NO_COLOR, a file), one digit per band instead, 1 far
below to 9 far above, 5 at the median, so every band of the legend stays distinct (. zero, N NaN).
Each cell shows the entry of its patch that breaks the worst rule, else the one furthest from the
median: one bad byte is never averaged away.
"""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.text import Text

from fp8doctor.dumper import NO_MARK, TensorDump
from fp8doctor.reporters.dump_header import render_each

MAX_HEIGHT = 32
"""Most picture lines per tensor."""

_BANDS = [  # (upper bound of exponent - median, colour)
    (-24, "#313695"), (-12, "#4575b4"), (-5, "#74add1"), (-3, "#abd9e9"), (2, "#66bd63"),
    (5, "#fee090"), (12, "#fdae61"), (24, "#f46d43"), (10**9, "#d73027"),
]
NAN_STYLE = "bold bright_magenta"
ZERO_STYLE = "grey42"
NEG_STYLE = "bold bright_cyan"


PLAIN_GLYPHS = "123456789"
"""One glyph per band of _BANDS when there is no colour."""


def _band(dev: int, plain: bool = False) -> tuple[str, str]:
    i = next(i for i, (bound, _) in enumerate(_BANDS) if dev <= bound)
    if plain:
        return PLAIN_GLYPHS[i], _BANDS[i][1]
    a = abs(dev)
    char = "░" if a <= 2 else "▒" if a <= 12 else "▓" if a <= 24 else "█"
    return char, _BANDS[i][1]


def _plain(console: Console) -> bool:
    return console.no_color or console.color_system is None


def _edges(n: int, k: int) -> np.ndarray:
    return np.linspace(0, n, k + 1).round().astype(int)


def render_heatmap(d: TensorDump, console: Console, max_height: int = MAX_HEIGHT) -> None:
    dec = d.decoded()
    if dec is None:
        console.print(Text(f"  no heatmap: {d.dtype} entries cannot be decoded", "yellow"))
        return
    sel = d.selected
    if not sel.any():
        console.print(Text(f"  nothing selected in rows {d.rows[0]}:{d.rows[1]} (region {d.region})", "yellow"))
        return
    real = sel & ~d.padding & dec.valid
    median = int(np.median(dec.exponent[real])) if real.any() else 0
    # distance used to pick a patch's representative: NaN/negative furthest, then |exponent - median|
    dist = np.where(dec.valid, np.abs(dec.exponent - median), 0).astype(np.int64)
    dist = np.where(dec.nan | dec.negative, 10**6, dist)
    dist = np.where(dec.zero, 1, dist)
    score = np.where(d.severity != NO_MARK, (d.severity.astype(np.int64) + 1) * 10**7, 0) + dist
    score = np.where(sel, score, -1)

    plain = _plain(console)
    nrows, ncols = sel.shape
    label_w = max(len(d.row_label(d.rows[0] + nrows - 1)), 3)
    height = min(nrows, max_height)
    width = min(ncols, max(8, console.width - label_w - 6))
    re_, ce = _edges(nrows, height), _edges(ncols, width)
    scale_note = f"  {'row':>{label_w}}  {ncols} columns" + (f", {ce[1] - ce[0]}+ per cell" if width < ncols else "")
    scale_note += f"; {re_[1] - re_[0]}+ rows per line" if height < nrows else ""
    console.print(Text(scale_note, "dim"), soft_wrap=True)
    for i in range(height):
        line = Text()
        line.append(f"  {d.row_label(d.rows[0] + int(re_[i])):>{label_w}}  ", "dim")
        band = score[re_[i]:re_[i + 1]]
        for j in range(width):
            patch = band[:, ce[j]:ce[j + 1]]
            if patch.max() < 0:
                line.append(" ")
                continue
            pr, pc = np.unravel_index(int(patch.argmax()), patch.shape)
            r, c = int(re_[i] + pr), int(ce[j] + pc)
            if dec.nan[r, c]:
                line.append("N", NAN_STYLE)
            elif dec.negative[r, c]:
                line.append("-", NEG_STYLE)
            elif dec.zero[r, c]:
                line.append(".", ZERO_STYLE)
            else:
                char, colour = _band(int(dec.exponent[r, c]) - median, plain)
                line.append(char, colour)
        console.print(line, soft_wrap=True)
    key = Text(f"  exponent vs the real entries' median 2^{median}: ")
    for lo, (bound, colour) in zip([None, *(b for b, _ in _BANDS)], _BANDS):
        char, _ = _band(bound if bound < 10**9 else 25, plain)
        key.append(char * 2, colour)
        key.append(f"{'<=' + format(bound, '+d') if bound < 10**9 else '>' + format(lo, '+d')} ")
    key.append("N", NAN_STYLE)
    key.append(" NaN  ")
    key.append(".", ZERO_STYLE)
    key.append(" zero (2^-127 / 0.0)")
    console.print(key, soft_wrap=True)


def render(dumps: list[TensorDump], console: Console) -> None:
    render_each(dumps, console, render_heatmap)
