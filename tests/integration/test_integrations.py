"""The shipped integrations work: the pre-commit hook fails on a broken checkpoint and passes once
it is repaired; the commands in the GitHub and GitLab examples run and write what they promise."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

import pytest
from junitparser import JUnitXml

from tests.helpers.ci_helpers import broken_checkpoint_repo

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from tests.helpers.repo import ROOT


def parse_hooks_yaml(text: str) -> list[dict]:
    """The subset of YAML .pre-commit-hooks.yaml uses: a list of flat mappings of scalars and flow lists."""
    hooks: list[dict] = []
    for raw in text.splitlines():
        line = raw.split(" #")[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        if line.startswith("- "):
            hooks.append({})
            line = "  " + line[2:]
        assert line.startswith("  ") and hooks, f"unexpected line in hooks file: {raw!r}"
        key, _, value = line.strip().partition(":")
        value = value.strip()
        if value.startswith("[") and value.endswith("]"):
            parsed: object = [v.strip().strip("'\"") for v in value[1:-1].split(",") if v.strip()]
        elif value in ("true", "false"):
            parsed = value == "true"
        elif value[:1] in ("'", '"'):
            parsed = value[1:-1].replace("''", "'") if value[0] == "'" else json.loads(value)
        else:
            parsed = value
        hooks[-1][key] = parsed
    return hooks


def console_script(name: str) -> list[str]:
    """How the installed console script `name` runs (pre-commit installs the package, then runs it)."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        target = tomllib.load(fh)["project"]["scripts"][name]
    module, func = target.split(":")
    return [sys.executable, "-c", f"import sys; sys.argv[0] = {name!r}; from {module} import {func}; {func}()"]


def run_entry(entry: str, args: list[str], cwd: str) -> subprocess.CompletedProcess:
    first, *rest = shlex.split(entry)
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([*console_script(first), *rest, *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.fixture
def git_repo(tmp_path):
    return broken_checkpoint_repo(tmp_path)


def test_pre_commit_hook_fails_on_a_broken_checkpoint_and_passes_after_fix(git_repo):
    repo, ckpt = git_repo
    with open(os.path.join(ROOT, ".pre-commit-hooks.yaml")) as fh:
        [hook] = parse_hooks_yaml(fh.read())
    assert hook["id"] == "fp8doctor-scan" and hook["language"] == "python" and hook["pass_filenames"] is True
    assert hook["entry"] == "fp8doctor scan"
    staged = sorted(os.path.relpath(os.path.join(ckpt, f), repo) for f in os.listdir(ckpt))
    # pre-commit passes the staged names its `files` pattern matches: the shards and config.json
    args = [*hook.get("args", []), *(f for f in staged if re.search(hook["files"], f))]
    assert len(args) >= 3 and all(a.startswith("models/v4/") for a in args)

    broken = run_entry(hook["entry"], args, str(repo))
    assert broken.returncode == 1, broken.stderr
    assert broken.stdout.count("fp8doctor scan ") == 1  # grouped: the checkpoint is scanned once, whole
    assert "fp8doctor scan models/v4 " in broken.stdout
    assert "9 errors" in broken.stdout and "fp8doctor fix" in broken.stdout

    repaired = run_entry("fp8doctor fix", ["models/v4"], str(repo))
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    fixed = run_entry(hook["entry"], args, str(repo))
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "no findings" in fixed.stdout


def test_pre_commit_hook_groups_files_of_several_checkpoints(tmp_path):
    from fp8doctor.testing import synth

    synth.deepseek_v4(str(tmp_path / "m" / "a"))
    synth.deepseek_v4(str(tmp_path / "m" / "b"))
    synth.garble_padding(str(tmp_path / "m" / "b"))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "config.json").write_text("{}")  # some other config.json: not a checkpoint
    names = [*sorted(f"m/{c}/{f}" for c in "ab" for f in os.listdir(tmp_path / "m" / c)), "docs/config.json"]
    r = run_entry("fp8doctor scan", names, str(tmp_path))
    assert r.returncode == 1
    assert r.stdout.count("fp8doctor scan m/") == 2
    assert r.stdout.rstrip().splitlines()[-1] == "✗ 2 checkpoints: 1 failed, 1 passed: m/b"


def example_commands(path: str) -> list[str]:
    """`fp8doctor scan ...` command lines in a CI example (plain, list item, or folded `run: >-`)."""
    lines = open(path).read().splitlines()
    out = []
    for i, line in enumerate(lines):
        text = re.sub(r"^\s*(- )?(run: )?", "", line)
        if not text.startswith("fp8doctor scan"):
            continue
        indent = len(line) - len(line.lstrip())
        cmd = [text]
        for more in lines[i + 1:]:
            if len(more) - len(more.lstrip()) != indent or not more.strip().startswith("--"):
                break
            cmd.append(more.strip())
        out.append(" ".join(cmd))
    return out


def run_example(cmd: str, cwd: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    old = dict(os.environ)
    try:
        os.environ.update(env)
        argv = [os.path.expandvars(a) for a in shlex.split(cmd)]
    finally:
        os.environ.clear()
        os.environ.update(old)
    return run_entry("fp8doctor", argv[1:], cwd)


def test_github_action_example_runs(git_repo, tmp_path):
    from tests.unit.reporters.test_reporters_github import parse
    from tests.unit.reporters.test_reporters_sarif import validate

    repo, _ = git_repo
    path = os.path.join(ROOT, "examples", "github-action.yml")
    text = open(path).read()
    assert "github/codeql-action/upload-sarif" in text and "security-events: write" in text
    [cmd] = example_commands(path)
    summary = tmp_path / "step-summary.md"
    r = run_example(cmd, str(repo), {"CHECKPOINT": "models/v4", "GITHUB_STEP_SUMMARY": str(summary)})
    assert r.returncode == 1  # fails the job
    validate(json.loads((repo / "fp8doctor.sarif").read_text()))
    assert summary.read_text().startswith("## ❌ fp8doctor scan")
    annotations = [parse(line) for line in r.stdout.splitlines()]
    assert annotations[0][1]["file"].startswith("models/v4/") and annotations[-1][0] == "notice"
    assert "9 errors" in r.stderr  # the console summary in the job log


def test_gitlab_example_runs(git_repo):
    repo, _ = git_repo
    path = os.path.join(ROOT, "examples", "gitlab-ci.yml")
    assert "junit: fp8doctor-junit.xml" in open(path).read()
    [cmd] = example_commands(path)
    r = run_example(cmd, str(repo), {"CHECKPOINT": "models/v4"})
    assert r.returncode == 1
    [suite] = list(JUnitXml.fromfile(str(repo / "fp8doctor-junit.xml")))
    assert suite.failures == 1
    assert json.loads((repo / "fp8doctor.json").read_text())["summary"]["errors"] == 9
