"""fp8doctor/inspection.py: the baseline's hashes come from the bytes the scan read, never a
second read of the checkpoint (for a URL: a second network pass)."""

from __future__ import annotations

import hashlib

from fp8doctor import scanner
from fp8doctor.checkpoint.loader import open_checkpoint
from fp8doctor.testing import synth
from tests.conftest import poke


def test_a_streamed_scale_is_hashed_in_the_scans_own_pass(tmp_path, monkeypatch):
    """A scale tensor larger than one read is judged in row slabs; its sha256 is taken from those
    slabs as they pass, so a scan with hashes reads exactly what one without does."""
    d = str(tmp_path / "v4")
    synth.deepseek_v4(d)
    name = "layers.0.ffn.experts.0.w1.scale"  # padded rows: garbage there is a finding on this tensor
    poke(d, name, 800, bytes([0x91]) * 160)
    with open_checkpoint(d) as ck:
        t = ck.tensors[name]
        want = "sha256:" + hashlib.sha256(ck.read(t)).hexdigest()
    monkeypatch.setattr(scanner, "MAX_READ", max(64, t.nbytes // 4))  # this tensor now streams
    plain = scanner.scan(d)
    hashed = scanner.scan(d, hashes=True)
    assert [f.rule for f in plain.findings if f.tensor == name] == ["scale-padding-nonzero"]
    assert hashed.tensor_hashes[name] == want
    assert hashed.stats.bytes_read == plain.stats.bytes_read
