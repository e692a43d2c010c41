"""Rendered sequences with known camera poses, an odometry stream and a flickering-network stand-in.

Used to measure scale stabilisation (``depth_ros.pipeline.scale``) and router hysteresis
(``depth_ros.pipeline.router``) against ground truth (``bench/bench_scale.py``).

* :func:`make_sequence` renders a named camera path through one of :mod:`depth_ros.demo.render`'s scenes
  (exact depth along the optical axis, +inf for the sky) and keeps each frame's world-from-optical
  pose (4x4, optical frame REP 103: x right, y down, z forward).
* :func:`odometry_stream` turns the poses into the relative motions a visual/wheel odometry would give
  (``T_cur_prev``: ``X_cur = R X_prev + t``), optionally with seeded Gaussian noise per frame.
* :class:`FlickeringNetwork` multiplies ground-truth depth by a per-frame random scale: a constant bias,
  Gaussian jitter of a few percent, occasional jumps lasting a few frames (like a router flipping heads)
  and optionally one persistent step (a true change of the network's scale), plus per-pixel noise.
  :meth:`FlickeringNetwork.as_model` wraps it as a depth model (``infer(rgb) -> DepthPrediction``) for
  end-to-end runs of the pipeline on a rendered sequence.
* :class:`SyntheticRouter` makes ZoeDepth-NK-like router logits (indoor, outdoor) per frame: a scene
  evidence term plus AR(1) noise, for the hysteresis measurement.

Everything is seeded and deterministic.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from depth_ros.core.camera import PinholeCamera
from depth_ros.demo import render as R

__all__ = ["FlickeringNetwork", "RenderedSequence", "SEQUENCES", "SyntheticRouter", "make_sequence",
           "odometry_stream", "pose_matrix"]


def pose_matrix(pose: "R.Pose") -> np.ndarray:
    """4x4 world-from-optical transform of a renderer ``Pose``."""
    m = np.eye(4)
    m[:3, :3] = pose.rotation
    m[:3, 3] = pose.position
    return m


@dataclass
class RenderedSequence:
    """Ground truth of a rendered camera path.

    depth[k]: float32 H x W metres along the optical axis (+inf = no surface); rgb[k]: uint8 H x W x 3
    (None when not rendered); poses[k]: 4x4 world-from-optical; scenes/domains/max_depth per frame.
    """

    name: str
    camera: PinholeCamera
    depth: List[np.ndarray]
    poses: List[np.ndarray]
    scenes: List[str]
    domains: List[str]
    max_depth: List[float]
    rgb: List[Optional[np.ndarray]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.depth)

    def valid_gt(self, k: int) -> np.ndarray:
        """Pixels with ground truth: finite, > 0 and within the scene's max depth."""
        d = self.depth[k]
        with np.errstate(invalid="ignore"):
            return np.isfinite(d) & (d > 0) & (d <= self.max_depth[k])


def _pan_path(n: int) -> List["R.Pose"]:
    """A nearly stationary hand-held camera in the room panning slowly (0.25 deg/frame at n=80)."""
    out = []
    for i in range(n):
        s = i / max(n - 1, 1)
        x = 0.8 + 0.01 * math.sin(7.0 * s)
        y = 2.3 + 0.01 * math.cos(5.0 * s)
        out.append(R.Pose((x, y, 1.45), math.radians(-10.0 + 20.0 * s), math.radians(-10.0)))
    return out


def _paths(name: str, n: int) -> List[Tuple[str, "R.Pose"]]:
    if name in ("room", "street"):
        return [(name, p) for p in R.trajectory(name, n)]
    if name == "pan":
        return [("room", p) for p in _pan_path(n)]
    if name == "cut":  # room, then a hard cut to the street
        a = n // 2
        return [("room", p) for p in R.trajectory("room", a)] + [("street", p) for p in R.trajectory("street", n - a)]
    raise ValueError(f"unknown sequence '{name}'; known: {', '.join(SEQUENCES)}")


#: Named camera paths: the renderer's room walk and street drive, a slow pan, and a room -> street cut.
SEQUENCES = ("room", "street", "pan", "cut")


def make_sequence(name: str, frames: int = 60, camera: Optional[PinholeCamera] = None, rgb: bool = False,
                  supersample: int = 1, shadows: bool = False) -> RenderedSequence:
    """Render sequence ``name`` (see :data:`SEQUENCES`) with ``frames`` frames. Depth is exact whatever the
    shading options; ``rgb=False`` drops the images (they are rendered anyway, the depth is the point)."""
    if int(frames) != frames or frames < 2:
        raise ValueError(f"frames must be an integer >= 2, got {frames!r}")
    cam = camera or R.default_intrinsics(160, 120)
    built: Dict[str, "R.Scene"] = {}
    seq = RenderedSequence(name, cam, [], [], [], [], [], [])
    for scene_name, pose in _paths(name, int(frames)):
        if scene_name not in built:
            built[scene_name] = R.SCENES[scene_name]()
        scene = built[scene_name]
        image, depth = R.render(scene, pose, cam, supersample=supersample, shadows=shadows)
        seq.depth.append(depth)
        seq.rgb.append(image if rgb else None)
        seq.poses.append(pose_matrix(pose))
        seq.scenes.append(scene_name)
        seq.domains.append(scene.domain)
        seq.max_depth.append(scene.max_depth)
    return seq


def _rotation(axis_angle: np.ndarray) -> np.ndarray:
    theta = float(np.linalg.norm(axis_angle))
    if theta < 1e-15:
        return np.eye(3)
    k = axis_angle / theta
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(theta) * kx + (1 - math.cos(theta)) * kx @ kx


def odometry_stream(poses: Sequence[np.ndarray], trans_noise: float = 0.0, rot_noise_deg: float = 0.0,
                    seed: int = 0) -> List[Optional[np.ndarray]]:
    """Relative motions ``T_cur_prev`` (4x4) between consecutive world-from-optical poses; None for the
    first frame. ``trans_noise`` (metres, per axis) and ``rot_noise_deg`` (degrees, per axis) add seeded
    Gaussian noise to each relative motion (an odometry's per-frame error; it accumulates over a path
    but only one step is ever used)."""
    if trans_noise < 0 or rot_noise_deg < 0:
        raise ValueError("odometry noise must be >= 0")
    rng = np.random.default_rng(seed)
    out: List[Optional[np.ndarray]] = [None]
    for a, b in zip(poses[:-1], poses[1:]):
        rel = np.linalg.inv(np.asarray(b, float)) @ np.asarray(a, float)
        if trans_noise or rot_noise_deg:
            noise = np.eye(4)
            noise[:3, :3] = _rotation(np.radians(rot_noise_deg) * rng.standard_normal(3))
            noise[:3, 3] = trans_noise * rng.standard_normal(3)
            rel = noise @ rel
        out.append(rel)
    return out


class FlickeringNetwork:
    """Stand-in for a per-frame network whose metric scale flickers.

    Frame ``k``'s prediction is ``gt * exp(log_scale[k]) * exp(N(0, pixel_noise))`` per pixel, with
    ``log_scale[k] = bias + jitter * N(0, 1) + jump_k + step_k``:

    * ``jitter``: per-frame Gaussian scale noise (log units; 0.03 ~ 3 %);
    * jumps: with probability ``jump_prob`` per frame a jump of ``+-U(jump_range)`` (log units) starts and
      lasts ``U{jump_len}`` frames (a router flipping to the other head and back);
    * ``step_at``/``step``: from frame ``step_at`` on, the scale changes by ``step`` for good (a true
      change of the network's scale that a stabiliser must follow).

    ``level[k]`` is the scale without jitter and jumps (``bias`` plus the step): the target a stabiliser
    that anchors to the network's average should reach. Invalid ground truth (sky: +inf) stays as it is.
    """

    def __init__(self, frames: int, seed: int = 0, bias: float = 0.0, jitter: float = 0.03,
                 jump_prob: float = 0.04, jump_range: Tuple[float, float] = (0.1, 0.3),
                 jump_len: Tuple[int, int] = (1, 3), step_at: Optional[int] = None, step: float = 0.2,
                 pixel_noise: float = 0.02):
        if int(frames) != frames or frames < 1:
            raise ValueError(f"frames must be an integer >= 1, got {frames!r}")
        if jitter < 0 or pixel_noise < 0 or not (0 <= jump_prob <= 1):
            raise ValueError("jitter and pixel_noise must be >= 0 and jump_prob in [0, 1]")
        self.frames = int(frames)
        self.seed = int(seed)
        self.pixel_noise = float(pixel_noise)
        rng = np.random.default_rng(seed)
        level = np.full(self.frames, float(bias))
        if step_at is not None:
            if not (0 < step_at < self.frames):
                raise ValueError(f"step_at must be within (0, {self.frames}), got {step_at}")
            level[step_at:] += step
        jumps = np.zeros(self.frames)
        k = 0
        while k < self.frames:
            if rng.random() < jump_prob:
                size = rng.uniform(*jump_range) * (1 if rng.random() < 0.5 else -1)
                n = int(rng.integers(jump_len[0], jump_len[1] + 1))
                jumps[k:k + n] = size
                k += n
            else:
                k += 1
        self.level = level
        self.jumps = jumps
        self.step_at = step_at
        self.log_scale = level + jitter * rng.standard_normal(self.frames) + jumps

    def predict(self, k: int, gt: np.ndarray) -> np.ndarray:
        """Frame ``k``'s depth (float32) from its ground truth."""
        if not (0 <= k < self.frames):
            raise ValueError(f"frame {k} outside the network's {self.frames} frames")
        rng = np.random.default_rng((self.seed, 1000003, k))
        noise = np.exp(self.pixel_noise * rng.standard_normal(gt.shape)) if self.pixel_noise else 1.0
        return (np.asarray(gt, np.float64) * math.exp(self.log_scale[k]) * noise).astype(np.float32)

    def as_model(self, seq: RenderedSequence):
        """A depth model (``infer(rgb, f_px=None) -> DepthPrediction``, ``capabilities``) that recognises
        ``seq``'s images (rendered with ``rgb=True``) and returns this network's prediction for them."""
        from depth_ros.models.base import Capabilities, DepthPrediction

        if any(im is None for im in seq.rgb):
            raise ValueError("the sequence was rendered without images (make_sequence(..., rgb=True))")
        index = {hashlib.sha1(im.tobytes()).hexdigest(): k for k, im in enumerate(seq.rgb)}
        net = self

        class _Model:
            name = "flickering_network"
            capabilities = Capabilities()

            def infer(self, rgb, f_px=None):
                key = hashlib.sha1(np.ascontiguousarray(rgb).tobytes()).hexdigest()
                if key not in index:
                    raise ValueError("image is not a frame of the sequence this stand-in was built for")
                k = index[key]
                return DepthPrediction(depth=net.predict(k, seq.depth[k]))

        return _Model()


class SyntheticRouter:
    """ZoeDepth-NK-like router logits per frame.

    The logit difference ``d_k = logit_outdoor - logit_indoor`` is ``evidence[k] + e_k`` with AR(1) noise
    ``e_k = rho e_{k-1} + sqrt(1 - rho^2) sigma N(0, 1)`` (stationary std ``sigma``; consecutive video
    frames are correlated, so flips come in short runs). ``logits(evidence)`` returns an N x 2 array
    (indoor, outdoor) = (-d/2, d/2).
    """

    def __init__(self, sigma: float = 1.0, rho: float = 0.6, seed: int = 0):
        if sigma < 0 or not (0 <= rho < 1):
            raise ValueError("sigma must be >= 0 and rho in [0, 1)")
        self.sigma, self.rho, self.seed = float(sigma), float(rho), int(seed)

    def logits(self, evidence: Sequence[float]) -> np.ndarray:
        ev = np.asarray(evidence, dtype=np.float64)
        rng = np.random.default_rng(self.seed)
        e = np.empty(ev.size)
        prev = self.sigma * rng.standard_normal()
        c = math.sqrt(1.0 - self.rho ** 2) * self.sigma
        for k in range(ev.size):
            prev = self.rho * prev + c * rng.standard_normal()
            e[k] = prev
        d = ev + e
        return np.stack([-d / 2, d / 2], axis=1)
