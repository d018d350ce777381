"""Issue 13, section 3: a hostile server cannot hang a request (a total deadline per request), make
fp8doctor allocate by its claims (Content-Range total 2^62), or crash the retry loop (Retry-After nan
or -5)."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler

import pytest

from fp8doctor.checkpoint.remote import RemoteError, RemoteOptions, open_remote_checkpoint, retry
from tests.helpers.fakehub import LocalHTTP
from tests.helpers.fix_helpers import dirty_v4


class Hostile:
    """Serves the files under `root` with Range support, misbehaving as told."""

    def __init__(self, root: str, drip: float = 0.0, retry_after: str | None = None, total: int | None = None,
                 claim: str = ".safetensors", header_drip: float = 0.0):
        self.root, self.drip, self.retry_after, self.total, self.claim = root, drip, retry_after, total, claim
        self.header_drip = header_drip
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                outer.requests += 1
                if outer.retry_after is not None:
                    self.send_response(503)
                    self.send_header("Retry-After", outer.retry_after)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path = os.path.join(outer.root, self.path.lstrip("/"))
                if not os.path.isfile(path):
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                with open(path, "rb") as f:
                    data = f.read()
                m = re.match(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
                a, b = (int(m.group(1)), int(m.group(2))) if m else (0, len(data) - 1)
                total = outer.total if outer.total is not None and path.endswith(outer.claim) else len(data)
                b = min(b, total - 1)
                body = data[a:b + 1]
                if len(body) < b + 1 - a:  # claimed beyond the real file: pad (the claim is the attack)
                    body += bytes(b + 1 - a - len(body))
                if outer.header_drip:  # the status line and headers one byte at a time, then the body
                    head = (f"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{total}\r\n"
                            f"Content-Length: {len(body)}\r\n\r\n").encode()
                    try:
                        for i in range(len(head)):
                            self.wfile.write(head[i:i + 1])
                            self.wfile.flush()
                            time.sleep(outer.header_drip)
                        self.wfile.write(body)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    self.close_connection = True
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {a}-{b}/{total}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    if outer.drip:
                        for i in range(len(body)):
                            self.wfile.write(body[i:i + 1])
                            self.wfile.flush()
                            time.sleep(outer.drip)
                    else:
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._http = LocalHTTP(Handler)

    @property
    def url(self) -> str:
        return self._http.url

    def close(self) -> None:
        self._http.close()


@pytest.fixture
def ckpt(tmp_path):
    return dirty_v4(str(tmp_path / "site" / "v4"))


def test_retry_after_values_that_are_not_a_wait():
    for value in ("nan", "-5", "inf", "-inf", "Wed, 21 Oct 2015 07:28:00 GMT", None):
        assert retry._retry_after(value) is None, value
    assert retry._retry_after("0") == 0 and retry._retry_after("1.5") == 1.5


@pytest.mark.parametrize("value", ["nan", "-5"])
def test_retry_after_nan_or_negative_retries_instead_of_crashing(ckpt, value):
    srv = Hostile(os.path.dirname(ckpt), retry_after=value)
    try:
        with pytest.raises(RemoteError, match="gave up after 3 attempts"):
            open_remote_checkpoint(f"{srv.url}/v4/model-00001-of-00002.safetensors",
                                   RemoteOptions(retries=2, backoff=0.01, backoff_max=0.02, timeout=5.0))
        assert srv.requests == 3
    finally:
        srv.close()


def test_a_dripping_server_hits_the_total_deadline(ckpt):
    """One byte every 0.05 s never trips the per-read timeout; the per-request deadline ends it."""
    srv = Hostile(os.path.dirname(ckpt), drip=0.05)
    try:
        opts = RemoteOptions(retries=1, backoff=0.01, backoff_max=0.02, timeout=5.0, deadline=0.5)
        with pytest.raises(RemoteError, match=r"still incomplete after 0\.5 s"):
            open_remote_checkpoint(f"{srv.url}/v4/model-00001-of-00002.safetensors", opts)
    finally:
        srv.close()


def test_a_server_dripping_its_headers_hits_the_total_deadline(ckpt):
    """The deadline covers the whole request, headers included: a status line and headers sent a
    byte every 0.05 s (about 4 s in all, never tripping the per-read timeout) end at 0.5 s."""
    srv = Hostile(os.path.dirname(ckpt), header_drip=0.05)
    try:
        opts = RemoteOptions(retries=1, backoff=0.01, backoff_max=0.02, timeout=5.0, deadline=0.5,
                             head_probe=16)  # bodies of one chunk: only the headers are slow
        with pytest.raises(RemoteError, match=r"still incomplete after 0\.5 s"):
            open_remote_checkpoint(f"{srv.url}/v4/model-00001-of-00002.safetensors", opts)
    finally:
        srv.close()


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


def test_content_range_total_claim_is_not_an_allocation(ckpt, tmp_path):
    """A server claiming a 2^62-byte shard: `fix URL --output` refuses in one line (in a subprocess
    capped at 3 GiB, so a regression is a MemoryError there, never an OOM of the test machine)."""
    srv = Hostile(os.path.dirname(ckpt), total=1 << 62)
    try:
        env = {**os.environ, "NO_COLOR": "1", "FP8DOCTOR_HTTP_RETRIES": "0"}
        proc = subprocess.run([sys.executable, "-m", "fp8doctor", "fix", f"{srv.url}/v4", "--output",
                               str(tmp_path / "out"), "--isolated"], capture_output=True, text=True, env=env,
                              timeout=120, preexec_fn=_limit_memory)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr and "error:" in proc.stderr
        assert "not downloaded" in proc.stderr
        assert not os.path.exists(tmp_path / "out")
    finally:
        srv.close()


def test_an_index_claiming_2_62_bytes_is_one_line(ckpt):
    srv = Hostile(os.path.dirname(ckpt), total=1 << 62, claim=".json")
    try:
        env = {**os.environ, "NO_COLOR": "1", "FP8DOCTOR_HTTP_RETRIES": "0"}
        proc = subprocess.run([sys.executable, "-m", "fp8doctor", "scan", f"{srv.url}/v4", "--isolated"],
                              capture_output=True, text=True, env=env, timeout=120, preexec_fn=_limit_memory)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr and "error:" in proc.stderr, proc.stderr
        assert "larger than" in proc.stderr
    finally:
        srv.close()
