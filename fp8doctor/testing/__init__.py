"""Helpers for test suites that use fp8doctor: `assert_scales_clean` checks a model's (or a dict
of tensors') scales in memory and fails with the findings as text."""

from __future__ import annotations

from fp8doctor.testing.asserts import assert_scales_clean, findings_text

__all__ = ["assert_scales_clean", "findings_text"]
