"""The scale layout model: for one scale tensor, which weight it scales, how, and which of its
stored entries are real (the logical box at the origin) and which are padding (everything else).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fp8doctor.checkpoint.header import TensorInfo
from fp8doctor.layouts.encodings import ALL as _ALL_ENCODINGS
from fp8doctor.layouts.encodings import BY_DTYPE, BY_NAME
from fp8doctor.layouts.swizzle import Swizzle, ranges_of

ENCODINGS: dict[str, str] = {dtype: enc.name for dtype, enc in BY_DTYPE.items()}
"""Scale dtype -> how its bytes are decoded (derived from layouts/encodings.py)."""

ITEMSIZE: dict[str, int] = {e.name: e.itemsize for e in _ALL_ENCODINGS}

FILL_BYTES: dict[str, dict[str, bytes]] = {
    # fill name -> encoding -> the raw bytes of one entry
    fill: {e.name: e.fills[fill] for e in _ALL_ENCODINGS} for fill in ("zero", "one")
}


def fill_bytes(fill: str | int, encoding: str) -> bytes:
    """The raw bytes one padded entry must hold. An int fill is a raw byte, for 1-byte encodings;
    for wider float scales it means the matching float (0x00 -> 0.0, 0x7F -> 1.0)."""
    if isinstance(fill, int):
        if BY_NAME[encoding].itemsize == 1:
            return bytes([fill])
        fill = "zero" if fill == 0 else "one" if fill == 0x7F else "zero"
    return FILL_BYTES[fill][encoding]


def fill_name(fill: str | int) -> str:
    """A fill as reports and journals name it: `zero`, `one` or `0xNN` (the inverse of parse_fill)."""
    return fill if isinstance(fill, str) else f"0x{fill:02X}"


def parse_fill(text: str) -> str | int:
    """`zero`, `one` or a raw byte `0xNN`."""
    t = text.strip().lower()
    if t in ("zero", "one"):
        return t
    try:
        value = int(t, 16) if t.startswith("0x") else int(t)
    except ValueError:
        raise ValueError(f"fill must be zero, one or a byte like 0x00, not {text!r}") from None
    if not 0 <= value <= 255:
        raise ValueError(f"fill byte {text!r} is outside 0x00-0xFF")
    if value == 0xFF:
        raise ValueError("fill byte 0xFF is NaN in E8M0; pick another")
    return value


@dataclass(frozen=True)
class LayoutOverride:
    """A user's statement about tensors matching `pattern` (a glob on the scale or weight name):
    the block (rows, cols of weight elements per scale entry) and/or the weight's real shape."""

    pattern: str
    block: tuple[int, int] | None = None
    logical_shape: tuple[int, ...] | None = None

    @classmethod
    def parse(cls, text: str) -> LayoutOverride:
        """'GLOB:block=128x128,logical=2000x7168' (either key may be left out)."""
        pattern, sep, spec = text.rpartition(":")
        if not sep or not pattern:
            raise ValueError(f"layout override {text!r} must look like 'GLOB:block=128x128' or 'GLOB:logical=NxK'")
        block = logical = None
        for item in spec.split(","):
            key, eq, value = item.partition("=")
            try:
                dims = tuple(int(x) for x in value.lower().split("x"))
            except ValueError:
                dims = ()
            if not eq or not dims or any(d <= 0 for d in dims):
                raise ValueError(f"layout override {text!r}: {item!r} is not KEY=AxB with positive integers")
            if key.strip() == "block" and len(dims) == 2:
                block = (dims[0], dims[1])
            elif key.strip() == "logical":
                logical = dims
            else:
                raise ValueError(f"layout override {text!r}: unknown key {key!r} (block=RxC or logical=dims)")
        return cls(pattern, block, logical)

    def matches(self, *names: str) -> bool:
        return any(fnmatch.fnmatchcase(n, self.pattern) for n in names)


@dataclass(frozen=True)
class ScaleLayout:
    """How one scale tensor maps onto its weight.

    `weight_shape` is in weight elements (packed FP4 unpacked); `logical_weight_shape` is what the
    model really uses (smaller when config.json declares padded dims). `logical_shape` is the box
    of scale entries that cover real weight elements; entries outside it are padding.
    """

    scale: TensorInfo
    weight: TensorInfo | None
    kind: str  # "block" | "group" | "tensor" | "unknown"
    encoding: str
    block: tuple[int, int] | None
    weight_shape: tuple[int, ...]
    logical_weight_shape: tuple[int, ...]
    logical_shape: tuple[int, ...]
    source: str  # where the block came from: config | override | format | inferred | ambiguous | mismatch
    note: str = ""
    role: str = "weight"
    """weight: the block/group/channel/tensor scale of a quantized weight; global: its second-level
    scale (NVFP4 `weight_global_scale` / `weight_scale_2` / torchao `per_tensor_scale`); input: an
    activation scale (`input_scale`, `input_global_scale`)."""
    swizzle: Swizzle | None = None
    """Stored in a tiled order (torchao's to_blocked): `logical_shape` is then the [rows, groups]
    grid in unswizzled coordinates, and its padding is spread through the tiles."""

    @property
    def name(self) -> str:
        return self.scale.name

    @property
    def stored_shape(self) -> tuple[int, ...]:
        return self.scale.shape

    @property
    def itemsize(self) -> int:
        return ITEMSIZE[self.encoding]

    @property
    def padded_count(self) -> int:
        return self.scale.numel - math.prod(self.logical_shape)

    @property
    def has_padding(self) -> bool:
        return self.padded_count > 0

    @property
    def trusted(self) -> bool:
        """True when the padding boundary is known well enough for `fix` to write there."""
        return self.source not in ("ambiguous", "mismatch") and self.kind in ("block", "group")

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """The stored scale grid with the singleton axes some exporters add squeezed out (ModelOpt
        2D blockwise stores [N/128, 1, K/128, 1]); the canonical padded grid when swizzled."""
        if self.swizzle is not None:
            return self.swizzle.padded
        shape = self.stored_shape
        if len(shape) == 4 and shape[1] == 1 and shape[3] == 1 and len(self.weight_shape) == 2:
            return (shape[0], shape[2])
        return shape

    def logical_slices(self) -> tuple[slice, ...]:
        return tuple(slice(0, n) for n in self.logical_shape)

    def padding_mask(self) -> np.ndarray:
        """Boolean array of the stored shape, True on padded entries."""
        if self.swizzle is not None:
            return self.swizzle.padding_mask().reshape(self.stored_shape).copy()
        mask = np.ones(self.stored_shape, dtype=bool)
        mask[self.logical_slices()] = False
        return mask

    def real_mask(self) -> np.ndarray:
        """Boolean array of the stored shape, True on the real (logical) entries."""
        return ~self.padding_mask()

    def padding_ranges(self) -> list[tuple[int, int]]:
        """Padded entries as half-open flat index ranges of the stored tensor, merged and sorted."""
        shape, box = self.stored_shape, self.logical_shape
        if not self.has_padding:
            return []
        if self.swizzle is not None:
            return ranges_of(self.swizzle.padding_mask())
        if len(shape) == 0:
            return []
        # The padding of a box at the origin, in row-major order: recurse over the leading axis.
        ranges: list[tuple[int, int]] = []

        def walk(axis: int, base: int) -> None:
            inner = math.prod(shape[axis + 1:])
            if axis == len(shape) - 1:
                if box[axis] < shape[axis]:
                    ranges.append((base + box[axis], base + shape[axis]))
                return
            for i in range(box[axis]):
                walk(axis + 1, base + i * inner)
            if box[axis] < shape[axis]:
                ranges.append((base + box[axis] * inner, base + shape[axis] * inner))

        walk(0, 0)
        merged: list[tuple[int, int]] = []
        for a, b in ranges:
            if merged and merged[-1][1] == a:
                merged[-1] = (merged[-1][0], b)
            elif b > a:
                merged.append((a, b))
        return merged

    def padding_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """`padding_ranges()` as two int64 arrays (starts, ends), built with numpy (a swizzled
        layout's padding is not a box at the origin: its ranges come from its padding mask)."""
        if self.swizzle is not None:
            m = np.concatenate(([0], self.padding_mask().reshape(-1).view(np.int8), [0]))
            edges = np.diff(m)
            return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        return padding_arrays(self.stored_shape, self.logical_shape)

    def describe(self) -> dict[str, object]:
        """A JSON-ready summary, for reports and `dump`."""
        return {
            "scale": self.scale.name,
            "weight": self.weight.name if self.weight else None,
            "file": self.scale.file,
            "kind": self.kind,
            "encoding": self.encoding,
            "block": list(self.block) if self.block else None,
            "shape": list(self.stored_shape),
            "logical_shape": list(self.logical_shape),
            "weight_shape": list(self.weight_shape),
            "logical_weight_shape": list(self.logical_weight_shape),
            "padded_entries": self.padded_count,
            "source": self.source,
            "role": self.role,
            "swizzle": self.swizzle.name if self.swizzle is not None else None,
        }


def same_layout(scale: TensorInfo, weight: TensorInfo | None, rest: tuple[object, ...]) -> ScaleLayout:
    """ScaleLayout(scale, weight, *rest) without the frozen dataclass's per-field setattr: equal to
    it, several times cheaper (pairing builds one per scale: 45,032 for DeepSeek-V3)."""
    values = (scale, weight, *rest)
    if len(values) > len(_LAYOUT_FIELDS):
        raise TypeError(f"ScaleLayout takes {len(_LAYOUT_FIELDS)} fields, not {len(values)}")
    d = dict(_LAYOUT_DEFAULTS)
    d.update(zip(_LAYOUT_FIELDS, values))
    if len(d) != len(_LAYOUT_FIELDS):
        raise TypeError("ScaleLayout: a field without a default is missing")
    lay = object.__new__(ScaleLayout)
    object.__setattr__(lay, "__dict__", d)
    return lay


def padding_arrays(shape: Sequence[int], box: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """`_padding_arrays`, cached by shape and box (a MoE layer has hundreds of alike tensors);
    the arrays are read-only."""
    return _padding_arrays(tuple(int(n) for n in shape), tuple(int(n) for n in box))


@functools.lru_cache(maxsize=64)
def _padding_arrays(shape: tuple[int, ...], box: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Half-open flat index ranges (starts, ends; int64, sorted, merged) of the entries of a
    row-major tensor of `shape` outside the box `box` at the origin: the same ranges as
    `ScaleLayout.padding_ranges()`, without a Python loop (a padded column is one range a row).

    Along axis k, every index prefix inside the box (i_0 < box[0], ..., i_{k-1} < box[k-1]) owns one
    range: indices box[k]..shape[k] of axis k, everything after them contiguous."""
    starts: list[np.ndarray] = []
    ends: list[np.ndarray] = []
    base = np.zeros(1, dtype=np.int64)  # flat offsets of every index prefix inside the box so far
    for k, (n, b) in enumerate(zip(shape, box)):
        inner = math.prod(shape[k + 1:])
        if b < n:
            starts.append(base + b * inner)
            ends.append(base + n * inner)
        if b == 0 or k == len(shape) - 1:
            break
        base = (base[:, None] + np.arange(b, dtype=np.int64)[None, :] * inner).reshape(-1)
    if not starts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    a, e = np.concatenate(starts), np.concatenate(ends)
    order = np.argsort(a, kind="stable")
    a, e = a[order], e[order]
    keep = e > a
    a, e = a[keep], e[keep]
    if a.size > 1:  # merge ranges that touch
        new = np.concatenate(([True], a[1:] != e[:-1]))
        first = np.flatnonzero(new)
        last = np.concatenate((first[1:], [a.size])) - 1
        a, e = a[first], e[last]
    a.flags.writeable = e.flags.writeable = False
    return a, e


_LAYOUT_FIELDS = tuple(f.name for f in dataclasses.fields(ScaleLayout))
_LAYOUT_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ScaleLayout)
                    if f.default is not dataclasses.MISSING}


class DescribedLayouts(Sequence[dict[str, object]]):
    """`Report.layouts`: the `describe()` dicts of a scan's layouts, built on first use (a scan of
    DeepSeek-V3 has 45,032 of them, and most callers never look). Compares equal to the tuple."""

    __slots__ = ("_cache", "_layouts")

    def __init__(self, layouts: Iterable[ScaleLayout]) -> None:
        self._layouts = list(layouts)
        self._cache: tuple[dict[str, object], ...] | None = None

    def _all(self) -> tuple[dict[str, object], ...]:
        if self._cache is None:
            self._cache = tuple(lay.describe() for lay in self._layouts)
        return self._cache

    def __len__(self) -> int:
        return len(self._layouts)

    def __getitem__(self, i: Any) -> Any:
        return self._all()[i]

    def __iter__(self) -> Iterator[dict[str, object]]:
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (DescribedLayouts, tuple, list)):
            return self._all() == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._all())
