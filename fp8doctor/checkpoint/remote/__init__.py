"""Remote checkpoints: `hf://org/model@rev`, `http(s)://base/` and other fsspec URLs (`s3://`, ...).

A scan reads headers and scale bytes only, so a remote checkpoint is checked with HTTP range
requests: per shard one ~100 kB probe (header length, header, file size), exactly the rest of the
header when it is larger, then the coalesced scale ranges the scanner asks for, several in flight
at once (`prefetch`). Every request retries with exponential backoff and ends, if it must, in a
`RemoteError` that names the file and the byte range. A server that answers a range request with
the whole file (200) or a wrong Content-Range is refused before its body is read: fp8doctor never
downloads whole shards behind the user's back.

The HTTP clients are the ecosystem's: huggingface_hub's session, URL scheme and token handling
(`HF_TOKEN`, `HF_ENDPOINT`, `hf auth login`) for hf://, the same HTTP library for plain URLs, and
fsspec for any other protocol. They are optional (`pip install 'fp8doctor[remote]'`) and imported
only when a URL is opened.

One module per concern: url.py (the URL grammar), options.py (knobs, errors, transfer counters),
retry.py (retries and Retry-After), transports.py (HTTP and fsspec reads, the deadline, the range
checks), prefetch.py (RemoteFile, the read-ahead planner), store.py (RemoteStore: hub, HTTP, fsspec),
download.py (whole files for fix --output). This module opens a remote checkpoint.
"""

from __future__ import annotations

from fp8doctor.checkpoint.model import INDEX_LIMIT, Checkpoint, CheckpointError, load_files
from fp8doctor.checkpoint.remote.download import download
from fp8doctor.checkpoint.remote.options import (
    HEAD_PROBE,
    SINGLE_NAME,
    RangeNotSupported,
    RemoteError,
    RemoteOptions,
    Transfer,
)
from fp8doctor.checkpoint.remote.prefetch import RemoteFile
from fp8doctor.checkpoint.remote.store import RemoteStore
from fp8doctor.checkpoint.remote.url import RemoteURL, parse_url
from fp8doctor.checkpoint.target import INDEX_NAME, is_remote

__all__ = ["HEAD_PROBE", "RangeNotSupported", "RemoteError", "RemoteFile", "RemoteOptions", "RemoteStore",
           "RemoteURL", "Transfer", "download", "is_remote", "open_remote_checkpoint", "parse_url"]


def open_remote_checkpoint(url: str, options: RemoteOptions | None = None) -> Checkpoint:
    """The remote counterpart of `open_checkpoint`: same Checkpoint, same findings, same checks."""
    loc = parse_url(url)
    store = RemoteStore(loc, options or RemoteOptions.from_env())
    ckpt = Checkpoint(root=loc.display("").rstrip("/"), target=url, store=store)
    try:
        target = loc.target
        if target is not None and target.endswith(".json"):
            if store.read_small(target, INDEX_LIMIT) is None:
                raise CheckpointError(f"{url}: not found")
            return load_files(ckpt, target, lambda: store.list_shards() or [])
        if target is None and store.read_small(INDEX_NAME, INDEX_LIMIT) is not None:
            return load_files(ckpt, INDEX_NAME, lambda: store.list_shards() or [])
        names = [target] if target is not None else store.list_shards()
        if names is None:
            names = [SINGLE_NAME]
        if len(names) == 1:
            try:
                ckpt.source(names[0]).size()  # fetches the header probe once; the loader reuses it
            except FileNotFoundError:
                if target is not None:
                    raise CheckpointError(f"{url}: not found") from None
                raise CheckpointError(f"{url}: neither {INDEX_NAME} nor {SINGLE_NAME} is there (URLs cannot "
                                      "be listed: name the index or a .safetensors file)") from None
        if not names:
            raise CheckpointError(f"{url}: no .safetensors files and no {INDEX_NAME} found")
        return load_files(ckpt, None, lambda: names)
    except OSError as e:  # the index itself cannot be read (too large a claim, a failed read): one line
        ckpt.close()
        if isinstance(e, FileNotFoundError):
            raise CheckpointError(f"{url}: not found") from None
        raise CheckpointError(f"{url}: cannot read {loc.target or INDEX_NAME}: {e.strerror or e}") from None
    except BaseException:
        ckpt.close()
        raise
