"""`dump --format json`: the selected bytes of each tensor as one lowercase hex string, with where
they are and which are padding (documented in docs/dump.md, "JSON")."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fp8doctor.dumper import STREAM_BYTES, TensorDump, TensorStream
from fp8doctor.reporters.envelope import SCHEMA_VERSION, envelope

__all__ = ["SCHEMA_VERSION", "render", "tensor_dict", "write_stream"]


def tensor_dict(d: TensorDump) -> dict[str, Any]:
    lay = d.layout
    return {
        "name": d.name,
        "file": d.file,
        "dtype": d.dtype,
        "shape": list(d.shape),
        "logical_shape": list(d.logical_shape),
        "byte_offset": d.byte_offset,
        "hex": d.selected_bytes().hex(),
        "padding": [list(r) for r in d.padding_ranges()],
        "encoding": d.encoding,
        "itemsize": d.itemsize,
        "weight": lay.weight.name if lay is not None and lay.weight is not None else None,
        "kind": lay.kind if lay is not None else None,
        "block": list(lay.block) if lay is not None and lay.block else None,
        "layout_source": lay.source if lay is not None else None,
        "note": d.note or None,
        "region": d.region,
        "rows": list(d.rows),
        "selected": [list(r) for r in d.selected_ranges()],
        "bad": [[a, b, sev.value] for a, b, sev in d.bad_ranges()],
        "rules": {rule: n for rule, _, n in d.rules},
    }


def render(dumps: list[TensorDump], target: str, version: str) -> str:
    """One JSON object; each tensor on a line of its own (grep- and diff-friendly)."""
    head = envelope(version, target=target)
    tensors = ",\n".join("  " + json.dumps(tensor_dict(d), ensure_ascii=True) for d in dumps)
    return json.dumps(head, ensure_ascii=True)[:-1] + ', "tensors": [' + (f"\n{tensors}\n" if dumps else "") + "]}\n"


_STREAMED = ("hex", "padding", "selected", "bad", "rules")
"""tensor_dict's fields that grow with the selection: written piece by piece by write_stream."""


def _merged(ranges: Iterable[list[Any]]) -> Iterator[list[Any]]:
    """Ranges of consecutive pieces, sorted and disjoint, with a range cut at a piece boundary
    joined again (same severity for bad ranges): what the whole selection in one piece gives."""
    last: list[Any] | None = None
    for r in ranges:
        if last is not None and last[1] == r[0] and last[2:] == r[2:]:
            last[1] = r[1]
            continue
        if last is not None:
            yield last
        last = r
    if last is not None:
        yield last


def _write_list(items: Iterable[list[Any]], write: Callable[[str], object]) -> None:
    write("[")
    for i, item in enumerate(items):
        write((", " if i else "") + json.dumps(item, ensure_ascii=True))
    write("]")


def _write_tensor(s: TensorStream, write: Callable[[str], object], piece_bytes: int) -> None:
    """json.dumps(tensor_dict(d)) of the whole selection, byte for byte, holding one piece at a time:
    one pass over the pieces per growing field (bytes, padding, selection; the marks last)."""
    first = next(s.pieces(False, piece_bytes))
    fields = tensor_dict(first)
    fields["rows"] = list(s.rows)
    totals: dict[str, int] = {}
    order: dict[str, int] = {}

    def bad() -> Iterator[list[Any]]:
        for d in s.pieces(True, piece_bytes):
            order.update((f.rule, i) for i, f in enumerate(d.findings) if f.rule not in order)
            for rule, _, n in d.rules:
                totals[rule] = totals.get(rule, 0) + n
            yield from ([a, b, sev.value] for a, b, sev in d.bad_ranges())

    for i, (key, value) in enumerate(fields.items()):
        write(("{" if not i else ", ") + json.dumps(key) + ": ")
        if key not in _STREAMED:
            write(json.dumps(value, ensure_ascii=True))
        elif key == "hex":
            write('"')
            for d in s.pieces(False, piece_bytes):
                write(d.selected_bytes().hex())
            write('"')
        elif key == "padding":
            _write_list(_merged([a, b] for d in s.pieces(False, piece_bytes) for a, b in d.padding_ranges()), write)
        elif key == "selected":
            _write_list(_merged([a, b] for d in s.pieces(False, piece_bytes) for a, b in d.selected_ranges()), write)
        elif key == "bad":
            _write_list(_merged(bad()), write)
        else:  # rules, counted by the pass over the marks, in the findings' order
            write(json.dumps({r: totals[r] for r in sorted(totals, key=order.__getitem__)}, ensure_ascii=True))
    write("}")


def write_stream(streams: list[TensorStream], target: str, version: str, write: Callable[[str], object],
                 piece_bytes: int = STREAM_BYTES) -> None:
    """`render` of the whole selection, streamed to `write` piece by piece: the same text, byte for
    byte, in memory that follows a piece (dumper.STREAM_BYTES) rather than the tensor."""
    head = envelope(version, target=target)
    write(json.dumps(head, ensure_ascii=True)[:-1] + ', "tensors": [')
    for i, s in enumerate(streams):
        write(("\n" if not i else ",\n") + "  ")
        _write_tensor(s, write, piece_bytes)
    write(("\n" if streams else "") + "]}\n")
