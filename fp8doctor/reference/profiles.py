"""Kernel profiles for `fp8doctor verify --kernel`: which kernels read the checkpoint, and how.

A profile fixes the two things padding garbage depends on:

gemm       "shape": the block-scaled GEMM reads the scale blocks its weight's own shape implies,
           ceil(N/bn) x ceil(K/bk) of the stored grid, never an entry past them (DeepSeek's
           fp8_gemm loops K_iters = ceil(K/128)); "tiled": it tiles over the stored, padded grid
           and reads every entry (a kernel that sizes its loop from the scale tensor).
refuses    the loader asserts cdiv(N, bn) == Bs.shape[0] and cdiv(K, bk) == Bs.shape[1]: a padded
           grid is refused at load time, so the profile reports "would refuse to load" and no number.
minus_one  "zeroed": a -1 candidate loads nothing, its K/V and scale are zeroed and its score is
           masked by assignment (FlashMLA sm90/sm100 decode); "slot0": -1 is clamped to slot 0 of
           the pool, which is gathered, and the mask is added after q.K (a NaN there survives).

One registry (PROFILES); docs/verify.md's profile table is written from the same facts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KernelProfile:
    name: str
    gemm: str  # "shape" | "tiled"
    refuses_padded_grid: bool
    minus_one: str  # "zeroed" | "slot0"
    summary: str
    source: str

    @property
    def semantics(self) -> tuple[str, str]:
        """Profiles with equal semantics give equal numbers: verify runs each pair once."""
        return (self.gemm, self.minus_one)

    @property
    def reads_slot0(self) -> bool:
        return self.minus_one == "slot0"


PROFILES: dict[str, KernelProfile] = {p.name: p for p in (
    KernelProfile("deepgemm", "shape", True, "zeroed",
                  "DeepGEMM fp8_gemm_nt: scale grid must be ceil(N/128) x ceil(K/128), else refused; "
                  "attention by FlashMLA",
                  "DeepGEMM csrc/utils/layout.hpp check_sf_layout: sf.size(-2) == ceil_div(mn, gran_mn), "
                  "sf.size(-1) == ceil_div(k, gran_k)"),
    KernelProfile("vllm-triton", "shape", True, "zeroed",
                  "vLLM w8a8_triton_block_scaled_mm: asserts cdiv(N, bn) == Bs.shape[0], cdiv(K, bk) == "
                  "Bs.shape[1]; attention by FlashMLA",
                  "vLLM vllm/model_executor/layers/quantization/utils/fp8_utils.py "
                  "(w8a8_triton_block_scaled_mm, per_token_group_quant_fp8)"),
    KernelProfile("deepseek-ref", "shape", False, "zeroed",
                  "DeepSeek fp8_gemm: K_iters = ceil(K/128), Scale_C = a_s * b_s; attention masks by "
                  "index (no -1 slot read)",
                  "DeepSeek-V3.2-Exp inference/kernel.py (act_quant, fp8_gemm_kernel) and model.py (linear, "
                  "MLA index_mask)"),
    KernelProfile("flashmla", "shape", False, "zeroed",
                  "FlashMLA sm90/sm100 sparse decode: -1 candidates read nothing, K/V and scales zeroed, "
                  "masked by assignment",
                  "FlashMLA csrc/sm90 and sm100 sparse decode kernels; tests/ref.py ref_sparse_attn_decode"),
    KernelProfile("gather-slot0", "shape", False, "slot0",
                  "backends that gather slot 0 for -1 candidates and mask additively (FlashInfer SM120 "
                  "decode_dsv4)",
                  "FlashInfer SM120 decode_dsv4, as reported in vLLM issue #57156; FlashMLA tests/ref.py "
                  "clamp_min(indices, 0)"),
    KernelProfile("tiled-padded", "tiled", False, "slot0",
                  "a kernel that reads every stored scale entry: tiles over the padded grid, gathers "
                  "slot 0 (the most pessimistic model)",
                  "fp8doctor's own worst case (verify before issue 18)"),
)}
"""Profile name -> profile, in the order of the console table."""

DEFAULT_ORDER = tuple(PROFILES)
