"""False-colour pictures of depth and confidence maps (RGB uint8), ROS-free.

``colorize_depth`` maps depth linearly between ``min_depth`` and ``max_depth`` onto a
perceptual colormap with **near = warm** (turbo: near red, far blue); ``colorbar``
draws the matching legend with metre labels for side-by-side figures.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence, Tuple

import numpy as np

__all__ = ["COLORMAPS", "colorize_depth", "colorize_confidence", "colorbar", "depth_range"]

#: cmap name -> OpenCV constant name (``"gray"`` is handled without OpenCV).
COLORMAPS = {
    "turbo": "COLORMAP_TURBO",
    "inferno": "COLORMAP_INFERNO",
    "magma": "COLORMAP_MAGMA",
    "plasma": "COLORMAP_PLASMA",
    "viridis": "COLORMAP_VIRIDIS",
    "jet": "COLORMAP_JET",
    "gray": None,
}


@functools.lru_cache(maxsize=16)
def _lut(cmap: str) -> np.ndarray:
    """256 x 1 x 3 uint8 RGB lookup table of a colormap (read-only, cached)."""
    if cmap not in COLORMAPS:
        raise ValueError("unknown colormap %r (choose from %s)" % (cmap, ", ".join(sorted(COLORMAPS))))
    ramp = np.arange(256, dtype=np.uint8).reshape(256, 1)
    if COLORMAPS[cmap] is None:
        lut = np.repeat(ramp[:, :, None], 3, axis=2)
    else:
        import cv2
        bgr = cv2.applyColorMap(ramp, getattr(cv2, COLORMAPS[cmap]))  # 256 x 1 x 3, BGR
        lut = np.ascontiguousarray(bgr[:, :, ::-1])
    lut.flags.writeable = False
    return lut


def depth_range(depth, lo_pct: float = 2.0, hi_pct: float = 98.0) -> Tuple[float, float]:
    """Robust ``(min, max)`` of the valid (finite, > 0) depths: the given percentiles.

    Large images are subsampled to about 65k pixels (the percentiles barely change).
    """
    d = np.asarray(depth, dtype=np.float32).reshape(-1)
    if d.size > 65536:
        d = d[:: d.size // 65536]
    with np.errstate(invalid="ignore"):
        vals = d[np.isfinite(d) & (d > 0)]
    if vals.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(vals, [lo_pct, hi_pct])
    lo, hi = float(lo), float(hi)
    if not hi > lo:
        hi = lo + max(1e-3, abs(lo) * 1e-3)
    return lo, hi


def _apply(values: np.ndarray, valid: np.ndarray, zero_at: float, scale: float, cmap: str,
           invalid_color) -> np.ndarray:
    """Colour ``(values - zero_at) * scale`` (0..255 after clipping) through ``cmap``'s LUT."""
    import cv2
    with np.errstate(invalid="ignore", over="ignore"):
        t = (values - np.float32(zero_at)) * np.float32(scale)
        np.clip(t, 0, 255, out=t)
    t[~valid] = 0
    t += np.float32(0.5)
    idx = t.astype(np.uint8)
    out = cv2.applyColorMap(idx, _lut(cmap))  # user LUT: RGB in, RGB out
    if not valid.all():
        out[~valid] = np.asarray(invalid_color, dtype=np.uint8)
    return out


def colorize_depth(depth, min_depth: Optional[float] = None, max_depth: Optional[float] = None,
                   cmap: str = "turbo", invalid_color: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """``H x W`` depth (m) -> ``H x W x 3`` uint8 RGB, near = warm end of ``cmap``.

    Missing bounds come from the 2nd / 98th percentile of the valid depths (robust to
    outliers).  Depth outside the range saturates; NaN / inf / ``<= 0`` pixels get
    ``invalid_color``.
    """
    d = np.asarray(depth, dtype=np.float32)
    if d.ndim == 3 and d.shape[2] == 1:
        d = d[:, :, 0]
    if d.ndim != 2:
        raise ValueError("depth must be H x W, got shape %s" % (d.shape,))
    if min_depth is None or max_depth is None:
        lo, hi = depth_range(d)
        min_depth = lo if min_depth is None else min_depth
        max_depth = hi if max_depth is None else max_depth
    lo, hi = float(min_depth), float(max_depth)
    if not hi > lo:
        hi = lo + 1e-6
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(d) & (d > 0)
    # near (lo) -> 255 -> warm end of turbo/inferno; far (hi) -> 0
    return _apply(d, valid, hi, -255.0 / (hi - lo), cmap, invalid_color)


def colorize_confidence(conf, min_conf: Optional[float] = None, max_conf: Optional[float] = None,
                        cmap: str = "inferno", invalid_color: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """``H x W`` confidence -> ``H x W x 3`` uint8 RGB, high confidence = bright/warm.

    Default range: ``[0, 1]`` when all finite values lie in it, else their min/max.
    """
    c = np.asarray(conf, dtype=np.float32)
    if c.ndim == 3 and c.shape[2] == 1:
        c = c[:, :, 0]
    if c.ndim != 2:
        raise ValueError("confidence must be H x W, got shape %s" % (c.shape,))
    valid = np.isfinite(c)
    if min_conf is None or max_conf is None:
        vals = c[valid]
        if vals.size and (vals.min() < 0 or vals.max() > 1):
            lo, hi = float(vals.min()), float(vals.max())
        else:
            lo, hi = 0.0, 1.0
        min_conf = lo if min_conf is None else min_conf
        max_conf = hi if max_conf is None else max_conf
    lo, hi = float(min_conf), float(max_conf)
    if not hi > lo:
        hi = lo + 1e-6
    return _apply(c, valid, lo, 255.0 / (hi - lo), cmap, invalid_color)


def colorbar_labels(min_depth: float, max_depth: float, n_ticks: int = 5, unit: str = "m") -> list:
    """Tick labels of :func:`colorbar`, far (top) to near (bottom), with enough decimals that
    neighbouring labels differ (one digit below the tick spacing)."""
    lo, hi = float(min_depth), float(max_depth)
    n_ticks = max(2, int(n_ticks))
    span = hi - lo
    step = abs(span) / (n_ticks - 1)
    if step >= 2.5:
        decimals = 0
    elif step > 0:
        decimals = min(6, max(1, int(np.ceil(-np.log10(step))) + 1))
    else:
        decimals = 2
    return ["%.*f %s" % (decimals, hi - i / (n_ticks - 1) * span, unit) for i in range(n_ticks)]


def colorbar(height: int, min_depth: float, max_depth: float, width: int = 80, cmap: str = "turbo",
             n_ticks: int = 5, unit: str = "m", background: Sequence[int] = (0, 0, 0),
             text_color: Sequence[int] = (255, 255, 255)) -> np.ndarray:
    """Vertical legend for :func:`colorize_depth`: ``height x width x 3`` uint8 RGB.

    Far (``max_depth``) at the top, near (``min_depth``, warm) at the bottom; a colour
    strip on the left and ``n_ticks`` labels (e.g. ``"2.5 m"``) on the right.
    """
    import cv2
    height, width = int(height), int(width)
    if height < 8 or width < 16:
        raise ValueError("colorbar needs at least 8 x 16 pixels, got %d x %d" % (height, width))
    lo, hi = float(min_depth), float(max_depth)
    img = np.empty((height, width, 3), np.uint8)
    img[:] = np.asarray(background, np.uint8)
    margin = max(4, height // 40)
    bar_w = max(6, width // 4)
    top, bottom = margin, height - margin - 1
    rows = np.arange(top, bottom + 1)
    t = (rows - top) / max(1, bottom - top)  # 0 at the top (far) -> 1 at the bottom (near)
    lut = _lut(cmap)[:, 0, :]
    img[top:bottom + 1, 2:2 + bar_w] = lut[np.rint(t * 255).astype(np.int64)][:, None, :]
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = max(0.3, min(0.5, height / 600.0))
    color = tuple(int(v) for v in text_color)
    labels = colorbar_labels(lo, hi, n_ticks, unit)
    n_ticks = len(labels)
    for i, label in enumerate(labels):
        frac = i / (n_ticks - 1)
        y = int(round(top + frac * (bottom - top)))
        cv2.line(img, (2 + bar_w, y), (2 + bar_w + 3, y), color, 1)
        (_tw, th), _base = cv2.getTextSize(label, font, scale, 1)
        ty = min(max(y + th // 2, th + 1), height - 2)
        cv2.putText(img, label, (bar_w + 8, ty), font, scale, color, 1, cv2.LINE_AA)
    return img
