"""Checkpoint-wide rules: completeness (companions each quantized weight's format requires),
config.json against the stored tensors, and single-entry scales against their siblings.

Header-only and cheap: they look at names, dtypes, shapes, the layouts and the per-tensor medians
the content rules already computed; nothing here reads tensor data.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Iterator

from fp8doctor.checkpoint.config import ModelConfig
from fp8doctor.checkpoint.dtypes import FP8_WEIGHT_DTYPES, PACKED_WEIGHT_DTYPES
from fp8doctor.checkpoint.header import TensorInfo
from fp8doctor.findings import Finding
from fp8doctor.layouts.conventions import DIVISOR_SUFFIXES, MULTIPLIER_SUFFIXES, SECOND_LEVEL, WEIGHT_SUFFIXES
from fp8doctor.layouts.model import ScaleLayout
from fp8doctor.rules.catalog import emit
from fp8doctor.rules.content import TensorSummary, kind_of
from fp8doctor.rules.plausible import sibling_outliers

GLOBAL_SUFFIXES = tuple(s for s, role in SECOND_LEVEL.items() if role == "global")
INPUT_SUFFIXES = tuple(s for s, role in SECOND_LEVEL.items() if role == "input")
SIBLING_SPAN = 24
"""Binades a single-entry scale may sit from the median of its siblings (same suffix and role)."""



def module_of(weight_name: str) -> str:
    for s in WEIGHT_SUFFIXES:
        if weight_name.endswith(s):
            return weight_name[: -len(s)]
    return weight_name


def _first_word(role_suffixes: Iterable[str]) -> str:
    return " / ".join(s.lstrip(".") for s in role_suffixes)


def check_companions(layouts: Iterable[ScaleLayout], companions: dict[str, set[str]],
                     config: ModelConfig | None) -> Iterator[Finding]:
    """Every quantized weight has what its convention requires beside its block scale: a global scale
    for NVFP4 (config says so), an input scale when activations are static (config says so), and
    whatever most of its siblings (same name with the layer/expert numbers wildcarded) have."""
    quant = config.quant if config is not None else None
    weights: dict[str, ScaleLayout] = {}
    for lay in layouts:
        if lay.role == "weight" and lay.weight is not None:
            weights.setdefault(lay.weight.name, lay)
    groups: dict[str, list[str]] = {}
    for name in weights:
        groups.setdefault(kind_of(name), []).append(name)
    for kind, members in groups.items():
        have = {m: companions.get(m, set()) for m in members}
        common = {s for s in SECOND_LEVEL if sum(s in h for h in have.values()) * 2 > len(members)}
        for m in members:
            lay = weights[m]
            stem = module_of(m)
            missing = [stem + s for s in sorted(common) if s not in have[m]]
            why = f"most of the {len(members)} weights like it ({kind}) have them" if missing else ""
            if quant is not None:
                nvfp4 = lay.encoding == "e4m3" and lay.kind == "group"
                if quant.global_scale_required and nvfp4 and not have[m] & set(GLOBAL_SUFFIXES):
                    missing.append(f"second-level scale ({_first_word(GLOBAL_SUFFIXES)})")
                    why = why or f"config.json declares {quant.fmt or quant.algo}, which has one"
                if quant.static_input and not have[m] & set(INPUT_SUFFIXES) and \
                        not any(x.endswith(INPUT_SUFFIXES) for x in missing):
                    missing.append(f"input scale ({_first_word(INPUT_SUFFIXES)})")
                    why = why or "config.json declares static (calibrated) activation scales"
            if missing:
                w = lay.weight
                yield emit("scale-companion-missing", w.file if w else None, m,
                           f"{m} has no {', '.join(missing)} ({why}): loaders fail on it or substitute a "
                           "default (1.0, or 1/0 for a divisor)", count=len(missing))


def _ignored(module: str, entry: str, method: str) -> bool:
    """Does the config's ignore entry name this module, as that producer's loader reads it?"""
    if entry.startswith("re:"):
        try:
            return re.match(entry[3:], module) is not None
        except re.error:
            return False
    if any(c in entry for c in "*?["):
        return fnmatch.fnmatchcase(module, entry)
    if method == "compressed-tensors":
        return module == entry or module.endswith("." + entry)
    return module == entry or module.endswith("." + entry) or module.startswith(entry + ".") or \
        f".{entry}." in module


def check_config(tensors: dict[str, TensorInfo], layouts: Iterable[ScaleLayout],
                 config: ModelConfig | None) -> Iterator[Finding]:
    """config.json (quantization_config, hf_quant_config.json, expert_dtype) against what is stored."""
    if config is None:
        return
    quant = config.quant
    quantized = {lay.weight.name: lay.weight for lay in layouts if lay.role == "weight" and lay.weight is not None}
    method = (quant.quant_method or "").lower()
    ignored = [(e, m) for m in quantized for e in quant.modules_to_not_convert if _ignored(module_of(m), e, method)]
    if ignored:
        entry, first = ignored[0]
        w = quantized[first]
        yield emit("config-mismatch", w.file, first,
                      f"{len(ignored):,} quantized weight{'s are' if len(ignored) != 1 else ' is'} stored for modules "
                      f"config.json says are not quantized (first {first}, {w.dtype}, matched by {entry!r} in "
                      "modules_to_not_convert / ignore / exclude_modules): loaders build those layers unquantized and "
                      "read the codes as plain weights", count=len(ignored))
    expert_dtype = str(config.raw.get("expert_dtype", "") or "").lower()
    if expert_dtype:
        experts = [t for n, t in tensors.items() if ".experts." in n and n.endswith((".weight", ".weight_packed"))
                   and len(t.shape) >= 2]
        if expert_dtype in ("fp4", "mxfp4", "nvfp4"):
            wrong = [t for t in experts if t.dtype in FP8_WEIGHT_DTYPES or t.dtype in ("BF16", "F16", "F32")]
            said = "FP4 (packed)"
        elif expert_dtype in ("fp8", "float8", "e4m3"):
            wrong = [t for t in experts if t.dtype in PACKED_WEIGHT_DTYPES or t.dtype in ("BF16", "F16", "F32")]
            said = "FP8"
        else:
            wrong = []
            said = expert_dtype
        if wrong:
            t = wrong[0]
            yield emit("config-mismatch", t.file, t.name,
                          f"config.json says expert_dtype {expert_dtype!r} ({said}) but {len(wrong):,} of "
                          f"{len(experts):,} expert weights are stored otherwise (first {t.name} {t.dtype} "
                          f"{list(t.shape)}): loaders size and decode the experts from the config",
                          count=len(wrong))


# global scales kept as divisors ((448 * 6) / amax: >= 1 for any weight amax up to 2688) or as
# multipliers (amax / (448 * 6): < 2 for any weight amax up to 5376): the conventions say which


def check_single_entry(summaries: Iterable[TensorSummary], layouts: dict[str, ScaleLayout],
                       tensors: dict[str, TensorInfo]) -> Iterator[Finding]:
    """Single-entry scales (per-tensor, global, input) have nothing to compare with inside their
    tensor: compare each with the others of its role and suffix across the checkpoint, and a global
    scale with its convention's direction (a multiplier stored where a divisor belongs, modular #6600)."""
    groups: dict[tuple[str, str], dict[str, TensorSummary]] = {}
    for s in summaries:
        t = tensors.get(s.name)
        if t is None or t.numel != 1:
            continue
        wrong = ("a divisor ((448 * 6) / amax, >= 1)" if s.name.endswith(DIVISOR_SUFFIXES) and s.median_exponent < 0
                 else "a multiplier (amax / (448 * 6), < 2)"
                 if s.name.endswith(MULTIPLIER_SUFFIXES) and s.median_exponent > 0 else None)
        if wrong is not None:
            yield emit("scale-implausible", s.file, s.name,
                          f"{s.name} is about 2^{s.median_exponent}, but this convention stores {wrong}: "
                          "it was written the other way round, and loaders scale the weights by its inverse",
                          byte_offset=s.offset, count=1, index=())
            continue
        lay = layouts.get(s.name)
        role = lay.role if lay is not None else "weight"
        suffix = s.name.rsplit(".", 1)[-1]
        groups.setdefault((role, suffix), {})[s.name] = s
    for (role, suffix), members in groups.items():
        far = sibling_outliers({n: m.median_exponent for n, m in members.items()}, SIBLING_SPAN)
        for name, dist in sorted(far.items()):
            m = members[name]
            yield emit("scale-implausible", m.file, name,
                          f"{name} is 2^{m.median_exponent}, 2^{abs(dist)} {'above' if dist > 0 else 'below'} the "
                          f"median of the {len(members)} {role} scales named *.{suffix}: no real amax differs so "
                          "much within one model (leftover memory or a broken export)",
                          byte_offset=m.offset, count=1, index=())
