"""rosbag2 reading and writing through ``rosbags`` (pure Python: no rclpy, no ROS install needed).

Messages are the ``rosbags`` typestore dataclasses of ROS 2 Jazzy (``sensor_msgs/msg/Image`` etc. have
the same definitions in Humble, Jazzy and Kilted), built by ``depth_ros.msgs`` with ``kit=msgs.ROSBAGS``
(the same builder as the node's messages). ``BagWriter`` adds connections on first use.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from depth_ros.msgs import type_name, typestore
from depth_ros.pipeline.outputs import CAMERA_INFO, COMPRESSED_IMAGE, IMAGE, POINTCLOUD2  # noqa: F401

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
        msgtype = type_name(msg)
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
