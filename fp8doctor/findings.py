"""Findings and reports: the plain data every command produces and every renderer consumes.

The JSON form of these classes is a public contract (see docs/reports.md, "JSON report"): field names and
rule ids never change meaning; new fields may be added.
"""

from __future__ import annotations

import enum
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any


class Severity(str, enum.Enum):
    """How bad a finding is. Ordered: info < warning < error."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls(text.lower())
        except ValueError:
            raise ValueError(f"unknown severity {text!r} (expected info, warning or error)") from None


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2}


class Region(str, enum.Enum):
    """Which part of the checkpoint a finding is about."""

    LOGICAL = "logical"
    PADDING = "padding"
    HEADER = "header"
    FILE = "file"
    INDEX = "index"


@dataclass(frozen=True)
class Finding:
    """One problem found in a checkpoint.

    `byte_offset` is absolute in `file`; `index` is the multi-dimensional index of the first bad
    element of `tensor` (stored shape), where there is one. `device` names where an in-memory
    tensor lives ("cpu", "cuda:0"; see fp8doctor.check_tensors); None for files, whose findings
    carry `file` and `byte_offset` instead.
    """

    rule: str
    severity: Severity
    file: str | None
    tensor: str | None
    message: str
    region: Region
    byte_offset: int | None = None
    count: int = 1
    index: tuple[int, ...] | None = None
    fixable: bool = False
    device: str | None = None

    def to_dict(self) -> dict[str, Any]:
        # every field by name, without asdict's recursive deep copy (10^5 findings render in seconds)
        data = {name: getattr(self, name) for name in _FINDING_FIELDS}
        data["severity"] = self.severity.value
        data["region"] = self.region.value
        data["index"] = list(self.index) if self.index is not None else None
        if self.device is None:  # only in-memory findings have one; file reports keep their keys
            del data["device"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(
            rule=data["rule"],
            severity=Severity(data["severity"]),
            file=data.get("file"),
            tensor=data.get("tensor"),
            message=data["message"],
            region=Region(data["region"]),
            byte_offset=data.get("byte_offset"),
            count=data.get("count", 1),
            index=tuple(data["index"]) if data.get("index") is not None else None,
            fixable=data.get("fixable", False),
            device=data.get("device"),
        )

    @property
    def sort_key(self) -> tuple[int, str, str, int, str]:
        """The order of a Report's findings (and of the JSON report): severity, then file order."""
        return (-self.severity.rank, self.file or "", self.tensor or "", self.byte_offset or 0, self.rule)

    @property
    def rank_key(self) -> tuple[Any, ...]:
        """Worst first, for every capped list ("worst 20 of 302", annotations): severity; then what no
        fix repairs in real scale entries, other unfixable findings, fixable ones; then layer and expert
        numbers numerically (experts.2 before experts.10)."""
        kind = 0 if not self.fixable and self.region is Region.LOGICAL else 1 if not self.fixable else 2
        return (-self.severity.rank, kind, natural_key(self.file), natural_key(self.tensor), self.byte_offset or 0,
                self.rule)


_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str | None) -> tuple[tuple[int, int, str], ...]:
    """'layers.2.experts.10' ordered by its numbers as numbers (any two keys compare)."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in _DIGITS.split(text or "") if p)


def ranked(findings: Sequence[Finding]) -> list[Finding]:
    """The findings worst first (Finding.rank_key)."""
    return sorted(findings, key=lambda f: f.rank_key)


_FINDING_FIELDS = tuple(f.name for f in fields(Finding))
"""Finding's field names in order (to_dict builds its dict from them)."""


@dataclass(frozen=True)
class ScanStats:
    """What the scan looked at, so a report can never claim "clean" about what it skipped."""

    files: int = 0
    tensors: int = 0
    scale_tensors: int = 0
    scale_tensors_checked: int = 0
    scale_bytes_read: int = 0
    header_bytes_read: int = 0
    bytes_read: int = 0
    skipped: int = 0
    seconds: float = 0.0
    bytes_fetched: int | None = None
    """Remote targets only: body bytes received over the network (None for local paths)."""
    requests: int | None = None
    """Remote targets only: requests sent, retries and redirects included."""
    checkpoint_bytes: int = 0
    """Total size of the shards whose headers were read."""


@dataclass(frozen=True)
class Report:
    """The result of a scan: findings plus what was looked at."""

    target: str
    findings: tuple[Finding, ...]
    stats: ScanStats = field(default_factory=ScanStats)
    layouts: Sequence[dict[str, Any]] = ()
    """Each layout's describe() dict (a lazy sequence from `scan`: built on first use)."""
    tensor_hashes: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    """Tensor name -> the sha256 a baseline keys its findings by (fp8doctor.inspection); filled by
    a scan asked for hashes (a baseline to write or apply), empty otherwise. Not part of the JSON."""
    hf_cache: dict[str, str] | None = None
    """For a checkpoint in the Hugging Face cache: {"repo_id", "revision"} of its snapshot."""

    def counts(self) -> dict[str, int]:
        by_sev = Counter(f.severity.value for f in self.findings)
        return {s.value: by_sev.get(s.value, 0) for s in (Severity.ERROR, Severity.WARNING, Severity.INFO)}

    def by_rule(self) -> dict[str, int]:
        return dict(sorted(Counter(f.rule for f in self.findings).items()))

    def worst(self) -> Severity | None:
        if not self.findings:
            return None
        return max((f.severity for f in self.findings), key=lambda s: s.rank)

    def failed(self, fail_on: Severity) -> bool:
        return any(f.severity.rank >= fail_on.rank for f in self.findings)

    @property
    def fixable(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.fixable)

    def summary(self) -> dict[str, Any]:
        counts = self.counts()
        s = self.stats
        remote = {} if s.requests is None else {
            "bytes_fetched": s.bytes_fetched, "requests": s.requests, "checkpoint_bytes": s.checkpoint_bytes}
        return {
            "errors": counts["error"],
            "warnings": counts["warning"],
            "infos": counts["info"],
            "fixable": len(self.fixable),
            "by_rule": self.by_rule(),
            "files": s.files,
            "tensors": s.tensors,
            "scale_tensors": s.scale_tensors,
            "scale_tensors_checked": s.scale_tensors_checked,
            "skipped": s.skipped,
            "scale_bytes": s.scale_bytes_read,
            "bytes_read": s.bytes_read,
            "seconds": round(s.seconds, 3),
            **remote,
        }
