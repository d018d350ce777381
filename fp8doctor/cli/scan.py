"""`fp8doctor scan`: the read-only check (the CI step).

Reports: `--format`/`--output` are repeatable and paired by position (the i-th --output receives the
i-th --format; a format without an output, or with `-`, goes to stdout, and at most one may). When
any report goes to a file, the console report goes to stderr so a CI log still shows the verdict.
"""

from __future__ import annotations

import dataclasses
import enum
import sys
from collections.abc import Iterable, Sequence
from typing import Annotated

import typer

from fp8doctor.cli.options import (
    ConfigOpt,
    IgnoreOpt,
    IsolatedOpt,
    LayoutOpt,
    NoColorOpt,
    PathsArg,
    QuietOpt,
    SelectOpt,
)
from fp8doctor.cli.output import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, fail, no_color, stderr_console, stdout_console
from fp8doctor.reporters import FORMATS

ScanFormat = enum.Enum("ScanFormat", {name: name for name in FORMATS}, type=str)  # type: ignore[misc]
"""`--format` choices, straight from the renderer registry."""

STDOUT = "-"


def build_options(fill: str | None, select: list[str] | None, ignore: list[str] | None, layout: list[str] | None):
    """ScanOptions from command-line strings (fill None: zero, not asked for); ValueError carries a
    one-line message."""
    from fp8doctor.layouts.model import LayoutOverride, parse_fill
    from fp8doctor.scanner import ScanOptions

    return ScanOptions(fill=parse_fill(fill or "zero"), fill_explicit=fill is not None, select=tuple(select or ()),
                       ignore=tuple(ignore or ()),
                       overrides=tuple(LayoutOverride.parse(x) for x in layout or ()))


def pair_outputs(formats: list[str], outputs: list[str]) -> list[tuple[str, str]]:
    """(format, destination) pairs; destination `-` is stdout. ValueError on a bad combination.

    The i-th --output takes the i-th --format; an --output beyond the formats given takes the format
    its extension names (.json, .sarif, .xml, .md), and one with any other extension is refused: a
    report is never written in a format its name does not say."""
    from fp8doctor.reporters import EXTENSIONS, format_for

    formats = list(formats)
    for dest in outputs[len(formats):]:
        inferred = "console" if dest == STDOUT else format_for(dest)
        if inferred is None:
            known = ", ".join(f"{ext} ({fmt})" for ext, fmt in EXTENSIONS.items())
            raise ValueError(f"cannot tell the report format of --output {dest} from its extension: add "
                             f"--format (known extensions: {known})")
        formats.append(inferred)
    formats = formats or ["console"]
    pairs = [(fmt, outputs[i] if i < len(outputs) else STDOUT) for i, fmt in enumerate(formats)]
    if sum(1 for _, dest in pairs if dest == STDOUT) > 1:
        raise ValueError("more than one report would go to stdout: give all but one --format an --output FILE")
    files = [dest for _, dest in pairs if dest != STDOUT]
    if len(set(files)) != len(files):
        raise ValueError("two reports would be written to the same --output file")
    return pairs


def _write(dest: str, text: Iterable[str | bytes], checkpoint_paths: Sequence[str]) -> None:
    """Write a report file; one inside any scanned checkpoint that leads out through its links is refused."""
    from fp8doctor.checkpoint.target import Target
    from fp8doctor.userfiles import write_file

    local = [Target.parse(p).local_dir for p in checkpoint_paths]  # None for a URL
    write_file(dest, text, [d for d in local if d is not None])


def scan_command(
    paths: PathsArg,
    format: Annotated[list[ScanFormat] | None, typer.Option(  # type: ignore[valid-type]
        "--format", "-f", help="Report format (repeatable; pairs with --output in order). "
        "Default: console, or for an --output FILE the format its extension names.", show_default=False)] = None,
    output: Annotated[list[str] | None, typer.Option(
        "--output", "-o", help="Write the report of the matching --format to FILE ('-' = stdout); the console "
        "report then goes to stderr. Without its --format, FILE's extension decides: .json, .sarif, .xml "
        "(JUnit), .md; others are refused. Repeatable.", show_default=False)] = None,
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
    """Check every scale tensor of one or more checkpoints; read-only. Exit 0 clean, 1 findings, 2 could
    not run (several checkpoints: the worst of theirs)."""
    from fp8doctor import __version__
    from fp8doctor.checkpoint.discover import expand_targets

    try:
        pairs = pair_outputs([f.value for f in format or ()], list(output or ()))
    except ValueError as e:
        raise typer.Exit(fail(str(e))) from None
    targets = expand_targets(list(paths))
    if len(targets) > 1 and (baseline is not None or write_baseline is not None):
        raise typer.Exit(fail(f"--baseline and --write-baseline work on one checkpoint at a time; "
                              f"{len(targets)} were given"))
    if write_baseline is not None and baseline is not None:
        raise typer.Exit(fail("--baseline and --write-baseline together: write the baseline from a full scan"))
    color = not no_color(no_color_flag)
    options = dict(config=config, isolated=isolated, fill=fill, select=select, ignore=ignore, layout=layout,
                   fail_on=fail_on, baseline=baseline, write_baseline=write_baseline, max_findings=max_findings,
                   quiet=quiet, color=color, version=__version__)
    if len(targets) == 1:
        try:
            done = _scan_target(targets[0], **options)
        except _TargetError as e:
            raise typer.Exit(fail(str(e))) from None
        _report_one(done, pairs, color, write_baseline, targets[0])
    _report_many([_scan_or_error(t, options) for t in targets], pairs, color)


class _TargetError(Exception):
    """This checkpoint could not be scanned (exit 2): one line."""


def _scan_target(path: str, *, config, isolated, fill, select, ignore, layout, fail_on, baseline, write_baseline,
                 max_findings, quiet, color, version):
    """Scan one checkpoint with its configuration (fp8doctor.api.run_scan): (Report, RenderContext).
    _TargetError if it cannot."""
    from fp8doctor.api import run_scan
    from fp8doctor.checkpoint.target import Target
    from fp8doctor.cli.progress import BarProgress
    from fp8doctor.config_file import ConfigError, FileConfig, load_for, settings
    from fp8doctor.errors import Fp8DoctorError
    from fp8doctor.reporters import RenderContext

    target = Target.parse(path)
    try:
        # no discovery for a missing path: the scanner says it is missing, in one line
        cfg = load_for(path, config, isolated) if config is not None or target.exists else FileConfig()
        run = settings(cfg, fill=fill, select=select, ignore=ignore, layout=layout, fail_on=fail_on,
                       baseline=baseline)
    except (ConfigError, ValueError) as e:
        raise _TargetError(str(e)) from None

    progress = BarProgress() if BarProgress.wanted(quiet) else None
    try:
        done = run_scan(path, run, progress, write_to=write_baseline, version=version)
    except Fp8DoctorError as e:  # CheckpointError, BaselineError: one line
        raise _TargetError(str(e)) from None
    finally:
        if progress is not None:
            progress.finish()
    report = done.report
    if done.baseline_written is not None:
        stderr_console(color).print(baseline_note(report, done.baseline_written, write_baseline, path),
                                    markup=False, soft_wrap=True)
    ctx = RenderContext(version=version, fail_on=run.fail_on, max_findings=max_findings, quiet=quiet,
                        color=color, source_root=target.source_root(), checkpoint_root=target.display_root,
                        baseline=done.baseline, suppressed=done.baseline_suppressed, rules=run.options.active_rules(),
                        config=run.config_path, suppressed_by_rule=dict(done.suppressed_by_rule),
                        exit_code=done.exit_code, configuration=run.describe())
    return report, ctx


def _scan_or_error(path: str, options: dict):
    from fp8doctor.reporters import TargetResult

    try:
        report, ctx = _scan_target(path, **options)
    except _TargetError as e:
        fail(str(e))  # said at once, and again in every report
        return TargetResult(path, None, None, str(e))
    return TargetResult(path, report, ctx, None)


def _report_one(done, pairs: list[tuple[str, str]], color: bool, write_baseline: str | None, target: str) -> None:
    """One checkpoint's reports, each through its presenter (reporters/presenters.py); exits."""
    report, ctx = done
    to_file = False
    for fmt, dest in pairs:
        if write_baseline is not None and fmt == "console":
            continue  # the note above says what was recorded; these are accepted, not failures
        _present("scan", fmt, dest, report, ctx, color, [target])
        to_file = to_file or dest != STDOUT
    if to_file and write_baseline is None and not any(fmt == "console" and dest == STDOUT for fmt, dest in pairs):
        _show("scan", report, ctx, stderr_console(color=color))
    raise typer.Exit(ctx.exit_code)


def _report_many(results, pairs: list[tuple[str, str]], color: bool) -> None:
    """Several checkpoints: per-checkpoint console sections and one document per format (README,
    "Several checkpoints"); exit 2 if any could not be scanned, else 1 if any failed, else 0."""
    from fp8doctor.reporters import RenderContext

    ctx = RenderContext(color=color)
    for fmt, dest in pairs:
        _present("scan-many", fmt, dest, results, ctx, color, [r.target for r in results])
    if any(dest != STDOUT for _, dest in pairs) and not any(fmt == "console" and dest == STDOUT
                                                            for fmt, dest in pairs):
        _show("scan-many", results, ctx, stderr_console(color=color))
    if any(r.error is not None for r in results):
        raise typer.Exit(EXIT_ERROR)
    raise typer.Exit(EXIT_FINDINGS if any(r.failed for r in results) else EXIT_OK)


def _show(kind: str, result, ctx, console) -> None:
    """The console view of `result` on `console`."""
    from fp8doctor.reporters.presenters import present

    for _ in present(kind, "console", result, ctx, console):
        pass


def _present(kind: str, fmt: str, dest: str, result, ctx, color: bool, checkpoint_paths: Sequence[str]) -> None:
    """One report: the console view drawn on stdout, any other format (or a console report for a
    file) streamed to stdout or written to its file."""
    from fp8doctor.reporters.presenters import emit, present

    if dest == STDOUT:
        console = stdout_console(color=color) if fmt == "console" else None
        emit(kind, fmt, result, dataclasses.replace(ctx, color=color and fmt == "console"), console, sys.stdout)
        return
    pieces = present(kind, fmt, result, dataclasses.replace(ctx, color=False), None)
    try:
        _write(dest, pieces, checkpoint_paths)
    except OSError as e:
        raise typer.Exit(fail(f"{dest}: cannot write the {fmt} report ({e.strerror or e})")) from None


def baseline_note(report, recorded: int, dest: str, target: str) -> str:
    """What --write-baseline recorded, by rule, and how to use it (not a failure report)."""
    from fp8doctor.reporters.common import plural

    s = report.stats
    rules = ", ".join(f"{rule} x{n}" for rule, n in report.by_rule().items())
    return (f"wrote {plural(recorded, 'finding')} to baseline {dest}" + (f" ({rules})" if rules else "")
            + f", from {plural(s.scale_tensors_checked, 'scale tensor')} of {plural(s.files, 'file')}; "
            f"`fp8doctor scan {target} --baseline {dest}` now reports only new or changed findings")


__all__ = ["EXIT_ERROR", "ScanFormat", "build_options", "pair_outputs", "scan_command"]
