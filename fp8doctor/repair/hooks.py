"""Test-only hooks: kill the process at a named write point, or after its N-th write (so a random
kill lands inside the write window by count, never by wall-clock timing), and a call-back right
before a shard is opened for writing (to swap it there, deterministically). All are inert unless a
test sets their environment variable or replaces the function."""

from __future__ import annotations

import os
import signal

CRASH_ENV = "FP8DOCTOR_TEST_CRASH_AT"
KILL_AFTER_ENV = "FP8DOCTOR_TEST_KILL_AFTER_WRITES"

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


_writes = 0


def count_write() -> None:
    """Count one write (journal or shard); SIGKILL this process at the N-th when
    FP8DOCTOR_TEST_KILL_AFTER_WRITES is N (tests only)."""
    global _writes
    limit = os.environ.get(KILL_AFTER_ENV)
    if limit:
        _writes += 1
        if _writes >= int(limit):
            os.kill(os.getpid(), signal.SIGKILL)


def before_shard_open(root: str, file: str) -> None:
    """Called right before fix opens a shard for writing (tests replace it to swap the shard in that
    window, deterministically); does nothing otherwise."""
