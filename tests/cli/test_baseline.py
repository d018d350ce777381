"""Baselines end to end through the CLI: accepted findings stop failing, new or changed ones fail."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from fp8doctor.cli.app import app
from tests.conftest import poke, run_cli
from tests.helpers.ci_helpers import break_padding

runner = CliRunner()


def scan(*args):
    r = runner.invoke(app, ["scan", *map(str, args)])
    return r


def test_write_then_apply_baseline(v4, tmp_path):
    break_padding(v4)
    base = tmp_path / "baseline.json"
    r = scan(v4, "--write-baseline", base)
    assert r.exit_code == 0 and "wrote 9 findings to baseline" in r.stderr
    data = json.loads(base.read_text())
    assert data["fp8doctor_baseline"] == 1 and len(data["findings"]) == 9
    entry = data["findings"][0]
    assert set(entry) >= {"rule", "file", "tensor", "hash"} and entry["hash"].startswith("sha256:")

    # the known findings no longer fail the scan; the summary says how many were suppressed
    r = scan(v4, "--baseline", base)
    assert r.exit_code == 0 and "9 known findings suppressed by the baseline" in r.stdout
    r = scan(v4, "--baseline", base, "--format", "json")
    doc = json.loads(r.stdout)
    assert doc["findings"] == [] and doc["baseline"] == {"file": str(base), "suppressed": 9}

    # a new finding fails
    off = poke(v4, "layers.1.attn.wkv.scale", 1, b"\xff")
    r = scan(v4, "--baseline", base, "--format", "json")
    doc = json.loads(r.stdout)
    assert r.exit_code == 1 and [(f["rule"], f["byte_offset"]) for f in doc["findings"]] == [("scale-nan", off)]
    assert doc["baseline"]["suppressed"] == 9


def test_changed_bytes_make_a_finding_new_again(v4, tmp_path):
    break_padding(v4)
    base = tmp_path / "b.json"
    assert scan(v4, "--write-baseline", base).exit_code == 0
    poke(v4, "layers.0.attn.wq_b.scale", 2 * 4 + 2, b"\x91")  # more garbage in a known-bad tensor's padding
    doc = json.loads(scan(v4, "--baseline", base, "--format", "json").stdout)
    [f] = doc["findings"]
    assert f["tensor"] == "layers.0.attn.wq_b.scale" and f["message"].endswith("(changed since the baseline)")
    assert doc["baseline"]["suppressed"] == 8


def test_baseline_from_config_and_clean_checkpoint(v4, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    break_padding(v4)
    (tmp_path / "fp8doctor.toml").write_text('baseline = "accepted.json"\n')
    assert scan(v4, "--write-baseline", tmp_path / "accepted.json").exit_code == 0
    r = run_cli("scan", v4, cwd=str(tmp_path))
    assert r.returncode == 0 and "9 known findings suppressed" in r.stdout


def test_bad_baselines_exit_2(v4, tmp_path):
    r = scan(v4, "--baseline", tmp_path / "missing.json")
    assert r.exit_code == 2 and "cannot read baseline" in r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"findings": 3}')
    r = scan(v4, "--baseline", bad)
    assert r.exit_code == 2 and "not an fp8doctor baseline" in r.stderr
    bad.write_text("not json")
    assert scan(v4, "--baseline", bad).exit_code == 2
    r = scan(v4, "--baseline", bad, "--write-baseline", tmp_path / "x.json")
    assert r.exit_code == 2 and "together" in r.stderr


def test_baseline_hashes_come_from_the_scan_without_reopening(v4, tmp_path, monkeypatch):
    """The scan hashes each scale tensor while its bytes are in hand: the baseline never opens the
    checkpoint a second time, and a scale finding's hash is the sha256 of the tensor's stored bytes."""
    import hashlib

    import fp8doctor.checkpoint.loader as loader
    import fp8doctor.scanner as scanner
    from fp8doctor.checkpoint.loader import open_checkpoint

    break_padding(v4)
    with open_checkpoint(v4) as ck:
        t = ck.tensors["layers.0.attn.wq_b.scale"]
        expected = "sha256:" + hashlib.sha256(ck.read(t)).hexdigest()
    opened = []
    real = loader.open_checkpoint

    def counting(path):
        opened.append(path)
        return real(path)

    monkeypatch.setattr(scanner, "open_checkpoint", counting)
    monkeypatch.setattr(loader, "open_checkpoint", counting)
    base = tmp_path / "b.json"
    assert scan(v4, "--write-baseline", base).exit_code == 0
    assert len(opened) == 1
    import fp8doctor.baseline as baseline

    assert not hasattr(baseline, "open_checkpoint")
    entries = json.loads(base.read_text())["findings"]
    assert {e["hash"] for e in entries if e["tensor"] == t.name} == {expected}
    assert scan(v4, "--baseline", base).exit_code == 0 and len(opened) == 2  # one open per scan


def test_library_report_hashes_only_when_asked(v4):
    import fp8doctor
    from fp8doctor.scanner import scan as pipeline

    break_padding(v4)
    assert fp8doctor.scanner.scan is pipeline
    plain = pipeline(v4)
    assert plain.findings and plain.tensor_hashes == {}
    hashed = pipeline(v4, hashes=True)
    assert {f.tensor for f in hashed.findings if f.tensor} <= set(hashed.tensor_hashes)
def test_write_baseline_says_what_it_recorded_and_prints_no_failure_report(v4, tmp_path):
    break_padding(v4)
    base = tmp_path / "baseline.json"
    r = scan(v4, "--write-baseline", base)
    assert r.exit_code == 0
    assert r.stdout == ""  # no red "✗ 9 errors" report for findings just accepted
    assert "✗" not in r.stderr and "Findings" not in r.stderr
    assert f"wrote 9 findings to baseline {base} (scale-padding-nonzero x9)" in r.stderr
    assert f"--baseline {base}` now reports only new or changed findings" in r.stderr
    r = scan(v4, "--write-baseline", tmp_path / "b2.json", "--format", "json")  # asked-for formats still come
    assert r.exit_code == 0 and json.loads(r.stdout)["summary"]["errors"] == 9
