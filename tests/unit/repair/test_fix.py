"""`fix` repairs every fixable padding fault of every layout, changes nothing else, and can be undone."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

import fp8doctor
from fp8doctor import LayoutOverride, ScanOptions
from fp8doctor.cli.app import app
from fp8doctor.layouts.model import parse_fill
from fp8doctor.testing import synth
from tests.conftest import poke, run_cli, tensor_info
from tests.helpers.fix_helpers import V4_DIRT, assert_same_outside_padding, checkpoint_files, dirty_v4, padding_masks

runner = CliRunner()


def _fix_and_check(path: str, options: ScanOptions | None = None, fill: str = "zero") -> fp8doctor.FixResult:
    """Fix in place, then: re-scan clean, only padded bytes changed, every padded entry is the fill."""
    options = options or ScanOptions()
    before = checkpoint_files(path)
    masks = padding_masks(path, options)
    assert any(f.fixable for f in fp8doctor.scan(path, options).findings)
    result = fp8doctor.fix(path, options, fill=fill)
    after = checkpoint_files(path)
    changed = assert_same_outside_padding(before, after, masks)
    # bytes_changed counts whole entries; an F32 entry's zero bytes may already match
    assert 0 < changed <= result.bytes_changed <= result.bytes_written
    assert result.verified and result.mode == "in-place" and result.journal and os.path.isfile(result.journal)
    rescan = fp8doctor.scan(path, replace(options, fill=parse_fill(fill)))
    assert rescan.findings == ()
    return result


def test_v4_attention_and_fp4_expert_padding(tmp_path):
    path = dirty_v4(str(tmp_path / "v4"))
    result = _fix_and_check(path)
    by = {c.tensor: c for c in result.changes}
    assert set(by) == {n for n, _, _ in V4_DIRT}
    assert by["layers.0.attn.wq_b.scale"].entries == 3 and by["layers.0.attn.wq_b.scale"].runs == 2
    assert by["layers.0.ffn.experts.0.w1.scale"].entries == 160
    assert by["layers.0.ffn.experts.0.w1.scale"].before == bytes(range(1, 17))
    assert by["layers.0.ffn.experts.0.w1.scale"].after == b"\x00" * 16
    assert result.shards_touched == 2 and result.unfixable == ()
    # a second run has nothing to do and writes no journal
    again = fp8doctor.fix(path)
    assert again.changes == () and again.bytes_written == 0 and again.journal is None


def test_v3_f32_padding_via_layout_override(v3):
    name = "model.layers.0.self_attn.q_b_proj.weight_scale_inv"  # weight [192, 192] -> scale [2, 2]
    poke(v3, name, 3 * 4, np.float32(2.0**40).tobytes())
    opts = ScanOptions(overrides=(LayoutOverride("model.layers.0.*q_b_proj.weight", logical_shape=(100, 192)),))
    result = _fix_and_check(v3, opts)
    [c] = result.changes
    assert (c.tensor, c.encoding, c.entries, c.nbytes) == (name, "f32", 2, 8)
    t = tensor_info(v3, name)
    with open(os.path.join(v3, t.file), "rb") as f:
        f.seek(t.offset)
        vals = np.frombuffer(f.read(16), dtype="<f4")
    assert vals[2] == 0.0 and vals[3] == 0.0 and vals[0] > 0 and vals[1] > 0


def test_v3_f32_fill_one_writes_float_one(v3):
    name = "model.layers.0.self_attn.q_b_proj.weight_scale_inv"
    opts = ScanOptions(overrides=(LayoutOverride("model.layers.0.*q_b_proj.weight", logical_shape=(100, 192)),))
    result = _fix_and_check(v3, opts, fill="one")
    t = tensor_info(v3, name)
    with open(os.path.join(v3, t.file), "rb") as f:
        f.seek(t.offset + 8)
        assert f.read(8) == b"\x00\x00\x80\x3f" * 2
    assert result.fill == "one"


def test_gpt_oss_padding_declared_by_config(oss):
    cfg_path = os.path.join(oss, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["hidden_size"] = 90  # stored 96 = 90 rounded up to 16: down_proj rows 90..95 are padding
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    name = "model.layers.0.mlp.experts.down_proj_scales"  # [E=4, N=96, G=2]
    poke(oss, name, (1 * 96 + 93) * 2, b"\xff\xee")
    result = _fix_and_check(oss)
    # the generator filled the (now) padded rows with real-looking exponents: all of them are rewritten
    [c] = result.changes
    assert c.tensor == name and c.entries == 4 * 6 * 2 and c.runs == 4


def test_compressed_tensors_padding_via_override(ct):
    opts = ScanOptions(overrides=(LayoutOverride("*q_proj.weight_packed", logical_shape=(100, 256)),))
    result = _fix_and_check(ct, opts)
    [c] = result.changes
    assert c.tensor == "model.layers.0.self_attn.q_proj.weight_scale" and c.entries == 12 * 8 and c.runs == 1


@pytest.mark.parametrize("fill,byte", [("one", 0x7F), ("0x42", 0x42)])
def test_fill_choices_e8m0(tmp_path, fill, byte):
    path = dirty_v4(str(tmp_path / "v4"))
    result = _fix_and_check(path, fill=fill)
    name = "layers.0.ffn.experts.0.w1.scale"
    t = tensor_info(path, name)
    with open(os.path.join(path, t.file), "rb") as f:
        f.seek(t.offset)
        data = f.read(t.nbytes)
    assert data[800:] == bytes([byte]) * 160
    # a non-zero fill repairs every padded entry, clean ones included
    assert len(result.changes) == 18


def test_dry_run_changes_nothing(tmp_path):
    path = dirty_v4(str(tmp_path / "v4"))
    before = checkpoint_files(path)
    result = fp8doctor.fix(path, dry_run=True)
    assert checkpoint_files(path) == before and not os.path.exists(os.path.join(path, ".fp8doctor-journal"))
    assert result.mode == "dry-run" and result.bytes_written == 0 and result.bytes_changed == 2 + 1 + 2 + 160
    cli = runner.invoke(app, ["fix", path, "--dry-run", "--no-color"], env={"COLUMNS": "200"})
    assert cli.exit_code == 0, cli.output
    assert "would change 165 bytes" in cli.output and "nothing was written" in cli.output
    assert "90 91 → 00 00" in cli.output  # the before/after sample of the first run
    assert checkpoint_files(path) == before


def test_output_copy_links_unchanged_shards(tmp_path):
    path = str(tmp_path / "v4")
    synth.deepseek_v4(path)
    poke(path, "layers.1.ffn.experts.1.w3.scale", 85 * 10, b"\x90")  # second shard only
    before = checkpoint_files(path)
    masks = padding_masks(path)
    out = str(tmp_path / "fixed")
    result = fp8doctor.fix(path, output=out)
    assert checkpoint_files(path) == before  # the source is untouched
    assert not os.path.exists(os.path.join(path, ".fp8doctor-journal"))
    assert result.mode == "output" and result.output == out and result.bytes_written == 1
    s1, s2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    assert os.stat(os.path.join(out, s1)).st_ino == os.stat(os.path.join(path, s1)).st_ino
    assert os.stat(os.path.join(out, s2)).st_ino != os.stat(os.path.join(path, s2)).st_ino
    copy = checkpoint_files(out)
    assert set(copy) == set(before)  # index and config carried over
    assert assert_same_outside_padding(before, copy, masks) == 1
    assert fp8doctor.scan(out).findings == ()
    # an existing non-empty output directory is refused
    again = runner.invoke(app, ["fix", path, "--output", out])
    assert again.exit_code == 2 and "not an empty directory" in again.output


def test_undo_restores_exact_original_bytes(tmp_path):
    path = dirty_v4(str(tmp_path / "v4"))
    original = checkpoint_files(path)
    fp8doctor.fix(path)
    assert checkpoint_files(path) != original
    result = fp8doctor.fix(path, undo=True)
    assert result.mode == "undo" and result.bytes_changed == 165 <= result.bytes_written
    assert checkpoint_files(path) == original
    # nothing left to undo
    cli = runner.invoke(app, ["fix", path, "--undo"])
    assert cli.exit_code == 2 and "nothing to undo" in cli.output


def test_stacked_fixes_undo_in_reverse_order(tmp_path):
    path = dirty_v4(str(tmp_path / "v4"))
    original = checkpoint_files(path)
    fp8doctor.fix(path)
    zeroed = checkpoint_files(path)
    fp8doctor.fix(path, fill="one")
    fp8doctor.fix(path, undo=True)
    assert checkpoint_files(path) == zeroed
    fp8doctor.fix(path, undo=True)
    assert checkpoint_files(path) == original


def test_unfixable_findings_are_reported_never_guessed(tmp_path):
    path = dirty_v4(str(tmp_path / "v4"))
    nan_off = poke(path, "layers.1.attn.wkv.scale", 1, b"\xff")
    result = fp8doctor.fix(path)
    assert [f.rule for f in result.unfixable] == ["scale-nan"] and result.failed()
    assert len(result.changes) == 3  # every dirty tensor was still fixed
    with open(os.path.join(path, "model-00002-of-00002.safetensors"), "rb") as f:
        f.seek(nan_off)
        assert f.read(1) == b"\xff"
    assert [f.rule for f in fp8doctor.scan(path).findings] == ["scale-nan"]


def test_cli_exit_codes_and_json(tmp_path):
    path = dirty_v4(str(tmp_path / "v4"))
    poke(path, "layers.1.attn.wkv.scale", 1, b"\xff")
    res = runner.invoke(app, ["fix", path, "--format", "json"])
    assert res.exit_code == 1, res.output
    doc = json.loads(res.output)
    assert doc["command"] == "fix" and doc["mode"] == "in-place" and doc["schema_version"] == 1
    s = doc["summary"]
    assert s["bytes_changed"] == 165 <= s["bytes_written"] and s["shards_touched"] == 2 and s["writes"] >= 1
    assert s["journal_bytes"] == sum(os.path.getsize(os.path.join(doc["journal_dir"], n)) for n in
                                     os.listdir(doc["journal_dir"]) if n != "lock")
    assert doc["summary"]["unfixable"] == 1 and doc["unfixable"][0]["rule"] == "scale-nan"
    assert {c["tensor"] for c in doc["changes"]} == {n for n, _, _ in V4_DIRT}
    assert doc["verified"] is True and os.path.isfile(doc["journal"])
    # an ignored rule is not counted
    res = runner.invoke(app, ["fix", path, "--ignore", "scale-nan"])
    assert res.exit_code == 0 and "nothing to fix" in res.output
    assert runner.invoke(app, ["fix", str(tmp_path / "missing")]).exit_code == 2
    assert runner.invoke(app, ["fix", path, "--fill", "0xFF"]).exit_code == 2
    assert runner.invoke(app, ["fix", path, "--undo", "--dry-run"]).exit_code == 2


def test_cli_subprocess_fix_and_undo(tmp_path):
    path = dirty_v4(str(tmp_path / "v4"))
    original = checkpoint_files(path)
    proc = run_cli("fix", path)
    assert proc.returncode == 0, proc.stderr
    out = " ".join(proc.stdout.split())
    assert "fixed 165 padded entries in 3 tensors: 165 bytes changed in 2 shards (" in out
    assert f"rm -r {os.path.join(path, '.fp8doctor-journal')}" in out and "Journals kept in" in out
    assert "fixed" in proc.stdout and proc.stderr == ""
    assert run_cli("scan", path).returncode == 0
    proc = run_cli("fix", path, "--undo", "--format", "json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["mode"] == "undo"
    assert checkpoint_files(path) == original


def test_single_shard_target(tmp_path):
    path = dirty_v4(str(tmp_path / "v4"))
    shard = os.path.join(path, "model-00002-of-00002.safetensors")
    result = fp8doctor.fix(shard)
    assert {c.file for c in result.changes} == {"model-00002-of-00002.safetensors"}
    out = str(tmp_path / "one")
    fp8doctor.fix(os.path.join(path, "model-00001-of-00002.safetensors"), output=out)
    assert sorted(os.listdir(out)) == ["config.json", "model-00001-of-00002.safetensors"]
