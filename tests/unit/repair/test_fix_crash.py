"""Crash safety: a fix (or undo) SIGKILLed at any point leaves the checkpoint, once `fix` runs again,
exactly repaired (or, for `--undo`, exactly original), never in between.

Named write points are hit through FP8DOCTOR_TEST_CRASH_AT in a real subprocess; random moments by
FP8DOCTOR_TEST_KILL_AFTER_WRITES: the subprocess kills itself after its N-th write, N drawn at random
over the writes a whole fix makes, so every kill lands inside the write window whatever the machine's
load. FP8DOCTOR_CRASH_LOOPS sets the number of random kills (default 20; use 200+ for a long run).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys

import numpy as np
import pytest

import fp8doctor
from fp8doctor.repair import hooks
from fp8doctor.repair import journal as jr
from fp8doctor.repair.hooks import CRASH_ENV, CRASH_POINTS, KILL_AFTER_ENV
from fp8doctor.testing import synth
from tests.conftest import run_cli
from tests.helpers.fix_helpers import assert_same_outside_padding, checkpoint_files, copy_tree, dirty_v4, padding_masks

FIX_POINTS = [p for p in CRASH_POINTS if not p.startswith("undo-")]
UNDO_POINTS = [p for p in CRASH_POINTS if p.startswith("undo-")]


@pytest.fixture(scope="module")
def states(tmp_path_factory):
    """A dirty checkpoint, and the bytes it has before and after a complete fix."""
    base = tmp_path_factory.mktemp("crash")
    src = dirty_v4(str(base / "src"))
    ref = copy_tree(src, str(base / "ref"))
    fp8doctor.fix(ref)
    return src, checkpoint_files(src), checkpoint_files(ref), padding_masks(src)


def _assert_between(files: dict[str, bytes], original: dict[str, bytes], repaired: dict[str, bytes],
                    masks: dict[str, np.ndarray]) -> None:
    """Right after a kill: outside padding nothing moved, and each byte is its original or repaired value."""
    assert_same_outside_padding(original, files, masks)
    for name, data in files.items():
        a = np.frombuffer(data, dtype=np.uint8)
        o = np.frombuffer(original[name], dtype=np.uint8)
        r = np.frombuffer(repaired[name], dtype=np.uint8)
        assert ((a == o) | (a == r)).all(), name


@pytest.mark.parametrize("point", FIX_POINTS)
def test_kill_at_each_write_point_then_fix_again(states, tmp_path, point):
    src, original, repaired, masks = states
    path = copy_tree(src, str(tmp_path / "ck"))
    proc = run_cli("fix", path, env={CRASH_ENV: point})
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr)
    _assert_between(checkpoint_files(path), original, repaired, masks)
    # a scan of the killed fix's checkpoint never looks clean while a journal is unfinished
    report = fp8doctor.scan(path)
    interrupted = point not in ("journal-bin", "after-done")
    assert ("fix-interrupted" in report.by_rule()) == interrupted, (point, report.by_rule())
    assert report.failed(fp8doctor.Severity.ERROR) or (not interrupted and checkpoint_files(path) == repaired)
    proc = run_cli("fix", path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert checkpoint_files(path) == repaired
    assert fp8doctor.scan(path).findings == ()
    expect = {"journal-bin": "fixed 165 padded entries", "after-done": "nothing to fix"}.get(
        point, "completed an interrupted fix")
    assert expect in proc.stdout, proc.stdout
    # the completed (or redone) fix can be undone to the exact original
    fp8doctor.fix(path, undo=True)
    assert checkpoint_files(path) == original


@pytest.mark.parametrize("point", ["journal-commit", "partial-run", "after-patch", "done-tmp"])
def test_kill_then_undo_rolls_back(states, tmp_path, point):
    src, original, _, _ = states
    path = copy_tree(src, str(tmp_path / "ck"))
    assert run_cli("fix", path, env={CRASH_ENV: point}).returncode == -signal.SIGKILL
    proc = run_cli("fix", path, "--undo")
    assert proc.returncode == 0, proc.stderr
    assert "rolled back an interrupted fix" in proc.stdout
    assert checkpoint_files(path) == original


@pytest.mark.parametrize("point", UNDO_POINTS)
def test_kill_during_undo(states, tmp_path, point):
    src, original, repaired, masks = states
    path = copy_tree(src, str(tmp_path / "ck"))
    fp8doctor.fix(path)
    proc = run_cli("fix", path, "--undo", env={CRASH_ENV: point})
    assert proc.returncode == -signal.SIGKILL
    _assert_between(checkpoint_files(path), original, repaired, masks)
    proc = run_cli("fix", path, "--undo")
    assert proc.returncode == 0 and "completed an interrupted undo" in proc.stdout, proc.stdout + proc.stderr
    assert checkpoint_files(path) == original


def test_kill_at_random_moments(tmp_path, monkeypatch):
    """Kill `fix --fill one` (a write a tensor, and the journal's) after a random number of writes; then fix again."""
    loops = int(os.environ.get("FP8DOCTOR_CRASH_LOOPS", "20"))
    src = str(tmp_path / "src")
    synth.deepseek_v4(src)  # clean: --fill one rewrites every padded entry (18 tensors, one write each)
    ref = copy_tree(src, str(tmp_path / "ref"))
    writes = 0

    def count() -> None:
        nonlocal writes
        writes += 1

    monkeypatch.setattr(hooks, "count_write", count)
    fp8doctor.fix(ref, fill="one")  # counts the writes of a whole fix: the window the kills aim at
    monkeypatch.undo()
    assert writes > 18  # one a tensor (18), and the journal's
    original, repaired, masks = checkpoint_files(src), checkpoint_files(ref), padding_masks(src)
    cmd = [sys.executable, "-m", "fp8doctor", "fix", "--fill", "one", "--quiet"]

    rng = random.Random(int(os.environ.get("FP8DOCTOR_CRASH_SEED", "0")))
    outcomes = {"killed": 0, "finished": 0, "interrupted-state": 0}
    for i in range(loops):
        path = copy_tree(src, str(tmp_path / f"ck{i}"))
        n = rng.randint(1, writes)
        env = {**os.environ, KILL_AFTER_ENV: str(n), "NO_COLOR": "1"}
        rc = subprocess.run([*cmd, path], env=env, capture_output=True, timeout=300).returncode
        outcomes["killed" if rc == -signal.SIGKILL else "finished"] += 1
        files = checkpoint_files(path)
        _assert_between(files, original, repaired, masks)
        jdir = os.path.join(path, jr.JOURNAL_DIRNAME)
        if (files != original and files != repaired) or any(j.state == jr.PENDING for j in jr.load_all(jdir, path)):
            outcomes["interrupted-state"] += 1
        fp8doctor.fix(path, fill="one")
        assert checkpoint_files(path) == repaired, (i, outcomes)
        fp8doctor.fix(path, undo=True)  # one journal reached done, whichever run finished it
        assert checkpoint_files(path) == original
    print(f"\ncrash loop: {loops} runs, {outcomes}")
    assert outcomes["killed"] == loops and outcomes["interrupted-state"] > 0, outcomes
