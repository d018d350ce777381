"""Layouts of in-memory scale tensors: the checkpoint conventions (layouts/pairing.py, unchanged),
plus `RuntimeLayout`, a caller's description of a runtime layout no convention knows.

A runtime buffer is often not what a checkpoint stores: DeepGEMM wants F32 activation scales as an
[M, K/128] view with strides (1, align(M, 4)) over a [K/128, align(M, 4)] buffer (TMA needs 16-byte
aligned rows), so the padding lies outside the view, in the storage its strides skip; a kernel's
scale buffer may have no weight beside it at all. `RuntimeLayout` says which weight a scale
belongs to, the block or group, the real extent, whether the padding is in the strides, and
whether the scale is destined for DeepGEMM (its F32 check then runs, padding included).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from fp8doctor.checkpoint.config import ModelConfig
from fp8doctor.checkpoint.header import TensorInfo
from fp8doctor.findings import Finding
from fp8doctor.layouts.model import ENCODINGS, LayoutOverride, ScaleLayout
from fp8doctor.layouts.pairing import LayoutBuilder, PairingResult
from fp8doctor.rules.catalog import emit
from fp8doctor.runtime.tensors import MemTensor, with_strided_padding


@dataclass(frozen=True)
class RuntimeLayout:
    """A runtime layout for the scale tensors whose name matches `pattern` (a glob).

    weight: name of the weight it scales (None: a scale with no weight beside it, such as an
        activation scale; conventions still pair it when it has none of the fields below).
    block: weight elements per scale entry (rows, cols); `group=g` means block (1, g).
    weight_shape: the weight's real element dims (the scale box is their ceil-division by block).
    logical_shape: the real box of scale entries directly (in the tensor's axis order).
    strided: the padding lies beyond the view, in the storage its strides skip (torch only).
    deepgemm: F32 entries, padding included, must pass DeepGEMM's (bits & 0x807fffff) == 0.

    With none of weight/block/group/weight_shape/logical_shape, the conventions decide the layout
    and only `strided`/`deepgemm` are added to it.
    """

    pattern: str
    weight: str | None = None
    block: tuple[int, int] | None = None
    group: int | None = None
    weight_shape: tuple[int, ...] | None = None
    logical_shape: tuple[int, ...] | None = None
    strided: bool = False
    deepgemm: bool = False

    def __post_init__(self) -> None:
        if self.block is not None and self.group is not None:
            raise ValueError(f"RuntimeLayout {self.pattern!r}: give block or group, not both")
        for label, dims in (("block", self.block), ("weight_shape", self.weight_shape),
                            ("logical_shape", self.logical_shape)):
            if dims is not None and (not dims or any(not isinstance(d, int) or d <= 0 for d in dims)):
                raise ValueError(f"RuntimeLayout {self.pattern!r}: {label} must be positive integers, not {dims!r}")
        if self.group is not None and self.group <= 0:
            raise ValueError(f"RuntimeLayout {self.pattern!r}: group must be positive, not {self.group!r}")

    @property
    def block_size(self) -> tuple[int, int] | None:
        return (1, self.group) if self.group is not None else self.block

    @property
    def describes(self) -> bool:
        """True when it states the layout itself (else the conventions decide)."""
        return any(v is not None for v in (self.weight, self.block, self.group, self.weight_shape,
                                            self.logical_shape))

    def matches(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.pattern)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass
class MemLayouts:
    """What pairing learned about an in-memory set of tensors."""

    pairing: PairingResult
    deepgemm: set[str]
    """Scale names whose DeepGEMM check runs."""


def _described(spec: RuntimeLayout, t: MemTensor, tensors: dict[str, MemTensor]) -> tuple[ScaleLayout | None,
                                                                                          Finding | None]:
    """The ScaleLayout a RuntimeLayout states for scale `t` (stored shape: t.stored when padded)."""
    info = t.info()
    view = t.shape
    encoding = ENCODINGS.get(t.dtype)

    def unknown(why: str) -> tuple[None, Finding]:
        return None, emit("layout-unknown", None, t.name,
                          f"runtime layout {spec.pattern!r} for {t.name} {list(view)}: {why}; layout not modelled")

    if encoding is None:
        return unknown(f"dtype {t.dtype} is not a scale encoding fp8doctor decodes")
    weight = tensors.get(spec.weight) if spec.weight is not None else None
    if spec.weight is not None and weight is None:
        return unknown(f"weight {spec.weight!r} is not among the tensors")
    block = spec.block_size
    wshape: tuple[int, ...] = spec.weight_shape or (weight.shape if weight is not None else ())
    if spec.logical_shape is not None:
        box = spec.logical_shape
    elif block is not None and wshape:
        lead = wshape[:-2]
        tail = wshape[-2:] if len(wshape) >= 2 else (1, *wshape)
        box = (*lead, _cdiv(tail[0], block[0]), _cdiv(tail[1], block[1]))[-len(view):] if view else ()
    else:
        box = view
    if len(box) != len(view) or any(b > v for b, v in zip(box, view)):
        return unknown(f"real extent {list(box)} does not fit the tensor")
    kind = "block" if block is not None and block[0] > 1 else "group" if block is not None else "unknown"
    layout = ScaleLayout(info, weight.info() if weight is not None else None, kind, encoding, block,
                         wshape, wshape, tuple(box), "override",
                         "" if kind != "unknown" else "no block or group given")
    return layout, None


def build_layouts(tensors: dict[str, MemTensor], config: ModelConfig | None,
                  specs: Iterable[RuntimeLayout | LayoutOverride]) -> MemLayouts:
    """Pair scales with weights by the checkpoint conventions (LayoutBuilder over name -> dtype,
    shape), then apply the runtime layouts: stated layouts replace the conventions' answer for
    their scales, `strided` extends a scale over the padding in its strides."""
    specs = tuple(specs)
    overrides = tuple(s for s in specs if isinstance(s, LayoutOverride))
    runtime = [s for s in specs if isinstance(s, RuntimeLayout)]
    infos = {name: t.info() for name, t in tensors.items()}
    res = LayoutBuilder(infos, config, overrides).build()
    deepgemm: set[str] = set()
    if not runtime:
        return MemLayouts(res, deepgemm)

    def spec_for(name: str) -> RuntimeLayout | None:
        return next((s for s in runtime if s.matches(name)), None)

    conv = {lay.scale.name: lay for lay in res.layouts}
    layouts: list[ScaleLayout] = []
    value_only: list[TensorInfo] = []
    stated: set[str] = set()
    weights_of_stated: set[str] = set()
    findings: list[Finding] = []
    candidates: list[ScaleLayout | TensorInfo] = [*res.layouts, *res.value_only]
    names = [x.scale.name if isinstance(x, ScaleLayout) else x.name for x in candidates]
    known = set(names)  # a tensor a runtime layout names is a scale, whatever its name
    names += [n for n, t in tensors.items() if n not in known and spec_for(n) and t.dtype in ENCODINGS]
    for name in names:
        spec = spec_for(name)
        t = tensors[name]
        if spec is None:
            if name in conv:
                layouts.append(conv[name])
            else:
                value_only.append(infos[name])
            continue
        if spec.strided:
            with_strided_padding(t)
        if spec.deepgemm and t.dtype == "F32":
            deepgemm.add(name)
        if spec.describes:
            stated.add(name)
            layout, finding = _described(spec, t, tensors)
            if spec.weight is not None:
                weights_of_stated.add(spec.weight)
            if layout is not None:
                layouts.append(layout)
            else:
                findings.append(finding)  # type: ignore[arg-type]
                value_only.append(t.info())
            continue
        lay = conv.get(name)
        if lay is None and t.padded and t.dtype in ENCODINGS:  # no weight: the view is the real box
            layouts.append(ScaleLayout(t.info(), None, "unknown", ENCODINGS[t.dtype], None, (), (), t.shape,
                                       "override", "padding located from the strides only"))
        elif lay is None:
            value_only.append(t.info())
        elif t.padded:  # the convention's box, in a stored shape that reaches over the stride padding
            layouts.append(ScaleLayout(t.info(), lay.weight, lay.kind, lay.encoding, lay.block, lay.weight_shape,
                                       lay.logical_weight_shape, lay.logical_shape, lay.source, lay.note))
        else:
            layouts.append(lay)
    for f in res.findings:  # the conventions' words about what a runtime layout now states
        if f.tensor in stated or (f.rule == "scale-missing" and f.tensor in weights_of_stated):
            continue
        findings.append(f)
    res = PairingResult(layouts=layouts, findings=findings, value_only=value_only)
    return MemLayouts(res, deepgemm)

