"""check_tensors on CPU: the original bug (torch.empty padded E8M0 scales), DeepGEMM's TMA-aligned
F32 scales, runtime layouts, numpy without torch, and the device path run on CPU tensors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import fp8doctor
from fp8doctor import RuntimeLayout, check_tensors, scan
from fp8doctor.findings import Finding, Region
from fp8doctor.runtime import cuda as cuda_path
from fp8doctor.runtime.tensors import MemTensor, UnsupportedTensor, strided_extent
from fp8doctor.testing import synth
from tests.conftest import poke
from tests.helpers.repo import repo_path
from tests.helpers.runtime_helpers import key, load, same_as_scan

N, K = 200, 512  # an FP8 weight whose scale grid (2 x 4 blocks of 128) is stored padded to 4 x 4


def _garbage_then_empty(shape, dtype) -> torch.Tensor:
    """torch.empty over memory that held garbage, deterministically: fill the padding through a uint8
    view (what a reused allocator block leaves)."""
    t = torch.empty(shape, dtype=dtype)
    raw = t.view(torch.uint8)
    raw.copy_(torch.from_numpy(np.random.default_rng(5).integers(1, 255, raw.shape, dtype=np.uint8)))
    return t


def _e8m0_model() -> dict[str, torch.Tensor]:
    w = torch.randn(N, K).clamp(-4, 4).to(torch.float8_e4m3fn)
    scale = _garbage_then_empty((4, 4), torch.float8_e8m0fnu)
    scale[:2, :4] = torch.full((2, 4), 2.0 ** -8).to(torch.float8_e8m0fnu)  # the real box: 0x77
    return {"layer.weight": w, "layer.weight_scale": scale}


def test_the_original_bug_before_and_after_zeroing():
    named = _e8m0_model()
    before = check_tensors(named, config={"quantization_config": {"weight_block_size": [128, 128]}})
    (f,) = before.findings
    assert f.rule == "scale-padding-nonzero" and f.region is Region.PADDING
    assert f.tensor == "layer.weight_scale" and f.device == "cpu" and f.index == (2, 0)
    assert f.file is None and f.byte_offset is None and f.count == 8
    named["layer.weight_scale"][2:] = 0
    assert check_tensors(named, config={"quantization_config": {"weight_block_size": [128, 128]}}).findings == ()


def test_padding_located_from_the_weight_when_no_config():
    named = _e8m0_model()
    report = check_tensors(named)  # block inferred from shapes (padded grid: one candidate fits)
    assert any(f.rule == "scale-padding-nonzero" for f in report.findings)


def _deepgemm_scale(m: int, kb: int, garbage: bool) -> torch.Tensor:
    """DeepGEMM's TMA-aligned MN-major F32 scale: an [m, kb] view, strides (1, align(m, 4))."""
    aligned = -(-m // 4) * 4
    buf = torch.empty((kb, aligned), dtype=torch.float32)
    buf.view(torch.int32).copy_(torch.from_numpy(np.random.default_rng(1).integers(
        -2**31, 2**31 - 1, (kb, aligned), dtype=np.int64).astype(np.int32)) if garbage else torch.zeros(
        kb, aligned, dtype=torch.int32))
    view = buf.t()[:m]
    view.copy_(torch.full((m, kb), 2.0 ** -7))
    return view


def test_deepgemm_tma_aligned_padding_is_in_the_strides():
    s = _deepgemm_scale(130, 3, garbage=True)
    assert s.shape == (130, 3) and s.stride() == (1, 132)
    assert check_tensors({"act.scale_inv": s}).findings == ()  # the view alone looks fine...
    layouts = [RuntimeLayout("act.scale_inv", strided=True, deepgemm=True)]
    report = check_tensors({"act.scale_inv": s}, layouts=layouts)
    rules = {f.rule: f for f in report.findings}
    pad = rules["scale-padding-nonzero"]
    assert pad.index == (130, 0) and pad.count == 6 and pad.device == "cpu"  # rows 130, 131 of 3 columns
    dg = rules["scale-deepgemm-invalid"]
    assert dg.region is Region.PADDING and dg.index == (130, 0) and dg.count == 6
    assert "0x807fffff" in dg.message
    s.t().contiguous()  # unchanged
    base = s.as_strided((132, 3), (1, 132))
    base[130:] = 0
    assert check_tensors({"act.scale_inv": s}, layouts=layouts).findings == ()


def test_deepgemm_check_flags_real_entries_that_are_not_powers_of_two():
    s = _deepgemm_scale(8, 2, garbage=False)
    s[3, 1] = 0.3
    report = check_tensors({"act.scale_inv": s}, layouts=[RuntimeLayout("act.*", strided=True, deepgemm=True)])
    (dg,) = [f for f in report.findings if f.rule == "scale-deepgemm-invalid"]
    assert dg.region is Region.LOGICAL and dg.index == (3, 1) and dg.count == 1
    assert "0x3E99999A" in dg.message


def test_runtime_layout_pairs_a_scale_no_convention_knows():
    w = torch.zeros(N, K, dtype=torch.float8_e4m3fn)
    w[0, 0] = 1.0
    sf = torch.zeros(4, 4, dtype=torch.float8_e8m0fnu)
    sf[:2, :4] = torch.full((2, 4), 1.0).to(torch.float8_e8m0fnu)
    sf.view(torch.uint8)[3, 3] = 0xFF
    named = {"gemm.w": w, "gemm.sf": sf}
    plain = check_tensors(named)
    assert {f.rule for f in plain.findings} == {"scale-orphan", "scale-nan", "scale-zero"}  # padding unknown
    report = check_tensors(named, layouts=[RuntimeLayout("gemm.sf", weight="gemm.w", block=(128, 128))])
    (f,) = report.findings
    assert f.rule == "scale-padding-nonzero" and f.index == (3, 3) and "0xFF (NaN) x1" in f.message


def test_runtime_layout_with_an_unknown_weight_is_a_finding():
    sf = torch.ones(4, 4, dtype=torch.float8_e8m0fnu)
    report = check_tensors({"gemm.sf": sf}, layouts=[RuntimeLayout("gemm.sf", weight="nope", block=(128, 128))])
    assert [f.rule for f in report.findings] == ["layout-unknown"]


def test_runtime_layout_validates_its_fields():
    with pytest.raises(ValueError, match="block or group"):
        RuntimeLayout("x", block=(1, 32), group=32)
    with pytest.raises(ValueError, match="positive"):
        RuntimeLayout("x", logical_shape=(0, 2))


def test_strided_extent():
    assert strided_extent((130, 3), (1, 132)) == (132, 3)
    assert strided_extent((4, 4), (4, 1)) is None  # contiguous: nothing beyond the view
    assert strided_extent((4, 4), (0, 1)) is None  # a broadcast
    assert strided_extent((2, 3, 4), (16, 4, 1)) == (2, 4, 4)


def test_numpy_arrays_without_torch(tmp_path):
    """A subprocess that never imports torch: numpy arrays of a gpt-oss checkpoint, same as scan."""
    root = str(tmp_path / "ct")
    synth.compressed_tensors_mxfp4(root)
    named, _ = load(root)
    poke(root, next(n for n in named if n.endswith(".weight_scale")), 5, b"\xff\x00")  # a NaN, a zero
    code = f"""
import json, sys, os
import numpy as np
from fp8doctor.checkpoint.loader import open_checkpoint
import fp8doctor
root = {root!r}
named = {{}}
with open_checkpoint(root) as ck:
    for name, t in ck.tensors.items():
        dt = {{"U8": np.uint8, "F32": np.float32, "I8": np.int8, "F16": np.float16}}.get(t.dtype)
        if dt is not None:
            named[name] = np.frombuffer(ck.read(t, 0, t.nbytes), dtype=dt).reshape(t.shape)
report = fp8doctor.check_tensors(named, config=json.load(open(os.path.join(root, "config.json"))))
assert "torch" not in sys.modules, "torch imported"
print(json.dumps([[f.rule, f.tensor, f.message, f.count, list(f.index or ()), f.device] for f in report.findings]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    want = [[f.rule, f.tensor, f.message, f.count, list(f.index or ()), "cpu"] for f in scan(root).findings]
    assert got == want and got


def test_numpy_scalars_and_unsupported_objects():
    report = check_tensors({"x.scale": np.array(0.5, dtype=np.float32), "y": np.zeros(3, dtype=np.int64)})
    assert report.stats.tensors == 2
    with pytest.raises(UnsupportedTensor, match="neither a torch tensor nor a numpy array"):
        check_tensors({"x.scale": [1, 2, 3]})


def test_findings_json_carries_the_device():
    f = Finding("scale-nan", fp8doctor.Severity.ERROR, None, "t", "m", Region.LOGICAL, index=(1,), device="cuda:1")
    d = f.to_dict()
    assert d["device"] == "cuda:1" and d["file"] is None and d["byte_offset"] is None
    assert Finding.from_dict(d) == f


def test_config_from_a_path_and_from_a_transformers_like_object(v3):
    named, config = load(v3)
    from_path = check_tensors(named, config=v3)
    from_file = check_tensors(named, config=v3 + "/config.json")

    class Cfg:
        def to_dict(self):
            return config

    from_obj = check_tensors(named, config=Cfg())
    assert [key(f) for f in from_path.findings] == [key(f) for f in from_file.findings] == [
        key(f) for f in from_obj.findings]
    assert any(lay["source"] == "config" for lay in from_obj.layouts)
    bad = check_tensors(named, config=str(v3) + "/missing.json")
    assert [f.rule for f in bad.findings] == ["config-invalid"]


# -- the device path (runtime/cuda.py) on CPU tensors: same outcome as the host path -----------------


@pytest.fixture
def device_path(monkeypatch):
    """Route CPU tensors through the device tally, in tiny chunks (many batches, split tensors)."""
    monkeypatch.setattr(MemTensor, "on_cuda", property(lambda self: True))
    monkeypatch.setattr(cuda_path, "STAGE_BYTES", 37)
    monkeypatch.setattr(cuda_path, "MAX_TENSORS", 3)


@pytest.mark.parametrize("builder", ["deepseek_v3", "deepseek_v4", "gpt_oss", "compressed_tensors_mxfp4"])
def test_device_path_matches_scan(tmp_path, device_path, builder):
    root = str(tmp_path / builder)
    getattr(synth, builder)(root)
    synth.garble_padding(root, prefix="")
    named, config = load(root)
    same_as_scan(scan(root), check_tensors(named, config=config))


def test_device_path_matches_host_with_ue8m0_mantissas_and_uninitialized(tmp_path, monkeypatch):
    root = str(tmp_path / "v3")
    synth.deepseek_v3(root, ue8m0=True)
    named, config = load(root)
    name = next(n for n in named if n.endswith("weight_scale_inv"))
    named[name].view(-1)[1] = 0.3  # not a power of two in a ue8m0 checkpoint: a warning
    named["extra.weight"] = torch.ones(1024, 1024).to(torch.float8_e4m3fn)
    named["extra.weight_scale_inv"] = torch.randint(-2**31, 2**31 - 1, (8, 8), dtype=torch.int32,
                                                    generator=torch.Generator().manual_seed(0)).view(torch.float32)
    host = check_tensors(named, config=config)
    assert {"scale-not-power-of-two", "scale-uninitialized"} <= {f.rule for f in host.findings}
    device_path.__wrapped__(monkeypatch)
    dev = check_tensors(named, config=config)
    assert [key(f) for f in dev.findings] == [key(f) for f in host.findings]


def test_device_path_deepgemm(device_path):
    s = _deepgemm_scale(130, 3, garbage=True)
    report = check_tensors({"act.scale_inv": s}, layouts=[RuntimeLayout("act.*", strided=True, deepgemm=True)])
    assert {(f.rule, f.index, f.count) for f in report.findings} == {
        ("scale-padding-nonzero", (130, 0), 6), ("scale-deepgemm-invalid", (130, 0), 6)}


@pytest.mark.parametrize(("chunk", "window"), [(50, 16), (1 << 20, 16), (50, 1), (1 << 20, 2)])
def test_device_outcomes_equal_host_tally(tmp_path, monkeypatch, chunk, window):
    """What the device decides is the host Tally's verdict, tensor by tensor (split or batched)."""
    from fp8doctor.rules.content import ContentOptions
    from fp8doctor.rules.judge import tally_for
    from fp8doctor.runtime.layout import build_layouts
    from fp8doctor.runtime.tensors import wrap

    monkeypatch.setattr(cuda_path, "STAGE_BYTES", chunk)
    monkeypatch.setattr(cuda_path, "WINDOW", window)  # 1 and 2: the own-bincount path for wide spans
    root = str(tmp_path / "v4")
    synth.deepseek_v4(root)
    synth.garble_padding(root, prefix="layers.1.")
    named, config = load(root)
    named["layers.0.attn.wq_a.scale"].view(torch.uint8)[0, 0] = 0xFE  # an outlier: unsure
    tensors = {n: wrap(n, t) for n, t in named.items()}
    from fp8doctor.checkpoint.config import parse_config

    mem = build_layouts(tensors, parse_config(config)[0], ())
    content = ContentOptions(ue8m0=True)
    items = [(tensors[lay.scale.name], lay, lay.scale, False) for lay in mem.pairing.layouts]
    dev = cuda_path.device_tallies(items, content)
    outcomes = set()
    for mt, lay, info, _ in items:
        host = tally_for(lay, info, content)
        host.add(mt.all_bytes(), 0)
        ok, median = host.verdict(content.outlier_span, 24)
        got = dev[info.name]
        assert got.judged and got.median == (median if ok else None) and got.pad_bad == host.pad_bad, info.name
        outcomes.add((ok, bool(host.pad_bad)))
    assert {(True, False), (True, True), (False, False)} <= outcomes


def test_the_runtime_example_runs():

    script = repo_path("examples", "runtime_check.py")
    out = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ran as intended" in out.stdout and "0x00 0x00 0x00 0x00" in out.stdout
    assert "scale-padding-nonzero" in out.stdout and "scale-deepgemm-invalid" in out.stdout
