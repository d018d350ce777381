"""Retries: which answers are transient, how long to wait (exponential backoff with jitter, or a
server's Retry-After when it is a finite number >= 0), and the one RemoteError after the last try."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

from fp8doctor.checkpoint.model import CheckpointError
from fp8doctor.checkpoint.remote.options import RemoteError, RemoteOptions

RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class _Retry(Exception):
    """A transient failure: try again after a delay (or `retry_after` seconds, when the server says)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def _retry_after(value: str | None) -> float | None:
    """Seconds a server asks us to wait; None (our own backoff) for anything but a finite number >= 0
    (`nan`, `-5`, `inf` or an HTTP date must neither crash time.sleep nor stall the run)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None


def _with_retries(options: RemoteOptions, where: str, errors: tuple[type[BaseException], ...],
                  attempt: Callable[[], tuple[bytes, int]]) -> tuple[bytes, int]:
    last = ""
    wait: float | None = None
    for n in range(options.retries + 1):
        if n:
            if wait is None:
                wait = min(options.backoff_max, options.backoff * 2 ** (n - 1)) * (0.5 + random.random() / 2)
            time.sleep(wait)
        wait = None
        try:
            return attempt()
        except _Retry as e:
            last = str(e)
            if e.retry_after is not None:
                wait = min(e.retry_after, options.backoff_max)
        except (FileNotFoundError, IsADirectoryError, PermissionError, CheckpointError):
            raise
        except errors as e:
            last = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    tries = options.retries + 1
    raise RemoteError(f"{where}: {last} (gave up after {tries} attempt{'s' if tries != 1 else ''})")
