"""A Hugging Face cache laid out by huggingface_hub's own rules, without the network: blobs named by
their sha256 (as the Hub's etag for LFS files), snapshot files as the relative symlinks
`file_download._create_symlink` makes, and the ref file `_cache_commit_hash_for_specific_revision`
writes; `repo_folder_name` names the repo folder."""

from __future__ import annotations

import hashlib
import os


def cache_checkpoint(cache_dir: str, repo_id: str, source_dir: str, revision: str = "a" * 40,
                     ref: str | None = "main") -> str:
    """Put every file of `source_dir` into the cache as snapshot `revision` of `repo_id`; returns the
    snapshot directory."""
    from huggingface_hub.file_download import (
        _cache_commit_hash_for_specific_revision,
        _create_symlink,
        repo_folder_name,
    )

    storage = os.path.join(cache_dir, repo_folder_name(repo_id=repo_id, repo_type="model"))
    for name in sorted(os.listdir(source_dir)):
        src = os.path.join(source_dir, name)
        if not os.path.isfile(src):
            continue
        with open(src, "rb") as fh:
            data = fh.read()
        blob = os.path.join(storage, "blobs", hashlib.sha256(data).hexdigest())
        os.makedirs(os.path.dirname(blob), exist_ok=True)
        if not os.path.exists(blob):
            with open(blob, "wb") as fh:
                fh.write(data)
        pointer = os.path.join(storage, "snapshots", revision, name)
        os.makedirs(os.path.dirname(pointer), exist_ok=True)
        _create_symlink(blob, pointer, new_blob=False)
    if ref is not None:
        _cache_commit_hash_for_specific_revision(storage, ref, revision)
    return os.path.join(storage, "snapshots", revision)
