"""The scan pipeline: path -> checkpoint headers -> layouts -> rules -> Report.

Reads only headers and scale bytes (plus the few weight blocks behind zero scales), in file order,
with nearby scale tensors coalesced into one pread.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from fp8doctor.checkpoint.header import TensorInfo
from fp8doctor.checkpoint.loader import Checkpoint, open_checkpoint
from fp8doctor.findings import Finding, Report, ScanStats
from fp8doctor.layouts.model import LayoutOverride, ScaleLayout
from fp8doctor.layouts.pairing import LayoutBuilder
from fp8doctor.rules.catalog import validate_rule_ids
from fp8doctor.rules.content import ContentOptions, TensorSummary, check_kinds, check_tensor

COALESCE_GAP = 1 << 16
"""Scale tensors closer than this in one file are read with one pread (gap bytes are discarded)."""
MAX_READ = 64 << 20
"""Largest single read: bounds memory whatever the checkpoint size."""


class Progress(Protocol):
    """Observer for long scans; the CLI draws a bar, library users get nothing by default."""

    def start(self, total_bytes: int, files: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def finish(self) -> None: ...


@dataclass(frozen=True)
class ScanOptions:
    fill: str | int = "zero"
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    overrides: tuple[LayoutOverride, ...] = ()
    outlier_span: int = 32
    verify_zero_blocks: bool = True

    def __post_init__(self) -> None:
        validate_rule_ids(self.select)
        validate_rule_ids(self.ignore)

    def wants(self, f: Finding) -> bool:
        return (not self.select or f.rule in self.select) and f.rule not in self.ignore


@dataclass
class Analysis:
    """Everything a scan learned, before filtering: fix and dump work from this."""

    checkpoint: Checkpoint
    layouts: dict[str, ScaleLayout] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    scale_tensors: list[TensorInfo] = field(default_factory=list)
    checked: int = 0
    skipped: int = 0


def _batches(tensors: list[TensorInfo]) -> Iterator[list[TensorInfo]]:
    """Group tensors of one file, sorted by offset, into reads of nearby bytes."""
    batch: list[TensorInfo] = []
    for t in sorted(tensors, key=lambda t: t.offset):
        if batch and (t.offset - (batch[-1].offset + batch[-1].nbytes) > COALESCE_GAP
                      or t.offset + t.nbytes - batch[0].offset > MAX_READ):
            yield batch
            batch = []
        batch.append(t)
    if batch:
        yield batch


def read_scale_bytes(ckpt: Checkpoint, tensors: list[TensorInfo],
                     progress: Progress | None = None) -> Iterator[tuple[TensorInfo, bytes | OSError]]:
    """Yield (tensor, its bytes) in file order, coalescing nearby tensors into single reads."""
    by_file: dict[str, list[TensorInfo]] = {}
    for t in tensors:
        by_file.setdefault(t.file, []).append(t)
    for file in sorted(by_file):
        batches = list(_batches(by_file[file]))
        if hasattr(ckpt.source(file), "prefetch"):  # remote sources fetch the batches ahead, several at once
            ckpt.source(file).prefetch([(b[0].offset, max(t.offset + t.nbytes for t in b)) for b in batches])
        for batch in batches:
            start = batch[0].offset
            end = max(t.offset + t.nbytes for t in batch)
            try:
                if end - start > MAX_READ:  # one tensor larger than a read: take it whole anyway
                    blob = b"".join(ckpt.source(file).pread(o, min(MAX_READ, end - o))
                                    for o in range(start, end, MAX_READ))
                else:
                    blob = ckpt.source(file).pread(start, end - start)
            except OSError as e:
                for t in batch:
                    yield t, e
                continue
            for t in batch:
                yield t, blob[t.offset - start: t.offset - start + t.nbytes]
            if progress is not None:
                progress.advance(sum(t.nbytes for t in batch))


def analyze(ckpt: Checkpoint, options: ScanOptions | None = None,
            progress: Progress | None = None) -> Analysis:
    """Run every rule over an open checkpoint."""
    options = options or ScanOptions()
    result = Analysis(checkpoint=ckpt)
    result.findings.extend(ckpt.findings)
    pairing = LayoutBuilder(ckpt.tensors, ckpt.config, options.overrides).build()
    result.findings.extend(pairing.findings)
    result.layouts = {lay.scale.name: lay for lay in pairing.layouts}
    result.scale_tensors = [lay.scale for lay in pairing.layouts] + pairing.value_only
    quant = ckpt.config.quant if ckpt.config else None
    content = ContentOptions(fill=options.fill, outlier_span=options.outlier_span,
                             ue8m0=bool(quant and quant.ue8m0), verify_zero_blocks=options.verify_zero_blocks)

    readable = [t for t in result.scale_tensors if ckpt.readable(t)]
    result.skipped = len(result.scale_tensors) - len(readable)
    if progress is not None:
        progress.start(sum(t.nbytes for t in readable), len({t.file for t in readable}))

    def read_weight(w: TensorInfo, start: int, length: int) -> bytes:
        if not ckpt.readable(w):
            raise OSError(f"{w.name} is not fully inside its file")
        return ckpt.read(w, start, length)

    summaries: list[TensorSummary] = []
    for t, data in read_scale_bytes(ckpt, readable, progress):
        if isinstance(data, OSError):
            result.skipped += 1
            continue
        findings, summary = check_tensor(result.layouts.get(t.name), t, data, content, read_weight)
        result.findings.extend(findings)
        result.checked += 1
        if summary is not None:
            summaries.append(summary)
    result.findings.extend(check_kinds(summaries, options.outlier_span))
    if progress is not None:
        progress.finish()
    return result


def scan(path: str | os.PathLike[str], options: ScanOptions | None = None,
         progress: Progress | None = None) -> Report:
    """Scan the checkpoint at `path` and return a Report. Raises CheckpointError (exit code 2) only
    when `path` cannot be a checkpoint at all; every problem inside one is a finding."""
    options = options or ScanOptions()
    t0 = time.perf_counter()
    with open_checkpoint(path) as ckpt:
        result = analyze(ckpt, options, progress)
        header_bytes = sum(8 + s.header_len for s in ckpt.shards.values())
        total_read = ckpt.bytes_read
    transfer = ckpt.transfer
    scale_bytes = sum(t.nbytes for t in result.scale_tensors if ckpt.readable(t))
    findings = tuple(sorted((f for f in result.findings if options.wants(f)), key=lambda f: f.sort_key))
    stats = ScanStats(
        files=len(ckpt.shards) + len(ckpt.unread_files - set(ckpt.shards)),
        tensors=len(ckpt.tensors),
        scale_tensors=len(result.scale_tensors),
        scale_tensors_checked=result.checked,
        scale_bytes_read=scale_bytes,
        header_bytes_read=header_bytes,
        bytes_read=total_read,
        skipped=result.skipped,
        seconds=time.perf_counter() - t0,
        bytes_fetched=transfer.bytes_fetched if transfer is not None else None,
        requests=transfer.requests if transfer is not None else None,
        checkpoint_bytes=sum(s.size for s in ckpt.shards.values()),
    )
    layouts = tuple(lay.describe() for lay in result.layouts.values())
    return Report(target=os.fspath(path), findings=findings, stats=stats, layouts=layouts)
