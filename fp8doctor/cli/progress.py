"""A progress bar on stderr for long scans; silent when stderr is not a terminal, and held back
for the first `delay` seconds so quick scans never flash a bar."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn


class BarProgress:
    """Implements fp8doctor.scanner.Progress with a rich bar (bytes of scales read)."""

    def __init__(self, label: str = "scanning", delay: float = 0.5, file: TextIO | None = None) -> None:
        self.label = label
        self.delay = delay
        self.file = file
        self._progress: Progress | None = None
        self._task = None
        self._t0 = 0.0
        self._total = 0
        self._files = 0
        self._done = 0
        self._started = False

    @staticmethod
    def wanted(quiet: bool = False) -> bool:
        return not quiet and sys.stderr.isatty()

    def start(self, total_bytes: int, files: int) -> None:
        self._t0, self._total, self._files, self._done = time.monotonic(), total_bytes, files, 0
        self._started = True
        if self.delay <= 0:
            self._show()

    def _show(self) -> None:
        console = Console(file=self.file or sys.stderr, stderr=self.file is None)
        self._progress = Progress(TextColumn(f"{self.label} {self._files} shards"), BarColumn(), DownloadColumn(),
                                  TimeRemainingColumn(), console=console, transient=True)
        self._progress.start()
        self._task = self._progress.add_task(self.label, total=self._total, completed=self._done)

    def advance(self, nbytes: int) -> None:
        self._done += nbytes
        if self._progress is None and self._started and time.monotonic() - self._t0 >= self.delay:
            self._show()
        elif self._progress is not None:
            self._progress.advance(self._task, nbytes)

    @property
    def shown(self) -> bool:
        return self._progress is not None

    def finish(self) -> None:
        self._started = False
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
