"""Camera poses from odometry, matched to images by stamp (ROS-free).

``nav_msgs/Odometry`` gives the pose of its ``child_frame_id`` (usually ``base_link``) in its
``header.frame_id`` (``odom``). The camera's optical frame (REP 103: x right, y down, z forward) is
mounted on that child frame by a fixed transform (``base_from_camera``); the default is a camera at the
child frame's origin looking along its x axis (REP 103 body frame: x forward, y left, z up). With
tf2_ros the node can read the transform from TF instead.
"""
from __future__ import annotations

import bisect
from typing import List, Optional, Sequence

import numpy as np

#: optical (x right, y down, z forward) -> body (x forward, y left, z up): columns are the optical axes
BODY_FROM_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def quat_to_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    q = np.array([w, x, y, z], dtype=np.float64)
    n = float(np.dot(q, q))
    if not np.isfinite(n) or n < 1e-12:
        raise ValueError(f"quaternion ({x}, {y}, {z}, {w}) is not a rotation")
    w, x, y, z = q / np.sqrt(n)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def pose_matrix(position: Sequence[float], quaternion: Sequence[float]) -> np.ndarray:
    """4x4 from a position (x, y, z) and a quaternion (x, y, z, w)."""
    m = np.eye(4)
    m[:3, :3] = quat_to_matrix(*quaternion)
    m[:3, 3] = np.asarray(position, dtype=np.float64)
    if not np.isfinite(m).all():
        raise ValueError(f"pose {list(position)} {list(quaternion)} is not finite")
    return m


def base_from_camera(xyz_rpy: Optional[Sequence[float]] = None) -> np.ndarray:
    """4x4 pose of the camera's optical frame in the odometry child frame: the camera's body frame at
    ``(x, y, z)`` with roll/pitch/yaw (radians) relative to the child frame, then REP 103's optical rotation."""
    x, y, z, roll, pitch, yaw = (list(xyz_rpy) if xyz_rpy is not None else [0.0] * 6)
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    rot = np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                    [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                    [-sp, cp * sr, cp * cr]])
    m = np.eye(4)
    m[:3, :3] = rot @ BODY_FROM_OPTICAL
    m[:3, 3] = (x, y, z)
    return m


class PoseBuffer:
    """Recent poses (world from child frame) by stamp; ``at`` interpolates the translation and takes the
    nearer rotation for a stamp between two poses, or the nearest pose within ``tolerance_ns``."""

    def __init__(self, keep: int = 200, tolerance_ns: int = 100_000_000):
        self.keep, self.tolerance_ns = int(keep), int(tolerance_ns)
        self._stamps: List[int] = []
        self._poses: List[np.ndarray] = []

    def add(self, stamp_ns: int, pose: np.ndarray) -> None:
        i = bisect.bisect_left(self._stamps, stamp_ns)
        if i < len(self._stamps) and self._stamps[i] == stamp_ns:
            self._poses[i] = pose
            return
        self._stamps.insert(i, stamp_ns)
        self._poses.insert(i, pose)
        if len(self._stamps) > self.keep:
            del self._stamps[0], self._poses[0]

    def at(self, stamp_ns: int) -> Optional[np.ndarray]:
        s = self._stamps
        if not s:
            return None
        i = bisect.bisect_left(s, stamp_ns)
        if i < len(s) and s[i] == stamp_ns:
            return self._poses[i]
        if 0 < i < len(s):
            t0, t1 = s[i - 1], s[i]
            if t1 - t0 <= 2 * self.tolerance_ns:
                a = (stamp_ns - t0) / (t1 - t0)
                p0, p1 = self._poses[i - 1], self._poses[i]
                out = (p0 if a < 0.5 else p1).copy()
                out[:3, 3] = (1 - a) * p0[:3, 3] + a * p1[:3, 3]
                return out
        j = min((k for k in (i - 1, i) if 0 <= k < len(s)), key=lambda k: abs(s[k] - stamp_ns))
        return self._poses[j] if abs(s[j] - stamp_ns) <= self.tolerance_ns else None
