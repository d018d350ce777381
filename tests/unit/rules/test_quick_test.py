"""The quick test (min/max of a 1-byte scale tensor's real box instead of a histogram) never changes
a finding: the cross-tensor outlier rule decided from median intervals equals the rule on exact
medians, and whole scans with and without the quick test give the same report."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from fp8doctor import scanner
from fp8doctor.rules import judge
from fp8doctor.rules.content import TensorSummary, check_kinds
from fp8doctor.rules.tally import Tally
from fp8doctor.testing import synth


@pytest.mark.parametrize("seed", range(300))
def test_check_kinds_on_intervals_equals_exact_medians(seed):
    r = random.Random(seed)
    span = r.choice([2, 4, 8, 32])
    exact, quick = [], []
    for kind in range(r.randint(1, 3)):
        center = r.randint(-40, 10)
        for i in range(r.randint(1, 9)):
            m = center + r.randint(-span - 3, span + 3) if r.random() < 0.2 else center + r.randint(-2, 2)
            s = TensorSummary(f"l.{i}.k{kind}.scale", "f", i, m, f"k{kind}")
            exact.append(s)
            if r.random() < 0.7:  # known only as an interval around it
                lo, hi = m - r.randint(0, 4), m + r.randint(0, 4)
                quick.append(dataclasses.replace(s, median_exponent=lo, median_hi=hi))
            else:
                quick.append(s)
    truth = {s.name: s.median_exponent for s in exact}
    asked: list[str] = []

    def resolve(s: TensorSummary) -> int:
        asked.append(s.name)
        return truth[s.name]

    assert list(check_kinds(quick, span, resolve)) == list(check_kinds(exact, span))
    # exact medians are asked for only where an interval could change the outcome
    if not list(check_kinds(exact, span)) and all(
            s.median_hi is None or s.median_hi - s.median_exponent == 0 for s in quick):
        assert not asked


def test_band_is_exact_about_the_verdict():
    """Whenever the band says clean, the histogram says clean with a median inside the band."""
    rng = np.random.default_rng(3)
    for _ in range(3000):
        n = int(rng.integers(1, 60))
        lo = int(rng.integers(0, 255))
        width = int(rng.integers(0, 40))
        codes = np.clip(lo + rng.integers(0, width + 1, n), 0, 255).astype(np.uint8)
        if rng.random() < 0.1:
            codes[int(rng.integers(0, n))] = 0xFF
        quick = Tally("e8m0", (n,), (n,), None, False, quick=True)
        full = Tally("e8m0", (n,), (n,), None, False)
        quick.add(codes.tobytes(), 0)
        full.add(codes.tobytes(), 0)
        band = quick.band(32, 24)
        ok, median = full.verdict(32, 24)
        if band is not None:
            assert ok and band[0] <= median <= band[1]


@pytest.fixture(scope="module")
def v4(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("quick") / "v4")
    synth.deepseek_v4(d, experts=4)
    return d


def test_scan_with_and_without_the_quick_test_is_identical(v4, monkeypatch):
    from tests.conftest import poke

    # one tensor whose scales sit far from its kind's (the cross-tensor outlier rule fires on it)
    name = "layers.0.ffn.experts.3.w1.scale"
    with scanner.open_checkpoint(v4) as ck:
        data = np.frombuffer(ck.read(ck.tensors[name]), dtype=np.uint8)
    shifted = np.where(data > 0, data + 40, data).astype(np.uint8)  # real entries 2^40 up, padding (0) kept
    poke(v4, name, 0, shifted.tobytes())
    asked = []
    real = judge.exact_median

    def spy(t, *a, **k):
        asked.append(t.name)
        return real(t, *a, **k)

    monkeypatch.setattr(judge, "exact_median", spy)
    quick = scanner.scan(v4)
    assert asked  # the intervals left the outlier rule open for that kind: exact medians were read
    monkeypatch.setattr(judge, "QUICK", False)
    full = scanner.scan(v4)
    assert quick.findings == full.findings
    [f] = [f for f in quick.findings if f.rule == "scale-outlier" and f.tensor == name]
    assert "tensors like it" in f.message
