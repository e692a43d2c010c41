"""depth_ros.core.encodings: raw decode/encode round trips, colour conversion, errors."""

import array
import struct
import zlib

import numpy as np
import pytest

from depth_ros.core.encodings import (
    DEFAULT_MAX_PIXELS,
    RGB_ENCODINGS,
    SUPPORTED_ENCODINGS,
    ImageEncodingError,
    compressed_image_size,
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
    # beyond 65.535 m the depth does not fit: 0 (invalid), never a clipped nearer distance
    d = np.array([np.nan, np.inf, -np.inf, -1.0, 0.0, 0.0004, 0.0006, 1.2344, 2.5006, 65.5, 65.535, 70.0])
    want = [0, 0, 0, 0, 0, 0, 1, 1234, 2501, 65500, 65535, 0]
    assert depth_to_mm16(d).tolist() == want
    out = depth_to_mm16(d.astype(np.float32).reshape(1, -1))
    assert out.dtype == np.uint16 and out.shape == (1, d.size)
    assert out.tolist()[0] == want


# ------------------------------------------------- compressed: size limit before decoding (issue 10)

def _png_chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def zeros_png(w, h, rows_per_block=500):
    """A valid RGB PNG of ``w x h`` zeros built without ever holding the raw pixels: one deflate block of
    ``rows_per_block`` rows ended by a full flush (no back-references) repeated, plus the zlib adler32."""
    assert h % rows_per_block == 0
    block = b"\0" * ((3 * w + 1) * rows_per_block)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    x = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    adler = 1
    for _ in range(h // rows_per_block):
        adler = zlib.adler32(block, adler)
    idat = b"\x78\xda" + x * (h // rows_per_block) + b"\x03\x00" + struct.pack(">I", adler)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b""))


def png_with_size(png: bytes, w: int, h: int) -> bytes:
    """``png`` with its IHDR claiming ``w x h`` (CRC fixed, so decoders believe it)."""
    ihdr = png[12:29]
    ihdr = ihdr[:4] + struct.pack(">II", w, h) + ihdr[12:]
    return png[:8] + png[8:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr) & 0xFFFFFFFF) + png[33:]


def _forbid_imdecode(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("cv2.imdecode must not be called for this payload")
    monkeypatch.setattr(cv2, "imdecode", boom)


def _small(ext, params=()):
    rgb = (np.random.default_rng(3).random((40, 60, 3)) * 255).astype(np.uint8)
    img = rgb[:, :, 0].copy() if ext in (".pgm", ".pbm") else rgb
    if ext in (".pfm", ".hdr"):
        img = rgb.astype(np.float32) / 255
    ok, buf = cv2.imencode(ext, img, list(params))
    assert ok
    return buf.tobytes()


def test_png_bomb_is_refused_before_decoding(monkeypatch):
    import tracemalloc
    bomb = zeros_png(12000, 12000)                  # the payload: ~420 kB, 432 MB of pixels
    assert 400_000 < len(bomb) < 440_000
    _forbid_imdecode(monkeypatch)
    tracemalloc.start()
    try:
        with pytest.raises(ImageEncodingError) as err:
            decode_compressed(bomb, "png")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    msg = str(err.value)
    assert "12000 x 12000 = 144000000 pixels > max_pixels" in msg and "before decoding" in msg and "\n" not in msg
    assert peak < 5_000_000  # nothing of the 432 MB was allocated


def test_max_pixels_limit_is_exact_and_can_be_lifted():
    png = _small(".png")
    assert decode_compressed(png, "png", max_pixels=60 * 40).shape == (40, 60, 3)
    with pytest.raises(ImageEncodingError, match=r"60 x 40 = 2400 pixels > max_pixels 2399"):
        decode_compressed(png, "png", max_pixels=2399)
    assert decode_compressed(png, "png", max_pixels=None).shape == (40, 60, 3)
    assert DEFAULT_MAX_PIXELS >= 8192 * 4320   # 8K cameras pass by default


def test_opencv_error_is_an_image_encoding_error():
    # OpenCV asserts (cv2.error, not a ValueError) on a header beyond its own 2^30-pixel cap
    bomb = png_with_size(_small(".png"), 65535, 65535)
    with pytest.raises(ImageEncodingError, match=r"could not decode compressed image \(format 'png', \d+ bytes\)"):
        decode_compressed(bomb, "png", max_pixels=None)
    with pytest.raises(ImageEncodingError, match=r"65535 x 65535 = 4294836225 pixels > max_pixels"):
        decode_compressed(bomb, "png")


@pytest.mark.parametrize("ext, params, kind", [
    (".png", (), "PNG"), (".jpg", (), "JPEG"), (".jpg", (cv2.IMWRITE_JPEG_PROGRESSIVE, 1), "JPEG"),
    (".webp", (cv2.IMWRITE_WEBP_QUALITY, 80), "WebP"), (".webp", (cv2.IMWRITE_WEBP_QUALITY, 101), "WebP"),
    (".bmp", (), "BMP"), (".tiff", (), "TIFF"), (".tiff", (cv2.IMWRITE_TIFF_COMPRESSION, 1), "TIFF"),
    (".ppm", (), "PNM"), (".pgm", (), "PNM"), (".pbm", (), "PNM"), (".pam", (), "PAM"), (".gif", (), "GIF"),
    (".ras", (), "Sun raster"), (".pfm", (), "PFM"), (".hdr", (), "Radiance HDR"),
])
def test_header_size_of_every_format(ext, params, kind):
    data = _small(ext, params)
    assert compressed_image_size(data) == (kind, (60, 40), "")
    if ext not in (".pfm", ".hdr"):   # float formats decode but are refused after (not 8/16-bit)
        assert decode_compressed(data, ext[1:]).shape == (40, 60, 3)


def _jpeg_with_size(jpg: bytes, w: int, h: int) -> bytes:
    i = jpg.index(b"\xff\xc0")
    return jpg[:i + 5] + struct.pack(">HH", h, w) + jpg[i + 9:]


def _bmp_with_size(bmp, w, h):
    return bmp[:18] + struct.pack("<ii", w, -h) + bmp[26:]


def _gif_with_size(gif, w, h):
    return gif[:6] + struct.pack("<HH", w, h) + gif[10:]


def _webp_lossless_with_size(webp, w, h):
    bits = struct.unpack("<I", webp[21:25])[0] & ~((1 << 28) - 1)
    return webp[:21] + struct.pack("<I", bits | (w - 1) | ((h - 1) << 14)) + webp[25:]


@pytest.mark.parametrize("make", [
    lambda: png_with_size(_small(".png"), 30000, 30000),
    lambda: _jpeg_with_size(_small(".jpg"), 65000, 65000),
    lambda: _bmp_with_size(_small(".bmp"), 100000, 100000),
    lambda: _gif_with_size(_small(".gif"), 65535, 65535),
    lambda: _webp_lossless_with_size(_small(".webp", (cv2.IMWRITE_WEBP_QUALITY, 101)), 16384, 16384),
    lambda: b"P6\n# a comment\n60000 60000\n255\n" + b"\0" * 100,
    lambda: b"P7\nWIDTH 70000\nHEIGHT 70000\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n" + b"\0" * 100,
], ids=["png", "jpeg", "bmp", "gif", "webp", "ppm", "pam"])
def test_bombs_of_every_format_are_refused_before_decoding(make, monkeypatch):
    bomb = make()
    _forbid_imdecode(monkeypatch)
    with pytest.raises(ImageEncodingError, match=r"pixels > max_pixels \d+; refused before decoding"):
        decode_compressed(bomb, "x")


@pytest.mark.parametrize("payload, match", [
    (b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\0", r"PNG header is truncated"),
    (b"\x89PNG\r\n\x1a\n\0\0\0\x0dIDAT" + b"\0" * 20, r"PNG does not start with an IHDR chunk"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", r"JPEG"),
    (b"\xff\xd8\xff\xda\x00\x08" + b"\0" * 30, r"JPEG has no frame header \(SOF\) before its scan"),
    (b"RIFF\0\0\0\0WEBPVP8Z" + b"\0" * 20, r"WebP has an unknown first chunk"),
    (b"P6\nab cd\n255\n", r"PNM header has a non-numeric size"),
    (b"II*\0\xff\xff\xff\x7f" + b"\0" * 10, r"TIFF header is truncated"),
    (b"hello world", r"unknown image format \(first bytes 68 65 6c"),
    (b"\0\0\0\x0cjP  \r\n\x87\n" + b"\0" * 30, r"unknown image format"),   # JPEG 2000: size not read
])
def test_unreadable_headers_are_refused_with_the_reason(payload, match, monkeypatch):
    _forbid_imdecode(monkeypatch)
    with pytest.raises(ImageEncodingError, match=r"could not decode compressed image \(format 'f', \d+ bytes\): "
                       + match) as err:
        decode_compressed(payload, "f")
    assert "\n" not in str(err.value)


def test_zero_size_header_is_refused(monkeypatch):
    _forbid_imdecode(monkeypatch)
    with pytest.raises(ImageEncodingError, match=r"header says 0 x 40 pixels"):
        decode_compressed(png_with_size(_small(".png"), 0, 40), "png")


def test_unsized_formats_decode_without_a_limit():
    jp2 = _small(".jp2")
    with pytest.raises(ImageEncodingError, match="size cannot be read"):
        decode_compressed(jp2, "jp2")
    assert decode_compressed(jp2, "jp2", max_pixels=None).shape == (40, 60, 3)


def test_truncated_payloads_are_image_encoding_errors():
    for ext in (".png", ".jpg", ".webp"):
        data = _small(ext)
        for cut in (len(data) // 2, len(data) - 3):
            with pytest.raises(ImageEncodingError, match="could not decode compressed image"):
                decode_compressed(data[:cut], ext[1:])


def test_png_chunk_claiming_gigabytes_is_refused_before_decoding(monkeypatch):
    # found by test/fuzz_inputs.py: a 2 kB PNG whose IDAT length field says 2.5 GB made OpenCV 4.13
    # allocate 2.5 GB and spend seconds before failing
    png = bytearray(_small(".png"))
    assert png[37:41] == b"IDAT"
    png[33:37] = struct.pack(">I", 2_533_361_955)
    _forbid_imdecode(monkeypatch)
    with pytest.raises(ImageEncodingError, match=r"PNG chunk 'IDAT' claims 2533361955 bytes, past the end of the "
                                                 r"\d+-byte payload"):
        decode_compressed(bytes(png), "png")
    with pytest.raises(ImageEncodingError, match=r"PNG ends without an IEND chunk"):
        decode_compressed(_small(".png")[:-12], "png")
