"""Property-based tests: random valid checkpoints scan clean; random mutations never crash scan."""

from __future__ import annotations

import random
import shutil
import sys
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fp8doctor import scan
from fp8doctor.testing.synth import Builder
from tests.helpers.repo import repo_path

sys.path.insert(0, repo_path("fuzz"))
from harness import mutate, one_input

BLOCKS = [(128, 128), (64, 64), (1, 32)]
linear = st.tuples(st.integers(1, 300), st.integers(1, 300), st.sampled_from(["F8_E8M0", "F32"]),
                   st.sampled_from([1, 4]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layers=st.lists(linear, min_size=1, max_size=5), block=st.sampled_from(BLOCKS), seed=st.integers(0, 99))
def test_random_valid_checkpoints_scan_clean(layers, block, seed):
    b = Builder(seed)
    for i, (n, k, sdtype, align) in enumerate(layers):
        b.add(f"m.{i}.weight", b.fp8_weight((n, k)))
        logical = (-(-n // block[0]), -(-k // block[1]))
        stored = tuple(-(-x // align) * align for x in logical)
        scale = b.e8m0_scales(stored, logical) if sdtype == "F8_E8M0" else b.f32_scales(stored, logical)
        b.add(f"m.{i}.weight_scale_inv" if sdtype == "F32" else f"m.{i}.scale", scale)
    d = tempfile.mkdtemp()
    try:
        b.write(d, shards=min(2, len(layers)),
                config={"quantization_config": {"quant_method": "fp8", "weight_block_size": list(block)}})
        report = scan(d)
        assert report.findings == (), [f.message for f in report.findings]
        assert report.stats.scale_tensors_checked == len(layers)
    finally:
        shutil.rmtree(d)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_random_mutations_never_crash_scan(seed):
    one_input(mutate(random.Random(seed)))


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=512))
def test_random_bytes_never_crash_scan(data):
    one_input(data)


def test_fuzz_harness_short_run():
    """The CI slice of `make fuzz`: a bounded deterministic run."""
    import subprocess

    p = subprocess.run([sys.executable, repo_path("fuzz", "run.py"),
                        "--cases", "300", "--seed", "7"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "300 cases, no crash" in p.stdout
