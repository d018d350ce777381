"""Unit tests of reporters/envelope.py: one schema version, the envelope's fields and their order,
and every JSON output (scan, several checkpoints, dump, fix, verify) starting with that envelope;
no other module defines a schema version or builds a `schema_version` key of its own."""

from __future__ import annotations

import ast
import functools
import json
import pathlib
from types import SimpleNamespace

import pytest

import fp8doctor
from fp8doctor.findings import Report
from fp8doctor.repair.fix import FixResult
from fp8doctor.reporters import RenderContext, TargetResult, dump_json, fix_json
from fp8doctor.reporters import json as scan_json
from fp8doctor.reporters import verify as verify_json
from fp8doctor.reporters.envelope import SCHEMA_VERSION, envelope

PACKAGE = pathlib.Path(fp8doctor.__file__).parent


def test_one_schema_version():
    assert SCHEMA_VERSION == 1  # changes only when a field is removed or changes meaning: never so far
    assert scan_json.SCHEMA_VERSION is dump_json.SCHEMA_VERSION is fix_json.SCHEMA_VERSION is SCHEMA_VERSION
    assert verify_json.SCHEMA_VERSION is SCHEMA_VERSION


def test_envelope_fields_and_order():
    env = envelope("9.8.7", target="/ckpt", summary={"errors": 0}, findings=[])
    assert list(env) == ["schema_version", "tool", "target", "summary", "findings"]
    assert env["schema_version"] == SCHEMA_VERSION
    assert env["tool"] == {"name": "fp8doctor", "version": "9.8.7"}
    assert envelope("") == {"schema_version": SCHEMA_VERSION, "tool": {"name": "fp8doctor", "version": ""}}
    a, b = envelope("1"), envelope("1")
    a["tool"]["version"] = "x"
    assert b["tool"]["version"] == "1"  # a fresh dict each call
    assert list(envelope("1", z=1, a=2)) == ["schema_version", "tool", "z", "a"]  # fields in the order given


def _head(text: str) -> list[str]:
    data = json.loads(text)
    assert data["schema_version"] == SCHEMA_VERSION and data["tool"] == {"name": "fp8doctor", "version": "0.0-test"}
    return list(data)


def test_every_json_output_starts_with_the_envelope():
    report = Report(target="/ckpt", findings=())
    ctx = RenderContext(version="0.0-test")
    assert _head(scan_json.render(report, "0.0-test"))[:4] == ["schema_version", "tool", "target", "summary"]
    assert _head(scan_json.render_report(report, ctx))[:3] == ["schema_version", "tool", "target"]
    many = scan_json.render_many([TargetResult(target="/ckpt", report=report, ctx=ctx)])
    assert _head(many) == ["schema_version", "tool", "targets", "summary"]
    assert "schema_version" not in json.loads(many)["targets"][0]  # one envelope, around all of them
    assert _head(dump_json.render([], "/ckpt", "0.0-test")) == ["schema_version", "tool", "target", "tensors"]
    assert "".join(dump_json.stream([], "/ckpt", "0.0-test")) == dump_json.render([], "/ckpt", "0.0-test")
    fixed = FixResult(target="/ckpt", mode="dry-run", fill="zero", changes=(), unfixable=(), bytes_written=0,
                      shards_touched=0, seconds=0.0)
    assert _head(fix_json.render(fixed, "0.0-test"))[:3] == ["schema_version", "tool", "command"]
    options = SimpleNamespace(tokens=1, context=1, device="cpu", seed=0, cache_init="zero", experts="auto",
                              kernel=None, worst_case=False)
    verified = SimpleNamespace(first_failure=None, options=options, target="/ckpt", layer=0, arch="deepseek_v3",
                               passed=True, verdict="PASS", reported=None, stages=[], profiles=[], assumptions=(),
                               quantized_tensors=0, bytes_read=0, seconds=0.0)
    assert _head(verify_json.render_json(verified, "0.0-test"))[:3] == ["schema_version", "tool", "target"]


@functools.cache
def _trees() -> tuple[tuple[pathlib.Path, ast.Module], ...]:
    return tuple((p, ast.parse(p.read_text(encoding="utf-8"))) for p in sorted(PACKAGE.rglob("*.py")))


def test_no_other_module_defines_a_schema_version():
    defined = []
    for path, tree in _trees():
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, ast.AnnAssign) else []
            value = getattr(node, "value", None)
            alias = isinstance(value, ast.Name) and value.id == "SCHEMA_VERSION"  # another name for the one
            defined += [path.relative_to(PACKAGE).as_posix() for t in targets
                        if isinstance(t, ast.Name) and "SCHEMA_VERSION" in t.id and not alias]
    assert defined == ["reporters/envelope.py"]
    assert verify_json.VERIFY_SCHEMA_VERSION is SCHEMA_VERSION


@pytest.mark.parametrize("key", ["schema_version", "tool"])
def test_no_renderer_builds_the_envelope_keys_itself(key):
    # SARIF's runs[].tool is SARIF 2.1.0's own object, not fp8doctor's envelope
    skip = {"reporters/envelope.py"} | ({"reporters/sarif.py"} if key == "tool" else set())
    built = []
    for path, tree in _trees():
        if path.relative_to(PACKAGE).as_posix() in skip:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value == key for k in node.keys):
                built.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
            if isinstance(node, ast.Call) and any(kw.arg == key for kw in node.keywords) and not (
                    isinstance(node.func, ast.Name) and node.func.id == "envelope"):
                built.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not built, f"{key!r} built outside reporters/envelope.py: {built}"
