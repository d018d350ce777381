"""Issue 13, section 5: zero scales over all-zero weights stay harmless when the weight-read budget
runs out: "could not be checked" (info) is not "zero over non-zero weights" (error), on the mask path
and the row-slab path alike, and a clean checkpoint exits 0."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from fp8doctor.checkpoint.loader import open_checkpoint
from fp8doctor.cli.app import app
from fp8doctor.findings import Severity
from fp8doctor.layouts.pairing import LayoutBuilder
from fp8doctor.rules import content
from fp8doctor.rules.content import ContentOptions, check_tensor, check_tensor_slabs
from fp8doctor.testing import synth
from tests.helpers.direct_rules import direct_check_tensor


def _zeroed(ck, lay) -> bytes:
    """The scale with every real entry of its first rows set to zero (E8M0 0x00 is 2^-127, F32 0.0)."""
    buf = bytearray(ck.read(lay.scale))
    buf[: len(buf) // 2] = bytes(len(buf) // 2)
    return bytes(buf)


@pytest.mark.parametrize("budget", [0, 3000])
def test_budget_exhausted_is_info_not_error(tmp_path, monkeypatch, budget):
    monkeypatch.setattr(content, "ZERO_CHECK_BYTES", budget)
    d = str(tmp_path / "ck")
    synth.deepseek_v4(d)
    zeros = lambda w, s, n: bytes(n)  # noqa: E731  every weight block is all zero: zero scales are fine
    seen = 0
    with open_checkpoint(d) as ck:
        for lay in LayoutBuilder(ck.tensors, ck.config).build().layouts:
            t = lay.scale
            if lay.kind not in ("block", "group") or len(t.shape) < 2 or t.shape[0] < 2:
                continue
            data = _zeroed(ck, lay)
            rb = t.nbytes // t.shape[0]
            slow = direct_check_tensor(lay, t, data, ContentOptions(), zeros)
            assert check_tensor(lay, t, data, ContentOptions(), zeros) == slow
            rows = lambda r0, n, d=data, rb=rb: d[r0 * rb:(r0 + n) * rb]  # noqa: E731
            fast = check_tensor_slabs(lay, t, rows, ContentOptions(), zeros, slab_bytes=rb * 2)
            assert fast == slow
            assert not [f for f in slow[0] if f.rule == "scale-zero"]  # no error: nothing proven erased
            unchecked = [f for f in slow[0] if f.rule == "scale-zero-unchecked"]
            assert all(f.severity is Severity.INFO and "could not be checked" in f.message for f in unchecked)
            seen += bool(unchecked)
    assert seen >= 3


def test_clean_checkpoint_with_zero_scales_over_zero_weights_exits_0(tmp_path, monkeypatch):
    """Zero scales whose weights are all zero, and a budget too small to read them: exit 0."""
    d = str(tmp_path / "ck")
    synth.deepseek_v4(d)
    with open_checkpoint(d) as ck:
        lay = next(x for x in LayoutBuilder(ck.tensors, ck.config).build().layouts
                   if x.kind == "block" and x.weight is not None and x.scale.shape[0] >= 2)
        w, t = lay.weight, lay.scale
        data = _zeroed(ck, lay)
    with open(f"{d}/{t.file}", "r+b") as f:
        f.seek(t.offset)
        f.write(data)
    with open(f"{d}/{w.file}", "r+b") as f:
        f.seek(w.offset)
        f.write(bytes(w.nbytes))
    runner = CliRunner()
    r = runner.invoke(app, ["scan", d, "--isolated"])
    assert r.exit_code == 0, r.output  # with the full budget, the blocks are read: all zero, harmless
    monkeypatch.setattr(content, "ZERO_CHECK_BYTES", 0)
    r = runner.invoke(app, ["scan", d, "--isolated", "--format", "json"])
    assert r.exit_code == 0, r.output
    assert "could not be checked" in r.output
