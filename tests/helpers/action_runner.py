"""Run the composite GitHub Action in `action.yml` without GitHub, as the runner would.

Each `run:` step runs in bash (`-eo pipefail`, as GitHub does) with GITHUB_WORKSPACE, RUNNER_TEMP,
GITHUB_ACTION_PATH, a fresh GITHUB_OUTPUT and GITHUB_STEP_SUMMARY per step, and its `env:` with the
`${{ }}` expressions the action uses evaluated (inputs.*, steps.*.outputs.*, github.action_path,
runner.temp, always(), ==, !=, &&). `uses:` steps are recorded with their resolved `with:` (they
need GitHub), not run. A step whose `if:` is false, or that follows a failure without always(),
is skipped, as on GitHub.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import yaml

from tests.helpers.repo import ROOT

ACTION = os.path.join(ROOT, "action.yml")
_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def load_action(path: str = ACTION) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@dataclass
class StepRun:
    id: str | None
    name: str
    ran: bool
    returncode: int = 0
    stdout: str = ""
    stderr: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    uses: str | None = None
    with_: dict[str, str] = field(default_factory=dict)


@dataclass
class ActionRun:
    steps: list[StepRun]
    outputs: dict[str, str]

    @property
    def failed(self) -> bool:
        return any(s.ran and s.returncode != 0 for s in self.steps)

    @property
    def exit_code(self) -> int:
        """The code the action's job step ends with: the last step that ran and failed, else 0."""
        codes = [s.returncode for s in self.steps if s.ran and s.returncode != 0]
        return codes[-1] if codes else 0

    @property
    def stdout(self) -> str:
        return "".join(s.stdout for s in self.steps)

    @property
    def summary(self) -> str:
        """The job summary: each step's GITHUB_STEP_SUMMARY, concatenated."""
        return "".join(s.summary for s in self.steps)

    def step(self, step_id_or_name: str) -> StepRun:
        return next(s for s in self.steps if step_id_or_name in (s.id, s.name))


def parse_outputs(text: str) -> dict[str, str]:
    """GITHUB_OUTPUT: `name=value` lines and `name<<DELIM` ... `DELIM` blocks."""
    out: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            end = lines.index(delim, i + 1)
            out[name] = "\n".join(lines[i + 1:end])
            i = end + 1
            continue
        if line:
            name, _, value = line.partition("=")
            out[name] = value
        i += 1
    return out


class Context:
    def __init__(self, inputs: dict[str, str], workspace: str, temp: str, failed: bool = False) -> None:
        self.inputs, self.workspace, self.temp = inputs, workspace, temp
        self.steps: dict[str, dict[str, str]] = {}
        self.failed = failed

    def ref(self, name: str) -> str:
        parts = name.split(".")
        if parts[0] == "inputs" and len(parts) == 2:
            return self.inputs.get(parts[1], "")
        if parts[0] == "steps" and len(parts) == 4 and parts[2] == "outputs":
            return self.steps.get(parts[1], {}).get(parts[3], "")
        if name == "github.action_path":
            return ROOT
        if name == "github.workspace":
            return self.workspace
        if name == "runner.temp":
            return self.temp
        raise AssertionError(f"action.yml uses an expression the test runner does not know: {name}")

    def value(self, term: str) -> Any:
        term = term.strip()
        if term == "always()":
            return True
        if term == "success()":
            return not self.failed
        if term == "failure()":
            return self.failed
        if len(term) >= 2 and term[0] == term[-1] == "'":
            return term[1:-1].replace("''", "'")
        for op in ("==", "!="):
            if op in term:
                a, b = (self.value(x) for x in term.split(op, 1))
                return (str(a).lower() == str(b).lower()) == (op == "==")
        return self.ref(term)

    def evaluate(self, expr: str) -> Any:
        parts = [self.value(p) for p in expr.split("&&")]
        return all(parts) if len(parts) > 1 else parts[0]

    def substitute(self, text: str) -> str:
        return _EXPR.sub(lambda m: str(self.evaluate(m.group(1))), str(text))

    def condition(self, step: dict[str, Any]) -> bool:
        cond = step.get("if")
        if cond is None:
            return not self.failed
        cond = str(cond).strip()
        m = _EXPR.fullmatch(cond)
        expr = m.group(1) if m else cond
        if not any(f in expr for f in ("always()", "failure()", "success()")) and self.failed:
            return False  # GitHub adds success() to a condition without a status function
        return bool(self.evaluate(expr))


def run_action(inputs: dict[str, str], workspace: str, temp: str, *, preset: dict[str, dict[str, str]] | None = None,
               env: dict[str, str] | None = None, timeout: int = 600) -> ActionRun:
    """Run action.yml's steps with `inputs` (defaults filled in as GitHub does). `preset` gives the
    outputs of steps (by id) that count as already run, e.g. the install step of an earlier run."""
    action = load_action()
    given = {k: str(v) for k, v in inputs.items()}
    unknown = set(given) - set(action["inputs"])
    assert not unknown, f"inputs the action does not declare: {unknown}"
    for name, spec in action["inputs"].items():
        if spec.get("required") and not given.get(name):
            raise AssertionError(f"required input {name} missing")
        given.setdefault(name, str(spec.get("default", "")))
    ctx = Context(given, workspace, temp)
    runs: list[StepRun] = []
    base_env = {**os.environ, **(env or {}), "GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": workspace,
                "RUNNER_TEMP": temp, "GITHUB_ACTION_PATH": ROOT, "NO_COLOR": "1",
                # the runner's python3 (setup-python puts one first on PATH)
                "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    for i, step in enumerate(action["runs"]["steps"]):
        sid, name = step.get("id"), step.get("name", f"step {i}")
        if preset and sid in preset:
            ctx.steps[sid] = dict(preset[sid])
            runs.append(StepRun(sid, name, ran=False, outputs=dict(preset[sid])))
            continue
        if not ctx.condition(step):
            runs.append(StepRun(sid, name, ran=False))
            continue
        if "uses" in step:
            runs.append(StepRun(sid, name, ran=True, uses=step["uses"],
                                with_={k: ctx.substitute(v) for k, v in (step.get("with") or {}).items()}))
            continue
        assert step.get("shell") == "bash", f"step {name}: composite run steps need shell: bash"
        out_file = os.path.join(temp, f"github-output-{i}")
        summary_file = os.path.join(temp, f"step-summary-{i}")
        for p in (out_file, summary_file):
            open(p, "w").close()
        step_env = {**base_env, "GITHUB_OUTPUT": out_file, "GITHUB_STEP_SUMMARY": summary_file}
        step_env.update({k: ctx.substitute(v) for k, v in (step.get("env") or {}).items()})
        r = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]], cwd=workspace,
                           env=step_env, capture_output=True, text=True, timeout=timeout)
        with open(out_file, encoding="utf-8") as fh:
            outputs = parse_outputs(fh.read())
        with open(summary_file, encoding="utf-8") as fh:
            summary = fh.read()
        if sid:
            ctx.steps[sid] = outputs
        runs.append(StepRun(sid, name, True, r.returncode, r.stdout, r.stderr, outputs, summary))
        if r.returncode != 0:
            ctx.failed = True
    outputs = {name: ctx.substitute(spec["value"]) for name, spec in (action.get("outputs") or {}).items()}
    return ActionRun(runs, outputs)
