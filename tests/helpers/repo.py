"""Where things are: the repository root and the tests' data, whatever folder a test sits in."""

from __future__ import annotations

import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
"""The repository root (the folder holding fp8doctor/, tests/, docs/)."""
DATA = os.path.join(ROOT, "tests", "helpers", "data")


def repo_path(*parts: str) -> str:
    return os.path.join(ROOT, *parts)
