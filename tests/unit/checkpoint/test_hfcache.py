"""Checkpoints in the Hugging Face cache (issue 14), on a cache built by huggingface_hub's own layout
rules in a temporary HF_HUB_CACHE; no network."""

from __future__ import annotations

import json
import os

import pytest

from fp8doctor.checkpoint.hfcache import snapshot_of
from fp8doctor.testing import synth
from tests.conftest import file_bytes, run_cli
from tests.helpers.hfcache_helpers import cache_checkpoint

pytest.importorskip("huggingface_hub")

REPO = "deepseek-ai/DeepSeek-V4-Tiny"
REV = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def cache(tmp_path):
    src = str(tmp_path / "src")
    synth.deepseek_v4(src)
    synth.garble_padding(src)
    hub = str(tmp_path / "hub")
    snap = cache_checkpoint(hub, REPO, src, revision=REV)
    return hub, snap


def _env(hub: str) -> dict[str, str]:
    return {"HF_HUB_CACHE": hub, "HF_HUB_OFFLINE": "1"}


def test_the_cache_is_laid_out_as_huggingface_hub_does(cache):
    from huggingface_hub import scan_cache_dir

    hub, snap = cache
    [repo] = scan_cache_dir(hub).repos
    assert repo.repo_id == REPO and [r.commit_hash for r in repo.revisions] == [REV]
    shard = os.path.join(snap, "model-00001-of-00002.safetensors")
    assert os.path.islink(shard) and os.readlink(shard).startswith("../../blobs/")
    s = snapshot_of(snap)
    assert s is not None and (s.repo_id, s.revision) == (REPO, REV)
    assert snapshot_of(os.path.dirname(hub)) is None


def test_scan_follows_links_inside_the_repo_folder_and_names_repo_and_revision(cache):
    hub, snap = cache
    r = run_cli("scan", snap, "--format", "json", env=_env(hub))
    doc = json.loads(r.stdout)
    assert r.returncode == 1, r.stdout + r.stderr
    assert doc["hf_cache"] == {"repo_id": REPO, "revision": REV}
    assert doc["summary"]["scale_tensors_checked"] == 22 and doc["summary"]["by_rule"] == {
        "scale-padding-nonzero": 9}
    r = run_cli("scan", snap, env=_env(hub))
    assert f"Hugging Face cache: {REPO}, revision {REV}" in r.stdout


@pytest.mark.parametrize("spec", [REPO, f"{REPO}@{REV}", f"{REPO}@{REV[:10]}", f"{REPO}@main"])
def test_scan_a_repo_id_through_the_local_cache(cache, spec, tmp_path):
    hub, _ = cache
    r = run_cli("scan", spec, "--format", "json", env=_env(hub), cwd=str(tmp_path))
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc["hf_cache"]["repo_id"] == REPO and doc["summary"]["scale_tensors_checked"] == 22


def test_hf_home_is_honoured(cache, tmp_path):
    hub, _ = cache
    home = tmp_path / "home"
    os.rename(hub, tmp_path / "hubx")
    home.mkdir()
    os.rename(tmp_path / "hubx", home / "hub")
    r = run_cli("scan", REPO, env={"HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}, cwd=str(tmp_path))
    assert r.returncode == 1 and "9 errors" in r.stdout, r.stderr


def test_a_repo_id_not_in_the_cache_is_one_line_exit_2(cache, tmp_path):
    hub, _ = cache
    r = run_cli("scan", "someone/else", env=_env(hub), cwd=str(tmp_path))
    assert r.returncode == 2
    assert "does not hold someone/else" in r.stderr and "hf://someone/else" in r.stderr
    r = run_cli("scan", f"{REPO}@ffff0000", env=_env(hub), cwd=str(tmp_path))
    assert r.returncode == 2 and "no single revision ffff0000" in r.stderr


def test_a_link_out_of_the_repo_folder_stays_path_unsafe(cache, tmp_path):
    hub, snap = cache
    outside = tmp_path / "outside.safetensors"
    shard = os.path.join(snap, "model-00002-of-00002.safetensors")
    outside.write_bytes(open(shard, "rb").read())
    os.unlink(shard)
    os.symlink(os.path.relpath(outside, snap), shard)
    r = run_cli("scan", snap, "--format", "json", env=_env(hub))
    doc = json.loads(r.stdout)
    unsafe = [f for f in doc["findings"] if f["rule"] == "path-unsafe"]
    assert unsafe and unsafe[0]["file"] == "model-00002-of-00002.safetensors"


def test_fix_refuses_a_snapshot_in_place_and_fix_output_works(cache, tmp_path):
    hub, snap = cache
    before = file_bytes(hub)
    r = run_cli("fix", snap, env=_env(hub))
    assert r.returncode == 2
    assert "Hugging Face cache snapshot" in r.stderr and f"fp8doctor fix {snap} --output DIR" in r.stderr
    assert file_bytes(hub) == before
    r = run_cli("fix", REPO, env=_env(hub), cwd=str(tmp_path))  # through the repo id: the same refusal
    assert r.returncode == 2 and "--output DIR" in r.stderr
    out = str(tmp_path / "fixed")
    r = run_cli("fix", snap, "--output", out, env=_env(hub))
    assert r.returncode == 0, r.stdout + r.stderr
    assert file_bytes(hub) == before  # the cache is untouched
    assert run_cli("scan", out).returncode == 0
    assert not any(os.path.islink(os.path.join(out, f)) for f in os.listdir(out))


def test_dump_reads_a_snapshot(cache):
    hub, snap = cache
    r = run_cli("dump", snap, "-t", "layers.0.attn.wkv.scale", "--format", "json", env=_env(hub))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["tensors"][0]["rules"] == {"scale-padding-nonzero": 13}


def test_verify_reads_a_snapshot(tmp_path):
    pytest.importorskip("torch")
    import fp8doctor

    src = str(tmp_path / "mla")
    synth.deepseek_v4_mla(src)
    snap = cache_checkpoint(str(tmp_path / "hub"), REPO, src, revision=REV)
    result = fp8doctor.verify(snap, fp8doctor.VerifyOptions(layer=0, tokens=8, context=40))
    assert result.passed  # the layer's tensors were read through the snapshot's links
