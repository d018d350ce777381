"""Capped lists show the worst findings first and say what they hid (issue 14)."""

from __future__ import annotations

from fp8doctor.findings import Finding, Region, Severity, natural_key, ranked
from fp8doctor.testing import synth
from tests.conftest import poke, run_cli


def _f(rule: str, tensor: str, region: Region = Region.PADDING, fixable: bool = True,
       severity: Severity = Severity.ERROR) -> Finding:
    return Finding(rule, severity, "a.safetensors", tensor, "m", region, fixable=fixable)


def test_unfixable_real_entry_errors_rank_before_fixable_padding():
    pad = [_f("scale-padding-nonzero", f"layers.{i}.w.scale") for i in range(30)]
    nan = _f("scale-nan", "layers.9.w.scale", Region.LOGICAL, fixable=False)
    hdr = _f("header-invalid", "", Region.HEADER, fixable=False)
    warn = _f("scale-outlier", "layers.0.w.scale", Region.LOGICAL, False, Severity.WARNING)
    order = ranked([warn, *pad, hdr, nan])
    assert order[:3] == [nan, hdr, pad[0]] and order[-1] == warn


def test_layer_and_expert_numbers_sort_numerically():
    names = ["layers.10.experts.2.w", "layers.2.experts.10.w", "layers.2.experts.2.w", "layers.2.experts.1.w"]
    assert sorted(names, key=natural_key) == ["layers.2.experts.1.w", "layers.2.experts.2.w",
                                              "layers.2.experts.10.w", "layers.10.experts.2.w"]
    fs = ranked([_f("scale-padding-nonzero", n) for n in names])
    assert [f.tensor for f in fs] == sorted(names, key=natural_key)


def test_console_and_annotations_lead_with_the_unfixable_nan_and_name_what_they_hid(tmp_path):
    d = str(tmp_path / "v4")
    synth.deepseek_v4(d)
    synth.garble_padding(d, prefix="")  # padding garbage in every layer: many fixable errors
    poke(d, "layers.1.attn.wkv.scale", 1, b"\xff")  # one NaN in a real entry, late in file order
    r = run_cli("scan", d, "--max-findings", "3")
    assert r.returncode == 1
    after = r.stdout.split("Findings (worst 3 of ", 1)[1]
    listed = [ln.split()[1] for ln in after.splitlines() if ln.startswith("error   ")]
    assert listed[0] == "scale-nan" and len(listed) == 3
    more = next(ln for ln in r.stdout.splitlines() if ln.startswith("..."))
    assert "more findings not listed:" in more and "errors (scale-padding-nonzero x" in more
    r = run_cli("scan", d, "--format", "github", "--max-findings", "1")
    lines = r.stdout.splitlines()
    assert lines[0].startswith("::error ") and "fp8doctor scale-nan" in lines[0]
    assert "more findings not annotated: " in lines[-1] and "scale-padding-nonzero x" in lines[-1]
