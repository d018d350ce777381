"""Issue 13, sections 2 and 4: a checkpoint cannot silence its own check; configuration comes from the
current directory upward (never from inside the checkpoint), every report names it and counts what it
suppressed, fix and dump use it too, and hostile configuration or baseline files are one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from fp8doctor.cli.app import app
from tests.helpers.fix_helpers import dirty_v4

runner = CliRunner()
EXPERT = "layers.0.ffn.experts.0.w1.scale"  # dirty_v4 puts 160 non-zero bytes in its padded rows 80..95


@pytest.fixture
def dirty(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # a current directory without any configuration
    return dirty_v4(str(tmp_path / "v4"))


def scan_json(*args):
    r = runner.invoke(app, ["scan", *map(str, args), "--format", "json"])
    assert r.stdout.startswith("{"), r.output
    return r, json.loads(r.stdout)


def write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.mark.parametrize("name,text", [
    ("fp8doctor.toml", 'ignore = ["scale-padding-nonzero", "scale-nan"]\n'),
    ("fp8doctor.toml", '[[ignore-tensors]]\npattern = "*"\n'),
    ("pyproject.toml", '[tool.fp8doctor]\nselect = ["scale-orphan"]\n'),
    ("pyproject.toml", '[[tool.fp8doctor.ignore-tensors]]\npattern = "*"\n'),
])
def test_a_checkpoint_cannot_silence_itself(dirty, name, text):
    from pathlib import Path

    write(Path(dirty) / name, text)
    r, doc = scan_json(dirty)
    assert r.exit_code == 1, r.output
    assert doc["summary"]["errors"] > 0 and doc["config"] is None
    assert doc["summary"]["suppressed"] == {}


def test_even_when_the_current_directory_is_the_checkpoint(dirty, monkeypatch):
    from pathlib import Path

    write(Path(dirty) / "fp8doctor.toml", 'ignore = ["scale-padding-nonzero"]\n')
    os.mkdir(os.path.join(dirty, "sub"))
    write(Path(dirty) / "sub" / "fp8doctor.toml", 'ignore = ["scale-padding-nonzero"]\n')
    for cwd in (dirty, os.path.join(dirty, "sub")):
        monkeypatch.chdir(cwd)
        r, doc = scan_json(dirty)
        assert r.exit_code == 1 and doc["config"] is None, cwd


def test_configuration_comes_from_the_current_directory_upward(dirty, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    cfg = write(repo / "fp8doctor.toml", 'ignore = ["scale-padding-nonzero"]\n')
    (repo / "deep" / "er").mkdir(parents=True)
    monkeypatch.chdir(repo / "deep" / "er")
    r, doc = scan_json(dirty)
    assert doc["config"] == cfg
    assert doc["summary"]["suppressed"].get("scale-padding-nonzero", 0) > 0
    assert not any(f["rule"] == "scale-padding-nonzero" for f in doc["findings"])
    # the console names it, and a clean verdict with suppressions says so
    r = runner.invoke(app, ["scan", dirty, "--no-color"])
    assert f"configuration: {cfg}" in r.output
    assert "suppressed" in r.output
    # SARIF run properties name it too
    r = runner.invoke(app, ["scan", dirty, "--format", "sarif"])
    props = json.loads(r.stdout)["runs"][0]["properties"]
    assert props["config"] == cfg and props["suppressed"].get("scale-padding-nonzero", 0) > 0
    # --isolated: no configuration at all
    r, doc = scan_json(dirty, "--isolated")
    assert r.exit_code == 1 and doc["config"] is None
    assert any(f["rule"] == "scale-padding-nonzero" for f in doc["findings"])


def test_suppressed_counts_tensor_ignores_and_baseline(dirty, tmp_path, monkeypatch):
    from pathlib import Path

    cfg = write(tmp_path / "work" / "fp8doctor.toml", f'[[ignore-tensors]]\npattern = "{EXPERT}"\n')
    r, doc = scan_json(dirty)
    assert doc["config"] == cfg and doc["summary"]["suppressed"] == {"scale-padding-nonzero": 1}
    base = str(Path(tmp_path) / "base.json")
    assert runner.invoke(app, ["scan", dirty, "--write-baseline", base]).exit_code == 0
    r, doc = scan_json(dirty, "--baseline", base)
    assert r.exit_code == 0 and doc["findings"] == []
    assert sum(doc["summary"]["suppressed"].values()) == 1 + doc["baseline"]["suppressed"]
    r = runner.invoke(app, ["scan", dirty, "--baseline", base, "--no-color"])
    assert r.exit_code == 0 and "no findings" in r.output and "suppressed" in r.output


def _expert_bytes(path: str) -> bytes:
    from fp8doctor.checkpoint.loader import open_checkpoint

    with open_checkpoint(path) as ck:
        return ck.read(ck.tensors[EXPERT])


def test_fix_uses_the_scans_configuration(dirty, tmp_path):
    """A layout override saying the padded rows are real: scan is clean for that tensor, and fix must
    not zero its 160 bytes."""
    write(tmp_path / "work" / "fp8doctor.toml", f'[[layout]]\npattern = "{EXPERT}"\nlogical = [96, 320]\n')
    r, doc = scan_json(dirty)
    assert not any(f["tensor"] == EXPERT and f["rule"] == "scale-padding-nonzero" for f in doc["findings"])
    before = _expert_bytes(dirty)
    r = runner.invoke(app, ["fix", dirty, "--format", "json"])
    assert r.exit_code in (0, 1), r.output
    assert _expert_bytes(dirty) == before
    assert json.loads(r.stdout)["config"].endswith("fp8doctor.toml")


def test_fix_honours_ignores_and_isolated(dirty, tmp_path):
    write(tmp_path / "work" / "fp8doctor.toml", f'[[ignore-tensors]]\npattern = "{EXPERT}"\n')
    before = _expert_bytes(dirty)
    r = runner.invoke(app, ["fix", dirty, "--dry-run", "--format", "json"])
    assert EXPERT not in [c["tensor"] for c in json.loads(r.stdout)["changes"]]
    r = runner.invoke(app, ["fix", dirty, "--dry-run", "--isolated", "--format", "json"])
    assert EXPERT in [c["tensor"] for c in json.loads(r.stdout)["changes"]]
    assert _expert_bytes(dirty) == before


def test_dump_uses_the_scans_configuration(dirty, tmp_path):
    args = ["dump", dirty, "-t", EXPERT, "--region", "padding", "--format", "raw"]
    assert len(runner.invoke(app, args).stdout_bytes) == 160
    write(tmp_path / "work" / "fp8doctor.toml", f'[[layout]]\npattern = "{EXPERT}"\nlogical = [96, 320]\n')
    assert runner.invoke(app, args).stdout_bytes == b""
    assert len(runner.invoke(app, [*args, "--isolated"]).stdout_bytes) == 160


def _one_line(r) -> None:
    out = r.output if hasattr(r, "output") else r.stderr
    assert r.exit_code == 2 if hasattr(r, "exit_code") else r.returncode == 2, out
    assert "Traceback" not in out and "internal error" not in out and out.strip().startswith("error:"), out


def test_pyproject_with_a_non_table_tool_is_not_a_crash(dirty, tmp_path):
    write(tmp_path / "work" / "pyproject.toml", "tool = 5\n")
    r, doc = scan_json(dirty)
    assert r.exit_code == 1 and doc["config"] is None


def test_deeply_nested_toml_is_one_line(dirty, tmp_path):
    cfg = tmp_path / "deep.toml"
    cfg.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    _one_line(runner.invoke(app, ["scan", dirty, "--config", str(cfg)]))


def _limit_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # a regression is a MemoryError, not an OOM


def _cli(*args, timeout=60):
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "fp8doctor", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, preexec_fn=_limit_memory)


@pytest.mark.parametrize("kind", ["fifo", "zero"])
@pytest.mark.parametrize("flag", ["--config", "--baseline"])
def test_config_or_baseline_fifo_or_dev_zero_is_bounded(dirty, tmp_path, kind, flag):
    path = "/dev/zero" if kind == "zero" else str(tmp_path / "fifo")
    if kind == "fifo":
        os.mkfifo(path)
    proc = _cli("scan", dirty, flag, path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "error:" in proc.stderr, proc.stderr
    assert "regular file" in proc.stderr


def test_journal_dir_that_is_a_file(dirty, tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    _one_line(runner.invoke(app, ["fix", dirty, "--journal-dir", str(f)]))
    assert f.read_text() == "x"


def test_read_only_journal_dir_is_refused_by_mode_bits(dirty, tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    os.chmod(d, 0o555)
    try:
        r = runner.invoke(app, ["fix", dirty, "--journal-dir", str(d)])
        _one_line(r)
        assert "read-only" in r.output and os.listdir(d) == []
    finally:
        os.chmod(d, 0o755)
