"""A checkpoint as one model of its tensors (`Checkpoint`), where its files live (`Store`, a local
directory here, a base URL in remote/), and reading it: config, index, every shard header, and the
checks of the index against the shards (`load_files`, shared by local and remote checkpoints).

Only headers are read here. Problems with the index, the shards' presence, or their headers become
findings; only a path that cannot be a checkpoint at all raises `CheckpointError` (exit code 2).

`fp8doctor.checkpoint.loader.open_checkpoint` decides local or remote and opens either.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from fp8doctor.checkpoint.config import CONFIG_LIMIT, ModelConfig, read_config
from fp8doctor.checkpoint.header import ShardHeader, TensorInfo, parse_header
from fp8doctor.checkpoint.paths import allowed_root, escapes, open_inside, unsafe_name
from fp8doctor.checkpoint.source import ByteSource, LocalFile, read_small_file
from fp8doctor.checkpoint.target import INDEX_NAME
from fp8doctor.findings import Finding
from fp8doctor.rules.catalog import emit

INDEX_LIMIT = 256 << 20
"""The index is read up to this many bytes."""


from fp8doctor.errors import CheckpointError as CheckpointError  # noqa: E402  (defined with the other errors)


class Store(Protocol):
    """Where a checkpoint's files live. Names are relative to the checkpoint's root."""

    def path_of(self, name: str) -> str: ...

    def read_small(self, name: str, limit: int) -> bytes | None:
        """The whole (small) file, or None when it does not exist; OSError when it cannot be read."""

    def problem(self, name: str) -> tuple[str, str] | None:
        """A reason not to open a shard before trying: ("index-shard-missing" | "path-unsafe", message)."""

    def open(self, name: str) -> ByteSource:
        """A byte source for the shard; FileNotFoundError when it does not exist."""

    def close(self) -> None: ...


class LocalStore:
    """A checkpoint directory on a local filesystem."""

    def __init__(self, root: str, allowed: str | None = None) -> None:
        self.root = root
        self.allowed = allowed if allowed is not None else allowed_root(root)
        """Every shard path must resolve inside this folder (fp8doctor.checkpoint.paths)."""

    def path_of(self, name: str) -> str:
        return os.path.join(self.root, name)

    def read_small(self, name: str, limit: int) -> bytes | None:
        path = self.path_of(name)
        if not os.path.exists(path):
            return None
        return read_small_file(path, limit, open_inside(self.root, name, os.O_RDONLY | os.O_NONBLOCK, self.allowed))

    def list_shards(self) -> list[str] | None:
        """The .safetensors files in the directory (None when it cannot be listed)."""
        try:
            return sorted(n for n in os.listdir(self.root) if n.endswith(".safetensors"))
        except OSError:
            return None

    def problem(self, name: str) -> tuple[str, str] | None:
        full = self.path_of(name)
        if not os.path.lexists(full):
            return "index-shard-missing", ""
        where = escapes(self.root, name, self.allowed)
        if where is not None:
            how = "is a symlink to" if os.path.islink(full) else "goes through a symlink to"
            outside = "the checkpoint directory" if os.path.realpath(self.allowed) == os.path.realpath(self.root) \
                else f"the Hugging Face cache repo folder {os.path.basename(self.allowed)}"
            return "path-unsafe", f"shard {name} {how} {where}, outside {outside}; not read"
        return None

    def open(self, name: str) -> ByteSource:
        full = self.path_of(name)
        if os.path.isdir(full):
            raise IsADirectoryError(21, "is a directory")
        # component by component, no symlink followed out of the checkpoint even if one is swapped in
        fd = open_inside(self.root, name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0), self.allowed)
        return LocalFile(full, fd)  # closes fd itself when it is not a regular file

    def close(self) -> None:
        pass


@dataclass
class Checkpoint:
    root: str
    target: str
    shards: dict[str, ShardHeader] = field(default_factory=dict)
    tensors: dict[str, TensorInfo] = field(default_factory=dict)
    config: ModelConfig | None = None
    index: dict[str, str] | None = None
    findings: list[Finding] = field(default_factory=list)
    unread_files: set[str] = field(default_factory=set)
    store: Store | None = field(default=None, repr=False)
    _sources: dict[str, ByteSource] = field(default_factory=dict, repr=False)
    _index_counts: Counter[str] | None = field(default=None, repr=False)
    """Tensors the index names per shard (built on the first missing shard)."""

    def __post_init__(self) -> None:
        if self.store is None:
            self.store = LocalStore(self.root)

    @property
    def remote(self) -> bool:
        return not isinstance(self.store, LocalStore)

    @property
    def transfer(self) -> Any:
        """Network counters (`bytes_fetched`, `requests`) of a remote checkpoint; None for local ones."""
        return getattr(self.store, "transfer", None)

    def path_of(self, file: str) -> str:
        assert self.store is not None
        return self.store.path_of(file)

    def source(self, file: str) -> ByteSource:
        src = self._sources.get(file)
        if src is None:
            assert self.store is not None
            src = self._sources[file] = self.store.open(file)
        return src

    def read(self, t: TensorInfo, start: int = 0, length: int | None = None) -> bytes:
        """Read a tensor's bytes (or a slice of them, relative to the tensor's start)."""
        if length is None:
            length = t.nbytes - start
        return self.source(t.file).pread(t.offset + start, length)

    def readable(self, t: TensorInfo) -> bool:
        shard = self.shards.get(t.file)
        return shard is not None and shard.readable(t)

    @property
    def bytes_read(self) -> int:
        return sum(getattr(s, "bytes_read", 0) for s in self._sources.values())

    def close(self) -> None:
        for src in self._sources.values():
            src.close()
        self._sources.clear()
        if self.store is not None:
            self.store.close()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _finding(rule: str, file: str | None, message: str, tensor: str | None = None, count: int = 1) -> Finding:
    return emit(rule, file, tensor, message, count=count)  # severity and region from the catalogue




def load_files(ckpt: Checkpoint, index_name: str | None, shard_names: Callable[[], list[str]]) -> Checkpoint:
    """Read config, index and every shard header through `ckpt.store`, then check them against each
    other. `shard_names()` lists the shards when there is no index, or when the index cannot be read."""
    assert ckpt.store is not None
    store = ckpt.store
    ckpt.config, cfg_findings = read_config(lambda: store.read_small("config.json", CONFIG_LIMIT),
                                            lambda: store.read_small("hf_quant_config.json", CONFIG_LIMIT))
    ckpt.findings.extend(cfg_findings)
    if index_name is not None:
        ckpt.index = _read_index(ckpt, index_name, ckpt.findings)
    names = list(dict.fromkeys(ckpt.index.values())) if ckpt.index is not None else shard_names()
    prepare = getattr(store, "prepare", None)  # remote stores start every shard's header fetch at once
    if prepare is not None:
        prepare([n for n in names if not unsafe_name(n)])
    for name in names:
        _load_shard(ckpt, name)
    if ckpt.index is not None:
        _check_index(ckpt)
    else:
        _check_duplicates(ckpt)
    return ckpt


def _read_index(ckpt: Checkpoint, index_file: str, findings: list[Finding]) -> dict[str, str] | None:
    try:
        assert ckpt.store is not None
        data = ckpt.store.read_small(index_file, INDEX_LIMIT)
        if data is None:
            raise FileNotFoundError(2, "No such file or directory")
        obj = json.loads(data.decode("utf-8"))
    except OSError as e:
        findings.append(_finding("file-unreadable", index_file, f"index cannot be read: {e.strerror or e}"))
        return None
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        findings.append(_finding("index-invalid", index_file, f"index is not valid JSON ({type(e).__name__})"))
        return None
    wm = obj.get("weight_map") if isinstance(obj, dict) else None
    # JSON object keys are strings; the values' types are checked in C (90k entries for DeepSeek-V3)
    if not isinstance(wm, dict) or not set(map(type, wm.values())) <= {str}:
        findings.append(_finding("index-invalid", index_file,
                                 "index has no 'weight_map' object mapping tensor names to shard files"))
        return None
    if not wm:
        findings.append(_finding("index-invalid", index_file, "index's weight_map is empty: it names no tensor"))
        return None
    return wm


def _missing(ckpt: Checkpoint, name: str) -> None:
    if ckpt._index_counts is None:  # one pass over the index for every missing shard together: O(N)
        ckpt._index_counts = Counter((ckpt.index or {}).values())
    n = ckpt._index_counts.get(name, 0)
    ckpt.findings.append(_finding("index-shard-missing", name,
                                  f"shard {name} is named by the index for {n} tensors but does not exist",
                                  count=n))
    ckpt.unread_files.add(name)


def _load_shard(ckpt: Checkpoint, name: str) -> None:
    assert ckpt.store is not None
    index_file = INDEX_NAME if ckpt.index is not None else None
    if unsafe_name(name):
        ckpt.findings.append(_finding("path-unsafe", index_file,
                                      f"shard name {name!r} escapes the checkpoint directory; not read"))
        ckpt.unread_files.add(name)
        return
    problem = ckpt.store.problem(name)
    if problem is not None:
        rule, message = problem
        if rule == "index-shard-missing":
            _missing(ckpt, name)
        else:
            ckpt.findings.append(_finding(rule, name, message))
            ckpt.unread_files.add(name)
        return
    try:
        src = ckpt.source(name)
        shard = parse_header(src, name)
    except FileNotFoundError:
        ckpt._sources.pop(name, None)
        _missing(ckpt, name)
        return
    except OSError as e:
        ckpt._sources.pop(name, None)
        ckpt.findings.append(_finding("file-unreadable", name,
                                      f"shard {name} cannot be read: {e.strerror or e}; nothing in it was checked"))
        ckpt.unread_files.add(name)
        return
    ckpt.shards[name] = shard
    ckpt.findings.extend(shard.findings)
    if not shard.valid:
        ckpt.unread_files.add(name)


def _check_duplicates(ckpt: Checkpoint) -> None:
    if not ckpt.tensors:  # the common case, merged in C: no name is stored twice
        merged: dict[str, TensorInfo] = {}
        for shard in ckpt.shards.values():
            merged.update(shard.tensors)
        if len(merged) == sum(len(shard.tensors) for shard in ckpt.shards.values()):
            ckpt.tensors = merged
            return
    for file, shard in ckpt.shards.items():
        for tname, t in shard.tensors.items():
            other = ckpt.tensors.get(tname)
            if other is not None:
                ckpt.findings.append(_finding("index-mismatch", file,
                                              f"tensor {tname} is stored in both {other.file} and {file}",
                                              tensor=tname))
                continue
            ckpt.tensors[tname] = t


def _check_index(ckpt: Checkpoint) -> None:
    """Index vs shards: listed-but-absent, present-but-unlisted, stored twice."""
    assert ckpt.index is not None
    _check_duplicates(ckpt)
    listed = ckpt.index
    # the common case: the index maps exactly the stored tensors to their shards (one C comparison)
    exact = {name: t.file for name, t in ckpt.tensors.items()} == listed
    absent: dict[str, list[str]] = {}
    for tname, file in () if exact else listed.items():
        shard = ckpt.shards.get(file)
        if shard is None or not shard.valid:
            continue  # already reported: missing, unsafe, unreadable or invalid shard
        if tname not in shard.tensors:
            absent.setdefault(file, []).append(tname)
        elif ckpt.tensors.get(tname) is not None and ckpt.tensors[tname].file != file:
            # the index points at one copy, the tensor map kept another: use the index's
            ckpt.tensors[tname] = shard.tensors[tname]
    for file, names in absent.items():
        ckpt.findings.append(_finding(
            "index-mismatch", file,
            f"{len(names)} tensors listed in the index for {file} are not in it (first: {names[0]})",
            tensor=names[0], count=len(names)))
    list_shards = getattr(ckpt.store, "list_shards", None)  # where the store can list (not HTTP, not the Hub)
    present = list_shards() if list_shards is not None else None
    if present:
        stray = [n for n in present if n not in ckpt.shards and n not in ckpt.unread_files]
        for name in stray:
            ckpt.findings.append(_finding(
                "index-mismatch", name,
                f"{name} is in the checkpoint directory but the index names none of its tensors: loaders ignore it "
                "(a leftover from another export?); not checked"))
    for file, shard in () if exact else ckpt.shards.items():
        unlisted = [n for n in shard.tensors if listed.get(n) != file and n not in listed]
        if unlisted:
            ckpt.findings.append(_finding(
                "index-mismatch", file,
                f"{len(unlisted)} tensors in {file} are not listed in the index (first: {unlisted[0]})",
                tensor=unlisted[0], count=len(unlisted)))
