"""`make runtime-check`: the bug fp8doctor exists for, where it was found: in an inference server's
memory, not in a file.

1. A padded `float8_e8m0fnu` scale parameter allocated with `torch.empty` keeps what the allocator's
   block held in its padded entries (kernels read them where a 0 is meant). The garbage is made
   deterministic: a buffer is filled and freed first, and the padding is written through a uint8
   view with what such a block holds. The raw scale bytes are printed the way the original test
   printed them, before and after the fix (`scale[:] = 0` after `torch.empty`).
2. The same for an F32 DeepGEMM-style scale: an [M, K/128] view with strides (1, align(M, 4)) over a
   TMA-aligned buffer; its padding rows lie outside the view and fail DeepGEMM's
   `(bits & 0x807fffff) == 0` (CUDA error 719 in the field).

Runs on CPU; `--device cuda` runs it on a GPU (the checks then run on the device). Exits 0 when
every check said what it should (findings before the fix, clean after).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

import fp8doctor
from fp8doctor import RuntimeLayout
from fp8doctor.testing import findings_text

N, K, BLOCK = 200, 512, 128  # an FP8 weight: a 2 x 4 grid of 128-blocks, its scale stored padded to 4 x 4
CONFIG = {"quantization_config": {"quant_method": "fp8", "weight_block_size": [BLOCK, BLOCK]}}


def step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m" if sys.stdout.isatty() else f"\n== {title}", flush=True)


def leftover(shape: tuple[int, ...], device: str, seed: int) -> None:
    """Fill and free a buffer: the allocator hands such a block to the next torch.empty."""
    junk = torch.from_numpy(np.random.default_rng(seed).integers(1, 256, shape, dtype=np.uint8)).to(device)
    del junk


def garbage_into(raw: torch.Tensor, seed: int) -> None:
    """What a reused block holds, written through a uint8 view (so the demo does not depend on the
    allocator): random non-zero bytes, every 7th a NaN 0xFF."""
    g = np.random.default_rng(seed).integers(1, 256, tuple(raw.shape), dtype=np.uint8).reshape(-1)
    g[::7] = 0xFF
    raw.copy_(torch.from_numpy(g.reshape(tuple(raw.shape))))


def show_bytes(label: str, scale: torch.Tensor) -> None:
    print(f"{label} (raw bytes, rows of the stored {list(scale.shape)} scale):")
    for row in scale.view(torch.uint8).cpu().tolist():
        print("   ", " ".join(f"0x{b:02X}" for b in row))


def e8m0_layer(device: str, fixed: bool) -> dict[str, torch.Tensor]:
    """A loader's FP8 linear: weight, and a padded E8M0 scale from torch.empty, real box loaded."""
    weight = torch.ones(N, K, device=device).to(torch.float8_e4m3fn)
    leftover((4, 4), device, seed=1)
    scale = torch.empty((4, 4), dtype=torch.float8_e8m0fnu, device=device)
    garbage_into(scale.view(torch.uint8), seed=2)
    if fixed:
        scale[:] = 0  # the fix
    scale[:2, :4] = torch.full((2, 4), 2.0 ** -8, device=device).to(torch.float8_e8m0fnu)  # the real scales
    return {"layers.0.mlp.up_proj.weight": weight, "layers.0.mlp.up_proj.weight_scale": scale}


def deepgemm_scale(device: str, fixed: bool, m: int = 130, kb: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """An [m, kb] F32 activation scale as DeepGEMM wants it: MN-major, rows aligned to 4 (16 bytes)."""
    aligned = -(-m // 4) * 4
    leftover((kb, aligned * 4), device, seed=3)
    buf = torch.empty((kb, aligned), dtype=torch.float32, device=device)
    garbage_into(buf.view(torch.uint8), seed=4)
    if fixed:
        buf.zero_()  # the fix
    view = buf.t()[:m]
    view.copy_(torch.full((m, kb), 2.0 ** -7, device=device))
    return view, buf


def report(title: str, r: fp8doctor.Report) -> bool:
    n = r.stats.scale_tensors_checked
    print(findings_text(r, r.findings) if r.findings else
          f"clean: {n} scale tensor{'s' if n != 1 else ''} checked in {r.target}")
    return bool(r.findings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    device = parser.parse_args(argv).device
    ok = True

    step(f"1. an E8M0 scale parameter from torch.empty, padded 2x4 -> 4x4 (on {device})")
    layer = e8m0_layer(device, fixed=False)
    show_bytes("before the fix", layer["layers.0.mlp.up_proj.weight_scale"])
    found = report("before", fp8doctor.check_tensors(layer, config=CONFIG))
    ok &= found
    step("   the fix: scale[:] = 0 right after torch.empty")
    layer = e8m0_layer(device, fixed=True)
    show_bytes("after the fix", layer["layers.0.mlp.up_proj.weight_scale"])
    ok &= not report("after", fp8doctor.check_tensors(layer, config=CONFIG))

    step("2. an F32 DeepGEMM-style scale: [130, 3] view, strides (1, 132), padding rows outside the view")
    layouts = [RuntimeLayout("*.input_scale_inv", strided=True, deepgemm=True)]
    view, buf = deepgemm_scale(device, fixed=False)
    print(f"view {list(view.shape)} strides {list(view.stride())}; padding rows 130..131, raw bits:")
    for col in range(buf.shape[0]):
        print("   ", " ".join(f"0x{v & 0xFFFFFFFF:08X}" for v in buf.view(torch.int32)[col, 130:].cpu().tolist()))
    ok &= report("before", fp8doctor.check_tensors({"layers.0.mlp.input_scale_inv": view}, layouts=layouts))
    step("   the fix: zero the buffer after torch.empty")
    view, buf = deepgemm_scale(device, fixed=True)
    print("padding rows 130..131, raw bits:",
          " ".join(f"0x{v & 0xFFFFFFFF:08X}" for v in buf.view(torch.int32)[:, 130:].reshape(-1).cpu().tolist()))
    ok &= not report("after", fp8doctor.check_tensors({"layers.0.mlp.input_scale_inv": view}, layouts=layouts))

    step("3. in an engine's test suite")
    print("    from fp8doctor.testing import assert_scales_clean\n"
          "    assert_scales_clean(model)   # after weight loading: AssertionError listing the findings")
    print("\nruntime check demo " + ("ran as intended" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
