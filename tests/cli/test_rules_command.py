"""`fp8doctor rules`: every rule with id, default severity, fixable and a paragraph; one rule in full."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from fp8doctor.cli.app import app
from fp8doctor.rules.catalog import RULES
from tests.conftest import run_cli

runner = CliRunner()


def test_rules_lists_every_rule_with_its_paragraph():
    r = run_cli("rules", env={"COLUMNS": "400"})
    assert r.returncode == 0
    for rule in RULES.values():
        assert rule.id in r.stdout and rule.title in r.stdout
        assert rule.help.split(". ")[0][:60] in r.stdout  # the paragraph, not just the title
    row = next(line for line in r.stdout.splitlines() if line.lstrip().startswith("scale-padding-nonzero"))
    assert "error" in row and "yes" in row
    row = next(line for line in r.stdout.splitlines() if line.lstrip().startswith("scale-outlier"))
    assert "warning" in row and "yes" not in row


def test_one_rule_and_json():
    r = runner.invoke(app, ["rules", "scale-padding-nonzero"])
    assert r.exit_code == 0 and "scale-padding-nonzero" in r.stdout and "(error, fixable)" in r.stdout
    assert "fp8doctor fix" in r.stdout
    data = json.loads(runner.invoke(app, ["rules", "--json"]).stdout)
    assert [d["id"] for d in data] == list(RULES)
    assert all(set(d) >= {"id", "severity", "fixable", "title", "help"} for d in data)
    r = runner.invoke(app, ["rules", "no-such-rule"])
    assert r.exit_code == 2 and "unknown rule id" in r.stderr
