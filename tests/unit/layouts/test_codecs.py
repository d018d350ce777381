"""Unit tests of layouts/codecs.py: raw_view, decode (the per-entry facts the rules ask about) and
describe_value, on every entry of the 1- and 2-byte encodings, the edges of F32, odd lengths,
offset and non-contiguous buffers, and byte order. The references are computed here with plain
Python/numpy arithmetic, not with fp8doctor's decoders."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fp8doctor.layouts.codecs import Decoded, decode, describe_value, raw_view
from fp8doctor.layouts.encodings import ALL, BY_NAME
from tests.helpers.scale_values import values

EVERY_BYTE = np.arange(256, dtype=np.uint8)
EVERY_U16 = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
F32_EDGES = np.array([0, 1, 0x007FFFFF, 0x00800000, 0x3F800000, 0x3F800001, 0x3FC00000, 0x7F7FFFFF, 0x7F800000,
                      0x7FC00000, 0x7F800001, 0x80000000, 0x80000001, 0xBF800000, 0xFF800000, 0xFFFFFFFF,
                      0x1F800000, 0x5F800000, 0x20000000],
                     dtype=np.uint64).astype(np.uint32)


def _entries(encoding: str) -> np.ndarray:
    size = BY_NAME[encoding].itemsize
    return EVERY_BYTE if size == 1 else EVERY_U16 if size == 2 else F32_EDGES


@pytest.mark.parametrize("encoding", [e.name for e in ALL])
def test_decode_says_what_each_entry_is(encoding):
    raw = _entries(encoding)
    d = decode(encoding, raw.tobytes(), raw.shape)
    x = values(encoding, raw)
    nan = ~np.isfinite(x)  # NaN and infinities: neither is a usable scale
    if encoding == "e8m0":
        zero = raw == 0  # the rules treat E8M0's smallest byte as a zero scale
    else:
        zero = x == 0
    negative = (x < 0) & ~nan
    assert np.array_equal(d.nan, nan)
    assert np.array_equal(d.zero, zero)
    assert np.array_equal(d.negative, negative)
    assert np.array_equal(d.valid, ~(nan | zero | negative))
    assert np.array_equal(d.raw, raw) and d.raw.dtype == BY_NAME[encoding].raw
    assert d.exponent.dtype == np.int32
    valid = d.valid
    want_exp = np.floor(np.log2(np.where(valid, np.abs(x), 1.0))).astype(np.int64)
    assert np.array_equal(d.exponent[valid], want_exp[valid])
    if encoding != "e8m0":  # (E8M0's NaN/zero bytes keep b - 127: every rule masks them with `valid`)
        assert not d.exponent[nan | zero].any()
    frac = np.where(valid, np.abs(x), 1.0) / np.exp2(want_exp.astype(np.float64))
    assert np.array_equal(d.pow2[valid], (frac == 1.0)[valid])
    assert not (d.pow2 & (nan | negative)).any()


def test_e8m0_bytes_by_hand():
    d = decode("e8m0", bytes([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF]), (6,))
    assert d.nan.tolist() == [False, False, False, False, False, True]
    assert d.zero.tolist() == [True, False, False, False, False, False]
    assert d.exponent.tolist()[1:5] == [-126, 0, 1, 127]
    assert d.pow2.tolist()[1:5] == [True] * 4
    assert not d.negative.any()


def test_float_specials_by_hand():
    f32 = decode("f32", np.array([1.0, -2.0, 0.0, -0.0, np.inf, -np.inf, np.nan, 3.0, 2.0 ** -149],
                                 dtype="<f4").tobytes(), (9,))
    assert f32.nan.tolist() == [False, False, False, False, True, True, True, False, False]
    assert f32.zero.tolist() == [False, False, True, True, False, False, False, False, False]  # -0.0 is zero
    assert f32.negative.tolist() == [False, True] + [False] * 7  # -0.0 and -inf are not "negative"
    assert f32.exponent.tolist() == [0, 1, 0, 0, 0, 0, 0, 1, -149]
    assert f32.pow2.tolist() == [True, False, False, False, False, False, False, False, True]
    e4 = decode("e4m3", bytes([0x38, 0x7E, 0x7F, 0xFF, 0x80, 0x01, 0xB8]), (7,))
    assert e4.nan.tolist() == [False, False, True, True, False, False, False]
    assert e4.zero.tolist() == [False, False, False, False, True, False, False]
    assert e4.negative.tolist() == [False] * 6 + [True]
    assert e4.exponent.tolist()[:2] == [0, 8] and e4.exponent[5] == -9  # 448 = 1.75 * 2^8; 2^-9 subnormal
    assert e4.pow2.tolist() == [True, False, False, False, False, True, False]


@pytest.mark.parametrize("encoding", [e.name for e in ALL])
def test_decode_keeps_the_stored_shape(encoding):
    itemsize = BY_NAME[encoding].itemsize
    rng = np.random.default_rng(1)
    for shape in [(1,), (7,), (3, 5), (2, 3, 4), (0,), (0, 4), ()]:
        data = rng.integers(0, 256, math.prod(shape) * itemsize, dtype=np.uint8).tobytes()
        d = decode(encoding, data, shape)
        assert isinstance(d, Decoded)
        for a in (d.nan, d.zero, d.negative, d.exponent, d.pow2, d.raw, d.valid):
            assert a.shape == shape
        flat = decode(encoding, data, (math.prod(shape),))
        assert np.array_equal(d.exponent.reshape(-1), flat.exponent) and np.array_equal(d.raw.reshape(-1), flat.raw)


def test_raw_view_is_little_endian_on_any_host():
    assert raw_view("f32", b"\x00\x00\x80\x3f", (1,)).tolist() == [0x3F800000]
    assert raw_view("bf16", b"\x80\x3f\xc0\x3f", (2,)).tolist() == [0x3F80, 0x3FC0]
    assert raw_view("f16", b"\x00\x3c", (1,)).tolist() == [0x3C00]
    assert decode("f32", b"\x00\x00\x80\x3f", (1,)).exponent.tolist() == [0]
    # the same value written big-endian is another number (a subnormal), not 1.0
    big = decode("f32", np.array([1.0], dtype=">f4").tobytes(), (1,))
    assert big.exponent.tolist() == [math.floor(math.log2(np.frombuffer(b"\x3f\x80\x00\x00", "<f4")[0]))]
    assert not big.pow2[0]
    assert decode("f16", np.array([1.0], dtype=">f2").tobytes(), (1,)).exponent.tolist() != [0]


def test_raw_view_of_buffers():
    data = bytes(range(16))
    assert raw_view("e8m0", memoryview(data), (4, 4)).tolist() == [list(range(i, i + 4)) for i in range(0, 16, 4)]
    # a contiguous slice of a larger buffer reads from the slice's start
    assert raw_view("f16", memoryview(data)[2:6], (2,)).tolist() == [0x0302, 0x0504]
    assert raw_view("f32", bytearray(data[4:8]), (1,)).tolist() == [0x07060504]
    view = raw_view("e8m0", data, (16,))
    assert not view.flags.writeable  # a view of the bytes read, never a copy that could be written back
    with pytest.raises(BufferError):  # a strided buffer is refused, never read as if contiguous
        raw_view("e8m0", memoryview(data)[::2], (8,))


@pytest.mark.parametrize("encoding", ["f32", "bf16", "f16"])
def test_odd_lengths_are_refused_not_truncated(encoding):
    itemsize = BY_NAME[encoding].itemsize
    with pytest.raises(ValueError):
        raw_view(encoding, bytes(3 * itemsize + 1), (3,))
    with pytest.raises(ValueError):
        decode(encoding, bytes(2 * itemsize - 1), (1,))
    with pytest.raises(ValueError):  # the bytes and the shape disagree
        raw_view(encoding, bytes(4 * itemsize), (3,))


def test_describe_value():
    assert describe_value("e8m0", 0xFF) == "0xFF (NaN)"
    assert describe_value("e8m0", 0x00) == "0x00 (2^-127, zero)"
    assert describe_value("e8m0", 0x85) == "0x85 (2^6)"
    assert describe_value("e8m0", 0x01) == "0x01 (2^-126)"
    assert describe_value("e4m3", 0x7E) == "448"
    assert describe_value("e4m3", 0x7F) == "nan"
    assert describe_value("f32", 0x3F800000) == "1"
    assert describe_value("f32", 0x37800000) == "1.52588e-05"
    assert describe_value("f32", 0xFF800000) == "-inf"
    assert describe_value("bf16", 0x3FC0) == "1.5"
    assert describe_value("f16", 0x7C00) == "inf"
    assert describe_value("f16", 0x0001) == f"{2.0 ** -24:.6g}"
