"""Checkpoints in the Hugging Face cache: where `snapshot_download`, `hf download`, vLLM and
transformers leave them.

A snapshot is `HF_HUB_CACHE/models--ORG--NAME/snapshots/REV/`; its files are relative symlinks to
`../../blobs/SHA`, shared by every snapshot that links them and verified by the cache by hash.

- `snapshot_of(path)`: the repo id, revision and repo folder when `path` lies in a snapshot (pure
  path parsing: a local scan never imports huggingface_hub). The loader follows a snapshot's
  symlinks only while they stay inside that repo folder.
- `resolve(spec)`: `ORG/NAME[@REV]` (a repo id, not a local path) to the local snapshot directory,
  through huggingface_hub's cache-scanning API (`scan_cache_dir`, which honours HF_HOME and
  HF_HUB_CACHE); never the network. `hf://ORG/NAME` stays the remote scan.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from fp8doctor.errors import CheckpointError

_REPO_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*)(?:@(?P<rev>[^\s@]+))?$")
_REPO_FOLDER = re.compile(r"^models--(?P<name>.+)$")


class CacheLookupError(CheckpointError):
    """`ORG/NAME[@REV]` could not be found in the local cache (a CheckpointError: exit 2, one line)."""


@dataclass(frozen=True)
class Snapshot:
    repo_id: str
    revision: str
    """The snapshot's commit hash (its folder name)."""
    repo_folder: str
    """HF_HUB_CACHE/models--ORG--NAME: the one folder a snapshot's symlinks may point into."""
    snapshot_dir: str

    def describe(self) -> dict[str, str]:
        return {"repo_id": self.repo_id, "revision": self.revision}


def snapshot_of(path: str | os.PathLike[str]) -> Snapshot | None:
    """The cache snapshot `path` (a directory or a file) lies in, or None."""
    parts = os.path.abspath(os.fspath(path)).split(os.sep)
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] == "snapshots" and i + 1 < len(parts):
            m = _REPO_FOLDER.match(parts[i - 1])
            if m is None or not parts[i + 1]:
                continue
            repo_folder = os.sep.join(parts[:i]) or os.sep
            return Snapshot(m["name"].replace("--", "/"), parts[i + 1], repo_folder,
                            os.path.join(repo_folder, "snapshots", parts[i + 1]))
    return None


def looks_like_repo_id(spec: str) -> bool:
    """ORG/NAME or ORG/NAME@REV, with no such local path."""
    return bool(_REPO_ID.match(spec)) and not os.path.lexists(spec) and not os.path.lexists(spec.split("@")[0])


def resolve(spec: str) -> str:
    """The local snapshot directory of `ORG/NAME[@REV]` (REV: a commit hash or its prefix, a branch
    or tag the cache has a ref for; default: main, else the only revision). CacheLookupError if the
    cache does not hold it. Reads only the cache directory."""
    m = _REPO_ID.match(spec)
    if m is None:
        raise CacheLookupError(f"{spec}: not a repo id (ORG/NAME[@REV])")
    repo_id, rev = m["repo"], m["rev"]
    try:
        from huggingface_hub import constants, scan_cache_dir
        from huggingface_hub.errors import CacheNotFound
    except ImportError:
        raise CacheLookupError(f"{spec}: no such file or directory (to look it up in the Hugging Face cache, "
                               "install the 'remote' extra: pip install 'fp8doctor[remote]')") from None
    cache = constants.HF_HUB_CACHE
    try:
        info = scan_cache_dir(cache)
    except CacheNotFound:
        raise CacheLookupError(f"{spec}: no such file or directory, and no Hugging Face cache at {cache} "
                               f"(HF_HUB_CACHE / HF_HOME); download it first or scan hf://{repo_id}") from None
    repo = next((r for r in info.repos if r.repo_type == "model" and r.repo_id == repo_id), None)
    if repo is None:
        raise CacheLookupError(f"{spec}: no such file or directory, and the Hugging Face cache at {cache} does not "
                               f"hold {repo_id} (`hf download {repo_id}` first, or scan hf://{repo_id})")
    revisions = sorted(repo.revisions, key=lambda r: r.commit_hash)
    if rev is None:
        chosen = [r for r in revisions if "main" in r.refs] or (revisions if len(revisions) == 1 else [])
        if not chosen:
            held = ", ".join(r.commit_hash[:12] + (f" ({', '.join(sorted(r.refs))})" if r.refs else "")
                             for r in revisions)
            raise CacheLookupError(f"{spec}: the cache holds several revisions of {repo_id} and none is main: "
                                   f"name one with {repo_id}@REV ({held})")
    else:
        chosen = [r for r in revisions if r.commit_hash == rev or rev in r.refs] or \
            ([r for r in revisions if r.commit_hash.startswith(rev)] if len(rev) >= 7 else [])
        if len(chosen) != 1:
            held = ", ".join(r.commit_hash[:12] for r in revisions)
            raise CacheLookupError(f"{spec}: the cache holds no single revision {rev} of {repo_id} (it holds {held})")
    return str(chosen[0].snapshot_path)


def local_path(spec: str) -> str:
    """`spec` itself, unless it is a repo id with no such local path: then its snapshot directory
    (CacheLookupError when the cache does not hold it)."""
    return resolve(spec) if looks_like_repo_id(spec) else spec
