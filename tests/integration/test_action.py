"""The GitHub Action (action.yml + scripts/github_action.py) end to end without GitHub: its steps run
as the runner would run them (tests/helpers/action_runner.py), with the built wheel installed into a fresh
venv, on a broken, a clean and the demo checkpoint; and action.yml is checked against the action
metadata schema and for what its steps and outputs promise."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from fp8doctor.testing import synth
from tests.helpers.action_runner import ACTION, ROOT, load_action, parse_outputs, run_action
from tests.helpers.ci_helpers import broken_checkpoint_repo
from tests.unit.reporters.test_reporters_github import parse as parse_annotation
from tests.unit.reporters.test_reporters_sarif import validate as validate_sarif

SCRIPT = os.path.join(ROOT, "scripts", "github_action.py")


def _module(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


script = _module(SCRIPT, "fp8doctor_github_action")
demo = _module(os.path.join(ROOT, "examples", "demo.py"), "fp8doctor_demo")


@pytest.fixture
def workspace(tmp_path):
    """A repository with a broken (models/v4), a clean (models/clean) and the demo's broken checkpoint."""
    root, _ = broken_checkpoint_repo(tmp_path)
    synth.deepseek_v4(str(root / "models" / "clean"))
    demo.write_checkpoint(str(root / "models" / "demo"))
    assert demo.break_padding(str(root / "models" / "demo")) > 0
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    return root, temp


def annotations(stdout: str) -> list[tuple[str, dict, str]]:
    return [parse_annotation(line) for line in stdout.splitlines()
            if line.startswith("::") and not line.startswith(("::group::", "::endgroup::"))]


# --- action.yml itself -------------------------------------------------------------------------


def test_action_yml_validates_against_the_action_metadata_schema(tmp_path):
    r = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-actions",
                        ACTION], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    # the check really checks: a composite step without `shell` is refused
    action = load_action()
    del action["runs"]["steps"][0]["shell"]
    bad = str(tmp_path / "bad-action.json")
    with open(bad, "w") as fh:
        json.dump(action, fh)
    r = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-actions", bad],
                       capture_output=True, text=True)
    assert r.returncode != 0


@pytest.mark.parametrize(("path", "schema"), [("examples/github-action.yml", "vendor.github-workflows"),
                                              ("examples/gitlab-ci.yml", "vendor.gitlab-ci")])
def test_ci_examples_validate_against_their_schemas(path, schema):
    r = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema,
                        os.path.join(ROOT, path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_action_inputs_outputs_and_steps_hold_together():
    action = load_action()
    inputs = action["inputs"]
    assert {"paths", "fail-on", "formats", "config", "baseline", "version", "upload-sarif"} <= set(inputs)
    assert inputs["paths"]["required"] is True and inputs["fail-on"]["default"] == ""
    assert action["runs"]["using"] == "composite"
    steps = action["runs"]["steps"]
    ids = {s["id"] for s in steps if "id" in s}
    text = open(ACTION).read()
    for name in inputs:  # every input reaches a step
        assert f"inputs.{name}" in text, name
    for name, spec in action["outputs"].items():  # every output names a step that exists
        [(sid, _out)] = re.findall(r"steps\.([\w-]+)\.outputs\.([\w-]+)", spec["value"])
        assert sid in ids, name
    for s in steps:
        if "run" in s:
            assert s["shell"] == "bash"
            assert "${{" not in s["run"], f"{s['name']}: expressions go through env, never into shell text"
            for script_path in re.findall(r"\$GITHUB_ACTION_PATH/(\S+?)\"", s["run"]):
                assert os.path.isfile(os.path.join(ROOT, script_path))
    [upload] = [s for s in steps if "uses" in s]
    assert upload["uses"].startswith("github/codeql-action/upload-sarif@v")
    assert "always()" in upload["if"] and "inputs.upload-sarif" in upload["if"]
    assert "always()" in steps[-1]["if"] and "FP8DOCTOR_EXIT" in steps[-1]["run"]  # exits with the scan's code


# --- the script's pure parts -------------------------------------------------------------------


def test_install_spec():
    assert script.install_spec("", "/action") == "/action"
    assert script.install_spec("0.1.0", "/a") == "fp8doctor==0.1.0" and script.install_spec("v0.2.0rc1", "/a") \
        == "fp8doctor==0.2.0rc1"
    assert script.install_spec("fp8doctor>=0.1", "/a") == "fp8doctor>=0.1"
    for bad in ("--index-url=http://evil", "-e .", "1.0\n--pre"):
        with pytest.raises(script.ActionError):
            script.install_spec(bad, "/a")
    with pytest.raises(script.ActionError):
        script.install_spec("", None)


def test_plan_pairs_formats_with_files_and_keeps_paths_as_arguments():
    env = {"FP8DOCTOR_PATHS": "models/a\n'my model' -weird\n\n", "FP8DOCTOR_FORMATS": "sarif, markdown github json",
           "FP8DOCTOR_FAIL_ON": "Warning", "FP8DOCTOR_CONFIG": "ci/fp8doctor.toml", "FP8DOCTOR_OUTPUT_DIR": "out",
           "FP8DOCTOR_BIN": "/venv/bin/fp8doctor"}
    a, b, c = script.plan(env)
    assert [p.path for p in (a, b, c)] == ["models/a", "my model", "-weird"]
    assert a.argv == ["/venv/bin/fp8doctor", "scan", "--fail-on", "warning", "--config", "ci/fp8doctor.toml",
                      "models/a", "--format", "sarif", "--output", "out/models-a.sarif", "--format", "markdown",
                      "--output", "out/models-a.md", "--format", "github", "--format", "json", "--output",
                      "out/models-a.json"]
    assert c.argv[6:8] == ["--", "-weird"]  # a path is never an option
    assert script.plan({**env, "FP8DOCTOR_FORMATS": "console"})[0].reports == {"console": None}
    assert "--fail-on" not in script.plan({**env, "FP8DOCTOR_FAIL_ON": ""})[0].argv  # the configuration decides
    for key, value in (("FP8DOCTOR_FORMATS", "sarif pdf"), ("FP8DOCTOR_FAIL_ON", "never"), ("FP8DOCTOR_PATHS", " \n")):
        with pytest.raises(script.ActionError):
            script.plan({**env, key: value})


def test_outputs_are_written_in_the_multiline_form(tmp_path):
    out = tmp_path / "out"
    script.set_outputs({"GITHUB_OUTPUT": str(out)}, {"a": "1", "b": "x\ny=z"})
    assert parse_outputs(out.read_text()) == {"a": "1", "b": "x\ny=z"}


# --- end to end ----------------------------------------------------------------------------------


def test_install_step_puts_the_wheel_in_a_fresh_venv_without_torch(action_install, dist):
    from fp8doctor import __version__

    assert action_install.outputs["version"] == __version__
    exe = action_install.outputs["bin"]
    assert os.path.isfile(exe) and "without torch" in action_install.stdout
    python = os.path.join(os.path.dirname(exe), "python")
    probe = ("import importlib.util, fp8doctor; print(fp8doctor.__file__); "
             "print(importlib.util.find_spec('torch'))")
    r = subprocess.run([python, "-c", probe], capture_output=True, text=True, cwd="/", check=True)
    where, torch = r.stdout.split()
    assert where.startswith(os.path.dirname(os.path.dirname(exe))) and torch == "None"


def test_action_end_to_end_on_broken_clean_and_demo_checkpoints(workspace, action_install):
    root, temp = workspace
    run = run_action({"paths": "models/v4\nmodels/clean models/demo", "upload-sarif": "true"}, str(root), str(temp),
                     preset={"install": action_install.outputs})
    scan = run.step("scan")
    assert scan.returncode == 0, scan.stdout + scan.stderr  # the scan step records; the last step fails
    assert run.outputs["exit-code"] == "1" and run.exit_code == 1 and run.failed
    # annotations: the broken checkpoints' findings, on their shard files, then one notice per scan
    notes = annotations(run.stdout)
    files = {props.get("file", "") for kind, props, _ in notes if kind == "error"}
    assert any(f.startswith("models/v4/model-") for f in files) and any(f.startswith("models/demo/") for f in files)
    assert not any(f.startswith("models/clean/") for f in files)
    assert sum(1 for kind, props, _ in notes if kind == "notice" and props["title"] == "fp8doctor scan") == 3
    # the job summary: the three Markdown reports, in order
    summary = run.summary
    heads = re.findall(r"^## (\S+) fp8doctor scan of <code>(.*?)</code>", summary, re.M)
    assert heads == [("❌", "models/v4"), ("✅", "models/clean"), ("❌", "models/demo")]
    assert "scale-padding-nonzero" in summary and "fp8doctor fix models/v4" in summary
    # SARIF: one valid file per checkpoint, handed to upload-sarif, each its own analysis category
    upload = run.step("Upload SARIF to code scanning")
    assert upload.ran and upload.uses.startswith("github/codeql-action/upload-sarif@")
    sarif_dir = root / upload.with_["sarif_file"]
    docs = {p: json.loads((sarif_dir / p).read_text()) for p in sorted(os.listdir(sarif_dir)) if p.endswith(".sarif")}
    assert list(docs) == ["models-clean.sarif", "models-demo.sarif", "models-v4.sarif"]
    for doc in docs.values():
        validate_sarif(doc)
    ids = {d["runs"][0]["automationDetails"]["id"] for d in docs.values()}
    assert ids == {"fp8doctor/scan/models/v4/", "fp8doctor/scan/models/clean/", "fp8doctor/scan/models/demo/"}
    assert docs["models-v4.sarif"]["runs"][0]["invocations"][0]["exitCode"] == 1
    assert docs["models-clean.sarif"]["runs"][0]["results"] == []
    assert "9 errors" in scan.stderr  # the console verdict in the job log


def test_action_on_a_clean_checkpoint_passes_and_uploads_nothing_unasked(workspace, action_install):
    root, temp = workspace
    run = run_action({"paths": "models/clean", "formats": "markdown,json"}, str(root), str(temp),
                     preset={"install": action_install.outputs})
    assert run.exit_code == 0 and not run.failed and run.outputs["exit-code"] == "0"
    assert not run.step("Upload SARIF to code scanning").ran and run.outputs["sarif-dir"] == ""
    assert run.summary.startswith("## ✅ fp8doctor scan of <code>models/clean</code>")
    assert json.loads((root / "fp8doctor-reports" / "models-clean.json").read_text())["summary"]["errors"] == 0


def test_action_fail_on_baseline_and_config_reach_the_scan(workspace, action_install):
    root, temp = workspace
    base = root / "baseline.json"
    r = subprocess.run([action_install.outputs["bin"], "scan", "models/v4", "--write-baseline", str(base)],
                       cwd=root, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (root / "ci.toml").write_text('fail-on = "warning"\n')
    run = run_action({"paths": "models/v4", "baseline": "baseline.json", "config": "ci.toml"}, str(root), str(temp),
                     preset={"install": action_install.outputs})
    assert run.exit_code == 0, run.stdout  # every finding is in the baseline
    assert "9 known findings suppressed" in run.summary
    doc = json.loads((root / "fp8doctor-reports" / "models-v4.sarif").read_text())
    cfg = doc["runs"][0]["invocations"][0]["properties"]["configuration"]
    assert cfg["fail_on"] == "warning" and cfg["baseline"] == "baseline.json"


def test_action_says_when_a_scan_could_not_run(workspace, action_install):
    root, temp = workspace
    run = run_action({"paths": "'models/<b>|miss`ing, 50%: x'\nmodels/clean"}, str(root), str(temp),
                     preset={"install": action_install.outputs})
    assert run.exit_code == 2 and run.outputs["exit-code"] == "2"
    # the path reaches the summary and the annotation escaped: no markup, no table cell, no command break
    assert "## ❌ fp8doctor could not scan <code>models/&lt;b&gt;&#124;miss&#96;ing, 50%: x</code>" in run.summary
    assert "## ✅ fp8doctor scan of <code>models/clean</code>" in run.summary  # the other path still scanned
    [(_kind, props, message)] = [a for a in annotations(run.stdout) if a[0] == "error"]
    assert props["title"] == "fp8doctor could not scan models/<b>|miss`ing, 50%: x" and "no such file" in message


def test_action_refuses_a_bad_input_with_one_line(workspace, action_install):
    root, temp = workspace
    run = run_action({"paths": "models/clean", "fail-on": "sometimes"}, str(root), str(temp),
                     preset={"install": action_install.outputs})
    assert run.exit_code == 2 and run.step("scan").returncode == 2
    [(kind, _props, message)] = annotations(run.stdout)
    assert kind == "error" and "fail-on" in message and "sometimes" in message
