"""Prompt Ctrl-C: a shared stop flag for worker threads, and a test-only hold point.

A scan's worker threads cannot receive KeyboardInterrupt (Python delivers signals to the main
thread only). The main thread sets `Stop` when it is interrupted; workers call `Stop.check()`
between reads and give up. The CLI prints "interrupted" and exits 130 (cli/app.py).

`hold(name, stop)` blocks a running command at a named point once `FP8DOCTOR_TEST_HOLD` names it,
after creating the file `FP8DOCTOR_TEST_HOLD_READY`: a test waits for that file, then sends SIGINT,
with no sleep and no race. Inert unless the variable is set.
"""

from __future__ import annotations

import os
import threading

HOLD_ENV = "FP8DOCTOR_TEST_HOLD"
READY_ENV = "FP8DOCTOR_TEST_HOLD_READY"

HOLD_POINTS = (
    "scan-file",  # a scan worker, before its first read of a shard
    "dump-tensor",  # dump, before reading a tensor's bytes
    "verify-layer",  # verify, before running the layer
)


class Cancelled(Exception):
    """Raised in a worker thread once the main thread asked everyone to stop."""


class Stop:
    """A stop flag shared by the main thread and the workers of one run."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled

    def wait(self) -> None:
        """Block until set; in the main thread Ctrl-C still interrupts the wait."""
        while not self._event.wait(0.05):
            pass


def hold(name: str, stop: Stop | None = None) -> None:
    """Tests only: block here (until `stop` is set, or forever) when FP8DOCTOR_TEST_HOLD == name."""
    if os.environ.get(HOLD_ENV) != name:
        return
    ready = os.environ.get(READY_ENV)
    if ready:
        with open(ready, "w", encoding="utf-8") as fh:
            fh.write(str(os.getpid()))
    (stop or Stop()).wait()
    if stop is not None:
        stop.check()
