"""Pinhole camera intrinsics, ROS-free.

Conventions (ROS / OpenCV): pixel ``(u, v)`` has its centre at integer coordinates, so a
perfectly centred principal point is at ``((W - 1) / 2, (H - 1) / 2)``; that is the
default of :meth:`PinholeCamera.from_hfov` / :meth:`PinholeCamera.from_focal`.
``hfov = 2 * atan(W / (2 fx))`` (the same formula image_geometry uses for its FOV and
Depth Pro for its focal estimate), so ``from_hfov(...).hfov_deg`` round-trips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

__all__ = ["CameraInfoError", "PinholeCamera", "camera_from_info", "focal_from_hfov", "hfov_from_focal",
           "MIN_FOV_DEG", "MAX_FOV_DEG", "PRINCIPAL_POINT_MARGIN"]


def focal_from_hfov(width: float, hfov_deg: float) -> float:
    """Focal length (pixels) of an image ``width`` pixels wide with horizontal FOV ``hfov_deg``:
    ``f = 0.5 W / tan(hfov / 2)``. The one FOV -> focal formula of depth_ros."""
    return 0.5 * float(width) / math.tan(math.radians(float(hfov_deg)) / 2.0)


def hfov_from_focal(width: float, f_px: float) -> float:
    """Horizontal FOV (degrees) of focal length ``f_px``: ``2 atan(W / (2 f))``; inverse of
    :func:`focal_from_hfov`."""
    return math.degrees(2.0 * math.atan(0.5 * float(width) / float(f_px)))


class CameraInfoError(ValueError):
    """Raised for malformed or unusable camera calibration."""


#: Narrowest field of view (degrees, horizontal and vertical) accepted. Long telephoto and
#: super-zoom cameras reach about 0.3-1 deg (3000 mm equivalent: 0.7 deg); 0.1 deg leaves a margin
#: and still refuses focal lengths in the wrong unit or garbage such as fx = 1e300.
MIN_FOV_DEG = 0.1
#: Widest field of view accepted. A rectilinear (pinhole) image cannot reach 180 deg, and a value
#: such as fx = 1e-300 rounds to exactly 180; 179.9 deg keeps every FOV the Depth Pro head can
#: output (clamped to 179 deg horizontally) valid for images up to 1:5 portrait, while bounding
#: the rays ``(u - cx) / fx`` (no overflow to inf in the point cloud).
MAX_FOV_DEG = 179.9
#: The principal point must lie within ``[-M W, (1 + M) W] x [-M H, (1 + M) H]`` of the full image.
PRINCIPAL_POINT_MARGIN = 1.0


def _check_intrinsics(width: int, height: int, fx: float, fy: float, cx: float, cy: float, src: str = "") -> None:
    """Raise CameraInfoError unless fx, fy, cx, cy are finite and physically meaningful for a
    ``width x height`` image (FOV in [MIN_FOV_DEG, MAX_FOV_DEG], principal point near the image).
    ``src`` prefixes the field names in the message (e.g. ``"CameraInfo P "``)."""
    for name, val in (("fx", fx), ("fy", fy), ("cx", cx), ("cy", cy)):
        if not math.isfinite(val):
            raise CameraInfoError("%s%s is not finite (%r)" % (src, name, val))
    for name, val, size, axis in (("fx", fx, width, "horizontal"), ("fy", fy, height, "vertical")):
        if val <= 0:
            raise CameraInfoError("%s%s must be > 0, got %g" % (src, name, val))
        fov = hfov_from_focal(size, val)
        if not (MIN_FOV_DEG <= fov <= MAX_FOV_DEG):
            raise CameraInfoError(
                "%s%s=%g gives a %s field of view of %.6g deg over %d px; expected %g..%g deg "
                "(focal length %s..%s px)"
                % (src, name, val, axis, fov, size, MIN_FOV_DEG, MAX_FOV_DEG,
                   "%.4g" % focal_from_hfov(size, MAX_FOV_DEG), "%.4g" % focal_from_hfov(size, MIN_FOV_DEG)))
    m = PRINCIPAL_POINT_MARGIN
    for name, val, size in (("cx", cx, width), ("cy", cy, height)):
        if not (-m * size <= val <= (1 + m) * size):
            raise CameraInfoError("%s%s=%g lies far outside the %d px image (allowed %g..%g)"
                                  % (src, name, val, size, -m * size, (1 + m) * size))


@dataclass(frozen=True)
class PinholeCamera:
    """Rectified pinhole intrinsics of an image of ``width x height`` pixels (hashable)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @property
    def K(self) -> np.ndarray:  # noqa: N802 (ROS name)
        """3x3 intrinsic matrix (float64)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def P(self) -> np.ndarray:  # noqa: N802 (ROS name)
        """3x4 projection matrix ``[K | 0]`` (monocular: Tx = Ty = 0)."""
        p = np.zeros((3, 4))
        p[:, :3] = self.K
        return p

    @property
    def hfov_deg(self) -> float:
        """Horizontal field of view, degrees: ``2 atan(W / (2 fx))``."""
        return hfov_from_focal(self.width, self.fx)

    @property
    def vfov_deg(self) -> float:
        """Vertical field of view, degrees: ``2 atan(H / (2 fy))``."""
        return hfov_from_focal(self.height, self.fy)

    @property
    def size(self) -> Tuple[int, int]:
        """``(width, height)``."""
        return (self.width, self.height)

    def validate(self) -> "PinholeCamera":
        """Raise CameraInfoError unless the size is positive and fx, fy, cx, cy are finite and
        physically meaningful for it: horizontal and vertical FOV within
        [:data:`MIN_FOV_DEG`, :data:`MAX_FOV_DEG`], principal point within one image size of the
        image (:data:`PRINCIPAL_POINT_MARGIN`). Meant for a full view; a camera of a small ROI crop
        (see :func:`camera_from_info`) may legitimately fail the FOV minimum / principal point
        checks. Returns self."""
        if int(self.width) != self.width or int(self.height) != self.height or self.width <= 0 or self.height <= 0:
            raise CameraInfoError("camera size must be positive integers, got %r x %r" % (self.width, self.height))
        _check_intrinsics(self.width, self.height, self.fx, self.fy, self.cx, self.cy, "camera ")
        return self

    def scaled(self, width: int, height: int) -> "PinholeCamera":
        """Intrinsics for the same view resized to ``width x height``.

        image_proc ``resize`` convention: ``fx, cx`` times ``width / self.width``,
        ``fy, cy`` times ``height / self.height`` (no half-pixel shift).
        """
        width, height = int(width), int(height)
        if width <= 0 or height <= 0:
            raise CameraInfoError("target size must be positive, got %d x %d" % (width, height))
        if (width, height) == (self.width, self.height):
            return self
        sx = width / self.width
        sy = height / self.height
        return PinholeCamera(width, height, self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy)

    @classmethod
    def from_focal(cls, width: int, height: int, f_px: float, fy: Optional[float] = None,
                   cx: Optional[float] = None, cy: Optional[float] = None) -> "PinholeCamera":
        """Square-pixel camera with focal ``f_px`` (pixels); principal point defaults to
        the image centre ``((W-1)/2, (H-1)/2)``."""
        width, height = int(width), int(height)
        cam = cls(width, height, float(f_px), float(f_px if fy is None else fy),
                  float((width - 1) / 2.0 if cx is None else cx),
                  float((height - 1) / 2.0 if cy is None else cy))
        return cam.validate()

    @classmethod
    def from_hfov(cls, width: int, height: int, hfov_deg: float,
                  cx: Optional[float] = None, cy: Optional[float] = None) -> "PinholeCamera":
        """Square-pixel camera with ``f = 0.5 W / tan(hfov / 2)``; centre as in :meth:`from_focal`."""
        hfov_deg = float(hfov_deg)
        if not (0.0 < hfov_deg < 180.0):
            raise CameraInfoError("horizontal FOV must be in (0, 180) degrees, got %r" % hfov_deg)
        return cls.from_focal(width, height, focal_from_hfov(int(width), hfov_deg), cx=cx, cy=cy)


def _vec(name: str, values, n: int) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise CameraInfoError("%s must be %d numbers: %s" % (name, n, exc)) from None
    if arr.size != n:
        raise CameraInfoError("%s must have %d elements, got %d" % (name, n, arr.size))
    return arr


def camera_from_info(width: int, height: int, K: Sequence[float], P: Sequence[float],
                     binning_x: int = 0, binning_y: int = 0,
                     roi: Optional[Tuple[int, int, int, int, bool]] = None) -> Optional[PinholeCamera]:
    """Intrinsics of the *published* image from ``sensor_msgs/CameraInfo`` fields.

    Mirrors image_geometry ``PinholeCameraModel::fromCameraInfo`` (which depth_image_proc
    and RViz DepthCloud use): ``fx = P[0], fy = P[5], cx = P[2], cy = P[6]``; with a
    ROI (``roi = (x_offset, y_offset, height, width, do_rectify)``, all-zero = full image)
    the principal point moves by ``-offset``; then binning (0 counts as 1) divides
    ``fx, cx`` by ``binning_x`` and ``fy, cy`` by ``binning_y``.  The returned size is
    ``(roi or full) // binning`` (image_geometry ``reducedResolution``).

    Additions to image_geometry: falls back to K when P is all zero; returns None for an
    uncalibrated camera (``K[0] == 0``, the CameraInfo.msg convention "clients may assume
    K[0] == 0.0 indicates an uncalibrated camera", whatever the other fields hold); a
    ROI with an offset but zero width/height extends to the image border; ``do_rectify``
    is ignored (its rectified ROI needs the distortion model; our inputs are rectified).

    Raises CameraInfoError for wrong array lengths, non-finite values, zero/negative
    focal lengths of a non-zero calibration, intrinsics that are not physically meaningful for
    the full ``width x height`` image (FOV outside [MIN_FOV_DEG, MAX_FOV_DEG], principal point
    further than one image size outside it), zero image size, nonsense binning, or a ROI
    outside the image.
    """
    k = _vec("K", K, 9)
    p = _vec("P", P, 12)
    if k[0] == 0:  # CameraInfo.msg: K[0] == 0 means uncalibrated (D, K, R, P should be zeroed)
        return None
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        raise CameraInfoError("CameraInfo has zero size (width=%d, height=%d) but a calibration" % (width, height))
    if np.any(p != 0):
        src, fx, fy, cx, cy = "P", float(p[0]), float(p[5]), float(p[2]), float(p[6])
    else:
        src, fx, fy, cx, cy = "K", float(k[0]), float(k[4]), float(k[2]), float(k[5])
    # bounds on the full calibrated image (K and P describe it; a ROI crop is checked through it)
    _check_intrinsics(width, height, fx, fy, cx, cy, "CameraInfo %s " % src)

    bx = int(binning_x) or 1
    by = int(binning_y) or 1
    if bx < 0 or by < 0:
        raise CameraInfoError("binning must be >= 0, got %d x %d" % (binning_x, binning_y))
    x0 = y0 = 0
    rw, rh = width, height
    if roi is not None:
        x0, y0, rh_, rw_ = (int(v) for v in tuple(roi)[:4])
        if (x0, y0, rh_, rw_) != (0, 0, 0, 0):
            if x0 < 0 or y0 < 0 or rh_ < 0 or rw_ < 0:
                raise CameraInfoError("ROI values must be >= 0, got %r" % (tuple(roi),))
            rw = rw_ or (width - x0)
            rh = rh_ or (height - y0)
            if x0 + rw > width or y0 + rh > height or rw <= 0 or rh <= 0:
                raise CameraInfoError("ROI x=%d y=%d %dx%d lies outside the %dx%d image"
                                      % (x0, y0, rw, rh, width, height))
    cx -= x0
    cy -= y0
    out_w, out_h = rw // bx, rh // by
    if out_w <= 0 or out_h <= 0:
        raise CameraInfoError("binning %dx%d leaves no pixels of a %dx%d image" % (bx, by, rw, rh))
    return PinholeCamera(out_w, out_h, float(fx / bx), float(fy / by), float(cx / bx), float(cy / by))
