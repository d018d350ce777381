"""The one place the in-memory checks reach into the scan: the judge of one scale tensor's bytes
given its layout, and the histogram tally that decides a clean tensor. Everything else (rules,
messages, pairing) is the scan's own code, so `check_tensors` and `scan` cannot drift apart."""

from __future__ import annotations

from fp8doctor.scanner import _check_one as judge_scale
from fp8doctor.scanner import _tally as new_tally

__all__ = ["judge_scale", "new_tally"]
