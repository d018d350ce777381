"""Unit tests of layouts/encodings.py: every encoding record's facts (dtypes, width, raw view, fills,
decode, exponent range, histogram field) checked against references that do not come from fp8doctor:
the OCP/IEEE definitions computed here, numpy's float16/float32, and torch's float8 and bfloat16
dtypes where torch is installed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fp8doctor.checkpoint.dtypes import nbytes
from fp8doctor.layouts import encodings as enc
from fp8doctor.layouts.encodings import (
    ALL,
    BF16,
    BY_DTYPE,
    BY_NAME,
    E4M3,
    E4M3FN_TABLE,
    E8M0,
    EXPONENT_OFFSET,
    F16,
    F32,
    FLOAT_ENCODINGS,
    PLAUSIBLE_LOG2,
    encoding,
    of_dtype,
)
from tests.helpers.scale_values import values

EVERY_BYTE = np.arange(256, dtype=np.uint8)
EVERY_U16 = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)


def _torch():
    return pytest.importorskip("torch")


def _same_floats(a: np.ndarray, b: np.ndarray) -> None:
    """Equal as float32 bit patterns, except that any NaN equals any NaN."""
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    assert a.shape == b.shape
    assert np.array_equal(np.isnan(a), np.isnan(b))
    keep = ~np.isnan(a)
    assert np.array_equal(a[keep].view(np.uint32), b[keep].view(np.uint32))


def _every_entry(e) -> np.ndarray:
    """Every raw entry of a 1- or 2-byte encoding; for F32 the edges of each binade and specials."""
    if e.itemsize == 1:
        return EVERY_BYTE
    if e.itemsize == 2:
        return EVERY_U16
    bits = [0, 1, 2, 0x007FFFFF, 0x00800000, 0x3F800000, 0x3F800001, 0x7F7FFFFF, 0x7F800000, 0x7FC00000,
            0x80000000, 0x80000001, 0xBF800000, 0xFF800000, 0xFFFFFFFF]
    bits += [(x << 23) | m for x in range(256) for m in (0, 1, 0x7FFFFF)]
    return np.array(bits, dtype=np.uint64).astype(np.uint32)


# -- the registry -------------------------------------------------------------------------------


def test_the_registry_has_one_record_per_encoding():
    assert len({e.name for e in ALL}) == len(ALL)
    assert BY_NAME == {"e8m0": E8M0, "f32": F32, "bf16": BF16, "f16": F16, "e4m3": E4M3}
    assert BY_DTYPE == {"F8_E8M0": E8M0, "U8": E8M0, "F32": F32, "BF16": BF16, "F16": F16, "F8_E4M3": E4M3}
    assert all(encoding(e.name) is e for e in ALL)
    assert of_dtype("U8") is E8M0  # gpt-oss / compressed-tensors MXFP4 store E8M0 exponents as U8
    assert of_dtype("I8") is None and of_dtype("F8_E5M2") is None and of_dtype("F64") is None
    with pytest.raises(KeyError):
        encoding("e5m2")
    assert FLOAT_ENCODINGS == {"f32", "bf16", "f16"}
    assert {e.name for e in ALL if e.ieee_float} == FLOAT_ENCODINGS


@pytest.mark.parametrize("e", ALL, ids=lambda e: e.name)
def test_width_and_raw_view_agree_with_the_safetensors_dtypes(e):
    for dtype in e.dtypes:
        assert nbytes(dtype, 1) == e.itemsize, dtype  # checkpoint/dtypes.py's independent bit table
    assert e.raw.kind == "u"  # an unsigned view: fill comparisons and histograms work on bits
    assert e.raw.itemsize == e.itemsize
    assert e.raw.byteorder in ("<", "|", "=") and (e.itemsize == 1 or e.raw.str.startswith("<"))  # little-endian
    assert {"F32": 4, "BF16": 2, "F16": 2}.get(e.dtypes[0], 1) == e.itemsize


# -- fills --------------------------------------------------------------------------------------


@pytest.mark.parametrize("e", ALL, ids=lambda e: e.name)
def test_fills_are_one_entry_of_zero_and_of_one(e):
    assert set(e.fills) == {"zero", "one"}
    values = {}
    for name, raw in e.fills.items():
        assert isinstance(raw, bytes) and len(raw) == e.itemsize, name
        values[name] = float(e.to_float(np.frombuffer(raw, dtype=e.raw))[0])
    assert values["one"] == 1.0
    if e is E8M0:  # E8M0 has no zero: its "zero" fill is byte 0x00, the smallest scale 2^-127
        assert e.fills["zero"] == b"\x00" and values["zero"] == 2.0 ** -127
    else:
        assert values["zero"] == 0.0 and e.fills["zero"] == bytes(e.itemsize)


# -- decode against independent references -------------------------------------------------------


def test_e8m0_decodes_byte_b_to_two_to_the_b_minus_127():
    got = E8M0.to_float(EVERY_BYTE.copy())
    assert got.dtype == np.float32
    assert np.isnan(got[0xFF]) and np.isnan(got).sum() == 1
    for b in range(255):
        assert got[b] == math.ldexp(1.0, b - 127), b  # Python floats: exact for all of 2^-127..2^127
    assert got[0x00] == 2.0 ** -127 and got[0x7F] == 1.0 and got[0xFE] == 2.0 ** 127


def test_e8m0_decodes_as_torch_float8_e8m0fnu():
    torch = _torch()
    if not hasattr(torch, "float8_e8m0fnu"):
        pytest.skip("this torch has no float8_e8m0fnu")
    ref = torch.from_numpy(EVERY_BYTE.copy()).view(torch.float8_e8m0fnu).float().numpy()
    _same_floats(E8M0.to_float(EVERY_BYTE.copy()), ref)


def test_e4m3fn_table_follows_the_ocp_definition():
    """OCP FP8 E4M3 ('fn': no infinities; S.1111.111 is NaN): bias 7, 3 mantissa bits, subnormals."""
    assert E4M3FN_TABLE.shape == (256,) and E4M3FN_TABLE.dtype == np.float32
    assert not E4M3FN_TABLE.flags.writeable
    _same_floats(E4M3FN_TABLE, values("e4m3", EVERY_BYTE))
    assert E4M3FN_TABLE[0x7E] == 448.0 and E4M3FN_TABLE[0x01] == 2.0 ** -9 and E4M3FN_TABLE[0x38] == 1.0
    assert np.isnan(E4M3FN_TABLE).sum() == 2 and not np.isinf(E4M3FN_TABLE).any()
    assert np.signbit(E4M3FN_TABLE[0x80]) and E4M3FN_TABLE[0x80] == 0.0  # negative zero


def test_e4m3_decodes_as_torch_float8_e4m3fn():
    torch = _torch()
    ref = torch.from_numpy(EVERY_BYTE.copy()).view(torch.float8_e4m3fn).float().numpy()
    _same_floats(E4M3FN_TABLE, ref)
    _same_floats(E4M3.to_float(EVERY_BYTE.copy()), ref)


def test_f16_decodes_as_numpy_float16():
    _same_floats(F16.to_float(EVERY_U16.copy()), EVERY_U16.view(np.float16).astype(np.float32))


def test_bf16_decodes_as_the_top_half_of_a_float32():
    ref = (EVERY_U16.astype(np.uint32) << 16).view(np.float32)  # bfloat16 is float32 truncated to 16 bits
    _same_floats(BF16.to_float(EVERY_U16.copy()), ref)
    assert BF16.to_float(np.array([0x3F80, 0xBF80, 0x7F80, 0x0001], dtype=np.uint16)).tolist() == [
        1.0, -1.0, math.inf, 2.0 ** -133]


def test_bf16_decodes_as_torch_bfloat16():
    torch = _torch()
    ref = torch.from_numpy(EVERY_U16.view(np.int16).copy()).view(torch.bfloat16).float().numpy()
    _same_floats(BF16.to_float(EVERY_U16.copy()), ref)


def test_f32_decodes_its_bits_as_float32():
    bits = _every_entry(F32)
    _same_floats(F32.to_float(bits.copy()), bits.view(np.float32))


@pytest.mark.parametrize("e", ALL, ids=lambda e: e.name)
def test_decode_reads_any_raw_array_of_the_encoding(e):
    """to_float keeps the shape, returns float32, and reads a strided (non-contiguous) view as its copy."""
    raw = _every_entry(e)[: 4 * 60].reshape(4, 60)
    whole = e.to_float(raw.copy())
    assert whole.dtype == np.float32 and whole.shape == (4, 60)
    strided = raw[::2, 1::3]
    assert not strided.flags.c_contiguous
    _same_floats(e.to_float(strided), e.to_float(strided.copy()))
    _same_floats(e.to_float(strided), whole[::2, 1::3])


# -- exponent range, thresholds and the histogram field -----------------------------------------------


@pytest.mark.parametrize("e", ALL, ids=lambda e: e.name)
def test_exponent_range_is_that_of_the_positive_finite_values(e):
    with np.errstate(all="ignore"):
        x = e.to_float(_every_entry(e).copy()).astype(np.float64)
    pos = x[np.isfinite(x) & (x > 0)]
    exps = np.floor(np.log2(pos)).astype(int)
    assert e.exponent_range == (int(exps.min()), int(exps.max()))


def test_exponent_ranges_are_the_textbook_ones():
    assert E8M0.exponent_range == (-127, 127)
    assert E4M3.exponent_range == (-9, 8)  # 2^-9 subnormal .. 448 = 1.75 * 2^8
    assert F16.exponent_range == (-24, 15)
    assert F32.exponent_range == (-149, 127)
    assert BF16.exponent_range == (-133, 127)
    assert F32.subnormal_below == BF16.subnormal_below == np.finfo(np.float32).minexp == -126
    assert EXPONENT_OFFSET + min(e.exponent_range[0] for e in ALL) > 0  # every exponent a non-negative bin


@pytest.mark.parametrize("e", ALL, ids=lambda e: e.name)
def test_plausible_window_is_set_exactly_where_the_encoding_reaches_beyond_it(e):
    lo, hi = PLAUSIBLE_LOG2
    reaches_beyond = e.exponent_range[0] < lo or e.exponent_range[1] > hi
    assert (e.plausible is not None) == reaches_beyond
    if e.plausible is not None:
        assert e.plausible == PLAUSIBLE_LOG2


@pytest.mark.parametrize("e", [e for e in ALL if e.exponent_field is not None], ids=lambda e: e.name)
def test_exponent_field_gives_the_binary_exponent_of_valid_entries(e):
    """`raw >> shift` is the sign+exponent field; the fields lo..hi are exactly the positive, normal,
    finite entries whose exponent lies in the plausibility window; field - bias is that exponent;
    `mantissa` marks entries that are not powers of two."""
    f = e.exponent_field
    raw = _every_entry(e)
    bits = 8 * e.itemsize
    assert f.bins == 1 << (bits - f.shift)
    assert f.mantissa == (1 << f.shift) - 1
    field = (raw >> f.shift).astype(np.int64)
    assert field.max() < f.bins
    with np.errstate(all="ignore"):
        x = e.to_float(raw.copy()).astype(np.float64)
    finite_pos = np.isfinite(x) & (x > 0)
    mant, exp2 = np.frexp(np.where(finite_pos, x, 1.0))
    exponent = exp2 - 1
    window = e.plausible or (-10**9, 10**9)
    tiny = {"e8m0": 0.0, "f16": float(np.finfo(np.float16).tiny)}.get(e.name, float(np.finfo(np.float32).tiny))
    normal = finite_pos & (x >= tiny)  # bfloat16 has float32's exponent: its smallest normal is float32's
    valid = normal & (exponent >= window[0]) & (exponent <= window[1])
    in_fields = (field >= f.lo) & (field <= f.hi)
    assert np.array_equal(in_fields, valid)
    assert np.array_equal(field[valid] - f.bias, exponent[valid])
    pow2 = valid & (mant == 0.5)
    assert np.array_equal(valid & ((raw & f.mantissa) == 0), pow2)


def test_exponent_fields_are_the_ieee_layouts():
    assert (F32.exponent_field.shift, F32.exponent_field.bias) == (23, 127)
    assert (BF16.exponent_field.shift, BF16.exponent_field.bias) == (7, 127)
    assert (F16.exponent_field.shift, F16.exponent_field.bias) == (10, 15)
    assert (F16.exponent_field.lo, F16.exponent_field.hi) == (1, 30)  # every positive normal finite F16
    assert (E8M0.exponent_field.lo, E8M0.exponent_field.hi) == (127 - 64, 127 + 64)
    assert E4M3.exponent_field is None  # E4M3 scales always take the mask-based rules


def test_decode_width_holds_every_e8m0_value():
    longest = max(len(f"2^{b - 127}") for b in range(255))
    assert E8M0.decode_width == longest == 6
    assert all(e.decode_width >= 6 for e in ALL)


def test_records_are_frozen():
    with pytest.raises(AttributeError):
        E8M0.name = "x"  # type: ignore[misc]
    assert enc.E4M3FN_TABLE is E4M3FN_TABLE
