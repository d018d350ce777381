"""Sparse MLA attention over candidate lists `[top-k | sliding window | -1 padding]`.

Served, two ways (the profile's `minus_one`):
  slot0  (FlashMLA tests/ref.py's clamp, backends that gather slot 0): every candidate slot is loaded,
         -1 clamped to slot 0; scores get an additive mask (0 or -inf) *after* q.K is formed, so a
         NaN or +inf score of a masked slot becomes NaN.
  zeroed (FlashMLA sm90/sm100 sparse decode): a -1 candidate loads nothing; its K/V are zero and its
         score is set to -inf by assignment, so whatever the pool holds there is never read.
P = softmax(q K^T * sm_scale + mask), O = P V; with a sink, O *= 1 / (1 + exp(sink - lse)); a query
with no valid candidate gets O = 0.
Exact: the same formula over the valid candidates only, from the unquantized latent.
"""

from __future__ import annotations

import torch

from fp8doctor.reference.cache import PagedCache

B_TOPK = 64
"""Candidate lists are padded with -1 to a multiple of this (FlashMLA's sparse tile width)."""


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y * weight if weight is not None else y


def layer_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), weight, bias, eps)


def rope(x: torch.Tensor, pos: torch.Tensor, theta: float, inverse: bool = False) -> torch.Tensor:
    """Interleaved-pair rotary embedding (DeepSeek's apply_rotary_emb) on the last dim of x [S, ..., d]."""
    d = x.shape[-1]
    freqs = 1.0 / (theta ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d))
    ang = pos.float().unsqueeze(-1) * freqs  # [S, d/2]
    ang = ang.view(ang.shape[0], *([1] * (x.dim() - 2)), d // 2)
    cos, sin = torch.cos(ang), torch.sin(ang)
    if inverse:
        sin = -sin
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), -1).flatten(-2)


def window(q_pos: torch.Tensor, size: int) -> torch.Tensor:
    """Sliding-window candidates [T, size]: positions p-size+1..p, -1 where before the start."""
    offs = torch.arange(size - 1, -1, -1, device=q_pos.device)
    idx = q_pos.unsqueeze(-1) - offs
    return torch.where(idx < 0, torch.full_like(idx, -1), idx)


def topk_positions(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k over finite scores [T, L]; slots beyond the valid count are -1 (as vLLM passes them)."""
    k = min(k, scores.shape[-1])
    vals, idx = scores.topk(k, dim=-1)
    return torch.where(torch.isneginf(vals), torch.full_like(idx, -1), idx)


def candidates(parts: list[torch.Tensor], pad_to: int = B_TOPK) -> torch.Tensor:
    """Concatenate candidate parts and pad with -1 to a multiple of `pad_to`."""
    idx = torch.cat(parts, -1)
    extra = (-idx.shape[-1]) % pad_to
    if extra:
        idx = torch.cat([idx, torch.full((idx.shape[0], extra), -1, dtype=idx.dtype, device=idx.device)], -1)
    return idx


def valid_mask(idx: torch.Tensor, q_pos: torch.Tensor, length: int) -> torch.Tensor:
    """A candidate is valid when it is >= 0, inside the context and not after its query."""
    return (idx >= 0) & (idx < length) & (idx <= q_pos.unsqueeze(-1))


def _sink_factor(lse: torch.Tensor, sink: torch.Tensor | None) -> torch.Tensor:
    if sink is None:
        return torch.ones_like(lse)
    return 1.0 / (1.0 + torch.exp(sink.view(1, -1) - lse))


def sparse_attention_served(q: torch.Tensor, cache: PagedCache, idx: torch.Tensor, q_pos: torch.Tensor,
                            length: int, sm_scale: float, d_v: int, sink: torch.Tensor | None,
                            minus_one: str = "slot0") -> torch.Tensor:
    """q [T, H, D], idx [T, C] sequence positions (-1 = none) -> O [T, H, d_v], kernel-style."""
    valid = valid_mask(idx, q_pos, length)
    slots = cache.slots(torch.where(valid, idx, torch.full_like(idx, -1)))
    kv = cache.gather(slots.clamp_min(0))  # [T, C, D]: the clamped -1 slots are loaded too
    if minus_one == "zeroed":  # nothing loaded for -1: zero K/V, score masked by assignment
        kv = torch.where(valid.unsqueeze(-1), kv, torch.zeros_like(kv))
        scores = torch.einsum("thd,tcd->thc", q, kv) * sm_scale
        scores = scores.masked_fill(~valid.unsqueeze(1), float("-inf"))
    else:
        scores = torch.einsum("thd,tcd->thc", q, kv) * sm_scale
        mask = torch.where(valid, 0.0, float("-inf")).unsqueeze(1)
        scores = scores + mask  # additive: NaN or +inf in a masked slot stays NaN
    lse = torch.logsumexp(scores, -1)  # [T, H]
    lonely = torch.isneginf(lse)
    p = torch.exp(scores - torch.where(lonely, torch.full_like(lse, float("inf")), lse).unsqueeze(-1))
    out = torch.einsum("thc,tcd->thd", p, kv[..., :d_v])
    out = out * _sink_factor(lse, sink).unsqueeze(-1)
    return torch.where(lonely.unsqueeze(-1), torch.zeros_like(out), out)


def sparse_attention_exact(q: torch.Tensor, kv: torch.Tensor, idx: torch.Tensor, q_pos: torch.Tensor,
                           sm_scale: float, d_v: int, sink: torch.Tensor | None) -> torch.Tensor:
    """q [T, H, D], kv [L, D] unquantized -> O [T, H, d_v], each query over its valid candidates only."""
    valid = valid_mask(idx, q_pos, kv.shape[0])
    out = torch.zeros(q.shape[0], q.shape[1], d_v, dtype=torch.float32, device=q.device)
    for t in range(q.shape[0]):
        sel = idx[t][valid[t]]
        if sel.numel() == 0:
            continue
        k = kv[sel]  # [c, D]
        s = (q[t] @ k.t()) * sm_scale  # [H, c]
        lse = torch.logsumexp(s, -1)
        o = torch.softmax(s, -1) @ k[:, :d_v]
        out[t] = o * _sink_factor(lse.unsqueeze(0), sink).squeeze(0).unsqueeze(-1)
    return out
