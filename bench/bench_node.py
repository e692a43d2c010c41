#!/usr/bin/env python3
"""End-to-end latency of depth_node across two processes, and the node's own per-frame overhead.

This process publishes camera images (+ CameraInfo) and receives ``depth/points``; ``depth_node`` runs
in a second process with a user model that returns a fixed depth instantly
(``test/fake_models.py:ConstantDepthModel``), so everything measured is the node, rclpy and the
middleware. Frames are sent one at a time (the next after the previous cloud arrived), so there is no
queueing. The node's own overhead (decode + intrinsics + cloud/colormap + message building +
publish, i.e. everything except the network) comes from its worker instrumentation, read from
/diagnostics (``overhead_ms_*``).

    .venv/bin/python bench/bench_node.py                      # 640x480 and 1280x720, depth/points only
    .venv/bin/python bench/bench_node.py --all-outputs --frames 50 --json out/bench_node.json

Uses the Fast DDS shared-memory profile config/fastdds_shm.xml, localhost discovery and a free
ROS_DOMAIN_ID (see test/ros_utils.py).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test"))
sys.path.insert(0, str(REPO))

import ros_utils as ru  # noqa: E402


def _percentiles(values):
    import numpy as np

    a = np.asarray(values, dtype=np.float64)
    return {"n": int(a.size), "median": float(np.median(a)), "p95": float(np.percentile(a, 95)),
            "mean": float(a.mean()), "max": float(a.max())}


def run_size(ros, width, height, frames, warmup, all_outputs, cloud_mode, timeout):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    ns = f"bench_{width}x{height}"
    params = {"model": "fake_models:ConstantDepthModel", "model_config.ramp": 2.0, "device": "cpu",
              "cloud_mode": cloud_mode, "diagnostics_period": 0.2}
    node = ru.Proc(ru.node_command(params_file=str(REPO / "config" / "zoedepth_nk.yaml"), params=params,
                                   remaps={"image": f"/{ns}/cam/image", "camera_info": f"/{ns}/cam/camera_info"},
                                   namespace=f"/{ns}"),
                   env=ru.subprocess_env(ros.domain_id), name="bench_node")
    try:
        points = ros.collect(PointCloud2, f"/{ns}/depth/points")
        others = []
        if all_outputs:
            types = {"depth/image": Image, "depth/camera_info": CameraInfo, "depth/confidence": Image,
                     "depth/colorized": Image}
            others = [ros.collect(t, f"/{ns}/{name}") for name, t in types.items()]
        diag = ros.collect(DiagnosticArray, "/diagnostics")
        img_pub = ros.publisher(Image, f"/{ns}/cam/image")
        info_pub = ros.publisher(CameraInfo, f"/{ns}/cam/camera_info")
        if not ru.wait_for(lambda: img_pub.get_subscription_count() > 0 or not node.alive(), timeout):
            raise RuntimeError("depth_node did not subscribe:\n" + node.output())
        if not node.alive():
            raise RuntimeError("depth_node exited:\n" + node.output())
        frames_msgs = [ru.image_msg(width, height, "rgb8", frame_id="camera_optical", seed=i) for i in range(4)]
        info = ru.camera_info_msg(width, height, 0.8 * width, frame_id="camera_optical")
        latencies, lost = [], 0
        for i in range(warmup + frames):
            msg = frames_msgs[i % len(frames_msgs)]
            stamp = ros.node.get_clock().now().to_msg()
            msg.header.stamp = stamp
            info.header.stamp = stamp
            want = ru.stamp_of(msg)
            n_before = len(points)
            info_pub.publish(info)
            t0 = time.monotonic()
            img_pub.publish(msg)

            def arrived():
                with points._lock:
                    return any(ru.stamp_of(m) == want for m in points.messages[n_before:])
            if not ru.wait_for(arrived, 2.0, 0.0005):
                lost += 1
                continue
            with points._lock:
                idx = [k for k in range(n_before, len(points.messages))
                       if ru.stamp_of(points.messages[k]) == want][0]
                t1 = points.times[idx]
                points.messages.clear()
                points.times.clear()
            if all_outputs:  # let the other outputs of this frame arrive too
                ru.wait_for(lambda: all(any(ru.stamp_of(m) == want for m in c.messages) for c in others), 1.0)
                for c in others:
                    c.clear()
            if i >= warmup:
                latencies.append((t1 - t0) * 1e3)
            time.sleep(0.01)
        time.sleep(0.5)  # one more diagnostics period
        name = f"depth_ros: /{ns}/depth_node"
        values = {}
        for m in reversed(diag.messages):
            st = [s for s in m.status if s.name == name]
            if st:
                values = {kv.key: kv.value for kv in st[0].values}
                break
        for c in [points, diag] + others:
            ros.node.destroy_subscription(c.sub)
        ros.node.destroy_publisher(img_pub)
        ros.node.destroy_publisher(info_pub)
        keep = ("overhead_ms", "overhead_cpu_ms", "latency_ms", "inference_ms", "decode_ms", "intrinsics_ms",
                "postprocess_ms", "publish_ms")
        node_stats = {k: float(v) for k, v in values.items() if k.startswith(keep)}
        return {"size": f"{width}x{height}", "frames": frames, "lost": lost,
                "end_to_end_ms": _percentiles(latencies) if latencies else None,
                "node": node_stats, "frames_processed": values.get("frames_processed")}
    finally:
        node.stop()
        node.cleanup()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="640x480,1280x720")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--all-outputs", action="store_true",
                    help="also subscribe depth/image, depth/camera_info, depth/confidence, depth/colorized")
    ap.add_argument("--cloud-mode", default="organized", choices=["organized", "stride", "voxel"])
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds for the node to come up")
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--no-tune-malloc", action="store_true",
                    help="leave glibc malloc of this (receiving) process alone (the node: DEPTH_ROS_NO_MALLOPT=1)")
    args = ap.parse_args(argv)

    if not args.no_tune_malloc:
        # this process receives the clouds in a background thread: same glibc page-fault issue as the node
        from depth_ros.node.process import tune_malloc

        tune_malloc()
    results = []
    with ru.RosSession(name="bench_probe") as ros:
        for size in args.sizes.split(","):
            w, h = (int(x) for x in size.lower().split("x"))
            r = run_size(ros, w, h, args.frames, args.warmup, args.all_outputs, args.cloud_mode, args.timeout)
            results.append(r)
            e2e, node = r["end_to_end_ms"] or {}, r["node"]
            print(f"{r['size']:>10}: end-to-end image->depth/points median {e2e.get('median', float('nan')):7.2f} ms"
                  f"  p95 {e2e.get('p95', float('nan')):7.2f} ms  (n={e2e.get('n', 0)}, lost {r['lost']})"
                  f" | node overhead p50 {node.get('overhead_ms_p50', float('nan')):6.2f} ms"
                  f"  p95 {node.get('overhead_ms_p95', float('nan')):6.2f} ms"
                  f" (cpu p50 {node.get('overhead_cpu_ms_p50', float('nan')):6.2f} ms)"
                  f" [p50 decode {node.get('decode_ms_p50', float('nan')):.2f},"
                  f" post {node.get('postprocess_ms_p50', float('nan')):.2f},"
                  f" publish {node.get('publish_ms_p50', float('nan')):.2f} ms]", flush=True)
    summary = {"outputs": "all" if args.all_outputs else "depth/points", "cloud_mode": args.cloud_mode,
               "results": results}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
