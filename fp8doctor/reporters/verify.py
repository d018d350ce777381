"""Renderers for `fp8doctor verify` results: a rich table, or exact JSON (schema in README)."""

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


def to_dict(result: Any, version: str) -> dict[str, Any]:
    first = result.first_failure
    o = result.options
    return {
        **envelope(version),
        "target": result.target,
        "layer": result.layer,
        "architecture": result.arch,
        "options": {"tokens": o.tokens, "context": o.context, "device": o.device, "seed": o.seed,
                    "cache_init": o.cache_init, "experts": o.experts},
        "passed": result.passed,
        "first_failure": first.name if first else None,
        "stages": [{"name": s.name, "kind": s.kind, "max_abs": _num(s.max_abs), "max_rel": _num(s.max_rel),
                    "nonfinite": s.nonfinite, "compared": s.numel, "tolerance": s.tolerance, "passed": s.passed,
                    "tensors": list(s.tensors), "detail": s.detail} for s in result.stages],
        "assumptions": list(result.assumptions),
        "stats": {"quantized_tensors": result.quantized_tensors, "bytes_read": result.bytes_read,
                  "seconds": round(result.seconds, 3)},
    }


def render_json(result: Any, version: str) -> str:
    return json.dumps(to_dict(result, version), indent=2) + "\n"


def render_console(result: Any, console: Console, quiet: bool = False) -> None:
    o = result.options
    if not quiet:
        console.print(Text.assemble((plain(result.target), "bold"),
                                    f"  layer {result.layer} ({result.arch}), {o.tokens} tokens over "
                                    f"{o.context} positions, cache-init {o.cache_init}, seed {o.seed}, {o.device}"))
        table = Table(show_edge=False, pad_edge=False)
        for col, just in (("stage", "left"), ("max abs", "right"), ("max rel", "right"), ("non-finite", "right"),
                          ("tolerance", "right"), ("", "left")):
            table.add_column(col, justify=just)  # type: ignore[arg-type]
        for s in result.stages:
            verdict = Text("PASS", "green") if s.passed else Text("FAIL", "bold red")
            table.add_row(s.name, f"{s.max_abs:.3g}", f"{s.max_rel:.2e}",
                          Text(str(s.nonfinite), "red") if s.nonfinite else "0", f"{s.tolerance:g}", verdict)
        console.print(table)
        for s in result.stages:
            if s.detail:
                console.print(Text.assemble(("  " + s.name, "bold"), ": ", plain(s.detail)))
        if result.assumptions:
            console.print(Text("assumptions:", "bold"))
            for a in result.assumptions:
                console.print(Text(f"  - {plain(a)}"), soft_wrap=True)
    first = result.first_failure
    if first is None:
        console.print(f"[bold green]PASS[/]: served output matches the exact reference at every stage "
                      f"({result.quantized_tensors} quantized tensors, {result.seconds:.1f} s)")
    else:
        what = f"{first.nonfinite} non-finite values" if first.nonfinite else f"relative error {first.max_rel:.2e}"
        tensors = f"; tensors: {', '.join(plain(t) for t in first.tensors[:3])}" if first.tensors else ""
        console.print(Text.assemble(("FAIL", "bold red"), " at stage ", (first.name, "bold"),
                                    f": {what} (tolerance {first.tolerance:g}){tensors}"), soft_wrap=True)
