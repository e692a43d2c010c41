"""Seeded generator of malformed (and some good) camera inputs as plain field dicts, ROS-free.

Every case is a ``dict`` whose fields map one to one onto a ROS 2 message, so a test or a script
can feed them to the core decoders directly (``test/test_fuzz_core.py``) or turn them into
messages for a node in another process:

* ``kind == "image"`` -> ``sensor_msgs/Image``: ``height``, ``width``, ``encoding``, ``step``,
  ``is_bigendian`` (0/1), ``data`` (bytes);
* ``kind == "compressed"`` -> ``sensor_msgs/CompressedImage``: ``format``, ``data``;
* ``kind == "camera_info"`` -> ``sensor_msgs/CameraInfo``: ``width``, ``height``,
  ``distortion_model``, ``d`` (list), ``k`` (9), ``r`` (9), ``p`` (12), ``binning_x``,
  ``binning_y``, ``roi`` (dict of ``x_offset, y_offset, height, width, do_rectify``).

Each case also has ``frame_id`` and ``stamp`` (``(sec, nanosec)``) for the header, ``label`` (what
is wrong with it, for logs) and ``expect``: ``"ok"`` (must decode), ``"error"`` (must be refused
with a clear error) or ``"any"`` (either; random mutations). Every value is representable in the
message (uint32 sizes, int32 seconds, fixed-length K/R/P), so the conversion never fails; payloads
stay below a few MB. The same seed always gives the same cases.

    from fuzz_inputs import all_cases
    for case in all_cases(seed=0):
        ...
"""
from __future__ import annotations

import random
import struct
import zlib
from typing import Dict, Iterator, List, Optional

import numpy as np

from depth_ros.core.encodings import SUPPORTED_ENCODINGS, encoding_info

__all__ = ["UINT32_MAX", "INT32_MAX", "UNKNOWN_ENCODINGS", "FRAME_IDS", "STAMPS", "image_cases", "compressed_cases",
           "camera_info_cases", "good_image", "good_camera_info", "all_cases"]

UINT32_MAX = 2 ** 32 - 1
INT32_MAX = 2 ** 31 - 1
#: encodings no decoder accepts (misspelt, planar, wrong channel counts, empty, long, non-ASCII)
UNKNOWN_ENCODINGS = ("", "RGB8", "rgb8 ", "bgr24", "nv21", "nv24", "yuv420", "16UC0", "8UC5", "32FC10", "64FC",
                     "jpeg", "\x00", "r\u00e9b8", "x" * 300)
FRAME_IDS = ("camera_optical_frame", "", "f" * 4096, "cam/with spaces/\u00e9", "/leading_slash")
#: (sec, nanosec): zero, now-ish, far future (int32 max), max nanosec
STAMPS = ((0, 0), (1_700_000_000, 123), (INT32_MAX, 999_999_999), (1, 999_999_999))

_COLOR_FMT = ("", "jpeg", "png", "rgb8; jpeg compressed bgr8", "bgr8; png compressed bgr8", "tiff", "x" * 500)


def _header(rng: random.Random) -> Dict:
    return {"frame_id": rng.choice(FRAME_IDS), "stamp": rng.choice(STAMPS)}


def _pixels(rng: random.Random, encoding: str, h: int, w: int) -> np.ndarray:
    dtype, ch = encoding_info(encoding)
    shape = (h, w) if ch == 1 else (h, w, ch)
    gen = np.random.default_rng(rng.getrandbits(32))
    if dtype.kind == "f":
        a = gen.normal(0, 100, shape).astype(dtype)
        flat = a.reshape(-1)
        for v in (np.nan, np.inf, -np.inf, np.finfo(dtype).max):
            flat[gen.integers(flat.size)] = v
        return a
    info = np.iinfo(dtype)
    return gen.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def _image(rng, label, expect, encoding, h, w, step, data, big=0) -> Dict:
    return dict(kind="image", label=label, expect=expect, height=int(h), width=int(w), encoding=encoding,
                step=int(step), is_bigendian=int(big), data=bytes(data), **_header(rng))


def good_image(rng: random.Random, encoding: str = "rgb8", h: int = 6, w: int = 8, pad: int = 0,
               big: int = 0) -> Dict:
    """A valid Image of random pixels (``pad`` bytes of row padding, wire order ``big``)."""
    from depth_ros.core.encodings import encode_image
    dtype, ch = encoding_info(encoding)
    row = w * ch * dtype.itemsize
    data, step = encode_image(_pixels(rng, encoding, h, w), encoding, is_bigendian=bool(big), step=row + pad)
    return _image(rng, f"good {encoding} {w}x{h}", "ok", encoding, h, w, step, data, big)


def image_cases(seed: int = 0, n_random: int = 200) -> Iterator[Dict]:
    """Every encoding (good, padded, byte-order flipped, and each geometry fault), unknown encodings,
    zero/extreme sizes, then ``n_random`` random mutations."""
    rng = random.Random(seed)
    for enc in sorted(SUPPORTED_ENCODINGS):
        dtype, ch = encoding_info(enc)
        px = ch * dtype.itemsize
        h, w = rng.randint(1, 9), 2 * rng.randint(1, 6)
        row = w * px
        good = good_image(rng, enc, h, w)
        data = good["data"]
        yield good
        yield good_image(rng, enc, h, w, pad=3)
        yield good_image(rng, enc, h, w, big=1)
        yield dict(good, label=f"{enc}: is_bigendian flipped", is_bigendian=1 - good["is_bigendian"], expect="ok")
        yield _image(rng, f"{enc}: data longer than step*height", "ok", enc, h, w, row, data + b"\x07" * 37)
        yield _image(rng, f"{enc}: step 1 byte too small", "error", enc, h, w, row - 1, data)
        yield _image(rng, f"{enc}: step 0", "error", enc, h, w, 0, data)
        yield _image(rng, f"{enc}: step not a multiple of the pixel size", "any" if px > 1 else "ok",
                     enc, h, w, row + 1, data + b"\0" * h)
        yield _image(rng, f"{enc}: step huge (uint32 max)", "error", enc, h, w, UINT32_MAX, data)
        yield _image(rng, f"{enc}: data 1 byte short", "error", enc, h, w, row, data[:-1])
        yield _image(rng, f"{enc}: data empty", "error", enc, h, w, row, b"")
        yield _image(rng, f"{enc}: height 0", "error", enc, 0, w, row, data)
        yield _image(rng, f"{enc}: width 0", "error", enc, h, 0, 0, data)
        yield _image(rng, f"{enc}: width uint32 max", "error", enc, 1, UINT32_MAX, UINT32_MAX, data)
        yield _image(rng, f"{enc}: height uint32 max", "error", enc, UINT32_MAX, w, row, data)
        yield _image(rng, f"{enc}: 2^16 x 2^16 claimed, 1 row sent", "error", enc, 65536, 65536, 65536 * px,
                     b"\0" * (65536 * px))
        if enc in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv"):
            yield _image(rng, f"{enc}: odd width", "error", enc, h, w - 1, (w - 1) * px, data)
    for enc in UNKNOWN_ENCODINGS:
        yield _image(rng, f"unknown encoding {enc[:20]!r}", "error", enc, 4, 4, 12, b"\0" * 48)
    encs = sorted(SUPPORTED_ENCODINGS) + list(UNKNOWN_ENCODINGS[:6])
    for i in range(n_random):
        enc = rng.choice(encs)
        try:
            dtype, ch = encoding_info(enc)
            px = ch * dtype.itemsize
        except ValueError:
            px = rng.randint(1, 8)
        h = rng.choice([0, 1, 2, 3, rng.randint(1, 40), UINT32_MAX, rng.randint(0, UINT32_MAX)])
        w = rng.choice([0, 1, 2, 3, rng.randint(1, 40), UINT32_MAX])
        row = w * px
        step = min(UINT32_MAX, max(0, rng.choice([row, row, row + rng.randint(1, 9), row - rng.randint(1, 3),
                                                   rng.randint(0, 200), UINT32_MAX])))
        want = min(step * h, 1 << 16) if step * h < (1 << 20) else rng.randint(0, 4096)
        size = max(0, want + rng.choice([0, 0, -1, 1, -rng.randint(1, 64), rng.randint(1, 64)]))
        data = np.random.default_rng(rng.getrandbits(32)).integers(0, 256, size, dtype=np.uint8).tobytes()
        yield _image(rng, f"random #{i}: {enc[:20]!r} {w}x{h} step {step}, {size} bytes", "any", enc, h, w, step,
                     data, rng.randint(0, 1))


# ---------------------------------------------------------------------------------- compressed

def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def _png(w: int, h: int, raw_rows: Optional[bytes] = None, color: int = 2, depth: int = 8) -> bytes:
    """A PNG (filter 0 rows); ``raw_rows`` None -> random pixels."""
    chans = {0: 1, 2: 3, 4: 2, 6: 4}[color]
    row = w * chans * depth // 8
    if raw_rows is None:
        gen = np.random.default_rng(w * 7919 + h)
        raw_rows = b"".join(b"\0" + gen.integers(0, 256, row, dtype=np.uint8).tobytes() for _ in range(h))
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(raw_rows, 6)) + _chunk(b"IEND", b""))


def _png_claiming(w: int, h: int) -> bytes:
    """A small valid PNG whose IHDR (CRC fixed) claims ``w x h``: a decompression bomb header."""
    small = _png(4, 4)
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return small[:8] + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr) & 0xFFFFFFFF) + small[33:]


def _cv_encode(ext: str, img: np.ndarray, params=()) -> Optional[bytes]:
    try:
        import cv2
        ok, buf = cv2.imencode(ext, img, list(params))
        return buf.tobytes() if ok else None
    except Exception:  # a codec missing from this OpenCV build
        return None


def _compressed(rng, label, expect, data, fmt=None) -> Dict:
    return dict(kind="compressed", label=label, expect=expect, format=rng.choice(_COLOR_FMT) if fmt is None else fmt,
                data=bytes(data), **_header(rng))


def compressed_cases(seed: int = 0, n_random: int = 100) -> Iterator[Dict]:
    """Good PNG/JPEG (8/16 bit, grey, RGBA), other formats, garbage, truncations, bombs, bit flips."""
    rng = random.Random(seed + 1)
    gen = np.random.default_rng(seed)
    img = gen.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    png, jpg = _png(32, 24), _cv_encode(".jpg", img)
    yield _compressed(rng, "good png", "ok", png, "png")
    yield _compressed(rng, "good png, grey", "ok", _png(16, 8, color=0), "png")
    yield _compressed(rng, "good png, rgba", "ok", _png(16, 8, color=6), "png")
    yield _compressed(rng, "good png, 16 bit", "ok", _png(16, 8, depth=16), "png")
    for fmt in _COLOR_FMT:
        yield _compressed(rng, f"good png, format {fmt[:30]!r}", "ok", png, fmt)
    others = [(".webp", ()), (".bmp", ()), (".tiff", ()), (".gif", ()), (".ppm", ()), (".pam", ()), (".ras", ()),
              (".jp2", ()), (".avif", ()), (".hdr", ()), (".pfm", ())]
    if jpg is not None:
        yield _compressed(rng, "good jpeg", "ok", jpg, "jpeg")
        prog = _cv_encode(".jpg", img, (1, 95, 2, 1))  # IMWRITE_JPEG_QUALITY, IMWRITE_JPEG_PROGRESSIVE
        if prog:
            yield _compressed(rng, "good progressive jpeg", "ok", prog, "jpeg")
    for ext, params in others:
        src = img.astype(np.float32) / 255 if ext in (".hdr", ".pfm") else img
        data = _cv_encode(ext, src, params)
        if data:
            yield _compressed(rng, f"odd format {ext}", "any", data, ext[1:])
    yield _compressed(rng, "compressedDepth payload", "error", png, "16UC1; compressedDepth png")
    yield _compressed(rng, "empty payload", "error", b"")
    for n in (1, 7, 64, 4096, 100_000):
        yield _compressed(rng, f"garbage {n} bytes", "error", gen.integers(0, 256, n, dtype=np.uint8).tobytes())
    yield _compressed(rng, "zeros 1000 bytes", "error", b"\0" * 1000)
    yield _compressed(rng, "png signature only", "error", png[:8], "png")
    yield _compressed(rng, "png header only", "error", png[:33], "png")
    yield _compressed(rng, "jpeg SOI only", "error", b"\xff\xd8\xff", "jpeg")
    for frac in (0.1, 0.5, 0.9):
        yield _compressed(rng, f"png truncated at {frac:.0%}", "any", png[:int(len(png) * frac)], "png")
        if jpg is not None:
            yield _compressed(rng, f"jpeg truncated at {frac:.0%}", "any", jpg[:int(len(jpg) * frac)], "jpeg")
    for w, h in ((65535, 65535), (30000, 30000), (12000, 12000), (UINT32_MAX, 1), (2 ** 31 - 1, 2 ** 31 - 1)):
        yield _compressed(rng, f"png bomb header {w}x{h}", "error", _png_claiming(w, h), "png")
    yield _compressed(rng, "png header says 0x4", "error", _png_claiming(0, 4), "png")
    if jpg is not None:
        i = jpg.index(b"\xff\xc0")
        for w, h in ((65000, 65000), (0, 0)):
            yield _compressed(rng, f"jpeg SOF claims {w}x{h}", "error",
                              jpg[:i + 5] + struct.pack(">HH", h, w) + jpg[i + 9:], "jpeg")
    yield _compressed(rng, "ppm bomb header", "error", b"P6\n60000 60000\n255\n" + b"\0" * 300, "ppm")
    yield _compressed(rng, "bmp bomb header", "error",
                      b"BM" + b"\0" * 12 + struct.pack("<Iii", 40, 100000, -100000) + b"\0" * 100, "bmp")
    yield _compressed(rng, "gif bomb header", "error", b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\0" * 50, "gif")
    bases = [png] + [d for d in (jpg, _cv_encode(".webp", img), _cv_encode(".bmp", img), _cv_encode(".tiff", img),
                                 _cv_encode(".gif", img)) if d]
    for i in range(n_random):
        base = bytearray(rng.choice(bases))
        for _ in range(rng.choice([1, 2, 8, 64])):
            base[rng.randrange(len(base))] = rng.randrange(256)
        if rng.random() < 0.3:
            base = base[:rng.randrange(1, len(base))]
        yield _compressed(rng, f"random #{i}: corrupted {bytes(base[:4])!r}...", "any", base)


# ---------------------------------------------------------------------------------- camera info

def good_camera_info(rng: random.Random, w: int = 8, h: int = 6, f: float = 6.0) -> Dict:
    """A valid calibrated CameraInfo for a ``w x h`` image (K and P from one pinhole)."""
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    return dict(kind="camera_info", label=f"good camera_info {w}x{h}", expect="ok", width=w, height=h,
                distortion_model="plumb_bob", d=[0.0] * 5,
                k=[f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0], r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                p=[f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0], binning_x=0, binning_y=0,
                roi=dict(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False), **_header(rng))


_K_SLOT = {"fx": 0, "fy": 4, "cx": 2, "cy": 5}
_P_SLOT = {"fx": 0, "fy": 5, "cx": 2, "cy": 6}
_BAD_VALUES = ((float("nan"), "NaN"), (float("inf"), "inf"), (float("-inf"), "-inf"), (-500.0, "negative"),
               (1e-300, "tiny"), (1e-10, "tiny"), (1e300, "huge"), (1e12, "huge"))


def camera_info_cases(seed: int = 0, n_random: int = 150) -> Iterator[Dict]:
    """NaN/inf/negative/zero/tiny/huge K and P entries, zero and extreme sizes, sizes other than the
    image's, nonsense binning and ROI, odd distortion, long/empty frame ids, zero/far-future stamps."""
    rng = random.Random(seed + 2)
    w, h = 64, 48
    base = good_camera_info(rng, w, h, 50.0)
    yield base
    for matrix, slots in (("k", _K_SLOT), ("p", _P_SLOT)):
        for field, slot in slots.items():
            for val, what in _BAD_VALUES:
                c = good_camera_info(rng, w, h, 50.0)
                c[matrix] = list(c[matrix])
                c[matrix][slot] = val
                if matrix == "k":
                    c["p"] = [0.0] * 12  # so that K is used
                harmless = field in ("cx", "cy") and what == "tiny"   # a principal point of ~0 px is fine
                yield dict(c, label=f"{matrix.upper()} {field} {what} ({val!r})", expect="ok" if harmless else "error")
    yield dict(base, label="K all zero (uncalibrated)", expect="ok", k=[0.0] * 9, p=[0.0] * 12)
    yield dict(base, label="K[0] zero, rest set (uncalibrated)", expect="ok", k=[0.0] + base["k"][1:])
    yield dict(base, label="P all zero, K valid", expect="ok", p=[0.0] * 12)
    yield dict(base, label="K/P all NaN", expect="error", k=[float("nan")] * 9, p=[float("nan")] * 12)
    for ww, hh, exp in ((0, 0, "error"), (0, h, "error"), (w, 0, "error"), (UINT32_MAX, UINT32_MAX, "error"),
                        (1, 1, "error"), (2 * w, 2 * h, "ok"), (w // 2, h // 2, "ok"), (w + 1, h, "ok")):
        yield dict(base, label=f"size {ww}x{hh} (image is {w}x{h})", expect=exp, width=ww, height=hh)
    for bx, by, exp in ((1, 1, "ok"), (2, 2, "ok"), (0, 4, "ok"), (w, h, "ok"), (w + 1, 1, "error"),
                        (1000, 1000, "error"), (UINT32_MAX, UINT32_MAX, "error"), (UINT32_MAX, 1, "error")):
        yield dict(base, label=f"binning {bx}x{by}", expect=exp, binning_x=bx, binning_y=by)
    for roi, exp in (((8, 4, 16, 32, False), "ok"), ((8, 4, 0, 0, True), "ok"), ((0, 0, h, w, True), "ok"),
                     ((w, 0, 0, 0, False), "error"), ((0, 0, h + 1, w, False), "error"),
                     ((UINT32_MAX, UINT32_MAX, 1, 1, False), "error"), ((1, 1, UINT32_MAX, UINT32_MAX, False), "error"),
                     ((w - 1, h - 1, 1, 1, False), "ok")):
        x, y, rh, rw, rect = roi
        yield dict(base, label=f"roi x={x} y={y} {rw}x{rh}", expect=exp,
                   roi=dict(x_offset=x, y_offset=y, height=rh, width=rw, do_rectify=rect))
    for model, d in (("", []), ("plumb_bob", [float("nan")] * 5), ("equidistant", [0.1] * 4),
                     ("rational_polynomial", [0.0] * 8), ("garbage\u00e9", [1e300] * 1000)):
        yield dict(base, label=f"distortion {model[:12]!r} with {len(d)} coefficients", expect="ok",
                   distortion_model=model, d=d)
    for fid in FRAME_IDS:
        for stamp in STAMPS:
            yield dict(base, label=f"frame_id of {len(fid)} chars, stamp {stamp}", expect="ok", frame_id=fid,
                       stamp=stamp)
    pool = [0.0, -0.0, 1.0, -1.0, 50.0, 31.5, 1e-300, 1e300, float("nan"), float("inf"), float("-inf"), 1e-5, 1e7]
    for i in range(n_random):
        c = good_camera_info(rng, rng.choice([1, 2, w, 640, UINT32_MAX]), rng.choice([1, 2, h, 480, UINT32_MAX]),
                             rng.choice([50.0, 500.0]))
        for matrix, n in (("k", 9), ("p", 12)):
            c[matrix] = [rng.choice(pool) if rng.random() < 0.3 else v for v in c[matrix]][:n]
        c["binning_x"], c["binning_y"] = rng.choice([0, 1, 2, 3, UINT32_MAX]), rng.choice([0, 1, 5, UINT32_MAX])
        if rng.random() < 0.3:
            c["roi"] = dict(x_offset=rng.randint(0, 700), y_offset=rng.randint(0, 500), height=rng.randint(0, 500),
                            width=rng.randint(0, 700), do_rectify=rng.random() < 0.5)
        yield dict(c, label=f"random #{i}", expect="any")


def all_cases(seed: int = 0, n_random: int = 100, good_every: int = 5) -> Iterator[Dict]:
    """Image, CompressedImage and CameraInfo cases interleaved, with a good ``rgb8`` Image and a good
    CameraInfo (both ``8 x 6``) after every ``good_every`` cases (the node must still serve them)."""
    rng = random.Random(seed + 3)
    streams: List[Iterator[Dict]] = [image_cases(seed, n_random), compressed_cases(seed, n_random // 2),
                                     camera_info_cases(seed, n_random)]
    k = 0
    while streams:
        s = streams[k % len(streams)]
        try:
            yield next(s)
        except StopIteration:
            streams.remove(s)
            continue
        k += 1
        if good_every and k % good_every == 0:
            yield good_camera_info(rng)
            yield good_image(rng)
