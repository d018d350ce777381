"""`fp8doctor scan`: the read-only check (the CI step)."""

from __future__ import annotations

import enum
from typing import Annotated

import typer

from fp8doctor.cli.options import FillOpt, IgnoreOpt, LayoutOpt, NoColorOpt, PathArg, QuietOpt, SelectOpt
from fp8doctor.cli.output import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, fail, no_color, stdout_console
from fp8doctor.findings import Severity


class ScanFormat(str, enum.Enum):
    console = "console"
    json = "json"


def build_options(fill: str, select: list[str] | None, ignore: list[str] | None, layout: list[str] | None):
    """ScanOptions from command-line strings; ValueError carries a one-line message."""
    from fp8doctor.layouts.model import LayoutOverride, parse_fill
    from fp8doctor.scanner import ScanOptions

    return ScanOptions(fill=parse_fill(fill), select=tuple(select or ()), ignore=tuple(ignore or ()),
                       overrides=tuple(LayoutOverride.parse(x) for x in layout or ()))


def scan_command(
    path: PathArg,
    format: Annotated[ScanFormat, typer.Option("--format", "-f", help="Report format on stdout.")] = ScanFormat.console,
    fail_on: Annotated[str, typer.Option("--fail-on", help="Exit 1 when a finding is at or above: error, warning, "
                                         "info.")] = "error",
    select: SelectOpt = None,
    ignore: IgnoreOpt = None,
    fill: FillOpt = "zero",
    layout: LayoutOpt = None,
    max_findings: Annotated[int, typer.Option("--max-findings", help="Findings listed in the console report.")] = 20,
    quiet: QuietOpt = False,
    no_color_flag: NoColorOpt = False,
) -> None:
    """Check every scale tensor of a checkpoint; read-only. Exit 0 clean, 1 findings, 2 could not run."""
    from fp8doctor import __version__
    from fp8doctor.checkpoint.loader import CheckpointError
    from fp8doctor.cli.progress import BarProgress
    from fp8doctor.scanner import scan

    try:
        threshold = Severity.parse(fail_on)
        options = build_options(fill, select, ignore, layout)
    except ValueError as e:
        raise typer.Exit(fail(str(e))) from None
    progress = BarProgress() if BarProgress.wanted(quiet) else None
    try:
        report = scan(path, options, progress=progress)
    except CheckpointError as e:
        raise typer.Exit(fail(str(e))) from None
    finally:
        if progress is not None:
            progress.finish()
    if format is ScanFormat.json:
        from fp8doctor.reporters import json as json_reporter

        typer.echo(json_reporter.render(report, __version__), nl=False)
    else:
        from fp8doctor.reporters import console as console_reporter

        console_reporter.render(report, stdout_console(color=not no_color(no_color_flag)), max_findings, quiet,
                                threshold)
    raise typer.Exit(EXIT_FINDINGS if report.failed(threshold) else EXIT_OK)


__all__ = ["EXIT_ERROR", "scan_command"]
