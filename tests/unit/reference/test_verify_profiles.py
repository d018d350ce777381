"""`fp8doctor verify` judged against the kernels that serve the model (issue 18): what poisons a
layer FAILs (or cannot be verified), what no real kernel reads PASSes, per kernel profile."""

from __future__ import annotations

import json
import os

import pytest

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from fp8doctor.checkpoint.loader import open_checkpoint  # noqa: E402
from fp8doctor.cli.app import app  # noqa: E402
from fp8doctor.reference.dequant import QuantWeight, linear_exact, linear_served  # noqa: E402
from fp8doctor.reference.layer import VerifyOptions, verify  # noqa: E402
from fp8doctor.reference.profiles import PROFILES  # noqa: E402
from fp8doctor.scanner import analyze  # noqa: E402
from fp8doctor.testing import synth  # noqa: E402
from tests.cli import test_verify as _tv  # noqa: E402
from tests.conftest import poke  # noqa: E402

SMALL = VerifyOptions(tokens=8, context=40)
LOADERS = ("deepseek-ref", "flashmla", "gather-slot0", "tiled-padded")  # profiles that load a padded grid
REFUSERS = ("deepgemm", "vllm-triton")


def verdicts(res) -> dict[str, str]:
    return {p.name: p.verdict for p in res.profiles}


def fill_padding(root: str, select, byte: bytes) -> int:
    """Every padded entry of the selected (single-byte) scales set to `byte`."""
    with open_checkpoint(root) as ck:
        lays = analyze(ck).layouts
    n = 0
    for name, lay in lays.items():
        if not select(name) or not lay.has_padding:
            continue
        assert lay.itemsize == 1
        with open(os.path.join(root, lay.scale.file), "r+b") as f:
            for a, b in lay.padding_ranges():
                f.seek(lay.scale.offset + a)
                f.write(byte * (b - a))
                n += b - a
    return n


v4_dir, v4_copy = _tv.v4_dir, _tv.v4_copy  # the fixtures of test_verify: one V4 layer, copied per test


@pytest.fixture
def v4(v4_copy):
    return v4_copy


# -- what poisons a layer: never PASS ----------------------------------------------------------------


def test_nan_in_a_real_scale_entry_cannot_be_verified_under_any_profile(v4):
    poke(v4, "layers.0.attn.wq_a.scale", 0, b"\xff")  # entry [0, 0]: real, not padding
    res = verify(v4, SMALL)
    assert not res.passed and res.verdict == "cannot verify"
    assert all(v in ("cannot verify", "refuses") for v in verdicts(res).values())
    first = res.first_failure
    assert first.name == "wq_a" and first.verdict == "cannot verify" and first.exact_nonfinite > 0
    assert "layers.0.attn.wq_a.scale[0, 0]" in first.cause and "real scale entry" in first.cause
    # downstream stages say where it came from instead of blaming their own tensors
    wq_b = next(s for s in res.stages if s.name == "wq_b")
    assert wq_b.verdict == "cannot verify" and "stage wq_a" in wq_b.cause
    r = CliRunner().invoke(app, ["verify", v4, "--tokens", "8", "--context", "40", "--no-color"])
    assert r.exit_code == 1 and "cannot verify" in r.output and "wq_a.scale[0, 0]" in r.output
    assert "max abs 0" not in r.output


def test_huge_real_scale_that_overflows_cannot_be_verified(v4):
    poke(v4, "layers.0.attn.wo_b.scale", 0, b"\xfe")  # 2^127 in a real entry: code x scale = inf
    res = verify(v4, SMALL)
    first = res.first_failure
    assert first is not None and first.name == "wo_b" and first.verdict == "cannot verify"
    assert "2^127" in first.cause and "overflows" in first.cause
    assert not res.passed and all(not p.passed for p in res.profiles)


def test_scale_that_overflows_only_with_the_activation_scale_is_seen():
    # one real K block: codes 2^-9 (smallest subnormal), scale 2^127: the exact dequantized weight is
    # 2^118 and x . w = 900 * 2^118 < FLT_MAX, but Scale_C = a_s * b_s = (900 / 448) * 2^127 = inf
    codes = torch.zeros(1, 128, dtype=torch.uint8)
    codes[0, 0] = 0x01
    w = QuantWeight("w", codes, "e4m3", torch.tensor([[2.0 ** 127]]), (128, 128), (1, 128), (1, 1))
    x = torch.zeros(1, 128)
    x[0, 0] = 900.0
    assert torch.isfinite(linear_exact(x, w)).all()
    assert not torch.isfinite(linear_served(x, w, torch.Generator(), rule="shape")).all()
    assert torch.isfinite(linear_served(x, w, torch.Generator(), rule="shape", quantize=False)).all()


# -- what real kernels never read: PASS under the stored-bytes default ----------------------------------


def test_nan_only_in_n_padding_rows_passes(v4):
    poke(v4, "layers.0.attn.wq_b.scale", 5 * 4 + 0, b"\xff\xff\xff\xff")  # row 5 of the grid: past N
    res = verify(v4, SMALL)
    assert res.passed, [(s.name, s.verdict) for s in res.stages]
    assert all(verdicts(res)[n] == "PASS" for n in LOADERS)


def test_2_127_in_every_attention_padding_entry_passes(v4):
    assert fill_padding(v4, lambda n: ".attn." in n, b"\xfe") > 0
    res = verify(v4, SMALL)
    assert res.passed and all(verdicts(res)[n] == "PASS" for n in LOADERS)


def test_2_127_over_zero_padded_codes_passes_nan_there_fails(v4):
    sel = lambda n: ".experts.1.w1." in n or ".experts.1.w3." in n  # noqa: E731  padded-channel rows 80..95
    assert fill_padding(v4, sel, b"\xfe") > 0
    assert verify(v4, SMALL).passed  # 2^127 x 0 = 0: the stored codes there are zero
    res = verify(v4, VerifyOptions(tokens=8, context=40, worst_case=True))
    assert not res.passed and res.first_failure.name == "experts"  # arbitrary codes: not neutralised
    fill_padding(v4, sel, b"\xff")
    res = verify(v4, SMALL)  # NaN x 0 = NaN: every kernel runs the stored intermediate
    assert res.first_failure.name == "experts" and res.first_failure.nonfinite > 0
    assert all(verdicts(res)[n] == "FAIL" for n in LOADERS)
    assert "ffn.experts.1" in res.first_failure.detail


def test_nan_in_k_padding_columns_fails_only_under_tiled_padded(v4):
    poke(v4, "layers.0.attn.wq_b.scale", 0 * 4 + 2, b"\xff")  # column 2: K 256..383, past K = 192
    res = verify(v4, SMALL)
    v = verdicts(res)
    assert v["tiled-padded"] == "FAIL" and all(v[n] == "PASS" for n in ("deepseek-ref", "flashmla", "gather-slot0"))
    assert all(v[n] == "refuses" for n in REFUSERS)
    assert res.verdict == "FAIL" and res.reported == "tiled-padded" and res.first_failure.name == "wq_b"
    assert verify(v4, VerifyOptions(tokens=8, context=40, kernel="deepseek-ref")).passed


def test_padded_grid_is_refused_by_deepgemm_and_vllm_not_failed(v4):
    for name in REFUSERS:
        res = verify(v4, VerifyOptions(tokens=8, context=40, kernel=name))
        assert res.verdict == "refuses" and not res.passed and res.stages == ()
        assert any("scale grid [4, 4]" in r for r in res.profiles[0].refused)
    r = CliRunner().invoke(app, ["verify", v4, "--tokens", "8", "--context", "40", "--kernel", "deepgemm",
                                 "--no-color"])
    assert r.exit_code == 1 and "would refuse to load" in r.output
    r = CliRunner().invoke(app, ["verify", v4, "--tokens", "8", "--context", "40", "--no-color"])
    assert r.exit_code == 0 and "would refuse to load" in r.output  # shown, not a numerical failure


# -- the runtime pool: --cache-init empty ---------------------------------------------------------------


def test_cache_init_empty_fails_only_slot0_profiles_worded_as_the_runtime_pool(v4):
    res = verify(v4, VerifyOptions(tokens=8, context=40, cache_init="empty"))
    v = verdicts(res)
    slot0 = [n for n, p in PROFILES.items() if p.reads_slot0]
    assert slot0 and all(v[n] == "FAIL" for n in slot0)
    assert all(v[n] == "PASS" for n in ("deepseek-ref", "flashmla"))
    first = res.first_failure
    assert first.name == "attention" and first.tensors == () and "runtime KV pool" in first.cause
    assert "not a checkpoint defect" in first.cause
    r = CliRunner().invoke(app, ["verify", v4, "--tokens", "8", "--context", "40", "--cache-init", "empty",
                                 "--no-color", "-q"])
    assert r.exit_code == 1 and "uninitialised runtime KV pool" in r.output and "not a checkpoint defect" in r.output
    assert "tensors:" not in r.output
    r = CliRunner().invoke(app, ["verify", v4, "--tokens", "8", "--context", "40", "--cache-init", "empty",
                                 "--kernel", "flashmla", "-q"])
    assert r.exit_code == 0


def test_all_nan_stage_shows_no_max_abs_zero(v4):
    res = verify(v4, VerifyOptions(tokens=8, context=40, cache_init="empty", kernel="gather-slot0"))
    att = next(s for s in res.stages if s.name == "attention")
    assert att.nonfinite == att.numel > 0 and att.max_abs != att.max_abs  # nan: nothing finite to measure
    r = CliRunner().invoke(app, ["verify", v4, "--tokens", "8", "--context", "40", "--cache-init", "empty",
                                 "--kernel", "gather-slot0", "--format", "json"])
    doc = json.loads(r.stdout)
    stage = next(s for s in doc["stages"] if s["name"] == "attention")
    assert stage["max_abs"] == "nan" and stage["compared"] > 0 and stage["verdict"] == "FAIL"


# -- the JSON contract: fields added, none renamed ---------------------------------------------------


def test_json_keeps_old_fields_and_adds_profiles(v4):
    r = CliRunner().invoke(app, ["verify", v4, "--tokens", "8", "--context", "40", "--format", "json"])
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    for key in ("schema_version", "tool", "target", "layer", "architecture", "options", "passed", "first_failure",
                "stages", "assumptions", "stats"):
        assert key in doc
    for key in ("name", "kind", "max_abs", "max_rel", "nonfinite", "compared", "tolerance", "passed", "tensors",
                "detail"):
        assert key in doc["stages"][0]
    assert [p["name"] for p in doc["profiles"]] == list(PROFILES)
    assert {p["name"]: p["verdict"] for p in doc["profiles"]}["deepgemm"] == "refuses"
    assert all(p["source"] for p in doc["profiles"]) and doc["verdict"] == "PASS"
    assert doc["options"]["kernel"] is None and doc["options"]["worst_case"] is False


# -- a clean checkpoint never FAILs: 64 tokens x 4096 context, several seeds -------------------------------


@pytest.mark.parametrize("arch", ["v4", "v32"])
def test_clean_checkpoint_passes_every_profile_full_size(arch, tmp_path):
    """One seed at the issue's size (64 tokens over 4096 positions); grids unpadded so every profile
    loads. More seeds at a smaller size below (CI has 2 cores)."""
    d = str(tmp_path / "ck")
    (synth.deepseek_v4_mla if arch == "v4" else synth.deepseek_v32_mla)(d, align=1)
    res = verify(d, VerifyOptions(tokens=64, context=4096, seed=0))
    assert all(p.verdict == "PASS" for p in res.profiles), [(p.name, p.first_failure) for p in res.profiles]
    assert len(res.profiles) == len(PROFILES)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("arch", ["v4", "v32"])
def test_clean_checkpoint_passes_every_profile_several_seeds(arch, seed, tmp_path):
    d = str(tmp_path / "ck")
    (synth.deepseek_v4_mla if arch == "v4" else synth.deepseek_v32_mla)(d, align=1, seed=seed)
    res = verify(d, VerifyOptions(tokens=16, context=256, seed=seed))
    assert all(p.verdict == "PASS" for p in res.profiles), [(p.name, p.first_failure) for p in res.profiles]
    # and the padded-grid build: every profile that loads it passes, the strict ones refuse
    d2 = str(tmp_path / "ck2")
    (synth.deepseek_v4_mla if arch == "v4" else synth.deepseek_v32_mla)(d2, seed=seed)
    res = verify(d2, VerifyOptions(tokens=16, context=256, seed=seed))
    assert res.passed and all(verdicts(res)[n] == "PASS" for n in LOADERS)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_clean_and_poisoned_agree_with_cpu(v4):
    opts = dict(tokens=16, context=512)
    cpu, gpu = verify(v4, VerifyOptions(**opts)), verify(v4, VerifyOptions(device="cuda", **opts))
    assert cpu.passed and gpu.passed and verdicts(cpu) == verdicts(gpu)
    for a, b in zip(cpu.stages, gpu.stages, strict=True):
        assert abs(a.max_rel - b.max_rel) < 1e-3 + 0.05 * a.max_rel
    poke(v4, "layers.0.attn.wq_b.scale", 2, b"\xff")
    cpu, gpu = verify(v4, VerifyOptions(**opts)), verify(v4, VerifyOptions(device="cuda", **opts))
    assert verdicts(cpu) == verdicts(gpu) and verdicts(gpu)["tiled-padded"] == "FAIL"
