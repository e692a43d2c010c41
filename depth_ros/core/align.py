"""Metric alignment of an affine-invariant depth prediction to a metric reference (NumPy only).

An affine-invariant model (Marigold) predicts ``p`` with ``metric = scale * p + shift`` for an unknown
``scale > 0`` and ``shift`` per image. :func:`fit_scale_shift` estimates them from a metric reference of
the same frame (a dense metric model's depth, a depth camera, LiDAR points projected into the image;
NaN / 0 where unknown) and :func:`apply_scale_shift` turns the prediction into metres.

Space (``space``): where the affine relation holds and where residuals are measured.

* ``"depth"`` (default): ``reference_depth ~ scale * p + shift``. Marigold's released checkpoints
  (``prediction_type: depth``) predict affine *depth*, and an affine map of depth is not an affine map of
  inverse depth, so depth is the only space in which the two-parameter model is exact for them (the
  official Marigold evaluation aligns them with least squares in depth space). Residuals are in metres, so
  far pixels carry more weight; the robust loss keeps single far outliers from dominating.
* ``"disparity"``: ``1 / reference_depth ~ scale * p + shift`` and ``depth = 1 / (scale * p + shift)``,
  for predictions that are affine in inverse depth (``prediction_type: disparity``, MiDaS-style models);
  residuals in 1/m weight near pixels more.

Fit (``method="huber"``, default): on the valid pixels (finite prediction, finite reference within
``[min_depth, max_depth]``, optional mask), randomly subsampled to ``max_samples`` (seeded, so the result
is reproducible),

1. least-median-of-squares start: ``trials`` random pixel pairs give exact two-point fits; the one with the
   smallest median absolute residual (over 2000 of the samples) wins (breakdown point 50 %, needs no
   threshold);
2. IRLS with Huber weights (``k = 1.345 sigma``, ``sigma = 1.4826 * median |residual|`` re-estimated
   each iteration);
3. refit: ordinary least squares on the inliers ``|residual| <= inlier_sigma * sigma`` (outliers get no
   weight at all, so a contaminated reference does not tilt the result).

``method="lstsq"`` is plain least squares on all valid pixels (the official evaluation; not robust).
A fit is rejected (``AlignResult.ok`` False with ``cause`` and a one-line ``reason``) when there are fewer
than ``min_points`` valid reference pixels or inliers, when the prediction is (nearly) constant over them,
or when the fitted scale is <= 0.

:class:`ScaleShiftSmoother` smooths the fitted ``(log scale, shift)`` across frames of one camera
(exponential moving average or median window) so that the metric scale does not flicker.
"""
from __future__ import annotations

import collections
import math
from dataclasses import dataclass, replace
from typing import Deque, Optional, Tuple

import numpy as np

__all__ = ["SPACES", "METHODS", "CAUSES", "AlignResult", "fit_scale_shift", "apply_scale_shift",
           "valid_reference_mask", "ScaleShiftSmoother"]

SPACES = ("depth", "disparity")
METHODS = ("huber", "lstsq")
#: machine-readable causes of a rejected fit (``AlignResult.cause``), for "log once per cause"
CAUSES = ("too_few_points", "degenerate", "too_few_inliers", "nonpositive_scale")

_HUBER_K = 1.345
_MAD_TO_SIGMA = 1.4826
_LMEDS_SCORE_POINTS = 2000


@dataclass(frozen=True)
class AlignResult:
    """The outcome of :func:`fit_scale_shift`.

    ok: the fit is usable; otherwise ``cause`` (one of ``CAUSES``) and ``reason`` (one line) say why and
      ``scale`` / ``shift`` hold the rejected estimate (NaN when there was none).
    scale, shift: ``metric = scale * p + shift`` in ``space`` (``"depth"``: metres; ``"disparity"``: 1/m).
    n_valid: valid reference pixels before subsampling; n_used: pixels in the fit; inliers: pixels of the
      final refit; residual: robust residual scale (1.4826 x median |residual| of the inliers, in the
      units of ``space``).
    """

    ok: bool
    scale: float
    shift: float
    space: str = "depth"
    n_valid: int = 0
    n_used: int = 0
    inliers: int = 0
    residual: float = float("nan")
    cause: str = ""
    reason: str = ""

    def apply(self, pred: np.ndarray) -> np.ndarray:
        """Metric depth of ``pred`` with this fit (see :func:`apply_scale_shift`)."""
        if not self.ok:
            raise ValueError(f"cannot apply a rejected alignment: {self.reason}")
        return apply_scale_shift(pred, self.scale, self.shift, self.space)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "scale": self.scale, "shift": self.shift, "space": self.space,
                "n_valid": self.n_valid, "n_used": self.n_used, "inliers": self.inliers,
                "residual": self.residual, "cause": self.cause, "reason": self.reason}


def _check_space(space: str) -> str:
    if space not in SPACES:
        raise ValueError(f"alignment space must be one of {', '.join(SPACES)}, got '{space}'")
    return space


def valid_reference_mask(pred: np.ndarray, reference: np.ndarray, min_depth: float = 1e-3,
                         max_depth: float = math.inf, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Pixels usable for the fit: finite prediction, finite reference in ``[min_depth, max_depth]``
    (``min_depth`` > 0, so 0 = "no return" of a depth camera is excluded), and ``mask`` where given."""
    pred = np.asarray(pred)
    reference = np.asarray(reference)
    if pred.ndim != 2 or reference.shape != pred.shape:
        raise ValueError(f"prediction and reference must be H x W images of the same size, got "
                         f"{pred.shape} and {reference.shape}")
    if not min_depth > 0 or not max_depth > min_depth:
        raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth} and {max_depth}")
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(pred) & np.isfinite(reference) & (reference >= min_depth) & (reference <= max_depth)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != pred.shape:
            raise ValueError(f"mask must have the prediction's shape {pred.shape}, got {mask.shape}")
        ok &= mask.astype(bool)
    return ok


def _wls(x: np.ndarray, y: np.ndarray, w: Optional[np.ndarray] = None) -> Tuple[float, float]:
    """Weighted least squares of ``y ~ s x + t`` (closed form, centred for conditioning)."""
    if w is None:
        w = np.ones_like(x)
    sw = w.sum()
    if sw <= 0:
        return float("nan"), float("nan")
    mx, my = (w * x).sum() / sw, (w * y).sum() / sw
    dx = x - mx
    var = (w * dx * dx).sum()
    if var <= 0:
        return float("nan"), float("nan")
    s = (w * dx * (y - my)).sum() / var
    return float(s), float(my - s * mx)


def _lmeds_start(x: np.ndarray, y: np.ndarray, trials: int, rng: np.random.Generator) -> Tuple[float, float]:
    """Two-point fit with the smallest median absolute residual (least median of squares)."""
    n = x.size
    i = rng.integers(0, n, size=trials)
    j = rng.integers(0, n, size=trials)
    dx = x[i] - x[j]
    good = np.abs(dx) > 1e-12 * max(1.0, float(np.abs(x).max()))
    s = (y[i][good] - y[j][good]) / dx[good]
    t = y[i][good] - s * x[i][good]
    cand_s = np.concatenate([s, [_wls(x, y)[0]]])
    cand_t = np.concatenate([t, [_wls(x, y)[1]]])
    ok = np.isfinite(cand_s) & np.isfinite(cand_t)
    cand_s, cand_t = cand_s[ok], cand_t[ok]
    if n > _LMEDS_SCORE_POINTS:  # the median of 2000 residuals ranks the candidates well enough
        pick = rng.choice(n, _LMEDS_SCORE_POINTS, replace=False)
        x, y, n = x[pick], y[pick], _LMEDS_SCORE_POINTS
    best, best_med = 0, math.inf
    chunk = max(1, 4_000_000 // max(n, 1))
    for a in range(0, cand_s.size, chunk):
        res = np.abs(y[None, :] - cand_s[a:a + chunk, None] * x[None, :] - cand_t[a:a + chunk, None])
        med = np.median(res, axis=1)
        k = int(np.argmin(med))
        if med[k] < best_med:
            best, best_med = a + k, float(med[k])
    return float(cand_s[best]), float(cand_t[best])


def _sigma(r: np.ndarray, floor: float) -> float:
    return max(_MAD_TO_SIGMA * float(np.median(np.abs(r))), floor)


def fit_scale_shift(pred: np.ndarray, reference: np.ndarray, *, space: str = "depth",
                    mask: Optional[np.ndarray] = None, min_depth: float = 1e-3, max_depth: float = math.inf,
                    method: str = "huber", max_samples: int = 20000, min_points: int = 20,
                    inlier_sigma: float = 3.0, max_iter: int = 20, trials: int = 200,
                    seed: int = 0) -> AlignResult:
    """Fit ``scale`` and ``shift`` of ``pred`` (H x W affine-invariant prediction) to ``reference``
    (H x W metric depth in metres, NaN / 0 / out-of-range where unknown); see the module docstring.

    Raises ValueError for bad arguments (shapes, space, method); a fit that is not usable is returned
    with ``ok=False`` and a reason.
    """
    _check_space(space)
    if method not in METHODS:
        raise ValueError(f"alignment method must be one of {', '.join(METHODS)}, got '{method}'")
    if int(min_points) < 2:
        raise ValueError(f"min_points must be >= 2 (two parameters are fitted), got {min_points}")
    if int(max_samples) < int(min_points):
        raise ValueError(f"max_samples ({max_samples}) must be >= min_points ({min_points})")
    if not inlier_sigma > 0:
        raise ValueError(f"inlier_sigma must be > 0, got {inlier_sigma}")
    pred = np.asarray(pred)
    reference = np.asarray(reference)
    ok = valid_reference_mask(pred, reference, min_depth, max_depth, mask)
    idx = np.flatnonzero(ok)
    n_valid = int(idx.size)
    nan = float("nan")
    if n_valid < min_points:
        return AlignResult(False, nan, nan, space, n_valid, 0, 0, nan, "too_few_points",
                           f"only {n_valid} valid reference pixels (finite, within [{min_depth:g}, "
                           f"{max_depth:g}] m), need at least {min_points}")
    rng = np.random.default_rng(seed)
    if n_valid > max_samples:
        idx = np.sort(rng.choice(idx, size=int(max_samples), replace=False))
    x = pred.reshape(-1)[idx].astype(np.float64)
    ref = reference.reshape(-1)[idx].astype(np.float64)
    y = ref if space == "depth" else 1.0 / ref
    n_used = int(x.size)
    spread = float(x.max() - x.min())
    if not spread > 1e-9 * max(1.0, float(np.abs(x).max())):
        return AlignResult(False, nan, nan, space, n_valid, n_used, 0, nan, "degenerate",
                           "the prediction is constant over the valid reference pixels; its scale cannot be fitted")
    floor = 1e-12 * max(1.0, float(np.abs(y).max()))

    if method == "lstsq":
        s, t = _wls(x, y)
        r = y - (s * x + t)
        keep = np.ones(n_used, bool)
    else:
        s, t = _lmeds_start(x, y, int(trials), rng)
        for _ in range(int(max_iter)):
            r = y - (s * x + t)
            sigma = _sigma(r, floor)
            if sigma <= floor:
                break
            a = np.abs(r)
            w = np.where(a <= _HUBER_K * sigma, 1.0, _HUBER_K * sigma / np.maximum(a, floor))
            s_new, t_new = _wls(x, y, w)
            if not (math.isfinite(s_new) and math.isfinite(t_new)):
                break
            done = abs(s_new - s) <= 1e-9 * max(abs(s), floor) and abs(t_new - t) <= 1e-9 * max(abs(t), abs(s), floor)
            s, t = s_new, t_new
            if done:
                break
        r = y - (s * x + t)
        sigma = _sigma(r, floor)
        keep = np.abs(r) <= max(inlier_sigma * sigma, 1e-9 * max(1.0, float(np.abs(y).max())))
        if int(keep.sum()) >= min_points:
            s, t = _wls(x[keep], y[keep])
            r = y - (s * x + t)
    n_in = int(keep.sum())
    resid = _sigma(r[keep], 0.0) if n_in else nan
    if n_in < min_points or not (math.isfinite(s) and math.isfinite(t)):
        return AlignResult(False, s, t, space, n_valid, n_used, n_in, resid, "too_few_inliers",
                           f"only {n_in} of {n_used} reference pixels agree with the fit, need at least {min_points}")
    if s <= 0:
        return AlignResult(False, s, t, space, n_valid, n_used, n_in, resid, "nonpositive_scale",
                           f"fitted scale {s:.4g} <= 0: the prediction does not increase with the reference "
                           f"{'depth' if space == 'depth' else 'inverse depth'}")
    return AlignResult(True, s, t, space, n_valid, n_used, n_in, resid)


def apply_scale_shift(pred: np.ndarray, scale: float, shift: float, space: str = "depth") -> np.ndarray:
    """float32 metric depth ``scale * p + shift`` (depth space) or ``1 / (scale * p + shift)`` (disparity
    space); NaN where the result is not a positive finite depth (invalid, as everywhere in depth_ros)."""
    _check_space(space)
    v = np.asarray(pred, dtype=np.float64) * float(scale) + float(shift)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        depth = v if space == "depth" else 1.0 / v
        depth = np.where(np.isfinite(depth) & (depth > 0) & (v > 0), depth, np.nan)
    return depth.astype(np.float32)


class ScaleShiftSmoother:
    """Smooths fitted ``(scale, shift)`` over the frames of one camera (keep one instance per camera).

    mode: ``"ema"`` (``log_scale <- (1 - alpha) log_scale + alpha log(scale)``, the same for ``shift``),
    ``"median"`` (median of the last ``window`` values of ``log(scale)`` and of ``shift``) or ``"none"``.
    The first update returns its input. Scale is smoothed in log space because it is a ratio (a frame at
    twice the scale and one at half average to 1). Feed only accepted fits (``AlignResult.ok``).
    """

    MODES = ("none", "ema", "median")

    def __init__(self, mode: str = "ema", alpha: float = 0.2, window: int = 5):
        if mode not in self.MODES:
            raise ValueError(f"smoothing mode must be one of {', '.join(self.MODES)}, got '{mode}'")
        if not 0.0 < float(alpha) <= 1.0:
            raise ValueError(f"smoothing alpha must be in (0, 1], got {alpha}")
        if int(window) < 1:
            raise ValueError(f"smoothing window must be >= 1, got {window}")
        self.mode = mode
        self.alpha = float(alpha)
        self.window = int(window)
        self._state: Optional[Tuple[float, float]] = None
        self._hist: Deque[Tuple[float, float]] = collections.deque(maxlen=self.window)

    def reset(self) -> None:
        self._state = None
        self._hist.clear()

    @property
    def value(self) -> Optional[Tuple[float, float]]:
        """The current smoothed ``(scale, shift)``, or None before the first update."""
        if self._state is None:
            return None
        return math.exp(self._state[0]), self._state[1]

    def update(self, scale: float, shift: float) -> Tuple[float, float]:
        """Add one frame's fit; return the smoothed ``(scale, shift)``."""
        if not (math.isfinite(scale) and scale > 0 and math.isfinite(shift)):
            raise ValueError(f"smoother needs a finite scale > 0 and a finite shift, got {scale}, {shift}")
        ls = math.log(scale)
        if self.mode == "none" or self._state is None:
            self._state = (ls, float(shift))
        elif self.mode == "ema":
            a = self.alpha
            self._state = ((1 - a) * self._state[0] + a * ls, (1 - a) * self._state[1] + a * float(shift))
        if self.mode == "median":
            self._hist.append((ls, float(shift)))
            arr = np.asarray(self._hist)
            self._state = (float(np.median(arr[:, 0])), float(np.median(arr[:, 1])))
        return self.value  # type: ignore[return-value]

    def smooth(self, result: AlignResult) -> AlignResult:
        """``result`` with its scale and shift replaced by the smoothed values (rejected fits pass through
        unchanged and do not update the state)."""
        if not result.ok:
            return result
        s, t = self.update(result.scale, result.shift)
        return replace(result, scale=s, shift=t)
