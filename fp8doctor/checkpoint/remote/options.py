"""Remote reading's knobs (retries, backoff, timeouts, the per-request deadline, concurrency,
prefetch budget; FP8DOCTOR_HTTP_* in the environment), its errors, and what the network cost."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

from fp8doctor.checkpoint.model import CheckpointError

HEAD_PROBE = 100_000
"""First request per shard: like huggingface_hub's parse_safetensors_file_metadata."""
SINGLE_NAME = "model.safetensors"
"""The shard a base URL without an index must have (URLs cannot be listed)."""
INSTALL_HINT = "remote paths need the optional HTTP clients: pip install 'fp8doctor[remote]'"


class RemoteError(CheckpointError):
    """A remote read failed for good (after retries), or the server cannot be used. Exit code 2."""


class RangeNotSupported(RemoteError):
    """The server ignores HTTP Range requests: scanning would download whole shards, so it is refused."""


def _env_number(name: str, default: float, kind: type = float) -> Any:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        value = kind(text)
    except ValueError:
        raise RemoteError(f"{name}={text!r} is not a number") from None
    if value < 0:
        raise RemoteError(f"{name}={text!r} must not be negative")
    return value


@dataclass(frozen=True)
class RemoteOptions:
    """How hard to try. The environment (FP8DOCTOR_HTTP_*) sets these for the CLI."""

    retries: int = 4
    """Retries after the first attempt of each request (network errors, 408/429/5xx, short bodies)."""
    backoff: float = 0.5
    """First retry delay in seconds; doubles each retry (with jitter), capped at backoff_max."""
    backoff_max: float = 8.0
    timeout: float = 30.0
    """Seconds to wait for a connection or for the next bytes of a response."""
    deadline: float = 600.0
    """Seconds one request may take in all, however steadily its bytes trickle in (then it is retried)."""
    concurrency: int = 8
    """Range requests in flight at once."""
    prefetch_bytes: int = 256 << 20
    """Bytes requested ahead of the scanner, per file (bounds memory)."""
    head_probe: int = HEAD_PROBE

    @classmethod
    def from_env(cls) -> RemoteOptions:
        d = cls()
        return cls(retries=_env_number("FP8DOCTOR_HTTP_RETRIES", d.retries, int),
                   backoff=_env_number("FP8DOCTOR_HTTP_BACKOFF", d.backoff),
                   timeout=_env_number("FP8DOCTOR_HTTP_TIMEOUT", d.timeout) or d.timeout,
                   deadline=_env_number("FP8DOCTOR_HTTP_DEADLINE", d.deadline) or d.deadline,
                   concurrency=max(1, _env_number("FP8DOCTOR_HTTP_CONCURRENCY", d.concurrency, int)))


@dataclass
class Transfer:
    """What the network cost: body bytes received and requests sent (retries and redirects included)."""

    bytes_fetched: int = 0
    requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, nbytes: int = 0, requests: int = 0) -> None:
        with self._lock:
            self.bytes_fetched += nbytes
            self.requests += requests
