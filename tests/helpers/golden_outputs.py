"""Record the outputs (scan in every format, dump JSON/console/raw, fix --dry-run JSON, rules JSON,
a several-checkpoint scan, exit codes) on a fixed set of synthetic checkpoints, to prove a refactor
changed no behaviour.

    python tests/helpers/golden_outputs.py record OUT.json      # with the code before the change
    python tests/helpers/golden_outputs.py compare OUT.json     # with the code after: exit 1 on a difference

Run both from outside the worktree (report paths are relative to the cwd). To record with
main's code: `git archive main | tar -x -C /tmp/m`, `cd /tmp`, then
`PYTHONPATH=/tmp/m .venv/bin/python tests/helpers/golden_outputs.py record /tmp/before.json`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # corpus.py beside it

try:  # before issue 15 the builder was fp8doctor.synth; this script runs on both sides of the move
    from fp8doctor import synth  # type: ignore[attr-defined]

    _testing = types.ModuleType("fp8doctor.testing")
    _testing.synth = synth  # type: ignore[attr-defined]
    sys.modules["fp8doctor.testing"] = _testing  # tests/corpus.py imports it from there
    sys.modules["fp8doctor.testing.synth"] = synth
except ImportError:
    from fp8doctor.testing import synth  # type: ignore[no-redef]

import corpus
from typer.testing import CliRunner

from fp8doctor.cli.app import app

_TIMING = re.compile(r'("(?:seconds|startTimeUtc|endTimeUtc|elapsed_s|wall_s)": )("[^"]*"|[0-9.eE+-]+)')
"""Wall-clock fields, the only outputs that may differ between two runs."""
_PATH_HASH = re.compile(r'("primaryLocationLineHash": )"[^"]*"')
"""SARIF's line hash covers the (temporary) artifact path."""


def _checkpoints(base: str) -> list[tuple[str, str]]:
    out = []

    def add(name: str, build) -> None:
        path = os.path.join(base, name)
        os.makedirs(path)
        build(path)
        out.append((name, path))

    add("v3", lambda p: synth.deepseek_v3(p))
    add("v3-noue8m0", lambda p: synth.deepseek_v3(p, ue8m0=False))
    add("v4", lambda p: synth.deepseek_v4(p))
    add("v4-noconfig", lambda p: synth.deepseek_v4(p, with_config=False))
    add("gpt-oss", lambda p: synth.gpt_oss(p))
    add("ct-mxfp4", lambda p: synth.compressed_tensors_mxfp4(p))
    add("v32-mla", lambda p: synth.deepseek_v32_mla(p))
    add("v4-mla", lambda p: synth.deepseek_v4_mla(p))
    for fam, build in (("v4", synth.deepseek_v4), ("gpt-oss", synth.gpt_oss), ("v3", synth.deepseek_v3),
                       ("ct-mxfp4", synth.compressed_tensors_mxfp4), ("v4-mla", synth.deepseek_v4_mla)):
        add(f"{fam}-garbled", lambda p, build=build: (build(p), synth.garble_padding(p, prefix="")))
    template = os.path.join(base, "template")
    corpus.make_template(template)
    for name, case in corpus.HEADER_CASES + corpus.INDEX_CASES:
        path = os.path.join(base, "corpus-" + name)
        shutil.copytree(template, path, symlinks=True)
        try:
            target = case(path)
        except Exception as e:
            print(f"skip {name}: {e}", file=sys.stderr)
            continue
        out.append(("corpus-" + name, target))
    return out


_CONSOLE_TIME = re.compile(r"\b[0-9]+(?:\.[0-9]+)? ?(?:s|ms)\b")
"""Durations in human-readable reports."""
_JUNIT_TIME = re.compile(r'(\b(?:time|timestamp)=)"[^"]*"')


def _run(runner: CliRunner, args: list[str], base: str) -> dict[str, object]:
    r = runner.invoke(app, args)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        return {"exit": r.exit_code, "exception": type(r.exception).__name__}
    raw = r.stdout_bytes
    text = raw.decode("utf-8") if "raw" not in args else raw.hex()
    text = text.replace(base, "<BASE>").replace(os.path.basename(base), "<B>")
    text = _PATH_HASH.sub(r'\1"<H>"', _TIMING.sub(r'\1"<T>"', text))
    if "json" not in args and "sarif" not in args:
        text = _JUNIT_TIME.sub(r'\1"<T>"', _CONSOLE_TIME.sub("<T>", text))
    return {"exit": r.exit_code, "stdout": text}


def record() -> dict[str, object]:
    runner = CliRunner()
    results: dict[str, object] = {}
    base = tempfile.mkdtemp(prefix="fp8golden")
    try:
        checkpoints = _checkpoints(base)
        for name, path in checkpoints:
            for label, args in (("scan-json", ["scan", "--format", "json", path]),
                                ("scan-sarif", ["scan", "--format", "sarif", path]),
                                ("scan-console", ["scan", "--no-color", path]),
                                ("scan-junit", ["scan", "--format", "junit", path]),
                                ("scan-markdown", ["scan", "--format", "markdown", path]),
                                ("scan-github", ["scan", "--format", "github", path]),
                                ("dump-json", ["dump", "--findings", "--format", "json", path]),
                                ("dump-console", ["dump", "--findings", "--no-color", path]),
                                ("dump-raw", ["dump", "--findings", "--format", "raw", path]),
                                ("fix-dry-run", ["fix", "--dry-run", "--format", "json", path])):
                results[f"{name}/{label}"] = _run(runner, args, base)
        paths = [p for _, p in checkpoints[:4]] + [os.path.join(base, "absent")]
        for fmt in ("json", "sarif", "console", "junit", "markdown", "github"):
            results[f"many/scan-{fmt}"] = _run(runner, ["scan", "--no-color", "--format", fmt, *paths], base)
        r = runner.invoke(app, ["rules", "--json"])
        results["rules"] = {"exit": r.exit_code, "stdout": r.stdout}
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return results


def main() -> int:
    mode, file = sys.argv[1], sys.argv[2]
    now = record()
    if mode == "record":
        with open(file, "w") as f:
            json.dump(now, f, indent=1, sort_keys=True)
        print(f"recorded {len(now)} outputs to {file}")
        return 0
    with open(file) as f:
        before = json.load(f)
    diff = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    for k in diff:
        print(f"DIFFERS: {k}")
    print(f"{len(now)} outputs, {len(diff)} differ")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
