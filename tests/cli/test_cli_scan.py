"""The scan command end to end: exit codes, the JSON contract, escaping, and no torch import."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from fp8doctor.cli.app import app
from fp8doctor.rules.catalog import RULES
from fp8doctor.testing.synth import Builder
from tests.conftest import poke, run_cli
from tests.helpers.repo import repo_path

runner = CliRunner()
FINDING_KEYS = {"rule", "severity", "file", "tensor", "message", "region", "byte_offset", "count", "index", "fixable"}
SUMMARY_KEYS = {"errors", "warnings", "infos", "fixable", "by_rule", "files", "tensors", "scale_tensors",
                "scale_tensors_checked", "skipped", "scale_bytes", "bytes_read", "seconds"}


def invoke(*args):
    return runner.invoke(app, list(args), env={"NO_COLOR": "1", "COLUMNS": "200"})


def test_clean_exit_0(v4):
    r = invoke("scan", v4)
    assert r.exit_code == 0, r.output
    assert "no findings in 22 scale tensors of 2 files" in r.output


def test_findings_exit_1_and_json_contract(v4):
    off = poke(v4, "layers.0.attn.wq_b.scale", 15, b"\xff")
    r = invoke("scan", v4, "--format", "json")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert set(doc) == {"schema_version", "tool", "target", "summary", "findings", "config"}
    assert doc["tool"]["name"] == "fp8doctor" and doc["schema_version"] == 1
    assert set(doc["summary"]) == SUMMARY_KEYS | {"suppressed"}
    [f] = doc["findings"]
    assert set(f) == FINDING_KEYS
    assert f == {**f, "rule": "scale-padding-nonzero", "severity": "error", "file": "model-00001-of-00002.safetensors",
                 "tensor": "layers.0.attn.wq_b.scale", "region": "padding", "byte_offset": off, "count": 1,
                 "index": [3, 3], "fixable": True}
    assert doc["summary"]["errors"] == 1 and doc["summary"]["fixable"] == 1


def test_subprocess_json_stdout_is_only_json(v4):
    poke(v4, "layers.0.attn.wq_b.scale", 15, b"\xff")
    p = run_cli("scan", v4, "--format", "json")
    assert p.returncode == 1
    assert json.loads(p.stdout)["summary"]["errors"] == 1
    assert "Traceback" not in p.stderr


def test_fail_on_levels(v4):
    poke(v4, "layers.0.ffn.experts.1.w2.scale", 30, bytes([117 + 40]))  # a warning
    assert invoke("scan", v4).exit_code == 0
    assert invoke("scan", v4, "--fail-on", "warning").exit_code == 1
    assert invoke("scan", v4, "--fail-on", "info").exit_code == 1


@pytest.mark.parametrize("args,needle", [
    (["--select", "no-such-rule"], "unknown rule id"),
    (["--ignore", "nope"], "unknown rule id"),
    (["--fill", "0x1ff"], "outside"),
    (["--fill", "0xff"], "NaN"),
    (["--layout", "nonsense"], "layout override"),
    (["--fail-on", "fatal"], "unknown severity"),
])
def test_bad_options_exit_2_one_line(v4, args, needle):
    p = run_cli("scan", v4, *args)
    assert p.returncode == 2
    assert needle in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("target", ["/nonexistent/ckpt", "."])
def test_not_a_checkpoint_exit_2(tmp_path, target):
    p = run_cli("scan", target, cwd=str(tmp_path))
    assert p.returncode == 2 and p.stderr.startswith("error:") and "Traceback" not in p.stderr


def test_usage_error_exit_2():
    assert run_cli("scan").returncode == 2
    assert run_cli("scan", "--format", "xml", ".").returncode == 2


def test_garbage_file_is_a_finding_not_a_crash(tmp_path):
    p = tmp_path / "x.safetensors"
    p.write_bytes(os.urandom(4096))
    r = run_cli("scan", str(p))
    assert r.returncode == 1 and "header-invalid" in r.stdout and "Traceback" not in r.stderr


def test_tensor_names_cannot_inject_markup_or_control_chars(tmp_path):
    evil = "[bold red]x[/bold red]\x1b[31m\u202egpj.weight"
    b = Builder(1)
    b.add(evil, b.fp8_weight((4, 4)))
    d = str(tmp_path / "m")
    b.write(d)
    p = run_cli("scan", d, env={"NO_COLOR": ""})
    assert p.returncode == 1  # scale-missing
    assert "\x1b[31m" not in p.stdout and "\u202e" not in p.stdout
    assert "[bold red]x[/bold red]" in p.stdout  # shown literally, not interpreted
    assert "\\x1b" in p.stdout and "\\u202e" in p.stdout


def test_quiet_prints_one_line(v4):
    poke(v4, "layers.0.attn.wq_b.scale", 15, b"\xff")
    r = invoke("scan", v4, "--quiet")
    assert r.exit_code == 1
    assert len(r.stdout.strip().splitlines()) == 1 and "1 error" in r.stdout


def test_console_shows_offsets_and_fix_hint(v4):
    off = poke(v4, "layers.0.attn.wq_b.scale", 15, b"\xff")
    r = invoke("scan", v4)
    assert f"0x{off:x}" in r.stdout and "fp8doctor fix" in r.stdout and "scale-padding-nonzero" in r.stdout


def test_cli_never_imports_torch(v4):
    code = (f"import sys; from fp8doctor.cli.app import main; sys.argv=['fp8doctor','scan',{v4!r},'--quiet'];\n"
            "try:\n main()\nexcept SystemExit: pass\nassert 'torch' not in sys.modules, 'torch imported'")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_version_and_help():
    assert re.match(r"fp8doctor \d+\.\d+\.\d+", invoke("--version").stdout)
    assert invoke("scan", "--help").exit_code == 0


def test_rules_command_lists_every_rule():
    r = invoke("rules")
    assert r.exit_code == 0
    for rid in RULES:
        assert rid in r.stdout
    one = invoke("rules", "scale-padding-nonzero")
    assert "fixable" in one.stdout and "torch.empty" in one.stdout
    assert invoke("rules", "nope").exit_code == 2
    doc = json.loads(invoke("rules", "--json").stdout)
    assert {d["id"] for d in doc} == set(RULES)


def _doc(name: str) -> str:
    return open(repo_path("docs", name), encoding="utf-8").read()


def test_docs_document_every_rule_exit_code_and_json_key():
    rules = _doc("rules.md")
    for rule in RULES.values():
        assert f"| `{rule.id}` | {rule.severity.value} | {'yes' if rule.fixable else 'no'} |" in rules, rule.id
    json_report = _doc("reports.md")
    json_report = json_report[json_report.index("## JSON report"):]
    for key in FINDING_KEYS | SUMMARY_KEYS | {"suppressed", "config"}:
        assert f"`{key}`" in json_report, key
    codes = _doc("scan.md")
    codes = codes[codes.index("## Exit codes"):]
    assert "| code | `scan` | `fix` | `verify` | `dump` |" in codes
    for code in (0, 1, 2):
        assert f"\n| {code} |" in codes, code


def test_api_matches_cli(v4):
    import fp8doctor

    poke(v4, "layers.1.attn.wo_a.scale", 3, np.uint8(0xFF).tobytes())
    report = fp8doctor.scan(v4)
    doc = json.loads(invoke("scan", v4, "--format", "json").stdout)
    assert [f.to_dict() for f in report.findings] == doc["findings"]
