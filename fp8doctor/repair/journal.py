"""The fix journal: a durable record of every byte a fix overwrites, so a killed fix can be
completed and a finished one undone.

Layout of a journal directory (default `ROOT/.fp8doctor-journal/`):
  ID.bin   per shard: each patch's old bytes then its new bytes, then the shard's patch table
           (PATCH_TABLE: offset, length, tensor index; 16 bytes a patch). Written once.
  ID.json  small: per shard its size, mtime before/after, sha256 of old and new range contents,
           patch count, where its bytes and table start in ID.bin, its tensors; the size and sha256
           of the whole ID.bin (a damaged .bin is refused); and `state` with its history
  lock     held (flock) by the running fix

Version 1 journals (ID.bin holding only the bytes, every patch listed in ID.json) are still read,
completed and undone; their state changes keep their own format.

Commit order: ID.bin is written and fsynced, then ID.json is written to a temp file, fsynced and
renamed into place, then the directory is fsynced. A journal exists only once ID.json does; shards
are written only after that. State changes (pending -> done, done -> undoing -> undone) rewrite
ID.json the same way, so each is atomic.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fp8doctor.checkpoint.paths import O_CLOEXEC, O_NOFOLLOW, escapes, open_dir_nofollow, refuse_device, unsafe_name
from fp8doctor.findings import Finding, Region, Severity
from fp8doctor.repair import hooks
from fp8doctor.repair.errors import DiskFull, FixError, JournalError, ReadOnly
from fp8doctor.repair.hooks import crash_point
from fp8doctor.repair.plan import RepairPlan, fill_name

JOURNAL_DIRNAME = ".fp8doctor-journal"
FORMAT = "fp8doctor-journal"
VERSION = 2
"""Version written; version 1 journals (patches listed in ID.json) are still read and completed."""

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


def write_all(fd: int, data: bytes | memoryview, offset: int | None = None) -> None:
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
"""One row per patch in a version 2 ID.bin (16 bytes): shard offset, length, index into the shard's
`tensors`. A patch's old bytes sit in ID.bin at the shard's `data` position plus twice the lengths
of the patches before it; its new bytes follow them."""


@dataclass(slots=True)
class JournalPatch:
    offset: int
    length: int
    bin_offset: int
    tensor: str
    encoding: str


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
    """(offset, length, bin_offset, tensor index), int64; read from ID.bin on first use for version 2."""
    checked: bool = field(default=False, repr=False)
    """The arrays were checked against the shard's size and ID.bin (Journal.arrays)."""


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
        """(offset, length, bin_offset, tensor index) of every patch of `s`, in shard order; every
        patch checked to lie inside the shard and its bytes inside ID.bin (a journal is untrusted)."""
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

    def patches(self, s: JournalShard) -> Iterator[JournalPatch]:
        """The patches of shard `s`, one at a time (built on the fly from the arrays)."""
        off, length, pos, tensor = self.arrays(s)
        names = s.tensors
        for a in range(0, s.count, 8192):  # in slices: lists of every patch's ints would cost tens of MB
            b = a + 8192
            for o, n, p, t in zip(off[a:b].tolist(), length[a:b].tolist(), pos[a:b].tolist(), tensor[a:b].tolist()):
                name, enc = names[t]
                yield JournalPatch(o, n, p, name, enc)

    def old(self, p: JournalPatch) -> bytes:
        return self.data()[p.bin_offset:p.bin_offset + p.length]

    def new(self, p: JournalPatch) -> bytes:
        return self.data()[p.bin_offset + p.length:p.bin_offset + 2 * p.length]

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
                sd["patches"] = [[p.offset, p.length, p.bin_offset, p.tensor, p.encoding] for p in self.patches(s)]
            else:
                sd.update({"patches": s.count, "bytes": s.nbytes, "data": s.data_pos, "table": s.table_pos,
                           "tensors": [list(t) for t in s.tensors]})
            shards.append(sd)
        d["shards"] = shards
        return d

    @classmethod
    def from_dict(cls, directory: str, d: dict[str, Any]) -> Journal:
        version = d.get("version")
        if d.get("format") != FORMAT or version not in (1, 2):
            raise ValueError(f"not a version 1 or 2 {FORMAT}")
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
            else:
                shards.append(JournalShard(*head, int(s["patches"]), int(s["bytes"]),
                                           [(str(t), str(e)) for t, e in s["tensors"]], after, int(s["data"]),
                                           int(s["table"])))
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
    per shard, each patch's old then new bytes followed by the shard's patch table."""
    # one preallocated buffer: bytes.join over ~2 items a patch would hold a Py_buffer per item (~80
    # bytes each: tens of MB for a few hundred thousand runs)
    buf = bytearray(len(BIN_MAGIC) + sum(2 * sp.nbytes + len(sp.patches) * PATCH_TABLE.itemsize
                                         for sp in plan.shards))
    view = memoryview(buf)
    view[:len(BIN_MAGIC)] = BIN_MAGIC
    pos = len(BIN_MAGIC)
    shards = []
    for sp in plan.shards:
        old_h, new_h = hashlib.sha256(), hashlib.sha256()
        tensors: list[tuple[str, str]] = []
        index: dict[tuple[str, str], int] = {}
        n = len(sp.patches)
        offset = np.empty(n, dtype=np.int64)
        length = np.empty(n, dtype=np.int64)
        tensor = np.empty(n, dtype=np.int64)
        data_pos = pos
        for i, p in enumerate(sp.patches):
            key = (p.tensor, p.encoding)
            k = index.get(key)
            if k is None:
                k = index[key] = len(tensors)
                tensors.append(key)
            m = p.length
            offset[i], length[i], tensor[i] = p.offset, m, k
            view[pos:pos + m] = p.old
            view[pos + m:pos + 2 * m] = p.new
            pos += 2 * m
            old_h.update(p.old)
            new_h.update(p.new)
        if n and int(length.max()) >= 1 << 32:
            raise ValueError(f"{sp.file}: a patch of {int(length.max()):,} bytes does not fit the journal's table")
        table = np.empty(n, dtype=PATCH_TABLE)
        table["offset"], table["length"], table["tensor"] = offset, length, tensor
        table_pos = pos
        view[pos:pos + table.nbytes] = table.tobytes()
        pos += table.nbytes
        bin_offset = data_pos + 2 * (np.cumsum(length) - length)
        shards.append(JournalShard(sp.file, sp.size, sp.mtime_ns, old_h.hexdigest(), new_h.hexdigest(), n,
                                   int(length.sum()), tensors, None, data_pos, table_pos,
                                   (offset, length, bin_offset, tensor)))
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
        return [Finding("fix-interrupted", Severity.ERROR, None, None,
                        f"the fix journal cannot be read: {e}", Region.FILE)]
    out = []
    for j in journals:
        if j.state in (PENDING, UNDOING):
            what = "a fix" if j.state == PENDING else "an undo"
            shards = ", ".join(s.file for s in j.shards[:3]) + (" ..." if len(j.shards) > 3 else "")
            out.append(Finding(
                "fix-interrupted", Severity.ERROR, os.path.join(JOURNAL_DIRNAME, j.id + ".json"), None,
                f"{what} of this checkpoint is running or was interrupted (journal {j.id}, state {j.state}); "
                f"{shards} may be half-written. Run `fp8doctor fix {j.target}` to complete it, or "
                f"`fp8doctor fix --undo {j.target}` to roll it back", Region.FILE, count=len(j.shards)))
    return out
