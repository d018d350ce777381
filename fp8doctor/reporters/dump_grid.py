"""The hex grid: one scale row per line (wrapped when wider than the terminal), each entry's bytes
in hex as stored, the absolute file offset of the line's first entry at its start. Padded entries
are dim and prefixed '.', entries that break a rule are coloured by severity and prefixed '!'/'?'
(so the marks survive without colour). `--decode` adds each entry's value."""

from __future__ import annotations

from rich.console import Console
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


def _per_line(d: TensorDump, width: int, prefix: int, cell: int) -> int:
    fit = max(1, (width - prefix + 1) // (cell + 1))
    if fit >= d.row_len:
        return max(1, d.row_len)
    n = 1
    while n * 2 <= fit:
        n *= 2
    return n


def render_grid(d: TensorDump, console: Console, decode: bool = False) -> None:
    values = decode_values(d) if decode else None
    dw = (BY_NAME[d.encoding].decode_width if d.encoding in BY_NAME else 0) if values is not None else 0
    if values is not None:
        dw = max(dw, max((len(v) for v in values), default=0))
    cell = 1 + 2 * d.itemsize + (1 + dw if dw else 0)
    span_rows = d.rows[1] - d.rows[0]
    shown = [r for r in range(span_rows) if d.selected[r].any()]
    if not shown:
        console.print(Text(f"  nothing selected in rows {d.rows[0]}:{d.rows[1]} (region {d.region})", "yellow"))
        return
    labels = {r: d.row_label(d.rows[0] + r) for r in shown}
    label_w = max(3, *(len(s) for s in labels.values()), len(f"+{d.row_len}"))
    last = d.offset_of(d.first_index + span_rows * d.row_len)
    off_w = max(8, len(f"{last:x}"))
    prefix = 2 + label_w + 2 + 2 + off_w + 1
    per = _per_line(d, console.width, prefix, cell)
    entry_bytes = d.entries().reshape(-1, d.itemsize)
    hexes = ([bytes(h).hex() for h in entry_bytes] if d.itemsize > 1 else
             [f"{int(b):02x}" for b in entry_bytes[:, 0]])

    head = Text()
    head.append(f"  {'row':>{label_w}}  {'offset':<{off_w + 2}} ", "dim")
    for c in range(per):
        head.append(f"{'+' + str(c) if c else '+0':>{cell}}" + (" " if c < per - 1 else ""), "dim")
    console.print(head, soft_wrap=True)
    sel = d.selected.reshape(-1)
    pad = d.padding.reshape(-1)
    sev = d.severity.reshape(-1)
    for r in shown:
        for c0 in range(0, d.row_len, per):
            i0 = r * d.row_len + c0
            if not sel[i0: i0 + min(per, d.row_len - c0)].any():
                continue
            label = labels[r] if c0 == 0 else f"+{c0}"
            line = Text()
            line.append(f"  {label:>{label_w}}  ", "bold" if c0 == 0 else "dim")
            line.append(f"0x{d.span_offset + i0 * d.itemsize:0{off_w}x}", "dim")
            line.append(" ")
            for c in range(c0, min(c0 + per, d.row_len)):
                i = r * d.row_len + c
                line.append(" " if c > c0 else "")
                if not sel[i]:
                    line.append(" " * cell)
                    continue
                text = hexes[i] + (f" {values[i]:<{dw}}" if values is not None else "")
                if sev[i] != NO_MARK:
                    s = RANK_SEVERITY[int(sev[i])]
                    line.append(SEVERITY_MARK[s] + text, SEVERITY_CELL[s])
                elif pad[i]:
                    line.append(PAD_MARK + text, PAD_STYLE)
                else:
                    line.append(" " + text)
            console.print(line, soft_wrap=True)


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


def render(dumps: list[TensorDump], console: Console, decode: bool = False) -> None:
    for n, d in enumerate(dumps):
        if n:
            console.print()
        for line in header(d):
            console.print(line, soft_wrap=True)
        render_grid(d, console, decode)
        for line in legend(d, decode):
            console.print(line, soft_wrap=True)

