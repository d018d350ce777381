"""A paged FP8 KV cache in the "ds" layouts of FlashMLA's tests/quant.py, held as raw bytes.

Two layouts (FlashMLA `FP8KVCacheLayout`):
  v32    (V3.2, "V32_FP8Sparse"): per token [d_nope E4M3 | ceil(d_nope/128) F32 power-of-two scales |
         d_rope BF16], pages of `block_size` tokens plus one token of tail padding.
  model1 (V4, "MODEL1_FP8Sparse"): per page [block_size x (d_nope E4M3 + d_rope BF16)] then
         [block_size x (ceil(d_nope/64) E8M0 scales + padding to 8 bytes)], the page rounded up to a
         multiple of 576 bytes.
Scales are chosen as FlashMLA does: 2^ceil(log2(max(amax / 448, 1e-4))). Page 0 is never given to
the sequence (vLLM keeps block 0 as its null block), so a clamped -1 candidate reads page 0, slot 0:
with `init="empty"` that is whatever torch.empty left there (seeded arbitrary bytes here).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fp8doctor.reference.dequant import FP8_MAX, decode_scales, e4m3_table, lookup


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class CacheLayout:
    kind: str  # "v32" | "model1"
    d_nope: int
    d_rope: int
    block_size: int = 64

    @property
    def tile(self) -> int:
        return 128 if self.kind == "v32" else 64

    @property
    def tiles(self) -> int:
        return _cdiv(self.d_nope, self.tile)

    @property
    def scale_bytes(self) -> int:
        """Bytes of one token's scales including its padding."""
        return self.tiles * 4 if self.kind == "v32" else _cdiv(self.tiles + 1, 8) * 8

    @property
    def token_bytes(self) -> int:
        return self.d_nope + 2 * self.d_rope + (self.scale_bytes if self.kind == "v32" else 0)

    @property
    def page_bytes(self) -> int:
        if self.kind == "v32":
            return (self.block_size + 1) * self.token_bytes
        used = self.block_size * (self.d_nope + 2 * self.d_rope + self.scale_bytes)
        return _cdiv(used, 576) * 576

    def describe(self) -> str:
        if self.kind == "v32":
            return (f"v32 'ds' layout: {self.token_bytes} B/token ({self.d_nope} E4M3, {self.tiles} F32 scales, "
                    f"{self.d_rope} BF16 RoPE), {self.block_size} tokens/page")
        return (f"model1 'ds' layout: {self.d_nope} E4M3 + {self.d_rope} BF16 RoPE per token, {self.tiles} E8M0 "
                f"scales + {self.scale_bytes - self.tiles} padding byte(s) per token, {self.page_bytes} B/page")


class PagedCache:
    """The sequence's tokens quantized into pages 1..n of a byte pool; page 0 is the null page."""

    def __init__(self, layout: CacheLayout, num_tokens: int, init: str, gen: torch.Generator,
                 device: torch.device) -> None:
        self.layout = layout
        self.device = device
        pages = 1 + _cdiv(max(num_tokens, 1), layout.block_size)
        if init == "empty":
            self.buf = torch.randint(0, 256, (pages, layout.page_bytes), dtype=torch.uint8, generator=gen).to(device)
        elif init == "zero":
            self.buf = torch.zeros(pages, layout.page_bytes, dtype=torch.uint8, device=device)
        else:
            raise ValueError(f"cache init must be 'empty' or 'zero', not {init!r}")
        self.block_table = torch.arange(1, pages, device=device)

    # -- addressing ------------------------------------------------------------------------------

    def slots(self, positions: torch.Tensor) -> torch.Tensor:
        """Sequence positions -> global cache slots; -1 stays -1 (FlashMLA abs_indices2indices_in_kvcache)."""
        bs = self.layout.block_size
        safe = positions.clamp_min(0)
        slot = self.block_table[safe // bs] * bs + safe % bs
        return torch.where(positions < 0, torch.full_like(slot, -1), slot)

    def _offsets(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(data offset, scale offset) of each slot in the flat pool."""
        lay = self.layout
        page, off = slots // lay.block_size, slots % lay.block_size
        base = page * lay.page_bytes
        if lay.kind == "v32":
            data = base + off * lay.token_bytes
            return data, data + lay.d_nope
        data = base + off * (lay.d_nope + 2 * lay.d_rope)
        return data, base + lay.block_size * (lay.d_nope + 2 * lay.d_rope) + off * lay.scale_bytes

    def _bytes(self, start: torch.Tensor, n: int) -> torch.Tensor:
        return self.buf.view(-1)[start.unsqueeze(-1) + torch.arange(n, device=self.device)]

    # -- write / read ----------------------------------------------------------------------------

    def write(self, latent: torch.Tensor) -> None:
        """Quantize latent [L, d_nope + d_rope] (token i at position i) into the pages."""
        lay = self.layout
        n = latent.shape[0]
        nope, rope = latent[:, :lay.d_nope].float(), latent[:, lay.d_nope:].float()
        pad = lay.tiles * lay.tile - lay.d_nope
        tiles = torch.nn.functional.pad(nope, (0, pad)).view(n, lay.tiles, lay.tile)
        amax = tiles.abs().amax(-1)
        exp = torch.ceil(torch.log2(torch.clamp_min(amax / FP8_MAX, 1e-4)))
        scale = torch.pow(2.0, exp)
        codes = (tiles / scale.unsqueeze(-1)).to(torch.float8_e4m3fn).view(torch.uint8)
        codes = codes.reshape(n, -1)[:, :lay.d_nope]
        if lay.kind == "v32":
            sbytes = scale.float().contiguous().view(torch.uint8).reshape(n, lay.tiles * 4)
        else:
            sbytes = (exp + 127).to(torch.uint8)
        rbytes = rope.to(torch.bfloat16).contiguous().view(torch.uint8).reshape(n, 2 * lay.d_rope)
        data_off, scale_off = self._offsets(self.slots(torch.arange(n, device=self.device)))
        flat = self.buf.view(-1)
        ar = torch.arange
        flat[data_off.unsqueeze(-1) + ar(lay.d_nope, device=self.device)] = codes
        flat[data_off.unsqueeze(-1) + lay.d_nope + (lay.scale_bytes if lay.kind == "v32" else 0)
             + ar(2 * lay.d_rope, device=self.device)] = rbytes
        flat[scale_off.unsqueeze(-1) + ar(sbytes.shape[1], device=self.device)] = sbytes

    def gather(self, slots: torch.Tensor) -> torch.Tensor:
        """Dequantized tokens at `slots` (>= 0) -> float32 [..., d_nope + d_rope], no cleaning:
        NaN codes or scales come back as NaN, as the kernel would load them."""
        lay = self.layout
        shape = slots.shape
        slots = slots.reshape(-1)
        data_off, scale_off = self._offsets(slots)
        codes = self._bytes(data_off, lay.d_nope)
        rope_at = data_off + lay.d_nope + (lay.scale_bytes if lay.kind == "v32" else 0)
        rope = self._bytes(rope_at, 2 * lay.d_rope).contiguous().view(torch.bfloat16).float()
        if lay.kind == "v32":
            scales = decode_scales(self._bytes(scale_off, lay.tiles * 4), "f32")
        else:
            scales = decode_scales(self._bytes(scale_off, lay.tiles), "e8m0")
        per_elem = scales.repeat_interleave(lay.tile, -1)[:, :lay.d_nope]
        nope = lookup(e4m3_table(), codes) * per_elem
        return torch.cat([nope, rope], -1).reshape(*shape, lay.d_nope + lay.d_rope)
