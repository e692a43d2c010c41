"""``sample_camera``: publishes the shipped synthetic stream as a camera at a steady rate.

Topics (relative: put the node in a namespace, e.g. ``--ros-args -r __ns:=/camera``):

* ``image_raw`` (sensor_msgs/Image, rgb8) and ``camera_info`` (sensor_msgs/CameraInfo, the exact
  intrinsics the frames were rendered with), same stamp, frame ``camera_optical_frame``;
* ``ground_truth/depth`` (sensor_msgs/Image 32FC1 metres, NaN = no ground truth), same stamp;
* ``sample_camera/done`` (std_msgs/String, reliable + transient local): JSON with the frames published
  (stamps, scene names) and the achieved rate, sent once after the last frame.

Publishers are RELIABLE / VOLATILE / keep-last 5 (what a camera driver gives with system-default QoS);
best-effort subscribers (depth_node's default) connect too.

    sample_camera --rate 2 --frames 16 --wait-subscribers 2 --ros-args -r __ns:=/camera
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

FRAME_ID = "camera_optical_frame"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="sample_camera", description=__doc__.split("\n\n")[0])
    ap.add_argument("--stream", default=None, help="folder written by depth_ros.demo.render (default: shipped)")
    ap.add_argument("--rate", type=float, default=2.0, help="frames per second")
    ap.add_argument("--frames", type=int, default=0, help="frames to publish (0 = the whole stream once)")
    ap.add_argument("--loop", action="store_true", help="repeat the stream until --frames (or forever)")
    ap.add_argument("--frame-id", default=FRAME_ID)
    ap.add_argument("--encoding", choices=("rgb8", "bgr8"), default="rgb8")
    ap.add_argument("--no-ground-truth", action="store_true", help="do not publish ground_truth/depth")
    ap.add_argument("--wait-subscribers", type=int, default=0,
                    help="wait until image_raw has this many subscribers before the first frame")
    ap.add_argument("--wait-timeout", type=float, default=0.0, help="give up waiting after this (0 = forever)")
    ap.add_argument("--linger", type=float, default=2.0, help="seconds to stay up after the done message")
    ap.add_argument("--stats", default=None, help="also write the done message JSON to this file")
    return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
    import rclpy
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.utilities import remove_ros_args
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import String

    from depth_ros import msgs
    from depth_ros.demo.render import load_frames

    full = list(sys.argv if argv is None else ["sample_camera"] + list(argv))
    args = build_parser().parse_args(remove_ros_args(full)[1:])
    if args.rate <= 0:
        print("sample_camera: error: --rate must be > 0", file=sys.stderr)
        return 2
    try:
        camera, frames = load_frames(args.stream)
    except (OSError, ValueError, KeyError) as exc:
        print(f"sample_camera: error: cannot load the stream: {exc}", file=sys.stderr)
        return 2
    total = args.frames or len(frames)
    if not args.loop:
        total = min(total, len(frames))

    rclpy.init(args=full)
    node = rclpy.create_node("sample_camera")
    log = node.get_logger()
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.VOLATILE)
    done_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pub_img = node.create_publisher(Image, "image_raw", qos)
    pub_info = node.create_publisher(CameraInfo, "camera_info", qos)
    pub_gt = None if args.no_ground_truth else node.create_publisher(Image, "ground_truth/depth", qos)
    pub_done = node.create_publisher(String, "sample_camera/done", done_qos)
    code = 0
    try:
        # Pre-build the payloads (only the stamp changes per frame).
        imgs = [f.rgb if args.encoding == "rgb8" else np.ascontiguousarray(f.rgb[:, :, ::-1]) for f in frames]
        if args.wait_subscribers > 0:
            log.info(f"waiting for {args.wait_subscribers} subscriber(s) on {pub_img.topic_name}")
            t0 = time.monotonic()
            while rclpy.ok() and pub_img.get_subscription_count() < args.wait_subscribers:
                if args.wait_timeout > 0 and time.monotonic() - t0 > args.wait_timeout:
                    log.error(f"only {pub_img.get_subscription_count()} of {args.wait_subscribers} subscribers on "
                              f"{pub_img.topic_name} after {args.wait_timeout:g} s; giving up")
                    return 3
                rclpy.spin_once(node, timeout_sec=0.1)
            time.sleep(0.5)  # let the new subscription finish matching every publisher
        log.info(f"publishing {total} frames of {camera.width}x{camera.height} at {args.rate:g} Hz on "
                 f"{pub_img.topic_name} (+ camera_info{'' if pub_gt is None else ', ground_truth/depth'})")
        period = 1.0 / args.rate
        sent: List[list] = []
        t_start = time.monotonic()
        for i in range(total):
            target = t_start + i * period
            while True:
                now = time.monotonic()
                if now >= target:
                    break
                time.sleep(min(0.02, target - now))
            if not rclpy.ok():
                break
            f = frames[i % len(frames)]
            stamp = node.get_clock().now().to_msg()
            header = msgs.copy_header(None, args.frame_id)
            header.stamp = stamp
            pub_img.publish(msgs.array_to_image_msg(imgs[i % len(frames)], args.encoding, header))
            pub_info.publish(msgs.camera_info_msg(camera, header))
            if pub_gt is not None:
                pub_gt.publish(msgs.array_to_image_msg(f.depth, "32FC1", header))
            sent.append([stamp.sec * 1_000_000_000 + stamp.nanosec, f.index, f.scene, time.monotonic() - t_start])
        elapsed = sent[-1][3] - sent[0][3] if len(sent) > 1 else 0.0
        rate = (len(sent) - 1) / elapsed if elapsed > 0 else None
        jitter = None
        if len(sent) > 2:
            gaps = np.diff([s[3] for s in sent])
            jitter = float(np.max(np.abs(gaps - period)) * 1e3)
        stats = {"published": len(sent), "rate_requested_hz": args.rate, "rate_hz": rate,
                 "max_period_error_ms": jitter, "width": camera.width, "height": camera.height,
                 "camera": {"fx": camera.fx, "fy": camera.fy, "cx": camera.cx, "cy": camera.cy},
                 "frames": [[s[0], s[1], s[2]] for s in sent]}
        pub_done.publish(String(data=json.dumps(stats)))
        if args.stats:
            Path(args.stats).write_text(json.dumps(stats, indent=1) + "\n")
        log.info(f"published {len(sent)} frames at {rate or 0:.2f} Hz (requested {args.rate:g} Hz)")
        t_end = time.monotonic() + max(0.0, args.linger)
        while rclpy.ok() and time.monotonic() < t_end:
            rclpy.spin_once(node, timeout_sec=0.1)
    except KeyboardInterrupt:
        code = 130
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
