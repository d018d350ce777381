"""Test-only hooks: kill the process at a named write point, or slow writes down so a random kill
lands inside the write window. Both are inert unless their environment variable is set."""

from __future__ import annotations

import os
import signal
import time

CRASH_ENV = "FP8DOCTOR_TEST_CRASH_AT"
DELAY_ENV = "FP8DOCTOR_TEST_WRITE_DELAY"

CRASH_POINTS = (
    "journal-bin",      # journal's byte file written, its JSON not yet committed
    "journal-commit",   # journal committed, no shard byte written
    "partial-run",      # half of the first patch run written (a torn write)
    "first-shard",      # first shard patched and fsynced, others not
    "after-patch",      # every shard patched and fsynced, not yet verified
    "after-verify",     # verified, journal not yet marked done
    "done-tmp",         # done-state journal written to its temp file, not renamed
    "after-done",       # journal marked done, lock not yet released
    "undo-marked",      # undo: journal marked undoing, nothing restored
    "undo-partial",     # undo: half of the first run restored
    "undo-first-shard", # undo: first shard restored, others not
)


def crash_point(name: str) -> None:
    """SIGKILL this process when FP8DOCTOR_TEST_CRASH_AT names this point (tests only)."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def write_delay() -> None:
    """Sleep FP8DOCTOR_TEST_WRITE_DELAY seconds (tests only: widens the window for random kills)."""
    delay = os.environ.get(DELAY_ENV)
    if delay:
        time.sleep(float(delay))


def before_shard_open(root: str, file: str) -> None:
    """Called right before fix opens a shard for writing (tests replace it to swap the shard in that
    window, deterministically); does nothing otherwise."""
