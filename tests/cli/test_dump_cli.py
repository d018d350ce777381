"""`fp8doctor dump` end to end: json/raw/console through CliRunner and a real subprocess, every byte
and offset against the file read with plain open(); exit codes 0 and 2."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from fp8doctor.cli.app import app
from tests.conftest import poke, run_cli
from tests.unit.test_dump import box_mask, entries, ranges, raw_tensors

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, ["dump", *args], env={"NO_COLOR": "1", "COLUMNS": "200"})


@pytest.mark.parametrize("fixture, name, logical", [
    ("v4", "layers.0.ffn.experts.1.w1.scale", (80, 10)),
    ("v4", "layers.1.attn.wq_a.scale", (2, 3)),
    ("v3", "model.layers.1.mlp.experts.0.down_proj.weight_scale_inv", (3, 1)),
    ("oss", "model.layers.0.mlp.experts.gate_up_proj_scales", (4, 128, 3)),
    ("ct", "model.layers.0.self_attn.o_proj.weight_scale", (112, 8)),
])
def test_json_matches_the_file(fixture, name, logical, request):
    root = request.getfixturevalue(fixture)
    fname, off, dtype, shape, data = raw_tensors(root)[name]
    res = invoke(root, "--tensor", name, "--format", "json")
    assert res.exit_code == 0, res.output
    [t] = json.loads(res.stdout)["tensors"]
    assert (t["name"], t["file"], t["dtype"], t["shape"], t["logical_shape"], t["byte_offset"]) == (
        name, fname, dtype, list(shape), list(logical), off)
    assert bytes.fromhex(t["hex"]) == data and t["hex"] == data.hex()
    assert t["padding"] == [list(r) for r in ranges(box_mask(shape, logical))]
    # the padded region alone, through the real entry point
    proc = run_cli("dump", root, "-t", name, "--region", "padding", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    [p] = json.loads(proc.stdout)["tensors"]
    pad = box_mask(shape, logical).reshape(-1)
    assert bytes.fromhex(p["hex"]) == entries(data, dtype)[pad].tobytes()
    assert p["padding"] == t["padding"]


def test_json_marks_bad_bytes(v4):
    name = "layers.0.attn.wq_b.scale"
    poke(v4, name, 9, b"\xff\x90")
    res = invoke(v4, "-t", name, "-f", "json", "--region", "padding")
    [t] = json.loads(res.stdout)["tensors"]
    assert t["bad"] == [[9, 11, "error"]] and t["rules"] == {"scale-padding-nonzero": 2}
    assert t["hex"] == "0000" + "0000" + "00ff9000" + "00000000"  # entries 2,3 | 6,7 | 8..15


def test_raw_is_the_bytes_unchanged(v4, oss):
    name = "layers.0.ffn.experts.0.w3.scale"
    data = raw_tensors(v4)[name][4]
    res = runner.invoke(app, ["dump", v4, "-t", name, "--format", "raw", "--rows", "79:82"])
    assert res.exit_code == 0 and res.stdout_bytes == data[790:820]
    # a subprocess, binary stdout, two tensors one after the other
    names = ["model.layers.0.mlp.experts.down_proj_scales", "model.layers.0.mlp.experts.gate_up_proj_scales"]
    proc = subprocess.run([sys.executable, "-m", "fp8doctor", "dump", oss, "-t", "*_scales", "-f", "raw"],
                          capture_output=True, timeout=120)
    raw = raw_tensors(oss)
    assert proc.returncode == 0 and proc.stdout == b"".join(raw[n][4] for n in names)


def test_console_grid_offsets_and_bytes(v4):
    name = "layers.0.ffn.experts.1.w2.scale"  # [320, 3]
    fname, off, _, _shape, data = raw_tensors(v4)[name]
    proc = run_cli("dump", v4, "-t", name, "--rows", "10:14")
    assert proc.returncode == 0, proc.stderr
    assert f"data at byte {off:,} (0x{off:x})" in proc.stdout and fname in proc.stdout
    lines = [ln for ln in proc.stdout.splitlines() if re.match(r"\s+\d+\s+0x[0-9a-f]+ ", ln)]
    assert len(lines) == 4
    for ln, row in zip(lines, range(10, 14)):
        label, offset, *cells = ln.split()
        assert int(label) == row and int(offset, 16) == off + row * 3
        assert bytes.fromhex("".join(cells)) == data[row * 3: row * 3 + 3]


def test_console_marks_without_colour(v4):
    name = "layers.0.attn.wq_b.scale"
    poke(v4, name, 9, b"\xff")
    res = invoke(v4, "-t", name, "--decode")
    assert res.exit_code == 0
    row2 = next(ln for ln in res.stdout.splitlines() if re.match(r"\s+2\s+0x", ln))
    assert ".00 2^-127 !ff NaN" in row2
    assert "scale-padding-nonzero (error) x1" in res.stdout
    assert "ff = NaN; 00 = 2^-127" in res.stdout


def test_heatmap_and_histogram_views(v4):
    name = "layers.0.ffn.experts.1.w1.scale"
    poke(v4, name, 850, b"\xff\xf0")
    res = invoke(v4, "-t", name, "--heatmap", "--histogram")
    assert res.exit_code == 0, res.output
    assert "N" in res.stdout and "median 2^" in res.stdout
    assert re.search(r"NaN\s+ff\s+0\s+1", res.stdout) and re.search(r"2\^113\s+f0\s+0\s+1", res.stdout)


@pytest.mark.parametrize("args, message", [
    (["-t", "layers.0.attn.wkv.weight"], "is not a scale tensor"),
    (["-t", "layers.9.*.scale"], "matches no scale tensor"),
    ([], "say which scale tensors"),
    (["-t", "layers.0.attn.wkv.scale", "--rows", "a:b"], "not a row range"),
    (["-t", "layers.0.attn.wkv.scale", "--heatmap", "-f", "json"], "--heatmap is a console view"),
    (["-t", "layers.0.attn.wkv.scale", "--fill", "0xff"], "fill byte 0xFF is NaN"),
])
def test_could_not_dump_exits_2(v4, args, message):
    proc = run_cli("dump", v4, *args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert message in proc.stderr and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_missing_path_exits_2(tmp_path):
    res = invoke(str(tmp_path / "nope"), "-t", "x")
    assert res.exit_code == 2 and "no such file or directory" in res.stderr


def test_findings_flag(v4):
    poke(v4, "layers.1.attn.wkv.scale", 15, b"\x99")
    res = invoke(v4, "--findings", "-f", "json")
    assert res.exit_code == 0
    assert [t["name"] for t in json.loads(res.stdout)["tensors"]] == ["layers.1.attn.wkv.scale"]


def test_help_explains_rows():
    res = runner.invoke(app, ["dump", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "leading axes" in res.stdout and "flattened" in res.stdout


def _tall(tmp_path, rows: int = 200):
    import numpy as np

    from fp8doctor.testing.synth import Tensor, write_safetensors

    d = tmp_path / "tall"
    d.mkdir()
    data = np.full((rows, 8), 0x7F, np.uint8)
    write_safetensors(str(d / "model.safetensors"), {"m.weight_scale_inv": Tensor("F8_E8M0", (rows, 8), data)})
    return str(d)


def test_grid_caps_rows_by_default_and_says_how_to_see_more(tmp_path):
    from fp8doctor.reporters.dump_grid import MAX_ROWS

    d = _tall(tmp_path)
    res = invoke(d, "-t", "m.weight_scale_inv")
    assert res.exit_code == 0
    grid = [ln for ln in res.stdout.splitlines() if re.match(r"\s+\d+\s+0x", ln)]
    assert len(grid) == MAX_ROWS and grid[-1].split()[0] == str(MAX_ROWS - 1)
    assert f"{200 - MAX_ROWS} more rows: --rows {MAX_ROWS}: for the next ones, --all for every row" in res.stdout
    res = invoke(d, "-t", "m.weight_scale_inv", "--all")
    assert len([ln for ln in res.stdout.splitlines() if re.match(r"\s+\d+\s+0x", ln)]) == 200
    assert "more rows" not in res.stdout
    res = invoke(d, "-t", "m.weight_scale_inv", "--rows", "100:190")  # an explicit --rows is shown whole
    assert len([ln for ln in res.stdout.splitlines() if re.match(r"\s+\d+\s+0x", ln)]) == 90
