"""SARIF 2.1.0: validates against the OASIS schema, describes every rule, locates findings in the
repository, and keeps fingerprints stable per rule + file + tensor (+ region), whatever the byte offsets."""

from __future__ import annotations

import dataclasses
import json
import os
import re

import jsonschema
import pytest
from typer.testing import CliRunner

from fp8doctor.cli.app import app
from fp8doctor.findings import Finding, Region, Report, Severity
from fp8doctor.reporters import RenderContext, sarif
from fp8doctor.rules.catalog import RULES
from fp8doctor.testing import synth
from tests.conftest import run_cli
from tests.helpers.ci_helpers import ODD_NAME, break_padding, broken_checkpoint_repo, grow_headers, odd_names_checkpoint
from tests.helpers.repo import DATA

SCHEMA_PATH = os.path.join(DATA, "sarif-schema-2.1.0.json")
runner = CliRunner()


def validate(doc: dict) -> None:
    with open(SCHEMA_PATH) as fh:
        schema = json.load(fh)
    jsonschema.Draft4Validator(schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER).validate(doc)


@pytest.fixture
def repo(tmp_path):
    """A git repository holding a broken checkpoint two directories down."""
    return broken_checkpoint_repo(tmp_path)


def sarif_of(path, *args, cwd) -> dict:
    r = run_cli("scan", str(path), "--format", "sarif", *args, cwd=str(cwd))
    assert r.returncode in (0, 1), r.stderr
    return json.loads(r.stdout)


def test_schema_file_is_the_oasis_schema():
    with open(SCHEMA_PATH) as fh:
        schema = json.load(fh)
    assert schema["title"] == "Static Analysis Results Format (SARIF) Version 2.1.0 JSON Schema"
    jsonschema.Draft4Validator.check_schema(schema)
    with pytest.raises(jsonschema.ValidationError):  # the validator really checks: a wrong version fails
        validate({"version": "2.0.0", "runs": []})


def test_sarif_validates_and_locates_findings_in_the_repository(repo, tmp_path):
    root, ckpt = repo
    doc = sarif_of(ckpt, cwd=tmp_path)  # run from outside the repository: paths still repo-relative
    validate(doc)
    [run] = doc["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "fp8doctor" and driver["version"]
    assert [r["id"] for r in driver["rules"]] == list(RULES)
    for r in driver["rules"]:
        assert r["shortDescription"]["text"] and r["fullDescription"]["text"] and r["help"]["text"]
        assert r["defaultConfiguration"]["level"] in ("error", "warning", "note")
    results = run["results"]
    assert len(results) == 9 and {r["ruleId"] for r in results} == {"scale-padding-nonzero"}
    for res in results:
        assert res["level"] == "error"
        assert driver["rules"][res["ruleIndex"]]["id"] == res["ruleId"]
        loc = res["locations"][0]["physicalLocation"]["artifactLocation"]
        assert loc["uriBaseId"] == "%SRCROOT%"
        assert loc["uri"].startswith("models/v4/model-0000") and loc["uri"].endswith(".safetensors")
        assert (root / loc["uri"]).is_file()
        tensor = res["properties"]["tensor"]
        assert res["locations"][0]["logicalLocations"][0]["fullyQualifiedName"] == tensor
        assert tensor in res["message"]["text"] and "byte offset 0x" in res["message"]["text"]
        assert res["properties"]["fixable"] is True


def test_outside_a_git_repository_paths_are_relative_to_the_cwd(tmp_path):
    ckpt = tmp_path / "work" / "ck"
    synth.deepseek_v4(str(ckpt))
    break_padding(str(ckpt))
    doc = sarif_of("ck", cwd=tmp_path / "work")
    validate(doc)
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in doc["runs"][0]["results"]}
    assert uris and all(u.startswith("ck/model-") for u in uris)


def test_fingerprints_are_stable_per_rule_file_tensor(repo, tmp_path):
    root, ckpt = repo
    first = sarif_of(ckpt, cwd=root)["runs"][0]["results"]
    # different garbage in the same tensors: messages change, fingerprints must not
    break_padding(str(ckpt), seed=99)
    second = sarif_of(ckpt, cwd=root)["runs"][0]["results"]

    def prints(results):
        return {(r["ruleId"], r["properties"]["file"], r["properties"]["tensor"]): r["partialFingerprints"]
                for r in results}

    assert prints(first) == prints(second)
    assert {r["message"]["text"] for r in first} != {r["message"]["text"] for r in second}
    values = [next(iter(p.values())) for p in prints(first).values()]
    assert len(set(values)) == len(values)  # distinct tensors, distinct fingerprints


def test_clean_checkpoint_gives_a_valid_empty_run(v4, tmp_path):
    doc = sarif_of(v4, cwd=tmp_path)
    validate(doc)
    assert doc["runs"][0]["results"] == [] and len(doc["runs"][0]["tool"]["driver"]["rules"]) == len(RULES)


def test_odd_names_validate(tmp_path, monkeypatch):
    odd = tmp_path / "odd"
    name = odd_names_checkpoint(str(odd))
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["scan", str(odd), "--format", "sarif"])
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    validate(doc)
    [res] = doc["runs"][0]["results"]
    assert res["properties"]["tensor"] == name and ODD_NAME in res["message"]["text"]
    assert res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "odd/model.safetensors"


def test_levels_and_file_less_findings(tmp_path):
    report = Report("ck", (
        Finding("scale-nan", Severity.ERROR, "a b#%.safetensors", "t", "nan", Region.LOGICAL, 16, 1, (0, 1)),
        Finding("scale-outlier", Severity.WARNING, "a.safetensors", "u", "far", Region.LOGICAL),
        Finding("layout-ambiguous", Severity.WARNING, None, None, "guessed", Region.LOGICAL),
        Finding("made-up-rule", Severity.INFO, None, None, "note", Region.FILE),
    ))
    ctx = RenderContext(version="9.9", source_root=str(tmp_path), checkpoint_root=str(tmp_path / "ck"))
    doc = json.loads(sarif.render_report(report, ctx))
    validate(doc)
    res = doc["runs"][0]["results"]
    assert [r["level"] for r in res] == ["error", "warning", "warning", "note"]
    assert res[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "ck/a%20b%23%25.safetensors"
    assert res[2]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "ck"  # the checkpoint itself
    assert "ruleIndex" not in res[3]
    # a checkpoint outside the source root gets an absolute file URI, not '../'
    ctx = RenderContext(source_root=str(tmp_path / "elsewhere"), checkpoint_root="/models/ck")
    loc = sarif.sarif_dict(report, ctx)["runs"][0]["results"][1]["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"] == {"uri": "file:///models/ck/a.safetensors"}


def _by_key(results):
    return {(r["ruleId"], r["properties"]["file"], r["properties"]["tensor"]): r for r in results}


def test_fingerprints_survive_a_rewritten_shard_whose_offsets_moved(repo, tmp_path):
    root, ckpt = repo
    before = _by_key(sarif_of(ckpt, cwd=root)["runs"][0]["results"])
    grow_headers(str(ckpt))
    after_doc = sarif_of(ckpt, cwd=root)
    validate(after_doc)
    after = _by_key(after_doc["runs"][0]["results"])
    assert before.keys() == after.keys() and before
    for key, res in before.items():
        moved = after[key]
        assert moved["properties"]["byte_offset"] != res["properties"]["byte_offset"]  # the offsets did move
        assert moved["partialFingerprints"] == res["partialFingerprints"]
        assert set(res["partialFingerprints"]) == {"fp8doctor/v1", "primaryLocationLineHash"}
        assert re.fullmatch(r"[0-9a-f]{16}:1", res["partialFingerprints"]["primaryLocationLineHash"])


def test_primary_hash_tells_rule_path_tensor_and_region_apart(tmp_path):
    base = Finding("scale-nan", Severity.ERROR, "a.safetensors", "t", "nan", Region.LOGICAL, 16)
    variants = [base, dataclasses.replace(base, region=Region.PADDING), dataclasses.replace(base, tensor="u"),
                dataclasses.replace(base, rule="scale-zero"), dataclasses.replace(base, file="b.safetensors")]
    same = [dataclasses.replace(base, byte_offset=4096, count=7, message="other", index=(3, 4))]

    def primary(findings, ckpt="ck"):
        ctx = RenderContext(source_root=str(tmp_path), checkpoint_root=str(tmp_path / ckpt))
        doc = sarif.sarif_dict(Report("ck", tuple(findings)), ctx)
        validate(doc)
        return [r["partialFingerprints"]["primaryLocationLineHash"] for r in doc["runs"][0]["results"]]

    hashes = primary(variants)
    assert len(set(hashes)) == len(variants)
    assert primary(same) == hashes[:1]  # offset, count, message and index are not identity
    assert primary([base], ckpt="other") != hashes[:1]  # the same tensor in another checkpoint of the repo


def test_run_names_its_analysis_exit_code_and_configuration(repo, tmp_path):
    root, _ckpt = repo
    (root / "fp8doctor.toml").write_text('fail-on = "warning"\nfill = "0x01"\n'
                                         '[[ignore-tensors]]\npattern = "nothing.*"\nreason = "test"\n')
    doc = sarif_of("models/v4", "--ignore", "scale-outlier", cwd=root)
    validate(doc)
    [run] = doc["runs"]
    assert run["automationDetails"]["id"] == "fp8doctor/scan/models/v4/"
    [inv] = run["invocations"]
    assert inv["exitCode"] == 1 and inv["exitCodeDescription"] == "findings at or above warning"
    cfg = inv["properties"]["configuration"]
    assert os.path.samefile(cfg["file"], root / "fp8doctor.toml")
    assert cfg["fail_on"] == "warning" and cfg["fill"] == "0x01" and cfg["ignore"] == ["scale-outlier"]
    assert cfg["ignore_tensors"] == [{"pattern": "nothing.*", "rules": [], "reason": "test"}]
    assert "scale-outlier" not in inv["properties"]["rules"]


def test_clean_run_and_baseline_writing_run_say_exit_zero(v4, repo, tmp_path):
    [inv] = sarif_of(v4, cwd=tmp_path)["runs"][0]["invocations"]
    assert inv["exitCode"] == 0 and inv["properties"]["configuration"]["file"] is None
    root, ckpt = repo
    r = run_cli("scan", str(ckpt), "--format", "sarif", "--write-baseline", str(tmp_path / "b.json"), cwd=str(root))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["runs"][0]["results"] and doc["runs"][0]["invocations"][0]["exitCode"] == 0
    # library rendering knows no exit code: the invocation leaves it out rather than guess
    doc = sarif.sarif_dict(Report("ck", ()), RenderContext())
    validate(doc)
    assert "exitCode" not in doc["runs"][0]["invocations"][0]
