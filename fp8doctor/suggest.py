"""Did-you-mean hints for mistyped names (rule ids, tensor names): one wording everywhere."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def close_matches(word: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """The choices `word` most likely meant: those it is a prefix of first, then near spellings."""
    pool = list(choices)
    prefixed = [c for c in pool if c.startswith(word) and c != word] if word else []
    if prefixed:
        return prefixed[:n]
    return difflib.get_close_matches(word, pool, n=1, cutoff=0.7)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """" (did you mean 'x'?)" (or "'x' or 'y'"), or '' when nothing is close."""
    matches = close_matches(word, choices)
    if not matches:
        return ""
    return " (did you mean " + " or ".join(repr(m) for m in matches) + "?)"
