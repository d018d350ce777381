"""Baselines: accept today's findings so that only new or changed ones fail the next scan.

An entry is keyed by rule + file + tensor and carries a sha256 of the bytes the finding is about:
- a finding on a scale tensor (one the pairing calls a scale, up to 256 MiB): the tensor's stored
  bytes, hashed by the scan while it has them (fp8doctor.inspection), so rewriting any of its
  entries makes the finding "changed";
- a finding on another tensor (a weight without a scale, say): its header entry (dtype, shape,
  offsets), so weights are never read in full;
- anything else (file, header, index findings): the rule and message text.
A finding whose key and hash match an entry is suppressed (each entry suppresses one finding); one
whose key matches but hash differs is reported with "(changed since the baseline)".
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from typing import Any

from fp8doctor.errors import Fp8DoctorError
from fp8doctor.findings import Finding, Report
from fp8doctor.userfiles import read_file, write_file

BASELINE_FORMAT = 1

Key = tuple[str, str | None, str | None]


BASELINE_LIMIT = 512 << 20
"""A baseline file is read up to this many bytes."""


class BaselineError(Fp8DoctorError, ValueError):
    """A baseline file that cannot be read or written; one line, exit 2."""


def _key(f: Finding) -> Key:
    return (f.rule, f.file, f.tensor)


def finding_hash(report: Report, f: Finding) -> str:
    """sha256 of what the finding is about (see the module docstring), from the hashes the scan
    recorded (`Report.tensor_hashes`, fp8doctor.inspection); rule and message for the rest."""
    digest = report.tensor_hashes.get(f.tensor) if f.tensor is not None else None
    if digest is not None:
        return digest
    h = hashlib.sha256(json.dumps(["message", f.rule, f.message], ensure_ascii=True).encode())
    return "sha256:" + h.hexdigest()


def baseline_dict(report: Report, version: str = "") -> dict[str, Any]:
    """The baseline of a report scanned with hashes (`scan(..., hashes=True)`)."""
    entries = [{"rule": f.rule, "file": f.file, "tensor": f.tensor, "hash": finding_hash(report, f),
                "severity": f.severity.value, "message": f.message} for f in report.findings]
    entries.sort(key=lambda e: (e["file"] or "", e["tensor"] or "", e["rule"], e["hash"]))
    return {"fp8doctor_baseline": BASELINE_FORMAT, "tool_version": version, "findings": entries}


def write_baseline(path: str, report: Report, version: str = "", checkpoint: str | None = None) -> int:
    """Record the report's findings in `path` (atomically; never through a link of the local
    checkpoint directory `checkpoint` leading outside it); returns how many were recorded."""
    data = baseline_dict(report, version)
    try:
        write_file(path, json.dumps(data, indent=2, ensure_ascii=True) + "\n", checkpoint)
    except OSError as e:
        raise BaselineError(f"{path}: cannot write baseline ({e.strerror or e})") from None
    return len(data["findings"])


def load_baseline(path: str) -> Counter[tuple[str, str | None, str | None, str]]:
    """Entries of a baseline file as a multiset of (rule, file, tensor, hash)."""
    try:
        data = json.loads(read_file(path, BASELINE_LIMIT).decode("utf-8"))
    except OSError as e:
        raise BaselineError(f"{path}: cannot read baseline ({e.strerror or e})") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise BaselineError(f"{path}: not a baseline file (not JSON: {type(e).__name__})") from None
    if not isinstance(data, dict) or data.get("fp8doctor_baseline") != BASELINE_FORMAT \
            or not isinstance(data.get("findings"), list):
        raise BaselineError(f"{path}: not an fp8doctor baseline (format {BASELINE_FORMAT}); "
                            "write one with `fp8doctor scan PATH --write-baseline FILE`")
    entries: Counter[tuple[str, str | None, str | None, str]] = Counter()
    for i, entry in enumerate(data["findings"]):
        ok = (isinstance(entry, dict) and isinstance(entry.get("rule"), str) and isinstance(entry.get("hash"), str)
              and all(entry.get(k) is None or isinstance(entry.get(k), str) for k in ("file", "tensor")))
        if not ok:
            raise BaselineError(f"{path}: entry {i} needs string rule and hash, and string-or-null file and tensor")
        entries[(entry["rule"], entry.get("file"), entry.get("tensor"), entry["hash"])] += 1
    return entries


def apply_baseline(report: Report, path: str) -> tuple[Report, int]:
    """The report without the findings the baseline accepts, and how many it suppressed."""
    entries = load_baseline(path)
    keys = {k[:3] for k in entries}
    if not any(_key(f) in keys for f in report.findings):
        return report, 0
    kept: list[Finding] = []
    suppressed = 0
    for f in report.findings:
        if _key(f) not in keys:
            kept.append(f)
            continue
        entry = (*_key(f), finding_hash(report, f))
        if entries[entry] > 0:
            entries[entry] -= 1
            suppressed += 1
        else:
            kept.append(dataclasses.replace(f, message=f"{f.message} (changed since the baseline)"))
    return dataclasses.replace(report, findings=tuple(kept)), suppressed
