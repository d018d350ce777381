"""A progress bar on stderr for long scans; silent when stderr is not a terminal."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn


class BarProgress:
    """Implements fp8doctor.scanner.Progress with a rich bar (bytes of scales read)."""

    def __init__(self, label: str = "scanning") -> None:
        self.label = label
        self._progress: Progress | None = None
        self._task = None

    @staticmethod
    def wanted(quiet: bool = False) -> bool:
        return not quiet and sys.stderr.isatty()

    def start(self, total_bytes: int, files: int) -> None:
        self._progress = Progress(TextColumn(f"{self.label} {files} shards"), BarColumn(), DownloadColumn(),
                                  TimeRemainingColumn(), console=Console(file=sys.stderr, stderr=True),
                                  transient=True)
        self._progress.start()
        self._task = self._progress.add_task(self.label, total=total_bytes)

    def advance(self, nbytes: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, nbytes)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
