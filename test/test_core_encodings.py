"""depth_ros.core.encodings: raw decode/encode round trips, colour conversion, errors."""

import array
import struct
import zlib

import numpy as np
import pytest

from depth_ros.core.encodings import (
    RGB_ENCODINGS,
    SUPPORTED_ENCODINGS,
    ImageEncodingError,
    decode_compressed,
    decode_image,
    depth_to_mm16,
    encode_image,
    encoding_info,
    image_to_rgb8,
    to_rgb8,
)

cv2 = pytest.importorskip("cv2")

H, W = 4, 6  # even width for YUV 4:2:2


def _random_image(encoding, rng, h=H, w=W):
    dtype, ch = encoding_info(encoding)
    shape = (h, w) if ch == 1 else (h, w, ch)
    if dtype.kind == "f":
        a = rng.normal(0, 1000, shape).astype(dtype)
        a.flat[0] = np.nan
        a.flat[1] = -np.inf
    else:
        info = np.iinfo(dtype)
        a = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    return a


def _same(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    # bitwise comparison (NaN payloads included)
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("encoding", sorted(SUPPORTED_ENCODINGS))
def test_round_trip_every_encoding(encoding):
    rng = np.random.default_rng(zlib.crc32(encoding.encode()))
    a = _random_image(encoding, rng)
    dtype, ch = encoding_info(encoding)
    row = W * ch * dtype.itemsize
    for pad in (0, 3):
        for big in (False, True):
            data, step = encode_image(a, encoding, is_bigendian=big, step=row + pad)
            assert step == row + pad and len(data) == step * H
            out = decode_image(data, H, W, encoding, step, is_bigendian=big)
            _same(out, a)
            assert out.dtype.isnative and out.flags.c_contiguous and out.flags.writeable
            # the wire really is in the requested byte order
            first = a.reshape(-1)[:1]
            want = first.astype(dtype.newbyteorder(">" if big else "<")).tobytes()
            assert data[: dtype.itemsize] == want
            # padding bytes are zero
            if pad:
                assert data[row:step] == b"\0" * pad


def test_padding_content_is_ignored_and_input_types():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 65535, (3, 5), dtype=np.uint16)
    step = 5 * 2 + 6
    buf = np.full((3, step), 0xAB, np.uint8)
    buf[:, :10] = a.astype("<u2").view(np.uint8).reshape(3, 10)
    raw = buf.tobytes()
    for data in (raw, bytearray(raw), memoryview(raw), array.array("B", raw), buf, buf.reshape(-1)):
        np.testing.assert_array_equal(decode_image(data, 3, 5, "16UC1", step), a)
    # extra trailing bytes are fine
    np.testing.assert_array_equal(decode_image(raw + b"xyz", 3, 5, "mono16", step), a)


def test_big_endian_known_bytes():
    data = struct.pack(">HH", 0x0102, 0xA0B0)
    out = decode_image(data, 1, 2, "16UC1", 4, is_bigendian=True)
    assert out.dtype == np.uint16 and out.dtype.isnative
    assert out.tolist() == [[0x0102, 0xA0B0]]
    out = decode_image(struct.pack("<f", 1.5), 1, 1, "32FC1", 4, is_bigendian=False)
    assert out[0, 0] == 1.5
    out = decode_image(struct.pack(">f", -2.25), 1, 1, "32FC1", 4, is_bigendian=True)
    assert out[0, 0] == -2.25


def test_copy_false_may_view():
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    v = decode_image(a.reshape(-1), 3, 4, "mono8", 4, copy=False)
    assert np.shares_memory(v, a)
    c = decode_image(a.reshape(-1), 3, 4, "mono8", 4)
    assert not np.shares_memory(c, a)


@pytest.mark.parametrize("args, match", [
    (dict(encoding="foo"), r"unsupported image encoding 'foo'"),
    (dict(encoding="nv21"), r"unsupported image encoding 'nv21'"),
    (dict(height=0), r"zero size \(height=0, width=6\)"),
    (dict(width=0), r"zero size \(height=4, width=0\)"),
    (dict(step=17), r"step 17 is smaller than width\*bytes_per_pixel = 6\*3 = 18"),
    (dict(data=b"\0" * 71), r"data has 71 bytes, expected at least step\*height = 18\*4 = 72"),
    (dict(encoding="yuv422", width=5, step=10, data=b"\0" * 40), r"even width"),
])
def test_decode_errors(args, match):
    kw = dict(data=b"\0" * 72, height=4, width=6, encoding="rgb8", step=18)
    kw.update(args)
    with pytest.raises(ImageEncodingError, match=match):
        decode_image(kw["data"], kw["height"], kw["width"], kw["encoding"], kw["step"])


def test_encode_errors():
    with pytest.raises(ImageEncodingError, match="does not match encoding rgb8"):
        encode_image(np.zeros((2, 2), np.uint8), "rgb8")
    with pytest.raises(ImageEncodingError, match="cannot store float32 data as 16UC1"):
        encode_image(np.zeros((2, 2), np.float32), "16UC1")
    with pytest.raises(ImageEncodingError, match="step 3 is smaller"):
        encode_image(np.zeros((2, 2), np.uint16), "16UC1", step=3)
    with pytest.raises(ImageEncodingError, match="unsupported image encoding"):
        encode_image(np.zeros((2, 2), np.uint8), "bogus")
    # same-kind casts are accepted
    data, step = encode_image(np.array([[1.5]], np.float64), "32FC1")
    assert step == 4 and struct.unpack("<f", data) == (1.5,)


# --------------------------------------------------------------------- to_rgb8

def test_to_rgb8_basic_channel_orders():
    rgb = np.array([[[10, 20, 30], [40, 50, 60]]], np.uint8)
    np.testing.assert_array_equal(to_rgb8(rgb, "rgb8"), rgb)
    np.testing.assert_array_equal(to_rgb8(rgb[..., ::-1].copy(), "bgr8"), rgb)
    np.testing.assert_array_equal(to_rgb8(rgb[..., ::-1].copy(), "8UC3"), rgb)
    alpha = np.full((1, 2, 1), 7, np.uint8)
    np.testing.assert_array_equal(to_rgb8(np.concatenate([rgb, alpha], 2), "rgba8"), rgb)
    np.testing.assert_array_equal(to_rgb8(np.concatenate([rgb[..., ::-1], alpha], 2), "bgra8"), rgb)
    rgb16 = rgb.astype(np.uint16) * 256 + 255
    np.testing.assert_array_equal(to_rgb8(rgb16, "rgb16"), rgb)
    np.testing.assert_array_equal(to_rgb8(rgb16[..., ::-1].copy(), "bgr16"), rgb)
    a16 = np.full((1, 2, 1), 9, np.uint16)
    np.testing.assert_array_equal(to_rgb8(np.concatenate([rgb16, a16], 2), "rgba16"), rgb)
    np.testing.assert_array_equal(to_rgb8(np.concatenate([rgb16[..., ::-1], a16], 2), "bgra16"), rgb)


def test_to_rgb8_mono_and_numeric():
    g = np.array([[0, 100, 255]], np.uint8)
    for enc in ("mono8", "8UC1"):
        out = to_rgb8(g, enc)
        assert out.shape == (1, 3, 3)
        np.testing.assert_array_equal(out[..., 0], g)
        np.testing.assert_array_equal(out[..., 2], g)
    m16 = np.array([[0x1234, 0xFFFF]], np.uint16)
    assert to_rgb8(m16, "mono16")[..., 0].tolist() == [[0x12, 0xFF]]
    # 16UC1 (depth mm): zeros stay black, min..max of the rest stretched
    d16 = np.array([[0, 1000, 2000, 1500]], np.uint16)
    assert to_rgb8(d16, "16UC1")[..., 1].tolist() == [[0, 0, 255, 128]]
    f = np.array([[np.nan, 1.0, 3.0, 2.0, np.inf]], np.float32)
    assert to_rgb8(f, "32FC1")[..., 0].tolist() == [[0, 0, 255, 128, 0]]
    with pytest.raises(ImageEncodingError, match="cannot convert 32FC3"):
        to_rgb8(np.zeros((2, 2, 3), np.float32), "32FC3")
    with pytest.raises(ImageEncodingError, match="dtype"):
        to_rgb8(np.zeros((2, 2, 3), np.uint16), "rgb8")


def test_every_rgb_encoding_converts():
    rng = np.random.default_rng(3)
    for enc in sorted(RGB_ENCODINGS):
        a = _random_image(enc, rng)
        out = to_rgb8(a, enc)
        assert out.shape == (H, W, 3) and out.dtype == np.uint8, enc


def _mosaic(rgb, pattern):
    """Bayer mosaic of an RGB image; ``pattern`` names the 2x2 cell row by row (ROS)."""
    h, w, _ = rgb.shape
    idx = {"r": 0, "g": 1, "b": 2}
    out = np.empty((h, w), rgb.dtype)
    for dy in (0, 1):
        for dx in (0, 1):
            c = idx[pattern[2 * dy + dx]]
            out[dy::2, dx::2] = rgb[dy::2, dx::2, c]
    return out


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_colours(pattern):
    color = np.array([200, 100, 30])
    rgb = np.broadcast_to(color, (8, 10, 3)).astype(np.uint8)
    out = image_to_rgb8(_mosaic(rgb, pattern).tobytes(), 8, 10, "bayer_%s8" % pattern, 10)
    inner = out[2:-2, 2:-2].reshape(-1, 3).astype(int)
    assert np.abs(inner - color).max() <= 2, (pattern, inner[0])
    # a non-uniform image: left half red, right half blue, checked away from the edge
    img = np.zeros((8, 16, 3), np.uint8)
    img[:, :8, 0] = 220
    img[:, 8:, 2] = 220
    out = to_rgb8(_mosaic(img, pattern), "bayer_%s8" % pattern)
    assert out[4, 3].tolist()[0] > 200 and out[4, 3].tolist()[2] < 20
    assert out[4, 12].tolist()[2] > 200 and out[4, 12].tolist()[0] < 20
    # 16 bit
    rgb16 = (rgb.astype(np.uint16) << 8)
    out16 = to_rgb8(_mosaic(rgb16, pattern), "bayer_%s16" % pattern)
    assert np.abs(out16[2:-2, 2:-2].reshape(-1, 3).astype(int) - color).max() <= 2


def test_yuv422_known_colours():
    # BT.601 limited range: pure red = (Y, U, V) = (81, 90, 240); grey Y=128 -> ~130
    red = (81, 90, 240)
    uyvy = np.array([[[red[1], red[0]], [red[2], red[0]]] * 2], np.uint8)  # U Y V Y
    yuyv = np.array([[[red[0], red[1]], [red[0], red[2]]] * 2], np.uint8)  # Y U Y V
    for enc, px in (("yuv422", uyvy), ("uyvy", uyvy), ("yuv422_yuy2", yuyv), ("yuyv", yuyv)):
        out = image_to_rgb8(px.tobytes(), 1, 4, enc, 8)
        assert out.shape == (1, 4, 3)
        np.testing.assert_allclose(out[0].astype(int), [[255, 0, 0]] * 4, atol=3, err_msg=enc)
    grey = np.array([[[128, 128], [128, 128]]], np.uint8)
    np.testing.assert_allclose(to_rgb8(grey, "uyvy").astype(int), 130, atol=2)


def test_image_to_rgb8_returns_fresh_array():
    a = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    out = image_to_rgb8(a.reshape(-1), 2, 2, "rgb8", 6)
    np.testing.assert_array_equal(out, a)
    assert out.flags.writeable and not np.shares_memory(out, a)


# ---------------------------------------------------------------- compressed

def test_decode_compressed_png_and_jpeg():
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    np.testing.assert_array_equal(decode_compressed(png.tobytes(), "png"), rgb)
    np.testing.assert_array_equal(decode_compressed(array.array("B", png.tobytes()), "rgb8; png compressed bgr8"), rgb)
    flat = np.zeros((16, 16, 3), np.uint8)
    flat[:] = (250, 10, 10)
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(flat, cv2.COLOR_RGB2BGR))
    out = decode_compressed(jpg.tobytes(), "jpeg")
    assert out.shape == (16, 16, 3)
    np.testing.assert_allclose(out.astype(int), flat, atol=6)
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    ok, gpng = cv2.imencode(".png", gray)
    out = decode_compressed(gpng.tobytes())
    assert out.shape == (8, 8, 3) and (out[..., 1] == gray).all()


def test_decode_compressed_errors():
    with pytest.raises(ImageEncodingError, match=r"could not decode compressed image \(format 'jpeg', 5 bytes\)"):
        decode_compressed(b"hello", "jpeg")
    with pytest.raises(ImageEncodingError, match="empty"):
        decode_compressed(b"", "png")
    with pytest.raises(ImageEncodingError, match="compressedDepth"):
        decode_compressed(b"\0" * 20, "32FC1; compressedDepth png")


# -------------------------------------------------------------------- mm16

def test_depth_to_mm16():
    d = np.array([np.nan, np.inf, -np.inf, -1.0, 0.0, 0.0004, 0.0006, 1.2344, 2.5006, 65.5, 70.0])
    assert depth_to_mm16(d).tolist() == [0, 0, 0, 0, 0, 0, 1, 1234, 2501, 65500, 65535]
    out = depth_to_mm16(d.astype(np.float32).reshape(1, -1))
    assert out.dtype == np.uint16 and out.shape == (1, d.size)
    assert out.tolist()[0] == [0, 0, 0, 0, 0, 0, 1, 1234, 2501, 65500, 65535]
