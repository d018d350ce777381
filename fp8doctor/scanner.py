"""The scan pipeline: path -> checkpoint headers -> layouts -> rules -> Report.

Reads only headers and scale bytes (plus the few weight blocks behind zero scales), in file order,
with nearby scale tensors coalesced into one pread. Shards are checked by a small thread pool
(pread and numpy release the GIL, so reading one shard overlaps checking another; a remote byte
source keeps several requests in flight); results are merged in file order, so the report is the
same whatever the number of workers. Each tensor is first judged from histograms (rules/tally.py);
only a tensor that may have a finding goes through the mask-based rules.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Protocol

from fp8doctor.checkpoint.header import TensorInfo
from fp8doctor.checkpoint.hfcache import snapshot_of
from fp8doctor.checkpoint.loader import Checkpoint, open_checkpoint, without_credentials
from fp8doctor.findings import Finding, Report, ScanStats
from fp8doctor.gcpause import gc_paused
from fp8doctor.inspection import Inspection
from fp8doctor.interrupt import Stop, hold
from fp8doctor.layouts.encodings import FLOAT_ENCODINGS
from fp8doctor.layouts.model import ENCODINGS, DescribedLayouts, LayoutOverride, ScaleLayout
from fp8doctor.rules import judge
from fp8doctor.rules.catalog import RULES, validate_rule_ids
from fp8doctor.rules.consistency import check_companions, check_config, check_single_entry
from fp8doctor.rules.content import (
    UNINIT_FAR,
    ContentOptions,
    TensorSummary,
    check_kinds,
    kind_of,
)
from fp8doctor.rules.judge import judge_scale_tensor
from fp8doctor.rules.tally import TALLY_ITEMSIZE, medians_of_many

COALESCE_GAP = 1 << 16
"""Scale tensors closer than this in one file are read with one pread (gap bytes are discarded)."""
MAX_READ = 16 << 20
"""Largest single read: bounds memory whatever the checkpoint size (a larger scale tensor is
streamed in reads of this size)."""
MAX_WORKERS = 4
"""Shards checked at once by default: enough to keep both reading and checking busy."""


class Progress(Protocol):
    """Observer for long scans; the CLI draws a bar, library users get nothing by default."""

    def start(self, total_bytes: int, files: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def file_done(self) -> None: ...

    def finish(self) -> None: ...


@dataclass(frozen=True)
class ScanOptions:
    fill: str | int = "zero"
    fill_explicit: bool = False
    """The fill was asked for (--fill, configuration): padding that holds the other accepted fill is then
    an error, not an accepted choice (info). A fill other than the default zero always counts as asked."""
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    overrides: tuple[LayoutOverride, ...] = ()
    outlier_span: int = 32
    verify_zero_blocks: bool = True
    workers: int = 0
    """Shards checked concurrently; 0 picks min(shards, MAX_WORKERS) (one when scale tensors are tiny,
    see SMALL_TENSOR); 1 checks in the caller's thread. A remote source wants several in flight."""

    def __post_init__(self) -> None:
        validate_rule_ids(self.select)
        validate_rule_ids(self.ignore)

    def content_options(self, ue8m0: bool) -> ContentOptions:
        """The content rules' options (one place: scan, dump and the in-memory checks agree)."""
        return ContentOptions(fill=self.fill, fill_explicit=self.fill_explicit or self.fill != "zero",
                              outlier_span=self.outlier_span, ue8m0=ue8m0, verify_zero_blocks=self.verify_zero_blocks)

    def wants(self, f: Finding) -> bool:
        return self.runs(f.rule)

    def runs(self, rule: str) -> bool:
        """Whether `rule` is reported under this selection (--select / --ignore)."""
        return (not self.select or rule in self.select) and rule not in self.ignore

    def active_rules(self) -> tuple[str, ...]:
        """The catalogue's rules this selection reports, in catalogue order."""
        return tuple(r for r in RULES if self.runs(r))


@dataclass
class Analysis:
    """Everything a scan learned, before filtering: fix and dump work from this."""

    checkpoint: Checkpoint
    inspection: Inspection | None = None
    """What the analysis ran over (layouts, content options, weight reader, hashes)."""
    layouts: dict[str, ScaleLayout] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    scale_tensors: list[TensorInfo] = field(default_factory=list)
    checked: int = 0
    skipped: int = 0
    scale_bytes: int = 0
    """Bytes of the readable scale tensors (what the checks read)."""


_OFFSET = attrgetter("offset")


def _batches(tensors: list[TensorInfo]) -> Iterator[list[TensorInfo]]:
    """Group tensors of one file, sorted by offset, into reads of nearby bytes."""
    batch: list[TensorInfo] = []
    for t in sorted(tensors, key=_OFFSET):
        if batch and (t.offset - (batch[-1].offset + batch[-1].nbytes) > COALESCE_GAP
                      or t.offset + t.nbytes - batch[0].offset > MAX_READ):
            yield batch
            batch = []
        batch.append(t)
    if batch:
        yield batch


SMALL_TENSOR = 64 << 10
"""Below this average scale tensor size a scan is bound by per-tensor Python (GIL-held), where
extra threads only add contention: the automatic choice is then one worker."""


def _auto_workers(tensors: list[TensorInfo], files: int) -> int:
    if not tensors or sum(t.nbytes for t in tensors) < SMALL_TENSOR * len(tensors):
        return 1
    return min(files, MAX_WORKERS)


_Checked = tuple[list[Finding] | None, TensorSummary | None]
"""One tensor's outcome: (findings, summary), or (None, None) when its bytes could not be read."""


def _check_file(ckpt: Checkpoint, tensors: list[TensorInfo], layouts: dict[str, ScaleLayout],
                content: ContentOptions, read_weight: Callable[[TensorInfo, int, int], bytes],
                progress: Progress | None, stop: Stop | None = None, insp: Inspection | None = None
                ) -> list[_Checked]:
    """Every scale tensor of one file, in offset order; the unit of work of the thread pool. Gives up
    (Cancelled) between reads once `stop` is set. Each tensor's sha256 goes to `insp` while its bytes
    are in hand, when the inspection wants hashes."""
    out: list[_Checked] = []
    hold("scan-file", stop)
    src = ckpt.source(tensors[0].file)
    batches = [(b, b[0].offset, max(t.offset + t.nbytes for t in b)) for b in _batches(tensors)]
    prefetch = getattr(src, "prefetch", None)
    if prefetch is not None:  # remote sources fetch the reads ahead, several at once (streamed ones: not)
        prefetch([(start, end) for _, start, end in batches if end - start <= MAX_READ])
    for batch, start, end in batches:
        if stop is not None:
            stop.check()
        done = len(out)
        try:
            if end - start > MAX_READ:  # one tensor larger than a read: stream it
                (t,) = batch
                out.append(_check_streamed(src, t, layouts.get(t.name), content, read_weight, insp))
            else:
                blob = memoryview(src.pread(start, end - start))
                out.extend(_check_batch(batch, start, blob, layouts, content, read_weight))
                if insp is not None and insp.hashes is not None:
                    for t in batch:
                        insp.record_hash(t, blob[t.offset - start: t.offset - start + t.nbytes])
        except OSError:
            del out[done:]
            out.extend((None, None) for _ in batch)
        if progress is not None:
            progress.advance(sum(t.nbytes for t in batch))
    if progress is not None:
        progress.file_done()
    return out


BATCH_MAX_ENTRIES = 1 << 16
"""Tensors up to this many entries, with no padding, are judged together (tally.medians_of_many)."""


def _check_batch(batch: list[TensorInfo], start: int, blob: memoryview, layouts: dict[str, ScaleLayout],
                 content: ContentOptions, read_weight: Callable[[TensorInfo, int, int], bytes]) -> list[_Checked]:
    """Every tensor of one read. Small tensors without padding that share an encoding and an entry
    alignment in the read are judged with one histogram; the rest (and any that batch is unsure
    about) go through `_check_one`."""
    results: list[_Checked | None] = [None] * len(batch)
    groups: dict[tuple[str, int], list[int]] = {}
    if len(batch) > 1:
        for i, t in enumerate(batch):
            layout = layouts.get(t.name)
            encoding: str | None
            if layout is not None:
                encoding = layout.encoding
                if layout.logical_shape != t.shape:
                    continue
            else:
                encoding = ENCODINGS.get(t.dtype)
            item = TALLY_ITEMSIZE.get(encoding)  # type: ignore[arg-type]
            shape = t.shape
            if item is None or not shape or t.nbytes > BATCH_MAX_ENTRIES * item or not t.nbytes:
                continue
            members = groups.setdefault((encoding, (t.offset - start) % item), [])  # type: ignore[arg-type]
            if members and t.offset < batch[members[-1]].offset + batch[members[-1]].nbytes:
                continue  # overlaps the previous one (a broken header): judged alone
            members.append(i)
    for (encoding, rem), members in groups.items():
        if len(members) < 2:
            continue
        item = TALLY_ITEMSIZE[encoding]
        starts = [(batch[i].offset - start - rem) // item for i in members]
        counts = [batch[i].nbytes // item for i in members]
        ue8m0 = content.ue8m0 and encoding in FLOAT_ENCODINGS
        medians = medians_of_many(encoding, blob[rem:], starts, counts, ue8m0, content.outlier_span, UNINIT_FAR)
        for i, median in zip(members, medians):
            if median is not None:
                t = batch[i]
                results[i] = ([], TensorSummary(t.name, t.file, t.offset, median, kind_of(t.name)))
    for i, t in enumerate(batch):
        if results[i] is None:
            data = blob[t.offset - start: t.offset - start + t.nbytes]
            results[i] = _check_one(t, layouts.get(t.name), data, content, read_weight)
    return results  # type: ignore[return-value]


def _check_one(t: TensorInfo, layout: ScaleLayout | None, data: bytes | memoryview, content: ContentOptions,
               read_weight: Callable[[TensorInfo, int, int], bytes]) -> _Checked:
    return judge_scale_tensor(t, data, layout, content, read_weight)


def _check_streamed(src, t: TensorInfo, layout: ScaleLayout | None, content: ContentOptions,
                    read_weight: Callable[[TensorInfo, int, int], bytes], insp: Inspection | None = None) -> _Checked:
    """A scale tensor larger than one read, judged in row slabs of bounded size (hashed from the
    slabs of the first pass over it, when the inspection wants hashes)."""
    row_bytes = t.nbytes // t.shape[0] if t.shape and t.shape[0] else t.nbytes
    hasher = insp.row_hasher(t) if insp is not None else None

    def read_rows(r0: int, n: int) -> bytes:
        data = src.pread(t.offset + r0 * row_bytes, n * row_bytes)
        if hasher is not None:
            hasher.feed(r0 * row_bytes, data)
        return data

    judged = judge.judge_scale_rows(t, read_rows, layout, content, read_weight, MAX_READ)
    if insp is not None:
        insp.record_digest(t, hasher)
    return judged


def analyze(ckpt: Checkpoint | Inspection, options: ScanOptions | None = None,
            progress: Progress | None = None) -> Analysis:
    """Run every rule over an open checkpoint (or an Inspection of one, built with the same options)."""
    options = options or ScanOptions()
    insp = ckpt if isinstance(ckpt, Inspection) else Inspection.of(ckpt, options)
    ckpt = insp.checkpoint
    result = Analysis(checkpoint=ckpt, inspection=insp)
    result.findings.extend(ckpt.findings)
    result.findings.extend(insp.pairing.findings)
    result.layouts = insp.layouts
    result.scale_tensors = insp.scale_tensors
    content = insp.content
    read_weight = insp.read_weight

    readable = [t for t in result.scale_tensors if ckpt.readable(t)]
    result.skipped = len(result.scale_tensors) - len(readable)
    result.scale_bytes = sum(t.nbytes for t in readable)
    if progress is not None:
        progress.start(sum(t.nbytes for t in readable), len({t.file for t in readable}))

    by_file: dict[str, list[TensorInfo]] = {}
    for t in readable:
        by_file.setdefault(t.file, []).append(t)
    files = sorted(by_file)

    stop = Stop()

    def one(file: str) -> list[_Checked]:
        return _check_file(ckpt, by_file[file], result.layouts, content, read_weight, progress, stop, insp)

    workers = options.workers or _auto_workers(readable, len(files))
    if workers <= 1 or len(files) <= 1:
        per_file = [one(f) for f in files]
    else:
        # Ctrl-C reaches only this thread: tell the workers to stop and do not wait for them
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fp8doctor-scan")
        try:
            per_file = list(pool.map(one, files))
        except BaseException:
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()

    summaries: list[TensorSummary] = []
    for checked in per_file:
        for findings, summary in checked:
            if findings is None:
                result.skipped += 1
                continue
            result.findings.extend(findings)
            result.checked += 1
            if summary is not None:
                summaries.append(summary)
    def exact(summary: TensorSummary) -> int:
        """The exact median exponent of a tensor the quick test judged (re-read, histogrammed)."""
        t = ckpt.tensors[summary.name]
        return judge.exact_median(t, result.layouts.get(t.name), content, lambda start, n: ckpt.read(t, start, n),
                                  MAX_READ)

    result.findings.extend(check_kinds(summaries, options.outlier_span, exact))
    # single-entry scales always carry an exact median (a band of one code is a point)
    result.findings.extend(check_single_entry(summaries, result.layouts, ckpt.tensors))
    result.findings.extend(check_companions(insp.pairing.layouts, insp.pairing.companions, ckpt.config))
    result.findings.extend(check_config(ckpt.tensors, insp.pairing.layouts, ckpt.config))
    result.findings.extend(_nothing_checked(ckpt, result))
    if progress is not None:
        progress.finish()
    return result


def ask_repair(ckpt: Checkpoint) -> None:
    """Add repair's `fix-interrupted` findings (a half-finished fix journal) to a local checkpoint's:
    the verbs (scan, dump, fix) ask repair, the reading layer below them knows nothing of it."""
    if not ckpt.remote:
        from fp8doctor.repair.journal import interrupted

        ckpt.findings.extend(interrupted(ckpt.root))


def _nothing_checked(ckpt: Checkpoint, result: Analysis) -> list[Finding]:
    """An error when there were files but not one scale tensor was checked: no report or fix may
    call a run clean after reading nothing."""
    files = set(ckpt.shards) | set(ckpt.unread_files)
    if result.checked or not files:
        return []
    from fp8doctor.rules.catalog import rule

    r = rule("nothing-checked")
    n = len(files)
    shards = f"{n:,} shard{'s' if n != 1 else ''}"
    n_scale = len(result.scale_tensors)
    if n_scale:
        why = f"none of its {n_scale:,} scale tensor{'s' if n_scale != 1 else ''} could be read"
    elif not ckpt.tensors:
        why = "no shard header could be read"
    else:
        n_t = len(ckpt.tensors)
        why = (f"none of its {n_t:,} tensors is" if n_t != 1 else "its one tensor is not") + \
            " a scale tensor (not a quantized checkpoint?)"
    return [r.finding(None, None, f"nothing was checked in {shards}: {why}")]


def scan(path: str | os.PathLike[str], options: ScanOptions | None = None,
         progress: Progress | None = None, *, hashes: bool = False) -> Report:
    """Scan the checkpoint at `path` and return a Report. Raises CheckpointError (exit code 2) only
    when `path` cannot be a checkpoint at all; every problem inside one is a finding. `hashes`: fill
    `Report.tensor_hashes` for the findings' tensors (what a baseline needs), in the same pass."""
    options = options or ScanOptions()
    t0 = time.perf_counter()
    with open_checkpoint(path) as ckpt, gc_paused():
        ask_repair(ckpt)
        insp = Inspection.of(ckpt, options, hashes=hashes)
        result = analyze(insp, options, progress)
        tensor_hashes = insp.tensor_hashes(f.tensor for f in result.findings) if hashes else {}
        header_bytes = sum(8 + s.header_len for s in ckpt.shards.values())
        total_read = ckpt.bytes_read
    transfer = ckpt.transfer
    scale_bytes = result.scale_bytes
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
    layouts = DescribedLayouts(result.layouts.values())  # described when a caller asks
    snap = None if ckpt.remote else snapshot_of(ckpt.root)
    return Report(target=without_credentials(os.fspath(path)), findings=findings, stats=stats, layouts=layouts,
                  hf_cache=snap.describe() if snap is not None else None, tensor_hashes=tensor_hashes)
