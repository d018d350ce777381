"""Shared fixtures: every test builds its own small checkpoint with fp8doctor.testing.synth."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fp8doctor.checkpoint.loader import open_checkpoint
from fp8doctor.testing import synth


def tensor_info(path: str, name: str):
    with open_checkpoint(path) as ck:
        return ck.tensors[name]


def poke(root: str, name: str, rel: int, data: bytes) -> int:
    """Overwrite bytes of tensor `name` at `rel` bytes into its data; returns the absolute offset."""
    t = tensor_info(root, name)
    with open(os.path.join(root, t.file), "r+b") as f:
        f.seek(t.offset + rel)
        f.write(data)
    return t.offset + rel


def file_bytes(root: str) -> dict[str, bytes]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = fh.read()
    return out


def run_cli(*args: str, cwd: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real console entry point in a subprocess."""
    full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "fp8doctor", *args], capture_output=True, text=True, cwd=cwd,
                          env=full_env, timeout=300)


@pytest.fixture
def v4(tmp_path):
    d = str(tmp_path / "v4")
    synth.deepseek_v4(d)
    return d


@pytest.fixture
def v3(tmp_path):
    d = str(tmp_path / "v3")
    synth.deepseek_v3(d)
    return d


@pytest.fixture
def oss(tmp_path):
    d = str(tmp_path / "oss")
    synth.gpt_oss(d)
    return d


@pytest.fixture
def ct(tmp_path):
    d = str(tmp_path / "ct")
    synth.compressed_tensors_mxfp4(d)
    return d


@pytest.fixture(scope="session")
def dist(tmp_path_factory):
    """`python -m build` (isolated, as CI and a release do) of a copy of the source: (sdist, wheel)."""
    from tests.helpers.packaging_helpers import build_dist

    return build_dist(str(tmp_path_factory.mktemp("dist")))


@pytest.fixture(scope="session")
def action_install(dist, tmp_path_factory):
    """The action's install step, run once: the built wheel into a fresh venv under RUNNER_TEMP."""
    from tests.helpers.action_runner import run_action

    temp = tmp_path_factory.mktemp("runner-temp")
    ws = tmp_path_factory.mktemp("workspace")
    run = run_action({"paths": "nothing", "version": dist[1]}, str(ws), str(temp))
    install = run.step("install")
    assert install.returncode == 0, install.stdout + install.stderr
    return install
