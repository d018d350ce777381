"""Ctrl-C: every command stops promptly, says "interrupted" and exits 130 (a real SIGINT to a real
process). Deterministic: the command blocks at a named hold point (fp8doctor.interrupt) and creates a
ready file; the test waits for that file, never for a fixed time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from benchmarks import make_checkpoint
from fp8doctor.interrupt import HOLD_ENV, READY_ENV
from fp8doctor.scanner import ScanOptions, scan
from fp8doctor.testing import synth


def _wait_for(path: str, proc: subprocess.Popen | None = None, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while not os.path.exists(path):
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"exited {proc.returncode} before the hold point: {out}{err}")
        if time.monotonic() > deadline:
            raise AssertionError("hold point never reached")
        time.sleep(0.01)


def _interrupt(args: list[str], point: str, tmp_path) -> subprocess.CompletedProcess:
    ready = str(tmp_path / "ready")
    env = {**os.environ, "NO_COLOR": "1", HOLD_ENV: point, READY_ENV: ready}
    proc = subprocess.Popen([sys.executable, "-m", "fp8doctor", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        _wait_for(ready, proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)  # a bound, not a timing claim: the hold never ends by itself
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


@pytest.mark.parametrize(("command", "point"), [
    (["scan"], "scan-file"),
    (["dump", "--tensor", "layers.0.attn.wkv.scale"], "dump-tensor"),
    (["fix", "--dry-run"], "scan-file"),
    (["fix"], "scan-file"),
])
def test_ctrl_c_stops_with_interrupted_and_130(tmp_path, command, point):
    d = str(tmp_path / "v4")
    synth.deepseek_v4(d)
    r = _interrupt([command[0], d, *command[1:]], point, tmp_path)
    assert r.returncode == 130, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "interrupted"
    assert "Traceback" not in r.stderr


def test_ctrl_c_stops_verify(tmp_path):
    pytest.importorskip("torch")
    d = str(tmp_path / "v4")
    synth.deepseek_v4(d)
    r = _interrupt(["verify", d], "verify-layer", tmp_path)
    assert r.returncode == 130, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "interrupted"


def test_ctrl_c_stops_a_threaded_scan_without_waiting_for_workers(tmp_path, monkeypatch):
    """The workers are blocked at the hold point; only the stop flag set by the interrupted main
    thread can release them, so this passes only if Ctrl-C tells them to stop."""
    d = str(tmp_path / "big")
    make_checkpoint.build("v4-flash", d, layers=1, shards=4, moe_pad=64, garbage=0)
    ready = str(tmp_path / "ready")
    monkeypatch.setenv(HOLD_ENV, "scan-file")
    monkeypatch.setenv(READY_ENV, ready)

    main = threading.main_thread().ident
    assert main is not None

    def poke_main() -> None:  # a real SIGINT: it also wakes a main thread blocked on a lock
        _wait_for(ready)
        signal.pthread_kill(main, signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Thread(target=poke_main, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            scan(d, ScanOptions(workers=4))
    finally:
        signal.signal(signal.SIGINT, previous)
    workers = [t for t in threading.enumerate() if t.name.startswith("fp8doctor-scan")]
    for t in workers:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in workers)

