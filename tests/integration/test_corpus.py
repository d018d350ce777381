"""The bad-input corpus: every case gives findings or a one-line error with exit 1 or 2, never a
traceback, with bounded memory."""

from __future__ import annotations

import shutil
import tracemalloc

import pytest
from typer.testing import CliRunner

from fp8doctor import CheckpointError, scan
from fp8doctor.cli.app import app
from tests.conftest import run_cli
from tests.helpers.corpus import HEADER_CASES, INDEX_CASES, all_cases, make_template


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return make_template(str(tmp_path_factory.mktemp("tpl") / "ckpt"))


def _cases(template_dir):
    return all_cases(template_dir)


def test_corpus_every_case_handled(template, tmp_path):
    cases = _cases(template)
    assert len(cases) >= 200, len(cases)
    runner = CliRunner()
    handled = 0
    for name, make in cases:
        root = str(tmp_path / name)
        shutil.copytree(template, root, symlinks=True)
        target = make(root)
        tracemalloc.start()
        try:
            report = scan(target)
        except CheckpointError:
            report = None
        finally:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        assert peak < 256 << 20, (name, peak)
        if report is not None:
            assert report.findings, f"{name}: a broken checkpoint scanned clean"
        result = runner.invoke(app, ["scan", target, "--format", "json"], env={"NO_COLOR": "1"})
        assert result.exit_code in (1, 2), (name, result.exit_code, result.output[-500:])
        assert result.exception is None or isinstance(result.exception, SystemExit), (name, result.exception)
        handled += 1
        shutil.rmtree(root, ignore_errors=True)
    print(f"corpus: {handled} cases handled")
    assert handled == len(cases)


@pytest.mark.parametrize("name,make", [c for c in HEADER_CASES + INDEX_CASES if c[0] in {
    "terabyte-header", "nested-deep", "control-chars-name", "shard-is-fifo", "index-thousands-of-shards",
    "shard-symlink-loop", "random-bytes", "config-deep"}])
def test_corpus_through_a_real_process(template, tmp_path, name, make):
    root = str(tmp_path / name)
    shutil.copytree(template, root, symlinks=True)
    target = make(root)
    p = run_cli("scan", target)
    assert p.returncode in (1, 2), (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout
