"""A small HTTP server on 127.0.0.1 for the remote tests: static files with (or without) Range
support, and the Hub's `/{repo}/resolve/{revision}/{file}` endpoint with its 302 to a CDN path.

Every request is logged (path, Range, status, body bytes actually sent) so tests can check what
went over the wire. Failure modes: `fail_first` answers 503 to the first N requests, `always_fail`
to all; `ranges=False` ignores Range and sends the whole file with 200; `delay` slows each answer.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class LocalHTTP:
    """A threading HTTP server on 127.0.0.1 (a free port) answering with `handler`, in a daemon thread."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@dataclass
class Hit:
    method: str
    path: str
    range: str | None
    status: int
    sent: int
    auth: str | None


@dataclass
class FakeServer:
    root: str = ""
    """Directory served at / (plain HTTP mode)."""
    repos: dict[str, str] = field(default_factory=dict)
    """Hub mode: repo id -> directory, served at /{repo}/resolve/{main|COMMIT}/{file}."""
    token: str | None = None
    ranges: bool = True
    fail_first: int = 0
    always_fail: bool = False
    delay: float = 0.0
    max_in_flight: int = 0
    _hits: list[Hit] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0
        self._seen = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True
            timeout = 10

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server._handle(self)

        self._http = LocalHTTP(Handler)

    @property
    def url(self) -> str:
        return self._http.url

    def close(self) -> None:
        self._http.close()

    @property
    def hits(self) -> list[Hit]:
        """The requests answered so far (waits for answers still being logged)."""
        deadline = time.monotonic() + 2
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.005)
        with self._lock:
            return list(self._hits)

    def body_bytes(self) -> int:
        return sum(h.sent for h in self.hits)

    # --- request handling ---------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            self._seen += 1
            seen = self._seen
        try:
            if self.delay:
                time.sleep(self.delay)
            status, sent = 0, 0
            status, sent = self._route(h, seen)
        finally:
            with self._lock:
                self._hits.append(Hit("GET", h.path, h.headers.get("Range"), status, sent,
                                      h.headers.get("Authorization")))
                self._in_flight -= 1

    def _route(self, h: BaseHTTPRequestHandler, seen: int) -> tuple[int, int]:
        if self.always_fail or seen <= self.fail_first:
            return self._empty(h, 503), 0
        path = unquote(urlsplit(h.path).path)
        if self.repos:
            m = re.match(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$", path)
            if m:
                return self._resolve(h, m["repo"], unquote(m["rev"]), m["file"])
            m = re.match(r"^/cdn/(?P<repo>[^/]+/[^/]+)/(?P<file>.+)$", path)
            if m and m["repo"] in self.repos:
                return self._file(h, os.path.join(self.repos[m["repo"]], m["file"]))
            return self._empty(h, 404), 0
        return self._file(h, os.path.join(self.root, path.lstrip("/")))

    def _resolve(self, h: BaseHTTPRequestHandler, repo: str, rev: str, file: str) -> tuple[int, int]:
        if self.token is not None and h.headers.get("Authorization") != f"Bearer {self.token}":
            return self._empty(h, 401, {"X-Error-Code": "RepoNotFound"}), 0
        if repo not in self.repos:
            return self._empty(h, 404, {"X-Error-Code": "RepoNotFound"}), 0
        if rev not in ("main", COMMIT):
            return self._empty(h, 404, {"X-Error-Code": "RevisionNotFound"}), 0
        if not os.path.isfile(os.path.join(self.repos[repo], file)):
            return self._empty(h, 404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT}), 0
        # like the Hub for LFS files: a redirect to a content server that does the range reads
        return self._empty(h, 302, {"Location": f"/cdn/{repo}/{file}", "X-Repo-Commit": COMMIT}), 0

    def _empty(self, h: BaseHTTPRequestHandler, status: int, headers: dict[str, str] | None = None) -> int:
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", "0")
        h.end_headers()
        return status

    def _file(self, h: BaseHTTPRequestHandler, path: str) -> tuple[int, int]:
        if not os.path.isfile(path):
            return self._empty(h, 404), 0
        size = os.path.getsize(path)
        rng = h.headers.get("Range")
        m = re.match(r"^bytes=(\d+)-(\d*)$", rng or "")
        if not self.ranges or m is None:
            with open(path, "rb") as f:
                return self._send(h, 200, f.read(), {})
        start = int(m[1])
        end = min(int(m[2]) if m[2] else size - 1, size - 1)
        if start >= size:
            return self._empty(h, 416, {"Content-Range": f"bytes */{size}"}), 0
        with open(path, "rb") as f:
            f.seek(start)
            body = f.read(end + 1 - start)
        return self._send(h, 206, body, {"Content-Range": f"bytes {start}-{end}/{size}"})

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> tuple[int, int]:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        sent = 0
        try:
            for i in range(0, len(body), 1 << 16):
                h.wfile.write(body[i:i + (1 << 16)])
                sent += len(body[i:i + (1 << 16)])
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True
        return status, sent
