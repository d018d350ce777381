"""Configuration files: discovery (closest to the current directory wins, never inside the checkpoint),
strict keys, precedence of flags, end to end."""

from __future__ import annotations

import json
import textwrap

import pytest
from typer.testing import CliRunner

from fp8doctor.cli.app import app
from fp8doctor.config_file import ConfigError, discover, load_config, scan_options
from fp8doctor.layouts.model import LayoutOverride
from tests.conftest import run_cli
from tests.helpers.ci_helpers import break_padding

runner = CliRunner()


def write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """repo/pyproject.toml [tool.fp8doctor], repo/models/v4 (broken padding in layer 0)."""
    from fp8doctor.testing import synth

    repo = tmp_path / "repo"
    ckpt = repo / "models" / "v4"
    synth.deepseek_v4(str(ckpt))
    break_padding(str(ckpt))
    (repo / "models").mkdir(exist_ok=True)
    monkeypatch.chdir(repo / "models")  # configuration is found from here upward
    return repo, ckpt


def scan_json(*args):
    r = runner.invoke(app, ["scan", *map(str, args), "--format", "json"])
    return r, (json.loads(r.stdout) if r.stdout.startswith("{") else None)


def test_discovery_closest_file_wins(tree, tmp_path):
    repo, ckpt = tree
    assert discover(str(ckpt)) is None
    py = write(repo / "pyproject.toml", "[project]\nname = 'x'\n")
    assert discover(str(ckpt)) is None  # a pyproject without [tool.fp8doctor] is not a config
    write(py, "[project]\nname = 'x'\n[tool.fp8doctor]\nfail-on = 'warning'\n")
    assert discover(str(ckpt)) == str(py)
    near = write(repo / "models" / "fp8doctor.toml", "fail-on = 'info'\n")
    assert discover(str(ckpt)) == str(near)
    assert discover(str(ckpt / "model.safetensors.index.json")) == str(near)
    same_dir = write(repo / "models" / "pyproject.toml", "[tool.fp8doctor]\n")
    assert discover(str(ckpt)) == str(near) != str(same_dir)  # fp8doctor.toml first within one directory
    # from the current directory upward, wherever the checkpoint is
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    assert discover(str(outside), cwd=str(repo)) == str(py)
    # never inside the checkpoint, even when the current directory is the checkpoint
    write(ckpt / "fp8doctor.toml", "fail-on = 'info'\n")
    assert discover(str(ckpt), cwd=str(ckpt)) == str(near)


def test_config_values_apply_and_flags_override(tree):
    repo, ckpt = tree
    write(repo / "pyproject.toml", """
        [tool.fp8doctor]
        ignore = ["scale-padding-nonzero"]
        """)
    r, doc = scan_json(ckpt)
    assert r.exit_code == 0 and doc["findings"] == []  # the config's ignore applies
    r, doc = scan_json(ckpt, "--ignore", "scale-nan")
    assert r.exit_code == 1 and doc["summary"]["errors"] == 9  # the flag replaces the config's list
    # a closer fp8doctor.toml (to the current directory) wins over the pyproject
    write(repo / "models" / "fp8doctor.toml", "select = ['scale-nan']\n")
    r, doc = scan_json(ckpt)
    assert r.exit_code == 0 and doc["findings"] == []
    # --config overrides discovery
    cfg = write(repo / "ci" / "strict.toml", "fail-on = 'error'\n")
    r, doc = scan_json(ckpt, "--config", cfg)
    assert r.exit_code == 1 and doc["summary"]["errors"] == 9


def test_fail_on_and_fill_from_config(tree, v4):
    repo, ckpt = tree
    write(repo / "fp8doctor.toml", "fill = 'one'\n")  # padding must now hold 0x7F: every padded scale fails
    r, doc = scan_json(ckpt)
    assert r.exit_code == 1 and doc["summary"]["by_rule"]["scale-padding-nonzero"] > 9
    r, doc = scan_json(ckpt, "--fill", "zero")
    assert doc["summary"]["by_rule"]["scale-padding-nonzero"] == 9
    write(repo / "fp8doctor.toml", "fail-on = 'warning'\nignore = ['scale-padding-nonzero']\n")
    from tests.conftest import poke

    poke(str(ckpt), "layers.1.attn.wkv.scale", 0, b"\xb8")  # 2^57: an outlier, a warning (2^127 is implausible)
    r, doc = scan_json(ckpt)
    assert doc["summary"] == {**doc["summary"], "errors": 0, "warnings": 1} and r.exit_code == 1
    r, _ = scan_json(ckpt, "--fail-on", "error")
    assert r.exit_code == 0


def test_ignore_tensors_by_glob_and_rule(tree):
    repo, ckpt = tree
    write(repo / "fp8doctor.toml", """
        [[ignore-tensors]]
        pattern = "layers.0.attn.*"
        rules = ["scale-padding-nonzero"]
        reason = "known, repaired at load time"

        [[ignore-tensors]]
        pattern = "layers.0.ffn.experts.0.*"
        """)
    r, doc = scan_json(ckpt)
    assert r.exit_code == 1
    tensors = {f["tensor"] for f in doc["findings"]}
    assert tensors and all(t.startswith("layers.0.ffn.experts.1.") for t in tensors)
    write(repo / "fp8doctor.toml", """
        [[ignore-tensors]]
        pattern = "layers.0.attn.*"
        rules = ["scale-nan"]
        """)
    _, doc = scan_json(ckpt)
    assert doc["summary"]["errors"] == 9  # another rule's ignore hides nothing


def test_layout_overrides_from_config(v3, tmp_path, monkeypatch):
    from tests.conftest import poke

    monkeypatch.chdir(tmp_path)
    name = "model.layers.0.self_attn.q_b_proj.weight_scale_inv"
    poke(v3, name, 3 * 4, b"\x00\x00\x80\x57")  # 2^48 in scale row 1
    r, doc = scan_json(v3)
    assert r.exit_code == 0 and doc["summary"]["errors"] == 0  # row 1 is real scales: not padding
    write(tmp_path / "fp8doctor.toml", """
        [[layout]]
        pattern = "model.layers.0.*q_b_proj.weight"
        logical = [100, 192]
        block = "128x128"
        """)
    r, doc = scan_json(v3)
    assert r.exit_code == 1 and [f["tensor"] for f in doc["findings"]] == [name]
    assert scan_options(v3).overrides == (LayoutOverride("model.layers.0.*q_b_proj.weight", (128, 128), (100, 192)),)
    # a --layout flag comes after the file's overrides, so it wins
    assert scan_options(v3, layout=["x:block=64x64"]).overrides[-1] == LayoutOverride("x", (64, 64), None)


@pytest.mark.parametrize("text,needle", [
    ("fial-on = 'error'\n", "unknown key 'fial-on' in the top level"),
    ("fill = 'purple'\n", "fill must be zero, one or a byte"),
    ("select = ['no-such-rule']\n", "unknown rule id 'no-such-rule'"),
    ("fail-on = 'fatal'\n", "fail-on: unknown severity"),
    ("[[layout]]\npattern = 'x'\nblok = [1, 2]\n", "unknown key 'blok' in layout[0]"),
    ("[[layout]]\npattern = 'x'\nblock = [1]\n", "layout[0].block must be"),
    ("[[ignore-tensors]]\nrules = ['scale-nan']\n", "ignore-tensors[0] needs a 'pattern'"),
    ("ignore = 'scale-nan'\n", "ignore must be a list of strings"),
    ("fail-on = \n", "not valid TOML"),
])
def test_bad_config_is_a_one_line_error_naming_the_file(tree, text, needle):
    repo, ckpt = tree
    cfg = write(repo / "fp8doctor.toml", text)
    with pytest.raises(ConfigError, match=None) as e:
        load_config(str(cfg))
    assert needle in str(e.value) and str(cfg) in str(e.value)
    r = run_cli("scan", str(ckpt))
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr and "Traceback" not in r.stderr


def test_pyproject_unknown_key_names_the_table(tree):
    repo, ckpt = tree
    write(repo / "pyproject.toml", "[tool.fp8doctor]\nselekt = []\n")
    r = run_cli("scan", str(ckpt))
    assert r.returncode == 2 and "unknown key 'selekt' in [tool.fp8doctor]" in r.stderr
    assert "pyproject.toml" in r.stderr
    r = run_cli("scan", str(ckpt), "--config", str(repo / "missing.toml"))
    assert r.returncode == 2 and "cannot read configuration" in r.stderr
