"""The checkpoint a command was pointed at, parsed once.

A target is a local directory, an index `.json`, one `.safetensors` shard, or a URL. Everything
that asks "where is this checkpoint" reads it from a `Target`: `open_checkpoint` (root, index,
the one named shard), configuration discovery (the local directory it never looks inside), the
reports (the root finding files are relative to, the git work tree paths are relative to), and fix
(the directory it writes in, the journal location, what an --output copy carries).

Parsing only looks at the path (lexists/isdir/isfile); nothing is opened or read. Which names are
safe to read inside the root is fp8doctor.checkpoint.paths' business, not this module's.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

INDEX_NAME = "model.safetensors.index.json"
JOURNAL_DIRNAME = ".fp8doctor-journal"
"""The directory, inside a local checkpoint, where fix keeps its journals and lock."""

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")

Kind = Literal["directory", "index", "shard", "url", "missing", "not-safetensors", "other"]


def _looks_like_safetensors(path: str) -> bool:
    """A file named otherwise is taken as a shard only if it starts like one: an 8-byte header length
    that fits in the file, then '{'. (A file named .safetensors is always read: damage is a finding.)"""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return True  # let the loader report why it cannot be read
    try:
        head = os.pread(fd, 9, 0)
        size = os.fstat(fd).st_size
    except OSError:
        return True
    finally:
        os.close(fd)
    return len(head) == 9 and 2 <= int.from_bytes(head[:8], "little") <= size - 8 and head[8:9] == b"{"


def is_remote(path: str | os.PathLike[str]) -> bool:
    """True for URLs (hf://, http(s)://, s3://, any fsspec protocol): no local file is involved."""
    return bool(_URL.match(os.fspath(path)))


def without_credentials(path: str) -> str:
    """`path` as reports may show it: a URL's `user:password@` dropped (reports are uploaded as CI
    artifacts and to code scanning; the request itself still uses them). Local paths unchanged."""
    if not is_remote(path):
        return path
    parts = urlsplit(path)
    if parts.username is None and parts.password is None:
        return path
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class Target:
    """Where a checkpoint is. `root` is the directory (a URL's base for remote targets) that the
    checkpoint's file names are relative to; `index` the index file name inside it, when the target
    has one; `shard` the one shard a `.safetensors` target names."""

    path: str
    kind: Kind
    root: str
    index: str | None = None
    shard: str | None = None

    @classmethod
    def parse(cls, path: str | os.PathLike[str]) -> Target:
        path = os.fspath(path)
        if is_remote(path):
            base = path.rstrip("/")
            root = base.rsplit("/", 1)[0] if base.endswith((".json", ".safetensors")) else base
            return cls(path, "url", root)
        if not os.path.lexists(path):
            from fp8doctor.checkpoint.hfcache import local_path

            path = local_path(path)  # ORG/NAME[@REV]: its snapshot in the local Hugging Face cache
            if not os.path.lexists(path):
                return cls(path, "missing", os.path.dirname(path) or ".")
        if os.path.isdir(path):
            return cls(path, "directory", path, INDEX_NAME if os.path.isfile(os.path.join(path, INDEX_NAME)) else None)
        root = os.path.dirname(path) or "."
        if path.endswith(".json"):
            return cls(path, "index", root, os.path.relpath(path, root))
        if path.endswith(".safetensors") or os.path.isfile(path):
            if not path.endswith(".safetensors") and not _looks_like_safetensors(path):
                return cls(path, "not-safetensors", root)
            return cls(path, "shard", root, shard=os.path.basename(path))
        return cls(path, "other", root)

    @property
    def remote(self) -> bool:
        return self.kind == "url"

    @property
    def exists(self) -> bool:
        return self.kind != "missing"

    @property
    def whole_directory(self) -> bool:
        """The target is the checkpoint directory (or its index), not one shard file in it."""
        return self.kind in ("directory", "index")

    @property
    def display_root(self) -> str:
        """The root as reports name it (a URL without its credentials): finding files are relative to it."""
        return without_credentials(self.root)

    @property
    def local_dir(self) -> str | None:
        """The absolute directory of a local checkpoint (configuration discovery never looks inside
        it); None for a URL."""
        if self.remote:
            return None
        path = os.path.abspath(self.path)
        return path if os.path.isdir(path) else os.path.dirname(path)

    @property
    def journal_dir(self) -> str:
        """Where fix journals this checkpoint by default (a local checkpoint only)."""
        return os.path.join(self.root, JOURNAL_DIRNAME)

    def source_root(self) -> str:
        """The git work tree holding the checkpoint (for repository-relative report paths), else the
        cwd. Found by walking up to a `.git` entry rather than by running git: running git inside a
        checkout that came from anywhere could execute its configured hooks or fsmonitor."""
        start = self.path if os.path.isdir(self.path) else os.path.dirname(self.path) or "."
        here = os.path.abspath(start)
        while True:
            if os.path.exists(os.path.join(here, ".git")):
                return here
            parent = os.path.dirname(here)
            if parent == here:
                return os.getcwd()
            here = parent


__all__ = ["INDEX_NAME", "JOURNAL_DIRNAME", "Target", "is_remote", "without_credentials"]
