"""What the node pairs with each image (ROS-free apart from reading message fields): CameraInfo by
``frame_id`` and stamp, odometry poses by stamp, metric references by stamp. Callbacks add (executor
thread), the worker asks ``for_image`` (worker thread); one lock."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from depth_ros import msgs
from depth_ros.core.camera import CameraInfoError
from depth_ros.pipeline.intrinsics import CameraInfoTracker, InfoStatus, problem_key
from depth_ros.pipeline.motion import PoseBuffer, base_from_camera, pose_matrix


@dataclass
class Paired:
    info: InfoStatus
    pose: Optional[np.ndarray]         #: world-from-optical pose of the camera at the image stamp
    reference: Optional[np.ndarray]    #: metric reference depth (m) with the image's stamp


class SideInputs:
    REFERENCES_KEPT = 16

    def __init__(self, camera_mount: Sequence[float]):
        self._lock = threading.Lock()
        self._infos = CameraInfoTracker(keep=32)
        self._poses = PoseBuffer()
        self._mount = base_from_camera(list(camera_mount))
        self._references: Dict[int, object] = {}
        #: (key, text) of inputs that were ignored, for the node to log (throttled)
        self.problems: List[Tuple[str, str]] = []

    def add_camera_info(self, msg) -> None:
        try:
            result = msgs.camera_from_info_msg(msg)
        except (CameraInfoError, ValueError) as exc:
            result = exc
        with self._lock:
            self._infos.add(msg.header.frame_id, msgs.stamp_ns(msg.header), result)

    def add_odometry(self, msg) -> Optional[str]:
        """Store the pose; returns the reason when the message is unusable."""
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        try:
            pose = pose_matrix((p.x, p.y, p.z), (q.x, q.y, q.z, q.w))
        except ValueError as exc:
            return str(exc)
        with self._lock:
            self._poses.add(msgs.stamp_ns(msg.header), pose)
        return None

    def add_reference(self, msg) -> None:
        with self._lock:
            self._references[msgs.stamp_ns(msg.header)] = msg
            while len(self._references) > self.REFERENCES_KEPT:
                del self._references[next(iter(self._references))]

    def for_image(self, frame_id: str, stamp_ns: int, width: int, height: int, missing: str) -> Paired:
        with self._lock:
            info = self._infos.status(frame_id, stamp_ns, width, height, missing)
            base = self._poses.at(stamp_ns)
            ref_msg = self._references.get(stamp_ns)
        reference = None
        if ref_msg is not None:
            try:
                reference = msgs.depth_from_image_msg(ref_msg)
            except ValueError as exc:
                self.problems.append(("reference:" + problem_key(str(exc)), f"ignoring a metric reference: {exc}"))
        return Paired(info, None if base is None else base @ self._mount, reference)
