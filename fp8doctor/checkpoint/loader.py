"""Open a checkpoint (directory, single shard, or index file) into one model of its tensors.

Only headers are read here. Problems with the index, the shards' presence, or their headers become
findings; only a path that cannot be a checkpoint at all raises `CheckpointError` (exit code 2).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from fp8doctor.checkpoint.config import ModelConfig, load_config
from fp8doctor.checkpoint.header import ShardHeader, TensorInfo, parse_header
from fp8doctor.checkpoint.source import ByteSource, LocalFile
from fp8doctor.findings import Finding, Region, Severity

INDEX_NAME = "model.safetensors.index.json"


class CheckpointError(Exception):
    """The path cannot be scanned at all (missing, not a checkpoint). Maps to exit code 2."""


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
    _sources: dict[str, ByteSource] = field(default_factory=dict, repr=False)

    def path_of(self, file: str) -> str:
        return os.path.join(self.root, file)

    def source(self, file: str) -> ByteSource:
        src = self._sources.get(file)
        if src is None:
            src = self._sources[file] = LocalFile(self.path_of(file))
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

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _finding(rule: str, file: str | None, message: str, tensor: str | None = None, count: int = 1,
             region: Region = Region.INDEX) -> Finding:
    return Finding(rule, Severity.ERROR, file, tensor, message, region, count=count)


def _inside(root: str, path: str) -> bool:
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def _unsafe_name(name: str) -> bool:
    return (os.path.isabs(name) or name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/")
            or "\x00" in name)


def open_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read the headers of every shard of the checkpoint at `path`."""
    path = os.fspath(path)
    if not os.path.lexists(path):
        raise CheckpointError(f"{path}: no such file or directory")
    index_path: str | None = None
    shard_names: list[str]
    if os.path.isdir(path):
        root = path
        if os.path.isfile(os.path.join(root, INDEX_NAME)):
            index_path = os.path.join(root, INDEX_NAME)
        shard_names = []
    elif path.endswith(".json"):
        root = os.path.dirname(path) or "."
        index_path = path
        shard_names = []
    elif path.endswith(".safetensors") or os.path.isfile(path):
        root = os.path.dirname(path) or "."
        shard_names = [os.path.basename(path)]
    else:
        raise CheckpointError(f"{path}: not a directory, .safetensors file or index .json")

    ckpt = Checkpoint(root=root, target=path)
    ckpt.config, cfg_findings = load_config(root)
    ckpt.findings.extend(cfg_findings)

    if index_path is not None:
        index_file = os.path.relpath(index_path, root)
        ckpt.index = _read_index(index_path, index_file, ckpt.findings)
        if ckpt.index is not None:
            shard_names = list(dict.fromkeys(ckpt.index.values()))
    if not shard_names and ckpt.index is None:
        if os.path.isdir(path):
            try:
                shard_names = sorted(n for n in os.listdir(root) if n.endswith(".safetensors"))
            except OSError as e:
                raise CheckpointError(f"{path}: cannot list directory ({e.strerror})") from None
        if not shard_names:
            if index_path is None:
                raise CheckpointError(f"{path}: no .safetensors files and no {INDEX_NAME} found")

    for name in shard_names:
        _load_shard(ckpt, name)

    if ckpt.index is not None:
        _check_index(ckpt)
    else:
        _check_duplicates(ckpt)
    return ckpt


def _read_index(index_path: str, index_file: str, findings: list[Finding]) -> dict[str, str] | None:
    try:
        with open(index_path, "rb") as f:
            # read(n) allocates n bytes up front: ask for no more than the file holds
            data = f.read(min(os.fstat(f.fileno()).st_size + 1, 256 << 20))
        obj = json.loads(data.decode("utf-8"))
    except OSError as e:
        findings.append(_finding("file-unreadable", index_file, f"index cannot be read: {e.strerror or e}",
                                 region=Region.FILE))
        return None
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        findings.append(_finding("index-invalid", index_file, f"index is not valid JSON ({type(e).__name__})"))
        return None
    wm = obj.get("weight_map") if isinstance(obj, dict) else None
    if not isinstance(wm, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in wm.items()):
        findings.append(_finding("index-invalid", index_file,
                                 "index has no 'weight_map' object mapping tensor names to shard files"))
        return None
    return wm


def _load_shard(ckpt: Checkpoint, name: str) -> None:
    index_file = INDEX_NAME if ckpt.index is not None else None
    if _unsafe_name(name):
        ckpt.findings.append(_finding("path-unsafe", index_file,
                                      f"shard name {name!r} escapes the checkpoint directory; not read"))
        ckpt.unread_files.add(name)
        return
    full = ckpt.path_of(name)
    if not os.path.lexists(full):
        n = sum(1 for v in (ckpt.index or {}).values() if v == name)
        ckpt.findings.append(_finding("index-shard-missing", name,
                                      f"shard {name} is named by the index for {n} tensors but does not exist",
                                      count=n))
        ckpt.unread_files.add(name)
        return
    if os.path.islink(full) and not _inside(ckpt.root, full):
        ckpt.findings.append(_finding("path-unsafe", name,
                                      f"shard {name} is a symlink to {os.path.realpath(full)}, outside the "
                                      "checkpoint directory; not read"))
        ckpt.unread_files.add(name)
        return
    try:
        if os.path.isdir(full):
            raise IsADirectoryError(21, "is a directory")
        src = ckpt.source(name)
        shard = parse_header(src, name)
    except OSError as e:
        ckpt._sources.pop(name, None)
        ckpt.findings.append(_finding("file-unreadable", name,
                                      f"shard {name} cannot be read: {e.strerror or e}; nothing in it was checked",
                                      region=Region.FILE))
        ckpt.unread_files.add(name)
        return
    ckpt.shards[name] = shard
    ckpt.findings.extend(shard.findings)
    if not shard.valid:
        ckpt.unread_files.add(name)


def _check_duplicates(ckpt: Checkpoint) -> None:
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
    absent: dict[str, list[str]] = {}
    for tname, file in listed.items():
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
    for file, shard in ckpt.shards.items():
        unlisted = [n for n in shard.tensors if listed.get(n) != file and n not in listed]
        if unlisted:
            ckpt.findings.append(_finding(
                "index-mismatch", file,
                f"{len(unlisted)} tensors in {file} are not listed in the index (first: {unlisted[0]})",
                tensor=unlisted[0], count=len(unlisted)))
