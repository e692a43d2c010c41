"""Which intrinsics a frame is projected with (ROS-free).

Order of preference, per camera (image ``frame_id``) and image size:

1. a valid CameraInfo of the image's size (``source = "camera_info"``);
2. the focal length estimated by Depth Pro's FOV network: the depth model's own estimate when the model
   estimates focal lengths (``"model"``, i.e. Depth Pro), else a separate Depth Pro estimator
   (``"estimated"``). Estimates of the first ``samples`` frames are combined as a running median and
   then frozen, so the scale stays constant afterwards;
3. ``fallback_hfov_deg`` (``"fallback_hfov"``) when no estimator can be loaded (no Depth Pro weights).

Estimated intrinsics have square pixels and the principal point at the image centre. Each change of
source for a camera is announced once through ``log(level, text)`` with the reason.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from depth_ros.node.diagnostics import problem_key

CAMERA_INFO, MODEL, ESTIMATED, FALLBACK = "camera_info", "model", "estimated", "fallback_hfov"

# CameraInfo states (computed by the node from the newest CameraInfo message).
INFO_OK, INFO_MISSING, INFO_UNCALIBRATED, INFO_INVALID = "ok", "missing", "uncalibrated", "invalid"


class IntrinsicsUnavailable(Exception):
    """This frame cannot be projected; the message says why (the frame is skipped)."""

    def __init__(self, text: str, key: str = "intrinsics", waiting: bool = False):
        super().__init__(text)
        self.key = key
        self.waiting = waiting


@dataclass
class InfoStatus:
    state: str
    camera: object = None  # PinholeCamera at the image size when state == INFO_OK
    problem: str = ""


@dataclass
class Plan:
    """How to project one frame. ``camera`` is at the input image size (None: the model estimates)."""

    key: Tuple[str, int, int]
    source: str
    reason: str
    camera: object = None
    model_sample: bool = False  # the model's own focal estimate of this frame is to be recorded


@dataclass
class _Track:
    samples: List[float] = field(default_factory=list)
    frozen: Optional[float] = None
    source: str = ESTIMATED

    def median(self) -> float:
        return float(np.median(np.asarray(self.samples, dtype=np.float64)))


def camera_from_focal(width: int, height: int, f_px: float):
    """Square pixels, principal point at the image centre."""
    from depth_ros.core.camera import PinholeCamera

    maker = getattr(PinholeCamera, "from_focal", None)
    if maker is not None:
        return maker(width, height, f_px)
    return PinholeCamera(width=width, height=height, fx=f_px, fy=f_px, cx=width / 2.0, cy=height / 2.0)


def focal_from_hfov(width: int, hfov_deg: float) -> float:
    return 0.5 * width / math.tan(math.radians(hfov_deg) / 2.0)


def hfov_from_focal(width: int, f_px: float) -> float:
    return math.degrees(2.0 * math.atan(0.5 * width / f_px))


class IntrinsicsResolver:
    """Chooses and caches the intrinsics per camera; see the module docstring."""

    def __init__(self, *, samples: int = 5, fallback_hfov_deg: float = 60.0, invalid_policy: str = "skip",
                 timeout_s: float = 2.0, model_estimates_focal: bool = False,
                 estimator_factory: Optional[Callable[[], Callable[[np.ndarray], float]]] = None,
                 log: Optional[Callable[[str, str], None]] = None):
        self.samples = max(1, int(samples))
        self.fallback_hfov_deg = float(fallback_hfov_deg)
        self.invalid_policy = invalid_policy
        self.timeout_s = float(timeout_s)
        self.model_estimates_focal = model_estimates_focal
        self._factory = estimator_factory
        self._estimator: Optional[Callable[[np.ndarray], float]] = None
        self.estimator_error: Optional[str] = None if estimator_factory is not None else "disabled"
        self._log = log or (lambda level, text: None)
        self._tracks: Dict[Tuple[str, int, int], _Track] = {}
        self._announced: Dict[Tuple[str, int, int], Tuple[str, str]] = {}
        self._waiting_announced = False
        #: for diagnostics: the newest plan's source, reason and focal length (input pixels)
        self.current: Dict[str, object] = {"source": "none", "reason": "no frame yet", "focal_px": None}

    # -- public ---------------------------------------------------------------------------------
    def plan(self, frame_id: str, width: int, height: int, info: InfoStatus, waited_s: float,
             rgb: Optional[np.ndarray] = None) -> Plan:
        """Decide the intrinsics of one frame. ``rgb`` (any size, same aspect) feeds the estimator.

        Raises ``IntrinsicsUnavailable`` when the frame must be skipped.
        """
        key = (frame_id, int(width), int(height))
        if info.state == INFO_OK:
            self._waiting_announced = False
            return self._use(Plan(key, CAMERA_INFO, "valid CameraInfo", info.camera), info.camera.fx)
        if info.state == INFO_MISSING and waited_s < self.timeout_s:
            if not self._waiting_announced:
                self._waiting_announced = True
                self._log("info", f"waiting up to {self.timeout_s:g} s for CameraInfo before estimating intrinsics")
            raise IntrinsicsUnavailable("waiting for CameraInfo", key="waiting", waiting=True)
        if info.state == INFO_INVALID and self.invalid_policy == "skip":
            raise IntrinsicsUnavailable(f"frame skipped: {info.problem} (invalid_camera_info: skip)",
                                        key="camera_info:" + problem_key(info.problem))
        reason = info.problem or info.state
        return self._estimate(key, width, height, reason, rgb)

    def add_model_sample(self, plan: Plan, focal_px: Optional[float]):
        """Record the model's own focal estimate (input pixels) of a ``model_sample`` plan.

        Returns the camera (input size) that the frame's depth was computed with.
        """
        w, h = plan.key[1], plan.key[2]
        if focal_px is None or not np.isfinite(focal_px) or focal_px <= 0:
            self.model_estimates_focal = False
            self.estimator_error = f"the model returned no usable focal estimate ({focal_px})"
            if self.fallback_hfov_deg > 0:
                cam = camera_from_focal(w, h, focal_from_hfov(w, self.fallback_hfov_deg))
                self._use(Plan(plan.key, FALLBACK, self.estimator_error, cam), cam.fx)
                return cam
            raise IntrinsicsUnavailable(f"no intrinsics: {self.estimator_error} and fallback_hfov_deg is 0",
                                        key="no_intrinsics")
        track = self._tracks.setdefault(plan.key, _Track(source=MODEL))
        self._add(plan.key, track, float(focal_px), plan.reason)
        cam = camera_from_focal(w, h, float(focal_px))
        self._use(plan, float(focal_px))
        return cam

    def reset(self) -> None:
        self._tracks.clear()
        self._announced.clear()

    def focal_for(self, frame_id: str, width: int, height: int) -> Optional[float]:
        track = self._tracks.get((frame_id, int(width), int(height)))
        if track is None or not track.samples:
            return None
        return track.frozen if track.frozen is not None else track.median()

    # -- internals ------------------------------------------------------------------------------
    def _estimate(self, key, width: int, height: int, reason: str, rgb: Optional[np.ndarray]) -> Plan:
        track = self._tracks.get(key)
        if track is not None and track.frozen is not None:
            cam = camera_from_focal(width, height, track.frozen)
            return self._use(Plan(key, track.source, reason, cam), track.frozen)
        if self.model_estimates_focal:
            return Plan(key, MODEL, reason, None, model_sample=True)
        estimator = self._get_estimator()
        if estimator is not None and rgb is not None:
            try:
                f_rgb = float(estimator(rgb))
                if not np.isfinite(f_rgb) or f_rgb <= 0:
                    raise ValueError(f"estimate {f_rgb} is not a positive focal length")
            except Exception as exc:  # a failing estimator must not kill the frame loop
                self._log("warn", f"focal estimator failed ({type(exc).__name__}: {exc}); using the fallback")
                estimator = None
            else:
                f_px = f_rgb * width / rgb.shape[1]
                track = self._tracks.setdefault(key, _Track(source=ESTIMATED))
                self._add(key, track, f_px, reason)
                f_used = track.frozen if track.frozen is not None else track.median()
                cam = camera_from_focal(width, height, f_used)
                return self._use(Plan(key, ESTIMATED, reason, cam), f_used)
        if self.fallback_hfov_deg > 0:
            cam = camera_from_focal(width, height, focal_from_hfov(width, self.fallback_hfov_deg))
            why = f"{reason}; focal estimator unavailable ({self.estimator_error})"
            return self._use(Plan(key, FALLBACK, why, cam), cam.fx)
        raise IntrinsicsUnavailable(
            f"no intrinsics for this frame: {reason}; focal estimator unavailable ({self.estimator_error}) "
            "and fallback_hfov_deg is 0", key="no_intrinsics")

    def _get_estimator(self):
        if self._estimator is None and self._factory is not None and self.estimator_error is None:
            try:
                self._estimator = self._factory()
            except Exception as exc:
                self.estimator_error = str(exc) or type(exc).__name__
                self._log("warn", f"focal-length estimator unavailable: {self.estimator_error}")
        return self._estimator

    def _add(self, key, track: _Track, f_px: float, reason: str) -> None:
        if track.frozen is not None:
            return
        track.samples.append(f_px)
        if len(track.samples) >= self.samples:
            track.frozen = track.median()
            frame_id, w, h = key
            self._log("info", f"camera '{frame_id}' {w}x{h}: focal length frozen at {track.frozen:.1f} px "
                              f"(hfov {hfov_from_focal(w, track.frozen):.1f} deg; median of {len(track.samples)} "
                              f"{'Depth Pro' if track.source == MODEL else 'FOV-network'} estimates)")

    def _use(self, plan: Plan, focal_px: float) -> Plan:
        frame_id, w, h = plan.key
        self.current = {"source": plan.source, "reason": plan.reason, "focal_px": float(focal_px)}
        if self._announced.get(plan.key) != (plan.source, plan.reason):
            self._announced[plan.key] = (plan.source, plan.reason)
            what = {CAMERA_INFO: "using the CameraInfo intrinsics",
                    MODEL: "using Depth Pro's own focal-length estimate (running median, then frozen)",
                    ESTIMATED: "using the focal length estimated by Depth Pro's FOV network "
                               "(running median, then frozen)",
                    FALLBACK: f"using fallback_hfov_deg={self.fallback_hfov_deg:g}"}[plan.source]
            level = "warn" if plan.source == FALLBACK else "info"
            why = "" if plan.source == CAMERA_INFO else f" because {plan.reason}"
            self._log(level, f"camera '{frame_id}' {w}x{h}: {what}{why}")
        return plan
