"""Padding that holds one accepted fill throughout is a deliberate choice (issue 14): `fix --fill one`
then a plain `scan` passes (info), while mixed or other bytes, or any fill asked for, stay errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fp8doctor.findings import Severity
from fp8doctor.scanner import ScanOptions, scan
from fp8doctor.testing import synth
from tests.conftest import file_bytes, poke, run_cli


def _padding(report):
    return [f for f in report.findings if f.rule == "scale-padding-nonzero"]


@pytest.mark.parametrize("builder", ["deepseek_v4", "deepseek_v32_mla"])  # E8M0 (0x7F) and F32 (1.0) scales
def test_fix_fill_one_then_plain_scan_passes_with_info(tmp_path, builder):
    d = str(tmp_path / "ck")
    getattr(synth, builder)(d)
    synth.garble_padding(d, prefix="")
    assert run_cli("fix", d, "--fill", "one").returncode == 0
    r = run_cli("scan", d, "--format", "json")
    assert r.returncode == 0, r.stdout
    doc = json.loads(r.stdout)
    pads = [f for f in doc["findings"] if f["rule"] == "scale-padding-nonzero"]
    assert pads and all(f["severity"] == "info" and not f["fixable"] for f in pads)
    assert "the other accepted fill" in pads[0]["message"]
    assert run_cli("scan", d, "--fill", "one").returncode == 0 and "no findings" in run_cli("scan", d, "--fill",
                                                                                             "one").stdout
    strict = run_cli("scan", d, "--fill", "zero", "--format", "json")  # asked for zero: an error again
    assert strict.returncode == 1
    assert {f["severity"] for f in json.loads(strict.stdout)["findings"]} == {"error"}
    before = file_bytes(d)
    fixed = run_cli("fix", d)  # a plain fix leaves the chosen fill alone
    assert fixed.returncode == 0 and "nothing to fix" in fixed.stdout
    assert {k: v for k, v in file_bytes(d).items() if ".fp8doctor-journal" not in k} == \
        {k: v for k, v in before.items() if ".fp8doctor-journal" not in k}


def test_mixed_or_other_padding_stays_an_error(tmp_path):
    d = str(tmp_path / "v4")
    synth.deepseek_v4(d)
    name = "layers.0.attn.wq_b.scale"  # stored [4, 4], logical [2, 2]: padded entries at 2, 3, 6, 7, 8..15
    poke(d, name, 2, b"\x7f\x7f")  # two of twelve padded entries hold 0x7F, the rest 0x00: mixed
    [f] = _padding(scan(d))
    assert f.severity is Severity.ERROR and f.fixable
    for i in (6, 7, *range(8, 16)):
        poke(d, name, i, b"\x7f")
    [f] = _padding(scan(d))
    assert f.severity is Severity.INFO and not f.fixable  # now 0x7F throughout: accepted
    [f] = _padding(scan(d, ScanOptions(fill="zero", fill_explicit=True)))
    assert f.severity is Severity.ERROR
    poke(d, name, 15, b"\x80")  # one entry of another value: an error
    [f] = _padding(scan(d))
    assert f.severity is Severity.ERROR


def test_every_rule_path_accepts_the_same(tmp_path):
    """The streamed (row-slab) path and the whole-tensor path agree on accepted padding."""
    from fp8doctor.checkpoint.loader import open_checkpoint
    from fp8doctor.layouts.pairing import LayoutBuilder
    from fp8doctor.rules.content import ContentOptions, check_tensor, check_tensor_slabs
    from tests.helpers.direct_rules import direct_check_tensor

    d = str(tmp_path / "v4")
    synth.deepseek_v4(d)
    name = "layers.0.ffn.experts.0.w1.scale"  # rows 80..95 padding
    poke(d, name, 800, bytes([0x7F]) * 160)
    with open_checkpoint(d) as ck:
        layouts = {lay.scale.name: lay for lay in LayoutBuilder(ck.tensors, ck.config).build().layouts}
        lay = layouts[name]
        data = ck.read(lay.scale)
    row = len(data) // lay.scale.shape[0]

    def rows(r0: int, n: int) -> bytes:
        return data[r0 * row:(r0 + n) * row]

    for explicit in (False, True):
        opts = ContentOptions(fill="zero", fill_explicit=explicit)
        whole, _ = direct_check_tensor(lay, lay.scale, data, opts, None)
        slabs, _ = check_tensor_slabs(lay, lay.scale, rows, opts, None, slab_bytes=64)
        assert whole == slabs == check_tensor(lay, lay.scale, data, opts, None)[0]
        [f] = [f for f in whole if f.rule == "scale-padding-nonzero"]
        assert f.severity is (Severity.ERROR if explicit else Severity.INFO)
    assert np.frombuffer(data, np.uint8)[800:].tolist() == [0x7F] * 160


def test_rules_json_says_what_the_padding_rule_accepts():
    from typer.testing import CliRunner

    from fp8doctor.cli.app import app

    rules = {r["id"]: r for r in json.loads(CliRunner().invoke(app, ["rules", "--json"]).stdout)}
    assert rules["scale-padding-nonzero"]["accepted_severity"] == "info"
    assert rules["scale-nan"]["accepted_severity"] is None
