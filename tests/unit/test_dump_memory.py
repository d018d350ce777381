"""Issue 13, section 3: what `dump` holds follows the selection. The padding mask and the marks are
built for the selected rows only (a raw dump of one row of a 2^20-entry scale holds kilobytes, not
the megabytes of whole-tensor arrays)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from fp8doctor.checkpoint.loader import open_checkpoint
from fp8doctor.dumper import DumpOptions, RowRange, _geometry, dump
from fp8doctor.layouts.pairing import LayoutBuilder
from fp8doctor.testing import synth
from fp8doctor.testing.synth import Tensor, write_safetensors


def test_padding_rows_match_the_layouts_mask(tmp_path):
    from fp8doctor.dumper import _padding_rows

    rng = np.random.default_rng(0)
    checked = 0
    for make in (synth.deepseek_v4, synth.deepseek_v3, synth.gpt_oss):
        d = str(tmp_path / make.__name__)
        make(d)
        with open_checkpoint(d) as ck:
            for lay in LayoutBuilder(ck.tensors, ck.config).build().layouts:
                shape = lay.scale.shape
                nrows, row_len = _geometry(shape)
                whole = lay.padding_mask().reshape(nrows, row_len)
                for _ in range(3):
                    r0 = int(rng.integers(0, nrows))
                    r1 = int(rng.integers(r0, nrows + 1))
                    got = _padding_rows(shape, tuple(lay.logical_shape), row_len, r0, r1)
                    assert np.array_equal(got, whole[r0:r1]), (lay.name, r0, r1)
                checked += 1
    assert checked > 20


def test_raw_dump_of_one_row_holds_the_row_not_the_tensor(tmp_path):
    n = 1 << 20
    d = str(tmp_path / "ck")
    (tmp_path / "ck").mkdir()
    write_safetensors(d + "/model.safetensors", {
        "mlp.experts_scales": Tensor("U8", (1, 1024, 1024), np.full(n, 127, np.uint8)),
        "mlp.experts_blocks": Tensor("U8", (1, 1024, 1024, 16), np.zeros(n * 16, np.uint8))})
    dump(d, DumpOptions(tensors=("mlp.experts_scales",), rows=RowRange(0, 1), marks=False))  # imports, warm
    tracemalloc.start()
    [got] = dump(d, DumpOptions(tensors=("mlp.experts_scales",), rows=RowRange(0, 1), marks=False))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert got.layout is not None and len(got.data) == 1024 and got.selected.shape == (1, 1024)
    assert peak < 512 << 10, peak  # whole-tensor masks alone would be 2 MiB


# --- peak RSS of the real CLI on sparse files (issue 13, section 3, first bullet) -------------------

_CHILD = r"""
import resource, runpy, sys
resource.setrlimit(resource.RLIMIT_AS, (CAP, CAP))  # a regression is a MemoryError here, never an OOM kill
out, sys.argv = sys.argv[1], ["fp8doctor", *sys.argv[2:]]
code = 0
try:
    runpy.run_module("fp8doctor", run_name="__main__")
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else 1
sys.stdout.flush()
with open(out, "w") as f:
    f.write(f"{code} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}")
"""
_CAP = 3 << 30


def _sparse(path, tensors: dict[str, tuple[str, tuple[int, ...]]]) -> None:
    """A safetensors file whose data is a hole: headers only, every byte reads as 0x00."""
    import json
    import math
    import os
    import struct

    from fp8doctor.checkpoint.dtypes import DTYPE_BITS

    head, off = {}, 0
    for name, (dtype, shape) in tensors.items():
        n = math.prod(shape) * DTYPE_BITS[dtype] // 8
        head[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    raw = json.dumps(head).encode()
    raw += b" " * (-len(raw) % 8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + off)


def _peak_rss(tmp_path, *args: str, stdout=None) -> int:
    """Peak RSS (bytes) of `fp8doctor ARGS` in a child under an address-space cap; asserts exit 0."""
    import os
    import subprocess
    import sys

    out = str(tmp_path / f"rss-{len(os.listdir(tmp_path))}")
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-c", _CHILD.replace("CAP", str(_CAP)), out, *args], env=env,
                          stdout=stdout if stdout is not None else subprocess.DEVNULL, stderr=subprocess.PIPE,
                          timeout=600)
    code, peak = open(out).read().split()
    assert int(code) == 0 and proc.returncode == 0, proc.stderr.decode()[-2000:]
    return int(peak)


@pytest.fixture(scope="module")
def sparse_scales(tmp_path_factory):
    """A 2^26-entry E8M0 scale with no weight (value rules only), and a gpt-oss-style 2^26-entry
    scale with its 1 GiB of FP4 blocks (zero scales verified against the weights, then the
    weight-read budget runs out): both all zero bytes, so every entry breaks a rule."""
    d = tmp_path_factory.mktemp("sparse")
    _sparse(str(d / "ck" / "model.safetensors"), {
        "big.scale": ("F8_E8M0", (8192, 8192)),
        "mlp.experts_scales": ("U8", (64, 1024, 1024)),
        "mlp.experts_blocks": ("U8", (64, 1024, 1024, 16)),
        "tiny.scale": ("F8_E8M0", (4, 4)),
    })
    return str(d / "ck")


def test_dump_one_row_of_a_2_26_entry_scale_follows_the_selection(sparse_scales, tmp_path):
    base = _peak_rss(tmp_path, "dump", sparse_scales, "--tensor", "tiny.scale", "--format", "json")
    for name in ("big.scale", "mlp.experts_scales"):
        for fmt in ("console", "json"):
            peak = _peak_rss(tmp_path, "dump", sparse_scales, "--tensor", name, "--rows", "0:1", "--format", fmt)
            # whole-tensor rules took ~23 bytes per entry (1.5 GB); one row and a slab are a few MB
            assert peak - base < 96 << 20, (name, fmt, peak, base)


def test_full_raw_dump_streams(sparse_scales, tmp_path):
    base = _peak_rss(tmp_path, "dump", sparse_scales, "--tensor", "tiny.scale", "--format", "raw")
    sink = open(tmp_path / "raw.bin", "wb")
    with sink:
        peak = _peak_rss(tmp_path, "dump", sparse_scales, "--tensor", "big.scale", "--format", "raw", stdout=sink)
    assert (tmp_path / "raw.bin").stat().st_size == 1 << 26
    assert peak - base < 48 << 20, (peak, base)  # the whole tensor read at once is 64 MiB (twice, copied)


def test_full_json_dump_streams(sparse_scales, tmp_path):
    import json

    base = _peak_rss(tmp_path, "dump", sparse_scales, "--tensor", "tiny.scale", "--format", "json")
    with open(tmp_path / "dump.json", "wb") as sink:
        peak = _peak_rss(tmp_path, "dump", sparse_scales, "--tensor", "big.scale", "--format", "json", stdout=sink)
    [t] = json.loads((tmp_path / "dump.json").read_text())["tensors"]
    assert len(t["hex"]) == 2 << 26 and t["bad"] == [[0, 1 << 26, "error"]] and t["rules"] == {"scale-zero": 1 << 26}
    assert peak - base < 96 << 20, (peak, base)  # in one piece: a 128 MiB hex string and ~20 bytes per entry
