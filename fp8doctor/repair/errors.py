"""Errors that stop a fix before or while it writes. All map to exit code 2 with one line."""

from __future__ import annotations

from fp8doctor.errors import Fp8DoctorError


class FixError(Fp8DoctorError):
    """The fix could not run; every file is as it was unless the message says otherwise."""


class LockHeld(FixError):
    """Another fix holds the checkpoint's lock."""


class ShardChanged(FixError):
    """A shard's size, mtime or bytes differ from what the plan was built on."""


class ReadOnly(FixError):
    """A shard or the journal directory cannot be written."""


class DiskFull(FixError):
    """No space left while writing the journal or a copy."""


class JournalError(FixError):
    """A journal is damaged, or disagrees with the checkpoint it describes."""
