"""Checkpoints written by the real producers, built once per test session.

Each producer runs in its own subprocess (`tests.integration.producers.build`), two at a time, so the test
process never imports torch or a producer and a producer's global patches stay in its process.
Tests get a private copy of an export (`producer_ckpt`) to corrupt and fix.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers.repo import ROOT
from tests.integration.producers.build import SCHEMES

ALL = [f"{p}-{s}" for p, schemes in SCHEMES.items() for s in schemes]


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": ROOT,
            "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def run_module(module: str, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=ROOT,
                          env=_env(), timeout=timeout)


@pytest.fixture(scope="session")
def producer_exports(tmp_path_factory) -> str:
    """Every scheme of every producer, written once: DEST/PRODUCER-SCHEME. FP8DOCTOR_PRODUCER_CACHE
    names a directory to keep them in between sessions (development only: CI builds afresh)."""
    cache = os.environ.get("FP8DOCTOR_PRODUCER_CACHE")
    if cache and all(os.path.exists(os.path.join(cache, n, "producer.json")) for n in ALL):
        return cache
    dest = cache or str(tmp_path_factory.mktemp("producers"))

    def build(producer: str) -> subprocess.CompletedProcess:
        return run_module("tests.integration.producers.build", dest, *(f"{producer}:{s}" for s in SCHEMES[producer]))

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(SCHEMES, pool.map(build, SCHEMES)))
    failed = {p: r.stderr[-3000:] for p, r in results.items() if r.returncode != 0}
    assert not failed, f"producer builds failed: {failed}"
    return dest


@pytest.fixture
def producer_ckpt(producer_exports, tmp_path):
    """A private copy of one export, and what its producer said it wrote."""

    def get(name: str) -> tuple[str, dict]:
        dst = str(tmp_path / name)
        shutil.copytree(os.path.join(producer_exports, name), dst)
        with open(os.path.join(dst, "producer.json")) as f:
            info = json.load(f)
        os.remove(os.path.join(dst, "producer.json"))
        return dst, info

    return get


def producer_load(producer: str, *paths: str) -> dict[str, dict]:
    """The producer's own loader on each path, in one process (see tests.integration.producers.load)."""
    r = run_module("tests.integration.producers.load", producer, *paths)
    out = {}
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            path, _, result = line[len("RESULT "):].partition(" ")
            out[path] = json.loads(result)
    assert set(out) == set(paths), f"loader printed no result: {r.stderr[-3000:]}"
    return out


@pytest.fixture(scope="session")
def fixed_exports(producer_exports, tmp_path_factory) -> dict[str, dict]:
    """Every clean export, and a copy of it with garbage written into its padding then `fix`ed,
    both loaded by the producer's own loader: name -> {clean, fixed, fix, before, after}."""
    from fp8doctor import fix
    from tests.integration.producers.matrix import corrupt, shard_bytes

    work = str(tmp_path_factory.mktemp("fixed"))
    runs: dict[str, dict] = {}
    for name in ALL:
        if name == "transformers-FP8_UNALIGNED":
            continue
        src = os.path.join(producer_exports, name)
        dst = os.path.join(work, name)
        shutil.copytree(src, dst)
        with open(os.path.join(src, "producer.json")) as f:
            info = json.load(f)
        damaged = corrupt(dst, info, "padding") is not None
        result = fix(dst)
        runs[name] = {"producer": info["producer"], "src": src, "dst": dst, "damaged": damaged, "fix": result,
                      "same_bytes": shard_bytes(dst) == shard_bytes(src)}
    by_producer: dict[str, list[str]] = {}
    for r in runs.values():
        by_producer.setdefault(r["producer"], []).extend([r["src"], r["dst"]])
    with ThreadPoolExecutor(max_workers=2) as pool:
        loaded: dict[str, dict] = {}
        for part in pool.map(lambda kv: producer_load(kv[0], *kv[1]), by_producer.items()):
            loaded.update(part)
    for r in runs.values():
        r["before"], r["after"] = loaded[r["src"]], loaded[r["dst"]]
    return runs
