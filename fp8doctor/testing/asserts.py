"""`assert_scales_clean`: the in-memory checks as one assertion for an engine's test suite (plain
`assert`-style AssertionError, so it works under pytest or unittest without a plugin)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fp8doctor.findings import Finding, Report, Severity
from fp8doctor.reporters.common import location, plain

MAX_LISTED = 20
"""Findings spelled out in the assertion message (the rest are counted)."""


def _line(f: Finding) -> str:
    where = " ".join(location(f))
    return f"  {f.severity.value} {f.rule}: {plain(f.tensor) or '-'}{' ' + where if where else ''}: {plain(f.message)}"


def findings_text(report: Report, findings: Iterable[Finding]) -> str:
    """The findings as the assertion shows them: one line each, worst first."""
    found = list(findings)
    lines = [f"{len(found)} scale finding{'s' if len(found) != 1 else ''} in {report.target}:"]
    lines += [_line(f) for f in found[:MAX_LISTED]]
    if len(found) > MAX_LISTED:
        lines.append(f"  ... and {len(found) - MAX_LISTED} more")
    return "\n".join(lines)


def assert_scales_clean(module_or_tensors: Any, *, config: Any = None, layouts: Iterable[Any] | None = None,
                        fail_on: Severity | str = Severity.WARNING, select: tuple[str, ...] = (),
                        ignore: tuple[str, ...] = (), fill: str | int = "zero") -> Report:
    """Raise AssertionError listing the findings when `module_or_tensors` (a torch.nn.Module, or a
    mapping of name -> torch tensor / numpy array) has a scale finding of severity `fail_on` or
    worse (default: warnings and errors). Returns the Report when it passes.

        fp8doctor.testing.assert_scales_clean(model)                      # after weight loading
        fp8doctor.testing.assert_scales_clean({"x.weight": w, "x.weight_scale_inv": s},
                                              layouts=[RuntimeLayout("x.*", strided=True, deepgemm=True)])
    """
    from fp8doctor.runtime.check import check_module, check_tensors
    from fp8doctor.scanner import ScanOptions

    level = Severity.parse(fail_on) if isinstance(fail_on, str) else fail_on
    options = ScanOptions(fill=fill, select=tuple(select), ignore=tuple(ignore))
    if isinstance(module_or_tensors, Mapping):
        report = check_tensors(module_or_tensors, config=config, layouts=layouts, options=options)
    else:
        report = check_module(module_or_tensors, config=config, layouts=layouts, options=options)
    bad = [f for f in report.findings if f.severity.rank >= level.rank]
    if bad:
        raise AssertionError(findings_text(report, bad))
    return report
