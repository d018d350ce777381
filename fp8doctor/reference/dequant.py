"""Quantized weights decoded from raw bytes, and block-scaled GEMMs computed three ways.

exact:     logical weight region only, each element times its logical scale; padding never read;
           activations unquantized.
quantized: the exact GEMM with only the served kernel's own rounding added: activations quantized
           to E4M3 per 128-element token group (DeepSeek kernel.py act_quant). It never reads a
           padded byte; its error against exact is what the stage tolerances are calibrated from.
as served: what a block-scaled kernel does with the stored bytes: activations quantized the same
           way, one partial sum per K block times Scale_C = a_s * b_s (fp8_gemm_kernel), over the
           scale blocks the GEMM rule reads ("shape": ceil(N/bn) x ceil(K/bk) of the weight's stored
           shape; "tiled": every entry of the stored, padded grid). Weight elements are the stored
           codes; with `worst_case`, arbitrary (seeded) finite codes wherever the scale entry is
           padding (a zero-exponent scale must neutralise whatever they hold).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

FP8_MAX = 448.0
_CHUNK = 1 << 24  # elements decoded per table lookup: bounds the int64 index temporary


def e4m3_table() -> torch.Tensor:
    """float32 value of each E4M3FN byte; 0x7F and 0xFF are NaN (OCP FP8, the 'fn' variant): the
    table of layouts/encodings.py, as a tensor."""
    from fp8doctor.layouts.encodings import E4M3FN_TABLE

    return torch.from_numpy(E4M3FN_TABLE.copy())


def e2m1_table() -> torch.Tensor:
    """float32 value of each FP4 E2M1 nibble (OCP MX): no NaN, no infinity."""
    pos = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
    return torch.tensor(pos + [-v for v in pos], dtype=torch.float32)


def lookup(table: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """table[codes] for a uint8 tensor, in chunks (an int64 index of a 100M-element weight is 800 MB)."""
    table = table.to(codes.device)
    flat = codes.reshape(-1)
    out = torch.empty(flat.numel(), dtype=torch.float32, device=codes.device)
    for i in range(0, flat.numel(), _CHUNK):
        out[i:i + _CHUNK] = torch.take(table, flat[i:i + _CHUNK].long())
    return out.view(codes.shape)


def unpack_fp4(packed: torch.Tensor) -> torch.Tensor:
    """[..., K/2] bytes -> [..., K] nibble codes, low nibble first (element 2i is the low nibble)."""
    low = packed & 0x0F
    high = packed >> 4
    return torch.stack((low, high), dim=-1).reshape(*packed.shape[:-1], packed.shape[-1] * 2)


def decode_scales(raw: torch.Tensor, encoding: str) -> torch.Tensor:
    """Scale bytes (uint8, last dim = entries * itemsize) -> float32 values, as torch's `.float()`
    reads them: E8M0 byte b is 2^(b-127), 0xFF is NaN, 0x00 is 2^-127."""
    if encoding == "e8m0":
        vals = torch.ldexp(torch.ones_like(raw, dtype=torch.float32), raw.to(torch.int32) - 127)
        return torch.where(raw == 0xFF, torch.full_like(vals, float("nan")), vals)
    if encoding == "e4m3":
        return lookup(e4m3_table(), raw)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[encoding]
    return raw.contiguous().view(dtype).float()


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _expand(s: torch.Tensor, block: tuple[int, int], rows: int, cols: int) -> torch.Tensor:
    return s.repeat_interleave(block[0], 0)[:rows].repeat_interleave(block[1], 1)[:, :cols]


@dataclass
class QuantWeight:
    """One 2-D quantized weight with its scale grid, both as stored."""

    name: str
    codes: torch.Tensor  # uint8 [N_stored, K_stored], one code per element (FP4 unpacked)
    fmt: str  # "e4m3" | "e2m1"
    scales: torch.Tensor  # float32 [R, C], the stored (possibly padded) grid
    block: tuple[int, int]
    logical: tuple[int, int]  # real weight shape (<= stored)
    logical_grid: tuple[int, int]  # real scale entries (<= stored grid)
    _values: torch.Tensor | None = field(default=None, repr=False)
    _exact: torch.Tensor | None = field(default=None, repr=False)
    scale_name: str = ""
    _served: dict[tuple[str, bool], torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def stored(self) -> tuple[int, int]:
        return (self.codes.shape[0], self.codes.shape[1])

    @property
    def grid_extent(self) -> tuple[int, int]:
        """Weight elements the stored scale grid covers (what a kernel tiles over)."""
        return (self.scales.shape[0] * self.block[0], self.scales.shape[1] * self.block[1])

    def values(self) -> torch.Tensor:
        if self._values is None:
            self._values = lookup(e4m3_table() if self.fmt == "e4m3" else e2m1_table(), self.codes)
        return self._values

    def exact_weight(self) -> torch.Tensor:
        """Dequantized logical region [n, k]: logical codes times logical scales, nothing else."""
        if self._exact is None:
            n, k = self.logical
            r, c = self.logical_grid
            self._exact = self.values()[:n, :k] * _expand(self.scales[:r, :c], self.block, n, k)
        return self._exact

    def read_grid(self, rule: str) -> tuple[int, int]:
        """Scale blocks the GEMM reads: all stored ones ("tiled"), or those the weight's stored shape
        implies ("shape": ceil(N/bn) x ceil(K/bk), the loop bounds of DeepSeek's fp8_gemm)."""
        if rule == "tiled":
            return (self.scales.shape[0], self.scales.shape[1])
        sn, sk = self.stored
        return (min(_cdiv(sn, self.block[0]), self.scales.shape[0]),
                min(_cdiv(sk, self.block[1]), self.scales.shape[1]))

    def grid_fits_weight(self) -> bool:
        """What DeepGEMM's check_sf_layout and vLLM's w8a8_triton_block_scaled_mm assert before they
        run: the stored grid is exactly cdiv(N, bn) x cdiv(K, bk) of the weight."""
        sn, sk = self.stored
        return (self.scales.shape[0], self.scales.shape[1]) == (_cdiv(sn, self.block[0]), _cdiv(sk, self.block[1]))

    def served_codes(self, gen: torch.Generator, rule: str = "tiled", worst_case: bool = False) -> torch.Tensor:
        """Code values over the read extent, as the emulated kernel sees them: the stored codes,
        zeros past the stored tensor (TMA fills out-of-bounds tiles with zeros); with `worst_case`,
        arbitrary finite codes wherever the scale entry is padding."""
        key = (rule, worst_case)
        if key not in self._served:
            rr, rc = self.read_grid(rule)
            gn, gk = rr * self.block[0], rc * self.block[1]
            sn, sk = self.stored
            r, c = self.logical_grid
            v = torch.zeros(gn, gk, dtype=torch.float32, device=self.codes.device)
            v[:min(sn, gn), :min(sk, gk)] = self.values()[:gn, :gk]
            if worst_case:
                table = e4m3_table() if self.fmt == "e4m3" else e2m1_table()
                finite = table[torch.isfinite(table)]
                pr, pc = r * self.block[0], c * self.block[1]  # first padded row / column of elements
                if pr < gn:
                    idx = torch.randint(0, finite.numel(), (gn - pr, gk), generator=gen)
                    v[pr:] = finite[idx].to(v.device)
                if pc < gk:
                    idx = torch.randint(0, finite.numel(), (min(pr, gn), gk - pc), generator=gen)
                    v[:min(pr, gn), pc:] = finite[idx].to(v.device)
            self._served[key] = v
        return self._served[key]

    def release(self) -> None:
        self._values = self._exact = None
        self._served = {}


def linear_exact(x: torch.Tensor, w: QuantWeight) -> torch.Tensor:
    """x [..., >=k] @ W_logical^T -> [..., n]."""
    return x[..., :w.logical[1]] @ w.exact_weight().t()


ACT_GROUP = 128
"""Activations are quantized per token and per 128-element group (DeepSeek kernel.py act_quant,
vLLM per_token_group_quant_fp8 with group 128)."""


def act_quant(x: torch.Tensor, round_scale: bool, group: int = ACT_GROUP) -> tuple[torch.Tensor, torch.Tensor]:
    """x [T, K] (K a multiple of `group`) -> (E4M3 code values [T, K] as float32, scales [T, K/group]).

    DeepSeek-V3.2-Exp inference/kernel.py act_quant_kernel: amax = max(|x|, 1e-4) per group,
    s = amax * (1/448), or with scale_fmt (ue8m0) s = 2^ceil(log2(that)); y = E4M3(clamp(x / s))."""
    t, k = x.shape
    g = x.reshape(t, k // group, group)
    amax = g.abs().amax(-1).clamp_min(1e-4)
    s = amax * (1 / FP8_MAX)  # the kernel multiplies by fp8_max_inv
    if round_scale:
        s = torch.exp2(torch.ceil(torch.log2(s)))
    y = (g / s.unsqueeze(-1)).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn).float()
    return y.reshape(t, k), s


def _pad_cols(x: torch.Tensor, width: int) -> torch.Tensor:
    out = torch.zeros(x.shape[0], width, dtype=torch.float32, device=x.device)
    out[:, :min(width, x.shape[1])] = x[:, :width]
    return out


def linear_quantized(x: torch.Tensor, w: QuantWeight, round_scale: bool) -> torch.Tensor:
    """The exact GEMM on activations quantized as the kernel quantizes them; reads no padding."""
    lead = x.shape[:-1]
    k = w.logical[1]
    x2 = x.reshape(-1, x.shape[-1])
    xp = _pad_cols(x2, _cdiv(k, ACT_GROUP) * ACT_GROUP)
    codes, s = act_quant(xp, round_scale)
    xq = (codes * s.repeat_interleave(ACT_GROUP, 1))[:, :k]
    return (xq @ w.exact_weight().t()).reshape(*lead, w.logical[0])


def linear_served(x: torch.Tensor, w: QuantWeight, gen: torch.Generator, max_elems: int = 1 << 25, *,
                  rule: str = "tiled", worst_case: bool = False, quantize: bool = True,
                  round_scale: bool = False) -> torch.Tensor:
    """Block-scaled GEMM: out = sum over K blocks of (x_q . W_kb) * (a_s * b_s[n, kb]).

    The scale blocks read follow `rule` (QuantWeight.read_grid). Activations are zero past their
    own width (the kernel's out-of-bounds fill) and, with `quantize`, quantized per token group as
    act_quant does; Scale_C = a_s * b_s is formed first, in float32, as fp8_gemm_kernel does (so a
    huge b_s that overflows only with the activation scale is seen). The output keeps the weight's
    stored N (what a kernel writes into a buffer sized from the weight)."""
    lead = x.shape[:-1]
    x = x.reshape(-1, x.shape[-1])
    t = x.shape[0]
    v = w.served_codes(gen, rule, worst_case)
    gn, gk = v.shape
    bn, bk = w.block
    rr, rc = w.read_grid(rule)
    if quantize:
        width = _cdiv(gk, ACT_GROUP) * ACT_GROUP
        codes, a_s = act_quant(_pad_cols(x, width), round_scale)
        sub = math.gcd(bk, ACT_GROUP)
    else:
        codes, a_s = _pad_cols(x, gk), torch.ones(t, 1, device=x.device)
        sub = bk
    nsub = gk // sub
    b_s = w.scales[:rr, :rc].repeat_interleave(bn, 0)[:gn]  # [GN, rc]
    sub_ks = torch.arange(nsub, device=x.device) * sub
    a_idx = (sub_ks // ACT_GROUP) if quantize else torch.zeros_like(sub_ks)
    b_idx = sub_ks // bk
    out = torch.zeros(t, gn, dtype=torch.float32, device=x.device)
    step = max(1, max_elems // max(1, t * gn))
    for c0 in range(0, nsub, step):
        c1 = min(nsub, c0 + step)
        xb = codes[:, c0 * sub:c1 * sub].reshape(t, c1 - c0, sub).transpose(0, 1)  # [S, T, sub]
        vb = v[:, c0 * sub:c1 * sub].reshape(gn, c1 - c0, sub).permute(1, 2, 0)  # [S, sub, GN]
        partial = torch.bmm(xb, vb)  # one partial sum per K block, as the kernel forms it
        scale_c = a_s[:, a_idx[c0:c1]].t().unsqueeze(-1) * b_s[:, b_idx[c0:c1]].t().unsqueeze(1)  # [S, T, GN]
        out += (partial * scale_c).sum(0)
    n_out = min(w.stored[0], gn)
    return out[:, :n_out].reshape(*lead, n_out)


@dataclass
class FloatWeight:
    """An unquantized weight (BF16/F32): both paths use it as is."""

    name: str
    weight: torch.Tensor  # float32 [N, K]

    @property
    def logical(self) -> tuple[int, int]:
        return (self.weight.shape[0], self.weight.shape[1])

    @property
    def stored(self) -> tuple[int, int]:
        return self.logical

    def release(self) -> None:
        pass
