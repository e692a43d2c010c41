"""rosbag2 reading and writing through ``rosbags`` (pure Python: no rclpy, no ROS install needed).

Messages are the ``rosbags`` typestore dataclasses of ROS 2 Jazzy (``sensor_msgs/msg/Image`` etc. have
the same definitions in Humble, Jazzy and Kilted). Helpers here convert between them and numpy /
``depth_ros.core`` objects, and ``BagWriter`` adds connections on first use.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from depth_ros.core.camera import PinholeCamera, camera_from_info
from depth_ros.core.encodings import decode_compressed, depth_to_mm16, encode_image, image_to_rgb8

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
STRING = "std_msgs/msg/String"

_TYPESTORE = None


def typestore():
    """The shared ROS 2 Jazzy typestore (also right for Humble and Kilted sensor_msgs)."""
    global _TYPESTORE
    if _TYPESTORE is None:
        from rosbags.typesys import Stores, get_typestore
        _TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
    return _TYPESTORE


def _t(name: str):
    return typestore().types[name]


# --------------------------------------------------------------------------------------------------
# message construction


def stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def make_header(stamp: int, frame_id: str):
    """Header from a stamp in nanoseconds."""
    Time = _t("builtin_interfaces/msg/Time")
    Header = _t("std_msgs/msg/Header")
    return Header(stamp=Time(sec=int(stamp // 1_000_000_000), nanosec=int(stamp % 1_000_000_000)),
                  frame_id=str(frame_id))


def copy_header(header):
    return make_header(stamp_ns(header), header.frame_id)


def image_message(array: np.ndarray, encoding: str, header):
    data, step = encode_image(np.asarray(array), encoding)
    arr = np.asarray(array)
    return _t(IMAGE)(header=header, height=int(arr.shape[0]), width=int(arr.shape[1]), encoding=encoding,
                     is_bigendian=0, step=int(step), data=np.frombuffer(data, np.uint8))


def depth_message(depth_m: np.ndarray, header, encoding: str = "32FC1"):
    if encoding == "32FC1":
        return image_message(np.asarray(depth_m, np.float32), "32FC1", header)
    if encoding == "16UC1":
        return image_message(depth_to_mm16(depth_m), "16UC1", header)
    raise ValueError(f"depth encoding must be 32FC1 or 16UC1, got '{encoding}'")


def camera_info_message(camera: PinholeCamera, header):
    roi = _t("sensor_msgs/msg/RegionOfInterest")(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return _t(CAMERA_INFO)(header=header, height=int(camera.height), width=int(camera.width),
                           distortion_model="plumb_bob", d=np.zeros(5), k=camera.K.reshape(-1).astype(np.float64),
                           r=np.eye(3).reshape(-1), p=camera.P.reshape(-1).astype(np.float64),
                           binning_x=0, binning_y=0, roi=roi)


def cloud_message(packed, header):
    PointField = _t("sensor_msgs/msg/PointField")
    fields = [PointField(name=f[0], offset=int(f[1]), datatype=int(f[2]), count=int(f[3])) for f in packed.fields]
    nbytes = int(packed.row_step) * int(packed.height)
    data = np.ascontiguousarray(np.asarray(packed.data, np.uint8).reshape(-1)[:nbytes])
    return _t(POINTCLOUD2)(header=header, height=int(packed.height), width=int(packed.width), fields=fields,
                           is_bigendian=bool(packed.is_bigendian), point_step=int(packed.point_step),
                           row_step=int(packed.row_step), data=data, is_dense=bool(packed.is_dense))


def string_message(text: str):
    return _t(STRING)(data=str(text))


# --------------------------------------------------------------------------------------------------
# message decoding (works for rosbags dataclasses and rclpy messages alike)


def image_to_rgb(msg) -> np.ndarray:
    """RGB uint8 of an Image or CompressedImage message (rosbags or rclpy)."""
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        return decode_compressed(_bytes_of(msg.data), msg.format)
    return image_to_rgb8(_bytes_of(msg.data), msg.height, msg.width, msg.encoding, msg.step,
                         bool(msg.is_bigendian))


def _bytes_of(data):
    if isinstance(data, np.ndarray):
        return data if data.dtype == np.uint8 else data.view(np.uint8)
    return data


def image_to_array(msg) -> np.ndarray:
    from depth_ros.core.encodings import decode_image
    return decode_image(_bytes_of(msg.data), msg.height, msg.width, msg.encoding, msg.step, bool(msg.is_bigendian))


def depth_from_message(msg) -> np.ndarray:
    """float32 metres of a 32FC1 / 16UC1 depth Image (0 mm -> NaN)."""
    arr = image_to_array(msg)
    if msg.encoding in ("16UC1", "mono16"):
        d = arr.astype(np.float32) / 1000.0
        d[arr == 0] = np.nan
        return d
    return arr.astype(np.float32, copy=False)


def camera_from_info_message(msg) -> Optional[PinholeCamera]:
    roi = msg.roi
    return camera_from_info(msg.width, msg.height, msg.k, msg.p, msg.binning_x, msg.binning_y,
                            roi=(roi.x_offset, roi.y_offset, roi.height, roi.width, roi.do_rectify))


def cloud_to_arrays(msg) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(N x 3 float32 points with NaNs kept, N x 3 uint8 rgb or None) of a little-endian PointCloud2."""
    names = {f.name: (int(f.offset), int(f.datatype)) for f in msg.fields}
    n = int(msg.width) * int(msg.height)
    raw = np.frombuffer(_as_bytes(msg.data), np.uint8)
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
        v = rows[:, off:off + 4].copy().view("<u4").reshape(-1)
        rgb = np.stack([(v >> 16) & 255, (v >> 8) & 255, v & 255], axis=1).astype(np.uint8)
    return pts, rgb


def _as_bytes(data):
    if isinstance(data, np.ndarray):
        return data.tobytes() if data.dtype != np.uint8 else data
    if isinstance(data, (bytes, bytearray, memoryview)):
        return data
    return bytes(data)  # array.array / list


# --------------------------------------------------------------------------------------------------
# bags


def bag_storage(path) -> str:
    """'sqlite3' or 'mcap' from a rosbag2 folder's metadata.yaml (best effort)."""
    path = Path(path)
    if path.suffix == ".mcap":  # a single file given to the reader
        return "mcap"
    if path.suffix == ".db3":
        return "sqlite3"
    meta = path / "metadata.yaml"
    try:
        text = meta.read_text()
    except OSError:
        return "sqlite3"
    return "mcap" if "storage_identifier: mcap" in text else "sqlite3"


def default_qos():
    """reliable, volatile, keep last 10: what ``ros2 bag play`` should offer for the written topics."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    zero = QosTime(sec=0, nsec=0)  # 0 s = the RMW default (infinite) for deadline, lifespan, lease
    return Qos(history=QosHistory.KEEP_LAST, depth=10, reliability=QosReliability.RELIABLE,
               durability=QosDurability.VOLATILE, deadline=zero, lifespan=zero,
               liveliness=QosLiveliness.SYSTEM_DEFAULT, liveliness_lease_duration=zero,
               avoid_ros_namespace_conventions=False)


class BagWriter:
    """rosbag2 writer (rosbags) that registers each topic on first use; ``custom`` goes into metadata."""

    def __init__(self, path, storage: str = "sqlite3", custom: Optional[Dict[str, str]] = None):
        from rosbags.rosbag2 import StoragePlugin, Writer

        plugin = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}.get(storage)
        if plugin is None:
            raise ValueError(f"storage must be sqlite3 or mcap, got '{storage}'")
        self.path = Path(path)
        self._writer = Writer(self.path, version=8, storage_plugin=plugin)
        self._writer.open()
        self._conns: Dict[str, Any] = {}
        self.counts: Dict[str, int] = {}
        for k, v in (custom or {}).items():
            self._writer.set_custom_data(str(k), str(v))

    def add_topic(self, topic: str, msgtype: str, msgdef: Optional[str] = None, rihs01: Optional[str] = None,
                  qos=()):
        """Register ``topic`` once (later calls return the same connection).

        The definition comes from ``msgdef`` + ``rihs01`` when both are given (a copied topic), else from
        the typestore; a bag recorded before ROS 2 Iron has neither, so known types fall back to the
        typestore and unknown ones raise ``ValueError``. ``qos`` defaults to :func:`default_qos`, so that
        ``ros2 bag play`` publishes with a stated profile instead of guessing from an empty one.
        """
        if topic not in self._conns:
            profiles = list(qos) if qos else [default_qos()]
            if msgdef and rihs01:
                self._conns[topic] = self._writer.add_connection(topic, msgtype, msgdef=msgdef, rihs01=rihs01,
                                                                 offered_qos_profiles=profiles)
            elif msgtype in typestore().types:
                self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=typestore(),
                                                                 offered_qos_profiles=profiles)
            else:
                raise ValueError(f"no message definition for '{msgtype}' (topic '{topic}'): the input bag stores "
                                 "none and the type is not a standard ROS 2 message")
        return self._conns[topic]

    def write(self, topic: str, msg, t_ns: int) -> None:
        """Serialize a rosbags message and write it at ``t_ns``."""
        msgtype = msg.__msgtype__
        conn = self.add_topic(topic, msgtype)
        self.write_raw(topic, conn, typestore().serialize_cdr(msg, msgtype), t_ns)

    def write_raw(self, topic: str, conn, data, t_ns: int) -> None:
        self._writer.write(conn, int(t_ns), data)
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and self._writer is not None:
            try:
                self._writer.close()
            finally:
                self._writer = None
            return False
        self.close()
        return False


def read_topics(path, topics: Optional[Sequence[str]] = None) -> Iterator[Tuple[str, str, int, Any]]:
    """Yield (topic, msgtype, log time ns, deserialized message) from a rosbag2, in time order."""
    from rosbags.rosbag2 import Reader

    ts = typestore()
    with Reader(Path(path)) as reader:
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        for conn, t, raw in reader.messages(connections=conns):
            yield conn.topic, conn.msgtype, t, ts.deserialize_cdr(raw, conn.msgtype)


def bag_summary(path) -> Dict[str, Tuple[str, int]]:
    """{topic: (msgtype, message count)} of a rosbag2."""
    from rosbags.rosbag2 import Reader

    with Reader(Path(path)) as reader:
        out: Dict[str, List] = {}
        for c in reader.connections:
            prev = out.get(c.topic)
            out[c.topic] = [c.msgtype, (prev[1] if prev else 0) + c.msgcount]
        return {k: (v[0], v[1]) for k, v in out.items()}


def bag_custom_data(path) -> Dict[str, str]:
    """The ``custom_data`` map of a rosbag2's metadata.yaml ({} when absent)."""
    text = (Path(path) / "metadata.yaml").read_text()
    try:
        import yaml  # type: ignore
        data = yaml.safe_load(text)
    except ImportError:  # pragma: no cover - rosbags brings ruamel.yaml
        from ruamel.yaml import YAML
        data = YAML(typ="safe").load(text)
    return {str(k): str(v) for k, v in (data.get("rosbag2_bagfile_information", {}).get("custom_data") or {}).items()}
