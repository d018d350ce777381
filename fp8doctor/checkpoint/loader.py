"""Open a checkpoint (directory, single shard, index file, or URL) into one model of its tensors:
`open_checkpoint` reads the parsed target (checkpoint/target.py) and hands it to the local store here
or to checkpoint/remote/. The model and the shared reading are in checkpoint/model.py."""

from __future__ import annotations

import os

from fp8doctor.checkpoint.model import INDEX_LIMIT as INDEX_LIMIT
from fp8doctor.checkpoint.model import Checkpoint as Checkpoint
from fp8doctor.checkpoint.model import CheckpointError as CheckpointError
from fp8doctor.checkpoint.model import LocalStore as LocalStore
from fp8doctor.checkpoint.model import Store as Store
from fp8doctor.checkpoint.model import load_files as load_files
from fp8doctor.checkpoint.target import INDEX_NAME as INDEX_NAME
from fp8doctor.checkpoint.target import Target
from fp8doctor.checkpoint.target import is_remote as is_remote
from fp8doctor.checkpoint.target import without_credentials as without_credentials
from fp8doctor.gcpause import gc_paused


def open_checkpoint(path: str | os.PathLike[str] | Target) -> Checkpoint:
    """Read the headers of every shard of the checkpoint at `path` (a local path, a URL, or a parsed Target)."""
    target = path if isinstance(path, Target) else Target.parse(path)
    path = target.path
    if target.remote:
        from fp8doctor.checkpoint.remote import open_remote_checkpoint

        return open_remote_checkpoint(path)
    if not target.exists:
        raise CheckpointError(f"{path}: no such file or directory")
    if target.kind == "not-safetensors":
        raise CheckpointError(f"{path}: not a safetensors file (nor a directory or index .json)")
    if target.kind == "other":
        raise CheckpointError(f"{path}: not a directory, .safetensors file or index .json")
    root = target.root

    def listing() -> list[str]:
        if target.kind != "directory":
            return [target.shard] if target.shard is not None else []
        try:
            names = sorted(n for n in os.listdir(root) if n.endswith(".safetensors"))
        except OSError as e:
            raise CheckpointError(f"{path}: cannot list directory ({e.strerror})") from None
        if not names and target.index is None:
            raise CheckpointError(f"{path}: no .safetensors files and no {INDEX_NAME} found")
        return names

    ckpt = Checkpoint(root=root, target=path, store=LocalStore(root))
    with gc_paused():
        load_files(ckpt, target.index, listing)
    return ckpt
