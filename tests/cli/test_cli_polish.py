"""Everyday CLI habits (issue 14): did-you-mean once, rule ids never cut, and friends."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from fp8doctor.cli.app import app
from fp8doctor.testing import synth
from tests.conftest import run_cli

runner = CliRunner()


def test_mistyped_command_suggests_once():
    r = run_cli("scna")
    assert r.returncode == 2
    assert r.stderr.count("Did you mean") == 1 and "'scan'" in r.stderr


@pytest.mark.parametrize("args", [["rules", "scale-padding"], ["scan", ".", "--select", "scale-padding"],
                                  ["scan", ".", "--ignore", "scale-padding"]])
def test_mistyped_rule_id_suggests(args):
    r = runner.invoke(app, args)
    assert r.exit_code == 2
    assert "unknown rule id 'scale-padding' (did you mean 'scale-padding-nonzero'?)" in r.output


def test_rule_ids_are_never_cut_at_60_columns(tmp_path):
    d = str(tmp_path / "v4")
    synth.deepseek_v4(d)
    synth.garble_padding(d)
    for args in (["scan", d], ["rules"]):
        r = run_cli(*args, env={"COLUMNS": "60"})
        assert "scale-padding-nonzero" in r.stdout, r.stdout
        assert "scale-padding-non…" not in r.stdout


@pytest.mark.parametrize("fmt", ["sarif", "junit", "github", "markdown"])
def test_fix_rejects_formats_it_cannot_write(tmp_path, fmt):
    d = str(tmp_path / "v4")
    synth.deepseek_v4(d)
    synth.garble_padding(d)
    before = {p.name: p.read_bytes() for p in (tmp_path / "v4").iterdir() if p.is_file()}
    r = run_cli("fix", d, "--format", fmt)
    assert r.returncode == 2
    assert fmt in r.stderr and "console" in r.stderr and r.stdout == ""
    assert {p.name: p.read_bytes() for p in (tmp_path / "v4").iterdir() if p.is_file()} == before


def test_scan_of_a_text_file_says_it_is_not_safetensors(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes about the model\n")
    r = run_cli("scan", str(notes))
    assert r.returncode == 2
    assert "not a safetensors file" in r.stderr and r.stdout == ""


def test_a_safetensors_file_without_the_extension_is_still_scanned(tmp_path):
    d = tmp_path / "v4"
    synth.deepseek_v4(str(d))
    shard = next(d.glob("*.safetensors"))
    plain = tmp_path / "shard.bin"
    plain.write_bytes(shard.read_bytes())
    r = run_cli("scan", str(plain))
    assert r.returncode in (0, 1) and "scale tensor" in r.stdout


def test_byte_counts_read_as_people_count_them():
    from fp8doctor.reporters.common import human_bytes

    assert [human_bytes(n) for n in (1, 165, 999, 1000, 11_680, 402_712_345, 999_960_000, 3 * 10**12)] == [
        "1 byte", "165 bytes", "999 bytes", "1.0 kB", "11.7 kB", "402.7 MB", "1.0 GB", "3.0 TB"]


def test_scan_header_shows_human_byte_counts(tmp_path):
    d = str(tmp_path / "v4")
    synth.deepseek_v4(d)
    r = run_cli("scan", d)
    assert "(11.7 kB of scales)" in r.stdout


def test_no_run_reports_success_after_reading_nothing(tmp_path):
    import numpy as np

    from fp8doctor.testing.synth import Tensor, write_safetensors

    plain = tmp_path / "bf16"
    plain.mkdir()
    write_safetensors(str(plain / "model.safetensors"), {"w": Tensor("BF16", (4, 4), np.zeros(32, np.uint8))})
    r = run_cli("scan", str(plain))
    assert r.returncode == 1 and "nothing-checked" in r.stdout and "no findings" not in r.stdout
    assert "its one tensor is not a scale tensor" in r.stdout
    r = run_cli("fix", str(plain))
    assert r.returncode == 1 and "nothing fixed: nothing was checked" in r.stdout and "nothing to fix" not in r.stdout

    cut = tmp_path / "cut"
    synth.deepseek_v4(str(cut), shards=1)
    [shard] = cut.glob("*.safetensors")
    head = int.from_bytes(shard.read_bytes()[:8], "little")
    with open(shard, "r+b") as fh:  # the data region gone: no scale tensor can be read
        fh.truncate(8 + head)
    r = run_cli("scan", str(cut))
    assert r.returncode == 1 and "none of its 22 scale tensors could be read" in r.stdout
