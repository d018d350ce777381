"""Pause Python's cyclic garbage collector while building many small acyclic objects.

Reading a DeepSeek-V3 checkpoint's headers creates ~90,000 tensor entries (dicts, lists, tuples,
TensorInfo, ScaleLayout); every 700 allocations the collector runs, and its full passes walk all
of them again: ~10% of the header work. None of these objects form cycles (reference counting
frees them), so the collector is paused for the duration and restored to its prior state after.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
