"""RemoteStore, the Store of a remote checkpoint, for its three kinds of URL (the Hub, plain HTTP,
fsspec): fetches, caches small files, lists where the protocol can, counts what the network cost."""

from __future__ import annotations

import errno
import importlib
import os
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

from fp8doctor.checkpoint.remote.options import INSTALL_HINT, RemoteError, RemoteOptions, Transfer
from fp8doctor.checkpoint.remote.prefetch import RemoteFile
from fp8doctor.checkpoint.remote.transports import _Fsspec, _Http
from fp8doctor.checkpoint.remote.url import RemoteURL
from fp8doctor.checkpoint.source import ByteSource


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
            fs, base = fsspec.core.url_to_fs(self.loc.base)  # type: ignore[no-untyped-call]
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
