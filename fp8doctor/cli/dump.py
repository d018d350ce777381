"""`fp8doctor dump`: the raw bytes of scale tensors as they sit on disk, marked and decoded."""

from __future__ import annotations

import enum
import sys
from typing import Annotated

import typer

from fp8doctor.cli.options import ConfigOpt, IsolatedOpt, LayoutOpt, NoColorOpt, PathArg
from fp8doctor.cli.output import EXIT_OK, fail, no_color, stderr_console, stdout_console


class DumpFormat(str, enum.Enum):
    console = "console"
    json = "json"
    raw = "raw"


class DumpRegion(str, enum.Enum):
    all = "all"
    logical = "logical"
    padding = "padding"


def dump_command(
    path: PathArg,
    tensor: Annotated[list[str] | None, typer.Option(
        "--tensor", "-t", help="Scale tensor to dump: an exact name or a glob such as 'layers.*.attn.wkv.scale' "
        "(repeatable).")] = None,
    findings: Annotated[bool, typer.Option("--findings", help="Dump every scale tensor the scan flags (runs a full "
                                           "scan first).")] = False,
    region: Annotated[DumpRegion, typer.Option("--region", help="Entries to show: all, logical (real) or padding.")
                      ] = DumpRegion.all,
    rows: Annotated[str | None, typer.Option(
        "--rows", help="Rows to show, half-open like a Python slice: 3:8, 5, :8, 3:, -2:. A row is one index of the "
        "second-to-last axis (the last axis is the columns); tensors of rank 3 or more have their leading axes "
        "flattened, so row r of [E, N, G] is expert r // N, row r % N. A 1-D tensor is one row.",
        show_default=False)] = None,
    all_rows: Annotated[bool, typer.Option("--all", help="Show every row in the grid (default: the first 64 "
                                           "selected rows of each tensor, then how many more there are).")] = False,
    decode: Annotated[bool, typer.Option("--decode", help="Show each entry's value: 2^(b-127) for E8M0 (ff = NaN, "
                                         "00 = 2^-127, the zero stand-in); floats, and whether each is an exact power "
                                         "of two, for F32/BF16/F16 scales.")] = False,
    heatmap: Annotated[bool, typer.Option("--heatmap", help="A picture of each tensor instead of the grid: colour = "
                                          "exponent, downsampled to the terminal.")] = False,
    histogram: Annotated[bool, typer.Option("--histogram", help="The distribution of exponents of each tensor "
                                            "(real and padded apart) instead of the grid.")] = False,
    format: Annotated[DumpFormat, typer.Option("--format", "-f", help="console (the grid), json (hex + offsets), or "
                                               "raw (the selected bytes, unchanged, for xxd/cmp).")
                      ] = DumpFormat.console,
    fill: Annotated[str | None, typer.Option(
        "--fill", help="Byte padded entries must hold: zero (0x00), one (0x7F), or 0xNN. Default: zero (or the "
        "configuration's).", show_default=False)] = None,
    layout: LayoutOpt = None,
    config: ConfigOpt = None,
    isolated: IsolatedOpt = False,
    no_color_flag: NoColorOpt = False,
) -> None:
    """Show the raw bytes of scale tensors, where they are, and what they mean. Exit 0 dumped, 2 could not."""
    from fp8doctor import __version__
    from fp8doctor.config_file import load_for, settings
    from fp8doctor.dumper import DumpOptions, RowRange, dump_streams
    from fp8doctor.errors import Fp8DoctorError
    from fp8doctor.reporters import RenderContext
    from fp8doctor.reporters.presenters import emit

    if format is not DumpFormat.console and (heatmap or histogram or decode):
        flag = "--heatmap" if heatmap else "--histogram" if histogram else "--decode"
        raise typer.Exit(fail(f"{flag} is a console view; drop it or use --format console"))
    try:
        # the same configuration as scan (layout overrides and fill decide what is padding)
        scan_options = settings(load_for(path, config, isolated), fill=fill, layout=layout).options
        options = DumpOptions(tensors=tuple(tensor or ()), findings=findings, region=region.value,
                              rows=RowRange.parse(rows) if rows is not None else None, scan=scan_options,
                              marks=format is not DumpFormat.raw)
        color = not no_color(no_color_flag)
        views = tuple(v for v, on in (("heatmap", heatmap), ("histogram", histogram)) if on)
        cap = None if all_rows or rows is not None else 64  # dump_grid.MAX_ROWS
        ctx = RenderContext(version=__version__, color=color, target=path, views=views, decode=decode, max_rows=cap)
        with dump_streams(path, options) as streams:  # raw and JSON stream one bounded piece of rows at a time
            if format is DumpFormat.console and not streams:
                stderr_console(color=color).print("no finding names a scale tensor: nothing to dump")
                raise typer.Exit(EXIT_OK)
            emit("dump", format.value, streams, ctx, stdout_console(color=color), sys.stdout)
    except Fp8DoctorError as e:  # CheckpointError, ConfigError, DumpError: one line
        raise typer.Exit(fail(str(e), e.exit_code)) from None
    except ValueError as e:
        raise typer.Exit(fail(str(e))) from None
    raise typer.Exit(EXIT_OK)
