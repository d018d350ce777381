#!/usr/bin/env python3
"""The steps of the fp8doctor GitHub Action (`action.yml` at the repository root).

Standard library only: it runs under whatever `python3` the runner has, before fp8doctor exists.

    python3 scripts/github_action.py install   # a venv under $RUNNER_TEMP with fp8doctor, never torch
    python3 scripts/github_action.py scan      # one `fp8doctor scan` per path; reports; step summary

Inputs arrive as environment variables set by `action.yml` (never spliced into shell text, so a
path or a version cannot inject a command): FP8DOCTOR_VERSION, FP8DOCTOR_PATHS, FP8DOCTOR_FAIL_ON,
FP8DOCTOR_FORMATS, FP8DOCTOR_CONFIG, FP8DOCTOR_BASELINE, FP8DOCTOR_OUTPUT_DIR, FP8DOCTOR_BIN. Results
go where GitHub reads them: `$GITHUB_OUTPUT` (step outputs), `$GITHUB_STEP_SUMMARY` (the Markdown
report), stdout (`::error file=...::` annotations from the `github` format). `scan` itself exits 0
once it has recorded `exit-code` (the upload step must still run); the action's last step exits with
that code: 0 clean, 1 findings at or above fail-on, 2 a scan could not run.
"""

from __future__ import annotations

import html
import os
import re
import shlex
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

FORMATS = ("sarif", "markdown", "github", "json", "junit", "console")
"""What the `formats` input may name (a subset of `fp8doctor scan --format`)."""
DEFAULT_FORMATS = "sarif markdown github"
SUFFIX = {"sarif": ".sarif", "json": ".json", "junit": "-junit.xml", "markdown": ".md", "console": ".txt"}
FAIL_ON = ("error", "warning", "info")
EXIT_ERROR = 2
_VERSION = re.compile(r"\d+(\.\d+)*([abc]|rc|\.dev|\.post)?\d*")


class ActionError(Exception):
    """A bad input: one line for the log, exit 2."""


def venv_dir(env: Mapping[str, str]) -> str:
    return os.path.join(env.get("RUNNER_TEMP") or tempfile.gettempdir(), "fp8doctor-venv")


def venv_bin(venv: str, name: str) -> str:
    return os.path.join(venv, "Scripts" if os.name == "nt" else "bin", name + (".exe" if os.name == "nt" else ""))


def install_spec(version: str, action_path: str | None) -> str:
    """What pip installs: the action's own source for an empty `version` (the tag you `uses:`),
    `fp8doctor==V` for a version number, else the text as pip's requirement (a path, a wheel, a
    URL, `fp8doctor>=0.2`). Never an option: a leading '-' is refused."""
    version = version.strip()
    if not version:
        if not action_path:
            raise ActionError("version is empty and GITHUB_ACTION_PATH is not set: nothing to install from")
        return action_path
    if version.startswith("-") or "\n" in version:
        raise ActionError(f"version {version!r} is not a version, a requirement or a path")
    return f"fp8doctor=={version.lstrip('v')}" if _VERSION.fullmatch(version.lstrip("v")) else version


def install(env: Mapping[str, str]) -> int:
    spec = install_spec(env.get("FP8DOCTOR_VERSION", ""), env.get("GITHUB_ACTION_PATH"))
    venv = venv_dir(env)
    subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True)
    python = venv_bin(venv, "python")
    # no extras: scanning never needs torch, and the action never installs it
    subprocess.run([python, "-m", "pip", "install", "--disable-pip-version-check", "--quiet", spec], check=True)
    version = subprocess.run([venv_bin(venv, "fp8doctor"), "--version"], check=True, capture_output=True,
                             text=True).stdout.strip()
    has_torch = subprocess.run([python, "-c", "import importlib.util, sys; "
                                "sys.exit(importlib.util.find_spec('torch') is None)"]).returncode == 0
    print(f"installed {version} from {spec}" + (" (torch is installed too: the spec asked for it)"
                                                  if has_torch else " (without torch)"))
    set_outputs(env, {"bin": venv_bin(venv, "fp8doctor"), "version": version.split()[-1]})
    return 0


def split_paths(text: str) -> list[str]:
    """The `paths` input: one or more per line, shell-quoted where a path holds spaces."""
    out: list[str] = []
    for line in text.splitlines():
        try:
            out += shlex.split(line)
        except ValueError as e:
            raise ActionError(f"paths: cannot read {line.strip()!r} ({e})") from None
    if not out:
        raise ActionError("paths is empty: name at least one checkpoint directory or file")
    return out


def split_formats(text: str) -> list[str]:
    names = [x.strip().lower() for x in re.split(r"[\s,]+", text or DEFAULT_FORMATS) if x.strip()]
    bad = [x for x in names if x not in FORMATS]
    if bad:
        raise ActionError(f"formats: unknown {', '.join(map(repr, bad))} (expected some of {', '.join(FORMATS)})")
    return list(dict.fromkeys(names)) or DEFAULT_FORMATS.split()


def slug(path: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", path.strip("/\\")).strip("-.")
    return s or "checkpoint"


@dataclass(frozen=True)
class Planned:
    """One checkpoint's scan: the command line and where each report goes (None: stdout)."""

    path: str
    argv: list[str]
    reports: dict[str, str | None]


def plan(env: Mapping[str, str]) -> list[Planned]:
    paths = split_paths(env.get("FP8DOCTOR_PATHS", ""))
    formats = split_formats(env.get("FP8DOCTOR_FORMATS", ""))
    fail_on = (env.get("FP8DOCTOR_FAIL_ON") or "").strip().lower()
    if fail_on and fail_on not in FAIL_ON:
        raise ActionError(f"fail-on: {fail_on!r} is not one of {', '.join(FAIL_ON)}")
    out_dir = env.get("FP8DOCTOR_OUTPUT_DIR") or "fp8doctor-reports"
    exe = env.get("FP8DOCTOR_BIN") or "fp8doctor"
    common = ["--fail-on", fail_on] if fail_on else []  # empty: the configuration's, else error
    for flag, key in (("--config", "FP8DOCTOR_CONFIG"), ("--baseline", "FP8DOCTOR_BASELINE")):
        if env.get(key, "").strip():
            common += [flag, env[key].strip()]
    planned, seen = [], set()
    for path in paths:
        name = slug(path)
        while name in seen:
            name += "-1"
        seen.add(name)
        reports: dict[str, str | None] = {}
        for fmt in formats:
            # annotations must reach stdout; so must the console report when there are none
            to_stdout = fmt == "github" or (fmt == "console" and "github" not in formats)
            reports[fmt] = None if to_stdout else os.path.join(out_dir, name + SUFFIX[fmt])
        argv = [exe, "scan", "--", path] if path.startswith("-") else [exe, "scan", path]
        argv = argv[:2] + common + argv[2:]
        for fmt, dest in reports.items():
            argv += ["--format", fmt] + (["--output", dest] if dest is not None else [])
        planned.append(Planned(path, argv, reports))
    return planned


def command_data(text: str) -> str:
    """Text safe in a workflow command's message (the runner's escaping, as reporters/github.py;
    this script cannot import fp8doctor: it runs before fp8doctor is installed)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def command_property(text: str) -> str:
    return command_data(text).replace(":", "%3A").replace(",", "%2C")


def markdown_code(text: str) -> str:
    """Text from a path or an error message as inline code that cannot open markup or a table."""
    return "<code>" + html.escape(text, quote=False).replace("|", "&#124;").replace("`", "&#96;") + "</code>"


def _append(path: str | None, text: str) -> None:
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text if text.endswith("\n") else text + "\n")


def set_outputs(env: Mapping[str, str], values: Mapping[str, str]) -> None:
    """Step outputs in GitHub's multi-line form (a value can never end the block early)."""
    for name, value in values.items():
        marker = f"FP8DOCTOR_{uuid.uuid4().hex}"
        _append(env.get("GITHUB_OUTPUT"), f"{name}<<{marker}\n{value}\n{marker}")


def scan(env: Mapping[str, str]) -> int:
    planned = plan(env)
    out_dir = env.get("FP8DOCTOR_OUTPUT_DIR") or "fp8doctor-reports"
    os.makedirs(out_dir, exist_ok=True)
    summary = env.get("GITHUB_STEP_SUMMARY")
    codes = []
    for p in planned:
        print(f"::group::fp8doctor scan {p.path}", flush=True)
        print("$ " + shlex.join(p.argv), flush=True)
        r = subprocess.run(p.argv, stderr=subprocess.PIPE, text=True, errors="replace")
        sys.stderr.write(r.stderr)
        print("::endgroup::", flush=True)
        codes.append(r.returncode)
        md = p.reports.get("markdown")
        if r.returncode in (0, 1) and md is not None and os.path.isfile(md):
            with open(md, encoding="utf-8") as fh:
                _append(summary, fh.read().rstrip("\n") + "\n\n")  # a blank line between reports
        elif r.returncode not in (0, 1):  # the scan could not run: say so everywhere, never stay silent
            why = next((line for line in reversed(r.stderr.splitlines()) if line.strip()), f"exit {r.returncode}")
            print(f"::error title={command_property('fp8doctor could not scan ' + p.path)}::{command_data(why)}",
                  flush=True)
            _append(summary, f"## ❌ fp8doctor could not scan {markdown_code(p.path)}\n\n{markdown_code(why)}\n\n")
    code = max(codes) if all(c in (0, 1, 2) for c in codes) else EXIT_ERROR
    sarifs = [p.reports["sarif"] for p in planned if p.reports.get("sarif") and os.path.isfile(p.reports["sarif"])]
    set_outputs(env, {"exit-code": str(code), "reports-dir": out_dir, "sarif-dir": out_dir if sarifs else ""})
    return 0


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    env = os.environ if env is None else env
    steps = {"install": install, "scan": scan}
    if len(args) != 1 or args[0] not in steps:
        sys.stderr.write("usage: github_action.py install|scan\n")
        return EXIT_ERROR
    try:
        return steps[args[0]](env)
    except ActionError as e:
        print(f"::error title=fp8doctor action::{command_data(str(e))}", flush=True)
        set_outputs(env, {"exit-code": str(EXIT_ERROR)})
        return EXIT_ERROR
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"::error title=fp8doctor action::{command_data(f'{args[0]} failed: {e}')}", flush=True)
        set_outputs(env, {"exit-code": str(EXIT_ERROR)})
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
