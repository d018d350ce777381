"""The few lines that open every dump view: where a scale tensor is, what it is, what it scales."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from rich.text import Text

from fp8doctor.dumper import TensorDump
from fp8doctor.findings import Severity
from fp8doctor.reporters.common import plain, plural

SEVERITY_CELL = {Severity.ERROR: "bold white on red", Severity.WARNING: "black on yellow",
                 Severity.INFO: "black on cyan"}
"""Style of an entry that breaks a rule of that severity."""
SEVERITY_MARK = {Severity.ERROR: "!", Severity.WARNING: "?", Severity.INFO: "i"}
"""Character before such an entry, so marks survive without colour (pipes, NO_COLOR)."""
PAD_STYLE = "dim"
PAD_MARK = "."
RANK_SEVERITY = {s.rank: s for s in Severity}


def entries(n: int, what: str = "entr") -> str:
    return f"{n:,} {what}{'y' if n == 1 else 'ies'}"


def _dims(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(n) for n in shape) + "]"


def header(d: TensorDump) -> list[Text]:
    lines = [Text(plain(d.name), "bold cyan")]

    def row(label: str, *parts: str | tuple[str, str]) -> None:
        lines.append(Text.assemble((f"  {label:<8} ", "dim"), *parts))

    row("file", plain(d.file), f", data at byte {d.byte_offset:,} (0x{d.byte_offset:x})")
    enc = f"{d.encoding}, " if d.encoding else "not decodable, "
    whole = d.whole  # a preview: its rows are the first shown, the counts are the selection's
    if d.layout is not None:
        padded = d.layout.padded_count
    else:
        padded = whole.padding if whole is not None else int(d.padding.sum())
    row("dtype", f"{d.dtype} ({enc}{plural(d.itemsize, 'byte')} per entry)   stored {_dims(d.shape)}   "
        f"logical {_dims(d.logical_shape)}   {entries(padded, 'padded entr')}")
    lay = d.layout
    if lay is not None and lay.weight is not None:
        if lay.kind == "group" and lay.block:
            how = f"groups of {lay.block[1]}"
        elif lay.kind == "tensor":
            how = "one scale for the whole tensor" if lay.role == "weight" else f"its {lay.role} scale"
        elif lay.block:
            how = f"block {lay.block[0]}x{lay.block[1]}"
        else:
            how = lay.kind
        w = lay.weight
        real = "" if lay.logical_weight_shape == lay.weight_shape else f" (real {_dims(lay.logical_weight_shape)})"
        if lay.swizzle is not None:
            how += f", stored swizzled ({lay.swizzle.name}: logical is the unswizzled [rows, groups] grid)"
        row("scales", plain(w.name), f" {w.dtype} {_dims(w.shape)}{real}, {how} ({lay.source})")
    if d.note:
        row("layout", (plain(d.note), "yellow"))
    nrows = d.nrows if d.row_len else 0
    sel_pad = whole.selected_padding if whole is not None else int((d.selected & d.padding).sum())
    rows = whole.rows if whole is not None else d.rows
    count = whole.count if whole is not None else d.count
    row("shown", f"rows {rows[0]}:{rows[1]} of {nrows}" + (" (leading axes flattened)" if len(d.shape) > 2 else "")
        + f", region {d.region}: {entries(count)}, {sel_pad:,} padded")
    return lines


def rules_line(d: TensorDump) -> Text:
    """Which rules the shown entries break (or that none were run)."""
    if not d.marked:
        return Text("  no rules run on this tensor (raw bytes only)", "dim")
    if not d.rules:
        return Text("  no shown entry breaks a rule", "green")
    out = Text("  broken here: ")
    for i, (rule, sev, n) in enumerate(d.rules):
        if i:
            out.append(", ")
        out.append(rule, SEVERITY_CELL[sev])
        out.append(f" ({sev.value}) x{n:,}")
    return out


def render_each(dumps: list[TensorDump], console: Console, body: Callable[[TensorDump, Console], None]) -> None:
    """Header, `body`, and the rules line for every dumped tensor, a blank line between tensors."""
    for n, d in enumerate(dumps):
        if n:
            console.print()
        for line in header(d):
            console.print(line, soft_wrap=True)
        body(d, console)
        console.print(rules_line(d), soft_wrap=True)
