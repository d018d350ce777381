"""The remote path grammar: hf://[datasets/]org/model[@rev][/subdir][/file], http(s)://host/base[/file],
or any fsspec URL, parsed into a RemoteURL (where the files are, which file it names)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

from fp8doctor.checkpoint.model import CheckpointError


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
        split = urlsplit(url)
        if split.query or split.fragment:
            raise CheckpointError(f"{url}: URLs with a query or fragment are not supported; give the base URL")
        if not split.hostname:
            raise CheckpointError(f"{url}: no host in the URL")
        path, target = _split_target(split.path.split("/"))
        base = urlunsplit((split.scheme, split.netloc, "/" + path if path else "", "", ""))
        return RemoteURL(url, "http", base, target)
    path_part = url.split("://", 1)[1]
    base, target = _split_target(path_part.split("/"))
    return RemoteURL(url, "fsspec", f"{url.split('://', 1)[0]}://{base}", target)
