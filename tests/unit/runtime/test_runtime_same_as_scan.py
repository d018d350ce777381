"""check_tensors / check_module give the scan's findings on every test checkpoint loaded into memory."""

from __future__ import annotations

import shutil
import struct

import numpy as np
import pytest
import torch

from fp8doctor import check_module, check_tensors, scan
from fp8doctor.testing import synth
from tests.conftest import poke
from tests.helpers.corpus import HEADER_CASES, INDEX_CASES, make_template
from tests.helpers.runtime_helpers import load, same_as_scan

BUILDERS = {
    "v3": synth.deepseek_v3,
    "v4": synth.deepseek_v4,
    "oss": synth.gpt_oss,
    "ct": synth.compressed_tensors_mxfp4,
    "v32-mla": synth.deepseek_v32_mla,
    "v4-mla": synth.deepseek_v4_mla,
}


def _nan(root: str) -> None:  # a real NaN in an E8M0 and an F32 scale (whichever the checkpoint has)
    named, _ = load(root)
    for name, t in named.items():
        if name.endswith((".scale", "_scales", ".weight_scale", ".weight_scale_inv")) and t.numel() > 2:
            poke(root, name, 0, b"\xff" * t.element_size())
            return


def _uninit(root: str) -> None:  # one whole scale tensor of leftover memory
    named, _ = load(root)
    name = max((n for n in named if n.endswith((".scale", "_scales", ".weight_scale_inv", ".weight_scale"))),
               key=lambda n: named[n].numel())
    nbytes = named[name].numel() * named[name].element_size()
    poke(root, name, 0, np.random.default_rng(3).integers(0, 256, nbytes, dtype=np.uint8).tobytes())


def _zero_and_outlier(root: str) -> None:  # a zero over a non-zero block and an outlier, in F32 or E8M0
    named, _ = load(root)
    for name, t in named.items():
        if name.endswith((".scale", "_scales", ".weight_scale", ".weight_scale_inv")) and t.numel() > 4:
            if t.element_size() == 4:
                poke(root, name, 4, struct.pack("<f", 0.0) + struct.pack("<f", 2.0 ** 60))
            else:
                poke(root, name, 1, b"\x00\xfe")
            return


FAULTS = {"clean": None, "garbled": synth.garble_padding, "nan": _nan, "uninit": _uninit,
          "zero-outlier": _zero_and_outlier}


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("builder", BUILDERS)
def test_check_tensors_matches_scan(tmp_path, builder, fault):
    root = str(tmp_path / builder)
    BUILDERS[builder](root)
    if FAULTS[fault] is not None:
        FAULTS[fault](root)
    scanned = scan(root)
    named, config = load(root)
    checked = check_tensors(named, config=config)
    same_as_scan(scanned, checked)
    if fault in ("nan", "uninit"):
        assert any(f.severity.value == "error" for f in checked.findings)
    assert {f.device for f in checked.findings if f.tensor in named} <= {"cpu"}


def test_check_module_matches_scan(v4):
    synth.garble_padding(v4)
    named, config = load(v4)
    module = torch.nn.Module()
    for name, t in named.items():  # a flat module: dots are not allowed in names, so nest as the model does
        parent = module
        *path, leaf = name.split(".")
        for part in path:
            if not hasattr(parent, part):
                parent.add_module(part, torch.nn.Module())
            parent = getattr(parent, part)
        if t.dtype.is_floating_point and t.dtype.itemsize > 1:
            parent.register_parameter(leaf, torch.nn.Parameter(t, requires_grad=False))
        else:
            parent.register_buffer(leaf, t)
    same_as_scan(scan(v4), check_module(module, config=config))


def test_corpus_cases_safetensors_can_load(tmp_path):
    """Every case of the bad-input corpus that safetensors itself loads: the same findings, less
    the ones about files."""
    template = make_template(str(tmp_path / "template"))
    compared = 0
    for i, (name, case) in enumerate(HEADER_CASES + INDEX_CASES):
        if name.startswith("shard-"):  # fifos, loops, symlinks: about files, and a fifo blocks a reader
            continue
        root = str(tmp_path / f"c{i}")
        shutil.copytree(template, root, symlinks=True)
        root = case(root)
        try:
            named, config = load(root)
        except Exception:  # safetensors refuses it: nothing to load into memory
            continue
        scanned = scan(root)
        checked = check_tensors(named, config=config)
        same_as_scan(scanned, checked, config_parsed=config is not None)
        compared += 1
    assert compared >= 10
