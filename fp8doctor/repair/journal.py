"""The fix journal: a durable record of every byte a fix overwrites, so a killed fix can be
completed and a finished one undone.

Layout of a journal directory (default `ROOT/.fp8doctor-journal/`), version 3:
  ID.bin   per shard: each changed tensor's old bytes (the new bytes are the fill: not stored),
           then the run table (PATCH_TABLE: offset, length, tensor index; 16 bytes a run) of the
           tensors journaled run by run. Written once.
  ID.json  small: per shard its size, mtime before/after, sha256 of old and new range contents,
           and one row per tensor: offset, shape, logical box, fill, mode, where its old bytes (and
           run table) start in ID.bin; the size and sha256 of the whole ID.bin (a damaged .bin is
           refused); and `state` with its history
  lock     held (flock) by the running fix

A tensor is journaled in "padding" mode (the old bytes of every padded entry; which bytes those are
follows from the shape and the logical box, so no table) or in "runs" mode (the old bytes of the runs
that differ from the fill, plus their table), whichever is smaller: the journal is at most the bytes
changed plus 16 bytes a run, and at most the padded bytes of the changed tensors.

Version 2 journals (each patch's old and new bytes, a table row each) and version 1 journals
(every patch listed in ID.json) are still read, completed and undone; their state changes keep
their own format.

Commit order: ID.bin is written and fsynced, then ID.json is written to a temp file, fsynced and
renamed into place, then the directory is fsynced. A journal exists only once ID.json does; shards
are written only after that. State changes (pending -> done, done -> undoing -> undone) rewrite
ID.json the same way, so each is atomic.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import math
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fp8doctor.checkpoint.paths import O_CLOEXEC, O_NOFOLLOW, escapes, open_dir_nofollow, refuse_device, unsafe_name
from fp8doctor.checkpoint.target import JOURNAL_DIRNAME as JOURNAL_DIRNAME  # its one definition
from fp8doctor.findings import Finding
from fp8doctor.layouts.model import fill_name, padding_arrays
from fp8doctor.repair import hooks
from fp8doctor.repair.errors import DiskFull, FixError, JournalError, ReadOnly
from fp8doctor.repair.hooks import crash_point
from fp8doctor.repair.spans import Span, group
from fp8doctor.rules.catalog import emit

if TYPE_CHECKING:
    from fp8doctor.repair.plan import RepairPlan

FORMAT = "fp8doctor-journal"
VERSION = 3
"""Version written; version 1 and 2 journals are still read, completed and undone."""

PENDING = "pending"          # committed; shards may be partly patched -> recovery rolls forward
DONE = "done"                # every patch written, fsynced and verified -> `--undo` can restore
UNDOING = "undoing"          # an undo started -> recovery completes it
UNDONE = "undone"            # original bytes restored
ROLLED_BACK = "rolled-back"  # a failed fix restored the original bytes itself

BIN_MAGIC = b"fp8doctor-jbin\x00\x02"
"""The first 16 bytes of every ID.bin written since issue 13: clean-up removes an orphaned .bin only
when it starts with this (a user's *.bin in a --journal-dir is never touched)."""
JSON_MAGIC = b'{"format":"' + FORMAT.encode() + b'"'
"""How every ID.json (and its temp file) starts (`format` is the first key written)."""
JSON_LIMIT = 256 << 20
"""An ID.json is read up to this many bytes (a version 1 journal of a million patches is ~60 MB):
a planted 8 GiB one is refused, not read into memory."""
OWN_NAME = re.compile(r"^[0-9]{20}-[0-9]+\.(bin|json|json\.tmp)$")
"""The names fp8doctor gives journal files."""


def os_error(e: OSError, what: str) -> FixError:
    """A one-line FixError of the right kind for an OSError."""
    reason = e.strerror or str(e)
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(f"{what}: no space left on device ({reason}); nothing was changed")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ReadOnly(f"{what}: {reason}")
    return JournalError(f"{what}: {reason}")


def write_all(fd: int, data: bytes | bytearray | memoryview, offset: int | None = None) -> None:
    """os.write/os.pwrite until every byte is written (short writes happen on full disks)."""
    hooks.count_write()
    view = memoryview(data)
    done = 0
    while done < len(view):
        if offset is None:
            n = os.write(fd, view[done:])
        else:
            n = os.pwrite(fd, view[done:], offset + done)
        if n <= 0:
            raise OSError(errno.EIO, "write returned no progress")
        done += n


class _Dir:
    """A descriptor of a journal directory opened without following a symlink (O_NOFOLLOW): every
    journal file is opened, renamed and removed relative to it, never through a path that a symlink
    could redirect."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        try:
            self.fd = open_dir_nofollow(directory)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(directory):
                raise JournalError(f"the journal directory {directory} is a symlink; refusing to follow it "
                                   "(remove it, or pass --journal-dir DIR)") from None
            raise

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def open_in(dfd: int, name: str, flags: int, directory: str = "the journal directory") -> int:
    """Open `name` inside the directory `dfd` without following a symlink; a symlink or a device
    node is refused."""
    try:
        refuse_device(name, dfd)
        return os.open(name, flags | O_NOFOLLOW | O_CLOEXEC, 0o644, dir_fd=dfd)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise JournalError(f"{os.path.join(directory, name)} is a symlink; refusing to follow it (remove "
                               "it to continue)") from None
        if e.errno == errno.EINVAL:
            raise JournalError(f"{os.path.join(directory, name)} is not a regular file") from None
        raise


def write_durable(path: str, data: bytes) -> None:
    """Create `path` (a new file: never an existing one, never through a symlink) with `data` and
    fsync it; a failed write removes the partial file."""
    directory, name = os.path.split(path)
    with _Dir(directory or ".") as dfd:
        _unlink_at(dfd, name)  # a leftover of our own earlier attempt; unlink never follows a link
        fd = open_in(dfd, name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, directory)
        try:
            write_all(fd, data)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            _unlink_at(dfd, name)
            raise
        os.close(fd)


def fsync_dir(path: str) -> None:
    """fsync a directory (only read: following a symlink here cannot write anywhere)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_at(dfd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dfd)
    except FileNotFoundError:
        pass


def _remove(path: str) -> None:
    directory, name = os.path.split(path)
    with _Dir(directory or ".") as dfd:
        _unlink_at(dfd, name)


def read_in(directory: str, name: str, limit: int | None = None) -> bytes:
    """A journal file's bytes (regular files only, never through a symlink; at most `limit`)."""
    with _Dir(directory) as dfd:
        fd = open_in(dfd, name, os.O_RDONLY | os.O_NONBLOCK, directory)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise JournalError(f"{os.path.join(directory, name)} is not a regular file")
        want = st.st_size if limit is None else min(st.st_size, limit)
        chunks, got = [], 0
        while got < want:
            chunk = os.pread(fd, min(want - got, 1 << 30), got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


PATCH_TABLE = np.dtype([("offset", "<i8"), ("length", "<u4"), ("tensor", "<u4")])
"""One row per patch in a version 2 ID.bin, and per run of a "runs" tensor in a version 3 one (16
bytes): shard offset, length, index into the shard's tensors. Version 2: a patch's old bytes sit in
ID.bin at the shard's `data` position plus twice the lengths of the patches before it; its new bytes
follow them. Version 3: the run's old bytes follow those of the runs before it in the tensor's data."""


@dataclass(slots=True)
class JournalPatch:
    """One byte range of a journal with its old and new bytes (for inspection and conversions;
    writes go through `Journal.spans`)."""

    offset: int
    length: int
    bin_offset: int
    tensor: str
    encoding: str
    old: bytes = b""
    new: bytes = b""


@dataclass
class JournalTensor:
    """Version 3: one scale tensor of a shard. Its ranges are every padded entry (`mode`
    "padding": computed from `shape` and `logical`) or runs listed in the shard's table ("runs");
    its old bytes, concatenated in range order, are ID.bin[data:data + nbytes]; the new bytes are
    `fill` repeated."""

    name: str
    encoding: str
    offset: int
    shape: tuple[int, ...]
    logical: tuple[int, ...]
    itemsize: int
    fill: bytes
    mode: str
    data: int
    nbytes: int
    table: int = -1
    count: int = 0
    entries: int = 0
    runs: int = 0
    first: int = 0
    before: bytes = b""

    def to_list(self) -> list[Any]:
        return [self.name, self.encoding, self.offset, list(self.shape), list(self.logical), self.itemsize,
                self.fill.hex(), self.mode, self.data, self.nbytes, self.table, self.count, self.entries, self.runs,
                self.first, self.before.hex()]

    @classmethod
    def from_list(cls, r: list[Any]) -> JournalTensor:
        return cls(str(r[0]), str(r[1]), int(r[2]), tuple(int(n) for n in r[3]), tuple(int(n) for n in r[4]),
                   int(r[5]), bytes.fromhex(r[6]), str(r[7]), int(r[8]), int(r[9]), int(r[10]), int(r[11]),
                   int(r[12]), int(r[13]), int(r[14]), bytes.fromhex(r[15]))


@dataclass
class JournalShard:
    """One shard's patches, held as arrays (a fix can have hundreds of thousands of runs)."""

    file: str
    size: int
    mtime_ns_before: int
    old_sha256: str
    new_sha256: str
    count: int
    nbytes: int
    tensors: list[tuple[str, str]]
    mtime_ns_after: int | None = None
    data_pos: int = 0    # version 2: where the shard's old/new bytes start in ID.bin
    table_pos: int = 0   # version 2: where the shard's patch table starts in ID.bin
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    """Versions 1-2: (offset, length, bin_offset, tensor index), int64; read from ID.bin on first use."""
    checked: bool = field(default=False, repr=False)
    """The arrays were checked against the shard's size and ID.bin (Journal.arrays)."""
    v3: list[JournalTensor] = field(default_factory=list)
    """Version 3: the shard's tensors, in offset order."""


@dataclass
class Journal:
    directory: str
    id: str
    state: str
    root: str
    target: str
    fill: str
    created: str
    tool_version: str
    bin_size: int
    bin_sha256: str
    shards: list[JournalShard]
    history: list[list[str]] = field(default_factory=list)
    _bin: bytes | None = field(default=None, repr=False)
    version: int = VERSION

    @property
    def json_path(self) -> str:
        return os.path.join(self.directory, f"{self.id}.json")

    @property
    def bin_path(self) -> str:
        return os.path.join(self.directory, f"{self.id}.bin")

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.shards)

    def disk_bytes(self) -> int:
        """Bytes the journal's files take (ID.bin and ID.json)."""
        total = 0
        for p in (self.bin_path, self.json_path):
            try:
                total += os.path.getsize(p)
            except OSError:
                pass
        return total

    def data(self) -> bytes:
        """The journal's bytes, checked against the recorded sha256."""
        if self._bin is None:
            try:
                blob = read_in(self.directory, os.path.basename(self.bin_path), self.bin_size + 1)
            except OSError as e:
                raise JournalError(f"journal {self.bin_path} cannot be read: {e.strerror or e}") from None
            if len(blob) != self.bin_size or hashlib.sha256(blob).hexdigest() != self.bin_sha256:
                raise JournalError(f"journal {self.bin_path} is damaged (size or sha256 differs from {self.json_path})")
            self._bin = blob
        return self._bin

    def arrays(self, s: JournalShard) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Versions 1-2: (offset, length, bin_offset, tensor index) of every patch of `s`, in shard
        order; every patch checked to lie inside the shard and its bytes inside ID.bin (a journal is
        untrusted)."""
        if s.arrays is None:
            blob = self.data()
            end = s.table_pos + s.count * PATCH_TABLE.itemsize
            if s.count < 0 or s.table_pos < 0 or end > len(blob):
                raise JournalError(f"journal {self.json_path}: the patch table of {s.file} lies outside "
                                   f"{self.bin_path}")
            t = np.frombuffer(blob, dtype=PATCH_TABLE, count=s.count, offset=s.table_pos)
            length = t["length"].astype(np.int64)
            pos = s.data_pos + 2 * (np.cumsum(length) - length)
            tensor = t["tensor"].astype(np.int64)
            if int(length.sum()) != s.nbytes or (s.count and (int(pos[-1]) + 2 * int(length[-1]) > len(blob)
                                                             or int(tensor.max()) >= len(s.tensors))):
                raise JournalError(f"journal {self.json_path}: the patch table of {s.file} is inconsistent")
            s.arrays = (t["offset"].astype(np.int64), length, pos, tensor)
        if not s.checked:
            off, length, pos, _ = s.arrays
            if len(off) != s.count or (s.count and (int(off.min()) < 0 or int((off + length).max()) > s.size
                                                    or int(length.min()) < 1 or int(pos.min()) < 0
                                                    or int((pos + 2 * length).max()) > len(self.data()))):
                raise JournalError(f"journal {self.json_path}: a patch of {s.file} lies outside the shard "
                                   f"({s.size:,} bytes) or outside {self.bin_path}")
            s.checked = True
        return s.arrays

    def ranges(self, s: JournalShard) -> Iterator[tuple[str, str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Per tensor of shard `s`, in offset order: (tensor, encoding, absolute offsets, lengths,
        old bytes, new bytes) of its byte ranges (uint8 arrays, concatenated in range order)."""
        blob = np.frombuffer(self.data(), dtype=np.uint8)
        if self.version >= 3:
            for t in s.v3:
                off, ln = self._v3_ranges(s, t)
                old = blob[t.data:t.data + t.nbytes]
                new = np.frombuffer(t.fill * (t.nbytes // t.itemsize), dtype=np.uint8)
                yield t.name, t.encoding, t.offset + off, ln, old, new
            return
        off, length, pos, tensor = self.arrays(s)
        if not s.count:
            return
        cuts = [0, *(np.flatnonzero(np.diff(tensor)) + 1).tolist(), s.count]
        for a, b in itertools.pairwise(cuts):
            ln = length[a:b]
            total = int(ln.sum())
            # byte positions of each patch's old bytes in ID.bin; its new bytes follow them
            idx = np.repeat(pos[a:b] - (np.cumsum(ln) - ln), ln) + np.arange(total, dtype=np.int64)
            within = np.repeat(ln, ln)
            name, enc = s.tensors[int(tensor[a])]
            yield name, enc, off[a:b], ln, blob[idx], blob[idx + within]

    def _v3_ranges(self, s: JournalShard, t: JournalTensor) -> tuple[np.ndarray, np.ndarray]:
        """Offsets (relative to the tensor) and lengths of a version 3 tensor's ranges, checked."""
        blob = self.data()
        numel = math.prod(t.shape)
        if (t.offset < 0 or t.itemsize not in (1, 2, 4) or any(d < 0 for d in t.shape)
                or t.offset + numel * t.itemsize > s.size or t.nbytes < 0 or t.data < 0
                or t.data + t.nbytes > len(blob)):  # checked before any array is sized from these claims
            raise JournalError(f"journal {self.json_path}: the patch table of {s.file} is inconsistent ({t.name} "
                               f"lies outside the shard's {s.size:,} bytes or outside {self.bin_path})")
        if t.mode == "padding":
            a, e = padding_arrays(t.shape, t.logical)
            off, ln = a * t.itemsize, (e - a) * t.itemsize
        elif t.mode == "runs" and 0 <= t.table and t.table + t.count * PATCH_TABLE.itemsize <= len(blob):
            rows = np.frombuffer(blob, dtype=PATCH_TABLE, count=t.count, offset=t.table)
            off, ln = rows["offset"].astype(np.int64) - t.offset, rows["length"].astype(np.int64)
        else:
            raise JournalError(f"journal {self.json_path}: the ranges of {t.name} in {s.file} lie outside "
                               f"{self.bin_path}")
        bad = (len(t.logical) != len(t.shape) or len(t.fill) != t.itemsize or int(ln.sum()) != t.nbytes
               or (off.size and (int(off[0]) < 0 or int(off[-1] + ln[-1]) > numel * t.itemsize
                                 or bool((off[1:] < off[:-1] + ln[:-1]).any()))))
        if bad:
            raise JournalError(f"journal {self.json_path}: the patch table of {s.file} is inconsistent ({t.name})")
        return off, ln

    def spans(self, s: JournalShard) -> Iterator[Span]:
        """Shard `s`'s writes: one span per page-close group of ranges of one tensor."""
        for name, _enc, off, ln, old, new in self.ranges(s):
            yield from group(off, ln, old, new, name)

    def patches(self, s: JournalShard) -> Iterator[JournalPatch]:
        """The byte ranges of shard `s`, one at a time, with their old and new bytes."""
        for name, enc, off, ln, old, new in self.ranges(s):
            pos = 0
            for o, n in zip(off.tolist(), ln.tolist()):
                yield JournalPatch(o, n, pos, name, enc, old[pos:pos + n].tobytes(), new[pos:pos + n].tobytes())
                pos += n

    def old(self, p: JournalPatch) -> bytes:
        return p.old

    def new(self, p: JournalPatch) -> bytes:
        return p.new

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format": FORMAT, "version": self.version, "id": self.id, "state": self.state, "root": self.root,
            "target": self.target, "fill": self.fill, "created": self.created, "tool_version": self.tool_version,
            "bin": os.path.basename(self.bin_path), "bin_size": self.bin_size, "bin_sha256": self.bin_sha256,
            "history": self.history,
        }
        shards = []
        for s in self.shards:
            sd: dict[str, Any] = {"file": s.file, "size": s.size, "mtime_ns_before": s.mtime_ns_before,
                                  "mtime_ns_after": s.mtime_ns_after, "old_sha256": s.old_sha256,
                                  "new_sha256": s.new_sha256}
            if self.version == 1:  # an old journal keeps its own format: its ID.bin has no patch table
                off, length, pos, tensor = self.arrays(s)
                sd["patches"] = [[o, n, b, *s.tensors[t]] for o, n, b, t in
                                 zip(off.tolist(), length.tolist(), pos.tolist(), tensor.tolist())]
            elif self.version == 2:
                sd.update({"patches": s.count, "bytes": s.nbytes, "data": s.data_pos, "table": s.table_pos,
                           "tensors": [list(t) for t in s.tensors]})
            else:
                sd.update({"bytes": s.nbytes, "tensors": [t.to_list() for t in s.v3]})
            shards.append(sd)
        d["shards"] = shards
        return d

    @classmethod
    def from_dict(cls, directory: str, d: dict[str, Any]) -> Journal:
        version = d.get("version")
        if d.get("format") != FORMAT or version not in (1, 2, 3):
            raise ValueError(f"not a version 1, 2 or 3 {FORMAT}")
        shards = []
        for s in d["shards"]:
            head = (str(s["file"]), int(s["size"]), int(s["mtime_ns_before"]), str(s["old_sha256"]),
                    str(s["new_sha256"]))
            after = s.get("mtime_ns_after")
            after = None if after is None else int(after)
            if version == 1:
                rows = [(int(o), int(n), int(b), str(t), str(e)) for o, n, b, t, e in s["patches"]]
                tensors = sorted({(t, e) for _, _, _, t, e in rows})
                index = {te: i for i, te in enumerate(tensors)}
                cols = [[r[k] for r in rows] for k in range(3)] + [[index[(r[3], r[4])] for r in rows]]
                a, b, c, e = (np.array(col, dtype=np.int64) for col in cols)
                arrays = (a, b, c, e)
                shards.append(JournalShard(*head, len(rows), sum(r[1] for r in rows), tensors, after, arrays=arrays))
            elif version == 2:
                shards.append(JournalShard(*head, int(s["patches"]), int(s["bytes"]),
                                           [(str(t), str(e)) for t, e in s["tensors"]], after, int(s["data"]),
                                           int(s["table"])))
            else:
                ts = [JournalTensor.from_list(r) for r in s["tensors"]]
                shards.append(JournalShard(*head, len(ts), int(s["bytes"]), [(t.name, t.encoding) for t in ts], after,
                                           v3=ts))
        return cls(directory, str(d["id"]), str(d["state"]), str(d["root"]), str(d["target"]), str(d["fill"]),
                   str(d["created"]), str(d.get("tool_version", "")), int(d["bin_size"]), str(d["bin_sha256"]),
                   shards, [list(h) for h in d.get("history", [])], version=int(version))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _commit_json(j: Journal, crash: str | None = None) -> None:
    tmp = j.json_path + ".tmp"
    # compact: `indent` would force json's pure-Python encoder (seconds for 300k patches) and triple the size
    write_durable(tmp, (json.dumps(j.to_dict(), separators=(",", ":")) + "\n").encode())
    if crash:
        crash_point(crash)
    with _Dir(j.directory) as dfd:  # both names relative to the directory's descriptor
        os.replace(os.path.basename(tmp), os.path.basename(j.json_path), src_dir_fd=dfd, dst_dir_fd=dfd)
        os.fsync(dfd)


def create(directory: str, plan: RepairPlan, target: str, tool_version: str) -> Journal:
    """Record every byte the plan overwrites, durably, before any shard is touched. ID.bin holds,
    per shard, each tensor's old bytes (the new ones are the fill) followed by the run table of its
    "runs" tensors; the file starts with BIN_MAGIC."""
    size = len(BIN_MAGIC) + sum(p.covered + (PATCH_TABLE.itemsize * p.lengths.size if p.mode == "runs" else 0)
                                for sp in plan.shards for p in sp.patches)
    buf = bytearray(size)
    view = memoryview(buf)
    view[:len(BIN_MAGIC)] = BIN_MAGIC
    pos = len(BIN_MAGIC)
    shards = []
    for sp in plan.shards:
        old_h, new_h = hashlib.sha256(), hashlib.sha256()
        rows: list[JournalTensor] = []
        for p in sp.patches:
            n = p.covered
            view[pos:pos + n] = p.old
            old_h.update(p.old)
            new_h.update(p.new())
            rows.append(JournalTensor(p.tensor, p.encoding, p.offset, p.shape, p.logical, p.itemsize, p.fill, p.mode,
                                      pos, n, entries=p.entries, runs=p.runs, first=p.first, before=p.before))
            pos += n
        for k, (p, row) in enumerate(zip(sp.patches, rows)):
            if p.mode != "runs":
                continue
            if p.lengths.size and int(p.lengths.max()) >= 1 << 32:
                raise ValueError(f"{sp.file}: a run of {int(p.lengths.max()):,} bytes does not fit the journal's table")
            table = np.empty(p.lengths.size, dtype=PATCH_TABLE)
            table["offset"], table["length"], table["tensor"] = p.offset + p.starts, p.lengths, k
            row.table, row.count = pos, table.size
            view[pos:pos + table.nbytes] = table.tobytes()
            pos += table.nbytes
        shards.append(JournalShard(sp.file, sp.size, sp.mtime_ns, old_h.hexdigest(), new_h.hexdigest(), len(rows),
                                   sum(p.nbytes for p in sp.patches), [(r.name, r.encoding) for r in rows], None,
                                   v3=rows))
    view.release()
    if pos != len(buf):
        raise ValueError(f"journal size mismatch: {pos} != {len(buf)}")
    blob = bytes(buf)
    del buf
    jid = f"{time.time_ns():020d}-{os.getpid()}"
    j = Journal(directory, jid, PENDING, os.path.realpath(plan.root), target, fill_name(plan.fill), _now(),
                tool_version, len(blob), hashlib.sha256(blob).hexdigest(), shards, [[PENDING, _now()]], blob)
    try:
        write_durable(j.bin_path, blob)
        crash_point("journal-bin")
        _commit_json(j)
    except OSError as e:
        discard(j)
        raise os_error(e, f"cannot write the journal in {directory}") from None
    crash_point("journal-commit")
    return j


def set_state(j: Journal, state: str, crash: str | None = None) -> None:
    """Move the journal to `state` atomically (temp file, fsync, rename, fsync directory)."""
    old = j.state
    j.state = state
    j.history.append([state, _now()])
    try:
        _commit_json(j, crash)
    except OSError as e:
        j.state = old
        j.history.pop()
        raise os_error(e, f"cannot update the journal {j.json_path}") from None


def discard(j: Journal) -> None:
    """Remove an uncommitted (or rolled-back) journal's files."""
    for p in (j.json_path + ".tmp", j.json_path, j.bin_path):
        try:
            _remove(p)
        except OSError:
            pass


def _listdir(directory: str) -> list[str] | None:
    try:
        with _Dir(directory) as dfd:
            return os.listdir(dfd)
    except FileNotFoundError:
        return None


def check_names(j: Journal, root: str) -> None:
    """Every file a journal names must be a plain relative name of a shard (`*.safetensors`, not in
    the journal directory) inside the checkpoint at `root` (checked before recovery or undo uses any
    of them): a planted journal cannot make fix write config.json, the lock or another journal."""
    for s in j.shards:
        where = escapes(root, s.file) if not unsafe_name(s.file) else s.file
        if where is not None:
            raise JournalError(f"journal {j.json_path} names the file {s.file!r}, outside the checkpoint "
                               f"({where}); nothing was written. Move the journal away to continue")
        if not s.file.endswith(".safetensors") or JOURNAL_DIRNAME in s.file.replace("\\", "/").split("/"):
            raise JournalError(f"journal {j.json_path} names the file {s.file!r}, which is not a shard of the "
                               "checkpoint; nothing was written. Move the journal away to continue")


def load_all(directory: str, root: str) -> list[Journal]:
    """Committed journals of the checkpoint at `root`, oldest first (their file names checked)."""
    try:
        listing = _listdir(directory)
    except FixError:
        raise
    except OSError as e:
        raise JournalError(f"cannot list the journal directory {directory}: {e.strerror or e}") from None
    if listing is None:
        return []
    names = sorted(n for n in listing if n.endswith(".json"))
    real_root = os.path.realpath(root)
    out = []
    for n in names:
        path = os.path.join(directory, n)
        try:
            raw = read_in(directory, n, JSON_LIMIT + 1)
            if len(raw) > JSON_LIMIT:
                raise OSError(errno.EFBIG, f"larger than {JSON_LIMIT:,} bytes")
            j = Journal.from_dict(directory, json.loads(raw))
        except FixError as e:
            raise JournalError(f"journal {path} cannot be read ({e}); move it away to continue") from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
            raise JournalError(f"journal {path} cannot be read ({type(e).__name__}: {e}); move it away to "
                               "continue") from None
        if j.id != n[:-5]:
            raise JournalError(f"journal {path} names id {j.id!r}; move it away to continue")
        if j.root == real_root:
            check_names(j, root)
            out.append(j)
    return out


def _ours(dfd: int, name: str, magic: bytes) -> bool:
    """A regular file (not a link) named like a journal file and starting with `magic`."""
    if not OWN_NAME.match(name):
        return False
    try:
        if not stat.S_ISREG(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode):
            return False
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC, dir_fd=dfd)
    except OSError:
        return False
    try:
        return os.pread(fd, len(magic), 0) == magic
    finally:
        os.close(fd)


def clean_orphans(directory: str) -> list[str]:
    """Remove leftovers of journals that were never committed (a fix killed before any shard write):
    only files fp8doctor wrote (its name pattern and its magic), never anything else in the directory."""
    removed: list[str] = []
    try:
        with _Dir(directory) as dfd:
            names = set(os.listdir(dfd))
            for n in sorted(names):
                if n.endswith(".json.tmp"):
                    orphan = _ours(dfd, n, JSON_MAGIC)
                elif n.endswith(".bin") and n[:-4] + ".json" not in names:
                    orphan = _ours(dfd, n, BIN_MAGIC)
                else:
                    continue
                if orphan:
                    _unlink_at(dfd, n)
                    removed.append(n)
    except FileNotFoundError:
        pass
    return removed


def interrupted(root: str) -> list[Finding]:
    """`fix-interrupted` findings for the checkpoint at `root`: a fix or undo whose journal is not
    finished means shards may hold a mix of old and new bytes right now (a fix running, or killed).
    Scan reports it so a half-patched checkpoint never looks merely dirty or clean."""
    directory = os.path.join(root, JOURNAL_DIRNAME)
    if not os.path.isdir(directory):
        return []
    try:
        journals = load_all(directory, root)
    except FixError as e:
        return [emit("fix-interrupted", None, None, f"the fix journal cannot be read: {e}")]
    out = []
    for j in journals:
        if j.state in (PENDING, UNDOING):
            what = "a fix" if j.state == PENDING else "an undo"
            shards = ", ".join(s.file for s in j.shards[:3]) + (" ..." if len(j.shards) > 3 else "")
            out.append(emit(
                "fix-interrupted", os.path.join(JOURNAL_DIRNAME, j.id + ".json"), None,
                f"{what} of this checkpoint is running or was interrupted (journal {j.id}, state {j.state}); "
                f"{shards} may be half-written. Run `fp8doctor fix {j.target}` to complete it, or "
                f"`fp8doctor fix --undo {j.target}` to roll it back", count=len(j.shards)))
    return out
