"""verify's math against the public reference code it models.

Each `ref_*` function below restates, step by step and in plain torch, one function of a public
repository (named in its docstring); the tests hold fp8doctor.reference to it. They are written
from the sources, not imported: none of those packages is a dependency (tilelang and the CUDA
kernels cannot run here)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from fp8doctor.reference import attention as A  # noqa: E402
from fp8doctor.reference.cache import CacheLayout, PagedCache  # noqa: E402
from fp8doctor.reference.dequant import QuantWeight, act_quant, linear_served  # noqa: E402

# -- DeepSeek-V3.2-Exp inference/kernel.py and model.py ---------------------------------------------------


def ref_fast_round_scale(amax: torch.Tensor) -> torch.Tensor:
    """kernel.py fast_round_scale(amax, 1/448): 2^(exponent bits - 127 + (mantissa != 0)) of
    amax / 448, computed on the float32 bit pattern."""
    bits = (amax * (1 / 448.0)).float().view(torch.int32)
    exp = (bits >> 23) & 0xFF
    log2_ceil = exp - 127 + ((bits & ((1 << 23) - 1)) != 0).to(torch.int32)
    return ((log2_ceil + 127) << 23).view(torch.float32)


def ref_act_quant(x: torch.Tensor, round_scale: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """kernel.py act_quant_kernel: per row and 128-column group, amax = max(absmax, 1e-4),
    s = amax / 448 (or fast_round_scale), y = clamp(x / s, -448, 448) cast to float8_e4m3."""
    n = x.shape[1]
    ys, ss = [], []
    for g in range(n // 128):
        blk = x[:, g * 128:(g + 1) * 128]
        amax = torch.clamp_min(blk.abs().amax(-1), 1e-4)
        s = ref_fast_round_scale(amax) if round_scale else amax * (1 / 448.0)
        ys.append(torch.clamp(blk / s[:, None], -448.0, 448.0).to(torch.float8_e4m3fn))
        ss.append(s)
    return torch.cat(ys, 1), torch.stack(ss, 1)


def ref_fp8_gemm(a: torch.Tensor, a_s: torch.Tensor, b: torch.Tensor, b_s: torch.Tensor) -> torch.Tensor:
    """kernel.py fp8_gemm_kernel: for each 128 x 128 output tile and k in range(ceil(K / 128)):
    C_local = A_k @ B_k^T (codes), Scale_C[i] = scales_a[i, k] * scales_b[n_block, k],
    C_accum += C_local * Scale_C[i]. Out-of-range tile elements are zero."""
    m, k = a.shape
    n = b.shape[0]
    af, bf = a.float(), b.float()
    out = torch.zeros(m, n)
    for kb in range(-(-k // 128)):
        c_local = af[:, kb * 128:(kb + 1) * 128] @ bf[:, kb * 128:(kb + 1) * 128].t()
        for nb in range(-(-n // 128)):
            scale_c = a_s[:, kb] * b_s[nb, kb]
            out[:, nb * 128:(nb + 1) * 128] += c_local[:, nb * 128:(nb + 1) * 128] * scale_c[:, None]
    return out


def ref_weight_dequant(weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """model.py weight_dequant: view as [N/128, 128, K/128, 128] blocks, times one scale per block."""
    n, k = weight.shape
    blocks = weight.float().view(n // 128, 128, k // 128, 128).transpose(1, 2).reshape(-1, 128 * 128)
    blocks = blocks * scale.reshape(-1, 1).float()
    return blocks.view(n // 128, k // 128, 128, 128).transpose(1, 2).reshape(n, k)


@pytest.mark.parametrize("round_scale", [False, True])
def test_act_quant_matches_deepseek_kernel_bit_for_bit(round_scale):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 384, generator=g) * torch.logspace(-6, 3, 384).unsqueeze(0)
    x[2, 128:256] = 0.0  # an all-zero group: the 1e-4 floor
    ours_y, ours_s = act_quant(x, round_scale)
    ref_y, ref_s = ref_act_quant(x, round_scale)
    assert torch.equal(ours_s, ref_s)
    assert torch.equal(ours_y, ref_y.float())


def test_served_gemm_follows_deepseek_fp8_gemm():
    """The `shape` rule with activations quantized is fp8_gemm on act_quant's output: K_iters =
    ceil(K/128), Scale_C = a_s * b_s, one scaled partial sum per K block."""
    g = torch.Generator().manual_seed(1)
    n, k = 300, 384
    codes = torch.randint(0, 0x7E, (n, k), generator=g, dtype=torch.uint8)
    codes |= (torch.rand(n, k, generator=g) < 0.5).to(torch.uint8) << 7  # signs
    scales = 2.0 ** torch.randint(-10, -4, (3, 3), generator=g).float()
    w = QuantWeight("w", codes, "e4m3", scales, (128, 128), (n, k), (3, 3))
    x = torch.randn(9, k, generator=g)
    a, a_s = ref_act_quant(x, round_scale=True)
    want = ref_fp8_gemm(a, a_s, codes.view(torch.float8_e4m3fn), scales)
    got = linear_served(x, w, g, rule="shape", round_scale=True)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))


def test_exact_weight_matches_deepseek_weight_dequant():
    g = torch.Generator().manual_seed(2)
    codes = torch.randint(0, 0x7E, (256, 384), generator=g, dtype=torch.uint8)
    scales = 2.0 ** torch.randint(-12, -2, (2, 3), generator=g).float()
    w = QuantWeight("w", codes, "e4m3", scales, (128, 128), (256, 384), (2, 3))
    assert torch.equal(w.exact_weight(), ref_weight_dequant(codes.view(torch.float8_e4m3fn), scales))


# -- FlashMLA tests/quant.py ------------------------------------------------------------------------------


def ref_quantize_k_cache(k: torch.Tensor, kind: str) -> torch.Tensor:
    """quant.py quantize_k_cache for [num_blocks, block_size, d] BF16 latents -> raw bytes per block.
    V32_FP8Sparse (d_nope 512, tile 128): per token [512 E4M3 | 4 F32 scales | 64 BF16], block_size + 1
    tokens per block. MODEL1_FP8Sparse (d_nope 448, tile 64): per block [block_size x (448 E4M3 + 64 BF16)]
    then [block_size x (7 E8M0 + 1)], padded to a multiple of 576. scale = 2^ceil(log2(max(amax / 448,
    1e-4))) per tile (_cast_scale_inv_to_ue8m0); codes = E4M3(x / scale)."""
    nb, bs, _ = k.shape
    d_nope, tile = (512, 128) if kind == "v32" else (448, 64)
    tiles = d_nope // tile
    codes, scales = [], []
    for t in range(tiles):
        part = k[..., t * tile:(t + 1) * tile]
        s = part.abs().amax(-1).float() / 448.0
        s = torch.pow(2, torch.clamp_min(s, 1e-4).log2().ceil())
        scales.append(s)
        codes.append((part.float() / s[..., None]).to(torch.float8_e4m3fn).view(torch.uint8))
    nope = torch.cat(codes, -1)  # [nb, bs, d_nope]
    rope = k[..., d_nope:].contiguous().view(torch.uint8)  # [nb, bs, 128]
    sc = torch.stack(scales, -1)  # [nb, bs, tiles]
    if kind == "v32":
        token = torch.cat([nope, sc.contiguous().view(torch.uint8), rope], -1)  # [nb, bs, 656]
        return token.reshape(nb, -1)
    e8 = (torch.log2(sc).to(torch.int32) + 127).to(torch.uint8)
    per_token = torch.cat([e8, torch.zeros(nb, bs, 1, dtype=torch.uint8)], -1)
    return torch.cat([torch.cat([nope, rope], -1).reshape(nb, -1), per_token.reshape(nb, -1)], -1)


@pytest.mark.parametrize("kind", ["v32", "model1"])
def test_paged_cache_bytes_equal_flashmla_quantize_k_cache(kind):
    g = torch.Generator().manual_seed(3)
    d_nope = 512 if kind == "v32" else 448
    L = 128  # two pages of 64
    latent = (torch.randn(L, d_nope + 64, generator=g) * torch.logspace(-3, 1, d_nope + 64)).bfloat16()
    cache = PagedCache(CacheLayout(kind, d_nope, 64), L, "zero", g, torch.device("cpu"))
    cache.write(latent.float())
    want = ref_quantize_k_cache(latent.view(2, 64, -1), kind)
    got = cache.buf[1:3, :want.shape[1]]  # page 0 is the null page; the sequence's pages follow
    if kind == "model1":  # the 8th scale byte of each token is padding, left as torch.empty leaves it
        scale_at = 64 * (d_nope + 128)
        keep = torch.ones(want.shape[1], dtype=torch.bool)
        keep[scale_at + 7::8] = False
        got, want = got[:, keep], want[:, keep]
    assert torch.equal(got, want)


def ref_abs_indices2indices_in_kvcache(abs_idx: torch.Tensor, block_table: torch.Tensor, bs: int) -> torch.Tensor:
    """quant.py abs_indices2indices_in_kvcache (one sequence): -1 stays -1, else
    block_table[i // bs] * bs + i % bs."""
    safe = torch.where(abs_idx == -1, torch.zeros_like(abs_idx), abs_idx)
    out = block_table[safe // bs] * bs + safe % bs
    return torch.where(abs_idx == -1, torch.full_like(out, -1), out)


def test_cache_slots_match_flashmla_index_translation():
    cache = PagedCache(CacheLayout("v32", 512, 64), 300, "zero", torch.Generator(), torch.device("cpu"))
    idx = torch.tensor([[0, 63, 64, 299, -1, 130]])
    assert torch.equal(cache.slots(idx), ref_abs_indices2indices_in_kvcache(idx, cache.block_table, 64))


# -- FlashMLA tests/ref.py ----------------------------------------------------------------------------------


def ref_sparse_attn_fwd(q, kv, indices, sm_scale, d_v, attn_sink=None):
    """ref.py ref_sparse_attn_fwd: indices < 0 or >= s_kv are invalid and replaced by 0 for the
    gather; P = q K^T * sm_scale with invalid slots set to -inf; lse (merged with the sink, if any)
    set to +inf where -inf so that O = exp(P - lse) V is 0 for a query with no valid key."""
    s_kv = kv.shape[0]
    invalid = (indices < 0) | (indices >= s_kv)
    idx = indices.masked_fill(invalid, 0)
    k = kv.index_select(0, idx.flatten()).reshape(*idx.shape, kv.shape[-1]).float()  # [s_q, topk, d]
    p = (q.float() @ k.transpose(1, 2)) * sm_scale  # [s_q, h, topk]
    p = p.masked_fill(invalid.unsqueeze(1), float("-inf"))
    lse = torch.logsumexp(p, -1)
    if attn_sink is not None:
        lse = torch.logsumexp(torch.stack([lse, attn_sink.view(1, -1).expand_as(lse)]), 0)
    lse = lse.masked_fill(lse == float("-inf"), float("inf"))
    return torch.exp(p - lse.unsqueeze(-1)) @ k[..., :d_v]


def ref_sparse_attn_decode(q, blocked_kv, indices_in_kvcache, sm_scale, d_v, attn_sink=None):
    """ref.py ref_sparse_attn_decode (h_kv = 1, one batch): gather at clamp_min(indices, 0), NaN in the
    gathered K/V set to 0, -1 slots set to -inf by assignment, lse, sink factor 1 / (1 + exp(sink -
    lse)), O = 0 for a query with no valid key."""
    flat = blocked_kv.reshape(-1, blocked_kv.shape[-1])
    k = flat.index_select(0, indices_in_kvcache.clamp_min(0).flatten()).reshape(*indices_in_kvcache.shape, -1)
    k = k.float()
    k = k.masked_fill(k != k, 0.0)
    w = (q.float() @ k.transpose(-1, -2)) * sm_scale
    w[(indices_in_kvcache == -1).unsqueeze(1).expand_as(w)] = float("-inf")
    lse = w.logsumexp(-1)
    out = torch.exp(w - lse.unsqueeze(-1)) @ k[..., :d_v]
    if attn_sink is not None:
        out = out * (1.0 / (1.0 + torch.exp(attn_sink.view(1, -1) - lse))).unsqueeze(-1)
    out[(lse == float("-inf")).unsqueeze(-1).expand_as(out)] = 0.0
    return out


def _case(seed: int, T=6, H=4, L=200, D=96, topk=64):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(T, H, D, generator=g)
    kv = torch.randn(L, D, generator=g)
    q_pos = torch.arange(L - T, L)
    idx = torch.stack([torch.randperm(L - T, generator=g)[:topk] for _ in range(T)])
    idx[:, -10:] = -1
    idx[0] = -1  # a query with no valid candidate
    return g, q, kv, q_pos, idx


@pytest.mark.parametrize("with_sink", [False, True])
def test_exact_attention_matches_flashmla_ref_sparse_attn_fwd(with_sink):
    g, q, kv, q_pos, idx = _case(4)
    sink = torch.randn(q.shape[1], generator=g) if with_sink else None
    got = A.sparse_attention_exact(q, kv, idx, q_pos, 0.1, 64, sink)
    want = ref_sparse_attn_fwd(q, kv, idx, 0.1, 64, sink)  # the sink folded into lse: the same factor
    assert (got - want).abs().max() < 5e-5


@pytest.mark.parametrize("minus_one", ["zeroed", "slot0"])
@pytest.mark.parametrize("kind", ["v32", "model1"])
def test_served_attention_matches_flashmla_ref_sparse_attn_decode(kind, minus_one):
    g, q, _, q_pos, idx = _case(5, D=512 + 64 if kind == "v32" else 448 + 64)
    d_nope = 512 if kind == "v32" else 448
    L = 200
    latent = torch.randn(L, d_nope + 64, generator=g)
    cache = PagedCache(CacheLayout(kind, d_nope, 64), L, "zero", g, torch.device("cpu"))
    cache.write(latent)
    sink = torch.randn(q.shape[1], generator=g)
    got = A.sparse_attention_served(q, cache, idx, q_pos, L, 0.05, d_nope, sink, minus_one)
    slots = cache.slots(idx)
    blocked = cache.gather(torch.arange(cache.buf.shape[0] * 64))  # every slot of the pool, dequantized
    want = ref_sparse_attn_decode(q, blocked, slots, 0.05, d_nope, sink)
    assert (got - want).abs().max() < 5e-5
