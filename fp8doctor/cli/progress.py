"""A progress bar on stderr for long scans (shards and bytes); silent when stderr is not a terminal,
and held back for the first `delay` seconds so quick scans never flash a bar."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

SHOW_AFTER = 1.0
"""Seconds before the bar appears: a quick scan prints nothing."""


class BarProgress:
    """Implements fp8doctor.scanner.Progress with a rich bar. Called from the scan's worker threads."""

    def __init__(self, label: str = "scanning", delay: float = SHOW_AFTER, file: TextIO | None = None) -> None:
        self.label = label
        self.delay = delay
        self.file = file
        self._progress: Progress | None = None
        self._task: Any = None
        self._lock = threading.Lock()
        self._t0 = 0.0
        self._started = False
        self._total = self._done = self._files = self._files_done = 0

    @staticmethod
    def wanted(quiet: bool = False) -> bool:
        return not quiet and sys.stderr.isatty()

    def start(self, total_bytes: int, files: int) -> None:
        with self._lock:
            self._t0, self._started = time.monotonic(), True
            self._total, self._files, self._done, self._files_done = total_bytes, files, 0, 0
            self._update()

    def _describe(self) -> str:
        return f"{self.label} {self._files_done}/{self._files} shards"

    def _update(self) -> None:
        if self._progress is None:
            if not self._started or time.monotonic() - self._t0 < self.delay:
                return
            console = Console(file=self.file or sys.stderr, stderr=self.file is None)
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                      TimeRemainingColumn(), console=console, transient=True)
            self._progress.start()
            self._task = self._progress.add_task(self._describe(), total=self._total)
        self._progress.update(self._task, completed=self._done, description=self._describe())

    def advance(self, nbytes: int) -> None:
        with self._lock:
            self._done += nbytes
            self._update()

    def file_done(self) -> None:
        with self._lock:
            self._files_done += 1
            self._update()

    @property
    def shown(self) -> bool:
        return self._progress is not None

    def finish(self) -> None:
        with self._lock:
            self._started = False
            if self._progress is not None:
                self._progress.stop()
                self._progress = None
