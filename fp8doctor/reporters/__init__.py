"""Report renderers: one module per format, each exposing `render_report(report, ctx) -> str`.

`FORMATS` maps a `--format` name to its module; adding a format is one new file plus one line here.
Modules are imported lazily so a JSON run never loads rich tables.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
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


@dataclass(frozen=True)
class RenderContext:
    """What a renderer needs beyond the Report: how the run was configured and where files live.

    `source_root` is the directory artifact paths are made relative to (the git toplevel holding
    the checkpoint, else the current directory); `checkpoint_root` is the directory finding files
    are relative to. `suppressed` counts findings the baseline hid; `rules` the rule ids that ran.
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
    exit_code: int | None = None
    configuration: dict[str, Any] | None = None

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


def renderer(name: str) -> Renderer:
    """The render function of format `name` (KeyError for an unknown name)."""
    return importlib.import_module(FORMATS[name]).render_report  # type: ignore[no-any-return]


__all__ = ["FORMATS", "RenderContext", "Renderer", "renderer"]
