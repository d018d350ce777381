"""The scan verb with its policy: what `fp8doctor scan` does between parsing flags and presenting.

`run_scan(path, settings)` runs the pipeline (fp8doctor.scanner) with every rule, then applies the
configuration's select/ignore and per-tensor ignores, writes or applies a baseline (hashes computed
in the same pass), and says what it hid and which exit code the result means. The CLI parses
flags into `Settings` (fp8doctor.config_file.settings) and presents the `ScanRun`; the library's
`fp8doctor.scan()` is `scan` here, which returns the filtered Report.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from dataclasses import dataclass, field

from fp8doctor.baseline import apply_baseline, write_baseline
from fp8doctor.checkpoint.target import Target
from fp8doctor.config_file import FileConfig, Settings, load_config, settings
from fp8doctor.errors import EXIT_FINDINGS, EXIT_OK
from fp8doctor.findings import Report
from fp8doctor.scanner import Progress, ScanOptions
from fp8doctor.scanner import scan as pipeline


@dataclass(frozen=True)
class ScanRun:
    """A scan after policy: the report as presented, and what the policy did to it."""

    report: Report
    settings: Settings
    suppressed_by_rule: Counter[str] = field(default_factory=Counter)
    """Findings hidden, by rule: select/ignore, per-tensor ignores, the baseline."""
    baseline: str | None = None
    """The baseline file applied (None when none was, or one was written)."""
    baseline_suppressed: int = 0
    baseline_written: int | None = None
    """Findings recorded in the baseline written (None: none written)."""

    @property
    def exit_code(self) -> int:
        failed = self.baseline_written is None and self.report.failed(self.settings.fail_on)
        return EXIT_FINDINGS if failed else EXIT_OK


def run_scan(path: str | os.PathLike[str], run: Settings, progress: Progress | None = None, *,
             write_to: str | None = None, version: str = "") -> ScanRun:
    """Scan with every rule, then apply `run`'s policy (see the module docstring). `write_to`: record
    the kept findings as a baseline there (then no baseline is applied). Raises CheckpointError or
    BaselineError (one line, exit code 2)."""
    path = os.fspath(path)
    baseline_file = run.baseline if write_to is None else None
    # every finding, then select/ignore here, so the report can count what they suppressed
    report = pipeline(path, dataclasses.replace(run.options, select=(), ignore=()), progress=progress,
                      hashes=write_to is not None or baseline_file is not None)
    kept, hidden = run.apply(report.findings)
    report = dataclasses.replace(report, findings=kept)
    # never written through a link of the (local) checkpoint that leads outside it
    checkpoint_dir = Target.parse(path).local_dir
    written = write_baseline(write_to, report, version, checkpoint_dir) if write_to is not None else None
    suppressed = 0
    if baseline_file is not None:
        before = Counter(f.rule for f in report.findings)
        report, suppressed = apply_baseline(report, baseline_file)
        hidden.update(before - Counter(f.rule for f in report.findings))
    return ScanRun(report, run, hidden, baseline_file, suppressed, written)


def scan(path: str | os.PathLike[str], options: ScanOptions | None = None, progress: Progress | None = None,
         *, config: str | None = None, baseline: str | None = None) -> Report:
    """Scan the checkpoint at `path` and return a Report. Raises CheckpointError (exit code 2) only
    when `path` cannot be a checkpoint at all; every problem inside one is a finding.

    As the CLI does: `config` (an fp8doctor.toml or pyproject.toml) supplies the options when
    `options` is None, and its per-tensor ignores and baseline always apply; `baseline` (a file
    written by `--write-baseline`) hides the findings it accepts. Without either, the findings are
    those `options` selects. No configuration is discovered implicitly (the CLI's cwd search is
    a command-line convenience, not a library default)."""
    if config is None and baseline is None:
        return pipeline(path, options, progress)
    cfg = load_config(config) if config is not None else FileConfig()
    run = settings(cfg, baseline=baseline)
    if options is not None:
        run = dataclasses.replace(run, options=options)
    return run_scan(path, run, progress).report


__all__ = ["ScanRun", "run_scan", "scan"]
