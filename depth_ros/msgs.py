"""The one place where NumPy arrays and sensor_msgs messages meet.

Everything else in depth_ros works on arrays (``depth_ros.core``).  Rules kept here:

* Headers are never shared: every output message gets a *new* ``std_msgs/Header`` with
  the input's ``stamp`` (sec, nanosec) and ``frame_id`` copied, so mutating one message
  cannot change another, and outputs carry exactly the input stamp (exact-time sync
  downstream works).
* ``uint8[]`` fields are filled with an ``_array.array('B')`` built by ``frombytes`` from
  a memoryview (one memcpy, no per-element setter checks); PointCloud2 data built by
  ``depth_ros.core.cloud`` is handed over without any copy.
* Output images are little-endian (``is_bigendian = 0``), rows unpadded.
"""

from __future__ import annotations

import array as _array
from typing import Optional

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from .core.camera import PinholeCamera, camera_from_info
from .core.cloud import PackedCloud
from .core.encodings import (
    _encode_buffer,
    decode_compressed,
    decode_image,
    depth_to_mm16,
    image_to_rgb8,
)

__all__ = [
    "copy_header", "image_msg_to_array", "image_msg_to_rgb8", "compressed_msg_to_rgb8",
    "array_to_image_msg", "depth_image_msg", "camera_from_info_msg", "camera_info_msg", "cloud_msg",
]

_DISTORTION_SIZE = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}


def copy_header(header: Optional[Header], frame_id: Optional[str] = None) -> Header:
    """New Header with ``header``'s stamp and frame_id (or ``frame_id`` if given); None -> zero stamp."""
    out = Header()
    if header is not None:
        out.stamp = Time(sec=int(header.stamp.sec), nanosec=int(header.stamp.nanosec))
        out.frame_id = str(header.frame_id)
    if frame_id is not None:
        out.frame_id = str(frame_id)
    return out


def _bytes_array(buf) -> _array.array:
    """``_array.array('B')`` holding a copy of a C-contiguous buffer (ndarray, bytes, ...)."""
    out = _array.array("B")
    mv = memoryview(buf)
    if mv.ndim != 1 or mv.format != "B":
        mv = mv.cast("B")
    out.frombytes(mv)
    return out


def _set_data(msg, data: _array.array) -> None:
    """``msg.data = data`` without a copy.

    The generated setter copies an ``array.array`` again when field checks are off
    (Kilted+: ``ROS_PYTHON_CHECK_FIELDS`` unset -> ``_array.array('B', value)``), which
    costs milliseconds for a cloud.  All rosidl_generator_py versions keep the value in
    the ``_data`` slot that the getter and the C serializer read, so store it there when
    that slot exists; otherwise fall back to the public setter.
    """
    if data.typecode != "B":
        raise TypeError("data must be _array.array('B')")
    if "_data" in getattr(type(msg), "__slots__", ()):
        msg._data = data
    else:  # pragma: no cover - other message implementations
        msg.data = data


def image_msg_to_array(msg: Image, copy: bool = True) -> np.ndarray:
    """Raw pixels (native dtype and byte order, ``H x W`` or ``H x W x C``) of an Image.

    Raises ``ImageEncodingError`` for unsupported encodings / malformed buffers.
    """
    return decode_image(msg.data, msg.height, msg.width, msg.encoding, msg.step,
                        bool(msg.is_bigendian), copy=copy)


def image_msg_to_rgb8(msg: Image) -> np.ndarray:
    """``H x W x 3`` uint8 RGB of an Image of any supported encoding (see ``to_rgb8``)."""
    return image_to_rgb8(msg.data, msg.height, msg.width, msg.encoding, msg.step, bool(msg.is_bigendian))


def compressed_msg_to_rgb8(msg: CompressedImage) -> np.ndarray:
    """``H x W x 3`` uint8 RGB of a jpeg/png CompressedImage."""
    return decode_compressed(msg.data, msg.format)


def array_to_image_msg(array: np.ndarray, encoding: str, header: Optional[Header] = None) -> Image:
    """Image message of ``array`` (``H x W [x C]``) with the given encoding and a copied header.

    The array is cast to the encoding's dtype when that is a same-kind cast
    (e.g. float64 -> ``32FC1``); otherwise ``ImageEncodingError``.
    """
    buf, height, width, step = _encode_buffer(array, encoding)
    msg = Image()
    msg.header = copy_header(header)
    msg.height = height
    msg.width = width
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = step
    _set_data(msg, _bytes_array(buf))
    return msg


def depth_image_msg(depth_m: np.ndarray, header: Optional[Header] = None, encoding: str = "32FC1") -> Image:
    """REP 118 depth Image: ``32FC1`` metres (values as given, NaN/inf kept) or
    ``16UC1`` millimetres (``depth_to_mm16``: 0 = invalid).  Depth beyond 65.535 m does not
    fit in 16UC1 and becomes 0 (invalid): clipping it would publish a wrong, nearer distance."""
    if encoding == "32FC1":
        return array_to_image_msg(np.asarray(depth_m, dtype=np.float32), "32FC1", header)
    if encoding in ("16UC1", "mono16"):
        d = np.asarray(depth_m)
        mm = depth_to_mm16(d)
        with np.errstate(invalid="ignore", over="ignore"):
            mm[d.astype(np.float64) * 1000.0 + 0.5 >= 65536.0] = 0  # would round above 65535 mm
        return array_to_image_msg(mm, encoding, header)
    raise ValueError("depth encoding must be '32FC1' or '16UC1', got %r" % (encoding,))


def camera_from_info_msg(msg: CameraInfo) -> Optional[PinholeCamera]:
    """Intrinsics of the published image (P-based, ROI + binning applied, image_geometry
    semantics), or None when the camera is uncalibrated.  Raises ``CameraInfoError``."""
    roi = msg.roi
    return camera_from_info(msg.width, msg.height, msg.k, msg.p, msg.binning_x, msg.binning_y,
                            roi=(roi.x_offset, roi.y_offset, roi.height, roi.width, roi.do_rectify))


def camera_info_msg(camera: PinholeCamera, header: Optional[Header] = None,
                    distortion_model: str = "plumb_bob") -> CameraInfo:
    """CameraInfo for a rectified image: K, P = [K|0], R = I, D = zeros, no ROI/binning."""
    msg = CameraInfo()
    msg.header = copy_header(header)
    msg.width = int(camera.width)
    msg.height = int(camera.height)
    msg.distortion_model = distortion_model
    msg.d = _array.array("d", [0.0] * _DISTORTION_SIZE.get(distortion_model, 5))
    msg.k = camera.K.reshape(-1).astype(np.float64)
    msg.r = np.eye(3).reshape(-1)
    msg.p = camera.P.reshape(-1).astype(np.float64)
    return msg


def cloud_msg(packed: PackedCloud, header: Optional[Header] = None) -> PointCloud2:
    """PointCloud2 of a :class:`~depth_ros.core.cloud.PackedCloud` with a copied header.

    When the cloud's buffer is an ``array.array`` made by depth_ros.core it becomes the
    message's ``data`` directly (the message then owns it; do not reuse ``packed.data``
    for writing afterwards); otherwise the bytes are copied once.
    """
    msg = PointCloud2()
    msg.header = copy_header(header)
    msg.height = int(packed.height)
    msg.width = int(packed.width)
    msg.fields = [PointField(name=f[0], offset=int(f[1]), datatype=int(f[2]), count=int(f[3]))
                  for f in packed.fields]
    msg.is_bigendian = bool(packed.is_bigendian)
    msg.point_step = int(packed.point_step)
    msg.row_step = int(packed.row_step)
    msg.is_dense = bool(packed.is_dense)
    nbytes = msg.row_step * msg.height
    backing = packed.backing
    if (backing is not None and len(backing) == nbytes and packed.data.size == nbytes
            and packed.data.ctypes.data == backing.buffer_info()[0]):
        _set_data(msg, backing)
    else:
        data = np.ascontiguousarray(packed.data).reshape(-1)
        if data.size < nbytes:
            raise ValueError("cloud data has %d bytes, expected row_step*height = %d" % (data.size, nbytes))
        _set_data(msg, _bytes_array(data[:nbytes]))
    return msg
