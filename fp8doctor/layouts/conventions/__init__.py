"""The checkpoint naming conventions fp8doctor understands, one module each, and the registry the
pairing runs (layouts/pairing.py) and the config dims come from (layouts/dims.py).

Adding a convention: write one module here defining `CONVENTION = Convention(...)` (see base.py
and docs/architecture.md) and add it to `CONVENTIONS` below. Order matters only between
conventions sharing a scale suffix (the first that claims a scale wins, weight suffixes are tried
in this order) and for the order of the names a `scale-missing` message lists.
"""

from __future__ import annotations

from fp8doctor.checkpoint.config import ModelConfig
from fp8doctor.checkpoint.header import TensorInfo
from fp8doctor.layouts.conventions import (
    compressed_tensors,
    deepseek_v3,
    deepseek_v4,
    deepseek_v4_fp4,
    gpt_oss,
    modelopt,
    torchao,
    weight_scale,
)
from fp8doctor.layouts.conventions.base import Convention, DimRule

CONVENTIONS: tuple[Convention, ...] = (
    deepseek_v3.CONVENTION,
    compressed_tensors.CONVENTION,
    modelopt.CONVENTION,
    weight_scale.CONVENTION,
    deepseek_v4.CONVENTION,
    deepseek_v4_fp4.CONVENTION,
    gpt_oss.CONVENTION,
    torchao.CONVENTION,
)


def _by_suffix() -> tuple[tuple[str, tuple[Convention, ...]], ...]:
    groups: dict[str, list[Convention]] = {}
    for c in CONVENTIONS:
        groups.setdefault(c.scale_suffix, []).append(c)
    return tuple((s, tuple(cs)) for s, cs in groups.items())


BY_SCALE_SUFFIX = _by_suffix()
"""(scale suffix, the conventions using it in registry order), in registry order."""

SCALE_SUFFIXES: tuple[str, ...] = tuple(s for s, _ in BY_SCALE_SUFFIX)

IGNORED_SCALE_SUFFIXES: tuple[str, ...] = tuple(dict.fromkeys(s for c in CONVENTIONS for s in c.ignored_suffixes))

SECOND_LEVEL: dict[str, str] = {s: role for c in CONVENTIONS for s, role in c.companions}
"""Second-level scale suffix -> role ('global' or 'input'), from every convention's companions."""

WEIGHT_SUFFIXES: tuple[str, ...] = tuple(sorted(dict.fromkeys(ws for c in CONVENTIONS for ws in c.weight_suffixes),
                                                key=len, reverse=True))
"""Every convention's weight suffixes, longest first (a module's name is its weight's without it)."""

COMPANION_WEIGHT_SUFFIXES: tuple[str, ...] = tuple(sorted(
    dict.fromkeys(ws for c in CONVENTIONS if c.companions for ws in c.weight_suffixes), key=lambda s: s != ".weight"))
"""Where a module's quantized weight is, for the conventions that keep second-level scales."""

DIVISOR_SUFFIXES: tuple[str, ...] = tuple(dict.fromkeys(s for c in CONVENTIONS for s in c.divisors))
"""Global scales kept as divisors, (448 * 6) / amax."""
MULTIPLIER_SUFFIXES: tuple[str, ...] = tuple(s for s, role in SECOND_LEVEL.items()
                                             if role == "global" and s not in DIVISOR_SUFFIXES)
"""Global scales kept as multipliers, amax / (448 * 6)."""

DIM_RULES: tuple[DimRule, ...] = tuple(dict.fromkeys(r for c in CONVENTIONS for r in c.dims))
"""Every convention's config-dims rules, each once, in registry order."""


def needs_scale(t: TensorInfo, config: ModelConfig | None) -> bool:
    """Whether `t` is a quantized weight that some convention says must have a scale."""
    return any(c.needs_scale(t, config) for c in CONVENTIONS)


def expected_scale_names(weight_name: str) -> str:
    """The scale names looked for beside a weight, for a `scale-missing` message."""
    for c in CONVENTIONS:  # conventions naming their weights other than `X.weight*`
        for ws in c.weight_suffixes:
            if not ws.startswith(".weight") and weight_name.endswith(ws):
                return weight_name[: -len(ws)] + c.scale_suffix
    stem = weight_name.rsplit(".", 1)[0]
    return ", ".join(dict.fromkeys(stem + c.scale_suffix for c in CONVENTIONS if c.scale_suffix.startswith(".")
                                   and any(ws.startswith(".weight") for ws in c.weight_suffixes)))


__all__ = ["BY_SCALE_SUFFIX", "COMPANION_WEIGHT_SUFFIXES", "CONVENTIONS", "DIM_RULES", "DIVISOR_SUFFIXES",
           "IGNORED_SCALE_SUFFIXES", "MULTIPLIER_SUFFIXES", "SCALE_SUFFIXES", "SECOND_LEVEL", "WEIGHT_SUFFIXES",
           "Convention",
           "DimRule", "expected_scale_names", "needs_scale"]
