"""Per-pixel depth confidence, ROS-free and NumPy-only: edge (flying-pixel) confidence for any model,
flip-consistency confidence, the rule that combines them, and the threshold helpers.

Meaning: a confidence is a number in [0, 1] per pixel, higher = more certain; 0 wherever the depth is
invalid (NaN, +-inf, <= 0). No function here returns NaN.

Both confidences are built on one measure, the *symmetric relative difference* of two depths

    s(a, b) = 2 |a - b| / (a + b)            (0 <= s < 2)

which does not change when both depths are scaled (metric scale, focal length) or both are inverted
(``s(1/a, 1/b) == s(a, b)``), so it reads the same on depth and on inverse depth (disparity).

Edge confidence (:func:`edge_confidence`, every model). Networks smooth depth across discontinuities,
so pixels on an object's silhouette get depths between the foreground and the background: back-projected,
they hang in the air ("flying pixels", phantom obstacles in a costmap). Such a pixel sits in a window whose
depths spread widely. With ``r = s(max, min)`` over the valid depths of the ``window x window``
neighbourhood (3 x 3 by default):

    c_edge = 1 / (1 + (r / EDGE_R_HALF) ** EDGE_SHARPNESS)

a soft threshold that is 0.5 at ``r = EDGE_R_HALF``. ``min_confidence = 0.5`` (``DEFAULT_MIN_CONFIDENCE``)
thus drops the pixels whose 3 x 3 window spans more than 9 % of relative depth.

A plane is not marked unless it is seen at a grazing angle: on a plane the relative depth change per pixel
is about ``tan(theta) / f`` (theta the angle between the viewing ray and the surface normal, f the focal
length in pixels), so the 3 x 3 range is ``r ~ 2 tan(theta) / f``. With the defaults a plane keeps
c_edge >= 0.94 up to theta = 79 deg and >= 0.5 up to 84 deg at f = 228 px (320 px wide, 70 deg FOV), and
up to 85 / 87.5 deg at f = 500 px. The defaults (3 x 3, r_half 0.09, threshold 0.5) are measured with
``bench/bench_confidence.py`` (rendered scenes, stand-in networks that blur inverse depth across edges):
flying pixels -99 % / -91 % for a 1 px / 2 px blur while 3.4 % / 2.0 % of the correct pixels are dropped,
almost all on the street's road and facades seen at grazing angles.

Flip confidence (:func:`flip_confidence`, a model that runs the image and its mirror): with ``r = s(d, d')``
of the two predictions of one pixel (the mirror's un-mirrored),

    c_flip = exp(-r / FLIP_TAU),   FLIP_TAU = FLIP_R_HALF / ln 2 (0.144)

0.5 at a 10 % disagreement (then at least one of the two is >= 5 % off the truth, the size of a good
monocular metric model's typical relative error), 0.18 at 25 % (the delta_1 band of depth benchmarks).

Combination (:func:`combine`): ``product`` (default; the two are treated as independent chances that the
pixel is right, so a pixel doubtful for both reasons drops lower) or ``min`` (the weakest evidence wins).

The torch twins of these functions (same numbers, for a depth still on the GPU) are in
``depth_ros.models.confidence``.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np

__all__ = [
    "COMBINE_RULES", "DEFAULT_MIN_CONFIDENCE", "EDGE_R_HALF", "EDGE_SHARPNESS", "EDGE_WINDOW", "FLIP_R_HALF",
    "FLIP_TAU", "combine", "edge_confidence", "flip_confidence", "fraction_below", "keep_mask",
    "integer_power", "is_small_integer", "local_relative_range", "relative_difference", "soft_threshold", "valid_depth",
]

#: Window (pixels, odd) of :func:`edge_confidence`.
EDGE_WINDOW = 3
#: Relative depth range ``s(max, min)`` of the window at which the edge confidence is 0.5.
EDGE_R_HALF = 0.09
#: Exponent of the soft threshold (larger = closer to a hard step at ``EDGE_R_HALF``).
EDGE_SHARPNESS = 4.0
#: Relative disagreement of the two flip predictions at which the flip confidence is 0.5.
FLIP_R_HALF = 0.1
#: Scale of the flip confidence ``exp(-r / FLIP_TAU)``.
FLIP_TAU = FLIP_R_HALF / math.log(2.0)
#: Recommended ``min_confidence``: the edge confidence's midpoint (``r = EDGE_R_HALF``).
DEFAULT_MIN_CONFIDENCE = 0.5
#: Rules of :func:`combine`.
COMBINE_RULES = ("product", "min")


def _as_2d(name: str, a) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be an H x W array, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    return arr


def _check_window(window: int) -> int:
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1 or window % 2 == 0:
        raise ValueError(f"window must be an odd positive integer (3 = 3 x 3), got {window!r}")
    return int(window)


def _check_positive(name: str, value: float) -> float:
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return v


def valid_depth(depth) -> np.ndarray:
    """Boolean H x W mask of usable depth: finite and > 0."""
    d = np.asarray(depth)
    with np.errstate(invalid="ignore"):
        return np.isfinite(d) & (d > 0)


def relative_difference(a, b) -> np.ndarray:
    """``s(a, b) = 2 |a - b| / (a + b)`` elementwise, float32; 0 where ``a + b`` is 0.

    ``a`` and ``b`` are positive depths (or positive inverse depths: the value is the same).
    """
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    total = a + b
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.float32(2.0) * np.abs(a - b) / total
    return np.where(total > 0, r, np.float32(0.0)).astype(np.float32, copy=False)


def _filter(a: np.ndarray, window: int, op) -> np.ndarray:
    """Separable ``window x window`` max/min filter (``op`` = np.maximum / np.minimum), in place on ``a``
    (returned); the outside of the image is ignored (each output is over the in-image part of its window)."""
    k = window // 2
    for axis in (1, 0):
        if k == 0:
            break
        src = a.copy()
        n = a.shape[axis]
        for s in range(1, min(k, n - 1) + 1):
            if axis == 1:
                op(a[:, s:], src[:, :-s], out=a[:, s:])
                op(a[:, :-s], src[:, s:], out=a[:, :-s])
            else:
                op(a[s:], src[:-s], out=a[s:])
                op(a[:-s], src[s:], out=a[:-s])
    return a


def local_relative_range(depth, window: int = EDGE_WINDOW) -> Tuple[np.ndarray, np.ndarray]:
    """``(r, valid)``: ``r = s(max, min)`` of the valid depths in each pixel's ``window x window``
    neighbourhood (invalid neighbours and the outside of the image are ignored), float32, 0 where the
    pixel itself is invalid; ``valid`` is :func:`valid_depth`."""
    d = _as_2d("depth", depth).astype(np.float32, copy=False)
    window = _check_window(window)
    valid = valid_depth(d)
    hi = _filter(np.where(valid, d, np.float32(-np.inf)), window, np.maximum)
    lo = _filter(np.where(valid, d, np.float32(np.inf)), window, np.minimum)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        den = hi + lo
        np.subtract(hi, lo, out=hi)
        hi *= np.float32(2.0)
        hi /= den
    return np.where(valid, hi, np.float32(0.0)), valid


def integer_power(t, n: int):
    """``t ** n`` for an integer 1 <= n by repeated squaring, with ``*`` only, so that numpy arrays and torch
    tensors go through the same operations (several times faster than ``np.power`` on float32)."""
    base, out = t, None
    while n:
        if n & 1:
            out = base if out is None else out * base
        n >>= 1
        if n:
            base = base * base
    return out


def is_small_integer(k: float) -> bool:
    """Exponents that ``integer_power`` takes (1..16)."""
    return float(k).is_integer() and 1 <= k <= 16


def _power(t: np.ndarray, k: float) -> np.ndarray:
    """``t ** k``; an integer ``k`` by ``integer_power`` (the same operations as the torch twin)."""
    return integer_power(t, int(k)) if is_small_integer(k) else np.power(t, np.float32(k))


def soft_threshold(r, r_half: float, sharpness: float = EDGE_SHARPNESS) -> np.ndarray:
    """``1 / (1 + (r / r_half) ** sharpness)`` for ``r >= 0``, float32: 1 at 0, 0.5 at ``r_half``, -> 0."""
    r_half = _check_positive("r_half", r_half)
    sharpness = _check_positive("sharpness", sharpness)
    t = np.asarray(r, dtype=np.float32) / np.float32(r_half)
    p = _power(t, sharpness)
    p += np.float32(1.0)
    return np.reciprocal(p, out=p).astype(np.float32, copy=False)


def edge_confidence(depth, window: int = EDGE_WINDOW, r_half: float = EDGE_R_HALF,
                    sharpness: float = EDGE_SHARPNESS) -> np.ndarray:
    """Flying-pixel confidence of a depth image (module docstring): H x W float32 in [0, 1], 0 where the
    depth is invalid. ``depth``: H x W metres (any positive scale; NaN/inf/<= 0 = no depth)."""
    r, valid = local_relative_range(depth, window)
    return np.where(valid, soft_threshold(r, r_half, sharpness), np.float32(0.0)).astype(np.float32, copy=False)


def flip_confidence(depth, depth_mirror, r_half: float = FLIP_R_HALF) -> np.ndarray:
    """Flip-consistency confidence ``exp(-ln2 * s(d, d') / r_half)`` (module docstring) of two predictions of
    the same pixels (``depth_mirror``: the mirror image's prediction, mirrored back). H x W float32 in
    [0, 1]; 0 where either depth is invalid."""
    d = _as_2d("depth", depth)
    m = _as_2d("depth_mirror", depth_mirror)
    if d.shape != m.shape:
        raise ValueError(f"depth {d.shape} and depth_mirror {m.shape} differ in shape")
    tau = _check_positive("r_half", r_half) / math.log(2.0)
    valid = valid_depth(d) & valid_depth(m)
    r = relative_difference(np.where(valid, d, 1.0), np.where(valid, m, 1.0))
    c = np.exp(-r / np.float32(tau))
    return np.where(valid, c, np.float32(0.0)).astype(np.float32, copy=False)


def _clean_conf(name: str, c) -> np.ndarray:
    c = _as_2d(name, c).astype(np.float32, copy=False)
    return np.clip(np.nan_to_num(c, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)


def combine(model_conf: Optional[np.ndarray], edge_conf: Optional[np.ndarray],
            rule: str = "product") -> Optional[np.ndarray]:
    """The published confidence: ``model_conf * edge_conf`` (``rule="product"``) or their minimum
    (``"min"``), H x W float32 in [0, 1]. Either may be None (then the other is returned, cleaned:
    NaN -> 0, clipped to [0, 1]); both None -> None."""
    if rule not in COMBINE_RULES:
        raise ValueError(f"unknown confidence combination rule '{rule}'; use one of {', '.join(COMBINE_RULES)}")
    if model_conf is None and edge_conf is None:
        return None
    if model_conf is None:
        return _clean_conf("edge_conf", edge_conf)
    if edge_conf is None:
        return _clean_conf("model_conf", model_conf)
    a = _clean_conf("model_conf", model_conf)
    b = _clean_conf("edge_conf", edge_conf)
    if a.shape != b.shape:
        raise ValueError(f"model_conf {a.shape} and edge_conf {b.shape} differ in shape")
    return a * b if rule == "product" else np.minimum(a, b)


def _check_threshold(min_confidence: float) -> float:
    t = float(min_confidence)
    if not (0.0 <= t <= 1.0):
        raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence!r}")
    return t


def keep_mask(confidence, min_confidence: float) -> np.ndarray:
    """Boolean H x W: pixels to keep at this threshold (``confidence >= min_confidence``; NaN is dropped
    unless ``min_confidence`` is 0, which keeps everything)."""
    t = _check_threshold(min_confidence)
    c = _as_2d("confidence", confidence)
    if t == 0.0:
        return np.ones(c.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        return c >= t


def fraction_below(confidence, min_confidence: float, valid: Optional[np.ndarray] = None) -> float:
    """Fraction of pixels (of those where ``valid`` is True, default all) whose confidence is below
    ``min_confidence`` (NaN counts as below), for diagnostics; 0.0 when there is no pixel."""
    t = _check_threshold(min_confidence)
    c = _as_2d("confidence", confidence)
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != c.shape:
            raise ValueError(f"valid {valid.shape} and confidence {c.shape} differ in shape")
        c = c[valid]
    if c.size == 0:
        return 0.0
    return float(np.count_nonzero(~keep_mask(c.reshape(1, -1), t))) / float(c.size)
