"""Helpers shared by renderers: safe text for names that come from untrusted headers."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from rich.markup import escape

if TYPE_CHECKING:
    from fp8doctor.findings import Finding

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufffe\uffff]")


def plain(text: str | None) -> str:
    """Control, bidi and line-breaking characters (and lone surrogates, which no UTF-8 file or XML
    document can hold) as visible escapes (\\x1b, \\u202e)."""
    if text is None:
        return ""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                        else f"\\u{ord(m.group()):04x}", text)


def safe(text: str | None) -> str:
    """Text from a checkpoint made safe for a rich console: no control chars, no markup."""
    return escape(plain(text))


def capped(findings: Sequence[Finding], limit: int) -> tuple[list[Finding], list[Finding]]:
    """(shown, hidden): the `limit` worst findings (Finding.rank_key) and the rest, worst first."""
    from fp8doctor.findings import ranked

    order = ranked(findings)
    limit = max(limit, 0)
    return order[:limit], order[limit:]


def hidden_summary(hidden: Sequence[Finding], what: str = "not listed") -> str:
    """What a cap left out, so a list never silently drops an error: '282 more findings not listed:
    1 error, 281 warnings (scale-padding-nonzero x270, scale-outlier x11, scale-nan x1)'."""
    from collections import Counter

    by_sev = Counter(f.severity.value for f in hidden)
    sevs = ", ".join(plural(by_sev[s], s) for s in ("error", "warning", "info") if by_sev[s])
    rules = Counter(f.rule for f in hidden).most_common()
    named = ", ".join(f"{r} x{n:,}" for r, n in rules[:3])
    if len(rules) > 3:
        named += f", {len(rules) - 3} more rules"
    return f"{plural(len(hidden), 'more finding')} {what}: {sevs} ({named})"


def human_bytes(n: int) -> str:
    """A byte count as people read it: '165 bytes', '11.7 kB', '402.7 MB' (powers of 1000, as disks
    and hubs count; machine formats keep the exact number)."""
    if n < 1000:
        return plural(n, "byte")
    value = float(n)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if value < 999.95 or unit == "TB":
            return f"{value:,.1f} {unit}"
    raise AssertionError


def plural(n: int, word: str) -> str:
    if n == 1:
        return f"{n:,} {word}"
    return f"{n:,} {word[:-1]}ies" if word.endswith("y") else f"{n:,} {word}s"


def location(f: Finding, file: Callable[[str], str] = plain) -> list[str]:
    """Where a finding points, as the parts every text renderer shows: file, `@ 0xOFFSET`, `[i, j]`,
    and `on DEVICE` for a tensor in memory."""
    parts = [file(f.file)] if f.file else []
    if f.byte_offset is not None:
        parts.append(f"@ 0x{f.byte_offset:x}")
    if f.index is not None:
        parts.append(f"[{', '.join(map(str, f.index))}]")
    if f.device is not None:
        parts.append(f"on {plain(f.device)}")
    return parts
