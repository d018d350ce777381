"""Pair every scale tensor with its weight and build its ScaleLayout.

The naming conventions understood are the modules of layouts/conventions/ (see docs/layouts.md):
each says how its scales are found beside their weights and how its weights' element shapes and
groups are read; this module runs them and infers what they leave open (the block size).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from fp8doctor.checkpoint.config import ModelConfig
from fp8doctor.checkpoint.dtypes import FP8_WEIGHT_DTYPES
from fp8doctor.checkpoint.header import TensorInfo
from fp8doctor.findings import Finding
from fp8doctor.gcpause import gc_paused
from fp8doctor.layouts.conventions import (
    BY_SCALE_SUFFIX,
    COMPANION_WEIGHT_SUFFIXES,
    IGNORED_SCALE_SUFFIXES,
    SCALE_SUFFIXES,
    SECOND_LEVEL,
    Convention,
    expected_scale_names,
    needs_scale,
)
from fp8doctor.layouts.conventions.base import MX_GROUP
from fp8doctor.layouts.dims import dims_rule, logical_weight_shape
from fp8doctor.layouts.model import ENCODINGS, LayoutOverride, ScaleLayout, same_layout
from fp8doctor.layouts.swizzle import Swizzle
from fp8doctor.rules.catalog import emit

BLOCK_CANDIDATES: tuple[tuple[int, int], ...] = ((128, 128), (64, 64), (256, 256), (32, 32), (16, 16),
                                                  (1, 128), (1, 64), (1, 32), (1, 16), (128, 1))
"""Block sizes tried when neither configuration nor config.json gives one, most common first."""

__all__ = ["BLOCK_CANDIDATES", "MX_GROUP", "LayoutBuilder", "PairingResult", "find_pairs", "find_pairs_by_convention",
           "find_second_level"]

_ANY_SECOND = tuple(SECOND_LEVEL)


@dataclass
class PairingResult:
    layouts: list[ScaleLayout] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    value_only: list[TensorInfo] = field(default_factory=list)
    """Scale tensors whose layout is unknown: only their values are checked."""
    companions: dict[str, set[str]] = field(default_factory=dict)
    """Quantized weight name -> the second-level suffixes stored beside it (completeness rules)."""
    scale_names: frozenset[str] = frozenset()
    """Every tensor a convention calls a scale (find_pairs' keys, second-level ones too), checked or not."""


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def find_pairs(tensors: dict[str, TensorInfo]) -> tuple[dict[str, TensorInfo | None], set[str]]:
    """scale name -> its weight (None when it has none); plus the names of weights that have one."""
    pairs, scaled, _ = find_pairs_by_convention(tensors)
    return pairs, scaled


def find_pairs_by_convention(tensors: dict[str, TensorInfo]) -> tuple[
        dict[str, TensorInfo | None], set[str], dict[str, Convention]]:
    """find_pairs, plus the convention that paired each scale that has a weight."""
    pairs: dict[str, TensorInfo | None] = {}
    scaled: set[str] = set()
    conventions: dict[str, Convention] = {}
    for name, t in tensors.items():
        if not name.endswith(SCALE_SUFFIXES):  # most tensors: one C call decides
            if t.dtype == "F8_E8M0":
                pairs[name] = None
            continue
        if name.endswith(IGNORED_SCALE_SUFFIXES):
            continue
        for suffix, convs in BY_SCALE_SUFFIX:
            if not name.endswith(suffix):
                continue
            stem = name[: -len(suffix)]
            weight, by = next(((tensors[stem + ws], c) for c in convs for ws in c.weight_suffixes
                               if stem + ws in tensors), (None, None))
            owner = by if by is not None and by.is_scale(t, weight) else next(
                (c for c in convs if c.is_scale(t, weight)), None)
            if owner is None:
                break  # e.g. a `.scale` that is a norm weight
            pairs[name] = weight
            if weight is not None:
                scaled.add(weight.name)
                conventions[name] = owner
            break
        else:
            if t.dtype == "F8_E8M0":
                pairs[name] = None
    return pairs, scaled, conventions


def find_second_level(tensors: dict[str, TensorInfo]) -> dict[str, tuple[str, str, TensorInfo | None]]:
    """second-level scale name -> (suffix, role, the quantized weight of its module or None)."""
    out: dict[str, tuple[str, str, TensorInfo | None]] = {}
    for name in tensors:
        if not name.endswith(_ANY_SECOND):
            continue
        suffix = next(s for s in SECOND_LEVEL if name.endswith(s))
        stem = name[: -len(suffix)]
        weight = next((tensors[stem + w] for w in COMPANION_WEIGHT_SUFFIXES if stem + w in tensors), None)
        out[name] = (suffix, SECOND_LEVEL[suffix], weight)
    return out


def _squeeze_grid(stored: tuple[int, ...], weight_shape: tuple[int, ...]) -> tuple[int, ...]:
    """ModelOpt's 2D blockwise scales are [N/bn, 1, K/bk, 1] for a [N, K] weight: the grid [N/bn, K/bk]."""
    if len(stored) == 4 and stored[1] == 1 and stored[3] == 1 and len(weight_shape) == 2:
        return (stored[0], stored[2])
    return stored


def _aligned_up(shape: tuple[int, ...], block: tuple[int, int], stored: tuple[int, ...]) -> bool:
    """True when each of the stored scale's last two dims is what the weight needs at `block`,
    or that rounded up to a power-of-two multiple (how TMA-aligned scale buffers are sized)."""
    for n, b, have in zip(shape[-2:], block, stored[-2:]):
        need = _cdiv(n, b)
        if have != need and not any(have == _cdiv(need, a) * a for a in (4, 8, 16, 32, 64, 128)):
            return False
    return True


class LayoutBuilder:
    """Builds layouts for one checkpoint: config and overrides first, then shape inference."""

    def __init__(self, tensors: dict[str, TensorInfo], config: ModelConfig | None,
                 overrides: tuple[LayoutOverride, ...] = ()) -> None:
        self.tensors = tensors
        self.config = config
        self.overrides = overrides
        self.dims = config.dims if config else {}
        self.quant = config.quant if config else None
        self._vote_ambiguous = False
        self._memo: dict[tuple[object, ...], tuple[Any, ...]] = {}
        self._conventions: dict[str, Convention] = {}

    def build(self) -> PairingResult:
        with gc_paused():
            return self._build()

    def _build(self) -> PairingResult:
        pairs, scaled, self._conventions = find_pairs_by_convention(self.tensors)
        res = PairingResult(scale_names=frozenset(pairs))
        second = find_second_level(self.tensors)
        for name in second:
            pairs.pop(name, None)  # e.g. an F8_E8M0 `_weight_per_tensor_scale` is no orphan block scale
        for name, t in self.tensors.items():
            if name in scaled or name in pairs or name in second:
                continue
            if needs_scale(t, self.config):
                res.findings.append(emit("scale-missing", t.file, name,
                    f"{t.dtype} weight {name} {list(t.shape)} has no scale tensor beside it "
                    f"(looked for {expected_scale_names(name)})"))
        block_pairs = []
        for sname, weight in pairs.items():
            scale = self.tensors[sname]
            if weight is None:
                res.findings.append(emit("scale-orphan", scale.file, sname,
                    f"{scale.dtype} scale {sname} {list(scale.shape)} has no quantized weight it could belong to"))
                res.value_only.append(scale)
                continue
            if scale.dtype not in ENCODINGS:
                res.findings.append(emit("layout-unknown", scale.file, sname,
                    f"scale {sname} has dtype {scale.dtype}, which fp8doctor cannot decode; not checked"))
                continue
            block_pairs.append((scale, weight))
        global_block, vote_note = self._vote_block(block_pairs)
        self._vote_ambiguous = bool(vote_note)
        if vote_note:
            res.findings.append(emit("layout-ambiguous", None, None, vote_note))
        for scale, weight in block_pairs:
            layout, finding = self._layout(scale, weight, global_block)
            if finding is not None:
                res.findings.append(finding)
            if layout is not None:
                res.layouts.append(layout)
            else:
                res.value_only.append(scale)
        self._second_level(second, res)
        for lay in res.layouts:
            if lay.source == "mismatch":
                res.findings.append(emit(
                    "config-mismatch", lay.scale.file, lay.name,
                    f"{lay.note}: loaders that trust config.json misread {lay.name} (vLLM and DeepGEMM assert "
                    "ceil(N/bn), ceil(K/bk) against the grid); its extra entries are not called padding, "
                    "nothing is fixable until the block is configured (--layout)"))
        return res

    def _second_level(self, second: dict[str, tuple[str, str, TensorInfo | None]], res: PairingResult) -> None:
        """Global and input scales: one value (or one per expert/partition) each, value-checked
        like any scale; their weights' companions recorded for the completeness rules."""
        for name, (suffix, role, weight) in second.items():
            t = self.tensors[name]
            encoding = ENCODINGS.get(t.dtype)
            if encoding is None:
                continue
            if weight is None:
                res.value_only.append(t)
                continue
            res.companions.setdefault(weight.name, set()).add(suffix)
            res.layouts.append(ScaleLayout(t, weight, "tensor", encoding, None, weight.shape, weight.shape, t.shape,
                                           "format", role=role))

    # -- helpers ---------------------------------------------------------------------------------

    def _override(self, scale: TensorInfo, weight: TensorInfo) -> LayoutOverride | None:
        for o in reversed(self.overrides):  # later overrides win
            if o.matches(scale.name, weight.name):
                return o
        return None

    def _element_shape(self, scale: TensorInfo, weight: TensorInfo) -> tuple[tuple[int, ...], str]:
        """Weight shape in elements, and whether it is block-FP8 ('block') or MX groups ('group'):
        as the convention that paired them reads it, with what config.json and the scale add."""
        shape, kind = self._conventions[scale.name].element_shape(weight)
        if weight.dtype == "I32" and kind == "group" and self.quant is not None and self.quant.num_bits:
            shape = (*weight.shape[:-1], weight.shape[-1] * (32 // self.quant.num_bits))  # pack-quantized
        if (kind == "block" and weight.dtype in FP8_WEIGHT_DTYPES and ENCODINGS.get(scale.dtype) == "e8m0"
                and len(shape) >= 2 and len(scale.shape) == len(shape) and scale.shape[-2] == shape[-2] > 1
                and scale.shape[-1] == _cdiv(shape[-1], MX_GROUP)):
            kind = "group"  # MXFP8: one E8M0 scale per 32 elements of a row
        return shape, kind

    def _swizzled(self, scale: TensorInfo, weight: TensorInfo, shape: tuple[int, ...], kind: str,
                  encoding: str) -> ScaleLayout | None:
        """A convention's scales stored through torchao's to_blocked: [32 * ceil(N/128), 16 * ceil(G/4)]
        for N rows of G groups (16 elements for E4M3 scales, 32 for E8M0)."""
        conv = self._conventions[scale.name]
        if not conv.swizzled or len(shape) != 2 or len(scale.shape) != 2:
            return None
        group = conv.default_group(encoding)
        n, groups = shape[0], _cdiv(shape[1], group)
        sw = Swizzle(n, groups)
        if scale.shape == (n, groups) or scale.shape != sw.stored_shape:
            return None
        logical_w = logical_weight_shape(weight.name, shape, self.dims)
        return ScaleLayout(scale, weight, "group", encoding, (1, group), shape, logical_w, (n, groups), "format",
                           swizzle=sw)

    def _vote_block(self, pairs: list[tuple[TensorInfo, TensorInfo]]) -> tuple[tuple[int, int] | None, str]:
        """The block size of the checkpoint's FP8 weights when config.json does not say: the common
        block that fits the most scale tensors (exactly, or rounded up for alignment)."""
        if self.quant is not None and self.quant.block_size:
            return self.quant.block_size, ""
        fits: dict[tuple[int, int], list[tuple[int, ...]]] = {b: [] for b in BLOCK_CANDIDATES}
        exact: Counter[tuple[int, int]] = Counter()
        n = 0
        for scale, weight in pairs:
            shape, kind = self._element_shape(scale, weight)
            sshape = _squeeze_grid(scale.shape, shape)
            if kind != "block" or len(sshape) < 2 or len(shape) != len(sshape) or scale.numel == 1:
                continue
            if sshape[-1] == 1 and sshape[-2] == shape[-2]:
                continue  # per-channel: one scale per row, no block to vote for
            if self._swizzled(scale, weight, shape, kind, ENCODINGS[scale.dtype]) is not None:
                continue  # torchao MX: groups, tiled
            override = self._override(scale, weight)
            if override is not None and override.block is not None:
                continue  # the user said; nothing to infer
            n += 1
            for b in BLOCK_CANDIDATES:
                need = (_cdiv(shape[-2], b[0]), _cdiv(shape[-1], b[1]))
                if need == sshape[-2:]:
                    exact[b] += 1
                    fits[b].append(need)
                elif _aligned_up(shape, b, sshape):
                    fits[b].append(need)
                else:
                    fits[b].append(())
        if not n:
            return None, ""
        score = {b: sum(1 for f in v if f) for b, v in fits.items()}
        best = max(BLOCK_CANDIDATES, key=lambda b: (score[b], exact[b], -BLOCK_CANDIDATES.index(b)))
        if not score[best]:
            return None, (f"no block size given in config.json and none of {len(BLOCK_CANDIDATES)} common "
                          f"block sizes fits the {n} FP8 scale tensors; padding not located")
        # another block that fits as many tensors with a different logical box is a real ambiguity
        rivals = [b for b in BLOCK_CANDIDATES if b != best and score[b] == score[best] and fits[b] != fits[best]]
        if score[best] < n or rivals:
            return best, (f"no block size in config.json; inferred {best[0]}x{best[1]} from shapes (fits "
                          f"{score[best]} of {n} FP8 scale tensors" +
                          (f"; {', '.join(f'{a}x{c}' for a, c in rivals)} fit as many" if rivals else "") +
                          "); set the block size in configuration to be sure")
        return best, ""

    def _layout(self, scale: TensorInfo, weight: TensorInfo,
                global_block: tuple[int, int] | None) -> tuple[ScaleLayout | None, Finding | None]:
        """The layout of one pair. Everything but the two tensors follows from dtypes, shapes and
        the weight name's dims rule: pairs alike (45,032 scales of DeepSeek-V3 come in a few dozen
        kinds) reuse the first one's answer."""
        if self.overrides:  # globs on names: nothing to share
            return self._layout_of(scale, weight, global_block)
        key = (scale.dtype, scale.shape, weight.dtype, weight.shape, self._conventions[scale.name].name,
               dims_rule(weight.name), global_block)
        hit = self._memo.get(key)
        if hit is not None:
            return same_layout(scale, weight, hit), None
        layout, finding = self._layout_of(scale, weight, global_block)
        if layout is not None and finding is None:
            self._memo[key] = (layout.kind, layout.encoding, layout.block, layout.weight_shape,
                               layout.logical_weight_shape, layout.logical_shape, layout.source, layout.note,
                               layout.role, layout.swizzle)
        return layout, finding

    def _layout_of(self, scale: TensorInfo, weight: TensorInfo,
                   global_block: tuple[int, int] | None) -> tuple[ScaleLayout | None, Finding | None]:
        encoding = ENCODINGS[scale.dtype]
        shape, kind = self._element_shape(scale, weight)
        override = self._override(scale, weight)
        logical_w = logical_weight_shape(weight.name, shape, self.dims)
        if override is not None and override.logical_shape is not None:
            if len(override.logical_shape) != len(shape) or any(a > b for a, b in zip(override.logical_shape, shape)):
                return None, emit("layout-unknown", scale.file, scale.name,
                                     f"configured logical shape {list(override.logical_shape)} does not fit weight "
                                     f"{weight.name} {list(shape)}; layout not modelled")
            logical_w = tuple(override.logical_shape)

        def mismatch(why: str) -> tuple[None, Finding]:
            return None, emit("scale-shape-mismatch", scale.file, scale.name,
                                 f"scale {scale.name} {list(scale.shape)} cannot cover weight {weight.name} "
                                 f"{list(weight.shape)} ({why})")

        if scale.numel == 1 and len(scale.shape) <= 2:
            full = (math.prod(shape[:-1]) if shape else 1, shape[-1] if shape else 1)
            return ScaleLayout(scale, weight, "tensor", encoding, full, shape, shape, scale.shape, "format"), None
        if len(shape) < 1:
            return mismatch("weight is a scalar")
        swizzled = self._swizzled(scale, weight, shape, kind, encoding)
        if swizzled is not None:
            return swizzled, None
        sshape = _squeeze_grid(scale.shape, shape)
        squeezed = sshape != scale.shape
        if len(sshape) == len(shape) - 1 and len(shape) >= 2 and sshape == shape[:-1]:
            sshape_eff = (*sshape, 1)  # per-channel scale stored as [N]
        else:
            sshape_eff = sshape
        if len(sshape_eff) != len(shape):
            return mismatch(f"rank {len(sshape)} vs weight rank {len(weight.shape)}")
        lead = len(shape) - 2
        for ax in range(lead):
            if sshape_eff[ax] < shape[ax]:
                return mismatch(f"axis {ax} has {sshape_eff[ax]} entries for {shape[ax]}")

        source = "format"
        if override is not None and override.block is not None:
            block, source = override.block, "override"
        elif kind == "group":
            group = (self.quant.group_size if self.quant and self.quant.group_size else
                     self._conventions[scale.name].default_group(encoding))
            block, source = (1, group), ("config" if self.quant and self.quant.group_size else "format")
        elif sshape_eff[-1] == 1 and sshape_eff[-2] == shape[-2] and len(sshape_eff) >= 2:
            block, source = (1, shape[-1]), "format"  # per-channel
        elif self.quant is not None and self.quant.block_size:
            block, source = self.quant.block_size, "config"
        elif global_block is not None:
            block = global_block
            exact = (_cdiv(shape[-2], block[0]), _cdiv(shape[-1], block[1])) == tuple(sshape_eff[-2:])
            aligned = _aligned_up(shape, block, sshape_eff) and not self._vote_ambiguous
            source = "inferred" if exact or aligned else "ambiguous"
            if not exact and source == "ambiguous":
                for b in BLOCK_CANDIDATES:
                    if (_cdiv(shape[-2], b[0]), _cdiv(shape[-1], b[1])) == tuple(sshape_eff[-2:]):
                        block, source = b, "inferred"
                        break
        else:
            return None, emit("layout-unknown", scale.file, scale.name,
                                 f"no block size fits scale {scale.name} {list(scale.shape)} for weight "
                                 f"{weight.name} {list(weight.shape)}; padding not located")
        needed_stored: tuple[int, ...]
        if len(sshape_eff) == 1:
            needed_stored = (_cdiv(shape[-1], block[1]),)
        else:
            needed_stored = (*shape[:lead], _cdiv(shape[-2], block[0]), _cdiv(shape[-1], block[1]))
        for ax, (need, have) in enumerate(zip(needed_stored, sshape_eff)):
            if have < need:
                return mismatch(f"axis {ax} needs {need} entries at block {block[0]}x{block[1]}, has {have}")
        logical_eff = (*logical_w[:lead], _cdiv(logical_w[-2], block[0]), _cdiv(logical_w[-1], block[1]))
        logical = logical_eff if len(sshape) == len(sshape_eff) else logical_eff[:-1]
        if squeezed:
            logical = (logical[0], 1, logical[1], 1)
        note = ""
        if source == "config" and tuple(needed_stored) != tuple(sshape_eff):
            # stored larger than the declared block needs: padding, or a config that is wrong about the
            # block. When another common block fits the grid exactly, the config is not evidence enough.
            fit = [b for b in BLOCK_CANDIDATES if b != block
                   and (_cdiv(shape[-2], b[0]), _cdiv(shape[-1], b[1])) == tuple(sshape_eff[-2:])]
            if fit and not _aligned_up(shape, block, sshape_eff):
                source = "mismatch"  # no alignment explains the extra entries: the config is wrong
                note = (f"config.json declares block {block[0]}x{block[1]} but the stored grid "
                        f"{list(sshape_eff[-2:])} is exactly what block {fit[0][0]}x{fit[0][1]} needs")
            elif fit:
                source = "ambiguous"  # alignment padding at the declared block, or another block exactly
                note = (f"the stored grid {list(sshape_eff[-2:])} is block {block[0]}x{block[1]} (config.json) "
                        f"rounded up for alignment, or exactly block {fit[0][0]}x{fit[0][1]}: which entries are "
                        "padding is not certain")
        if source == "ambiguous" and not note:
            note = (f"block {block[0]}x{block[1]} inferred from other tensors; this scale is larger than it needs, "
                    "so which entries are padding is a guess")
        return ScaleLayout(scale, weight, kind, encoding, block, shape, logical_w, tuple(logical), source, note), None
