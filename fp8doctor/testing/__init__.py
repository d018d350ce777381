"""Helpers for testing with fp8doctor, not used by its commands: `assert_scales_clean` checks a
model's (or a dict of tensors') scales in memory and fails with the findings as text, for engine
test suites; `fp8doctor.testing.synth` builds small synthetic checkpoints of every supported
convention (the tests, examples, benchmarks and fuzzer use it; users may build fixtures with it)."""

from __future__ import annotations

from fp8doctor.testing.asserts import assert_scales_clean, findings_text

__all__ = ["assert_scales_clean", "findings_text"]
