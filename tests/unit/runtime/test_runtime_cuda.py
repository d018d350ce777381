"""The in-memory checks on CUDA tensors (skipped without a GPU): the scan's findings, device named,
the original bug on device memory, DeepGEMM's strided padding, bounded extra device memory."""

from __future__ import annotations

import pytest
import torch

from fp8doctor import RuntimeLayout, check_tensors, scan
from fp8doctor.testing import synth
from tests.helpers.runtime_helpers import key, load, same_as_scan

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("builder", ["deepseek_v3", "deepseek_v4", "gpt_oss", "compressed_tensors_mxfp4",
                                     "deepseek_v4_mla"])
def test_cuda_tensors_match_scan(tmp_path, builder):
    root = str(tmp_path / builder)
    getattr(synth, builder)(root)
    synth.garble_padding(root, prefix="")
    named, config = load(root, device="cuda:0")
    checked = check_tensors(named, config=config)
    same_as_scan(scan(root), checked)
    assert {f.device for f in checked.findings if f.tensor in named} <= {"cuda:0"}


def test_the_original_bug_on_device_memory():
    junk = torch.full((1 << 16,), 0xFF, dtype=torch.uint8, device="cuda")  # memory that held garbage...
    del junk  # ...back in the caching allocator, handed out again by torch.empty below
    w = torch.ones(200, 512, device="cuda").to(torch.float8_e4m3fn)
    scale = torch.empty((4, 4), dtype=torch.float8_e8m0fnu, device="cuda")
    scale.view(torch.uint8)[2:] = 0xFF  # deterministic even if the allocator chose another block
    scale[:2] = torch.full((2, 4), 2.0 ** -8, device="cuda").to(torch.float8_e8m0fnu)
    cfg = {"quantization_config": {"weight_block_size": [128, 128]}}
    (f,) = check_tensors({"l.weight": w, "l.weight_scale": scale}, config=cfg).findings
    assert f.rule == "scale-padding-nonzero" and f.device == "cuda:0" and f.index == (2, 0) and f.count == 8
    scale[2:] = 0
    assert check_tensors({"l.weight": w, "l.weight_scale": scale}, config=cfg).findings == ()


def test_deepgemm_strided_scale_on_cuda_same_as_cpu():
    m, kb = 1000, 56
    buf = torch.randint(-2**31, 2**31 - 1, (kb, 1004), dtype=torch.int32, device="cuda").view(torch.float32)
    s = buf.t()[:m]
    s.copy_(torch.full((m, kb), 2.0 ** -7, device="cuda"))
    s[17, 3] = 0.3
    layouts = [RuntimeLayout("act.*", strided=True, deepgemm=True)]
    on_gpu = check_tensors({"act.sf": s}, layouts=layouts)
    on_cpu = check_tensors({"act.sf": buf.cpu().t()[:m]}, layouts=layouts)  # same strides, host memory
    assert [key(f) for f in on_gpu.findings] == [key(f) for f in on_cpu.findings]
    assert {"scale-padding-nonzero", "scale-deepgemm-invalid"} <= {f.rule for f in on_gpu.findings}
    assert {f.device for f in on_gpu.findings} == {"cuda:0"}


@pytest.mark.parametrize(("tensors", "rows", "cols"), [(4, 4096, 4096), (8192, 16, 56)])
def test_extra_device_memory_is_bounded(tensors, rows, cols):
    """The stated bound (runtime/cuda.py extra_bound), whether the scales are large (read in place in
    row slabs) or many and small (stacked into the staging batch): 256 MB and 29 MB of clean F32
    scales whose exponents vary, so the per-bin counts run too."""
    from fp8doctor.runtime.cuda import extra_bound

    gen = torch.Generator(device="cuda").manual_seed(0)
    named = {}
    for i in range(tensors):
        exps = torch.randint(-12, -6, (rows, cols), device="cuda", generator=gen).to(torch.float32)
        named[f"l{i}.weight_scale_inv"] = torch.exp2(exps)
        named[f"l{i}.weight"] = torch.empty((rows * 128, cols * 128), dtype=torch.float8_e4m3fn, device="meta")
    # the weights on the meta device: pairing needs their shapes, never their bytes
    del exps
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    report = check_tensors(named)
    extra = torch.cuda.max_memory_allocated() - before
    assert report.stats.scale_tensors_checked == tensors and not report.findings
    assert extra <= extra_bound(4) + (1 << 20), extra  # + per-batch summaries and allocator rounding
