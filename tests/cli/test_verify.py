"""`fp8doctor verify`: the reference forward FAILs where padding garbage reaches real outputs, at the
stage it reaches them, and PASSes after the padded ranges hold the zero-exponent fill."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fp8doctor.checkpoint.loader import open_checkpoint  # noqa: E402
from fp8doctor.layouts.model import fill_bytes  # noqa: E402
from fp8doctor.reference import attention as A  # noqa: E402
from fp8doctor.reference.cache import CacheLayout, PagedCache  # noqa: E402
from fp8doctor.reference.dequant import (  # noqa: E402
    QuantWeight,
    e2m1_table,
    e4m3_table,
    linear_exact,
    linear_quantized,
    linear_served,
    lookup,
)
from fp8doctor.reference.layer import VerifyOptions, verify  # noqa: E402
from fp8doctor.scanner import analyze  # noqa: E402
from fp8doctor.testing import synth  # noqa: E402
from tests.conftest import poke, run_cli  # noqa: E402
from tests.helpers.repo import ROOT  # noqa: E402

SMALL = VerifyOptions(tokens=8, context=40)


def layouts(root):
    with open_checkpoint(root) as ck:
        return analyze(ck).layouts


def simulated_fix(root: str) -> int:
    """What `fix` does (until it is merged): the zero fill into every trusted padded range."""
    written = 0
    for lay in layouts(root).values():
        if not lay.trusted:
            continue
        fill = fill_bytes("zero", lay.encoding)
        with open(os.path.join(root, lay.scale.file), "r+b") as f:
            for a, b in lay.padding_ranges():
                f.seek(lay.scale.offset + a * lay.itemsize)
                f.write(fill * (b - a))
                written += b - a
    return written


def torch_empty_garbage(root: str, select, seed: int = 7) -> int:
    """Leftover-memory bytes (some 0xFF = NaN) in the padded entries of the selected scales."""
    rng = np.random.default_rng(seed)
    n = 0
    for name, lay in layouts(root).items():
        if not select(name) or not lay.has_padding:
            continue
        with open(os.path.join(root, lay.scale.file), "r+b") as f:
            for a, b in lay.padding_ranges():
                if lay.itemsize == 1:
                    garbage = rng.integers(0, 256, size=b - a, dtype=np.uint8)
                    garbage[::7] = 0xFF
                else:  # F32 scales: arbitrary bit patterns, every 7th a NaN
                    garbage = rng.integers(0, 2**32, size=b - a, dtype=np.uint32)
                    garbage[::7] = 0x7FC00000
                f.seek(lay.scale.offset + a * lay.itemsize)
                f.write(garbage.tobytes())
                n += b - a
    return n


@pytest.fixture(scope="module")
def v32_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("v32") / "ck")
    synth.deepseek_v32_mla(d)
    return d


@pytest.fixture(scope="module")
def v4_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("v4") / "ck")
    synth.deepseek_v4_mla(d)
    return d


@pytest.fixture
def v4_copy(v4_dir, tmp_path):
    import shutil
    d = str(tmp_path / "ck")
    shutil.copytree(v4_dir, d)
    return d


@pytest.fixture
def v32_copy(v32_dir, tmp_path):
    import shutil
    d = str(tmp_path / "ck")
    shutil.copytree(v32_dir, d)
    return d


def stage(result, name):
    return next(s for s in result.stages if s.name == name)


# -- clean checkpoints, cache init ---------------------------------------------------------------


@pytest.mark.parametrize("which", ["v32_dir", "v4_dir"])
def test_clean_checkpoint_passes_and_covers_every_quantized_tensor(which, request):
    root = request.getfixturevalue(which)
    res = verify(root, SMALL)
    assert res.passed, [(s.name, s.max_rel, s.nonfinite) for s in res.stages]
    covered = {t for s in res.stages for t in s.tensors}
    with open_checkpoint(root) as ck:
        quantized = {lay.weight.name for lay in analyze(ck).layouts.values() if lay.weight}
    assert quantized <= covered  # every quantized tensor of the layer ran in some stage
    assert stage(res, "attention").max_rel > 0  # the FP8 cache rounding is really there


@pytest.mark.parametrize("which", ["v32_dir", "v4_dir"])
def test_cache_init_empty_leaks_through_clamped_minus_one(which, request):
    root = request.getfixturevalue(which)
    res = verify(root, VerifyOptions(tokens=8, context=40, cache_init="empty"))
    assert not res.passed
    first = res.first_failure
    assert first is not None and first.name == "attention" and first.nonfinite > 0
    assert stage(res, "layer").nonfinite > 0


# -- garbage padding: where it is observable, at which stage; fix makes it pass ----------------------


def test_v4_nan_in_k_padding_fails_at_that_gemm_and_fix_passes(v4_copy):
    # wq_b [640, 192]: grid [5, 2] padded to [8, 4]; column 2 covers K 256..383, past the real K
    poke(v4_copy, "layers.0.attn.wq_b.scale", 0 * 4 + 2, b"\xff")
    res = verify(v4_copy, SMALL)
    assert res.first_failure.name == "wq_b" and res.first_failure.nonfinite > 0
    assert stage(res, "wq_a").passed and not stage(res, "layer").passed
    assert simulated_fix(v4_copy) > 0
    assert verify(v4_copy, SMALL).passed


def test_v4_garbage_in_n_padding_is_not_observable(v4_copy):
    # rows 5..7 of the grid cover output rows 640..1023 that no kernel keeps
    poke(v4_copy, "layers.0.attn.wq_b.scale", 5 * 4 + 0, b"\xff\xf0")
    assert verify(v4_copy, SMALL).passed


def test_v4_moe_padded_intermediate_garbage_fails_at_experts(v4_copy):
    torch_empty_garbage(v4_copy, lambda n: ".experts.1.w1." in n)
    res = verify(v4_copy, SMALL)
    first = res.first_failure
    assert first.name == "experts" and first.nonfinite > 0 and "ffn.experts.1" in first.detail
    assert all(stage(res, n).passed for n in ("wq_a", "wq_b", "wkv", "attention", "wo_a", "wo_b"))
    simulated_fix(v4_copy)
    assert verify(v4_copy, SMALL).passed


def test_v4_finite_garbage_gives_large_error_when_padded_channels_meet_padded_groups(tmp_path):
    # intermediate 80 stored as 128: w2's 4th scale group (K 96..127) is padding, fed by padded channels.
    # The stored codes there are 0 (2^65 x 0 = 0): harmless as stored; arbitrary codes (--worst-case) are not.
    d = str(tmp_path / "ck")
    synth.deepseek_v4_mla(d, moe_inter_stored=128, experts=2)
    for lay in layouts(d).values():
        if ".experts.0." in lay.scale.name:
            with open(os.path.join(d, lay.scale.file), "r+b") as f:
                for a, b in lay.padding_ranges():
                    f.seek(lay.scale.offset + a)
                    f.write(b"\xc0" * (b - a))  # 2^65: finite, what a stale buffer may hold
    assert verify(d, SMALL).passed
    res = verify(d, VerifyOptions(tokens=8, context=40, worst_case=True))
    first = res.first_failure
    assert first.name == "experts" and first.nonfinite == 0 and first.max_rel > 1.0
    simulated_fix(d)
    assert verify(d, VerifyOptions(tokens=8, context=40, worst_case=True)).passed


def test_v32_f32_nan_padding_fails_at_o_proj_and_fix_passes(v32_copy):
    name = "model.layers.0.self_attn.o_proj.weight_scale_inv"  # [320, 144]: grid [3, 2] stored [4, 4]
    poke(v32_copy, name, (0 * 4 + 3) * 4, np.array([np.nan], dtype="<f4").tobytes())
    res = verify(v32_copy, SMALL)
    assert res.first_failure.name == "o_proj" and res.first_failure.nonfinite > 0
    assert stage(res, "attention").passed
    simulated_fix(v32_copy)
    assert verify(v32_copy, SMALL).passed


def test_v32_indexer_garbage_is_located_at_the_indexer(v32_copy):
    torch_empty_garbage(v32_copy, lambda n: "indexer.wk" in n)
    res = verify(v32_copy, SMALL)
    assert res.first_failure.name == "indexer.wk"


def test_unmodelled_quantized_tensor_is_probed_not_skipped(tmp_path):
    d = str(tmp_path / "ck")
    b = synth.deepseek_v4_mla(d)
    with open(os.path.join(d, "config.json")) as f:
        config = json.load(f)
    w = b.rng.standard_normal((200, 320)) / 18
    synth._fp8_block_linear(b, "layers.0.attn.compressor.wkv", w, "F8_E8M0", 4)
    os.remove(os.path.join(d, "model.safetensors"))
    b.write(d, 1, config)
    res = verify(d, SMALL)
    probe = stage(res, "probe attn.compressor.wkv.weight")
    assert probe.passed and any("compressor.wkv" in a for a in res.assumptions)
    poke(d, "layers.0.attn.compressor.wkv.scale", 3, b"\xff")  # K padding of the probe
    assert verify(d, SMALL).first_failure.name == "probe attn.compressor.wkv.weight"


# -- the math, against independent implementations ---------------------------------------------------


def dense_masked_attention(q, kv, mask, sm_scale, d_v, sink):
    """Plain dense attention over all L keys with an explicit boolean mask [T, L]."""
    s = torch.einsum("thd,ld->thl", q, kv) * sm_scale
    s = s.masked_fill(~mask.unsqueeze(1), float("-inf"))
    if sink is not None:  # the sink is one more logit whose value row is zero
        s = torch.cat([s, sink.view(1, -1, 1).expand(s.shape[0], -1, 1)], -1)
        v = torch.cat([kv[:, :d_v], torch.zeros(1, d_v)], 0)
    else:
        v = kv[:, :d_v]
    return torch.softmax(s, -1) @ v


@pytest.mark.parametrize("with_sink", [False, True])
def test_exact_sparse_attention_equals_dense_with_explicit_mask(with_sink):
    g = torch.Generator().manual_seed(3)
    T, H, L, D, dv = 5, 3, 30, 24, 16
    q, kv = torch.randn(T, H, D, generator=g), torch.randn(L, D, generator=g)
    q_pos = torch.arange(L - T, L)
    topk = torch.stack([torch.randperm(L - T - 3, generator=g)[:6] for _ in range(T)])  # outside the windows
    topk[0, :2] = -1
    win = A.window(q_pos, 4)
    idx = A.candidates([torch.where(topk > q_pos.unsqueeze(-1), torch.full_like(topk, -1), topk), win])
    assert idx.shape[1] % A.B_TOPK == 0
    mask = torch.zeros(T, L, dtype=torch.bool)
    for t in range(T):
        for j in idx[t].tolist():
            if 0 <= j <= q_pos[t]:
                mask[t, j] = True
    sink = torch.randn(H, generator=g) if with_sink else None
    # candidates are distinct here, so the mask is exactly the candidate set
    assert all(sum(1 for x in idx[t].tolist() if x >= 0) == int(mask[t].sum()) for t in range(T))
    got = A.sparse_attention_exact(q, kv, idx, q_pos, 0.2, dv, sink)
    want = dense_masked_attention(q, kv, mask, 0.2, dv, sink)
    assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("kind", ["v32", "model1"])
def test_served_attention_matches_exact_when_the_cache_is_lossless(kind):
    """Latents whose tiles quantize exactly: the paged cache, clamp and additive mask add no error."""
    g = torch.Generator().manual_seed(5)
    d_nope, d_rope, L, T, H = 192, 16, 70, 6, 2
    nope = torch.tensor([0.0, 0.5, -1.0, 1.5])[torch.randint(0, 4, (L, d_nope), generator=g)]
    nope[:, ::64] = 1.75  # every tile's amax = 448 * 2^-8: scale exactly 2^-8
    rope = torch.randint(-8, 8, (L, d_rope), generator=g).float() / 4
    kv = torch.cat([nope, rope], -1)
    layout = CacheLayout(kind, d_nope, d_rope)
    cache = PagedCache(layout, L, "zero", torch.Generator().manual_seed(0), torch.device("cpu"))
    cache.write(kv)
    assert torch.equal(cache.gather(cache.slots(torch.arange(L))), kv)
    q_pos = torch.arange(L - T, L)
    idx = A.candidates([A.window(q_pos, 80)])  # windows reach before 0: -1 slots present
    q = torch.randn(T, H, d_nope + d_rope, generator=g) / 8
    sink = torch.randn(H, generator=g)
    got = A.sparse_attention_served(q, cache, idx, q_pos, L, 0.1, d_nope, sink)
    want = A.sparse_attention_exact(q, kv, idx, q_pos, 0.1, d_nope, sink)
    assert torch.allclose(got, want, atol=1e-5)
    # the same cache with arbitrary bytes in page 0 (the null page a clamped -1 reads): NaN leaks
    dirty = PagedCache(layout, L, "empty", torch.Generator().manual_seed(0), torch.device("cpu"))
    dirty.write(kv)
    assert not torch.isfinite(A.sparse_attention_served(q, dirty, idx, q_pos, L, 0.1, d_nope, sink)).all()


def test_decoders_match_torch_and_ocp_tables():
    codes = torch.arange(256, dtype=torch.uint8)
    native = codes.view(torch.float8_e4m3fn).float()
    ours = lookup(e4m3_table(), codes)
    assert torch.equal(torch.isnan(ours), torch.isnan(native))
    assert torch.equal(ours[~torch.isnan(ours)], native[~torch.isnan(native)])
    assert e2m1_table().tolist()[:8] == [0, 0.5, 1, 1.5, 2, 3, 4, 6]


def test_served_gemm_equals_exact_for_clean_padding_and_nan_scale_reaches_only_kept_outputs():
    g = torch.Generator().manual_seed(1)
    n, k = 200, 300
    codes = torch.randint(0, 0x7E, (n, k), generator=g, dtype=torch.uint8)
    scales = torch.zeros(4, 4)
    scales[:2, :3] = 2.0 ** torch.randint(-8, -4, (2, 3), generator=g).float()
    scales[2:, :] = 2.0 ** -127
    scales[:, 3:] = 2.0 ** -127
    w = QuantWeight("w", codes, "e4m3", scales, (128, 128), (n, k), (2, 3))
    x = torch.randn(5, k, generator=g)
    assert torch.allclose(linear_served(x, w, g, quantize=False), linear_exact(x, w), rtol=1e-5, atol=1e-4)
    # with the activations quantized, served equals the quantized reference (no padding read) to f32 order
    assert torch.allclose(linear_served(x, w, g), linear_quantized(x, w, False), rtol=1e-5, atol=1e-4)
    w2 = QuantWeight("w", codes, "e4m3", scales.clone(), (128, 128), (n, k), (2, 3))
    w2.scales[0, 3] = float("nan")  # K padding of output rows 0..127
    out = linear_served(x, w2, g)
    assert torch.isnan(out[:, :128]).all() and torch.isfinite(out[:, 128:]).all()
    # a kernel that reads only the blocks the weight's shape implies never sees that column
    assert torch.isfinite(linear_served(x, w2, g, rule="shape")).all()


# -- the command line -------------------------------------------------------------------------------


def test_cli_app_does_not_import_torch():
    code = "import sys, fp8doctor.cli.app; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], env={**os.environ}).returncode == 0


def test_cli_verify_exit_codes_and_json(v4_copy):
    from typer.testing import CliRunner

    from fp8doctor.cli.app import app
    r = CliRunner().invoke(app, ["verify", v4_copy, "--tokens", "8", "--context", "40", "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["passed"] is True and doc["first_failure"] is None and doc["architecture"] == "deepseek_v4"
    assert [s["name"] for s in doc["stages"]][-1] == "layer"
    poke(v4_copy, "layers.0.attn.wq_b.scale", 2, b"\xff")
    r = CliRunner().invoke(app, ["verify", v4_copy, "--tokens", "8", "--context", "40", "--no-color"])
    assert r.exit_code == 1 and "FAIL at stage wq_b" in r.output


def test_cli_verify_errors_are_one_line_exit_2(tmp_path):
    d = str(tmp_path / "old")
    synth.deepseek_v3(d)  # dims not MLA-consistent: cannot be run, said so
    r = run_cli("verify", d)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not MLA-consistent" in r.stderr
    from typer.testing import CliRunner

    from fp8doctor.cli.app import app
    assert CliRunner().invoke(app, ["verify", str(tmp_path / "missing")]).exit_code == 2
    r = CliRunner().invoke(app, ["verify", d, "--layer", "9"])
    assert r.exit_code == 2 and "layer 9" in r.output


def test_cli_without_torch_names_the_extra(tmp_path, v4_dir):
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no torch here')\n")
    repo = ROOT
    r = run_cli("verify", v4_dir, env={"PYTHONPATH": f"{tmp_path / 'fake'}{os.pathsep}{repo}"})
    assert r.returncode == 2 and "pip install 'fp8doctor[verify]'" in r.stderr


def test_typer_runner_verify(v4_dir):
    from typer.testing import CliRunner

    from fp8doctor.cli.app import app
    r = CliRunner().invoke(app, ["verify", v4_dir, "--tokens", "8", "--context", "40", "-q", "--no-color"])
    assert r.exit_code == 0 and "PASS" in r.output
