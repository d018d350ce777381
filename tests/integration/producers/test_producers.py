"""Exports written by the real producers (llm-compressor / compressed-tensors, transformers,
torchao, nvidia-modelopt) on CPU: clean ones scan clean, their layouts match what the producer
says it wrote, each real-world corruption is an error, and fix repairs padding only, leaving a
checkpoint the producer's own loader still loads to the same weights.
"""

from __future__ import annotations

import json
import math
import os

import pytest

from fp8doctor import Severity, fix, scan
from tests.integration.producers.conftest import ALL
from tests.integration.producers.matrix import CORRUPTIONS, corrupt, expected, shard_bytes

CLEAN = [n for n in ALL if n != "transformers-FP8_UNALIGNED"]


@pytest.mark.parametrize("name", CLEAN)
def test_clean_export_scans_clean(producer_ckpt, name):
    path, _ = producer_ckpt(name)
    report = scan(path)
    assert [(f.rule, f.tensor, f.message) for f in report.findings] == []
    assert report.stats.scale_tensors_checked == report.stats.scale_tensors > 0


@pytest.mark.parametrize("name", CLEAN)
def test_layout_matches_what_the_producer_wrote(producer_ckpt, name):
    path, info = producer_ckpt(name)
    want, second = expected(info)
    layouts = {d["scale"]: d for d in scan(path).layouts}
    for e in want:
        got = layouts.get(e.scale)
        assert got is not None, f"{e.scale} not seen as a scale"
        assert got["weight"] == e.weight
        if e.block is None:
            assert got["kind"] == "tensor"
        else:
            assert tuple(got["block"]) == e.block, e.scale
        assert math.prod(got["logical_shape"]) == e.logical_count, e.scale
        assert got["padded_entries"] == e.padded, e.scale
        assert bool(got.get("swizzle")) == e.swizzled, e.scale
    for s in second:
        assert s in layouts, f"second-level scale {s} not checked"
        assert layouts[s]["role"] != "weight"


@pytest.mark.parametrize("kind", CORRUPTIONS)
@pytest.mark.parametrize("name", CLEAN)
def test_each_corruption_is_an_error(producer_ckpt, name, kind):
    path, info = producer_ckpt(name)
    tensor = corrupt(path, info, kind)
    if tensor is None:
        pytest.skip(f"{name} has no {kind.replace('-nan', '')} scales")
    found = [(f.rule, f.severity.value) for f in scan(path).findings if f.tensor == tensor]
    assert any(sev == "error" for _, sev in found), f"{kind} in {tensor}: {found}"


@pytest.mark.parametrize("name", CLEAN)
def test_fix_repairs_padding_only_and_the_producer_still_loads(fixed_exports, name):
    run = fixed_exports[name]
    assert run["before"]["ok"] and run["before"]["finite"], run["before"]
    assert (run["fix"].entries_changed > 0) == run["damaged"]
    assert run["same_bytes"]  # the producer wrote zero padding: fix puts back exactly that
    assert not scan(run["dst"]).failed(Severity.ERROR)
    assert run["after"] == run["before"]


def test_fix_never_touches_real_scales(producer_ckpt):
    path, info = producer_ckpt("torchao-mxfp4")
    tensor = corrupt(path, info, "nan")
    damaged = shard_bytes(path)
    fix(path)
    assert shard_bytes(path) == damaged
    assert any(f.tensor == tensor and f.rule == "scale-nan" for f in scan(path).findings)


def test_transformers_unaligned_fp8_export_is_caught_every_time(producer_ckpt):
    """FineGrainedFP8 on dims that are not multiples of 128 saves the FP8Linear's torch.empty
    weight_scale_inv: every such scale must be an error (the producer's own dequantisation against
    the bf16 base says which are garbage)."""
    path, info = producer_ckpt("transformers-FP8_UNALIGNED")
    garbage = {m["module"] + ".weight_scale_inv" for m in info["modules"] if not m["scale_matches_base"]}
    assert garbage  # the producer bug reproduces
    errors = {f.tensor for f in scan(path).findings if f.severity == Severity.ERROR}
    assert garbage <= errors, sorted(garbage - errors)


def test_declared_block_that_disagrees_with_the_grids_marks_nothing_fixable(producer_ckpt):
    """Config says 128x128, the scales fit 64x64 exactly: say so, never call real scales padding."""
    path, _ = producer_ckpt("transformers-FP8_BLOCK64")
    cfg_path = os.path.join(path, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["quantization_config"]["weight_block_size"] = [128, 128]
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    report = scan(path)
    assert not report.fixable
    assert "config-mismatch" in report.by_rule()
    before = shard_bytes(path)
    fix(path)
    assert shard_bytes(path) == before
