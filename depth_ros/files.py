"""Files the CLI and the demo write: side-by-side pictures, PNG/NPY depth, PLY clouds, depth metrics."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence

import numpy as np

from depth_ros.core.colormap import colorbar, colorize_confidence, colorize_depth, depth_range
from depth_ros.core.encodings import depth_to_mm16

RANDOM_WEIGHTS_NOTE = "random weights: not a depth result"
MARKER_FILE = "RANDOM_WEIGHTS_NOT_A_DEPTH_RESULT.txt"


def _cv2():
    import cv2
    return cv2


def write_rgb_png(path, rgb: np.ndarray) -> None:
    cv2 = _cv2()
    if not cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write '{path}'")


def write_depth_png(path, depth_m: np.ndarray) -> None:
    """16-bit PNG in millimetres, REP 118 16UC1 convention (0 = invalid, also beyond 65.535 m)."""
    if not _cv2().imwrite(str(path), depth_to_mm16(depth_m)):
        raise OSError(f"cannot write '{path}'")


def confidence_u8(conf: np.ndarray) -> np.ndarray:
    """Confidence as 8-bit grey: [0, 1] -> 0..255 (min/max stretched when outside [0, 1])."""
    c = np.asarray(conf, np.float32)
    finite = np.isfinite(c)
    if finite.any() and (c[finite].min() < 0 or c[finite].max() > 1):
        lo, hi = float(c[finite].min()), float(c[finite].max())
        c = (c - lo) / max(hi - lo, 1e-12)
    out = np.clip(np.nan_to_num(c, nan=0.0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out


def write_confidence_png(path, conf: np.ndarray) -> None:
    if not _cv2().imwrite(str(path), confidence_u8(conf)):
        raise OSError(f"cannot write '{path}'")


def _label(img: np.ndarray, text: str, org, scale: float = 0.45, color=(255, 255, 255), thick: int = 1) -> None:
    cv2 = _cv2()
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)


def side_by_side(rgb: np.ndarray, depth: np.ndarray, confidence: Optional[np.ndarray] = None,
                 min_depth: Optional[float] = None, max_depth: Optional[float] = None,
                 caption: str = "", random_weights: bool = False,
                 extra: Sequence[tuple] = ()) -> np.ndarray:
    """``input | depth | confidence | colour bar (m)`` as one RGB picture, with titles and a caption.

    ``extra`` adds more ``(title, H x W x 3 rgb)`` panels before the colour bar (e.g. ground truth).
    With ``random_weights`` a red banner says the depth is not a result.
    """
    cv2 = _cv2()
    h, w = depth.shape[:2]
    if rgb.shape[:2] != (h, w):
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
    if min_depth is None or max_depth is None:
        lo, hi = depth_range(depth)
        min_depth = lo if min_depth is None else min_depth
        max_depth = hi if max_depth is None else max_depth
    panels = [("input", rgb), ("depth", colorize_depth(depth, min_depth, max_depth))]
    if confidence is not None:
        panels.append(("confidence", colorize_confidence(confidence)))
    else:
        blank = np.full((h, w, 3), 40, np.uint8)
        _label(blank, "no confidence", (8, h // 2), 0.5)
        panels.append(("confidence", blank))
    panels.extend(extra)
    title_h = 22
    bar = colorbar(h, min_depth, max_depth, width=max(70, min(110, h // 3)))
    cols = []
    for title, img in panels:
        if img.shape[:2] != (h, w):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_NEAREST)
        col = np.zeros((h + title_h, w, 3), np.uint8)
        col[title_h:] = img
        _label(col, title, (6, 16), 0.5)
        cols.append(col)
    bar_col = np.zeros((h + title_h, bar.shape[1], 3), np.uint8)
    bar_col[title_h:] = bar
    _label(bar_col, "metres", (4, 16), 0.45)
    cols.append(bar_col)
    sep = np.full((h + title_h, 2, 3), 255, np.uint8)
    body = cols[0]
    for c in cols[1:]:
        body = np.concatenate([body, sep, c], axis=1)
    rows = [body]
    if random_weights:
        banner = np.zeros((24, body.shape[1], 3), np.uint8)
        banner[:] = (170, 0, 0)
        _label(banner, "RANDOM WEIGHTS: NOT A DEPTH RESULT", (8, 17), 0.55)
        rows.insert(0, banner)
    if caption:
        cap = np.full((22, body.shape[1], 3), 25, np.uint8)
        _label(cap, caption[: max(10, body.shape[1] // 7)], (6, 16), 0.42)
        rows.append(cap)
    return np.concatenate(rows, axis=0)


def write_ply(path, points: np.ndarray, colors: Optional[np.ndarray] = None,
              comments: Iterable[str] = ()) -> int:
    """Write the finite points (N x 3 or H x W x 3, metres) with optional uint8 RGB as a binary PLY (open3d).

    ``comments`` become PLY header comments. Returns the number of points written.
    """
    import open3d as o3d

    pts = np.asarray(points, np.float64).reshape(-1, 3)
    ok = np.isfinite(pts).all(axis=1)
    pcd = o3d.geometry.PointCloud()
    pcd.points = o3d.utility.Vector3dVector(pts[ok])
    if colors is not None:
        col = np.asarray(colors).reshape(-1, 3)[ok]
        pcd.colors = o3d.utility.Vector3dVector(col.astype(np.float64) / 255.0)
    path = Path(path)
    if not o3d.io.write_point_cloud(str(path), pcd, write_ascii=False, compressed=False, print_progress=False):
        raise OSError(f"cannot write '{path}'")
    comments = [c.replace("\n", " ").replace("\r", " ") for c in comments]
    if comments:
        data = path.read_bytes()
        end = data.find(b"end_header\n")
        head, rest = data[:end], data[end:]
        lines = head.split(b"\n")
        # after 'ply' and 'format ...'
        lines[2:2] = [b"comment " + c.encode("ascii", "replace") for c in comments]
        path.write_bytes(b"\n".join(lines) + rest)
    return int(ok.sum())


def depth_metrics(pred: np.ndarray, gt: np.ndarray, max_depth: float = 80.0, min_depth: float = 1e-3) -> Dict:
    """Standard monocular-depth metrics over pixels with valid ground truth and prediction.

    abs_rel = mean(|p - g| / g); delta1 = fraction with max(p/g, g/p) < 1.25; rmse in metres;
    coverage = fraction of valid-GT pixels that have a valid prediction.
    """
    p = np.asarray(pred, np.float64)
    g = np.asarray(gt, np.float64)
    if p.shape != g.shape:
        cv2 = _cv2()
        g = cv2.resize(g, (p.shape[1], p.shape[0]), interpolation=cv2.INTER_NEAREST)
    with np.errstate(invalid="ignore"):
        gt_ok = np.isfinite(g) & (g > min_depth) & (g <= max_depth)
        ok = gt_ok & np.isfinite(p) & (p > 0)
    n = int(ok.sum())
    if n == 0:
        return {"abs_rel": None, "delta1": None, "rmse": None, "pixels": 0,
                "coverage": 0.0 if gt_ok.any() else None}
    pp, gg = p[ok], g[ok]
    ratio = np.maximum(pp / gg, gg / pp)
    return {"abs_rel": float(np.mean(np.abs(pp - gg) / gg)), "delta1": float(np.mean(ratio < 1.25)),
            "rmse": float(np.sqrt(np.mean((pp - gg) ** 2))), "pixels": n,
            "coverage": float(n / max(1, int(gt_ok.sum())))}


def write_marker(out_dir, text: str = "") -> Path:
    path = Path(out_dir) / MARKER_FILE
    path.write_text("These outputs were computed with RANDOM network weights: they are not a depth result.\n"
                    + (text + "\n" if text else ""))
    return path
