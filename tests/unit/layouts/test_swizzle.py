"""layouts/swizzle.py against torchao's own to_blocked / from_blocked (the producer's code)."""

from __future__ import annotations

import numpy as np
import pytest

from fp8doctor.layouts.swizzle import Swizzle, ranges_of

torch = pytest.importorskip("torch")
utils = pytest.importorskip("torchao.prototype.mx_formats.utils")


@pytest.mark.parametrize("rows,cols", [(320, 10), (160, 20), (640, 20), (1, 1), (129, 5), (256, 8), (7, 3)])
def test_permutation_is_torchaos_to_blocked(rows, cols):
    grid = torch.arange(rows * cols, dtype=torch.int64).reshape(rows, cols) + 1
    stored = utils.to_blocked(grid).numpy()
    sw = Swizzle(rows, cols)
    assert stored.size == sw.stored_shape[0] * sw.stored_shape[1]
    assert (sw.to_canonical(stored)[:rows, :cols] == grid.numpy()).all()
    assert ((stored == 0) == sw.padding_mask()).all()  # to_blocked zero-pads exactly there
    back = utils.from_blocked(torch.as_tensor(stored), rows, cols).numpy()
    assert (back == grid.numpy()).all()
    flat = np.zeros(stored.size, dtype=bool)
    for a, b in ranges_of(sw.padding_mask()):
        flat[a:b] = True
    assert (flat == sw.padding_mask()).all()
    assert sw.fits(sw.stored_shape) and not sw.fits((rows, cols + 1000))
