"""In-memory tensors (torch or numpy) as the scan sees a checkpoint's: a safetensors dtype name, a
shape, and raw entries (unsigned ints of the entry width) read row slab by row slab.

torch is never imported here: a torch tensor can only exist once the caller has imported torch, so
`sys.modules` tells whether an object may be one. numpy arrays need nothing beyond numpy (dtypes
numpy lacks, such as float8_e8m0fnu, come from ml_dtypes when the caller uses it).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np

from fp8doctor.checkpoint.header import TensorInfo

_TORCH_DTYPES = {  # torch dtype name -> safetensors dtype
    "float8_e8m0fnu": "F8_E8M0", "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2",
    "float8_e4m3fnuz": "F8_E4M3FNUZ", "float8_e5m2fnuz": "F8_E5M2FNUZ", "float4_e2m1fn_x2": "F4",
    "uint8": "U8", "int8": "I8", "int16": "I16", "uint16": "U16", "float16": "F16", "bfloat16": "BF16",
    "int32": "I32", "uint32": "U32", "float32": "F32", "float64": "F64", "int64": "I64", "uint64": "U64",
    "bool": "BOOL", "complex64": "C64",
}
_NUMPY_DTYPES = {k: v for k, v in _TORCH_DTYPES.items() if v != "F4"}
"""numpy (and ml_dtypes) dtype name -> safetensors dtype (ml_dtypes' FP4 holds one code per byte:
not the packed layout safetensors stores, so not accepted)."""

_RAW_NUMPY: dict[int, Any] = {1: np.uint8, 2: np.dtype("<u2"), 4: np.dtype("<u4"), 8: np.dtype("<u8")}


def torch_module() -> Any:
    """torch when the caller has imported it, else None (then no object can be a torch tensor)."""
    return sys.modules.get("torch")


def is_torch(x: Any) -> bool:
    torch = torch_module()
    return torch is not None and isinstance(x, torch.Tensor)


class UnsupportedTensor(TypeError):
    """An object that is neither a torch tensor nor a numpy array, or a dtype with no safetensors name."""


@dataclass
class MemTensor:
    """One named tensor in memory. `shape` is in safetensors terms (F4 counts elements); `stored`
    is the shape of the entries the checks read: the tensor's own shape, or a larger one when its
    strides skip padding that lies in its storage (see `with_strided_padding`)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    device: str
    obj: Any
    raw: Any = None  # torch or numpy array of unsigned raw entries, of shape `stored`
    stored: tuple[int, ...] = ()
    padded: bool = False
    """True when `stored` reaches past the view, over padding its strides skip."""
    _info: TensorInfo | None = field(default=None, repr=False)

    itemsize: int = 0
    """Bytes per entry."""

    @property
    def raw_itemsize(self) -> int:
        return self.itemsize

    @property
    def torch(self) -> bool:
        return not isinstance(self.raw, np.ndarray)

    @property
    def on_cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def nbytes(self) -> int:
        return math.prod(self.stored) * self.raw_itemsize

    def info(self) -> TensorInfo:
        """The TensorInfo the layout model and the rules take (no file: offsets are 0-based)."""
        if self._info is None or self._info.shape != (self.stored if self.padded else self.shape):
            shape = self.stored if self.padded else self.shape
            self._info = TensorInfo(self.name, self.dtype, shape, 0, self.nbytes, "", 0)
        return self._info

    def rows(self, r0: int, n: int) -> bytes | memoryview:
        """Raw bytes of rows [r0, r0 + n) of the leading axis of `stored` (host memory)."""
        part = self.raw[r0:r0 + n] if self.stored else self.raw
        if is_torch(part):
            part = part.contiguous().cpu().numpy()
        return np.ascontiguousarray(part).reshape(-1).view(np.uint8).data

    def all_bytes(self) -> bytes | memoryview:
        return self.rows(0, self.stored[0] if self.stored else 1)

    def weight_bytes(self, start: int, length: int) -> bytes:
        """Bytes [start, start + length) of the tensor in C order (weights read for zero scales)."""
        flat = self.raw.reshape(-1) if not is_torch(self.raw) else self.raw.contiguous().view(-1)
        if is_torch(flat):
            flat = flat.view(_torch_raw(1))
            return flat[start:start + length].cpu().numpy().tobytes()
        return np.ascontiguousarray(flat).view(np.uint8)[start:start + length].tobytes()


def _torch_raw(itemsize: int) -> Any:
    torch = torch_module()
    return {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[itemsize]


_BY_TORCH_DTYPE: dict[Any, tuple[str | None, int, Any]] = {}
"""torch dtype -> (safetensors dtype or None, entry size, raw torch dtype): a model has ~100k
tensors of a few dtypes, so each is looked up once."""


def _torch_kind(dtype: Any) -> tuple[str | None, int, Any]:
    kind = _BY_TORCH_DTYPE.get(dtype)
    if kind is None:
        size = dtype.itemsize
        kind = _BY_TORCH_DTYPE[dtype] = (_TORCH_DTYPES.get(str(dtype)[6:]), size, _torch_raw(size))  # "torch.float32"
    return kind


def wrap(name: str, obj: Any) -> MemTensor:
    """A MemTensor for a torch tensor or numpy array; UnsupportedTensor for anything else."""
    if is_torch(obj):
        dtype, size, raw_dtype = _torch_kind(obj.dtype)
        if dtype is None:
            raise UnsupportedTensor(f"{name}: torch dtype {str(obj.dtype)[6:]} has no safetensors name")
        stored = shape = tuple(obj.shape)
        if dtype == "F4" and shape:
            shape = (*shape[:-1], shape[-1] * 2)
        return MemTensor(name, dtype, shape, str(obj.device), obj, obj.view(raw_dtype), stored, itemsize=size)
    if isinstance(obj, np.ndarray):
        dtype = _NUMPY_DTYPES.get(obj.dtype.name)
        if dtype is None:
            raise UnsupportedTensor(f"{name}: numpy dtype {obj.dtype} has no safetensors name")
        raw = obj.view(_RAW_NUMPY[obj.dtype.itemsize])
        shape = tuple(int(d) for d in obj.shape)
        return MemTensor(name, dtype, shape, "cpu", obj, raw, shape, itemsize=obj.dtype.itemsize)
    raise UnsupportedTensor(f"{name}: {type(obj).__name__} is neither a torch tensor nor a numpy array")


def strided_extent(shape: tuple[int, ...], strides: tuple[int, ...]) -> tuple[int, ...] | None:
    """The padded shape whose dense storage these strides walk, in the tensor's own axis order: an
    axis whose next-larger stride skips entries beyond it is padded up to that stride (DeepGEMM's
    TMA-aligned scales are [M, K] views with strides (1, align(M, 4)) over a [K, align(M, 4)]
    buffer). None when the strides are not a dense layout with padding (plain slices, broadcasts)."""
    if not shape or any(s <= 0 for d, s in zip(shape, strides) if d > 1):
        return None
    order = sorted(range(len(shape)), key=lambda a: (strides[a], shape[a]))
    if strides[order[0]] != 1:
        return None
    padded = list(shape)
    for a, b in pairwise(order):
        if strides[b] % strides[a] or strides[b] // strides[a] < shape[a]:
            return None
        padded[a] = strides[b] // strides[a]
    padded_t = tuple(padded)
    return padded_t if padded_t != tuple(shape) else None


def with_strided_padding(t: MemTensor) -> bool:
    """Extend `t.stored` over the padding its strides skip, when that padding lies inside its
    storage (torch tensors only). Returns True when the tensor now has more stored entries."""
    if not is_torch(t.obj):
        return False
    obj = t.obj
    padded = strided_extent(tuple(obj.shape), tuple(obj.stride()))
    if padded is None:
        return False
    last = obj.storage_offset() + sum((p - 1) * s for p, s in zip(padded, obj.stride()))
    if (last + 1) * obj.element_size() > obj.untyped_storage().nbytes():
        return False
    torch = torch_module()
    t.raw = torch.as_strided(t.raw, padded, obj.stride(), obj.storage_offset())
    t.stored = padded
    t.padded = True
    return True
