"""Swizzled scale layouts: where each logical scale entry lives in the stored tensor.

torchao stores MX and NVFP4 scales in the cuBLAS block-scaling layout (`to_blocked`,
torchao/prototype/mx_formats/utils.py): the logical [rows, groups] grid is zero-padded to
[128 * ceil(rows / 128), 4 * ceil(groups / 4)], cut into 128x4 tiles taken row-block by
column-block, and each tile stored as 32 lines of 16 (line j holds rows j, j+32, j+64, j+96 of
the tile, 4 columns each). The stored tensor is [32 * ceil(rows / 128), 16 * ceil(groups / 4)].
Its padding is spread through the tiles, not a box at the origin: every check and every repair
goes through the permutation below.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

TILE_ROWS, TILE_COLS = 128, 4


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class Swizzle:
    """The `to_blocked` permutation for a logical grid of `rows` x `cols` scale entries."""

    rows: int
    cols: int
    name: str = "torchao-128x4"

    @property
    def padded(self) -> tuple[int, int]:
        """The logical grid rounded up to whole tiles: the canonical (unswizzled) shape."""
        return _cdiv(self.rows, TILE_ROWS) * TILE_ROWS, _cdiv(self.cols, TILE_COLS) * TILE_COLS

    @property
    def stored_shape(self) -> tuple[int, int]:
        r, c = self.padded
        return r // 4, c * 4

    def fits(self, shape: tuple[int, ...]) -> bool:
        """True when a stored tensor of `shape` holds exactly this grid swizzled."""
        r, c = self.padded
        n = 1
        for d in shape:
            n *= d
        return n == r * c and (tuple(shape) == self.stored_shape or len(shape) == 1)

    def canonical_of_stored(self) -> np.ndarray:
        """perm[f] = canonical flat index (row-major in the padded grid) of stored entry f."""
        return _perm(self.rows, self.cols)

    def stored_of_canonical(self) -> np.ndarray:
        """inv[g] = stored flat index of canonical entry g."""
        return _inv(self.rows, self.cols)

    def to_canonical(self, stored: np.ndarray) -> np.ndarray:
        """Stored entries (any shape, this many elements) -> the padded logical grid."""
        flat = np.asarray(stored).reshape(-1)
        grid: np.ndarray = flat[self.stored_of_canonical()].reshape(self.padded)
        return grid

    def padding_mask(self) -> np.ndarray:
        """Flat boolean mask over stored entries, True on padding."""
        return _padding_flat(self.rows, self.cols)


@lru_cache(maxsize=256)
def _perm(rows: int, cols: int) -> np.ndarray:
    pr, pc = _cdiv(rows, TILE_ROWS) * TILE_ROWS, _cdiv(cols, TILE_COLS) * TILE_COLS
    grid = np.arange(pr * pc, dtype=np.int64).reshape(pr // TILE_ROWS, TILE_ROWS, pc // TILE_COLS, TILE_COLS)
    # the same view/permute/reshape chain as torchao's to_blocked, on canonical indices
    blocks = grid.transpose(0, 2, 1, 3)  # (row block, col block, 128, 4)
    tiles = blocks.reshape(-1, 4, 32, 4).transpose(0, 2, 1, 3)  # (tile, 32 lines, 4 sub-rows, 4 cols)
    out = np.ascontiguousarray(tiles).reshape(-1)
    out.setflags(write=False)
    return out


@lru_cache(maxsize=256)
def _inv(rows: int, cols: int) -> np.ndarray:
    perm = _perm(rows, cols)
    inv = np.empty_like(perm)
    inv[perm] = np.arange(perm.size, dtype=np.int64)
    inv.setflags(write=False)
    return inv


@lru_cache(maxsize=256)
def _padding_flat(rows: int, cols: int) -> np.ndarray:
    pc = _cdiv(cols, TILE_COLS) * TILE_COLS
    perm = _perm(rows, cols)
    r, c = perm // pc, perm % pc
    mask = (r >= rows) | (c >= cols)
    mask.setflags(write=False)
    return mask


def ranges_of(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open runs of True in a flat boolean mask."""
    m = np.asarray(mask, dtype=np.int8).reshape(-1)
    if not m.size:
        return []
    edges = np.flatnonzero(np.diff(np.concatenate(([0], m, [0]))))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]
