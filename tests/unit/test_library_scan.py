"""`fp8doctor.scan()` applies a configuration's per-tensor ignores and a baseline as `fp8doctor scan`
does: the CLI is parse -> fp8doctor.api -> present, so both give the same findings."""

from __future__ import annotations

import json

from typer.testing import CliRunner

import fp8doctor
from fp8doctor.cli.app import app
from tests.helpers.ci_helpers import break_padding


def _cli(*args):
    r = CliRunner().invoke(app, ["scan", "--format", "json", *map(str, args)])
    return r.exit_code, [(f["rule"], f["tensor"]) for f in json.loads(r.stdout)["findings"]]


def test_config_ignores_apply_to_the_library_scan(v4, tmp_path):
    break_padding(v4)
    cfg = tmp_path / "fp8doctor.toml"
    cfg.write_text('[[ignore-tensors]]\npattern = "layers.0.attn.*"\n')
    everything = fp8doctor.scan(v4)
    hidden = [f for f in everything.findings if f.tensor and f.tensor.startswith("layers.0.attn.")]
    assert hidden  # the fixture has findings the ignore must hide
    report = fp8doctor.scan(v4, config=str(cfg))
    assert len(report.findings) == len(everything.findings) - len(hidden)
    assert not any(f.tensor and f.tensor.startswith("layers.0.attn.") for f in report.findings)
    _, cli = _cli(v4, "--config", cfg)
    assert cli == [(f.rule, f.tensor) for f in report.findings]


def test_baseline_applies_to_the_library_scan(v4, tmp_path):
    break_padding(v4)
    base = tmp_path / "b.json"
    assert CliRunner().invoke(app, ["scan", str(v4), "--write-baseline", str(base)]).exit_code == 0
    assert fp8doctor.scan(v4).findings
    assert fp8doctor.scan(v4, baseline=str(base)).findings == ()
    assert _cli(v4, "--baseline", base) == (0, [])


def test_errors_share_one_base():
    from fp8doctor.baseline import BaselineError
    from fp8doctor.config_file import ConfigError
    from fp8doctor.errors import Fp8DoctorError

    for err in (fp8doctor.FixError, fp8doctor.CheckpointError, fp8doctor.DumpError, fp8doctor.VerifyError,
                BaselineError, ConfigError):
        assert issubclass(err, Fp8DoctorError) and err("x").exit_code == 2


def test_config_applies_to_the_library_fix(v4, tmp_path):
    """`fp8doctor.fix(path, config=...)` repairs what `fp8doctor fix --config` repairs: the file's
    per-tensor ignores leave those tensors' padding alone, the rest is repaired."""
    import shutil

    break_padding(v4)
    twin = str(tmp_path / "twin")
    shutil.copytree(v4, twin)
    cfg = tmp_path / "fp8doctor.toml"
    cfg.write_text('[[ignore-tensors]]\npattern = "layers.0.attn.*"\n')
    before = fp8doctor.scan(v4)
    kept = [f for f in before.findings if f.rule == "scale-padding-nonzero" and f.tensor.startswith("layers.0.attn.")]
    assert kept and len(kept) < len([f for f in before.findings if f.rule == "scale-padding-nonzero"])
    result = fp8doctor.fix(v4, config=str(cfg))
    assert result.changes and not any(c.tensor.startswith("layers.0.attn.") for c in result.changes)
    after = [f for f in fp8doctor.scan(v4).findings if f.rule == "scale-padding-nonzero"]
    assert [f.tensor for f in after] == [f.tensor for f in kept]
    r = CliRunner().invoke(app, ["fix", twin, "--config", str(cfg), "--format", "json"])
    assert r.exit_code in (0, 1), r.output
    assert sorted(c["tensor"] for c in json.loads(r.stdout)["changes"]) == sorted(c.tensor for c in result.changes)
