"""checkpoint/target.py: the one parse of a target path every command reads."""

from __future__ import annotations

import os

from fp8doctor.checkpoint.target import INDEX_NAME, JOURNAL_DIRNAME, Target


def test_directory_with_and_without_index(tmp_path):
    t = Target.parse(str(tmp_path))
    assert (t.kind, t.root, t.index, t.shard, t.remote) == ("directory", str(tmp_path), None, None, False)
    (tmp_path / INDEX_NAME).write_text("{}")
    t = Target.parse(str(tmp_path))
    assert t.index == INDEX_NAME and t.whole_directory
    assert t.journal_dir == os.path.join(str(tmp_path), JOURNAL_DIRNAME)
    assert t.local_dir == os.path.abspath(str(tmp_path))


def test_index_shard_missing_and_other(tmp_path):
    (tmp_path / "idx.json").write_text("{}")
    (tmp_path / "a.safetensors").write_bytes(b"")
    t = Target.parse(str(tmp_path / "idx.json"))
    assert (t.kind, t.root, t.index, t.whole_directory) == ("index", str(tmp_path), "idx.json", True)
    t = Target.parse(str(tmp_path / "a.safetensors"))
    assert (t.kind, t.root, t.shard, t.whole_directory) == ("shard", str(tmp_path), "a.safetensors", False)
    assert t.local_dir == str(tmp_path)
    t = Target.parse(str(tmp_path / "nope.safetensors"))
    assert not t.exists and t.kind == "missing"
    os.mkfifo(tmp_path / "fifo")
    assert Target.parse(str(tmp_path / "fifo")).kind == "other"


def test_relative_shard_root_is_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.safetensors").write_bytes(b"")
    assert Target.parse("m.safetensors").root == "."


def test_urls_are_remote_and_name_their_base():
    t = Target.parse("hf://org/model@main/sub/model.safetensors.index.json")
    assert t.remote and t.local_dir is None and t.display_root == "hf://org/model@main/sub"
    assert Target.parse("https://host/base/").display_root == "https://host/base"


def test_source_root_is_the_git_work_tree(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "ck").mkdir()
    assert Target.parse(str(tmp_path / "ck")).source_root() == str(tmp_path)
