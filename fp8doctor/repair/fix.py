"""The `fix` verb: lock, finish any interrupted fix, scan, plan, then write in place (journaled), into a
copy (`output`), or nowhere (`dry_run`); or undo the last fix. Returns a FixResult; raises FixError
or CheckpointError (exit code 2) when it cannot run, with every file as it was."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field, replace
from typing import Any

from fp8doctor.checkpoint.loader import INDEX_NAME, CheckpointError, open_checkpoint
from fp8doctor.checkpoint.target import Target
from fp8doctor.findings import Finding, Severity
from fp8doctor.layouts.model import parse_fill
from fp8doctor.repair import apply as ap
from fp8doctor.repair import journal as jr
from fp8doctor.repair.errors import FixError, ReadOnly
from fp8doctor.repair.lock import Lock
from fp8doctor.repair.output import write_copy
from fp8doctor.repair.plan import TensorChange, build_plan, fill_name
from fp8doctor.scanner import Progress, ScanOptions, analyze, ask_repair

MODES = ("in-place", "dry-run", "output", "undo")


@dataclass(frozen=True)
class FixResult:
    """What a fix changed (or, for a dry run, would change), and what it could not fix."""

    target: str
    mode: str
    fill: str
    changes: tuple[TensorChange, ...]
    unfixable: tuple[Finding, ...]
    bytes_written: int
    shards_touched: int
    seconds: float
    journal: str | None = None
    output: str | None = None
    verified: bool = False
    recovered: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    config: str | None = None
    """The configuration file the run used (set by the command)."""
    writes: int = 0
    """pwrite calls into shards (one per span: padded ranges closer than a page share one)."""
    journal_bytes: int = 0
    """Bytes the journal's files take on disk (in place and undo)."""
    journal_dir: str | None = None

    @property
    def bytes_changed(self) -> int:
        return sum(c.nbytes for c in self.changes)

    @property
    def entries_changed(self) -> int:
        return sum(c.entries for c in self.changes)

    def failed(self, fail_on: Severity = Severity.ERROR) -> bool:
        """Unfixable findings at or above `fail_on` remain (exit code 1)."""
        return any(f.severity.rank >= fail_on.rank for f in self.unfixable)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target, "mode": self.mode, "fill": self.fill, "output": self.output,
            "journal": self.journal, "verified": self.verified, "recovered": list(self.recovered),
            "notes": list(self.notes), "config": self.config,
            "summary": {"tensors_changed": len(self.changes), "entries_changed": self.entries_changed,
                        "bytes_changed": self.bytes_changed, "bytes_written": self.bytes_written,
                        "shards_touched": self.shards_touched, "unfixable": len(self.unfixable),
                        "seconds": round(self.seconds, 3), "writes": self.writes,
                        "journal_bytes": self.journal_bytes},
            "journal_dir": self.journal_dir,
            "changes": [c.to_dict() for c in self.changes],
            "unfixable": [f.to_dict() for f in self.unfixable],
        }


def fix_refusal(path: str) -> str:
    """The one-line refusal `fp8doctor fix` prints for a remote path."""
    how = "download it first"
    from fp8doctor.checkpoint.remote.url import parse_url

    try:
        loc = parse_url(path)
    except CheckpointError:
        loc = None
    if loc is not None and loc.kind == "hf":
        rev = f" --revision {loc.revision}" if loc.revision else ""
        kind = " --repo-type dataset" if loc.repo_type == "dataset" else ""
        how = f"download it first (`hf download {loc.repo_id}{rev}{kind} --local-dir DIR`)"
    return (f"{path} is remote and fix only rewrites local files: {how} and run `fp8doctor fix DIR`, "
            "or use `--output DIR` to write a repaired local copy of just the shards that need it")


def _carried(target: Target, shard_files: list[str]) -> tuple[list[str], list[str]]:
    """What an --output copy holds besides the patched shards: (files to hard-link: every unchanged
    .safetensors file; other files and directories to copy: index, config, tokenizer, ...)."""
    root = target.root
    if not target.whole_directory:
        return shard_files, [n for n in ("config.json",) if os.path.isfile(os.path.join(root, n))]
    names = sorted(n for n in os.listdir(root) if n != jr.JOURNAL_DIRNAME)
    link = sorted(set(shard_files) | {n for n in names if n.endswith(".safetensors")
                                      and os.path.isfile(os.path.join(root, n))})
    return link, [n for n in names if n not in link]


def _prepare_journal_dir(directory: str) -> None:
    """Create the journal directory if needed; refuse a symlink, a non-directory, a read-only one."""
    if os.path.islink(directory):
        raise FixError(f"the journal directory {directory} is a symlink; refusing to follow it (remove it, or "
                       "pass --journal-dir DIR)")
    if os.path.lexists(directory) and not os.path.isdir(directory):
        raise FixError(f"--journal-dir {directory} is not a directory")
    if os.path.isdir(directory):
        if not os.stat(directory).st_mode & 0o222:  # by mode bits, as for shards: root could write anyway
            raise ReadOnly(f"the journal directory {directory} is read-only; nothing was written (make it "
                              "writable, or pass --journal-dir DIR on a writable filesystem)")
        return
    parent = os.path.dirname(os.path.abspath(directory))
    try:
        st = os.stat(parent)
    except OSError as e:
        raise jr.os_error(e, f"cannot use the journal directory {directory}") from None
    if not st.st_mode & 0o222:
        raise ReadOnly(f"cannot create the journal directory {directory}: {parent} is read-only; nothing was "
                          "written (pass --journal-dir DIR on a writable filesystem)")
    try:
        os.mkdir(directory)
        jr.fsync_dir(parent)
    except FileExistsError:
        pass
    except OSError as e:
        raise jr.os_error(e, f"cannot create the journal directory {directory}; nothing was written") from None


def _refuse_cache_snapshot(path: str, root: str) -> None:
    """A Hugging Face cache snapshot is never patched in place: its files are links to blobs that
    every snapshot linking them shares, and the cache verifies them by hash."""
    from fp8doctor.checkpoint.hfcache import snapshot_of

    snap = snapshot_of(root)
    if snap is not None:
        raise FixError(f"{path} is a Hugging Face cache snapshot ({snap.repo_id} at {snap.revision}): its files are "
                       "blobs shared by every snapshot that links them and checked by hash, so fix does not change "
                       f"them in place. Write a repaired copy instead: fp8doctor fix {path} --output DIR")


def _plan(ckpt: Any, options: ScanOptions, progress: Progress | None, ignore_tensors: tuple[Any, ...]) -> Any:
    """The repair plan of an open checkpoint; findings matched by a per-tensor ignore of the
    configuration are neither fixed nor reported as unfixable (as scan hides them)."""
    from fp8doctor.config_file import filter_findings

    ask_repair(ckpt)
    analysis = analyze(ckpt, options, progress)
    if ignore_tensors:
        analysis.findings = list(filter_findings(analysis.findings, ignore_tensors))
    return build_plan(analysis, options, progress)


def fix(path: str | os.PathLike[str], options: ScanOptions | None = None, *, fill: str | int | None = None,
        dry_run: bool = False, output: str | os.PathLike[str] | None = None, undo: bool = False,
        journal_dir: str | os.PathLike[str] | None = None, progress: Progress | None = None,
        ignore_tensors: tuple[Any, ...] = (), config: str | os.PathLike[str] | None = None) -> FixResult:
    """Repair every fixable finding of the checkpoint at `path` (see docs/fix.md). `options` and
    `ignore_tensors` come from the same configuration as scan's (fp8doctor.config_file.settings);
    `config` (an fp8doctor.toml or pyproject.toml) supplies both as `fp8doctor fix --config` does
    (its options when `options` is None; its per-tensor ignores always). Raises ConfigError for a
    bad configuration file."""
    from fp8doctor import __version__

    t0 = time.perf_counter()
    path = os.fspath(path)
    if config is not None:
        from fp8doctor.config_file import load_config, settings

        run = settings(load_config(os.fspath(config)))
        options = options or run.options
        ignore_tensors = (*run.ignore_tensors, *ignore_tensors)
    options = options or ScanOptions()
    if fill is not None:
        options = replace(options, fill=parse_fill(fill) if isinstance(fill, str) else fill, fill_explicit=True)
    if undo and (output is not None or dry_run):
        raise FixError("--undo cannot be combined with --output or --dry-run")
    target = Target.parse(path)
    if target.remote:
        if output is None or undo:
            raise FixError(fix_refusal(path))
        return _remote_copy(path, options, dry_run, output, progress, t0, ignore_tensors)
    path = target.path  # an ORG/NAME[@REV] name is its local Hugging Face cache snapshot
    if not target.exists:
        raise CheckpointError(f"{path}: no such file or directory")
    root = target.root
    jdir = os.fspath(journal_dir) if journal_dir is not None else target.journal_dir
    in_place = not dry_run and output is None
    if in_place or undo:
        _refuse_cache_snapshot(path, root)

    if not (in_place or undo):
        return _without_writing(target, options, dry_run, output, jdir, progress, t0, __version__, ignore_tensors)

    _prepare_journal_dir(jdir)
    with Lock(root, jdir) as lock:
        finished = ap.recover(jdir, root, roll_back=undo)
        recovered = [f"{what} (journal {j.id}, {n:,} bytes)" for j, what, n in finished]
        notes = [f"took over a stale lock ({lock.stale})"] if lock.stale else []
        if undo:
            if finished:  # rolling back an interrupted fix (or finishing an undo) is the undo
                j = finished[-1][0]
                return FixResult(path, "undo", j.fill, ap.journal_changes(j, undo=True), (), j.nbytes, len(j.shards),
                                 time.perf_counter() - t0, j.json_path, None, True, tuple(recovered), tuple(notes))
            done = ap.undo_last(jdir, root, progress)
            j = done.journal
            return FixResult(path, "undo", j.fill, ap.journal_changes(j, undo=True), (), done.bytes_written,
                             done.shards_touched, time.perf_counter() - t0, j.json_path, None, True, (), tuple(notes),
                             writes=done.writes, journal_bytes=_dir_bytes(jdir), journal_dir=jdir)
        # the scanned shards stay open until the write: their inodes cannot be reused by a file swapped in,
        # so the (st_dev, st_ino) the write checks really is the file the scan read
        with open_checkpoint(target) as ckpt:
            plan = _plan(ckpt, options, progress, ignore_tensors)
            if plan.empty:
                return FixResult(path, "in-place", fill_name(options.fill), (), plan.unfixable, 0, 0,
                                 time.perf_counter() - t0, None, None, True, tuple(recovered), tuple(notes),
                                 journal_bytes=_dir_bytes(jdir), journal_dir=jdir)
            done = ap.apply_in_place(plan, jdir, path, __version__, progress)
        return FixResult(path, "in-place", fill_name(options.fill), plan.changes, plan.unfixable, done.bytes_written,
                         done.shards_touched, time.perf_counter() - t0, done.journal.json_path, None, True,
                         tuple(recovered), tuple(notes), writes=done.writes, journal_bytes=_dir_bytes(jdir),
                         journal_dir=jdir)


def _dir_bytes(directory: str) -> int:
    """Bytes of the journals kept in `directory` (every fix's, for undo)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    total = 0
    for n in names:
        if n.endswith((".bin", ".json")):
            try:
                total += os.lstat(os.path.join(directory, n)).st_size
            except OSError:
                pass
    return total


def _without_writing(target: Target, options: ScanOptions, dry_run: bool, output: str | os.PathLike[str] | None,
                     jdir: str, progress: Progress | None, t0: float, version: str,
                     ignore_tensors: tuple[Any, ...] = ()) -> FixResult:
    """--dry-run and --output: the source is only read."""
    path, root = target.path, target.root
    notes = []
    interrupted = [j for j in jr.load_all(jdir, root) if j.state in (jr.PENDING, jr.UNDOING)]
    if interrupted:
        if not dry_run:
            raise FixError(f"an interrupted fix of this checkpoint is recorded in {interrupted[0].json_path}; run "
                           f"`fp8doctor fix {path}` (to complete it) or `--undo` (to roll it back) first")
        notes.append(f"an interrupted fix is recorded in {interrupted[0].json_path}; `fix` will complete it first")
    with open_checkpoint(target) as ckpt:
        plan = _plan(ckpt, options, progress, ignore_tensors)
        shard_files = sorted(ckpt.shards)
    fill = fill_name(options.fill)
    if dry_run:
        return FixResult(path, "dry-run", fill, plan.changes, plan.unfixable, 0, 0, time.perf_counter() - t0,
                         None, os.fspath(output) if output is not None else None, False, (), tuple(notes))
    out = os.fspath(output)  # type: ignore[arg-type]
    link, carry = _carried(target, shard_files)
    copied = write_copy(plan, out, link, carry)
    return FixResult(path, "output", fill, plan.changes, plan.unfixable, copied.bytes_written, copied.shards_touched,
                     time.perf_counter() - t0, None, out, True, (), tuple(notes) + copied.notes,
                     writes=copied.writes)


def _remote_copy(path: str, options: ScanOptions, dry_run: bool, output: str | os.PathLike[str],
                 progress: Progress | None, t0: float, ignore_tensors: tuple[Any, ...] = ()) -> FixResult:
    """--output for a URL: scan remotely, fetch only the shards that change (plus config and index)
    into a staging directory beside DIR, and build the repaired copy from there. DIR then holds the
    repaired shards, not the whole checkpoint."""
    from fp8doctor.checkpoint.remote import download

    out = os.fspath(output)
    fill = fill_name(options.fill)
    if not dry_run and os.path.lexists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise FixError(f"--output {out} already exists and is not an empty directory; nothing was written")
    parent = os.path.dirname(os.path.abspath(out))
    if not dry_run and not os.path.isdir(parent):
        raise FixError(f"--output {out}: its parent directory {parent} does not exist")
    staging = os.path.join(parent, f".{os.path.basename(os.path.abspath(out))}.fp8doctor-fetch-{os.getpid()}")
    try:
        with open_checkpoint(path) as ckpt:
            plan = _plan(ckpt, options, progress, ignore_tensors)
            if dry_run or plan.empty:
                mode = "dry-run" if dry_run else "output"
                return FixResult(path, mode, fill, plan.changes, plan.unfixable, 0, 0, time.perf_counter() - t0,
                                 None, out, False, (), ("nothing to repair: no copy was written",) if not dry_run
                                 else ())
            need = [sp.file for sp in plan.shards]
            before = ckpt.transfer.bytes_fetched
            download(ckpt, need, staging)
            carry = []
            assert ckpt.store is not None
            for name in ("config.json", INDEX_NAME):
                data = ckpt.store.read_small(name, 256 << 20)
                if data is not None:
                    with open(os.path.join(staging, name), "wb") as f:
                        f.write(data)
                    carry.append(name)
            fetched = ckpt.transfer.bytes_fetched - before
            total = len(ckpt.shards)
        staged = replace(plan, root=staging, shards=tuple(
            replace(sp, mtime_ns=os.stat(os.path.join(staging, sp.file)).st_mtime_ns) for sp in plan.shards))
        copied = write_copy(staged, out, need, carry)
    except OSError as e:
        raise FixError(f"cannot stage the shards to repair in {staging}: {e.strerror or e}; nothing was written") \
            from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    held = " and " + ", ".join(carry) if carry else ""
    notes = (f"fetched {len(need)} of {total} shards ({fetched:,} bytes); {out} holds only the repaired shards{held}",
             *copied.notes)
    return FixResult(path, "output", fill, plan.changes, plan.unfixable, copied.bytes_written, copied.shards_touched,
                     time.perf_counter() - t0, None, out, True, (), notes, writes=copied.writes)
