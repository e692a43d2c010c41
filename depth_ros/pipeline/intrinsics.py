"""Which intrinsics a frame is projected with (ROS-free; the node, ``depth-ros infer`` and ``depth-ros bag``).

Order of preference, per camera (image ``frame_id``, a file, a bag topic) and image size:

0. intrinsics given by the user (``depth-ros --fx/--hfov``; ``source = "given"``);
1. a valid CameraInfo of the image's size, matched to the image by ``frame_id`` and stamp
   (``CameraInfoTracker``; ``source = "camera_info"``);
2. the focal length estimated by Depth Pro's FOV network: the depth model's own estimate when the model
   estimates focal lengths (``"model"``, i.e. Depth Pro), else a separate Depth Pro estimator
   (``"estimated"``). Estimates of the first ``samples`` frames are combined as a running median and
   then frozen, so the scale stays constant afterwards;
3. ``fallback_hfov_deg`` (``"fallback_hfov"``) when no estimator can be loaded (no Depth Pro weights).

Estimated intrinsics have square pixels and the principal point at the image centre. Each change of
source for a camera is announced once through ``log(level, text)`` with the reason.
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from depth_ros.core.camera import CameraInfoError, PinholeCamera, focal_from_hfov, hfov_from_focal

GIVEN, CAMERA_INFO, MODEL, ESTIMATED, FALLBACK = "given", "camera_info", "model", "estimated", "fallback_hfov"

# CameraInfo states (computed by the node from the newest CameraInfo message).
INFO_OK, INFO_MISSING, INFO_UNCALIBRATED, INFO_INVALID = "ok", "missing", "uncalibrated", "invalid"


class FrameSkipped(Exception):
    """A frame gives no output; the message says why. ``key`` throttles repeats of the same problem,
    ``waiting`` marks the frames skipped while waiting for CameraInfo, ``cause`` is the exception (if any)
    that caused it."""

    def __init__(self, text: str, key: str = "frame", waiting: bool = False,
                 cause: Optional[BaseException] = None):
        super().__init__(text)
        self.key = key
        self.waiting = waiting
        self.cause = cause


class IntrinsicsUnavailable(FrameSkipped):
    """This frame cannot be projected; the message says why (the frame is skipped)."""

    def __init__(self, text: str, key: str = "intrinsics", waiting: bool = False):
        super().__init__(text, key, waiting)


def short_id(frame_id: str, limit: int = 64) -> str:
    """A frame_id for a log line: very long ones are cut (the line must stay readable)."""
    return frame_id if len(frame_id) <= limit else frame_id[:limit] + f"...({len(frame_id)} chars)"


def problem_key(text: str) -> str:
    """A throttling key for a problem text: numbers removed, so repeats of one problem share it."""
    return re.sub(r"[-+]?\d[\d.e+-]*|nan|inf", "#", text)[:80]


@dataclass
class InfoStatus:
    state: str
    camera: object = None  # PinholeCamera at the image size when state == INFO_OK
    problem: str = ""


def info_status(result, width: int, height: int) -> InfoStatus:
    """The state of a converted CameraInfo for an image of ``width x height``.

    ``result``: what ``msgs.camera_from_info_msg`` gave (a PinholeCamera; None = uncalibrated; an
    exception = malformed), or the ``InfoStatus`` a ``CameraInfoTracker`` already decided.
    """
    if isinstance(result, InfoStatus):
        return result
    if isinstance(result, Exception):
        return InfoStatus(INFO_INVALID, problem=f"invalid CameraInfo: {result}")
    if result is None:
        return InfoStatus(INFO_UNCALIBRATED, problem="CameraInfo is uncalibrated (K[0] == 0)")
    if (result.width, result.height) != (width, height):
        return InfoStatus(INFO_INVALID, problem=f"CameraInfo size {result.width}x{result.height} differs "
                                                f"from the image size {width}x{height}")
    return InfoStatus(INFO_OK, camera=result)


class CameraInfoTracker:
    """CameraInfo per ``frame_id``, paired with images the way image_transport's camera subscriber does.

    ``add`` stores a converted CameraInfo (camera, None = uncalibrated, or the conversion error) by
    ``frame_id`` and header stamp; ``status`` gives an image its CameraInfo: the one with the same
    stamp, else the newest at or before the image's stamp, else the oldest after it. CameraInfo of
    another ``frame_id`` is never used: an image whose frame has none while other frames have some is a
    mismatch (INFO_INVALID, named). ``keep`` bounds the stamps stored per frame (None: unbounded, for
    bags read in full).
    """

    def __init__(self, keep: Optional[int] = 32):
        self.keep = keep
        self._by_frame: Dict[str, Tuple[List[int], List[object]]] = {}

    #: cameras remembered at most (the oldest is forgotten: a stream of made-up frame_ids cannot grow memory)
    MAX_FRAMES = 64

    def add(self, frame_id: str, stamp_ns: int, result) -> None:
        if frame_id not in self._by_frame and len(self._by_frame) >= self.MAX_FRAMES:
            del self._by_frame[next(iter(self._by_frame))]
        stamps, results = self._by_frame.setdefault(frame_id, ([], []))
        i = bisect.bisect_left(stamps, stamp_ns)
        if i < len(stamps) and stamps[i] == stamp_ns:
            results[i] = result
        else:
            stamps.insert(i, stamp_ns)
            results.insert(i, result)
        if self.keep is not None and len(stamps) > self.keep:
            del stamps[0], results[0]

    @property
    def empty(self) -> bool:
        return not self._by_frame

    def status(self, frame_id: str, stamp_ns: int, width: int, height: int, missing: str) -> InfoStatus:
        entry = self._by_frame.get(frame_id)
        if entry is None:
            if not self._by_frame:
                return InfoStatus(INFO_MISSING, problem=missing)
            others = ", ".join(f"'{short_id(f)}'" for f in sorted(self._by_frame)[:3])
            return InfoStatus(INFO_INVALID, problem=f"CameraInfo frame_id {others} does not match the image "
                                                    f"frame_id '{short_id(frame_id)}'")
        stamps, results = entry
        i = bisect.bisect_right(stamps, stamp_ns)
        result = results[i - 1] if i > 0 else results[0]
        return info_status(result, width, height)


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


def camera_from_focal(width: int, height: int, f_px: float) -> PinholeCamera:
    """Square pixels, principal point at the image centre."""
    return PinholeCamera.from_focal(width, height, f_px)


@dataclass(frozen=True)
class GivenIntrinsics:
    """Intrinsics the user gave: ``fx`` (with optional ``fy``, ``cx``, ``cy``) or ``hfov_deg``."""

    fx: Optional[float] = None
    fy: Optional[float] = None
    cx: Optional[float] = None
    cy: Optional[float] = None
    hfov_deg: Optional[float] = None

    def __post_init__(self):
        if (self.fy is not None or self.cx is not None or self.cy is not None) and self.fx is None:
            raise ValueError("fy/cx/cy need fx as well")
        if self.fx is not None and self.hfov_deg is not None:
            raise ValueError("give either fx (with fy/cx/cy) or hfov, not both")
        if self.fx is not None and not (np.isfinite(self.fx) and self.fx > 0):
            raise ValueError(f"fx must be a positive focal length in pixels, got {self.fx}")
        if self.hfov_deg is not None and not (0 < self.hfov_deg < 180):
            raise ValueError(f"hfov must be in (0, 180) degrees, got {self.hfov_deg}")

    @property
    def given(self) -> bool:
        return self.fx is not None or self.hfov_deg is not None

    def camera(self, width: int, height: int) -> PinholeCamera:
        try:
            if self.fx is not None:
                return PinholeCamera.from_focal(width, height, self.fx, fy=self.fy, cx=self.cx, cy=self.cy)
            return PinholeCamera.from_hfov(width, height, self.hfov_deg)
        except CameraInfoError as exc:
            raise IntrinsicsUnavailable(f"the given intrinsics are unusable for a {width}x{height} image: {exc}",
                                        key="given") from None

    @property
    def reason(self) -> str:
        return f"given: fx={self.fx:g}" if self.fx is not None else f"given: hfov={self.hfov_deg:g} deg"


class IntrinsicsResolver:
    """Chooses and caches the intrinsics per camera; see the module docstring."""

    def __init__(self, *, samples: int = 5, fallback_hfov_deg: float = 60.0, invalid_policy: str = "skip",
                 timeout_s: float = 2.0, model_estimates_focal: bool = False,
                 estimator_factory: Optional[Callable[[], Callable[[np.ndarray], float]]] = None,
                 log: Optional[Callable[[str, str], None]] = None, given: Optional[GivenIntrinsics] = None):
        self.given = given if given is not None and given.given else None
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
        if self.given is not None:
            cam = self.given.camera(int(width), int(height))
            return self._use(Plan(key, GIVEN, self.given.reason, cam), cam.fx)
        if info.state == INFO_OK:
            self._waiting_announced = False
            return self._use(Plan(key, CAMERA_INFO, "valid CameraInfo", info.camera), info.camera.fx)
        if info.state == INFO_MISSING and waited_s < self.timeout_s:
            if not self._waiting_announced:
                self._waiting_announced = True
                self._log("info", f"waiting up to {self.timeout_s:g} s for CameraInfo before estimating intrinsics")
            raise IntrinsicsUnavailable("waiting for CameraInfo", key="waiting", waiting=True)
        if info.state == INFO_INVALID and self.invalid_policy == "skip":
            raise IntrinsicsUnavailable(f"{info.problem} (invalid_camera_info: skip)",
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

    def check_available(self) -> None:
        """Raise ``IntrinsicsUnavailable`` at once when a frame without CameraInfo could get no intrinsics
        (nothing given, the model does not estimate, no estimator can be loaded, no fallback)."""
        if self.given is not None or self.model_estimates_focal or self.fallback_hfov_deg > 0:
            return
        if self._get_estimator() is None:
            raise IntrinsicsUnavailable(f"no intrinsics: none given, and the focal estimator is unavailable "
                                        f"({self.estimator_error}) while fallback_hfov_deg is 0",
                                        key="no_intrinsics")

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
            self._log("info", f"camera '{short_id(frame_id)}' {w}x{h}: focal length frozen at {track.frozen:.1f} px "
                              f"(hfov {hfov_from_focal(w, track.frozen):.1f} deg; median of {len(track.samples)} "
                              f"{'Depth Pro' if track.source == MODEL else 'FOV-network'} estimates)")

    MAX_CAMERAS = 256  #: (frame_id, size) tracks remembered at most; the oldest are forgotten

    def _use(self, plan: Plan, focal_px: float) -> Plan:
        frame_id, w, h = plan.key
        for table in (self._announced, self._tracks):
            while len(table) >= self.MAX_CAMERAS and plan.key not in table:
                del table[next(iter(table))]
        self.current = {"source": plan.source, "reason": plan.reason, "focal_px": float(focal_px)}
        if self._announced.get(plan.key) != (plan.source, plan.reason):
            self._announced[plan.key] = (plan.source, plan.reason)
            what = {GIVEN: "using the given intrinsics",
                    CAMERA_INFO: "using the CameraInfo intrinsics",
                    MODEL: "using Depth Pro's own focal-length estimate (running median, then frozen)",
                    ESTIMATED: "using the focal length estimated by Depth Pro's FOV network "
                               "(running median, then frozen)",
                    FALLBACK: f"using fallback_hfov_deg={self.fallback_hfov_deg:g}"}[plan.source]
            level = "warn" if plan.source == FALLBACK else "info"
            why = "" if plan.source in (CAMERA_INFO, GIVEN) else f" because {plan.reason}"
            self._log(level, f"camera '{short_id(frame_id)}' {w}x{h}: {what}{why}")
        return plan
