"""The errors fp8doctor raises and the exit codes its commands return: the one table of both.

Every error a command can report on one line derives from `Fp8DoctorError` and says which exit
code it maps to. Exit codes are a public contract (docs/scan.md, "Exit codes"): never renumber one.
This module imports nothing (not torch, not numpy), so any layer may import it.
"""

from __future__ import annotations

EXIT_OK = 0
"""No finding at or above --fail-on (scan), repair done (fix), PASS (verify)."""
EXIT_FINDINGS = 1
"""Findings at or above --fail-on; unfixable problems left (fix); FAIL (verify)."""
EXIT_ERROR = 2
"""The command could not run: path missing, not a checkpoint, usage error, internal error."""
EXIT_INTERRUPTED = 130
"""Stopped by Ctrl-C (SIGINT): 128 + the signal's number, as shells report it."""

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "clean: no finding at or above --fail-on (scan), repair done (fix), PASS (verify)",
    EXIT_FINDINGS: "findings at or above --fail-on (scan), unfixable problems left (fix), FAIL (verify)",
    EXIT_ERROR: "could not run: path missing, not a checkpoint, bad option, or an error named on stderr",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C): stopped at the next safe point; fix as its journal allows",
}


class Fp8DoctorError(Exception):
    """Base of the errors fp8doctor reports as one line (never a traceback)."""

    exit_code: int = EXIT_ERROR


class CheckpointError(Fp8DoctorError):
    """The path cannot be scanned at all (missing, not a checkpoint). Maps to exit code 2."""


class VerifyError(Fp8DoctorError):
    """`verify` cannot run on this checkpoint (layer not found, weights not modelled, no torch)."""


__all__ = ["EXIT_CODES", "EXIT_ERROR", "EXIT_FINDINGS", "EXIT_INTERRUPTED", "EXIT_OK", "CheckpointError",
           "Fp8DoctorError", "VerifyError"]
