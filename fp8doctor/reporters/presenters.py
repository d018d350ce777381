"""Presenters: how each command's result is shown, one registry and one signature for all of them.

    present(result, ctx: RenderContext, console: Console | None) -> Iterator[str | bytes]

A presenter yields the pieces of a machine-readable document (written to stdout or a file as they
come, so 10^5 findings stream) or prints a view on `console` and yields nothing; given no console
(the destination is a file), a view yields its plain text instead. `PRESENTERS[kind]
[format]` names it, for kind "scan" (a Report), "scan-many" (a list of reporters.TargetResult, one per
checkpoint: the ctx argument is unused, each result carries its own), "dump" (dumper.TensorStreams), "fix" (a FixResult)
and "verify" (a VerifyResult). The format modules hold the rendering; this module only says which
one a (kind, format) uses and how the RenderContext's fields reach it. Modules are imported when a
presenter runs, so `--format json` never loads rich tables and `fp8doctor --help` no numpy.
"""

from __future__ import annotations

import importlib
import io
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console

from fp8doctor.reporters import FORMATS, RenderContext, chunks, many_renderer

Piece = str | bytes
Presenter = Callable[[Any, RenderContext, Console | None], Iterator[Piece]]


def _module(name: str) -> Any:
    return importlib.import_module(f"fp8doctor.reporters.{name}")


def _view(console: Console | None, draw: Callable[[Console], None]) -> Iterator[Piece]:
    """Draw a console view on `console`; with none, yield its plain text (a file)."""
    if console is not None:
        draw(console)
        return
    buf = io.StringIO()
    draw(Console(file=buf, no_color=True, highlight=False, soft_wrap=False, width=120))
    yield buf.getvalue()


def _scan_console(report: Any, ctx: RenderContext, console: Console | None) -> Iterator[Piece]:
    if console is None:
        yield from chunks("console", report, ctx)
        return
    _module("console").render(report, console, ctx.max_findings, ctx.quiet, ctx.fail_on, ctx.suppressed,
                              ctx.config, ctx.config_suppressed)
    yield from ()


def _scan_format(fmt: str) -> Presenter:
    def present(report: Any, ctx: RenderContext, console: Console | None) -> Iterator[Piece]:
        yield from chunks(fmt, report, ctx)

    return present


def _many_console(results: Any, ctx: RenderContext, console: Console | None) -> Iterator[Piece]:
    yield from _view(console, lambda c: _module("console").render_many(results, c))


def _many_format(fmt: str) -> Presenter:
    def present(results: Any, ctx: RenderContext, console: Console | None) -> Iterator[Piece]:
        yield many_renderer(fmt)(results)

    return present


def _dump_console(streams: Any, ctx: RenderContext, console: Console | None) -> Iterator[Piece]:
    if ctx.views == ("histogram",):  # counted piece by piece: nothing held but a piece and the bins
        hist = _module("dump_histogram")
        items = []
        for s in streams:  # one pass: the preview's summary (the header) and the bins together
            counter = hist.BinCounter()
            items.append((s.preview(1, each=counter.add), counter.bins()))
        yield from _view(console, lambda c: hist.render_streamed(items, c))
        return
    if not ctx.views and ctx.max_rows is not None:  # a capped grid: only the rows it shows are held
        grid = _module("dump_grid")
        width = grid.value_width if ctx.decode else None
        dumps = [s.preview(ctx.max_rows, width) for s in streams]
    else:  # every row of the grid, and the heatmap, see each selection whole
        dumps = [s.whole() for s in streams]

    def draw(c: Console) -> None:
        if "heatmap" in ctx.views:
            _module("dump_heatmap").render(dumps, c)
        if "histogram" in ctx.views:
            if "heatmap" in ctx.views:
                c.print()
            _module("dump_histogram").render(dumps, c)
        if "heatmap" not in ctx.views and "histogram" not in ctx.views:
            _module("dump_grid").render(dumps, c, decode=ctx.decode, max_rows=ctx.max_rows)

    yield from _view(console, draw)


def _dump_json(streams: Any, ctx: RenderContext, console: Console | None) -> Iterator[Piece]:
    yield from _module("dump_json").stream(streams, ctx.target, ctx.version)


def _dump_raw(streams: Any, ctx: RenderContext, console: Console | None) -> Iterator[Piece]:
    for s in streams:  # no rule runs: raw is the bytes, one bounded piece of rows at a time
        for piece in s.pieces(marks=False):
            yield piece.selected_bytes()


def _fix_console(result: Any, ctx: RenderContext, console: Console | None) -> Iterator[Piece]:
    yield from _view(console, lambda c: _module("fix_console").render(result, c, ctx.max_findings, ctx.quiet,
                                                                      ctx.fail_on))


def _fix_json(result: Any, ctx: RenderContext, console: Console | None) -> Iterator[Piece]:
    yield _module("fix_json").render(result, ctx.version)


def _verify_console(result: Any, ctx: RenderContext, console: Console | None) -> Iterator[Piece]:
    yield from _view(console, lambda c: _module("verify").render_console(result, c, ctx.quiet))


def _verify_json(result: Any, ctx: RenderContext, console: Console | None) -> Iterator[Piece]:
    yield _module("verify").render_json(result, ctx.version)


PRESENTERS: dict[str, dict[str, Presenter]] = {
    "scan": {name: _scan_console if name == "console" else _scan_format(name) for name in FORMATS},
    "scan-many": {name: _many_console if name == "console" else _many_format(name) for name in FORMATS},
    "dump": {"console": _dump_console, "json": _dump_json, "raw": _dump_raw},
    "fix": {"console": _fix_console, "json": _fix_json},
    "verify": {"console": _verify_console, "json": _verify_json},
}
"""result kind -> format -> presenter. A new format of a kind is one presenter and one line here
(a new scan format is one module listed in reporters.FORMATS)."""


def present(kind: str, fmt: str, result: Any, ctx: RenderContext, console: Console | None) -> Iterator[Piece]:
    """The pieces of `result` in format `fmt` (KeyError for an unknown kind or format)."""
    return PRESENTERS[kind][fmt](result, ctx, console)


def emit(kind: str, fmt: str, result: Any, ctx: RenderContext, console: Console | None, out: Any) -> None:
    """Present `result` and write its pieces to the text stream `out` (bytes to `out.buffer`)."""
    wrote = False
    for piece in present(kind, fmt, result, ctx, console):
        if isinstance(piece, bytes):
            out.buffer.write(piece)
        else:
            out.write(piece)
        wrote = True
    if wrote:
        out.flush()


__all__ = ["PRESENTERS", "Presenter", "emit", "present"]
