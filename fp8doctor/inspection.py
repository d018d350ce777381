"""One inspection of an open checkpoint: what every verb derives from it before reading a scale.

scan (scanner.analyze), dump (dumper.dump_checkpoint), fix's planner (through the Analysis) and the
baseline's hashes all work from one `Inspection`: the open checkpoint, its pairing (layouts,
value-only scales, the pairing's findings), the content options the rules run with, and the weight
reader that confirms zero scales. Nothing here reads a scale byte; the scanner does, and records
each judged scale tensor's sha256 in `hashes` when asked (the bytes are in hand then).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fp8doctor.checkpoint.header import TensorInfo
from fp8doctor.checkpoint.model import Checkpoint
from fp8doctor.layouts.model import ScaleLayout
from fp8doctor.layouts.pairing import LayoutBuilder, PairingResult
from fp8doctor.rules.content import ContentOptions

if TYPE_CHECKING:
    from fp8doctor.scanner import ScanOptions

HASH_LIMIT = 256 << 20
"""Largest scale tensor whose bytes are hashed (bigger ones are hashed by header entry)."""


def bytes_hash(chunks: Iterable[bytes | memoryview]) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return "sha256:" + h.hexdigest()


def header_hash(t: TensorInfo) -> str:
    """A tensor by its header entry (dtype, shape, offsets): weights are never read in full."""
    return "sha256:" + hashlib.sha256(json.dumps(["header", t.dtype, list(t.shape), t.begin, t.end]).encode()
                                      ).hexdigest()


class RowHasher:
    """The sha256 of a tensor read in row slabs, fed by whichever pass first reads it from its start
    to its end in order (later passes, and reads out of order, leave it alone)."""

    def __init__(self, nbytes: int) -> None:
        self._h = hashlib.sha256()
        self._at = 0
        self._nbytes = nbytes

    def feed(self, offset: int, data: bytes | memoryview) -> None:
        if offset == self._at and self._at < self._nbytes:
            self._h.update(data)
            self._at += len(data)

    @property
    def digest(self) -> str | None:
        return "sha256:" + self._h.hexdigest() if self._at == self._nbytes else None


@dataclass
class Inspection:
    """An open checkpoint with its pairing, content options and weight reader (see the module doc)."""

    checkpoint: Checkpoint
    pairing: PairingResult
    content: ContentOptions
    layouts: dict[str, ScaleLayout] = field(default_factory=dict)
    hashes: dict[str, str] | None = None
    """Scale tensor name -> sha256 of its stored bytes, filled by the scan when not None."""

    @classmethod
    def of(cls, ckpt: Checkpoint, options: ScanOptions, hashes: bool = False) -> Inspection:
        pairing = LayoutBuilder(ckpt.tensors, ckpt.config, options.overrides).build()
        quant = ckpt.config.quant if ckpt.config else None
        content = options.content_options(bool(quant and quant.ue8m0))
        return cls(ckpt, pairing, content, {lay.scale.name: lay for lay in pairing.layouts},
                   {} if hashes else None)

    @property
    def scale_tensors(self) -> list[TensorInfo]:
        """Every tensor the pairing calls a scale: paired ones, then value-only ones."""
        return [lay.scale for lay in self.pairing.layouts] + self.pairing.value_only

    def read_weight(self, w: TensorInfo, start: int, length: int) -> bytes:
        """Weight bytes behind a zero scale (rules/judge.py's `read_weight`)."""
        if not self.checkpoint.readable(w):
            raise OSError(f"{w.name} is not fully inside its file")
        return self.checkpoint.read(w, start, length)

    def record_hash(self, t: TensorInfo, data: bytes | memoryview) -> None:
        """Note a judged scale tensor's sha256 while its bytes are in hand (when hashes are wanted)."""
        hasher = self.row_hasher(t)
        if hasher is not None:
            hasher.feed(0, data)
        self.record_digest(t, hasher)

    def row_hasher(self, t: TensorInfo) -> RowHasher | None:
        """A hasher for a scale tensor the scan reads in row slabs (None: no hash wanted for it)."""
        return RowHasher(t.nbytes) if self.hashes is not None and t.nbytes <= HASH_LIMIT else None

    def record_digest(self, t: TensorInfo, hasher: RowHasher | None) -> None:
        """Note the sha256 a RowHasher took of a whole tensor (nothing when it saw only part of it)."""
        digest = hasher.digest if hasher is not None else None
        if self.hashes is not None and digest is not None:
            self.hashes[t.name] = digest

    def tensor_hashes(self, names: Iterable[str | None]) -> dict[str, str]:
        """What a baseline keys the findings on these tensors by: the stored bytes of a scale tensor
        the scan judged (hashed from the bytes it read; one it could not hash then is read again, in
        chunks), else the header entry of any other tensor fully inside its file. Tensors absent or
        unreadable get none (their findings are hashed by rule and message)."""
        out: dict[str, str] = {}
        ckpt = self.checkpoint
        scales = self.pairing.scale_names
        for name in dict.fromkeys(n for n in names if n is not None):
            t = ckpt.tensors.get(name)
            if t is None or not ckpt.readable(t):
                continue
            digest = (self.hashes or {}).get(name)
            if digest is None and name in scales and t.nbytes <= HASH_LIMIT:
                try:
                    step = 16 << 20
                    digest = bytes_hash(ckpt.read(t, o, min(step, t.nbytes - o)) for o in range(0, t.nbytes, step))
                except OSError:
                    digest = None
            out[name] = digest if digest is not None else header_hash(t)
        return out


__all__ = ["HASH_LIMIT", "Inspection", "RowHasher", "bytes_hash", "header_hash"]
