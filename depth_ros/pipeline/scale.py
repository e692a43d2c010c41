"""Frame-to-frame scale stabilisation of metric depth (numpy only, ROS-free).

A per-frame network makes two kinds of scale error: a slow *bias* (the scene's true scale is
ambiguous from one image) and frame-to-frame *jitter* (plus occasional jumps, e.g. ZoeDepth-NK's router
flipping heads). :class:`ScaleStabilizer` removes the jitter and the jumps and keeps the bias from
drifting, per camera.

Pipeline of one frame (``ScaleStabilizer.update``)
--------------------------------------------------
1. **Reference.** ``odometry`` mode: the previous *output* depth is warped into the current frame with
   the relative camera motion (:func:`warp_depth`, a z-buffered forward splat). ``static`` mode: the
   previous output as it is (no motion information).
2. **Fit.** The current *raw* depth is compared with the reference on pixels valid in both:
   ``y = log(raw / reference)``, a robust location (median, then a trimmed mean of the pixels within
   ``inlier_tol`` of it: :func:`fit_log_scale`, which tolerates 30 % outliers). ``static`` mode leaves out
   pixels next to depth edges, where a small image shift compares different surfaces
   (:func:`fit_log_scale_static`).
3. **Chain.** ``y`` is the raw frame's log-scale relative to the previous output. Adding the previous
   frame's applied log-correction gives ``lam`` (``Lambda``): the raw network's log-scale in the track's
   units, i.e. relative to the first raw frame of the track. Jitter and jumps of the network appear in
   ``lam`` one to one.
4. **Filter.** A Kalman filter on ``lam`` estimates the slowly varying level ``B``. ``odometry`` mode:
   local level (constant state)::

       B_k = B_{k-1} + w,  w ~ N(0, drift**2)       (true drift of the network's scale)
       lam_k = B_k + v,     v ~ N(0, jitter**2)      (per-frame jitter)

   with defaults ``jitter = 0.03`` (3 % per-frame scale noise, log units) and ``drift = 0.002`` per frame.
   Its state starts at the first frame with variance ``jitter**2``, so for the first ~1/K frames
   (steady-state gain K = 0.064 with the defaults, ~15 frames) ``B`` is the running mean of the track's
   raw log-scale, afterwards an exponential average with that time constant. ``static`` mode adds a rate
   (local linear trend, rate noise ``trend = 0.0005`` per frame): without a warp, a camera approaching a
   scene makes ``lam`` ramp (the true depth shrinks), and a level-only filter would lag a ramp by
   ``rate / K`` frames' worth, i.e. pull the output away from the truth.
   *Gate:* a measurement whose innovation exceeds ``gate`` standard deviations (default 3) is an outlier
   (a jump) and does not update ``B``. *Step detector:* ``step_frames`` (default 4) consecutive outliers
   on the same side re-anchor ``B`` to their mean: a persistent change of the network's scale is
   followed within ``step_frames`` frames, shorter excursions (router flips, glitches) are rejected.
5. **Apply.** The output is ``raw * exp(B - lam)``: the frame's own deviation from the level is removed,
   so the output's scale is ``B`` for every frame.

What the absolute scale is anchored to
--------------------------------------
The output's metric scale is the network's *own average* scale over the track: the running mean of its
log-scale over the first frames, then a slow exponential average (time constant ~1/K frames) that
follows genuine drift. The stabiliser never makes the scale more biased than the network's mean bias,
and errors of the frame-to-frame fits do not accumulate (the level is re-estimated from the chained raw
scales, so a fit error moves ``lam`` and ``B`` alike). The odometry's metric translation is used for the
geometry of the warp only; it is not used to estimate the absolute scale (from one frame pair that is
observable only through the parallax, far weaker than the network's jitter).

When the track restarts
-----------------------
The first frame starts a track (``info.state == "started"``). A change of resolution or intrinsics, a
missing motion in ``odometry`` mode, too few overlapping valid pixels (``min_overlap``), too few pixels
to compare, or too few inliers of the fit (``min_inliers``: a sudden scene change) restart it: that
frame is passed through unchanged (its own scale becomes the new track's first anchor sample) and
``info.state`` says ``"restarted: <why>"`` on that frame only, so a caller logs each restart once.

Where ``static`` breaks
-----------------------
``static`` compares each frame with the previous one pixel for pixel, so every true depth change at a
pixel counts as a change of the network's scale. The trend term absorbs steady approach/retreat and the
edge mask and the median absorb shifts of a pixel or two, but fast or uneven motion leaks into the
output. Measured (``bench/bench_scale.py``, 256x192, 70 deg HFOV, 3 % jitter): a slow pan (0.25 deg per
frame, ~0.7 px) and a walk at ~2 cm and ~0.6 deg per frame reach the >= 10x jitter reduction; a car at
~22 cm per frame on a street (nearby parked cars and poles sweeping past) does not (jitter *up*,
AbsRel worse, restarts). Use it for hand-held, slowly panning or nearly stationary cameras; use
``odometry`` on moving platforms.

Conventions: depth is float metres along the optical axis (REP 118), non-finite or <= 0 = invalid;
camera optical frame REP 103 (x right, y down, z forward). ``motion`` maps points from the previous
optical frame into the current one: ``X_cur = R @ X_prev + t`` (``T_cur_prev``, a 4x4 or ``(R, t)``);
:func:`relative_motion` builds it from two world-from-optical poses.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import numpy as np

from depth_ros.core.camera import PinholeCamera

__all__ = ["FitResult", "LogScaleFilter", "ScaleInfo", "ScaleStabilizer", "as_motion", "fit_log_scale",
           "fit_log_scale_static", "relative_motion", "warp_depth", "MODES"]

MODES = ("odometry", "static")

#: Default rate noise of static mode's trend model (log-scale per frame per frame).
STATIC_TREND = 0.0005

Motion = Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]


# --------------------------------------------------------------------------------------------------
# Geometry


def as_motion(motion: Motion) -> Tuple[np.ndarray, np.ndarray]:
    """``(R, t)`` (float64 3x3, 3) from a 4x4 homogeneous matrix or an ``(R, t)`` pair; ValueError if the
    input is not a finite rigid motion."""
    if isinstance(motion, (tuple, list)) and len(motion) == 2:
        rot = np.asarray(motion[0], dtype=np.float64)
        t = np.asarray(motion[1], dtype=np.float64).reshape(-1)
    else:
        m = np.asarray(motion, dtype=np.float64)
        if m.shape != (4, 4):
            raise ValueError(f"motion must be a 4x4 matrix or an (R, t) pair, got shape {m.shape}")
        if not np.allclose(m[3], [0.0, 0.0, 0.0, 1.0], atol=1e-9):
            raise ValueError(f"motion's last row must be [0, 0, 0, 1], got {m[3].tolist()}")
        rot, t = m[:3, :3], m[:3, 3]
    if rot.shape != (3, 3) or t.shape != (3,):
        raise ValueError(f"motion needs a 3x3 rotation and a 3-vector, got {rot.shape} and {t.shape}")
    if not (np.all(np.isfinite(rot)) and np.all(np.isfinite(t))):
        raise ValueError("motion has non-finite values")
    if not np.allclose(rot.T @ rot, np.eye(3), atol=1e-4) or np.linalg.det(rot) < 0:
        raise ValueError("motion's rotation is not orthonormal with determinant +1")
    return rot, t


def relative_motion(world_from_prev: np.ndarray, world_from_cur: np.ndarray) -> np.ndarray:
    """``T_cur_prev = inv(T_world_cur) @ T_world_prev`` (4x4) from two world-from-optical poses."""
    a = np.asarray(world_from_prev, dtype=np.float64)
    b = np.asarray(world_from_cur, dtype=np.float64)
    if a.shape != (4, 4) or b.shape != (4, 4):
        raise ValueError(f"poses must be 4x4 matrices, got {a.shape} and {b.shape}")
    rb, tb = b[:3, :3], b[:3, 3]
    inv = np.eye(4)
    inv[:3, :3] = rb.T
    inv[:3, 3] = -rb.T @ tb
    return inv @ a


def _valid(depth: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isfinite(depth) & (depth > 0)


def warp_depth(depth_prev: np.ndarray, camera: PinholeCamera, motion: Motion,
               camera_cur: Optional[PinholeCamera] = None, min_depth: float = 1e-3) -> np.ndarray:
    """Warp the previous frame's depth into the current frame (z-buffered forward splat).

    Every valid pixel of ``depth_prev`` is back-projected with ``camera`` (the previous frame's
    intrinsics), moved by ``motion`` (``X_cur = R X_prev + t``), projected with ``camera_cur`` (default:
    ``camera``) and written to the nearest pixel; where several land on one pixel the nearest surface
    wins (z-buffer). The value written is the point's z in the current frame, exact for the moved point
    (no interpolation across surfaces). Pixels that receive nothing are NaN: disocclusions, the border
    the camera moved away from, and gaps where the view magnifies the previous frame (moving forward).

    Why a forward splat: an inverse warp would need the *current* depth to find where each current pixel
    came from, and that depth's scale is what is being estimated. The gaps of the splat cost only
    overlap, which the fit does not need to be dense.
    Returns float32 H x W of ``camera_cur``'s size.
    """
    depth_prev = np.asarray(depth_prev)
    if depth_prev.ndim != 2:
        raise ValueError(f"depth must be an H x W array, got shape {depth_prev.shape}")
    h, w = depth_prev.shape
    if (camera.width, camera.height) != (w, h):
        raise ValueError(f"camera is {camera.width}x{camera.height} but the depth is {w}x{h}")
    cur = camera if camera_cur is None else camera_cur
    rot, t = as_motion(motion)
    valid = _valid(depth_prev)
    v, u = np.nonzero(valid)
    z = depth_prev[v, u].astype(np.float64)
    x = (u - camera.cx) / camera.fx * z
    y = (v - camera.cy) / camera.fy * z
    p = rot @ np.stack([x, y, z]) + t[:, None]
    zc = p[2]
    front = zc > min_depth
    p, zc = p[:, front], zc[front]
    uc = np.rint(cur.fx * p[0] / zc + cur.cx).astype(np.int64)
    vc = np.rint(cur.fy * p[1] / zc + cur.cy).astype(np.int64)
    inside = (uc >= 0) & (uc < cur.width) & (vc >= 0) & (vc < cur.height)
    idx = vc[inside] * cur.width + uc[inside]
    zc = zc[inside]
    out = np.full(cur.width * cur.height, np.nan, dtype=np.float32)
    if idx.size:
        order = np.lexsort((zc, idx))  # by pixel, nearest first
        idx_s = idx[order]
        first = np.ones(idx_s.size, dtype=bool)
        first[1:] = idx_s[1:] != idx_s[:-1]
        out[idx_s[first]] = zc[order][first]
    return out.reshape(cur.height, cur.width)


# --------------------------------------------------------------------------------------------------
# Robust fits


@dataclass
class FitResult:
    """A scale fit. ``log_scale``: log(current / reference) (NaN when it failed); ``inlier_fraction``:
    share of the compared pixels within the inlier tolerance of the fit; ``overlap``: share of the
    current frame's pixels valid in both maps; ``count``: pixels compared."""

    log_scale: float
    inlier_fraction: float
    overlap: float
    count: int


def fit_log_scale(depth: np.ndarray, reference: np.ndarray, inlier_tol: float = 0.1,
                  min_count: int = 50) -> FitResult:
    """Robust log-scale of ``depth`` relative to ``reference`` on pixels valid in both.

    The median of the log-ratios, then twice the mean of the log-ratios within ``inlier_tol`` (log units)
    of the current estimate (a trimmed mean: the median's breakdown point with a mean's efficiency on
    the inliers). With 30 % outliers all on one side the median alone is pulled by ~0.57 sigma of the
    inliers' spread; the trimmed steps remove that.
    """
    depth = np.asarray(depth)
    reference = np.asarray(reference)
    if depth.shape != reference.shape:
        raise ValueError(f"depth {depth.shape} and reference {reference.shape} differ in shape")
    both = _valid(depth) & _valid(reference)
    n = int(both.sum())
    overlap = n / max(depth.size, 1)
    if n < min_count:
        return FitResult(float("nan"), 0.0, overlap, n)
    r = np.log(depth[both].astype(np.float64)) - np.log(reference[both].astype(np.float64))
    s = float(np.median(r))
    for _ in range(2):
        near = np.abs(r - s) < inlier_tol
        if not near.any():
            break
        s = float(r[near].mean())
    inl = float(np.mean(np.abs(r - s) < inlier_tol))
    return FitResult(s, inl, overlap, n)


def _edge_mask(depth: np.ndarray, edge_tol: float) -> np.ndarray:
    """True where the 3x3 neighbourhood's log-depth range exceeds ``edge_tol`` (or touches invalid)."""
    ld = np.where(_valid(depth), np.log(np.where(_valid(depth), depth, 1.0)), np.nan)
    pad = np.pad(ld, 1, mode="edge")
    h, w = ld.shape
    stack = np.stack([pad[i:i + h, j:j + w] for i in range(3) for j in range(3)])
    with np.errstate(invalid="ignore"):
        rng = np.max(stack, axis=0) - np.min(stack, axis=0)
    return ~(rng <= edge_tol)  # NaN (invalid neighbour) counts as an edge


def fit_log_scale_static(depth: np.ndarray, reference: np.ndarray, inlier_tol: float = 0.1,
                         edge_tol: float = 0.05, min_count: int = 50) -> FitResult:
    """Log-scale of ``depth`` relative to the previous frame's ``reference`` without a warp (static mode).

    :func:`fit_log_scale` on the pixels away from depth edges: where the reference's 3x3 log-depth range
    exceeds ``edge_tol`` a shift of the image by a pixel or two (camera shake, a slow pan) compares
    different surfaces, so those pixels are left out; elsewhere a small shift changes the depth little and
    the median absorbs the rest. ``overlap`` counts all pixels valid in both maps.
    """
    depth = np.asarray(depth)
    reference = np.asarray(reference)
    if depth.shape != reference.shape:
        raise ValueError(f"depth {depth.shape} and reference {reference.shape} differ in shape")
    both = _valid(depth) & _valid(reference)
    ref = np.where(_edge_mask(reference, edge_tol), np.nan, reference)
    fit = fit_log_scale(depth, ref, inlier_tol, min_count)
    fit.overlap = int(both.sum()) / max(depth.size, 1)
    return fit


# --------------------------------------------------------------------------------------------------
# Filter


class LogScaleFilter:
    """Kalman filter on a log-scale, with an outlier gate and a step detector.

    Local-level model (``trend=None``): ``level_k = level_{k-1} + N(0, drift**2)``. Local-linear-trend
    model (``trend`` = std of the rate's change per frame): ``level_k = level_{k-1} + rate_{k-1} +
    N(0, drift**2)``, ``rate_k = rate_{k-1} + N(0, trend**2)``; it follows a steady ramp without lag.
    Measurement: ``z_k = level_k + N(0, jitter**2)``.

    A measurement whose innovation exceeds ``gate`` standard deviations is an outlier and leaves the
    state as it was (not even predicted forward, so the gate does not widen during an excursion);
    ``step_frames`` consecutive outliers on the same side re-anchor the level to their mean (a true
    change, followed within ``step_frames`` frames). The first measurement starts the filter
    with level variance ``jitter**2`` (rate 0, variance ``(4 trend)**2``), so the level is the running
    mean of the first measurements until the gain falls to its steady state (:attr:`steady_gain`).
    """

    def __init__(self, jitter: float = 0.03, drift: float = 0.002, gate: float = 3.0, step_frames: int = 4,
                 trend: Optional[float] = None):
        for name, val in (("jitter", jitter), ("drift", drift), ("gate", gate)) + (
                (("trend", trend),) if trend is not None else ()):
            if isinstance(val, bool) or not (isinstance(val, (int, float)) and math.isfinite(val) and val > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {val!r}")
        if isinstance(step_frames, bool) or int(step_frames) != step_frames or step_frames < 1:
            raise ValueError(f"step_frames must be an integer >= 1, got {step_frames!r}")
        self.r = float(jitter) ** 2
        self.gate = float(gate)
        self.step_frames = int(step_frames)
        self.trend = None if trend is None else float(trend)
        n = 1 if trend is None else 2
        self._F = np.eye(n)
        self._Q = np.zeros((n, n))
        self._Q[0, 0] = float(drift) ** 2
        if n == 2:
            self._F[0, 1] = 1.0
            self._Q[1, 1] = self.trend ** 2
        self.steps = 0
        self.reset()

    def reset(self) -> None:
        """Forget the state (the step count is kept)."""
        self._x: Optional[np.ndarray] = None
        self._P = np.zeros_like(self._F)
        self._pending: list = []

    @property
    def level(self) -> Optional[float]:
        return None if self._x is None else float(self._x[0])

    @property
    def rate(self) -> float:
        return 0.0 if self._x is None or self._x.size == 1 else float(self._x[1])

    def _start(self, z: float, var: float) -> None:
        self._x = np.zeros(self._F.shape[0])
        self._x[0] = z
        self._P = np.zeros_like(self._F)
        self._P[0, 0] = var
        if self._x.size == 2:
            self._P[1, 1] = (4.0 * self.trend) ** 2

    def update(self, z: float) -> Tuple[float, str]:
        """Feed one measurement; returns ``(level, event)``, event one of "start", "update", "outlier"
        (rejected, the level is the prediction), "step" (re-anchored)."""
        z = float(z)
        if not math.isfinite(z):
            raise ValueError(f"log-scale measurement must be finite, got {z}")
        if self._x is None:
            self._start(z, self.r)
            return self.level, "start"
        x = self._F @ self._x
        P = self._F @ self._P @ self._F.T + self._Q
        innov = z - x[0]
        s = P[0, 0] + self.r
        if abs(innov) > self.gate * math.sqrt(s):
            if self._pending and (self._pending[-1] - x[0]) * innov < 0:
                self._pending = []  # the other side: not the same step
            self._pending.append(z)
            if len(self._pending) >= self.step_frames:
                self._start(float(np.mean(self._pending)), self.r / len(self._pending))
                self._pending = []
                self.steps += 1
                return self.level, "step"
            # Frozen during an excursion: inflating P here would widen the gate until a persistent step
            # got accepted as ordinary measurements (and, with a trend, ramped into) instead of detected.
            return self.level, "outlier"
        self._pending = []
        k = P[:, 0] / s
        self._x = x + k * innov
        self._P = P - np.outer(k, P[0, :])
        return self.level, "update"

    @property
    def steady_gain(self) -> float:
        """The level's Kalman gain once the running-mean phase is over (Riccati iteration)."""
        P = np.eye(self._F.shape[0])
        k = 0.0
        for _ in range(2000):
            P = self._F @ P @ self._F.T + self._Q
            k = P[0, 0] / (P[0, 0] + self.r)
            gain = P[:, 0] / (P[0, 0] + self.r)
            P = P - np.outer(gain, P[0, :])
        return float(k)


# --------------------------------------------------------------------------------------------------
# Stabiliser


@dataclass
class ScaleInfo:
    """What :meth:`ScaleStabilizer.update` did to one frame (for diagnostics).

    scale: the factor applied to the raw depth. relative_scale: the raw frame's scale relative to the
    reference (previous output, warped in ``odometry`` mode) from the fit, NaN when there was no fit.
    inlier_fraction, overlap: the fit's quality (see :class:`FitResult`; 0 without a fit).
    state: "started" (first frame), "tracking", or "restarted: <why>". event: the filter's event
    ("start", "update", "outlier": a jump rejected, "step": re-anchored to a persistent change).
    track_frames: frames in the current track, this one included.
    """

    scale: float
    relative_scale: float
    inlier_fraction: float
    overlap: float
    state: str
    event: str
    track_frames: int

    @property
    def restarted(self) -> bool:
        return self.state.startswith("restarted")


class ScaleStabilizer:
    """Per-camera scale stabilisation (see the module docstring for the method and its parameters).

    ``mode``: "odometry" (warp with the camera motion; ``update`` needs ``motion``) or "static" (no
    motion; for slow cameras). ``jitter``, ``drift``, ``gate``, ``step_frames``: the filter
    (:class:`LogScaleFilter`). ``inlier_tol``: log-ratio tolerance of a fit's inliers. ``min_overlap``,
    ``min_inliers``: fractions below which the track restarts. ``max_width``: the fit runs on the depth
    subsampled (every n-th pixel) to at most this width. ``edge_tol``: static mode's depth-edge mask.
    """

    def __init__(self, mode: str = "odometry", jitter: float = 0.03, drift: float = 0.002, gate: float = 3.0,
                 step_frames: int = 4, trend: Union[None, float, str] = "auto", inlier_tol: float = 0.1,
                 min_overlap: float = 0.2, min_inliers: float = 0.5, max_width: int = 160, edge_tol: float = 0.05):
        if mode not in MODES:
            raise ValueError(f"scale stabilisation mode must be one of {', '.join(MODES)}, got {mode!r}")
        for name, val, lo, hi in (("inlier_tol", inlier_tol, 0.0, 2.0), ("min_overlap", min_overlap, 0.0, 1.0),
                                  ("min_inliers", min_inliers, 0.0, 1.0), ("edge_tol", edge_tol, 0.0, 10.0)):
            if not (isinstance(val, (int, float)) and lo < val <= hi):
                raise ValueError(f"{name} must be in ({lo:g}, {hi:g}], got {val!r}")
        if int(max_width) != max_width or max_width < 8:
            raise ValueError(f"max_width must be an integer >= 8, got {max_width!r}")
        self.mode = mode
        if isinstance(trend, str):
            if trend != "auto":
                raise ValueError(f"trend must be 'auto', None or a number > 0, got {trend!r}")
            trend = STATIC_TREND if mode == "static" else None
        self.filter = LogScaleFilter(jitter, drift, gate, step_frames, trend)
        self.inlier_tol = float(inlier_tol)
        self.min_overlap = float(min_overlap)
        self.min_inliers = float(min_inliers)
        self.max_width = int(max_width)
        self.edge_tol = float(edge_tol)
        self.restarts = 0
        self.frames = 0
        self._clear()

    def _clear(self) -> None:
        self._prev: Optional[np.ndarray] = None  # previous output at working resolution
        self._prev_cam: Optional[PinholeCamera] = None  # full-resolution intrinsics of the previous frame
        self._lam = 0.0
        self._corr = 0.0  # log correction applied to the previous frame (level - lam)
        self._track = 0
        self.filter.reset()

    def reset(self) -> None:
        """Forget the track (the next frame starts a new one)."""
        self._clear()

    @property
    def steps(self) -> int:
        return self.filter.steps

    def _working(self, depth: np.ndarray, camera: PinholeCamera) -> Tuple[np.ndarray, PinholeCamera]:
        s = max(1, math.ceil(camera.width / self.max_width))
        if s == 1:
            return depth, camera
        d = depth[::s, ::s]
        return d, PinholeCamera(d.shape[1], d.shape[0], camera.fx / s, camera.fy / s, camera.cx / s,
                                camera.cy / s)

    def _restart(self, depth: np.ndarray, small: np.ndarray, camera: PinholeCamera, why: Optional[str],
                 fit: Optional[FitResult] = None):
        self._clear()
        if why is not None:
            self.restarts += 1
        self.filter.update(0.0)
        self._prev, self._prev_cam, self._track = small.copy(), camera, 1
        rel = math.exp(fit.log_scale) if fit is not None and math.isfinite(fit.log_scale) else float("nan")
        info = ScaleInfo(1.0, rel, 0.0 if fit is None else fit.inlier_fraction, 0.0 if fit is None else fit.overlap,
                         "started" if why is None else f"restarted: {why}", "start", 1)
        return depth.astype(np.float32, copy=False), info

    def update(self, depth: np.ndarray, camera: PinholeCamera, motion: Optional[Motion] = None):
        """Stabilise one frame's raw metric depth. Returns ``(depth_out, ScaleInfo)``; ``depth_out`` is
        ``depth`` times ``info.scale`` (float32; invalid pixels stay as they were).

        ``camera``: this frame's intrinsics (its size must match ``depth``). ``motion``: odometry mode,
        the camera motion from the previous frame to this one (``X_cur = R X_prev + t``, 4x4 or
        ``(R, t)``); None restarts the track. Ignored in static mode.
        """
        depth = np.asarray(depth)
        if depth.ndim != 2 or depth.size == 0:
            raise ValueError(f"depth must be a non-empty H x W array, got shape {depth.shape}")
        if not np.issubdtype(depth.dtype, np.floating):
            raise ValueError(f"depth must be float metres, got dtype {depth.dtype}")
        if not isinstance(camera, PinholeCamera):
            raise ValueError(f"camera must be a depth_ros.core.camera.PinholeCamera, got {type(camera).__name__}")
        h, w = depth.shape
        if (camera.width, camera.height) != (w, h):
            raise ValueError(f"camera is {camera.width}x{camera.height} but the depth is {w}x{h}")
        if self.mode == "odometry" and motion is not None:
            motion = as_motion(motion)
        self.frames += 1
        small, cam_s = self._working(depth, camera)
        prev, prev_cam = self._prev, self._prev_cam
        if prev is None:
            return self._restart(depth, small, camera, None)
        if (prev_cam.width, prev_cam.height) != (w, h):
            return self._restart(depth, small, camera,
                                 f"resolution changed {prev_cam.width}x{prev_cam.height} -> {w}x{h}")
        if prev_cam != camera:
            return self._restart(depth, small, camera, "intrinsics changed")
        if self.mode == "odometry":
            if motion is None:
                return self._restart(depth, small, camera, "no camera motion for this frame")
            ref = warp_depth(prev, cam_s, motion)
            fit = fit_log_scale(small, ref, self.inlier_tol)
        else:
            fit = fit_log_scale_static(small, prev, self.inlier_tol, self.edge_tol)
        if fit.overlap < self.min_overlap:
            return self._restart(depth, small, camera,
                                 f"too little overlap ({100 * fit.overlap:.0f}% < {100 * self.min_overlap:.0f}%)",
                                 fit)
        if not math.isfinite(fit.log_scale):
            return self._restart(depth, small, camera, f"too few comparable pixels ({fit.count})", fit)
        if fit.inlier_fraction < self.min_inliers:
            return self._restart(depth, small, camera, f"scene changed (fit inliers {100 * fit.inlier_fraction:.0f}% "
                                 f"< {100 * self.min_inliers:.0f}%)", fit)
        # y = log(raw_k / out_{k-1}) and out_{k-1} = raw_{k-1} * exp(corr_{k-1}) => lam_k = lam_{k-1} + y + corr.
        lam = self._lam + fit.log_scale + self._corr
        level, event = self.filter.update(lam)
        corr = level - lam
        scale = math.exp(corr)
        out = (depth * np.float32(scale)).astype(np.float32, copy=False)
        self._lam, self._corr = lam, corr
        self._prev, self._prev_cam = (small * np.float32(scale)).astype(np.float32), camera
        self._track += 1
        return out, ScaleInfo(scale, math.exp(fit.log_scale), fit.inlier_fraction, fit.overlap, "tracking", event,
                              self._track)
