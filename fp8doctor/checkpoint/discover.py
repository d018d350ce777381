"""Several checkpoints in one run: turn `scan A B C` arguments into checkpoint targets.

- A URL is one target, as given; `ORG/NAME[@REV]` with no such local path is its snapshot in the
  local Hugging Face cache (checkpoint/hfcache.py).
- A directory that holds `*.safetensors` files or an index is one checkpoint (today's meaning).
  Any other directory is searched below, as ruff finds files: every directory holding shards or an
  index is a checkpoint; its own subdirectories are not searched further; hidden directories
  (`.git`, `.fp8doctor-journal`, ...) and symlinked directories are skipped (a symlink is never
  followed out of what the user named). A directory with no checkpoint below stays a target, so
  the scan says why it is not one.
- File arguments are grouped by checkpoint, as the pre-commit hook passes them: several files of
  one directory are that directory's checkpoint; a lone shard or index stays itself; a `config.json`
  whose directory holds no shard is not part of any checkpoint and is dropped.
- A target inside another target (a file of a directory already named) is dropped; order is kept.
"""

from __future__ import annotations

import os

INDEX_SUFFIX = ".safetensors.index.json"


def _is_checkpoint_dir(path: str) -> bool:
    try:
        names = os.listdir(path)
    except OSError:
        return False
    return any(n.endswith((".safetensors", INDEX_SUFFIX)) for n in names)


def _checkpoints_below(root: str) -> list[str]:
    found: list[str] = []
    for here, dirs, _ in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not os.path.islink(os.path.join(here, d)))
        if here != root and _is_checkpoint_dir(here):
            found.append(here)
            dirs[:] = []
    return found


def expand_targets(paths: list[str]) -> list[str]:
    """The checkpoints the arguments name, in order, each once (see the module docstring)."""
    from fp8doctor.checkpoint.hfcache import CacheLookupError, local_path
    from fp8doctor.checkpoint.loader import is_remote

    out: list[str] = []
    files: dict[str, list[str]] = {}
    for p in paths:
        try:
            p = local_path(p)  # ORG/NAME[@REV] in the local Hugging Face cache: its snapshot directory
        except CacheLookupError:
            pass  # the scan says why, in one line
        if is_remote(p) or not os.path.isdir(p):
            if not is_remote(p) and os.path.isfile(p):
                files.setdefault(os.path.dirname(p) or ".", []).append(p)
                out.append(p)  # placeholder, resolved below
            else:
                out.append(p)
            continue
        out.extend([p] if _is_checkpoint_dir(p) else (_checkpoints_below(p) or [p]))
    resolved: list[str] = []
    for p in out:
        d = os.path.dirname(p) or "."
        group = files.get(d, [])
        if p in group:
            if os.path.basename(p) == "config.json" and not _is_checkpoint_dir(d):
                continue
            p = d if len(group) > 1 or os.path.basename(p) == "config.json" else p
        resolved.append(p)
    unique: list[str] = []
    seen: set[str] = set()
    for p in resolved:
        key = p if is_remote(p) else os.path.abspath(p)
        if key in seen:
            continue
        seen.add(key)
        unique.append(p)
    dirs = {os.path.abspath(p) for p in unique if not is_remote(p) and os.path.isdir(p)}
    return [p for p in unique if is_remote(p) or os.path.isdir(p)
            or os.path.abspath(os.path.dirname(p) or ".") not in dirs]
