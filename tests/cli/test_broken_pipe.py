"""A reader that closes stdout early (`fp8doctor scan ... | head`) must not change the exit code's
meaning or print a traceback. The pipe's read end is closed before the command writes anything, so
every write fails: deterministic, no race with `head`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fp8doctor.testing import synth


def _run_into_closed_pipe(*args: str) -> tuple[int, str]:
    r, w = os.pipe()
    os.close(r)
    try:
        proc = subprocess.run([sys.executable, "-m", "fp8doctor", *args], stdout=w, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, "NO_COLOR": "1"}, timeout=300)
    finally:
        os.close(w)
    return proc.returncode, proc.stderr


@pytest.fixture
def garbled(tmp_path):
    d = str(tmp_path / "garbled")
    synth.deepseek_v4(d)
    synth.garble_padding(d)
    return d


@pytest.mark.parametrize("fmt", ["console", "json", "sarif"])
def test_scan_exit_code_survives_a_closed_pipe(v4, garbled, fmt):
    code, err = _run_into_closed_pipe("scan", v4, "--format", fmt)
    assert (code, err) == (0, "")
    code, err = _run_into_closed_pipe("scan", garbled, "--format", fmt)
    assert code == 1
    assert "Traceback" not in err and "Broken pipe" not in err


@pytest.mark.parametrize("fmt", ["console", "json", "raw"])
def test_dump_exit_code_survives_a_closed_pipe(garbled, fmt):
    code, err = _run_into_closed_pipe("dump", garbled, "--tensor", "layers.0.*", "--format", fmt)
    assert (code, err) == (0, "")


def test_rules_survives_a_closed_pipe():
    assert _run_into_closed_pipe("rules") == (0, "")
