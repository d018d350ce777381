"""Report renderers: one module per format, each exposing `render_report(report, ctx) -> str`.

`FORMATS` maps a `--format` name to its module; adding a format is one new file plus one line here.
Modules are imported lazily so a JSON run never loads rich tables.
"""

from __future__ import annotations

import importlib
import json as _json  # plain `json` would be shadowed by the fp8doctor.reporters.json submodule
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from fp8doctor.findings import Report, Severity

FORMATS: dict[str, str] = {
    "console": "fp8doctor.reporters.console",
    "json": "fp8doctor.reporters.json",
    "sarif": "fp8doctor.reporters.sarif",
    "junit": "fp8doctor.reporters.junit",
    "github": "fp8doctor.reporters.github",
    "markdown": "fp8doctor.reporters.markdown",
}

EXTENSIONS: dict[str, str] = {".json": "json", ".sarif": "sarif", ".xml": "junit", ".md": "markdown"}
"""The format an `--output FILE` without its own `--format` gets, from FILE's extension."""


def format_for(dest: str) -> str | None:
    """The format EXTENSIONS gives a file name (case-insensitive), or None."""
    return EXTENSIONS.get(os.path.splitext(dest)[1].lower())


@dataclass(frozen=True)
class RenderContext:
    """What a renderer needs beyond the Report: how the run was configured and where files live.

    `source_root` is the directory artifact paths are made relative to (the git toplevel holding
    the checkpoint, else the current directory); `checkpoint_root` is the directory finding files
    are relative to. `suppressed` counts findings the baseline hid; `rules` the rule ids that ran;
    `config` names the configuration file used and `suppressed_by_rule` counts everything hidden.
    `exit_code` is the code the command exits with (None: not known, e.g. a library caller);
    `configuration` the settings the run used (`Settings.describe()`), where the caller has them.
    """

    version: str = ""
    fail_on: Severity = Severity.ERROR
    max_findings: int = 20
    quiet: bool = False
    color: bool = False
    source_root: str = "."
    checkpoint_root: str = "."
    baseline: str | None = None
    suppressed: int = 0
    rules: tuple[str, ...] = field(default_factory=tuple)
    config: str | None = None
    """The configuration file the run used (None: none, or --isolated)."""
    suppressed_by_rule: dict[str, int] = field(default_factory=dict)
    """Findings hidden by select/ignore, per-tensor ignores and the baseline, by rule."""

    exit_code: int | None = None
    configuration: dict[str, Any] | None = None

    @property
    def config_suppressed(self) -> int:
        """Findings hidden by the configuration and flags (the baseline's are `suppressed`)."""
        return sum(self.suppressed_by_rule.values()) - self.suppressed

    def artifact_path(self, file: str | None) -> tuple[str, bool]:
        """(path, inside): a checkpoint file's path relative to `source_root` with forward slashes
        when it lies inside it, else its absolute path (with `inside` False); for a remote checkpoint
        its URL."""
        if "://" in self.checkpoint_root:
            return (f"{self.checkpoint_root}/{file}" if file else self.checkpoint_root), False
        target = os.path.abspath(os.path.join(self.checkpoint_root, file) if file else self.checkpoint_root)
        root = os.path.abspath(self.source_root)
        rel = os.path.relpath(target, root)
        if rel == os.pardir or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
            return target.replace(os.sep, "/"), False
        return rel.replace(os.sep, "/"), True

Renderer = Callable[[Report, RenderContext], str]


@dataclass(frozen=True)
class TargetResult:
    """One checkpoint of a several-checkpoint scan: its report and context, or why it could not be
    scanned (`error`, exit 2)."""

    target: str
    report: Report | None
    ctx: RenderContext | None
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.report is not None and self.ctx is not None and self.report.failed(self.ctx.fail_on)


ManyRenderer = Callable[[list[TargetResult]], str]


def renderer(name: str) -> Renderer:
    """The render function of format `name` (KeyError for an unknown name)."""
    return importlib.import_module(FORMATS[name]).render_report  # type: ignore[no-any-return]


def many_renderer(name: str) -> ManyRenderer:
    """The several-checkpoint render function of format `name` (KeyError for an unknown name)."""
    return importlib.import_module(FORMATS[name]).render_many  # type: ignore[no-any-return]


def per_target(results: list[TargetResult], render: Renderer, could_not: Callable[[TargetResult], str]) -> list[str]:
    """Each checkpoint's single-checkpoint text, or `could_not(result)` for one that could not be scanned."""
    return [render(r.report, r.ctx) if r.report is not None and r.ctx is not None else could_not(r) for r in results]


def tool_version(results: list[TargetResult]) -> str:
    return next((r.ctx.version for r in results if r.ctx is not None), "")


def chunks(name: str, report: Report, ctx: RenderContext) -> Iterator[str]:
    """The report of format `name` as pieces of text to write one after the other: formats with many
    findings (JSON, SARIF) stream them (`render_chunks`), the others yield their whole text."""
    module = importlib.import_module(FORMATS[name])
    stream = getattr(module, "render_chunks", None)
    if stream is not None:
        yield from stream(report, ctx)
    else:
        yield module.render_report(report, ctx)


_SLOT = "\x00fp8doctor-stream-slot\x00"


def stream_json(document: dict[str, Any], items: Iterable[Any], indent: int = 2) -> Iterator[str]:
    """`document` rendered as json.dumps(indent=...) does, except that its one value equal to the
    placeholder SLOT becomes a JSON array of `items`, each encoded on its own line by the C encoder
    as it is reached: linear time, and memory for one item at a time, whatever their number."""
    text = _json.dumps(document, indent=indent, ensure_ascii=True)
    slot = _json.dumps(_SLOT, ensure_ascii=True)
    at = text.index(slot)
    line = text[text.rfind("\n", 0, at) + 1:at]
    pad = " " * (len(line) - len(line.lstrip(" ")) + indent)
    yield text[:at]
    first = True
    for item in items:
        yield ("[\n" if first else ",\n") + pad + _json.dumps(item, ensure_ascii=True)
        first = False
    yield ("[]" if first else "\n" + pad[:-indent] + "]") + text[at + len(slot):] + "\n"


SLOT = _SLOT
"""The placeholder value `stream_json` replaces with the streamed array."""


__all__ = ["EXTENSIONS", "FORMATS", "SLOT", "ManyRenderer", "RenderContext", "Renderer", "TargetResult", "chunks",
           "format_for", "many_renderer", "per_target", "renderer", "stream_json", "tool_version"]
