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
"""

from __future__ import annotations

import bisect
import errno
import importlib
import math
import os
import random
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from fp8doctor.checkpoint.loader import (
    INDEX_LIMIT,
    INDEX_NAME,
    Checkpoint,
    CheckpointError,
    is_remote,
    load_files,
)
from fp8doctor.checkpoint.paths import unsafe_name as _unsafe
from fp8doctor.checkpoint.source import ByteSource, ReadError

HEAD_PROBE = 100_000
"""First request per shard: like huggingface_hub's parse_safetensors_file_metadata."""
SINGLE_NAME = "model.safetensors"
"""The shard a base URL without an index must have (URLs cannot be listed)."""
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
INSTALL_HINT = "remote paths need the optional HTTP clients: pip install 'fp8doctor[remote]'"

__all__ = ["RangeNotSupported", "RemoteError", "RemoteOptions", "download", "fix_refusal", "is_remote",
           "open_remote_checkpoint", "parse_url"]


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


# --- URLs -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RemoteURL:
    """A parsed remote path: where its files are, and which file it names (None: a base)."""

    url: str
    kind: str  # "hf" | "http" | "fsspec"
    base: str  # http(s)/fsspec: base URL or path without a trailing slash; hf: the subfolder ("" for the root)
    target: str | None = None
    repo_id: str = ""
    repo_type: str = "model"
    revision: str | None = None

    def display(self, name: str) -> str:
        """A user-facing address of a file (never with credentials)."""
        if self.kind == "hf":
            prefix = {"model": "", "dataset": "datasets/"}[self.repo_type]
            rev = f"@{self.revision}" if self.revision else ""
            sub = f"{self.base}/" if self.base else ""
            return f"hf://{prefix}{self.repo_id}{rev}/{sub}{name}"
        if self.kind == "http":
            parts = urlsplit(self.base)
            netloc = parts.hostname or ""
            if parts.port:
                netloc += f":{parts.port}"
            return urlunsplit((parts.scheme, netloc, parts.path, "", "")) + "/" + name
        return f"{self.base}/{name}"


_REPO_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _split_target(parts: list[str]) -> tuple[str, str | None]:
    """(base path, file name) when the last segment names an index or shard, else (path, None)."""
    parts = [p for p in parts if p]
    if parts and parts[-1].endswith((".json", ".safetensors")):
        return "/".join(parts[:-1]), parts[-1]
    return "/".join(parts), None


def parse_url(url: str) -> RemoteURL:
    """hf://[datasets/]org/model[@rev][/subdir][/file], http(s)://host/base[/file], or an fsspec URL."""
    scheme = url.split("://", 1)[0].lower()
    if scheme == "hf":
        rest = url[len("hf://"):]
        repo_type = "model"
        for prefix, kind in (("datasets/", "dataset"), ("models/", "model")):
            if rest.startswith(prefix):
                repo_type, rest = kind, rest[len(prefix):]
        parts = rest.split("/")
        revision = None
        n = 2 if len(parts) >= 2 and "@" not in parts[0] else 1
        repo_parts = parts[:n]
        if "@" in repo_parts[-1]:
            repo_parts[-1], revision = repo_parts[-1].split("@", 1)
            tail = parts[n:]
            if revision == "refs" and len(tail) >= 2:  # refs/pr/1, refs/convert/parquet
                revision = "/".join(["refs", *tail[:2]])
                tail = tail[2:]
            revision = unquote(revision)
        else:
            tail = parts[n:]
        if not all(_REPO_PART.match(p) for p in repo_parts) or revision == "":
            raise CheckpointError(f"{url}: not a hub path (want hf://ORG/MODEL[@REVISION][/SUBFOLDER])")
        base, target = _split_target(tail)
        return RemoteURL(url, "hf", base, target, "/".join(repo_parts), repo_type, revision)
    if scheme in ("http", "https"):
        parts = urlsplit(url)
        if parts.query or parts.fragment:
            raise CheckpointError(f"{url}: URLs with a query or fragment are not supported; give the base URL")
        if not parts.hostname:
            raise CheckpointError(f"{url}: no host in the URL")
        path, target = _split_target(parts.path.split("/"))
        base = urlunsplit((parts.scheme, parts.netloc, "/" + path if path else "", "", ""))
        return RemoteURL(url, "http", base, target)
    path_part = url.split("://", 1)[1]
    base, target = _split_target(path_part.split("/"))
    return RemoteURL(url, "fsspec", f"{url.split('://', 1)[0]}://{base}", target)


def fix_refusal(path: str) -> str:
    """The one-line refusal `fp8doctor fix` prints for a remote path."""
    how = "download it first"
    try:
        loc = parse_url(path)
    except CheckpointError:
        loc = None
    if loc is not None and loc.kind == "hf":
        rev = f" --revision {loc.revision}" if loc.revision else ""
        kind = " --repo-type dataset" if loc.repo_type == "dataset" else ""
        how = f"download it first (`hf download {loc.repo_id}{rev}{kind} --local-dir DIR`)"
    return (f"{path} is remote and fix only rewrites local files: {how} and run `fp8doctor fix DIR`, "
            "or use `--output DIR` to write a repaired local copy of just the shards that need it")


# --- transports -------------------------------------------------------------------------------

class _Retry(Exception):
    """A transient failure: try again after a delay (or `retry_after` seconds, when the server says)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)


def _retry_after(value: str | None) -> float | None:
    """Seconds a server asks us to wait; None (our own backoff) for anything but a finite number >= 0
    (`nan`, `-5`, `inf` or an HTTP date must neither crash time.sleep nor stall the run)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None


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
        return value

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


# --- the byte source --------------------------------------------------------------------------

@dataclass
class _Planned:
    start: int
    end: int
    future: Future | None = None


class RemoteFile:
    """A ByteSource over range requests. Keeps the first ~100 kB (the header, usually whole) and
    fetches the ranges announced with `prefetch` ahead of the reader, `concurrency` at a time."""

    def __init__(self, store: RemoteStore, name: str) -> None:
        self.name = name
        self.path = store.path_of(name)
        self._store = store
        self._size: int | None = None
        self._error: BaseException | None = None
        self._head = b""
        self._lock = threading.Lock()
        self._head_lock = threading.Lock()
        self._plan: dict[int, _Planned] = {}
        self._starts: list[int] = []
        self._cursor = 0
        self._inflight_bytes = 0
        self._inflight = 0
        self.bytes_read = 0

    def size(self) -> int:
        if self._size is None:
            with self._head_lock:
                if self._error is not None:
                    raise self._error
                if self._size is None:
                    try:
                        data, total = self._store.fetch(self.name, 0, self._store.options.head_probe)
                    except (OSError, CheckpointError) as e:
                        self._error = e
                        raise
                    self._head, self._size = data, total
        return self._size

    def probe(self) -> None:
        """size() for a background thread: errors are kept and raised to the reader."""
        try:
            self.size()
        except (OSError, CheckpointError):
            pass

    def pread(self, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        size = self.size()
        end = offset + length
        if offset < 0 or end > size:
            raise ReadError(f"{self.path}: wanted {length} bytes at offset {offset}, the file has {size}")
        head = self._head
        if end <= len(head):
            data = head[offset:end]
        elif offset < len(head):  # starts in the probe's bytes: fetch only the rest
            rest = self._take(len(head), end)
            if rest is None:
                rest = self._fetch(len(head), end)
            if 0 < offset <= 8:  # the rest of a header larger than the probe (parse_header): keep it
                with self._lock:
                    if len(self._head) == len(head):
                        self._head = head + rest
            data = head[offset:] + rest
        else:
            data = self._take(offset, end)
            if data is None:
                data = self._fetch(offset, end)
        with self._lock:
            self.bytes_read += length
        return data

    def prefetch(self, ranges: list[tuple[int, int]]) -> None:
        """Announce the [start, end) ranges about to be read (in order): they are fetched ahead."""
        self.size()
        with self._lock:
            for start, end in ranges:
                start = max(start, len(self._head))  # the probe's bytes are at hand already
                if end > start and start not in self._plan:
                    self._plan[start] = _Planned(start, end)
            self._starts = sorted(self._plan)
            self._cursor = 0
            self._fill()

    def _fetch(self, start: int, end: int) -> bytes:
        return self._store.fetch(self.name, start, end)[0]

    def _submit(self, p: _Planned) -> None:
        p.future = self._store.pool().submit(self._fetch, p.start, p.end)
        self._inflight += 1
        self._inflight_bytes += p.end - p.start

    def _fill(self) -> None:
        opts = self._store.options
        while self._cursor < len(self._starts):
            p = self._plan.get(self._starts[self._cursor])
            if p is not None and p.future is None:
                if self._inflight and (self._inflight >= 2 * opts.concurrency
                                       or self._inflight_bytes + p.end - p.start > opts.prefetch_bytes):
                    return
                self._submit(p)
            self._cursor += 1

    def _take(self, offset: int, end: int) -> bytes | None:
        with self._lock:
            i = bisect.bisect_right(self._starts, offset) - 1
            p = self._plan.get(self._starts[i]) if i >= 0 else None
            if p is None or end > p.end:
                return None
            if p.future is None:
                self._submit(p)
            future = p.future
        assert future is not None
        try:
            data = future.result()
        except BaseException:
            self._done(p)
            raise
        if end >= p.end:
            self._done(p)
        return data[offset - p.start:end - p.start]

    def _done(self, p: _Planned) -> None:
        with self._lock:
            if self._plan.pop(p.start, None) is not None:
                self._inflight -= 1
                self._inflight_bytes -= p.end - p.start
                self._fill()

    def close(self) -> None:
        with self._lock:
            for p in self._plan.values():
                if p.future is not None:
                    p.future.cancel()
            self._plan.clear()
            self._starts = []
            self._inflight = self._inflight_bytes = 0


# --- the store --------------------------------------------------------------------------------

class RemoteStore:
    """The files of a remote checkpoint: fetches, caches small files, counts what the network cost."""

    def __init__(self, loc: RemoteURL, options: RemoteOptions) -> None:
        self.loc = loc
        self.options = options
        self.transfer = Transfer()
        self._small: dict[str, bytes | None] = {}
        self._files: dict[str, RemoteFile] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._owned_client: Any = None
        self._commit: str | None = None
        self._get: Callable[[str, str, int, int], tuple[bytes, int]]
        self._where: Callable[[str], str]
        if loc.kind == "hf":
            self._init_hub()
        elif loc.kind == "http":
            self._init_http()
        else:
            self._init_fsspec()

    def _init_hub(self) -> None:
        try:
            from huggingface_hub import __version__ as hub_version
            from huggingface_hub import constants, get_session, get_token, hf_hub_url
        except ImportError:
            raise RemoteError(f"{self.loc.url}: {INSTALL_HINT}") from None
        from fp8doctor import __version__

        offline = getattr(constants, "is_offline_mode", None)
        if offline() if offline is not None else getattr(constants, "HF_HUB_OFFLINE", False):
            raise RemoteError(f"{self.loc.url}: HF_HUB_OFFLINE is set; unset it to scan a checkpoint on the Hub")
        endpoint = (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
        # The token as huggingface_hub finds it (HF_TOKEN, `hf auth login`, ...). Not build_hf_headers:
        # its user agent probes the Hub for a registry, a request the user did not ask for.
        headers = {"User-Agent": f"fp8doctor/{__version__}; hf_hub/{hub_version}"}
        token = None if constants.HF_HUB_DISABLE_IMPLICIT_TOKEN else get_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        loc = self.loc
        pinned = loc.revision is not None and re.fullmatch(r"[0-9a-f]{40}", loc.revision) is not None

        def on_response(r: Any) -> None:
            # Pin the commit the first answer came from, so every file is read at one revision.
            if self._commit is None and not pinned:
                for resp in [*(getattr(r, "history", ()) or ()), r]:
                    commit = resp.headers.get("X-Repo-Commit")
                    if commit and re.fullmatch(r"[0-9a-f]{40}", commit):
                        self._commit = commit
                        break

        http = _Http(get_session(), headers, self.options, self.transfer, on_response, hub=True)

        def where(name: str) -> str:
            return hf_hub_url(loc.repo_id, name, subfolder=loc.base or None,
                              repo_type=None if loc.repo_type == "model" else loc.repo_type,
                              revision=self._commit or loc.revision, endpoint=endpoint)

        self._where = where
        self._get = http.get

    def _init_http(self) -> None:
        try:
            try:
                httpx = importlib.import_module("httpx2")
            except ImportError:
                httpx = importlib.import_module("httpx")
        except ImportError:
            raise RemoteError(f"{self.loc.url}: {INSTALL_HINT}") from None
        from fp8doctor import __version__

        self._owned_client = httpx.Client(follow_redirects=True, headers={"User-Agent": f"fp8doctor/{__version__}"})
        http = _Http(self._owned_client, {}, self.options, self.transfer)
        self._where = lambda name: f"{self.loc.base}/{quote(name, safe='/')}"
        self._get = http.get

    def _init_fsspec(self) -> None:
        try:
            import fsspec
        except ImportError:
            raise RemoteError(f"{self.loc.url}: {INSTALL_HINT}") from None
        try:
            fs, base = fsspec.core.url_to_fs(self.loc.base)
        except (ImportError, ValueError) as e:
            raise RemoteError(f"{self.loc.url}: {e}") from None
        self._fs, self._fs_base = fs, base.rstrip("/")
        self._where = lambda name: f"{self._fs_base}/{name}"
        self._get = _Fsspec(fs, self.options, self.transfer).get

    # Store protocol ------------------------------------------------------------------------

    def path_of(self, name: str) -> str:
        return self.loc.display(name)

    def fetch(self, name: str, start: int, end: int) -> tuple[bytes, int]:
        return self._get(self._where(name), self.path_of(name), start, end)

    def read_small(self, name: str, limit: int) -> bytes | None:
        if name not in self._small:
            try:
                data = self.fetch(name, 0, limit + 1)[0]
            except FileNotFoundError:
                data = None
            if data is not None and len(data) > limit:
                raise OSError(errno.EFBIG, f"larger than {limit:,} bytes")
            self._small[name] = data
        return self._small[name]

    def problem(self, name: str) -> tuple[str, str] | None:
        if "://" in name or "?" in name or "#" in name or name.startswith("//"):
            return "path-unsafe", f"shard name {name!r} is not a path under the checkpoint's base URL; not read"
        return None

    def open(self, name: str) -> ByteSource:
        with self._pool_lock:
            f = self._files.get(name)
            if f is None:
                f = self._files[name] = RemoteFile(self, name)
            return f

    def prepare(self, names: list[str]) -> None:
        """Send the header probes of all shards at once; the loader then reads them in order."""
        for name in names:
            if self.problem(name) is None:
                src = self.open(name)
                assert isinstance(src, RemoteFile)
                self.pool().submit(src.probe)

    def list_shards(self) -> list[str] | None:
        """Shard names at the base, where the protocol can list (fsspec); None for HTTP and the Hub."""
        if self.loc.kind != "fsspec":
            return None
        self.transfer.add(requests=1)
        try:
            entries = self._fs.ls(self._fs_base, detail=False)
        except FileNotFoundError:
            return []
        return sorted(e.rstrip("/").rsplit("/", 1)[-1] for e in entries if e.endswith(".safetensors"))

    def pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.options.concurrency, thread_name_prefix="fp8doctor-fetch")
            return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._owned_client is not None:
            self._owned_client.close()
            self._owned_client = None


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
