"""model.safetensors.index.json and shard presence: every inconsistency is an index finding."""

from __future__ import annotations

import json
import os

import pytest

from fp8doctor import CheckpointError
from fp8doctor.checkpoint.loader import INDEX_NAME
from tests.helpers.helpers_scan import scan


def load_index(root):
    with open(os.path.join(root, INDEX_NAME)) as f:
        return json.load(f)


def save_index(root, idx):
    with open(os.path.join(root, INDEX_NAME), "w") as f:
        json.dump(idx, f)


def rules(root):
    return [(f.rule, f.file, f.tensor) for f in scan(root).findings]


def test_missing_shard(v4):
    shard = "model-00002-of-00002.safetensors"
    n = sum(1 for v in load_index(v4)["weight_map"].values() if v == shard)
    os.remove(os.path.join(v4, shard))
    report = scan(v4)
    [f] = [f for f in report.findings if f.rule == "index-shard-missing"]
    assert f.file == shard and f.count == n
    assert report.failed(__import__("fp8doctor").Severity.ERROR)


def test_listed_but_absent_and_unlisted(v4):
    idx = load_index(v4)
    idx["weight_map"]["ghost.weight"] = "model-00001-of-00002.safetensors"
    victim = "layers.1.ffn.gate.weight"
    del idx["weight_map"][victim]
    save_index(v4, idx)
    found = rules(v4)
    assert ("index-mismatch", "model-00001-of-00002.safetensors", "ghost.weight") in found
    assert ("index-mismatch", "model-00002-of-00002.safetensors", victim) in found


def test_tensor_in_two_shards(tmp_path):
    import numpy as np

    from fp8doctor.testing.synth import Tensor, write_safetensors

    d = tmp_path / "dup"
    d.mkdir()
    t = Tensor("U8", (4,), np.arange(4, dtype=np.uint8))
    write_safetensors(str(d / "a.safetensors"), {"x": t})
    write_safetensors(str(d / "b.safetensors"), {"x": t})
    [f] = scan(str(d)).findings
    assert (f.rule, f.tensor) == ("index-mismatch", "x") and "both" in f.message


@pytest.mark.parametrize("name", ["../outside.safetensors", "/etc/passwd", "sub/../../x.safetensors"])
def test_shard_names_escaping_the_directory(v4, name):
    idx = load_index(v4)
    idx["weight_map"]["evil.weight"] = name
    save_index(v4, idx)
    found = rules(v4)
    assert any(r == "path-unsafe" for r, _, _ in found)


def test_symlink_outside(v4, tmp_path):
    outside = tmp_path / "elsewhere.safetensors"
    shard = os.path.join(v4, "model-00002-of-00002.safetensors")
    os.replace(shard, outside)
    os.symlink(outside, shard)
    found = rules(v4)
    assert ("path-unsafe", "model-00002-of-00002.safetensors", None) in found


def test_symlink_inside_is_fine(v4):
    shard = os.path.join(v4, "model-00002-of-00002.safetensors")
    os.makedirs(os.path.join(v4, "blobs"))
    os.replace(shard, os.path.join(v4, "blobs", "x"))
    os.symlink(os.path.join("blobs", "x"), shard)
    assert rules(v4) == []


def test_symlink_loop_is_unreadable(v4):
    shard = os.path.join(v4, "model-00002-of-00002.safetensors")
    os.remove(shard)
    os.symlink(shard, shard)
    found = rules(v4)
    assert any(r in ("file-unreadable", "path-unsafe") for r, _, _ in found)


def test_directory_named_like_a_shard(v4):
    shard = os.path.join(v4, "model-00002-of-00002.safetensors")
    os.remove(shard)
    os.mkdir(shard)
    assert ("file-unreadable", "model-00002-of-00002.safetensors", None) in rules(v4)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
def test_unreadable_shard(v4):
    os.chmod(os.path.join(v4, "model-00002-of-00002.safetensors"), 0)
    assert ("file-unreadable", "model-00002-of-00002.safetensors", None) in rules(v4)


@pytest.mark.parametrize("content", ["{not json", "[]", '{"weight_map": [1]}', '{"weight_map": {"a": 3}}'])
def test_invalid_index(v4, content):
    with open(os.path.join(v4, INDEX_NAME), "w") as f:
        f.write(content)
    report = scan(v4)
    assert ("index-invalid", INDEX_NAME, None) in [(f.rule, f.file, f.tensor) for f in report.findings]


def test_index_file_as_target(v4):
    assert scan(os.path.join(v4, INDEX_NAME)).findings == ()


def test_single_shard_as_target(v4):
    report = scan(os.path.join(v4, "model-00001-of-00002.safetensors"))
    # the other shard's weights are not there, so nothing pairs across; still no false finding
    assert report.findings == ()
    assert report.stats.files == 1


def test_config_garbage_is_an_error(v4):
    with open(os.path.join(v4, "config.json"), "w") as f:
        f.write("{garbage")
    report = scan(v4)
    # without config.json the block size is inferred; every scale here is padded to a multiple of 4,
    # so 128x128 and 256x256 both fit: an honest warning, and no error
    assert sorted((f.rule, f.severity.value) for f in report.findings) == [
        ("config-invalid", "error"), ("layout-ambiguous", "warning")]


def test_quantization_config_wrong_types(v4):
    with open(os.path.join(v4, "config.json")) as f:
        cfg = json.load(f)
    cfg["quantization_config"]["weight_block_size"] = "128"
    with open(os.path.join(v4, "config.json"), "w") as f:
        json.dump(cfg, f)
    report = scan(v4)
    assert "config-invalid" in report.by_rule()
    # the block size was inferred from shapes instead, and the padding still located
    assert not any(f.rule.startswith("scale-") for f in report.findings)


@pytest.mark.parametrize("make", ["missing", "empty-dir", "text-file"])
def test_paths_that_are_not_checkpoints(tmp_path, make):
    if make == "missing":
        p = tmp_path / "nope"
    elif make == "empty-dir":
        p = tmp_path / "empty"
        p.mkdir()
    else:
        p = tmp_path / "notes.txt"
        p.write_text("hello")
    with pytest.raises(CheckpointError, match="not a safetensors file" if make == "text-file" else None):
        scan(str(p))  # a text file given explicitly is refused in one line, not read as a shard
