"""The two transports: range GETs over an httpx-style client (huggingface_hub's session for hf://, a
plain client for http(s)://) and ranged reads through fsspec. A 200 for a range, a wrong
Content-Range or a body longer than asked is refused before it is read; nothing is sized from a
server's claim; each request has a deadline however steadily its bytes trickle in."""

from __future__ import annotations

import errno
import importlib
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from fp8doctor.checkpoint.remote.options import RangeNotSupported, RemoteError, RemoteOptions, Transfer
from fp8doctor.checkpoint.remote.retry import RETRY_STATUS, _Retry, _retry_after, _with_retries

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)


class _Http:
    """Range GETs with an httpx-style client (huggingface_hub's session, or a plain client)."""

    def __init__(self, client: Any, headers: dict[str, str], options: RemoteOptions, transfer: Transfer,
                 on_response: Callable[[Any], None] | None = None, hub: bool = False) -> None:
        self.client = client
        self.headers = headers
        self.options = options
        self.transfer = transfer
        self.on_response = on_response
        self.hub = hub
        mod = importlib.import_module(type(client).__module__.split(".")[0])
        self.errors: tuple[type[BaseException], ...] = (getattr(mod, "HTTPError", OSError), OSError)

    def get(self, url: str, display: str, start: int, end: int) -> tuple[bytes, int]:
        """Bytes [start, end) (end may pass the file's end: the server clamps it) and the file size."""
        return _with_retries(self.options, f"{display} bytes {start}-{end - 1}", self.errors,
                             lambda: self._attempt(url, display, start, end))

    def _attempt(self, url: str, display: str, start: int, end: int) -> tuple[bytes, int]:
        """One request, ended at the deadline however it stalls: the clients' timeouts are per read, so
        a server sending its status line and headers a byte at a time would otherwise hold it for days.
        The request runs in a daemon thread; one past its deadline is abandoned (its socket with it)."""
        box: list[Any] = []

        def run() -> None:
            try:
                box.append((True, self._attempt_once(url, display, start, end)))
            except BaseException as e:  # handed to the caller, raised there
                box.append((False, e))

        worker = threading.Thread(target=run, name="fp8doctor-request", daemon=True)
        worker.start()
        worker.join(self.options.deadline)
        if not box:
            raise _Retry(f"still incomplete after {self.options.deadline:g} s (no complete answer)")
        ok, value = box[0]
        if not ok:
            raise value
        result: tuple[bytes, int] = value
        return result

    def _attempt_once(self, url: str, display: str, start: int, end: int) -> tuple[bytes, int]:
        headers = {**self.headers, "Range": f"bytes={start}-{end - 1}", "Accept-Encoding": "identity"}
        where = f"{display} bytes {start}-{end - 1}"
        deadline = time.monotonic() + self.options.deadline  # the whole request, not each read
        with self.client.stream("GET", url, headers=headers, timeout=self.options.timeout) as r:
            self.transfer.add(requests=1 + len(getattr(r, "history", ()) or ()))
            if self.on_response is not None:
                self.on_response(r)
            code = r.status_code
            if code == 206:
                m = _CONTENT_RANGE.match(r.headers.get("Content-Range", ""))
                total = int(m.group(3)) if m and m.group(3) != "*" else None
                if m is None or total is None or int(m.group(1)) != start or int(m.group(2)) != min(end, total) - 1:
                    raise RangeNotSupported(
                        f"{where}: the server answered with Content-Range "
                        f"{r.headers.get('Content-Range')!r}, not the bytes asked for; refusing to read it")
                return self._body(r, int(m.group(2)) - start + 1, where, deadline), total
            if code == 200:
                length = r.headers.get("Content-Length")
                if start == 0 and length and length.isdigit() and int(length) <= end:
                    # the whole file is no more than what was asked for (a small file): take it
                    return self._body(r, int(length), where, deadline), int(length)
                size = f" ({int(length):,} bytes)" if length and length.isdigit() else ""
                raise RangeNotSupported(
                    f"{where}: the server ignores HTTP Range requests and started sending the whole file{size}; "
                    "fp8doctor does not download whole shards: download the checkpoint and scan it locally")
            if code == 416:
                m = _UNSATISFIED.match(r.headers.get("Content-Range", ""))
                if m is not None and start >= int(m.group(1)):
                    return b"", int(m.group(1))  # asked from the end of the file (empty file)
                raise RemoteError(f"{where}: HTTP 416 (range not satisfiable)")
            if code in (404, 410):
                err = r.headers.get("X-Error-Code", "")
                if self.hub and err in ("RepoNotFound", "RevisionNotFound"):
                    raise RemoteError(f"{where}: {r.headers.get('X-Error-Message') or err} (HTTP {code})")
                raise FileNotFoundError(errno.ENOENT, f"{display} not found (HTTP {code})")
            if code in (401, 403):
                hint = (" (private or gated repository, or no such repository: set HF_TOKEN or run `hf auth login`)"
                        if self.hub else "")
                msg = r.headers.get("X-Error-Message")
                raise RemoteError(f"{where}: HTTP {code}{': ' + msg if msg else ''}{hint}")
            if code in RETRY_STATUS:
                raise _Retry(f"HTTP {code}", _retry_after(r.headers.get("Retry-After")))
            raise RemoteError(f"{where}: unexpected HTTP {code}")

    def _body(self, r: Any, expected: int, where: str, deadline: float) -> bytes:
        chunks: list[bytes] = []
        got = 0
        for chunk in r.iter_raw():
            got += len(chunk)
            self.transfer.add(nbytes=len(chunk))
            if got > expected:
                raise RangeNotSupported(f"{where}: the server sent more than the {expected:,} bytes asked for")
            chunks.append(chunk)
            if time.monotonic() > deadline and got < expected:
                raise _Retry(f"still incomplete after {self.options.deadline:g} s ({got:,} of {expected:,} bytes)")
        if got < expected:
            raise _Retry(f"connection closed after {got:,} of {expected:,} bytes")
        return b"".join(chunks)


class _Fsspec:
    """Ranged reads through an fsspec filesystem (s3://, gs://, memory://, ...)."""

    def __init__(self, fs: Any, options: RemoteOptions, transfer: Transfer) -> None:
        self.fs = fs
        self.options = options
        self.transfer = transfer
        self._sizes: dict[str, int] = {}

    def get(self, path: str, display: str, start: int, end: int) -> tuple[bytes, int]:
        def attempt() -> tuple[bytes, int]:
            size = self._sizes.get(path)
            if size is None:
                self.transfer.add(requests=1)
                info = self.fs.info(path)
                if info.get("type") == "directory":
                    raise IsADirectoryError(errno.EISDIR, "is a directory")
                size = self._sizes[path] = int(info["size"])
            stop = min(end, size)
            if start >= stop:
                return b"", size
            self.transfer.add(requests=1)
            data = self.fs.cat_file(path, start=start, end=stop)
            self.transfer.add(nbytes=len(data))
            if len(data) != stop - start:
                raise _Retry(f"got {len(data):,} of {stop - start:,} bytes")
            return data, size

        return _with_retries(self.options, f"{display} bytes {start}-{end - 1}", (Exception,), attempt)
