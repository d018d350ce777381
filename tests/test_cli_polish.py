"""Everyday CLI habits (issue 14): did-you-mean once, rule ids never cut, and friends."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from fp8doctor import synth
from fp8doctor.cli.app import app
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
