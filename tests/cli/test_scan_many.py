"""Several checkpoints per run: `scan A B C`, `scan DIR-OF-CHECKPOINTS`, file names grouped by
checkpoint; one exit code (the worst), per-checkpoint console sections, one document per format."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET

import pytest

from fp8doctor.checkpoint.discover import expand_targets
from fp8doctor.reporters.json import report_dict
from fp8doctor.scanner import scan
from fp8doctor.testing import synth
from tests.conftest import run_cli
from tests.unit.reporters.test_reporters_sarif import validate


@pytest.fixture
def tree(tmp_path):
    """models/a (clean), models/group/b (padding garbage), models/.hidden/c, models/empty/notes.txt."""
    root = tmp_path / "models"
    synth.deepseek_v4(str(root / "a"))
    synth.deepseek_v4(str(root / "group" / "b"))
    synth.garble_padding(str(root / "group" / "b"))
    synth.deepseek_v4(str(root / ".hidden" / "c"))
    (root / "empty").mkdir()
    (root / "empty" / "notes.txt").write_text("x")
    return root


def test_a_directory_of_checkpoints_expands_to_each_checkpoint_below(tree, tmp_path):
    assert expand_targets([str(tree)]) == [str(tree / "a"), str(tree / "group" / "b")]
    os.symlink(tree / "a", tree / "zlink")  # a symlinked directory is never followed
    assert expand_targets([str(tree)]) == [str(tree / "a"), str(tree / "group" / "b")]
    a = str(tree / "a")
    assert expand_targets([a]) == [a]  # a checkpoint directory is itself, as today
    assert expand_targets([str(tree / "empty")]) == [str(tree / "empty")]  # nothing below: the scan says why


def test_file_names_are_grouped_by_checkpoint(tree):
    a, b = tree / "a", tree / "group" / "b"
    shards = sorted(str(p) for p in a.glob("*.safetensors"))
    assert len(shards) == 2
    assert expand_targets(shards) == [str(a)]
    assert expand_targets([shards[0]]) == [shards[0]]  # a lone shard stays itself
    assert expand_targets([str(a / "config.json"), str(b), shards[1]]) == [str(a), str(b)]
    (tree / "empty" / "config.json").write_text("{}")  # a config.json beside no shard: not a checkpoint
    assert expand_targets([str(tree / "empty" / "config.json"), str(b)]) == [str(b)]
    assert expand_targets([str(a), shards[0], str(a)]) == [str(a)]  # a file of a named directory: once


def test_console_sections_and_the_worst_exit_code(tree):
    a, b = str(tree / "a"), str(tree / "group" / "b")
    r = run_cli("scan", str(tree))
    assert r.returncode == 1
    assert r.stdout.index(f"fp8doctor scan {a}") < r.stdout.index(f"fp8doctor scan {b}")
    assert "✓ no findings in 22 scale tensors" in r.stdout and "✗ 9 errors" in r.stdout
    assert r.stdout.rstrip().splitlines()[-1] == f"✗ 2 checkpoints: 1 failed, 1 passed: {b}"
    r = run_cli("scan", a, str(tree / "missing"))
    assert r.returncode == 2  # one could not be scanned: that is the worst
    assert "could not be scanned" in r.stdout and "no such file or directory" in r.stderr
    r = run_cli("scan", a, a + "/")
    assert r.returncode == 0 and r.stdout.count("fp8doctor scan ") == 1  # the same checkpoint once


def test_json_for_several_checkpoints(tree):
    a, b = str(tree / "a"), str(tree / "group" / "b")
    r = run_cli("scan", a, b, str(tree / "missing"), "--format", "json")
    assert r.returncode == 2
    doc = json.loads(r.stdout)
    assert list(doc) == ["schema_version", "tool", "targets", "summary"]
    assert doc["schema_version"] == 1 and doc["tool"]["name"] == "fp8doctor"
    first, second, third = doc["targets"]
    assert list(first) == ["target", "summary", "findings", "config"] and first["target"] == a
    assert first["findings"] == []
    assert second["summary"]["errors"] == 9 and len(second["findings"]) == 9
    assert third == {"target": str(tree / "missing"), "error": f"{tree / 'missing'}: no such file or directory"}
    assert doc["summary"] == {"targets": 3, "scanned": 2, "could_not_scan": 1, "failed": 1, "errors": 9,
                              "warnings": 0, "infos": 0, "fixable": 9}


def test_single_checkpoint_json_is_unchanged(tree):
    b = str(tree / "group" / "b")
    r = run_cli("scan", b, "--format", "json")
    doc = json.loads(r.stdout)
    assert list(doc) == ["schema_version", "tool", "target", "summary", "findings", "config"]  # no "targets"
    data = report_dict(scan(b), doc["tool"]["version"])
    data["summary"]["seconds"] = doc["summary"]["seconds"]
    assert {k: doc[k] for k in data if k != "summary"} == {k: v for k, v in data.items() if k != "summary"}
    assert {k: v for k, v in doc["summary"].items() if k != "suppressed"} == data["summary"]


def test_sarif_junit_github_markdown_for_several_checkpoints(tree, tmp_path):
    a, b, missing = str(tree / "a"), str(tree / "group" / "b"), str(tree / "missing")
    out = {ext: tmp_path / f"r.{ext}" for ext in ("sarif", "xml", "md")}
    r = run_cli("scan", a, b, missing, *[x for p in out.values() for x in ("-o", str(p))])
    assert r.returncode == 2
    sarif = json.loads(out["sarif"].read_text())
    validate(sarif)
    runs = sarif["runs"]
    assert [run["invocations"][0]["executionSuccessful"] for run in runs] == [True, True, False]
    assert [len(run["results"]) for run in runs] == [0, 9, 0]
    assert runs[1]["invocations"][0]["properties"]["target"] == b
    assert "no such file" in runs[2]["invocations"][0]["toolExecutionNotifications"][0]["message"]["text"]
    root = ET.fromstring(out["xml"].read_text())
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == [f"fp8doctor scan {p}" for p in (a, b, missing)]
    assert (root.get("failures"), root.get("errors")) == ("1", "1")
    assert int(root.get("tests")) == sum(int(s.get("tests")) for s in suites)
    assert suites[2].find("testcase/error") is not None
    md = out["md"].read_text()
    assert md.startswith("# fp8doctor: 3 checkpoints, 1 failed, 1 could not be scanned")
    assert md.count("## ") == 3 and "Could not be scanned" in md
    r = run_cli("scan", a, b, "--format", "github")
    notices = [ln for ln in r.stdout.splitlines() if ln.startswith("::notice title=fp8doctor scan::")]
    assert len(notices) == 2 and sum(ln.startswith("::error ") for ln in r.stdout.splitlines()) == 9


def test_baseline_takes_one_checkpoint(tree, tmp_path):
    r = run_cli("scan", str(tree), "--write-baseline", str(tmp_path / "b.json"))
    assert r.returncode == 2 and "one checkpoint at a time" in r.stderr
