"""Raw image buffers <-> numpy arrays, for every ``sensor_msgs/Image`` encoding we support.

ROS-free: this module only sees ``(data, height, width, encoding, step, is_bigendian)``,
the fields of ``sensor_msgs/Image``.  ``depth_ros.msgs`` is the thin layer on top that
takes real messages.

Decoding follows the cv_bridge algorithm (dtype from the encoding, byte order from
``is_bigendian``, rows of ``step`` bytes of which the first ``width * bytes_per_pixel``
are pixels) but works on NumPy 2 and always returns native-endian arrays.

Colour conversion for the networks (:func:`to_rgb8`) notes:

* ``8UC3`` is treated as BGR and ``8UC4`` as BGRA, like cv_bridge.
* ``mono16`` / ``rgb16``-family (camera intensities using the full 16-bit range) are
  reduced with ``>> 8``.
* ``16UC1`` (usually raw depth or IR in mm, using a small part of the range) and the
  other single-channel numeric encodings (``32FC1``, ``8SC1``, ``16SC1``, ``32SC1``,
  ``64FC1``) are min/max stretched over their finite values to 0..255 (for integer
  encodings the zero pixels, typically "invalid", are left out of the min/max and stay
  black).  Non-finite float pixels become 0.
* Bayer: ROS names the 2x2 pattern by its first row (``rggb`` = R G / G B); OpenCV
  names it by the second row's 2nd and 3rd pixel, so ``bayer_rggb8`` ->
  ``COLOR_BayerBG2RGB``, ``bggr`` -> ``BayerRG``, ``gbrg`` -> ``BayerGR``,
  ``grbg`` -> ``BayerGB`` (same table as cv_bridge).  16-bit Bayer is demosaiced at
  16 bit and then shifted ``>> 8``.
* YUV 4:2:2: ``yuv422`` / ``uyvy`` are UYVY (U0 Y0 V0 Y1), ``yuv422_yuy2`` / ``yuyv``
  are YUYV (Y0 U0 Y1 V0); the raw array is ``H x W x 2`` uint8 and the width must be
  even.

Not supported: ``nv21``, ``nv24`` (planar, not an ``H x W [x C]`` array), ``64FC3``-style
multi-channel non-8-bit encodings decode fine but cannot be turned into RGB.
"""

from __future__ import annotations

import array as _array
import re
import sys
from typing import Dict, Optional, Tuple

import numpy as np

__all__ = [
    "ImageEncodingError",
    "SUPPORTED_ENCODINGS",
    "RGB_ENCODINGS",
    "encoding_info",
    "decode_image",
    "to_rgb8",
    "image_to_rgb8",
    "decode_compressed",
    "compressed_image_size",
    "DEFAULT_MAX_PIXELS",
    "SIZED_FORMATS",
    "encode_image",
    "depth_to_mm16",
]


class ImageEncodingError(ValueError):
    """Raised for unsupported encodings and malformed image buffers."""


# name -> (numpy dtype char, channels)
_NAMED: Dict[str, Tuple[str, int]] = {
    "rgb8": ("u1", 3),
    "bgr8": ("u1", 3),
    "rgba8": ("u1", 4),
    "bgra8": ("u1", 4),
    "rgb16": ("u2", 3),
    "bgr16": ("u2", 3),
    "rgba16": ("u2", 4),
    "bgra16": ("u2", 4),
    "mono8": ("u1", 1),
    "mono16": ("u2", 1),
    "bayer_rggb8": ("u1", 1),
    "bayer_bggr8": ("u1", 1),
    "bayer_gbrg8": ("u1", 1),
    "bayer_grbg8": ("u1", 1),
    "bayer_rggb16": ("u2", 1),
    "bayer_bggr16": ("u2", 1),
    "bayer_gbrg16": ("u2", 1),
    "bayer_grbg16": ("u2", 1),
    "yuv422": ("u1", 2),
    "uyvy": ("u1", 2),
    "yuv422_yuy2": ("u1", 2),
    "yuyv": ("u1", 2),
}

_DEPTH_CHAR = {"8U": "u1", "8S": "i1", "16U": "u2", "16S": "i2", "32S": "i4", "32F": "f4", "64F": "f8"}
for _depth, _char in _DEPTH_CHAR.items():
    for _c in (1, 2, 3, 4):
        _NAMED["%sC%d" % (_depth, _c)] = (_char, _c)

_GENERIC_RE = re.compile(r"^(8U|8S|16U|16S|32S|32F|64F)C([1-9][0-9]*)$")

#: Every encoding :func:`decode_image` / :func:`encode_image` accept.
SUPPORTED_ENCODINGS = frozenset(_NAMED)

_YUV = {"yuv422": "uyvy", "uyvy": "uyvy", "yuv422_yuy2": "yuyv", "yuyv": "yuyv"}
_BAYER_CV = {  # ROS pattern -> OpenCV constant name (see module docstring)
    "rggb": "COLOR_BayerBG2RGB",
    "bggr": "COLOR_BayerRG2RGB",
    "gbrg": "COLOR_BayerGR2RGB",
    "grbg": "COLOR_BayerGB2RGB",
}

#: Encodings :func:`to_rgb8` converts (everything decodable except multi-channel
#: non-8-bit generic encodings and 2-channel generic encodings).
RGB_ENCODINGS = frozenset(
    e for e in SUPPORTED_ENCODINGS
    if not (_GENERIC_RE.match(e) and (_NAMED[e][1] == 2 or (_NAMED[e][1] > 1 and _NAMED[e][0] != "u1")))
)


def encoding_info(encoding: str) -> Tuple[np.dtype, int]:
    """``(dtype, channels)`` of an encoding (dtype native-endian); raises ImageEncodingError."""
    info = _NAMED.get(encoding)
    if info is None:
        shown = ", ".join(sorted(e for e in SUPPORTED_ENCODINGS if not _GENERIC_RE.match(e)))
        raise ImageEncodingError(
            "unsupported image encoding %r (supported: %s, and <8U|8S|16U|16S|32S|32F|64F>C<1-4>)"
            % (encoding, shown))
    return np.dtype(info[0]), info[1]


def _as_byte_array(data) -> np.ndarray:
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ImageEncodingError("data array must be uint8, got %s" % data.dtype)
        return data.reshape(-1)  # copies only if non-contiguous
    if isinstance(data, (bytes, bytearray, _array.array)):
        return np.frombuffer(data, dtype=np.uint8)
    if isinstance(data, memoryview):
        return np.frombuffer(data.cast("B") if data.format != "B" or data.ndim != 1 else data, dtype=np.uint8)
    try:
        return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    except TypeError:
        # e.g. a list of ints (rclpy never gives one, tests might)
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def _check_geometry(height, width, encoding):
    if int(height) != height or int(width) != width:
        raise ImageEncodingError("height/width must be integers, got %r x %r" % (height, width))
    if height <= 0 or width <= 0:
        raise ImageEncodingError("image has zero size (height=%d, width=%d)" % (height, width))
    if encoding in _YUV and width % 2:
        raise ImageEncodingError("%s (YUV 4:2:2) needs an even width, got %d" % (encoding, width))


def decode_image(data, height: int, width: int, encoding: str, step: int,
                 is_bigendian: bool = False, copy: bool = True) -> np.ndarray:
    """Raw pixels of an image buffer as an ``H x W`` or ``H x W x C`` array.

    The dtype is the encoding's (uint8, uint16, float32, ...) in native byte order;
    ``step`` row padding is dropped.  With ``copy=True`` (default) the result is always a
    fresh C-contiguous writable array; with ``copy=False`` it may be a (possibly
    read-only) view into ``data`` when no conversion is needed.
    """
    dtype, channels = encoding_info(encoding)
    _check_geometry(height, width, encoding)
    height, width, step = int(height), int(width), int(step)
    isz = dtype.itemsize
    row_bytes = width * channels * isz
    if step < row_bytes:
        raise ImageEncodingError(
            "step %d is smaller than width*bytes_per_pixel = %d*%d = %d for %s"
            % (step, width, channels * isz, row_bytes, encoding))
    buf = _as_byte_array(data)
    need = step * height
    if buf.size < need:
        raise ImageEncodingError(
            "data has %d bytes, expected at least step*height = %d*%d = %d (%s %dx%d)"
            % (buf.size, step, height, need, encoding, width, height))
    wire = dtype.newbyteorder(">" if is_bigendian else "<") if isz > 1 else dtype
    shape = (height, width, channels)
    arr = np.ndarray(shape=shape, dtype=wire, buffer=buf[:need], strides=(step, channels * isz, isz))
    if channels == 1:
        arr = arr[:, :, 0]
    if wire != dtype:  # byte swap (this also copies)
        return arr.astype(dtype)
    if copy or not arr.flags.c_contiguous or not arr.flags.aligned:
        return np.array(arr, dtype=dtype, order="C", copy=True)
    return arr


def _cv2():
    import cv2  # lazily: keeps `import depth_ros.core` light for pure-numpy users
    return cv2


def _stretch_u8(img: np.ndarray, ignore_zero: bool) -> np.ndarray:
    """Min/max stretch a single-channel numeric image to uint8 (non-finite -> 0)."""
    with np.errstate(over="ignore", invalid="ignore"):  # float64 beyond float32 -> inf -> left out below
        f = img.astype(np.float32, copy=False)
    valid = np.isfinite(f)
    if ignore_zero:
        valid &= f != 0
    out = np.zeros(img.shape, np.uint8)
    if not valid.any():
        return out
    vals = f[valid]
    lo, hi = float(vals.min()), float(vals.max())
    if hi > lo:
        out[valid] = np.clip(np.rint((vals - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)
    else:  # constant image: mid grey
        out[valid] = 128
    return out


def _gray_to_rgb(g8: np.ndarray) -> np.ndarray:
    return np.repeat(g8[:, :, None], 3, axis=2)


def _cvt(cv2, a: np.ndarray, code) -> np.ndarray:
    """``cv2.cvtColor`` whose ``cv2.error`` becomes an ImageEncodingError."""
    try:
        return cv2.cvtColor(a, code)
    except cv2.error as exc:
        raise ImageEncodingError("cannot convert a %s %s image to rgb8: OpenCV refused it (%s)"
                                 % ("x".join(map(str, a.shape)), a.dtype, _cv_reason(exc))) from None


def to_rgb8(array: np.ndarray, encoding: str) -> np.ndarray:
    """Convert a decoded image (see :func:`decode_image`) to ``H x W x 3`` uint8 RGB.

    For ``rgb8`` the input itself is returned when it already is a C-contiguous uint8
    ``H x W x 3`` array; every other encoding gives a new array.
    """
    dtype, channels = encoding_info(encoding)
    a = np.asarray(array)
    want = (a.shape[:2] + ((channels,) if channels > 1 else ()))
    if a.ndim not in (2, 3) or a.shape != want:
        if not (channels == 1 and a.ndim == 3 and a.shape[2] == 1):
            raise ImageEncodingError("array of shape %s does not match encoding %s (%d channel(s))"
                                     % (a.shape, encoding, channels))
        a = a[:, :, 0]
    if a.dtype != dtype:
        raise ImageEncodingError("array dtype %s does not match encoding %s (%s)" % (a.dtype, encoding, dtype))
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageEncodingError("image has zero size %s" % (a.shape,))
    cv2 = _cv2()
    if encoding in _YUV:
        if a.shape[1] % 2:
            raise ImageEncodingError("%s (YUV 4:2:2) needs an even width, got %d" % (encoding, a.shape[1]))
        code = cv2.COLOR_YUV2RGB_UYVY if _YUV[encoding] == "uyvy" else cv2.COLOR_YUV2RGB_YUY2
        return _cvt(cv2, np.ascontiguousarray(a), code)
    if encoding.startswith("bayer_"):
        code = getattr(cv2, _BAYER_CV[encoding[6:10]])
        rgb = _cvt(cv2, np.ascontiguousarray(a), code)
        if rgb.dtype == np.uint16:
            rgb = (rgb >> 8).astype(np.uint8)
        return rgb
    if dtype == np.uint16 and encoding in ("rgb16", "bgr16", "rgba16", "bgra16", "mono16"):
        a = (a >> 8).astype(np.uint8)
        encoding = encoding.replace("16", "8")
    if encoding == "rgb8":
        return np.ascontiguousarray(a)
    if encoding in ("bgr8", "8UC3"):
        return _cvt(cv2, np.ascontiguousarray(a), cv2.COLOR_BGR2RGB)
    if encoding == "rgba8":
        return np.ascontiguousarray(a[:, :, :3])
    if encoding in ("bgra8", "8UC4"):
        return _cvt(cv2, np.ascontiguousarray(a), cv2.COLOR_BGRA2RGB)
    if encoding in ("mono8", "8UC1"):
        return _gray_to_rgb(a)
    if a.ndim == 2:  # other single-channel numeric encodings (16UC1, 32FC1, ...)
        return _gray_to_rgb(_stretch_u8(a, ignore_zero=a.dtype.kind in "iu"))
    raise ImageEncodingError("cannot convert %s (%d channels of %s) to rgb8" % (encoding, channels, dtype))


def image_to_rgb8(data, height: int, width: int, encoding: str, step: int,
                  is_bigendian: bool = False) -> np.ndarray:
    """:func:`decode_image` + :func:`to_rgb8`; always returns a new writable array."""
    raw = decode_image(data, height, width, encoding, step, is_bigendian, copy=False)
    rgb = to_rgb8(raw, encoding)
    if not rgb.flags.writeable or np.may_share_memory(rgb, raw):
        rgb = rgb.copy()
    return rgb


#: Default ``max_pixels`` of :func:`decode_compressed`: 8192 x 6144 (50.3 MP) covers 8K UHD
#: (7680 x 4320 = 33.2 MP) and DCI 8K (8192 x 4320) with a margin, and keeps one decoded RGB frame
#: near 150 MB.
DEFAULT_MAX_PIXELS = 8192 * 6144

#: Formats whose size :func:`compressed_image_size` reads from the header.
SIZED_FORMATS = ("PNG", "JPEG", "WebP", "BMP", "PNM", "PAM", "PFM", "TIFF", "GIF", "Sun raster", "Radiance HDR")


class _HeaderError(Exception):
    """A recognised format whose header is cut short or malformed (internal)."""


def _u16be(b, i):
    return (b[i] << 8) | b[i + 1]


def _u16le(b, i):
    return b[i] | (b[i + 1] << 8)


def _u32be(b, i):
    return (b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]


def _u32le(b, i):
    return b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)


def _need(b, n, what):
    if len(b) < n:
        raise _HeaderError("%s header is truncated (%d bytes)" % (what, len(b)))


def _png_size(b):
    _need(b, 24, "PNG")
    if b[12:16] != b"IHDR":
        raise _HeaderError("PNG does not start with an IHDR chunk")
    # Walk the chunk list: OpenCV 4.13 allocates what a chunk's length field claims before it reads
    # the chunk, so a 2 kB PNG claiming a 2.5 GB IDAT costs 2.5 GB and seconds. Refuse it here.
    i, n = 8, len(b)
    while True:
        if i + 8 > n:
            raise _HeaderError("PNG ends without an IEND chunk (truncated, %d bytes)" % n)
        length = _u32be(b, i)
        if i + 12 + length > n:
            raise _HeaderError("PNG chunk %r claims %d bytes, past the end of the %d-byte payload (truncated or "
                               "corrupt)" % (bytes(b[i + 4:i + 8]).decode("latin-1"), length, n))
        if b[i + 4:i + 8] == b"IEND":
            return _u32be(b, 16), _u32be(b, 20)
        i += 12 + length


# SOF markers (baseline, extended, progressive, lossless, arithmetic, hierarchical); C4 (DHT), C8 (JPG)
# and CC (DAC) share the range but are not frames
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(b):
    i, n = 2, len(b)
    while True:
        while i < n and b[i] != 0xFF:  # tolerate garbage between segments like libjpeg does
            j = bytes(b[i:i + 65536]).find(b"\xff")
            i = i + j if j >= 0 else min(n, i + 65536)
        while i < n and b[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            raise _HeaderError("JPEG has no frame header (SOF) before its end")
        marker = b[i]
        i += 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # standalone markers
            continue
        if marker in (0xD9, 0xDA):
            raise _HeaderError("JPEG has no frame header (SOF) before its %s" % ("end" if marker == 0xD9 else "scan"))
        _need(b, i + 2, "JPEG")
        length = _u16be(b, i)
        if length < 2:
            raise _HeaderError("JPEG segment 0x%02X has an invalid length %d" % (marker, length))
        if marker in _JPEG_SOF:
            _need(b, i + 7, "JPEG")
            height, width = _u16be(b, i + 3), _u16be(b, i + 5)
            if height == 0:
                raise _HeaderError("JPEG frame height is defined later by a DNL marker (unsupported)")
            return width, height
        i += length


def _webp_size(b):
    _need(b, 30, "WebP")
    chunk = b[12:16]
    if chunk == b"VP8 ":
        if b[23:26] != b"\x9d\x01\x2a":
            raise _HeaderError("WebP VP8 frame has no start code")
        return _u16le(b, 26) & 0x3FFF, _u16le(b, 28) & 0x3FFF
    if chunk == b"VP8L":
        if b[20] != 0x2F:
            raise _HeaderError("WebP VP8L bitstream has no signature")
        bits = _u32le(b, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return (b[24] | (b[25] << 8) | (b[26] << 16)) + 1, (b[27] | (b[28] << 8) | (b[29] << 16)) + 1
    raise _HeaderError("WebP has an unknown first chunk %r" % bytes(chunk))


def _bmp_size(b):
    _need(b, 26, "BMP")
    dib = _u32le(b, 14)
    if dib == 12:  # BITMAPCOREHEADER: 16-bit sizes
        return _u16le(b, 18), _u16le(b, 20)
    width = int.from_bytes(bytes(b[18:22]), "little", signed=True)
    height = int.from_bytes(bytes(b[22:26]), "little", signed=True)  # negative: top-down rows
    return abs(width), abs(height)


_PNM_TOKEN = re.compile(rb"\s*(?:#[^\n]*\n\s*)*([^\s#]+)")


def _pnm_size(b, what):
    head = bytes(b[2:512])
    vals, pos = [], 0
    for _ in range(2):
        m = _PNM_TOKEN.match(head, pos)
        if not m:
            raise _HeaderError("%s header is truncated or malformed" % what)
        try:
            vals.append(int(m.group(1)))
        except ValueError:
            raise _HeaderError("%s header has a non-numeric size %r" % (what, m.group(1)[:20])) from None
        pos = m.end()
    return vals[0], vals[1]


def _pam_size(b):
    head = bytes(b[:1024])
    end = head.find(b"ENDHDR")
    if end < 0:
        raise _HeaderError("PAM header has no ENDHDR")
    fields = dict(line.split(None, 1) for line in head[:end].splitlines()[1:] if len(line.split(None, 1)) == 2)
    try:
        return int(fields[b"WIDTH"]), int(fields[b"HEIGHT"])
    except (KeyError, ValueError):
        raise _HeaderError("PAM header has no numeric WIDTH/HEIGHT") from None


def _tiff_size(b):
    _need(b, 16, "TIFF")
    le = b[:2] == b"II"
    u16 = _u16le if le else _u16be
    u32 = _u32le if le else _u32be
    big = u16(b, 2) == 43  # BigTIFF: 8-byte offsets, 20-byte entries

    def u64(i):
        return int.from_bytes(bytes(b[i:i + 8]), "little" if le else "big")
    ifd = u64(8) if big else u32(b, 4)
    count_size, entry_size = (8, 20) if big else (2, 12)
    _need(b, ifd + count_size, "TIFF")
    count = u64(ifd) if big else u16(b, ifd)
    size = {}
    for k in range(min(count, 4096)):
        e = ifd + count_size + k * entry_size
        _need(b, e + entry_size, "TIFF")
        tag, typ = u16(b, e), u16(b, e + 2)
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT, LONG or LONG8
            v = e + (12 if big else 8)
            size[tag] = u16(b, v) if typ == 3 else (u64(v) if typ == 16 else u32(b, v))
        if len(size) == 2:
            return size[256], size[257]
    raise _HeaderError("TIFF first IFD has no ImageWidth/ImageLength")


def _hdr_size(b):
    head = bytes(b[:4096])
    m = re.search(rb"\n\n([-+][YX]) (\d+) ([-+][YX]) (\d+)", head)
    if not m:
        raise _HeaderError("Radiance HDR header has no resolution line")
    a, b_ = int(m.group(2)), int(m.group(4))
    return (b_, a) if m.group(1)[1:] == b"Y" else (a, b_)


def compressed_image_size(data) -> Tuple[Optional[str], Optional[Tuple[int, int]], str]:
    """Read ``(format, (width, height), problem)`` from a compressed image's header, without decoding.

    ``format`` is one of :data:`SIZED_FORMATS` (recognised by its magic bytes) or None; the size is
    None when the format is unknown or its header is cut short or malformed, and ``problem`` then
    says why. Only the first few hundred bytes are read (TIFF: its first IFD; JPEG: the segments
    before the frame header).
    """
    b = memoryview(np.ascontiguousarray(_as_byte_array(data)))  # indexing gives Python ints
    if b[:8].tobytes() == b"\x89PNG\r\n\x1a\n":
        kind, probe = "PNG", _png_size
    elif b[:3].tobytes() == b"\xff\xd8\xff":
        kind, probe = "JPEG", _jpeg_size
    elif b[:4].tobytes() == b"RIFF" and b[8:12].tobytes() == b"WEBP":
        kind, probe = "WebP", _webp_size
    elif b[:2].tobytes() == b"BM":
        kind, probe = "BMP", _bmp_size
    elif b[:2].tobytes() in (b"II", b"MM") and b[2:4].tobytes() in (b"*\0", b"\0*", b"+\0", b"\0+"):
        kind, probe = "TIFF", _tiff_size
    elif b[:6].tobytes() in (b"GIF87a", b"GIF89a"):
        kind, probe = "GIF", lambda x: (_need(x, 10, "GIF"), (_u16le(x, 6), _u16le(x, 8)))[1]
    elif b[:4].tobytes() == b"\x59\xa6\x6a\x95":
        kind, probe = "Sun raster", lambda x: (_need(x, 12, "Sun raster"), (_u32be(x, 4), _u32be(x, 8)))[1]
    elif b[:2].tobytes() in (b"PF", b"Pf"):
        kind, probe = "PFM", lambda x: _pnm_size(x, "PFM")
    elif b[:2].tobytes() == b"P7":
        kind, probe = "PAM", _pam_size
    elif len(b) >= 3 and b[0] == 0x50 and 0x31 <= b[1] <= 0x36 and chr(b[2]).isspace():
        kind, probe = "PNM", lambda x: _pnm_size(x, "PNM")
    elif b[:2].tobytes() == b"#?" and (b[:10].tobytes() == b"#?RADIANCE" or b[:6].tobytes() == b"#?RGBE"):
        kind, probe = "Radiance HDR", _hdr_size
    else:
        return None, None, "unknown image format (first bytes %s)" % (b[:8].tobytes().hex(" ") or "none")
    try:
        return kind, probe(b), ""
    except _HeaderError as exc:
        return kind, None, str(exc)
    except IndexError:  # a field past the end of the buffer
        return kind, None, "%s header is truncated (%d bytes)" % (kind, len(b))


def decode_compressed(data, fmt: str = "", max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` payload (jpeg/png/...) to H x W x 3 uint8 RGB.

    ``fmt`` is the message's ``format`` field (e.g. ``"jpeg"``, ``"rgb8; jpeg compressed
    bgr8"``); it is only used for the error messages and to reject
    ``compressedDepth`` payloads, which are not plain images (the payload's own magic bytes
    decide its format).

    ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS`): the image size is read from the header
    first (:func:`compressed_image_size`) and an image of more pixels is refused *before*
    anything is decoded or allocated (a 400 kB PNG can claim 12000 x 12000 pixels). With a limit,
    a payload whose size cannot be read (an unknown format, or a recognised one with a truncated
    or malformed header) is refused as well, because nothing would bound its decoding: PNG,
    JPEG, WebP, BMP, PNM/PAM/PFM, TIFF, GIF, Sun raster and Radiance HDR are accepted, other
    formats OpenCV reads (JPEG 2000, AVIF, OpenEXR) only with ``max_pixels=None``, which
    leaves the bound to OpenCV (2^30 pixels).

    Every failure is an :class:`ImageEncodingError` naming the format and what is wrong
    (OpenCV's own ``cv2.error`` never escapes).
    """
    cv2 = _cv2()
    if "compresseddepth" in (fmt or "").replace(" ", "").lower():
        raise ImageEncodingError("compressedDepth images (format %r) are not supported; "
                                 "subscribe to the raw depth topic instead" % fmt)
    buf = _as_byte_array(data)
    if buf.size == 0:
        raise ImageEncodingError("compressed image (format %r) is empty" % (fmt,))
    what = "compressed image (format %r, %d bytes)" % (fmt, buf.size)
    if max_pixels is not None:
        kind, size, problem = compressed_image_size(buf)
        if size is None:
            raise ImageEncodingError("could not decode %s: %s; its size cannot be read, refused before decoding"
                                     % (what, problem))
        w, h = size
        if w <= 0 or h <= 0:
            raise ImageEncodingError("could not decode %s: its %s header says %d x %d pixels" % (what, kind, w, h))
        if w * h > int(max_pixels):
            raise ImageEncodingError("%s is too large: its %s header says %d x %d = %d pixels > max_pixels %d; "
                                     "refused before decoding" % (what, kind, w, h, w * h, int(max_pixels)))
    try:
        img = cv2.imdecode(np.ascontiguousarray(buf), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # e.g. OpenCV's own 2^30-pixel assertion
        raise ImageEncodingError("could not decode %s: OpenCV refused it (%s)" % (what, _cv_reason(exc))) from None
    if img is None:
        raise ImageEncodingError("could not decode %s" % what)
    if img.dtype == np.uint16:  # 16-bit PNG: same rule as mono16/rgb16
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageEncodingError("%s decoded to unsupported dtype %s" % (what, img.dtype))
    if img.ndim == 2:
        return _gray_to_rgb(img)
    if img.shape[2] == 1:
        return _gray_to_rgb(img[:, :, 0])
    if img.shape[2] not in (3, 4):
        raise ImageEncodingError("%s decoded to %d channels (expected 1, 3 or 4)" % (what, img.shape[2]))
    return _cvt(cv2, img, cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)


def _cv_reason(exc) -> str:
    """The useful one-line part of a ``cv2.error`` (its ``err`` attribute, else the last line)."""
    text = getattr(exc, "err", None) or str(exc)
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


def _encode_buffer(array, encoding: str, is_bigendian: bool = False,
                   step: Optional[int] = None) -> Tuple[np.ndarray, int, int, int]:
    """Wire-format rows as a C-contiguous array; returns ``(buf, height, width, step)``.

    ``buf`` may be the (contiguous) input array itself when nothing needs converting.
    """
    dtype, channels = encoding_info(encoding)
    a = np.asarray(array)
    if channels == 1 and a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    want_ndim = 2 if channels == 1 else 3
    if a.ndim != want_ndim or (channels > 1 and a.shape[2] != channels):
        raise ImageEncodingError("array of shape %s does not match encoding %s (%d channel(s))"
                                 % (a.shape, encoding, channels))
    height, width = a.shape[:2]
    _check_geometry(height, width, encoding)
    if a.dtype != dtype:
        if not np.can_cast(a.dtype, dtype, "same_kind"):
            raise ImageEncodingError("cannot store %s data as %s (%s)" % (a.dtype, encoding, dtype))
        a = a.astype(dtype)
    isz = dtype.itemsize
    row_bytes = width * channels * isz
    if step is None:
        step = row_bytes
    step = int(step)
    if step < row_bytes:
        raise ImageEncodingError("step %d is smaller than width*bytes_per_pixel = %d" % (step, row_bytes))
    swap = isz > 1 and (bool(is_bigendian) != (sys.byteorder == "big"))
    if swap:
        a = a.astype(dtype.newbyteorder(">" if is_bigendian else "<"))
    if step == row_bytes:
        return np.ascontiguousarray(a), height, width, step
    out = np.zeros((height, step), np.uint8)
    out[:, :row_bytes] = np.ascontiguousarray(a).view(np.uint8).reshape(height, row_bytes)
    return out, height, width, step


def encode_image(array, encoding: str, is_bigendian: bool = False,
                 step: Optional[int] = None) -> Tuple[bytes, int]:
    """Inverse of :func:`decode_image`: ``(data, step)`` for an ``H x W [x C]`` array.

    ``step`` defaults to the packed row size; a larger value pads every row with zero
    bytes.  Arrays are cast to the encoding's dtype when the cast is ``same_kind``
    (e.g. float64 -> 32FC1); otherwise ImageEncodingError.
    """
    buf, _h, _w, step = _encode_buffer(array, encoding, is_bigendian, step)
    return buf.tobytes(), step


def depth_to_mm16(depth_m) -> np.ndarray:
    """Metric depth (m) -> REP 118 ``16UC1`` millimetres.

    Rounds half up (like depth_image_proc's ``DepthTraits<uint16_t>::fromMeters``),
    0 = invalid for NaN, +-inf and depth <= 0.  Depth that would round above 65535 mm
    (65.535 m) does not fit and is 0 (invalid) too: clipping it would store a wrong, nearer
    distance.  Positive depths below 0.5 mm also become 0.
    """
    d = np.asarray(depth_m)
    if d.dtype.kind not in "fiu":
        raise TypeError("depth must be numeric, got %s" % d.dtype)
    ftype = np.float64 if d.dtype == np.float64 else np.float32
    with np.errstate(invalid="ignore", over="ignore"):
        mm = d.astype(ftype) * ftype(1000.0)
        mm += ftype(0.5)
        bad = ~(np.isfinite(d) & (d > 0)) | (mm >= ftype(65536.0))
        mm[bad] = 0
        np.floor(mm, out=mm)
    return mm.astype(np.uint16)
