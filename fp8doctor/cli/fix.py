"""`fix`: rewrite padded scale entries to the fill byte, journaled and crash-safe (see docs/fix.md)."""

from __future__ import annotations

import dataclasses
import enum
import sys
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
from fp8doctor.cli.output import EXIT_FINDINGS, EXIT_OK, fail, no_color, stdout_console


class FixFormat(str, enum.Enum):
    """What fix can report: its own result (what it wrote) has no SARIF/JUnit/annotation form; any
    other --format is a usage error (exit 2). `fp8doctor scan` reports what is left in those."""

    console = "console"
    json = "json"


def fix_command(
    path: PathArg,
    fill: Annotated[str | None, typer.Option(
        "--fill", help="Byte padded entries must hold: zero (0x00), one (0x7F), or 0xNN. Float scales use "
        "0.0 / 1.0. Default: zero (or the configuration's).", show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Change nothing; show what would change.")] = False,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write a repaired copy into this new "
                                               "directory; the source is never modified.")] = None,
    undo: Annotated[bool, typer.Option("--undo", help="Restore the original bytes of the last completed fix "
                                       "(or roll back an interrupted one).")] = False,
    journal_dir: Annotated[str | None, typer.Option("--journal-dir", help="Journal and lock directory (default "
                                                    "PATH/.fp8doctor-journal).")] = None,
    format: Annotated[FixFormat, typer.Option("--format", "-f", help="Report format on stdout: console or json "
                                              "(for SARIF/JUnit/GitHub/Markdown, run `fp8doctor scan` after the "
                                              "fix).")] = FixFormat.console,
    fail_on: Annotated[str | None, typer.Option("--fail-on", help="Exit 1 when an unfixable finding is at or above: "
                                                "error, warning, info. Default: error (or the configuration's).",
                                                show_default=False)] = None,
    select: SelectOpt = None,
    ignore: IgnoreOpt = None,
    layout: LayoutOpt = None,
    config: ConfigOpt = None,
    isolated: IsolatedOpt = False,
    max_findings: Annotated[int, typer.Option("--max-findings", help="Unfixable findings listed.")] = 20,
    quiet: QuietOpt = False,
    no_color_flag: NoColorOpt = False,
) -> None:
    """Rewrite padded scale entries to the fill byte, in place, journaled. Exit 0 repaired, 1 unfixable
    findings remain, 2 could not run."""
    from fp8doctor import __version__
    from fp8doctor.cli.progress import BarProgress
    from fp8doctor.config_file import ConfigError, load_for, settings
    from fp8doctor.errors import Fp8DoctorError
    from fp8doctor.repair.fix import fix

    try:  # the same configuration as scan: layout overrides, fill, select/ignore, per-tensor ignores
        run = settings(load_for(path, config, isolated), fill=fill, select=select, ignore=ignore, layout=layout,
                       fail_on=fail_on)
    except (ConfigError, ValueError) as e:
        raise typer.Exit(fail(str(e))) from None
    threshold = run.fail_on
    progress = BarProgress("checking") if BarProgress.wanted(quiet) and format is FixFormat.console else None
    try:
        result = fix(path, run.options, dry_run=dry_run, output=output, undo=undo, journal_dir=journal_dir,
                     progress=progress, ignore_tensors=run.ignore_tensors)
    except Fp8DoctorError as e:  # CheckpointError, FixError: one line
        raise typer.Exit(fail(str(e), e.exit_code)) from None
    finally:
        if progress is not None:
            progress.finish()
    result = dataclasses.replace(result, config=run.config_path)
    from fp8doctor.reporters import RenderContext
    from fp8doctor.reporters.presenters import emit

    color = not no_color(no_color_flag)
    ctx = RenderContext(version=__version__, fail_on=threshold, max_findings=max_findings, quiet=quiet, color=color,
                        target=path, config=run.config_path)
    emit("fix", format.value, result, ctx, stdout_console(color=color),
         sys.stdout)
    raise typer.Exit(EXIT_FINDINGS if result.failed(threshold) else EXIT_OK)
