"""Depth -> 3D points -> ``sensor_msgs/PointCloud2`` byte layout, ROS-free.

Math and layout follow depth_image_proc (``point_cloud_xyz`` / ``point_cloud_xyzrgb``):

* ``X = (u - cx) Z / fx``, ``Y = (v - cy) Z / fy``, ``Z = depth`` (optical frame:
  x right, y down, z forward), no half-pixel shift; invalid depth -> x = y = z = NaN.
* fields ``x, y, z`` FLOAT32 at 0, 4, 8 (``point_step`` 16); with colour ``rgb`` FLOAT32
  at 16 holding the bits of ``0x00RRGGBB`` (``point_step`` 32), little-endian,
  organized clouds have ``height x width`` of the image and ``is_dense = False``.
* An optional ``confidence`` FLOAT32 field goes into padding that depth_image_proc
  leaves unused: offset 12 for xyz (point_step stays 16), offset 20 for xyzrgb
  (point_step stays 32).  Readers that look fields up by name (RViz, PCL
  ``fromROSMsg``, sensor_msgs_py, Nav2) are unaffected and the message does not grow.
  (PCL's in-memory ``PointXYZ`` uses the 4th float as 1.0, but that value is not part of
  any ROS message field, so using it here is safe.)

Buffers are allocated as a zero-filled ``array.array('B')`` and filled in place through
a NumPy view, so :func:`depth_ros.msgs.cloud_msg` can hand that very object to the
message without another copy.
"""

from __future__ import annotations

import array as _array
import functools
import sys
import threading
from dataclasses import dataclass, field
from typing import List, NamedTuple, Optional, Tuple

import numpy as np

from .camera import PinholeCamera

__all__ = [
    "INT8", "UINT8", "INT16", "UINT16", "INT32", "UINT32", "FLOAT32", "FLOAT64",
    "CloudField", "CloudFields", "PackedCloud", "cloud_layout",
    "backproject", "pack_rgb_float", "pack_rgb_uint32", "pack_cloud", "depth_to_cloud",
    "downsample_stride", "voxel_filter",
]

# sensor_msgs/PointField datatype codes
INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64 = range(1, 9)
_NP_OF_CODE = {INT8: "i1", UINT8: "u1", INT16: "<i2", UINT16: "<u2", INT32: "<i4",
               UINT32: "<u4", FLOAT32: "<f4", FLOAT64: "<f8"}


class CloudField(NamedTuple):
    """One ``sensor_msgs/PointField``: ``(name, offset, datatype, count)``."""

    name: str
    offset: int
    datatype: int
    count: int = 1


CloudFields = List[CloudField]


def cloud_layout(rgb: bool = False, confidence: bool = False) -> Tuple[CloudFields, int]:
    """``(fields, point_step)`` of the clouds this module writes (see module docstring)."""
    fields = [CloudField("x", 0, FLOAT32), CloudField("y", 4, FLOAT32), CloudField("z", 8, FLOAT32)]
    if rgb:
        fields.append(CloudField("rgb", 16, FLOAT32))
        if confidence:
            fields.append(CloudField("confidence", 20, FLOAT32))
        return fields, 32
    if confidence:
        fields.append(CloudField("confidence", 12, FLOAT32))
    return fields, 16


@dataclass
class PackedCloud:
    """A PointCloud2 body: flat uint8 ``data`` plus the header-less metadata."""

    data: np.ndarray
    height: int
    width: int
    point_step: int
    row_step: int
    fields: CloudFields
    is_dense: bool
    is_bigendian: bool = False
    # array.array('B') that ``data`` views (lets msgs.cloud_msg skip a copy); may be None.
    backing: Optional[_array.array] = field(default=None, repr=False, compare=False)

    @property
    def num_points(self) -> int:
        return self.height * self.width

    @property
    def dtype(self) -> np.dtype:
        """Structured dtype of one point (``rgb`` read as uint32), itemsize = point_step."""
        return np.dtype({
            "names": [f.name for f in self.fields],
            "formats": [(_NP_OF_CODE[f.datatype] if f.name != "rgb" else "<u4")
                        if f.count == 1 else (_NP_OF_CODE[f.datatype], (f.count,)) for f in self.fields],
            "offsets": [f.offset for f in self.fields],
            "itemsize": self.point_step,
        })

    def as_structured(self) -> np.ndarray:
        """Zero-copy ``(height, width)`` structured view of ``data``."""
        if self.row_step != self.width * self.point_step:
            raise ValueError("row padding is not supported by as_structured()")
        return self.data[: self.num_points * self.point_step].view(self.dtype).reshape(self.height, self.width)


# Large buffers (>= glibc's maximal dynamic mmap threshold, 32 MiB) are mmap'ed afresh on
# every allocation, and faulting in ~66 MB of 4 KiB pages (1080p xyzrgb) costs ~90 ms,
# several times the packing itself.  So up to _POOL_MAX such buffers are kept and reused
# once nothing else references them (the message that carried one has been published
# and dropped): CPython's reference count tells exactly; the check runs under a lock.
_POOL_MIN_BYTES = 32 << 20
_POOL_MAX = 2
_pool: List[_array.array] = []
_pool_lock = threading.Lock()
# Points are written in blocks of about this many bytes so that all columns of a block
# are written while it is in cache (one memory pass instead of one per field).
_BLOCK_BYTES = 1 << 20


def _refcount_at(lst: list, i: int) -> int:
    return sys.getrefcount(lst[i])


_FREE_REFS = _refcount_at([_array.array("B")], 0)  # refcount of an entry referenced only by its list


def _alloc(nbytes: int) -> Tuple[_array.array, np.ndarray, bool]:
    """``(backing array.array('B'), writable uint8 view, dirty)``.

    ``dirty`` is True for a reused buffer whose old content must be overwritten/zeroed;
    fresh buffers are zero-filled.
    """
    if nbytes >= _POOL_MIN_BYTES:
        with _pool_lock:
            free = [i for i in range(len(_pool)) if _refcount_at(_pool, i) == _FREE_REFS]
            for i in free:
                if len(_pool[i]) == nbytes:
                    backing = _pool[i]
                    return backing, np.frombuffer(backing, dtype=np.uint8), True
            backing = _array.array("B", b"\0") * nbytes
            if len(_pool) < _POOL_MAX:
                _pool.append(backing)
            elif free:
                _pool[free[0]] = backing
            return backing, np.frombuffer(backing, dtype=np.uint8), False
    backing = _array.array("B", b"\0") * nbytes
    return backing, np.frombuffer(backing, dtype=np.uint8), False


@functools.lru_cache(maxsize=8)
def _rays(camera: PinholeCamera) -> Tuple[np.ndarray, np.ndarray, float]:
    """``((u - cx) / fx for u in 0..W-1, (v - cy) / fy for v in 0..H-1)`` as float32, and the
    largest depth whose coordinates stay finite in float32 (``z * ray`` never overflows to inf)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        rx = ((np.arange(camera.width, dtype=np.float64) - camera.cx) / camera.fx).astype(np.float32)
        ry = ((np.arange(camera.height, dtype=np.float64) - camera.cy) / camera.fy).astype(np.float32)
    if not (np.isfinite(rx).all() and np.isfinite(ry).all()):
        raise ValueError("camera fx=%g fy=%g cx=%g cy=%g gives non-finite rays; check it with "
                         "PinholeCamera.validate()" % (camera.fx, camera.fy, camera.cx, camera.cy))
    spread = max(1.0, float(np.abs(rx).max(initial=0.0)), float(np.abs(ry).max(initial=0.0)))
    rx.flags.writeable = False
    ry.flags.writeable = False
    return rx, ry, 0.5 * float(np.finfo(np.float32).max) / spread


def _checked_depth(depth, camera: PinholeCamera) -> np.ndarray:
    d = np.asarray(depth)
    if d.ndim == 3 and d.shape[2] == 1:
        d = d[:, :, 0]
    if d.shape != (camera.height, camera.width):
        raise ValueError("depth shape %s does not match the camera size %dx%d (HxW = %dx%d)"
                         % (d.shape, camera.width, camera.height, camera.height, camera.width))
    if d.dtype.kind not in "fiu":
        raise TypeError("depth must be numeric, got %s" % d.dtype)
    return d


def _valid_z(d: np.ndarray, min_range: float, max_range: float, z_limit: float) -> np.ndarray:
    """float32 copy of the depth with every invalid value replaced by NaN (``z_limit``: the largest
    depth whose x/y stay finite, see ``_rays``; beyond it a point would hold +-inf)."""
    with np.errstate(over="ignore", invalid="ignore"):  # float64 depth beyond float32 -> inf -> NaN below
        z = np.array(d, dtype=np.float32, copy=True)
    hi = np.float32(min(float(max_range), float(z_limit)))
    with np.errstate(invalid="ignore"):
        if min_range > 0:
            ok = z >= np.float32(min_range)
        else:
            ok = z > 0
        ok &= z <= hi  # also drops NaN and +inf
    np.putmask(z, ~ok, np.nan)
    return z


def _row_chunks(h: int, row_bytes: int):
    rows = max(1, _BLOCK_BYTES // max(1, row_bytes))
    for r0 in range(0, h, rows):
        yield r0, min(h, r0 + rows)


def backproject(depth, camera: PinholeCamera, min_range: float = 0.0,
                max_range: float = float("inf")) -> np.ndarray:
    """Metric depth (m, ``H x W``) -> ``H x W x 3`` float32 points in the optical frame.

    Non-finite, ``<= 0``, ``< min_range`` and ``> max_range`` depths give NaN in all three
    coordinates, and so do depths so large that x or y would overflow float32: no output
    coordinate is ever +-inf.  Raises ValueError when the depth size differs from the camera's
    or the camera's rays are not finite.
    """
    d = _checked_depth(depth, camera)
    rx, ry, z_limit = _rays(camera)
    h, w = d.shape
    out = np.empty((h, w, 3), np.float32)
    for r0, r1 in _row_chunks(h, w * 12):
        z = _valid_z(d[r0:r1], min_range, max_range, z_limit)
        blk = out[r0:r1]
        np.multiply(z, rx, out=blk[:, :, 0])
        np.multiply(z, ry[r0:r1, None], out=blk[:, :, 1])
        blk[:, :, 2] = z
    return out


def pack_rgb_uint32(rgb_u8) -> np.ndarray:
    """``(..., 3)`` RGB (or ``(..., 4)`` RGBA, alpha dropped) uint8 -> ``(...)`` uint32 ``0x00RRGGBB``."""
    a = np.asarray(rgb_u8)
    if a.dtype != np.uint8 or a.ndim < 1 or a.shape[-1] not in (3, 4):
        raise ValueError("rgb must be uint8 with 3 (RGB) or 4 (RGBA) channels, got %s %s" % (a.dtype, a.shape))
    lead = a.shape[:-1]
    n = int(np.prod(lead, dtype=np.int64))
    out = np.empty(lead, np.dtype("<u4"))
    if n == 0:
        return out
    _write_rgb(a, out.reshape(-1))
    return out


def unpack_rgb_uint32(packed) -> np.ndarray:
    """Inverse of :func:`pack_rgb_uint32`: ``(...)`` ``0x00RRGGBB`` (uint32, or the float32 ``rgb`` field
    viewed as uint32) -> ``(..., 3)`` uint8 RGB."""
    v = np.asarray(packed).astype(np.uint32, copy=False)
    return np.stack([(v >> 16) & 255, (v >> 8) & 255, v & 255], axis=-1).astype(np.uint8)


def _write_rgb(rgb: np.ndarray, dst_u32: np.ndarray) -> None:
    """Write ``0x00RRGGBB`` of ``rgb`` (``(..., 3|4)`` uint8) into the 1-D '<u4' array ``dst_u32``."""
    import cv2
    c = rgb.shape[-1]
    # one long row: OpenCV works row by row, an N x 1 image would be ~20x slower
    flat = np.ascontiguousarray(rgb).reshape(1, -1, c)
    # cv2 swaps R/B and adds alpha (255 or the RGBA alpha) in one SIMD pass: bytes B G R A
    bgra = cv2.cvtColor(flat, cv2.COLOR_RGB2BGRA if c == 3 else cv2.COLOR_RGBA2BGRA)
    np.bitwise_and(bgra.reshape(-1).view("<u4"), np.uint32(0x00FFFFFF), out=dst_u32)


def pack_rgb_float(rgb_u8) -> np.ndarray:
    """``(..., 3)`` uint8 RGB -> ``(...)`` float32 whose bits are ``0x00RRGGBB`` (PCL/RViz ``rgb``)."""
    return pack_rgb_uint32(rgb_u8).view(np.float32)


def _check_extra(name, arr, shape, channels=None):
    if arr is None:
        return None
    a = np.asarray(arr)
    want = shape + ((channels,) if channels else ())
    if channels and a.shape[:-1] == shape and a.shape[-1] in (3, 4):
        pass
    elif a.shape != want:
        raise ValueError("%s shape %s does not match the points (%s)" % (name, a.shape, want))
    if name == "rgb" and a.dtype != np.uint8:
        raise ValueError("rgb must be uint8, got %s" % a.dtype)
    return a


def _empty_cloud(rgb: bool, confidence: bool) -> PackedCloud:
    fields, step = cloud_layout(rgb, confidence)
    backing, data, _ = _alloc(0)
    return PackedCloud(data, 1, 0, step, 0, fields, True, False, backing)


def _write_cloud(n: int, rows: Tuple[int, int], rgb_flat, conf_flat, write_xyz) -> Tuple[np.ndarray, object]:
    """Allocate and fill a cloud buffer of ``n`` points, block by block.

    ``rows = (h, w)``: blocks are whole rows of ``w`` points; ``write_xyz(block_words,
    i0, i1)`` writes columns 0..2 of points ``i0:i1``; rgb / confidence columns are
    filled from the flat ``(n, c)`` / ``(n,)`` arrays.
    """
    _fields, step = cloud_layout(rgb_flat is not None, conf_flat is not None)
    sw = step // 4
    backing, data, dirty = _alloc(n * step)
    words = data.view("<f4").reshape(n, sw)
    h, w = rows
    conf_col = 5 if sw == 8 else 3
    for r0, r1 in _row_chunks(h, w * step):
        i0, i1 = r0 * w, r1 * w
        blk = words[i0:i1]
        if dirty:
            blk.fill(0)
        write_xyz(blk, i0, i1)
        if rgb_flat is not None:
            _write_rgb(rgb_flat[i0:i1], blk.view("<u4")[:, 4])
        if conf_flat is not None:
            blk[:, conf_col] = conf_flat[i0:i1]
    return data, backing


def pack_cloud(points_hw3, rgb=None, confidence=None, organized: bool = True,
               remove_invalid: bool = False) -> PackedCloud:
    """Pack points (``H x W x 3`` organized or ``N x 3``) into the depth_image_proc layout.

    * ``rgb``: uint8 ``(..., 3)`` matching the points -> ``rgb`` field; ``confidence``:
      ``(...)`` float -> ``confidence`` field.
    * Organized (``H x W x 3`` input, ``organized=True``, no removal): ``height x width``
      of the image, ``is_dense = False`` (like depth_image_proc).
    * ``remove_invalid=True`` (takes precedence over ``organized``) drops points with any
      non-finite coordinate -> ``1 x N``, ``is_dense = True``.  ``N x 3`` input or
      ``organized=False`` -> ``1 x N`` with ``is_dense`` = "all points finite".
    """
    p = np.asarray(points_hw3)
    if p.ndim not in (2, 3) or p.shape[-1] != 3:
        raise ValueError("points must be H x W x 3 or N x 3, got shape %s" % (p.shape,))
    lead = p.shape[:-1]
    rgb = _check_extra("rgb", rgb, lead, 3)
    confidence = _check_extra("confidence", confidence, lead)
    fields, step = cloud_layout(rgb is not None, confidence is not None)
    n = int(np.prod(lead, dtype=np.int64))
    flat = p.reshape(n, 3)
    rgb_flat = None if rgb is None else rgb.reshape(n, rgb.shape[-1])
    conf_flat = None if confidence is None else confidence.reshape(n)
    is_dense = False
    if remove_invalid or p.ndim == 2 or not organized:
        with np.errstate(over="ignore", invalid="ignore"):
            ok = np.isfinite(flat[:, 0] + flat[:, 1] + flat[:, 2])
        if remove_invalid:
            if not ok.all():
                flat = flat[ok]
                rgb_flat = None if rgb_flat is None else rgb_flat[ok]
                conf_flat = None if conf_flat is None else conf_flat[ok]
                n = flat.shape[0]
            is_dense = True
        else:
            is_dense = bool(ok.all())
        height, width = 1, n
        rows = (n, 1)
    else:
        height, width = lead
        rows = lead
    if n == 0:
        return _empty_cloud(rgb is not None, confidence is not None)

    def write_xyz(blk, i0, i1):
        for k in range(3):  # column by column: ~5x faster than blk[:, 0:3] = flat[i0:i1]
            np.copyto(blk[:, k], flat[i0:i1, k], casting="same_kind")

    data, backing = _write_cloud(n, rows, rgb_flat, conf_flat, write_xyz)
    return PackedCloud(data, height, width, step, width * step, fields, is_dense, False, backing)


def depth_to_cloud(depth, camera: PinholeCamera, rgb=None, confidence=None,
                   min_range: float = 0.0, max_range: float = float("inf"),
                   stride: int = 1, remove_invalid: bool = False) -> PackedCloud:
    """Fused :func:`backproject` + (:func:`downsample_stride`) + :func:`pack_cloud`.

    Writes x/y/z straight into the message buffer (no intermediate ``H x W x 3``), so it
    is the fast path for the node.  ``stride > 1`` keeps pixels ``[::stride, ::stride]``
    (organized ``ceil(H/s) x ceil(W/s)``).  Same validity rules as :func:`backproject`,
    same layout and bytes as ``pack_cloud(backproject(...), ...)``
    (``remove_invalid`` -> ``1 x N``, dense).
    """
    d = _checked_depth(depth, camera)
    stride = int(stride)
    if stride < 1:
        raise ValueError("stride must be >= 1, got %d" % stride)
    rgb = _check_extra("rgb", rgb, d.shape, 3)
    confidence = _check_extra("confidence", confidence, d.shape)
    rx, ry, z_limit = _rays(camera)
    if stride > 1:
        d = d[::stride, ::stride]
        rx, ry = rx[::stride], ry[::stride]
        rgb = None if rgb is None else np.ascontiguousarray(rgb[::stride, ::stride])
        confidence = None if confidence is None else confidence[::stride, ::stride]
    h, w = d.shape
    fields, step = cloud_layout(rgb is not None, confidence is not None)
    rgb_flat = None if rgb is None else rgb.reshape(h * w, rgb.shape[-1])
    conf_flat = None if confidence is None else confidence.reshape(h * w)

    if remove_invalid:
        z = _valid_z(d, min_range, max_range, z_limit).reshape(-1)
        idx = np.flatnonzero(~np.isnan(z))
        n = idx.size
        if n == 0:
            return _empty_cloud(rgb is not None, confidence is not None)
        zf = z[idx]
        vv, uu = np.divmod(idx, w)
        xf = zf * rx[uu]
        yf = zf * ry[vv]
        rgb_flat = None if rgb_flat is None else rgb_flat[idx]
        conf_flat = None if conf_flat is None else conf_flat[idx]

        def write_sparse(blk, i0, i1):
            blk[:, 0] = xf[i0:i1]
            blk[:, 1] = yf[i0:i1]
            blk[:, 2] = zf[i0:i1]

        data, backing = _write_cloud(n, (n, 1), rgb_flat, conf_flat, write_sparse)
        return PackedCloud(data, 1, n, step, n * step, fields, True, False, backing)

    def write_grid(blk, i0, i1):
        r0, r1 = i0 // w, i1 // w
        z = _valid_z(d[r0:r1], min_range, max_range, z_limit)
        b3 = blk.reshape(r1 - r0, w, blk.shape[1])
        np.multiply(z, rx, out=b3[:, :, 0])
        np.multiply(z, ry[r0:r1, None], out=b3[:, :, 1])
        b3[:, :, 2] = z

    data, backing = _write_cloud(h * w, (h, w), rgb_flat, conf_flat, write_grid)
    return PackedCloud(data, h, w, step, w * step, fields, False, False, backing)


def downsample_stride(points_hw3, stride: int, rgb=None, confidence=None):
    """Keep every ``stride``-th row and column: returns ``(points, rgb, confidence)``.

    Organized ``ceil(H/s) x ceil(W/s)`` contiguous copies (``None`` stays ``None``).
    """
    stride = int(stride)
    if stride < 1:
        raise ValueError("stride must be >= 1, got %d" % stride)
    p = np.asarray(points_hw3)
    if p.ndim != 3 or p.shape[2] != 3:
        raise ValueError("points must be H x W x 3, got shape %s" % (p.shape,))

    def take(a):
        return None if a is None else np.ascontiguousarray(np.asarray(a)[::stride, ::stride])
    return take(p), take(_check_extra("rgb", rgb, p.shape[:2], 3)), \
        take(_check_extra("confidence", confidence, p.shape[:2]))


def _voxel_means(cols: np.ndarray, voxel_size: float, rgb, confidence):
    """Mean point / colour / confidence per occupied voxel ``floor(p / voxel_size)``.

    ``cols`` is the ``3 x N`` float32 (column-major) point array; everything runs on
    contiguous 1-D arrays (NumPy reductions over ``axis=0`` of ``N x 3`` are slow).
    """
    inv = np.float32(1.0 / float(voxel_size))
    cells = []
    dims = []
    for k in range(3):
        c = np.floor(cols[k] * inv)  # float32 like Open3D's grid
        lo, hi = float(c.min()), float(c.max())
        c -= np.float32(lo)
        cells.append(c)
        dims.append(int(hi - lo) + 1)
    n = cols.shape[1]
    if float(dims[0]) * float(dims[1]) * float(dims[2]) < 2.0 ** 62:
        key = cells[0].astype(np.int64)
        key *= dims[1]
        key += cells[1].astype(np.int64)
        key *= dims[2]
        key += cells[2].astype(np.int64)
    else:  # astronomically many cells: rank the cells first (slower, overflow-free)
        _, key = np.unique(np.stack([c.astype(np.int64) for c in cells], 1), axis=0, return_inverse=True)
        key = key.reshape(-1)
    # stable: identical input -> identical output order and sums
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    first = np.flatnonzero(np.concatenate(([True], sorted_key[1:] != sorted_key[:-1])))
    counts = np.diff(np.append(first, n)).astype(np.float64)
    pts = np.empty((first.size, 3), np.float32)
    for k in range(3):
        pts[:, k] = np.add.reduceat(cols[k][order], first, dtype=np.float64) / counts
    out_rgb = None
    if rgb is not None:
        out_rgb = np.empty((first.size, 3), np.uint8)
        for k in range(3):
            mean = np.add.reduceat(rgb[:, k][order], first, dtype=np.float64) / counts
            out_rgb[:, k] = np.clip(np.rint(mean), 0, 255)
    out_conf = None
    if confidence is not None:
        out_conf = (np.add.reduceat(confidence[order], first, dtype=np.float64) / counts).astype(np.float32)
    return pts, out_rgb, out_conf


def voxel_filter(points_n3, voxel_size: float, rgb=None, confidence=None,
                 outlier_nb: int = 0, outlier_std: float = 2.0):
    """Voxel-grid downsampling and optional statistical outlier removal.

    ``points_n3`` may be ``N x 3`` or ``H x W x 3``; non-finite points are dropped first.
    Voxel grid (``voxel_size`` m, ``<= 0`` skips it): each occupied cell
    ``floor(p / voxel_size)`` becomes the mean of its points, colours and confidences.
    The grid is anchored at the sensor origin (same cells as Open3D's tensor
    ``voxel_down_sample``), so cell borders do not move from frame to frame (the legacy
    Open3D grid is anchored at the cloud's bounding box); it is computed with NumPy,
    which is faster than Open3D's tensor implementation on CPU and carries confidence.
    Statistical outlier removal (``outlier_nb > 0``, Open3D
    ``remove_statistical_outlier``): points whose mean distance to their ``outlier_nb``
    nearest neighbours exceeds the global mean by more than ``outlier_std`` standard
    deviations are dropped.

    Returns unorganized ``(points M x 3 float32, rgb M x 3 uint8 | None, confidence M float32 | None)``.
    Raises ImportError with an explanation when outlier removal is asked for and open3d
    is unavailable.
    """
    p = np.asarray(points_n3, dtype=np.float32)
    if p.shape[-1] != 3 or p.ndim not in (2, 3):
        raise ValueError("points must be N x 3 or H x W x 3, got shape %s" % (p.shape,))
    lead = p.shape[:-1]
    rgb = _check_extra("rgb", rgb, lead, 3)
    confidence = _check_extra("confidence", confidence, lead)
    cols = np.ascontiguousarray(p.reshape(-1, 3).T)  # 3 x N: fast 1-D passes below
    with np.errstate(over="ignore", invalid="ignore"):
        ok = np.isfinite(cols[0] + cols[1] + cols[2])
    if not ok.all():
        cols = cols[:, ok]
    rgb = None if rgb is None else rgb.reshape(-1, rgb.shape[-1])[ok][:, :3]
    confidence = None if confidence is None else np.asarray(confidence, np.float32).reshape(-1)[ok]
    if cols.shape[1] and voxel_size > 0:
        p, rgb, confidence = _voxel_means(cols, voxel_size, rgb, confidence)
    else:
        p = np.ascontiguousarray(cols.T)
    if p.shape[0] and outlier_nb > 0:
        try:
            import open3d as o3d
        except Exception as exc:  # ImportError, or OSError for a missing libusb etc.
            raise ImportError("outlier removal needs open3d (pip install open3d-cpu; on Linux it also "
                              "needs libusb-1.0-0): %s" % exc) from exc
        pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p.astype(np.float64)))
        _, kept = pcd.remove_statistical_outlier(int(outlier_nb), float(outlier_std))
        kept = np.asarray(kept, dtype=np.int64)
        p = p[kept]
        rgb = None if rgb is None else rgb[kept]
        confidence = None if confidence is None else confidence[kept]
    return np.ascontiguousarray(p), rgb, confidence
