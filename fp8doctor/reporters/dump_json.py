"""`dump --format json`: the selected bytes of each tensor as one lowercase hex string, with where
they are and which are padding (documented in README, "dump")."""

from __future__ import annotations

import json
from typing import Any

from fp8doctor.dumper import TensorDump
from fp8doctor.reporters.envelope import SCHEMA_VERSION, envelope

__all__ = ["SCHEMA_VERSION", "render", "tensor_dict"]


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
