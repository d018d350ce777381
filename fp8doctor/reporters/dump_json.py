"""`dump --format json`: the selected bytes of each tensor as one lowercase hex string, with where
they are and which are padding (documented in docs/dump.md, "JSON")."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fp8doctor.dumper import STREAM_BYTES, TensorDump, TensorStream
from fp8doctor.reporters.envelope import SCHEMA_VERSION, envelope

__all__ = ["SCHEMA_VERSION", "render", "stream", "tensor_dict", "write_stream"]


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


def _list(items: Iterable[list[Any]]) -> Iterator[str]:
    yield "["
    for i, item in enumerate(items):
        yield (", " if i else "") + json.dumps(item, ensure_ascii=True)
    yield "]"


def _tensor(s: TensorStream, piece_bytes: int) -> Iterator[str]:
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
        yield ("{" if not i else ", ") + json.dumps(key) + ": "
        if key not in _STREAMED:
            yield json.dumps(value, ensure_ascii=True)
        elif key == "hex":
            yield '"'
            for d in s.pieces(False, piece_bytes):
                yield d.selected_bytes().hex()
            yield '"'
        elif key == "padding":
            yield from _list(_merged([a, b] for d in s.pieces(False, piece_bytes) for a, b in d.padding_ranges()))
        elif key == "selected":
            yield from _list(_merged([a, b] for d in s.pieces(False, piece_bytes) for a, b in d.selected_ranges()))
        elif key == "bad":
            yield from _list(_merged(bad()))
        else:  # rules, counted by the pass over the marks, in the findings' order
            yield json.dumps({r: totals[r] for r in sorted(totals, key=order.__getitem__)}, ensure_ascii=True)
    yield "}"


def stream(streams: list[TensorStream], target: str, version: str,
           piece_bytes: int = STREAM_BYTES) -> Iterator[str]:
    """`render` of the whole selection, piece by piece: the same text, byte for byte, in memory
    that follows a piece (dumper.STREAM_BYTES) rather than the tensor."""
    head = envelope(version, target=target)
    yield json.dumps(head, ensure_ascii=True)[:-1] + ', "tensors": ['
    for i, s in enumerate(streams):
        yield ("\n" if not i else ",\n") + "  "
        yield from _tensor(s, piece_bytes)
    yield ("\n" if streams else "") + "]}\n"


def write_stream(streams: list[TensorStream], target: str, version: str, write: Callable[[str], object],
                 piece_bytes: int = STREAM_BYTES) -> None:
    """`stream`, handed to `write` piece by piece."""
    for piece in stream(streams, target, version, piece_bytes):
        write(piece)
