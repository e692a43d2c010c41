#!/usr/bin/env python3
"""Depth (float32 m) [+ RGB] -> sensor_msgs/PointCloud2 message: time per frame.

Compares, in one run:
  fused      depth_ros.core.depth_to_cloud + depth_ros.msgs.cloud_msg (what the node uses)
  two-step   backproject + pack_cloud + cloud_msg (the array API)
  per-point  a straightforward Python loop over pixels with struct.pack (depth_image_proc
             layout), then one PointCloud2; run on the first rows only and extrapolated
             linearly to the full frame (it is ~1 us per point, i.e. seconds per frame).

Usage: python bench/bench_cloud.py [--repeats N] [--loop-rows R]
Numbers are median/min over N repeats (wall clock, this machine, one Python thread); the
speed-up is per-point / fused median.
"""

import argparse
import array
import math
import os
import platform
import statistics
import struct
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from sensor_msgs.msg import PointCloud2, PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from depth_ros.core import PinholeCamera, backproject, depth_to_cloud, pack_cloud  # noqa: E402
from depth_ros.msgs import cloud_msg  # noqa: E402


def median_ms(fn, repeats):
    """(median, min) wall-clock ms over ``repeats`` calls after one warm-up call."""
    fn()  # warm-up (caches, lazy imports, page faults)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times), 1e3 * min(times)


def per_point_msg(depth, rgb, cam, header, rows):
    """Reference: Python loop over the first ``rows`` rows, one struct.pack per point."""
    h, w = depth.shape
    chunks = []
    nan = float("nan")
    if rgb is None:
        pack = struct.Struct("<fff4x").pack
    else:
        pack = struct.Struct("<fff4xI12x").pack
    for v in range(rows):
        for u in range(w):
            z = float(depth[v, u])
            if math.isfinite(z) and z > 0:
                x = (u - cam.cx) * z / cam.fx
                y = (v - cam.cy) * z / cam.fy
            else:
                x = y = z = nan
            if rgb is None:
                chunks.append(pack(x, y, z))
            else:
                r, g, b = rgb[v, u]
                chunks.append(pack(x, y, z, (int(r) << 16) | (int(g) << 8) | int(b)))
    msg = PointCloud2()
    msg.header = header
    msg.height, msg.width = rows, w
    names = ["x", "y", "z"] + ([] if rgb is None else ["rgb"])
    msg.fields = [PointField(name=n, offset=o, datatype=PointField.FLOAT32, count=1)
                  for n, o in zip(names, (0, 4, 8, 16))]
    msg.point_step = 16 if rgb is None else 32
    msg.row_step = msg.point_step * w
    msg.is_dense = False
    data = array.array("B")
    data.frombytes(b"".join(chunks))
    msg.data = data
    return msg


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--loop-rows", type=int, default=60, help="rows the per-point loop runs on")
    args = ap.parse_args()
    print("python %s, numpy %s, %s, %d CPUs" % (platform.python_version(), np.__version__,
                                                platform.machine(), os.cpu_count() or 0))
    header = Header(frame_id="camera_optical_frame")
    header.stamp.sec = 1
    rng = np.random.default_rng(0)
    print("%-10s %-7s %16s %16s %13s %9s" % ("size", "fields", "fused med/min", "2-step med/min",
                                             "per-point ms", "speed-up"))
    for w, h in ((640, 480), (1920, 1080)):
        cam = PinholeCamera.from_hfov(w, h, 70.0)
        depth = rng.uniform(0.3, 10.0, (h, w)).astype(np.float32)
        depth[rng.random((h, w)) < 0.05] = np.nan
        color = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        repeats = args.repeats if w * h <= 640 * 480 else max(5, args.repeats // 3)
        for rgb in (None, color):
            fused = median_ms(lambda: cloud_msg(depth_to_cloud(depth, cam, rgb=rgb), header), repeats)
            two = median_ms(lambda: cloud_msg(pack_cloud(backproject(depth, cam), rgb=rgb), header), repeats)
            rows = min(args.loop_rows, h)
            t0 = time.perf_counter()
            per_point_msg(depth, rgb, cam, header, rows)
            loop = 1e3 * (time.perf_counter() - t0) * h / rows
            print("%-10s %-7s %9.2f/%6.2f %9.2f/%6.2f %13.0f %8.0fx" % (
                "%dx%d" % (w, h), "xyz" if rgb is None else "xyzrgb", fused[0], fused[1], two[0], two[1],
                loop, loop / fused[0]))
    print("per-point: measured on the first %d rows, extrapolated linearly to the full frame" % args.loop_rows)
    # sanity: the per-point reference and the fast path agree byte for byte on those rows
    w, h = 64, 48
    cam = PinholeCamera.from_hfov(w, h, 70.0)
    depth = rng.uniform(0.3, 10.0, (h, w)).astype(np.float32)
    depth[::7, ::5] = np.nan
    color = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    ref = per_point_msg(depth, color, cam, header, h)
    fast = cloud_msg(depth_to_cloud(depth, cam, rgb=color), header)
    a = np.frombuffer(bytes(ref.data), "<f4").reshape(-1, 8)
    b = np.frombuffer(bytes(fast.data), "<f4").reshape(-1, 8)
    same_rgb = np.array_equal(a.view("<u4")[:, 4], b.view("<u4")[:, 4])
    ok = np.allclose(a[:, :3], b[:, :3], rtol=1e-6, atol=1e-6, equal_nan=True) and same_rgb
    print("cross-check vs per-point reference (64x48 xyzrgb): %s" % ("OK" if ok else "MISMATCH"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
