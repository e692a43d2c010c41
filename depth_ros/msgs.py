"""The one place where NumPy arrays and ROS messages meet: one builder for the node's rclpy messages and
for what ``depth-ros bag`` stores.

Every builder takes a ``kit``: ``RCLPY`` (rclpy's generated classes; the default, for the node) or
``ROSBAGS`` (the ``rosbags`` typestore dataclasses, serialized to CDR by the bag writer without rclpy).
Both are filled from the same fields by the same functions, so a bag written by ``depth-ros bag`` holds
byte-for-byte what the node publishes. The readers (``*_msg_to_*``) accept either kind of message.

Rules kept here:

* Headers are never shared: every output message gets a *new* ``std_msgs/Header`` with the input's
  ``stamp`` (sec, nanosec) and ``frame_id`` copied, so outputs carry exactly the input stamp
  (exact-time sync downstream works).
* rclpy ``uint8[]`` fields are filled with an ``array.array('B')`` built by ``frombytes`` (one memcpy,
  no per-element setter checks); PointCloud2 data built by ``depth_ros.core.cloud`` is handed over
  without any copy.
* Output images are little-endian (``is_bigendian = 0``), rows unpadded; depth follows REP 118 (one
  rule for 16UC1: ``core.encodings.depth_to_mm16``, 0 = invalid, also beyond 65.535 m).
"""

from __future__ import annotations

import array as _array
import importlib
from typing import Optional, Tuple

import numpy as np

from .core.camera import PinholeCamera, camera_from_info
from .core.cloud import PackedCloud, unpack_rgb_uint32
from .core.encodings import _encode_buffer, decode_compressed, decode_image, depth_to_mm16, image_to_rgb8

__all__ = [
    "RCLPY", "ROSBAGS", "MessageKit", "stamp_ns", "make_header", "copy_header", "type_name",
    "image_msg_to_array", "image_msg_to_rgb8", "compressed_msg_to_rgb8", "msg_to_rgb8", "depth_from_image_msg",
    "array_to_image_msg", "depth_image_msg", "camera_from_info_msg", "camera_info_msg", "cloud_msg",
    "cloud_msg_to_arrays", "string_msg", "output_msg",
]

_DISTORTION_SIZE = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}


class MessageKit:
    """Message classes of one ROS 2 Python implementation and how their array fields are filled."""

    name = "kit"

    def cls(self, typename: str):  # pragma: no cover - abstract
        raise NotImplementedError

    def make(self, typename: str, data=None, backing: Optional[_array.array] = None, **fields):
        """A ``typename`` message with ``fields``; ``data`` (a buffer) fills its ``uint8[] data`` field
        (``backing``: an ``array.array('B')`` holding exactly those bytes, used without a copy when the
        implementation allows)."""
        raise NotImplementedError  # pragma: no cover

    def floats(self, values, fixed: bool):
        """A ``float64[N]`` (``fixed``) or ``float64[]`` field value."""
        raise NotImplementedError  # pragma: no cover


class _RclpyKit(MessageKit):
    name = "rclpy"

    def __init__(self):
        self._classes = {}

    def cls(self, typename: str):
        c = self._classes.get(typename)
        if c is None:
            pkg, _, name = typename.split("/")
            c = self._classes[typename] = getattr(importlib.import_module(f"{pkg}.msg"), name)
        return c

    def make(self, typename: str, data=None, backing=None, **fields):
        msg = self.cls(typename)(**fields)
        if data is not None:
            _set_data(msg, backing if backing is not None else _bytes_array(data))
        return msg

    def floats(self, values, fixed: bool):
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
        return arr if fixed else _array.array("d", arr.tolist())


class _RosbagsKit(MessageKit):
    name = "rosbags"

    def cls(self, typename: str):
        return typestore().types[typename]

    def make(self, typename: str, data=None, backing=None, **fields):
        if data is not None:
            fields["data"] = np.frombuffer(memoryview(data).cast("B"), np.uint8).copy()
        return self.cls(typename)(**fields)

    def floats(self, values, fixed: bool):
        return np.asarray(values, dtype=np.float64).reshape(-1).copy()


RCLPY = _RclpyKit()
ROSBAGS = _RosbagsKit()
_TYPESTORE = None


def typestore():
    """The ``rosbags`` ROS 2 Jazzy typestore (sensor_msgs are the same in Humble, Jazzy and Kilted)."""
    global _TYPESTORE
    if _TYPESTORE is None:
        from rosbags.typesys import Stores, get_typestore
        _TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
    return _TYPESTORE


def type_name(msg) -> str:
    """``pkg/msg/Name`` of an rclpy or rosbags message."""
    t = getattr(msg, "__msgtype__", None)
    if t:
        return t
    cls = type(msg)
    return f"{cls.__module__.split('.')[0]}/msg/{cls.__name__}"


# --------------------------------------------------------------------------------------------------
# byte fields (rclpy)


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


def _buffer(data):
    """A buffer over a message's ``uint8[]`` field (array.array, bytes, numpy array, list)."""
    if isinstance(data, np.ndarray):
        return data if data.dtype == np.uint8 else data.view(np.uint8)
    if isinstance(data, (bytes, bytearray, memoryview, _array.array)):
        return data
    return bytes(data)


# --------------------------------------------------------------------------------------------------
# headers


def stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def make_header(stamp: int, frame_id: str, kit: MessageKit = RCLPY):
    """Header from a stamp in nanoseconds."""
    t = kit.make("builtin_interfaces/msg/Time", sec=int(stamp // 1_000_000_000), nanosec=int(stamp % 1_000_000_000))
    return kit.make("std_msgs/msg/Header", stamp=t, frame_id=str(frame_id))


def copy_header(header, frame_id: Optional[str] = None, kit: MessageKit = RCLPY):
    """New Header with ``header``'s stamp and frame_id (or ``frame_id`` if given); None -> zero stamp."""
    stamp = 0 if header is None else stamp_ns(header)
    fid = "" if header is None else str(header.frame_id)
    return make_header(stamp, fid if frame_id is None else frame_id, kit)


# --------------------------------------------------------------------------------------------------
# readers (rclpy or rosbags messages)


def image_msg_to_array(msg, copy: bool = True) -> np.ndarray:
    """Raw pixels (native dtype and byte order, ``H x W`` or ``H x W x C``) of an Image.

    Raises ``ImageEncodingError`` for unsupported encodings / malformed buffers.
    """
    return decode_image(_buffer(msg.data), msg.height, msg.width, msg.encoding, msg.step,
                        bool(msg.is_bigendian), copy=copy)


def image_msg_to_rgb8(msg) -> np.ndarray:
    """``H x W x 3`` uint8 RGB of an Image of any supported encoding (see ``to_rgb8``)."""
    return image_to_rgb8(_buffer(msg.data), msg.height, msg.width, msg.encoding, msg.step, bool(msg.is_bigendian))


def compressed_msg_to_rgb8(msg, **limits) -> np.ndarray:
    """``H x W x 3`` uint8 RGB of a jpeg/png CompressedImage (``limits``: see ``decode_compressed``)."""
    return decode_compressed(_buffer(msg.data), msg.format, **limits)


def msg_to_rgb8(msg, **limits) -> np.ndarray:
    """RGB of an Image or a CompressedImage message."""
    if type_name(msg).endswith("/CompressedImage"):
        return compressed_msg_to_rgb8(msg, **limits)
    return image_msg_to_rgb8(msg)


def depth_from_image_msg(msg) -> np.ndarray:
    """float32 metres of a 32FC1 / 16UC1 depth Image (0 mm -> NaN)."""
    arr = image_msg_to_array(msg)
    if msg.encoding in ("16UC1", "mono16"):
        d = arr.astype(np.float32) / 1000.0
        d[arr == 0] = np.nan
        return d
    return arr.astype(np.float32, copy=False)


def camera_from_info_msg(msg) -> Optional[PinholeCamera]:
    """Intrinsics of the published image (P-based, ROI + binning applied, image_geometry
    semantics), or None when the camera is uncalibrated.  Raises ``CameraInfoError``."""
    roi = msg.roi
    return camera_from_info(msg.width, msg.height, msg.k, msg.p, msg.binning_x, msg.binning_y,
                            roi=(roi.x_offset, roi.y_offset, roi.height, roi.width, roi.do_rectify))


def cloud_msg_to_arrays(msg) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(N x 3 float32 points with NaNs kept, N x 3 uint8 rgb or None) of a little-endian PointCloud2."""
    names = {f.name: (int(f.offset), int(f.datatype)) for f in msg.fields}
    n = int(msg.width) * int(msg.height)
    raw = np.frombuffer(_buffer(msg.data), np.uint8)
    step = int(msg.point_step)
    if raw.size < n * step:
        raise ValueError(f"PointCloud2 has {raw.size} bytes, expected {n * step}")
    rows = raw[: n * step].reshape(n, step)
    pts = np.empty((n, 3), np.float32)
    for k, name in enumerate("xyz"):
        off, dt = names[name]
        if dt != 7:
            raise ValueError(f"field {name} must be FLOAT32")
        pts[:, k] = rows[:, off:off + 4].copy().view("<f4").reshape(-1)
    rgb = None
    if "rgb" in names or "rgba" in names:
        off = names.get("rgb", names.get("rgba"))[0]
        rgb = unpack_rgb_uint32(rows[:, off:off + 4].copy().view("<u4").reshape(-1))
    return pts, rgb


# --------------------------------------------------------------------------------------------------
# builders


def array_to_image_msg(array: np.ndarray, encoding: str, header=None, kit: MessageKit = RCLPY):
    """Image message of ``array`` (``H x W [x C]``) with the given encoding and a copied header.

    The array is cast to the encoding's dtype when that is a same-kind cast
    (e.g. float64 -> ``32FC1``); otherwise ``ImageEncodingError``.
    """
    buf, height, width, step = _encode_buffer(array, encoding)
    return kit.make("sensor_msgs/msg/Image", data=buf, header=copy_header(header, kit=kit), height=height,
                    width=width, encoding=encoding, is_bigendian=0, step=step)


def depth_image_msg(depth_m: np.ndarray, header=None, encoding: str = "32FC1", kit: MessageKit = RCLPY):
    """REP 118 depth Image: ``32FC1`` metres (values as given, NaN/inf kept) or ``16UC1``
    millimetres (``depth_to_mm16``: 0 = invalid, including depth beyond 65.535 m)."""
    if encoding == "32FC1":
        return array_to_image_msg(np.asarray(depth_m, dtype=np.float32), "32FC1", header, kit)
    if encoding in ("16UC1", "mono16"):
        return array_to_image_msg(depth_to_mm16(depth_m), encoding, header, kit)
    raise ValueError("depth encoding must be '32FC1' or '16UC1', got %r" % (encoding,))


def camera_info_msg(camera: PinholeCamera, header=None, distortion_model: str = "plumb_bob",
                    kit: MessageKit = RCLPY):
    """CameraInfo for a rectified image: K, P = [K|0], R = I, D = zeros, no ROI/binning."""
    roi = kit.make("sensor_msgs/msg/RegionOfInterest", x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return kit.make("sensor_msgs/msg/CameraInfo", header=copy_header(header, kit=kit), height=int(camera.height),
                    width=int(camera.width), distortion_model=distortion_model,
                    d=kit.floats(np.zeros(_DISTORTION_SIZE.get(distortion_model, 5)), fixed=False),
                    k=kit.floats(camera.K, fixed=True), r=kit.floats(np.eye(3), fixed=True),
                    p=kit.floats(camera.P, fixed=True), binning_x=0, binning_y=0, roi=roi)


def cloud_msg(packed: PackedCloud, header=None, kit: MessageKit = RCLPY):
    """PointCloud2 of a :class:`~depth_ros.core.cloud.PackedCloud` with a copied header.

    When the cloud's buffer is an ``array.array`` made by depth_ros.core it becomes the
    rclpy message's ``data`` directly (the message then owns it; do not reuse ``packed.data``
    for writing afterwards); otherwise the bytes are copied once.
    """
    height, width, row_step = int(packed.height), int(packed.width), int(packed.row_step)
    nbytes = row_step * height
    fields = [kit.make("sensor_msgs/msg/PointField", name=f[0], offset=int(f[1]), datatype=int(f[2]),
                       count=int(f[3])) for f in packed.fields]
    backing = packed.backing
    if not (backing is not None and len(backing) == nbytes and packed.data.size == nbytes
            and packed.data.ctypes.data == backing.buffer_info()[0]):
        backing = None
    data = np.ascontiguousarray(packed.data).reshape(-1)
    if data.size < nbytes:
        raise ValueError("cloud data has %d bytes, expected row_step*height = %d" % (data.size, nbytes))
    return kit.make("sensor_msgs/msg/PointCloud2", data=data[:nbytes], backing=backing,
                    header=copy_header(header, kit=kit), height=height, width=width, fields=fields,
                    is_bigendian=bool(packed.is_bigendian), point_step=int(packed.point_step), row_step=row_step,
                    is_dense=bool(packed.is_dense))


def string_msg(text: str, kit: MessageKit = RCLPY):
    return kit.cls("std_msgs/msg/String")(data=str(text))


def output_msg(key: str, result, header, depth_encoding: str = "32FC1", kit: MessageKit = RCLPY):
    """The message of output ``key`` (``pipeline.outputs.OUTPUTS``) of a ``pipeline.frame.FrameResult``,
    or None when the frame has no such output (a model without confidence)."""
    if key == "depth":
        return depth_image_msg(result.depth, header, depth_encoding, kit)
    if key == "camera_info":
        return camera_info_msg(result.camera, header, kit=kit)
    if key == "confidence":
        return None if result.confidence is None else array_to_image_msg(result.confidence, "32FC1", header, kit)
    if key == "points":
        return cloud_msg(result.cloud(), header, kit)
    if key == "colorized":
        return array_to_image_msg(result.colorized(), "rgb8", header, kit)
    raise ValueError(f"unknown output '{key}'")
