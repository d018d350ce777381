"""Copying whole files of a remote checkpoint (fix --output DIR of a URL: only the shards to repair)."""

from __future__ import annotations

import os

from fp8doctor.checkpoint.model import Checkpoint
from fp8doctor.checkpoint.paths import unsafe_name as _unsafe
from fp8doctor.checkpoint.remote.options import RemoteError

DOWNLOAD_CHUNK = 16 << 20


def download(ckpt: Checkpoint, names: list[str], dest: str) -> list[str]:
    """Copy whole files of a remote checkpoint into `dest` (for `fix --output DIR`: only the shards
    that need repair). Ranged, concurrent, retried like every other read; each file is written to
    `NAME.part` and renamed when complete. Returns the local paths."""
    if not ckpt.remote:
        raise ValueError("download() copies files of a remote checkpoint")
    out = []
    for name in names:
        if ckpt.store is None or ckpt.store.problem(name) is not None or _unsafe(name):
            raise RemoteError(f"{name!r}: not a file under the checkpoint's base; not downloaded")
        src = ckpt.source(name)
        size = src.size()
        shard = ckpt.shards.get(name)
        # the size is the server's claim: a valid shard is exactly its header plus its tensors' data
        want = max((t.offset + t.nbytes for t in shard.tensors.values()), default=shard.data_start) \
            if shard is not None and shard.valid else None
        if want is None or size > want:
            raise RemoteError(f"{name}: the server says it holds {size:,} bytes but its header describes "
                              f"{want if want is not None else 'no'} bytes; not downloaded")
        prefetch = getattr(src, "prefetch", None)
        path = os.path.join(dest, name)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path + ".part", "wb") as f:
            window = max(1, (256 << 20) // DOWNLOAD_CHUNK)  # chunks announced ahead: never a list sized by `size`
            for w0 in range(0, size, window * DOWNLOAD_CHUNK):
                chunks = [(o, min(o + DOWNLOAD_CHUNK, size))
                          for o in range(w0, min(size, w0 + window * DOWNLOAD_CHUNK), DOWNLOAD_CHUNK)]
                if prefetch is not None:
                    prefetch(chunks)
                for start, end in chunks:
                    f.write(src.pread(start, end - start))
            f.flush()
            os.fsync(f.fileno())
        os.replace(path + ".part", path)
        out.append(path)
    return out
