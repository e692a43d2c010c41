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
        return cv2.cvtColor(np.ascontiguousarray(a), code)
    if encoding.startswith("bayer_"):
        code = getattr(cv2, _BAYER_CV[encoding[6:10]])
        rgb = cv2.cvtColor(np.ascontiguousarray(a), code)
        if rgb.dtype == np.uint16:
            rgb = (rgb >> 8).astype(np.uint8)
        return rgb
    if dtype == np.uint16 and encoding in ("rgb16", "bgr16", "rgba16", "bgra16", "mono16"):
        a = (a >> 8).astype(np.uint8)
        encoding = encoding.replace("16", "8")
    if encoding == "rgb8":
        return np.ascontiguousarray(a)
    if encoding in ("bgr8", "8UC3"):
        return cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_BGR2RGB)
    if encoding == "rgba8":
        return np.ascontiguousarray(a[:, :, :3])
    if encoding in ("bgra8", "8UC4"):
        return cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_BGRA2RGB)
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


def decode_compressed(data, fmt: str = "") -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` payload (jpeg/png/...) to H x W x 3 uint8 RGB.

    ``fmt`` is the message's ``format`` field (e.g. ``"jpeg"``, ``"rgb8; jpeg compressed
    bgr8"``); it is only used for the error messages and to reject
    ``compressedDepth`` payloads, which are not plain images.
    """
    cv2 = _cv2()
    if "compresseddepth" in (fmt or "").replace(" ", "").lower():
        raise ImageEncodingError("compressedDepth images (format %r) are not supported; "
                                 "subscribe to the raw depth topic instead" % fmt)
    buf = _as_byte_array(data)
    if buf.size == 0:
        raise ImageEncodingError("compressed image (format %r) is empty" % (fmt,))
    img = cv2.imdecode(np.ascontiguousarray(buf), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageEncodingError("could not decode compressed image (format %r, %d bytes)" % (fmt, buf.size))
    if img.dtype == np.uint16:  # 16-bit PNG: same rule as mono16/rgb16
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageEncodingError("compressed image (format %r) decoded to unsupported dtype %s"
                                 % (fmt, img.dtype))
    if img.ndim == 2:
        return _gray_to_rgb(img)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    if img.shape[2] == 1:
        return _gray_to_rgb(img[:, :, 0])
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


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
    0 = invalid for NaN, +-inf and depth <= 0, clips at 65535 (65.535 m).  Positive
    depths below 0.5 mm also become 0.
    """
    d = np.asarray(depth_m)
    if d.dtype.kind not in "fiu":
        raise TypeError("depth must be numeric, got %s" % d.dtype)
    ftype = np.float64 if d.dtype == np.float64 else np.float32
    with np.errstate(invalid="ignore", over="ignore"):
        mm = d.astype(ftype) * ftype(1000.0)
        mm += ftype(0.5)
        bad = ~(np.isfinite(d) & (d > 0))
        mm[bad] = 0
        np.clip(mm, 0, 65535, out=mm)
        np.floor(mm, out=mm)
    return mm.astype(np.uint16)
