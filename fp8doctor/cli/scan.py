"""`fp8doctor scan`: the read-only check (the CI step).

Reports: `--format`/`--output` are repeatable and paired by position (the i-th --output receives the
i-th --format; a format without an output, or with `-`, goes to stdout, and at most one may). When
any report goes to a file, the console report goes to stderr so a CI log still shows the verdict.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import sys
from collections import Counter
from collections.abc import Iterable
from typing import Annotated

import typer

from fp8doctor.cli.options import (
    ConfigOpt,
    IgnoreOpt,
    IsolatedOpt,
    LayoutOpt,
    NoColorOpt,
    PathArg,
    QuietOpt,
    SelectOpt,
)
from fp8doctor.cli.output import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, fail, no_color, stderr_console, stdout_console
from fp8doctor.reporters import FORMATS

ScanFormat = enum.Enum("ScanFormat", {name: name for name in FORMATS}, type=str)  # type: ignore[misc]
"""`--format` choices, straight from the renderer registry."""

STDOUT = "-"


def build_options(fill: str, select: list[str] | None, ignore: list[str] | None, layout: list[str] | None):
    """ScanOptions from command-line strings; ValueError carries a one-line message."""
    from fp8doctor.layouts.model import LayoutOverride, parse_fill
    from fp8doctor.scanner import ScanOptions

    return ScanOptions(fill=parse_fill(fill), select=tuple(select or ()), ignore=tuple(ignore or ()),
                       overrides=tuple(LayoutOverride.parse(x) for x in layout or ()))


def pair_outputs(formats: list[str], outputs: list[str]) -> list[tuple[str, str]]:
    """(format, destination) pairs; destination `-` is stdout. ValueError on a bad combination."""
    formats = list(formats) or ["console"]
    if len(outputs) > len(formats):
        raise ValueError(f"{len(outputs)} --output for {len(formats)} --format: give each --output a --format "
                         "(they pair up in order)")
    pairs = [(fmt, outputs[i] if i < len(outputs) else STDOUT) for i, fmt in enumerate(formats)]
    if sum(1 for _, dest in pairs if dest == STDOUT) > 1:
        raise ValueError("more than one report would go to stdout: give all but one --format an --output FILE")
    files = [dest for _, dest in pairs if dest != STDOUT]
    if len(set(files)) != len(files):
        raise ValueError("two reports would be written to the same --output file")
    return pairs


def source_root(checkpoint_path: str) -> str:
    """The git work tree holding the checkpoint (for repository-relative report paths), else the cwd.

    Found by walking up to a `.git` entry rather than by running git: running git inside a checkout
    that came from anywhere could execute its configured hooks or fsmonitor."""
    start = checkpoint_path if os.path.isdir(checkpoint_path) else os.path.dirname(checkpoint_path) or "."
    here = os.path.abspath(start)
    while True:
        if os.path.exists(os.path.join(here, ".git")):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            return os.getcwd()
        here = parent


def checkpoint_root(checkpoint_path: str) -> str:
    """The directory finding files are relative to (as open_checkpoint decides it); a URL's base."""
    from fp8doctor.checkpoint.loader import is_remote

    if is_remote(checkpoint_path):
        base = checkpoint_path.rstrip("/")
        return base.rsplit("/", 1)[0] if base.endswith((".json", ".safetensors")) else base
    return checkpoint_path if os.path.isdir(checkpoint_path) else os.path.dirname(checkpoint_path) or "."


def _write(dest: str, text: Iterable[str]) -> None:
    from fp8doctor.userfiles import write_file

    write_file(dest, text)


def scan_command(
    path: PathArg,
    format: Annotated[list[ScanFormat] | None, typer.Option(  # type: ignore[valid-type]
        "--format", "-f", help="Report format (repeatable; pairs with --output in order). "
        "Default: console.", show_default=False)] = None,
    output: Annotated[list[str] | None, typer.Option(
        "--output", "-o", help="Write the report of the matching --format to FILE ('-' = stdout); the console "
        "report then goes to stderr. Repeatable.", show_default=False)] = None,
    fail_on: Annotated[str | None, typer.Option("--fail-on", help="Exit 1 when a finding is at or above: error, "
                                                "warning, info. Default: error (or the configuration's).",
                                                show_default=False)] = None,
    select: SelectOpt = None,
    ignore: IgnoreOpt = None,
    fill: Annotated[str | None, typer.Option(
        "--fill", help="Byte padded entries must hold: zero (0x00), one (0x7F), or 0xNN. Float scales use "
        "0.0 / 1.0. Default: zero (or the configuration's).", show_default=False)] = None,
    layout: LayoutOpt = None,
    config: ConfigOpt = None,
    isolated: IsolatedOpt = False,
    baseline: Annotated[str | None, typer.Option(
        "--baseline", help="Report only findings that are new or changed since this baseline file.",
        show_default=False)] = None,
    write_baseline: Annotated[str | None, typer.Option(
        "--write-baseline", help="Record today's findings in FILE (then exit 0 unless the scan could not run).",
        show_default=False)] = None,
    max_findings: Annotated[int, typer.Option("--max-findings", help="Findings listed in the console, GitHub "
                                              "and Markdown reports.")] = 20,
    quiet: QuietOpt = False,
    no_color_flag: NoColorOpt = False,
) -> None:
    """Check every scale tensor of a checkpoint; read-only. Exit 0 clean, 1 findings, 2 could not run."""
    from fp8doctor import __version__
    from fp8doctor.baseline import BaselineError, apply_baseline
    from fp8doctor.baseline import write_baseline as record_baseline
    from fp8doctor.checkpoint.loader import CheckpointError, is_remote
    from fp8doctor.cli.progress import BarProgress
    from fp8doctor.config_file import ConfigError, FileConfig, load_for, settings
    from fp8doctor.reporters import RenderContext
    from fp8doctor.reporters import chunks as report_chunks
    from fp8doctor.reporters import console as console_reporter
    from fp8doctor.scanner import scan

    try:
        pairs = pair_outputs([f.value for f in format or ()], list(output or ()))
        # no discovery for a missing path: the scanner says it is missing, in one line
        cfg = load_for(path, config, isolated) if config is not None or os.path.lexists(path) or is_remote(path) \
            else FileConfig()
        run = settings(cfg, fill=fill, select=select, ignore=ignore, layout=layout, fail_on=fail_on,
                       baseline=baseline)
    except (ConfigError, ValueError) as e:
        raise typer.Exit(fail(str(e))) from None
    if write_baseline is not None and baseline is not None:
        raise typer.Exit(fail("--baseline and --write-baseline together: write the baseline from a full scan"))

    progress = BarProgress() if BarProgress.wanted(quiet) else None
    try:
        # every finding, then select/ignore here, so the report can count what they suppressed
        report = scan(path, dataclasses.replace(run.options, select=(), ignore=()), progress=progress)
    except CheckpointError as e:
        raise typer.Exit(fail(str(e))) from None
    finally:
        if progress is not None:
            progress.finish()

    kept, hidden = run.apply(report.findings)
    report = dataclasses.replace(report, findings=kept)
    color = not no_color(no_color_flag)
    if write_baseline is not None:
        try:
            n = record_baseline(write_baseline, report, __version__)
        except BaselineError as e:
            raise typer.Exit(fail(str(e))) from None
        stderr_console(color).print(f"wrote {n} finding{'s' if n != 1 else ''} to baseline {write_baseline}",
                                    markup=False)
    suppressed = 0
    baseline_file = run.baseline if write_baseline is None else None
    if baseline_file is not None:
        try:
            before = Counter(f.rule for f in report.findings)
            report, suppressed = apply_baseline(report, baseline_file)
        except BaselineError as e:
            raise typer.Exit(fail(str(e))) from None
        hidden.update(before - Counter(f.rule for f in report.findings))

    exit_code = EXIT_OK if write_baseline is not None or not report.failed(run.fail_on) else EXIT_FINDINGS
    ctx = RenderContext(version=__version__, fail_on=run.fail_on, max_findings=max_findings, quiet=quiet,
                        color=color, source_root=source_root(path), checkpoint_root=checkpoint_root(path),
                        baseline=baseline_file, suppressed=suppressed, rules=_active_rules(run.options),
                        config=run.config_path, suppressed_by_rule=dict(hidden),
                        exit_code=exit_code, configuration=run.describe())
    to_file = False
    for fmt, dest in pairs:
        if dest == STDOUT and fmt == "console":
            console_reporter.render(report, stdout_console(color=color), max_findings, quiet, run.fail_on,
                                    suppressed, ctx.config, ctx.config_suppressed)
            continue
        pieces = report_chunks(fmt, report, dataclasses.replace(ctx, color=False))  # streamed: 10^5 findings
        if dest == STDOUT:
            for piece in pieces:
                sys.stdout.write(piece)
            sys.stdout.flush()
            continue
        to_file = True
        try:
            _write(dest, pieces)
        except OSError as e:
            raise typer.Exit(fail(f"{dest}: cannot write the {fmt} report ({e.strerror or e})")) from None
    if to_file and not any(fmt == "console" and dest == STDOUT for fmt, dest in pairs):
        console_reporter.render(report, stderr_console(color=color), max_findings, quiet, run.fail_on, suppressed,
                                ctx.config, ctx.config_suppressed)
    raise typer.Exit(exit_code)


def _active_rules(options) -> tuple[str, ...]:
    from fp8doctor.rules.catalog import RULES

    return tuple(r for r in RULES if (not options.select or r in options.select) and r not in options.ignore)


__all__ = ["EXIT_ERROR", "ScanFormat", "build_options", "pair_outputs", "scan_command"]
