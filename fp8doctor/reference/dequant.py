"""Quantized weights decoded from raw bytes, and block-scaled GEMMs computed two ways.

exact:     logical weight region only, each element times its logical scale; padding never read.
as served: what a block-scaled kernel (DeepGEMM, vLLM's Triton w8a8, MX tensor-core MMA) does: it
           tiles over the stored, padded scale grid, forms one partial sum per K block and multiplies
           it by that block's scale. Weight elements whose scale entry is padding are materialised
           as arbitrary (seeded) codes: a zero-exponent scale must neutralise whatever they hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

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
    _served: torch.Tensor | None = field(default=None, repr=False)

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

    def served_codes(self, gen: torch.Generator) -> torch.Tensor:
        """Code values over the whole grid extent, as the emulated kernel sees them: stored values
        under real scales, arbitrary finite codes wherever the scale entry is padding, zeros past the
        stored tensor under real scales (TMA fills out-of-bounds tiles with zeros)."""
        if self._served is None:
            gn, gk = self.grid_extent
            sn, sk = self.stored
            r, c = self.logical_grid
            v = torch.zeros(gn, gk, dtype=torch.float32, device=self.codes.device)
            v[:min(sn, gn), :min(sk, gk)] = self.values()[:gn, :gk]
            table = e4m3_table() if self.fmt == "e4m3" else e2m1_table()
            finite = table[torch.isfinite(table)]
            pr, pc = r * self.block[0], c * self.block[1]  # first padded row / column of elements
            if pr < gn:
                idx = torch.randint(0, finite.numel(), (gn - pr, gk), generator=gen)
                v[pr:] = finite[idx].to(v.device)
            if pc < gk:
                idx = torch.randint(0, finite.numel(), (min(pr, gn), gk - pc), generator=gen)
                v[:min(pr, gn), pc:] = finite[idx].to(v.device)
            self._served = v
        return self._served

    def release(self) -> None:
        self._values = self._exact = self._served = None


def linear_exact(x: torch.Tensor, w: QuantWeight) -> torch.Tensor:
    """x [..., >=k] @ W_logical^T -> [..., n]."""
    return x[..., :w.logical[1]] @ w.exact_weight().t()


def linear_served(x: torch.Tensor, w: QuantWeight, gen: torch.Generator, max_elems: int = 1 << 25) -> torch.Tensor:
    """Block-scaled GEMM over the stored scale grid: out = sum_kb (x_kb . W_kb) * s[n, kb].

    Activations are zero past their own width (the kernel's out-of-bounds fill); the output keeps
    the weight's stored N (what a kernel writes into a buffer sized from the weight)."""
    lead = x.shape[:-1]
    x = x.reshape(-1, x.shape[-1])
    t = x.shape[0]
    gn, gk = w.grid_extent
    bn, bk = w.block
    c = w.scales.shape[1]
    xp = torch.zeros(t, gk, dtype=torch.float32, device=x.device)
    xp[:, :min(gk, x.shape[1])] = x[:, :gk]
    v = w.served_codes(gen)
    s = w.scales.repeat_interleave(bn, 0)[:gn]  # [GN, C]
    out = torch.zeros(t, gn, dtype=torch.float32, device=x.device)
    step = max(1, max_elems // max(1, t * gn))
    for c0 in range(0, c, step):
        c1 = min(c, c0 + step)
        xb = xp[:, c0 * bk:c1 * bk].reshape(t, c1 - c0, bk).transpose(0, 1)  # [Cb, T, bk]
        vb = v[:, c0 * bk:c1 * bk].reshape(gn, c1 - c0, bk).permute(1, 2, 0)  # [Cb, bk, GN]
        partial = torch.bmm(xb, vb)  # one partial sum per K block, as the kernel forms it
        out += (partial * s[:, c0:c1].t().unsqueeze(1)).sum(0)
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
