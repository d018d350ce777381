"""Issue 13: JSON and SARIF reports of very many findings stream, in memory bounded by one finding
(not by the report), and render exactly what the one-string renderers do. No wall-clock timing here:
benchmarks/render_findings.py measures time."""

from __future__ import annotations

import json
import tracemalloc

import pytest

from fp8doctor.findings import Finding, Region, Report, ScanStats, Severity
from fp8doctor.reporters import RenderContext, chunks, renderer


def _report(n: int) -> Report:
    return Report("/ckpt", tuple(
        Finding("scale-nan", Severity.ERROR, f"model-{i % 7:05d}.safetensors", f"layers.{i}.w.scale",
                f"entry {i} is NaN " * 4, Region.PADDING, byte_offset=i, index=(i, 1), fixable=bool(i % 2))
        for i in range(n)), ScanStats(files=7))


@pytest.mark.parametrize("fmt", ["json", "sarif"])
def test_stream_equals_the_document(fmt):
    r = _report(50)
    ctx = RenderContext(version="1.2.3", config="/repo/fp8doctor.toml", suppressed_by_rule={"scale-nan": 3})
    text = "".join(chunks(fmt, r, ctx))
    assert text == renderer(fmt)(r, ctx)
    doc = json.loads(text)
    found = doc["findings"] if fmt == "json" else doc["runs"][0]["results"]
    assert len(found) == 50
    empty = json.loads("".join(chunks(fmt, _report(0), ctx)))
    assert (empty["findings"] if fmt == "json" else empty["runs"][0]["results"]) == []


@pytest.mark.parametrize("fmt", ["json", "sarif"])
def test_memory_follows_one_finding_not_the_report(fmt):
    small, big = _report(1_000), _report(20_000)

    def peak(r: Report) -> tuple[int, int]:
        tracemalloc.start()
        pieces = 0
        for piece in chunks(fmt, r, RenderContext(version="1")):
            pieces += 1
            assert len(piece) < 1 << 20
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top, pieces

    (p_small, n_small), (p_big, n_big) = peak(small), peak(big)
    assert n_big > 20_000 and n_small > 1_000  # one piece (at least) per finding: streamed
    assert p_big < 4 * p_small + (2 << 20), (p_small, p_big)  # 20x the findings, not 20x the memory
