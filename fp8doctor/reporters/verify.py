"""Renderers for `fp8doctor verify` results: a rich table, or exact JSON (schema in docs/verify.md, "JSON")."""

from __future__ import annotations

import json
import math
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from fp8doctor.reporters.common import plain
from fp8doctor.reporters.envelope import SCHEMA_VERSION, envelope

VERIFY_SCHEMA_VERSION = SCHEMA_VERSION  # the one schema version (reporters/envelope.py)


def _num(x: float) -> float | str:
    return x if math.isfinite(x) else str(x)


def _stage(s: Any) -> dict[str, Any]:
    return {"name": s.name, "kind": s.kind, "max_abs": _num(s.max_abs), "max_rel": _num(s.max_rel),
            "nonfinite": s.nonfinite, "compared": s.numel, "tolerance": s.tolerance, "passed": s.passed,
            "tensors": list(s.tensors), "detail": s.detail, "verdict": s.verdict,
            "exact_nonfinite": s.exact_nonfinite, "quantization_error": _num(s.quantization_error),
            "cause": s.cause}


def _profile(p: Any) -> dict[str, Any]:
    first = p.first_failure
    return {"name": p.name, "verdict": p.verdict, "passed": p.passed, "refused": list(p.refused),
            "first_failure": first.name if first and not p.refused else None, "summary": p.profile.summary,
            "source": p.profile.source, "stages": [_stage(s) for s in p.stages]}


def to_dict(result: Any, version: str) -> dict[str, Any]:
    first = result.first_failure
    o = result.options
    return {
        **envelope(version),
        "target": result.target,
        "layer": result.layer,
        "architecture": result.arch,
        "options": {"tokens": o.tokens, "context": o.context, "device": o.device, "seed": o.seed,
                    "cache_init": o.cache_init, "experts": o.experts, "kernel": o.kernel, "worst_case": o.worst_case},
        "passed": result.passed,
        "verdict": result.verdict,
        "first_failure": first.name if first else None,
        "reported_profile": result.reported,
        "stages": [_stage(s) for s in result.stages],
        "profiles": [_profile(p) for p in result.profiles],
        "assumptions": list(result.assumptions),
        "stats": {"quantized_tensors": result.quantized_tensors, "bytes_read": result.bytes_read,
                  "seconds": round(result.seconds, 3)},
    }


def render_json(result: Any, version: str) -> str:
    return json.dumps(to_dict(result, version), indent=2) + "\n"


GEMM_READS = {("shape", True): "weight's blocks; asserts",
              ("shape", False): "weight's blocks",
              ("tiled", False): "every stored"}
"""Which scale entries a profile's GEMM reads: cdiv(N, bn) x cdiv(K, bk) of the weight (a padded grid
refused, "asserts"), or every stored entry."""
MINUS_ONE = {"zeroed": "nothing", "slot0": "slot 0"}

_VERDICT_STYLE = {"PASS": "green", "FAIL": "bold red", "cannot verify": "bold red", "refuses": "yellow"}


def _verdict(v: str) -> Text:
    return Text("would refuse to load" if v == "refuses" else v, _VERDICT_STYLE[v])


def _abs(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.3g}"  # nothing compared finite: no number to show


def _rel(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.2e}"


def render_console(result: Any, console: Console, quiet: bool = False) -> None:
    o = result.options
    if not quiet:
        mode = "worst case (arbitrary codes under padding)" if o.worst_case else "stored bytes"
        console.print(Text.assemble((plain(result.target), "bold"),
                                    f"  layer {result.layer} ({result.arch}), {o.tokens} tokens over "
                                    f"{o.context} positions, cache-init {o.cache_init}, seed {o.seed}, {o.device}, "
                                    f"{mode}"))
        if result.stages:
            console.print(Text.assemble("stages under profile ", (result.reported, "bold"),
                                        "" if o.kernel else " (the worst of the profiles that load)"))
            table = Table(show_edge=False, pad_edge=False)
            for col, just in (("stage", "left"), ("compared", "right"), ("max abs", "right"), ("max rel", "right"),
                              ("non-finite", "right"), ("tolerance", "right"), ("", "left")):
                table.add_column(col, justify=just)  # type: ignore[arg-type]
            for s in result.stages:
                bad = s.nonfinite + s.exact_nonfinite
                table.add_row(s.name, f"{s.numel:,}", _abs(s.max_abs), _rel(s.max_rel),
                              Text(str(bad), "red") if bad else "0", f"{s.tolerance:.3g}", _verdict(s.verdict))
            console.print(table)
            for s in result.stages:
                if s.cause and s.verdict == "cannot verify":
                    console.print(Text.assemble(("  " + s.name, "bold"), ": cannot verify: ", plain(s.cause)),
                                  soft_wrap=True)
                elif s.detail:
                    console.print(Text.assemble(("  " + s.name, "bold"), ": ", plain(s.detail)), soft_wrap=True)
        if len(result.profiles) > 1 or (result.profiles and result.profiles[0].refused):
            ptable = Table(show_edge=False, pad_edge=False)
            for col in ("kernel profile", "verdict", "first failure", "scales read", "-1 reads"):
                ptable.add_column(col)
            for p in result.profiles:
                first = p.first_failure
                where = f"{len(p.refused)} padded grids" if p.refused else (first.name if first else "-")
                ptable.add_row(p.name, _verdict(p.verdict), where,
                               GEMM_READS[(p.profile.gemm, p.profile.refuses_padded_grid)],
                               MINUS_ONE[p.profile.minus_one])
            console.print(ptable)
            refused = next((p for p in result.profiles if p.refused), None)
            if refused:
                console.print(Text.assemble("  refused: ", plain(refused.refused[0]),
                                            f" (+{len(refused.refused) - 1} more)" if len(refused.refused) > 1 else ""),
                              soft_wrap=True)
        if result.assumptions:
            console.print(Text("assumptions:", "bold"))
            for a in result.assumptions:
                console.print(Text(f"  - {plain(a)}"), soft_wrap=True)
    console.print(verdict_line(result), soft_wrap=True)


def verdict_line(result: Any) -> Text:
    """The one line a run ends with (and all that --quiet prints)."""
    loaded = [p for p in result.profiles if not p.refused]
    refused = [p.name for p in result.profiles if p.refused]
    if result.options.kernel and refused:
        p = result.profiles[0]
        return Text.assemble(("FAIL", "bold red"), f": {p.name} would refuse to load this checkpoint: ",
                             plain(p.refused[0]) + (f" (+{len(p.refused) - 1} more)" if len(p.refused) > 1 else ""))
    first = result.first_failure
    if first is None:
        names = ", ".join(p.name for p in loaded) or "the reference"
        tail = f"; {', '.join(refused)} would refuse to load it (padded scale grid)" if refused else ""
        return Text.assemble(("PASS", "bold green"), f": served output matches the exact reference at every stage "
                             f"under {names} ({result.quantized_tensors} quantized tensors, {result.seconds:.1f} s)"
                             f"{tail}")
    failing = [p.name for p in loaded if not p.passed]
    under = f" under {', '.join(failing)}" if failing else ""
    if first.verdict == "cannot verify":
        n = first.exact_nonfinite
        what = f"the exact reference itself is non-finite ({n:,} values)" if n else "nothing was compared"
        return Text.assemble(("FAIL", "bold red"), " (cannot verify) at stage ", (first.name, "bold"),
                             f": {what}: ", plain(first.cause), "; scan reports it, fix repairs only padding"
                             if "real scale entry" in first.cause else "")
    what = f"{first.nonfinite:,} non-finite values" if first.nonfinite else f"relative error {first.max_rel:.2e}"
    if first.cause:  # a runtime property (the pool), not the checkpoint: no tensor named
        return Text.assemble(("FAIL", "bold red"), " at stage ", (first.name, "bold"), f"{under}: {what}; ",
                             plain(first.cause))
    tensors = f"; tensors: {', '.join(plain(t) for t in first.tensors[:3])}" if first.tensors else ""
    return Text.assemble(("FAIL", "bold red"), " at stage ", (first.name, "bold"),
                         f"{under}: {what} (tolerance {first.tolerance:.3g}){tensors}")
