"""The rule catalogue: every rule id fp8doctor can emit, with its default severity and help.

Rule ids are a public contract: never rename one, never change what it means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fp8doctor.findings import Finding, Region, Severity


@dataclass(frozen=True)
class Rule:
    """One rule: its id (a public contract), default severity, whether `fix` can repair what it
    finds, the region it is about, and its help. Every finding of the rule is made by `finding`,
    so severity and region come from here and nowhere else."""

    id: str
    severity: Severity
    fixable: bool
    region: Region
    title: str
    help: str
    accepted_severity: Severity | None = None
    """The severity of what the rule finds but accepts as a deliberate choice (scale-padding-nonzero:
    padding that holds the other accepted fill throughout, when no fill was asked for): at most info."""

    def finding(self, file: str | None, tensor: str | None, message: str, accepted: bool = False,
                **fields: Any) -> Finding:
        """A finding of this rule (`fields`: byte_offset, count, index, fixable); `accepted`: one the
        rule accepts, with its `accepted_severity`."""
        severity = self.severity
        if accepted:
            if self.accepted_severity is None:
                raise ValueError(f"rule {self.id} accepts nothing")
            severity = self.accepted_severity
        return Finding(self.id, severity, file, tensor, message, self.region, **fields)


_RULES = [
    Rule("header-invalid", Severity.ERROR, False, Region.HEADER,
         "safetensors header is invalid",
         "The file's 8-byte length prefix or JSON header breaks the safetensors format (length over "
         "100,000,000 or past the end of file, not UTF-8, not a JSON object, bad tensor entry, "
         "duplicate key, unknown dtype, size that does not match shape x dtype, overlapping or gapped "
         "offsets). Loaders will refuse the file or read the wrong bytes. Re-export the shard."),
    Rule("file-truncated", Severity.ERROR, False, Region.FILE,
         "data region shorter or longer than the header says",
         "The bytes after the header do not match the last tensor's end offset: usually an "
         "interrupted download or copy. Fetch the shard again and compare its size and checksum."),
    Rule("file-unreadable", Severity.ERROR, False, Region.FILE,
         "a file could not be read",
         "The file exists but could not be opened or read (permissions, I/O error, a directory "
         "where a file should be, a symlink loop). Nothing in it was checked."),
    Rule("path-unsafe", Severity.ERROR, False, Region.INDEX,
         "a shard path escapes the checkpoint directory",
         "The index names a shard with an absolute path or '../', or a shard is a symlink that "
         "points outside the checkpoint directory. fp8doctor does not follow it; loaders may."),
    Rule("index-invalid", Severity.ERROR, False, Region.INDEX,
         "model.safetensors.index.json is not a valid index",
         "The index is not JSON, or has no 'weight_map' object of tensor name -> shard file."),
    Rule("index-shard-missing", Severity.ERROR, False, Region.INDEX,
         "a shard named in the index does not exist",
         "The index maps tensors to a shard file that is not in the directory: the checkpoint is "
         "incomplete. Download the missing shard."),
    Rule("index-mismatch", Severity.ERROR, False, Region.INDEX,
         "the index and the shards disagree",
         "A tensor is listed in the index but absent from its shard, present in a shard but not "
         "listed, or stored in two shards. Loaders that trust the index will fail or load the "
         "wrong copy."),
    Rule("fix-interrupted", Severity.ERROR, False, Region.FILE,
         "a fix of this checkpoint is running or was interrupted",
         "The checkpoint's .fp8doctor-journal holds a fix (or undo) that has not finished: a fix is "
         "running right now, or one was killed. Shards may hold a mix of old and new padded bytes. Run "
         "`fp8doctor fix PATH` to complete it (or `fp8doctor fix --undo PATH` to roll it back); both "
         "use the journal and are safe to repeat."),
    Rule("nothing-checked", Severity.ERROR, False, Region.FILE,
         "the checkpoint has files but no scale tensor could be checked",
         "Shards were found, but not one scale tensor in them could be read and checked: every shard "
         "was unreadable or unsafe to follow, or no tensor looks like a scale (not a quantized "
         "checkpoint, or a format fp8doctor does not know). A report that read nothing is never clean; "
         "see the other findings for why, or point fp8doctor at the quantized checkpoint."),
    Rule("config-invalid", Severity.ERROR, False, Region.FILE,
         "config.json could not be used",
         "config.json is not JSON or its quantization_config has unexpected types. Inference servers "
         "read it to build the model, so they will fail or mis-load; fp8doctor inferred layouts from "
         "tensor shapes alone."),
    Rule("layout-ambiguous", Severity.WARNING, False, Region.LOGICAL,
         "the scale layout had to be guessed",
         "No block size was given (quantization_config, configuration) and the tensor shapes fit "
         "more than one, or none exactly. fp8doctor used the best fit, named in the message; set "
         "the block size in configuration to be sure which scale entries are padding."),
    Rule("layout-unknown", Severity.WARNING, False, Region.LOGICAL,
         "a scale tensor has a layout fp8doctor does not model",
         "The tensor looks like a scale (name or dtype) but its shape or dtype fits no known layout "
         "for its weight, so its padding could not be located. Only value checks ran on it."),
    Rule("scale-missing", Severity.ERROR, False, Region.LOGICAL,
         "a quantized weight has no scale",
         "An FP8/FP4 weight has no scale tensor beside it: a loader will either fail or use the "
         "raw codes unscaled, which gives wrong outputs."),
    Rule("scale-orphan", Severity.WARNING, False, Region.LOGICAL,
         "a scale tensor has no weight",
         "A scale tensor (E8M0 dtype or scale name) has no quantized weight it could belong to: "
         "a renamed or dropped weight, or a leftover from export."),
    Rule("scale-shape-mismatch", Severity.ERROR, False, Region.LOGICAL,
         "the scale cannot cover its weight",
         "The scale tensor has fewer entries along some axis than its weight needs at the block or "
         "group size in use, or its rank or expert count differs. Kernels would read past it."),
    Rule("scale-padding-nonzero", Severity.ERROR, True, Region.PADDING,
         "padded scale entries are not the fill byte",
         "Entries of the scale tensor that exist only for alignment (beyond the weight's real "
         "rows/columns/experts) hold bytes other than the fill (0x00 = 2^-127, the E8M0 value that "
         "stands for zero; 0.0 for float scales). Kernels tile over padded shapes and multiply "
         "these in where a 0 is meant: garbage (0xFF = NaN, or huge exponents) leaks NaN or "
         "huge values into outputs. Usually torch.empty at export. `fp8doctor fix` rewrites them. "
         "Padding that holds the other accepted fill throughout (0x7F = 1.0 for E8M0, 1.0 for float "
         "scales, as `fix --fill one` writes) is a deliberate choice: reported as info, and left alone "
         "by fix, unless a fill is asked for (--fill, or `fill` in the configuration).",
         accepted_severity=Severity.INFO),
    Rule("scale-nan", Severity.ERROR, False, Region.LOGICAL,
         "a real scale entry is NaN or infinite",
         "A scale entry that multiplies real weights is NaN (E8M0 0xFF) or NaN/Inf (float). Every "
         "output that touches the block becomes NaN. The weights must be re-quantized."),
    Rule("scale-zero", Severity.ERROR, False, Region.LOGICAL,
         "a real scale entry is zero while its weight block is not",
         "A scale entry that multiplies real, non-zero weights is the zero stand-in (E8M0 0x00 = "
         "2^-127, or 0.0): the block's weights are erased, giving fluent but wrong outputs. Entries "
         "whose weight block is all zero are not reported."),
    Rule("scale-zero-unchecked", Severity.INFO, False, Region.LOGICAL,
         "a real scale entry is zero and its weight block could not be read to check it",
         "The weight blocks behind zero scales are read to tell harmless zeros (all-zero blocks) from "
         "erased weights, up to a byte budget per tensor. Zero entries left when the budget ran out "
         "could not be checked: not known to be harmful, so not an error; scan a copy with a larger "
         "budget, or `fp8doctor dump` them, to look closer."),
    Rule("scale-negative", Severity.ERROR, False, Region.LOGICAL,
         "a real float scale entry is negative",
         "Block scales are positive by construction; a negative float scale flips the sign of its "
         "block and usually means leftover memory or a broken export."),
    Rule("scale-outlier", Severity.WARNING, False, Region.LOGICAL,
         "a scale exponent is implausibly far from its neighbours",
         "A scale's exponent is far (by default more than 2^32 times) from the median of its tensor, "
         "or a tensor's median is that far from the other tensors of its kind in other layers. "
         "Real scales span a few dozen binades at most; this is usually a bit flip or garbage."),
    Rule("scale-uninitialized", Severity.ERROR, False, Region.LOGICAL,
         "real scale entries look like leftover memory",
         "The byte statistics of the scale tensor's logical region (spread over most of the byte "
         "range, many far-out exponents) look like uninitialized memory rather than scales "
         "computed from weights. The export saved torch.empty storage; re-export."),
    Rule("scale-not-power-of-two", Severity.WARNING, False, Region.LOGICAL,
         "a float scale in a ue8m0 checkpoint is not a power of two",
         "config.json says scale_fmt ue8m0 but an F32 scale is not an exact power of two. Kernels "
         "that convert to E8M0 round it. DeepSeek V3.1 ships such scales for o_proj legitimately; "
         "check that the difference is intended."),
    Rule("scale-deepgemm-invalid", Severity.ERROR, False, Region.LOGICAL,
         "an F32 scale destined for DeepGEMM fails its (bits & 0x807fffff) == 0 check",
         "In-memory checks only (fp8doctor.check_tensors with RuntimeLayout(deepgemm=True)). "
         "DeepGEMM's UE8M0 path asserts that every F32 scale it is given, padding included, is +0.0 "
         "or a positive power of two; an entry that is not (torch.empty padding rows of a "
         "TMA-aligned scale buffer, usually) stops the kernel with a sticky CUDA error 719 (vLLM "
         "#56290, #49784; sglang #32386). Fill the padding with zeros after allocating it."),
]

_RULES += [
    Rule("scale-implausible", Severity.ERROR, False, Region.LOGICAL,
         "a scale holds a finite value no producer writes",
         "Real scales are an amax divided by the format's maximum: within 2^-64..2^64 for E8M0, F32 and "
         "BF16 scales, never subnormal. Values outside (a heap pointer read as floats is 2^-101 and a "
         "subnormal 2^-134; random E8M0 bytes; 1e30 next to 1e-3), and a single-entry scale (per-tensor, "
         "global or input) more than 2^24 from the others of its role, are leftover memory or a broken "
         "export, not scales. The weights must be re-quantized."),
    Rule("scale-saturated", Severity.ERROR, False, Region.LOGICAL,
         "many E4M3 block scales sit at the format's maximum 448",
         "NVFP4 block scales are E4M3; with a correct global scale only the block holding the tensor's "
         "amax reaches 448. When many do, the FP32 -> E4M3 cast saturated (a global scale read or "
         "computed wrongly, e.g. a multiplier used as a divisor): those blocks are clipped."),
    Rule("scale-companion-missing", Severity.ERROR, False, Region.LOGICAL,
         "a quantized weight lacks a scale its format requires",
         "The convention needs more than the block scale: NVFP4 weights a second-level (global) scale "
         "(`weight_global_scale`, `weight_scale_2`), statically calibrated activations an input scale per "
         "quantized weight (per expert too). It is missing here while config.json or the weight's siblings "
         "say it should be there; loaders fail or substitute 1.0 / 1/0."),
    Rule("config-mismatch", Severity.ERROR, False, Region.LOGICAL,
         "config.json disagrees with the stored tensors",
         "config.json's quantization_config (or hf_quant_config.json) says something the tensors contradict: "
         "a weight_block_size the scale grids do not fit (another block fits them exactly), expert_dtype "
         "against the stored experts, a module listed in modules_to_not_convert / ignore / exclude_modules "
         "stored quantized. Loaders trust the config and mis-load; entries are never called padding on "
         "such evidence, so nothing is fixable until the layout is configured."),
]

RULES: dict[str, Rule] = {r.id: r for r in _RULES}


def rule(rule_id: str) -> Rule:
    return RULES[rule_id]


def emit(rule_id: str, file: str | None, tensor: str | None, message: str, **fields: Any) -> Finding:
    """A finding of rule `rule_id`, with the catalog's severity and region (KeyError: unknown id)."""
    return RULES[rule_id].finding(file, tensor, message, **fields)


def validate_rule_ids(ids: list[str] | tuple[str, ...]) -> list[str]:
    """Return the ids unchanged, or raise ValueError naming the first unknown one."""
    from fp8doctor.suggest import did_you_mean

    for rid in ids:
        if rid not in RULES:
            raise ValueError(f"unknown rule id {rid!r}{did_you_mean(rid, RULES)}; `fp8doctor rules` lists them")
    return list(ids)
