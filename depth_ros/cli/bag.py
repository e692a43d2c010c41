"""``depth-ros bag``: rosbag2 in -> rosbag2 out with the node's outputs at the input stamps.

The frames go through the same pipeline as in ``depth_node`` and the messages come from the same
builder (``depth_ros.msgs`` with the ``rosbags`` kit), so the bag holds what the node would publish.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Dict, List, Optional

from depth_ros import bag as B
from depth_ros import files as F
from depth_ros import msgs
from depth_ros.cli.common import CliError, add_model_options, focal_text, log_fn, open_session, progress
from depth_ros.core.camera import CameraInfoError
from depth_ros.core.encodings import ImageEncodingError
from depth_ros.pipeline.frame import FrameSkipped
from depth_ros.pipeline.intrinsics import CameraInfoTracker
from depth_ros.pipeline.loading import one_line
from depth_ros.pipeline.motion import PoseBuffer, base_from_camera, pose_matrix
from depth_ros.pipeline.outputs import BY_KEY, CAMERA_INFO, COMPRESSED_IMAGE, IMAGE, ODOMETRY, bag_topics

KIT = msgs.ROSBAGS


def _strip_compressed(topic: str) -> str:
    t = topic.rstrip("/")
    return t[: -len("/compressed")] if t.endswith("/compressed") else t


def sibling_info_topic(image_topic: str) -> str:
    t = _strip_compressed(image_topic)
    parent = t.rsplit("/", 1)[0] if "/" in t else ""
    return f"{parent}/camera_info" if parent else "camera_info"


def output_ns(image_topic: str) -> str:
    t = _strip_compressed(image_topic)
    return t.rsplit("/", 1)[0] if "/" in t else ""


def _check_topics(args, topics: Dict[str, str], src: Path, log) -> Optional[str]:
    """Validate the image topic; return the CameraInfo topic (given, the image's sibling, or None)."""
    img_topic = args.image_topic
    if img_topic not in topics:
        imgs = [f"{t} ({m.rsplit('/', 1)[-1]})" for t, m in sorted(topics.items()) if m in (IMAGE, COMPRESSED_IMAGE)]
        raise CliError(f"topic '{img_topic}' is not in bag '{src}'; image topics there: {', '.join(imgs) or 'none'}")
    if topics[img_topic] not in (IMAGE, COMPRESSED_IMAGE):
        raise CliError(f"topic '{img_topic}' has type {topics[img_topic]}, expected sensor_msgs/msg/Image or "
                       "CompressedImage")
    info_topic = args.camera_info_topic
    if info_topic is None:
        guess = sibling_info_topic(img_topic)
        if not guess.startswith("/") and "/" + guess in topics:
            guess = "/" + guess
        info_topic = guess if topics.get(guess) == CAMERA_INFO else None
        if info_topic:
            log(f"using camera info topic '{info_topic}'")
    elif info_topic not in topics:
        infos = [t for t, m in sorted(topics.items()) if m == CAMERA_INFO]
        raise CliError(f"topic '{info_topic}' is not in bag '{src}'; CameraInfo topics there: "
                       f"{', '.join(infos) or 'none'}")
    elif topics[info_topic] != CAMERA_INFO:
        raise CliError(f"topic '{info_topic}' has type {topics[info_topic]}, expected sensor_msgs/msg/CameraInfo")
    return info_topic


def _odometry_topic(args, topics: Dict[str, str]) -> Optional[str]:
    """The Odometry topic for --scale-stabilization odometry (given, or the bag's only one)."""
    if args.scale_stabilization != "odometry":
        return None
    odoms = sorted(t for t, m in topics.items() if m == ODOMETRY)
    topic = args.odometry_topic
    if topic is None:
        if len(odoms) != 1:
            raise CliError("--scale-stabilization odometry: give --odometry-topic; nav_msgs/Odometry topics in the "
                           f"bag: {', '.join(odoms) or 'none'}")
        topic = odoms[0]
    if topics.get(topic) != ODOMETRY:
        raise CliError(f"--odometry-topic '{topic}' is not a nav_msgs/msg/Odometry topic of the bag; there: "
                       f"{', '.join(odoms) or 'none'}")
    return topic


def _read_poses(reader, topic: Optional[str]) -> Optional[PoseBuffer]:
    if topic is None:
        return None
    ts = B.typestore()
    poses = PoseBuffer(keep=10 ** 7)
    for conn, _t, raw in reader.messages(connections=[c for c in reader.connections if c.topic == topic]):
        msg = ts.deserialize_cdr(raw, conn.msgtype)
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        poses.add(msgs.stamp_ns(msg.header), pose_matrix((p.x, p.y, p.z), (q.x, q.y, q.z, q.w)))
    return poses


def _read_camera_infos(reader, info_topic: Optional[str], log) -> CameraInfoTracker:
    """All CameraInfo of the bag (small), by frame_id and stamp, as the node pairs them."""
    tracker = CameraInfoTracker(keep=None)
    if info_topic is None:
        return tracker
    ts = B.typestore()
    for conn, t_ns, raw in reader.messages(connections=[c for c in reader.connections if c.topic == info_topic]):
        msg = ts.deserialize_cdr(raw, conn.msgtype)
        try:
            result = msgs.camera_from_info_msg(msg)
        except (CameraInfoError, ValueError) as exc:
            log(f"warning: invalid CameraInfo at {t_ns}: {one_line(exc)}")
            result = exc
        tracker.add(msg.header.frame_id, msgs.stamp_ns(msg.header), result)
    if tracker.empty:
        log(f"warning: no CameraInfo on '{info_topic}'")
    return tracker


class _Output:
    """The output bag: topics registered up front, input topics copied, one frame's messages written."""

    def __init__(self, args, dst: Path, storage: str, custom: Dict[str, str], out_topics: Dict[str, str]):
        try:
            self.writer = B.BagWriter(dst, storage=storage, custom=custom)
        except Exception as exc:
            raise CliError(f"cannot create output bag '{dst}': {one_line(exc)}") from None
        self.topics = out_topics
        self.args = args
        for key, topic in out_topics.items():
            self.writer.add_topic(topic, BY_KEY[key].msg_type)

    def write_frame(self, res, header, t_ns: int) -> None:
        for key, topic in self.topics.items():
            if key == "points" and self.args.no_points:
                continue
            message = msgs.output_msg(key, res, header, self.args.depth_encoding, kit=KIT)
            if message is not None:
                self.writer.write(topic, message, t_ns)


def run(args) -> int:
    from rosbags.rosbag2 import Reader

    log = log_fn(args.quiet)
    src, dst = Path(args.input), Path(args.output)
    if not src.exists():
        raise CliError(f"input bag '{src}' does not exist")
    if dst.exists():
        raise CliError(f"output bag '{dst}' already exists; choose a new path (rosbag2 writers never overwrite)")
    if args.depth_encoding not in ("32FC1", "16UC1"):
        raise CliError("--depth-encoding must be 32FC1 or 16UC1")
    try:
        reader = Reader(src)
        reader.open()
    except Exception as exc:
        raise CliError(f"cannot read rosbag2 '{src}': {one_line(exc)}") from None
    try:
        stats = _convert(args, reader, src, dst, log)
    finally:
        reader.close()
    _report(args, src, dst, stats)
    return 0


def _convert(args, reader, src: Path, dst: Path, log) -> dict:
    topics = {c.topic: c.msgtype for c in reader.connections}
    img_topic = args.image_topic
    info_topic = _check_topics(args, topics, src, log)
    n_images = sum(c.msgcount for c in reader.connections if c.topic == img_topic)
    if n_images == 0:
        raise CliError(f"topic '{img_topic}' in bag '{src}' has no messages")
    out_topics = bag_topics(args.output_ns if args.output_ns is not None else output_ns(img_topic))
    clash = [t for t in out_topics.values() if t in topics and args.copy != "none"]
    if clash:
        raise CliError(f"output topic(s) {', '.join(clash)} already exist in the input bag; pick another --output-ns")
    odom_topic = _odometry_topic(args, topics)
    sess = open_session(args, log)
    tracker = _read_camera_infos(reader, info_topic, log)
    poses = _read_poses(reader, odom_topic)
    mount = base_from_camera(args.camera_mount)
    if tracker.empty:
        sess.check_intrinsics()
    copy_topics = {"none": set(), "input": {img_topic} | ({info_topic} if info_topic else set()),
                   "all": set(topics)}[args.copy]
    custom = {"depth_ros.model": sess.name, "depth_ros.weights": sess.weights}
    if sess.random:
        custom["depth_ros.note"] = F.RANDOM_WEIGHTS_NOTE
    out = _Output(args, dst, args.storage or B.bag_storage(src), custom, out_topics)
    stats = {"processed": 0, "skipped": 0, "domains": [], "focals": [], "infer_s": 0.0, "t0": time.perf_counter(),
             "storage": args.storage or B.bag_storage(src), "model": sess.name, "weights": sess.weights,
             "random": sess.random}
    bar = progress(n_images, args)
    try:
        _register_copies(out.writer, reader, copy_topics, log)
        _frames(args, reader, sess, tracker, (poses, mount), out, copy_topics, stats, bar, log)
    except BaseException:
        bar.close()
        out.writer.close()
        if stats["processed"] == 0:  # nothing of value; leaving it would only block the next run
            shutil.rmtree(dst, ignore_errors=True)
        else:
            log(f"partial output bag kept: '{dst}' ({stats['processed']} frames)")
        raise
    bar.close()
    out.writer.close()
    if stats["processed"] == 0:
        shutil.rmtree(dst, ignore_errors=True)
        raise CliError(f"no frame of '{img_topic}' gave an output; no output written")
    stats["counts"] = out.writer.counts
    return stats


def _register_copies(writer, reader, copy_topics, log) -> None:
    for c in reader.connections:
        if c.topic in copy_topics:
            try:
                writer.add_topic(c.topic, c.msgtype, msgdef=c.msgdef.data if c.msgdef else None,
                                 rihs01=c.digest or None, qos=getattr(c.ext, "offered_qos_profiles", ()))
            except ValueError as exc:
                log(f"warning: not copying '{c.topic}': {one_line(exc)}")
                copy_topics.discard(c.topic)


def _frames(args, reader, sess, tracker: CameraInfoTracker, odometry, out: _Output, copy_topics, stats, bar,
            log) -> None:
    poses, mount = odometry
    ts = B.typestore()
    img_topic = args.image_topic
    wanted = [c for c in reader.connections if c.topic in copy_topics or c.topic == img_topic]
    said = set()
    for conn, t_ns, raw in reader.messages(connections=wanted):
        if conn.topic in copy_topics:
            out.writer.write_raw(conn.topic, out.writer.add_topic(conn.topic, conn.msgtype), raw, t_ns)
        if conn.topic != img_topic:
            continue
        bar.update(1)
        msg = ts.deserialize_cdr(raw, conn.msgtype)
        try:
            rgb = msgs.msg_to_rgb8(msg)
            h, w = rgb.shape[:2]
            info = tracker.status(msg.header.frame_id, msgs.stamp_ns(msg.header), w, h,
                                  missing=f"no CameraInfo in the bag for frame '{msg.header.frame_id}'")
            base = None if poses is None else poses.at(msgs.stamp_ns(msg.header))
            res = sess.processor.process(rgb, msg.header.frame_id, info, pose=None if base is None else base @ mount)
        except (ImageEncodingError, ValueError, FrameSkipped) as exc:
            stats["skipped"] += 1
            key = getattr(exc, "key", type(exc).__name__)
            if key not in said:  # once per kind of problem
                said.add(key)
                log(f"warning: skipping image at {t_ns}: {one_line(exc)}")
            continue
        for key, text in res.events + res.warnings:
            if key not in said:
                said.add(key)
                log(text)
        out.write_frame(res, msg.header, t_ns)
        stats["processed"] += 1
        stats["infer_s"] += res.timings["inference"]
        stats["domains"].append(res.domain)
        stats["focals"].append({"focal_px": float(res.camera.fx), "focal_source": res.source})


def _report(args, src: Path, dst: Path, st: dict) -> None:
    elapsed = time.perf_counter() - st["t0"]
    n = st["processed"]
    summary = {"command": "bag", "input": str(src), "output": str(dst), "storage": st["storage"],
               "model": st["model"], "weights": st["weights"], "random_weights": st["random"], "frames": n,
               "skipped": st["skipped"], "elapsed_s": elapsed, "fps": n / elapsed if elapsed > 0 else None,
               "inference_fps": n / st["infer_s"] if st["infer_s"] > 0 else None,
               "topics": st["counts"], "domains": st["domains"], "focal": st["focals"]}
    lines: List[str] = []
    if st["random"]:
        lines.append(f"*** {F.RANDOM_WEIGHTS_NOTE} ***")
    lines.append(f"frames: {n} in {elapsed:.1f} s = {summary['fps'] or 0:.2f} frames/s -> {dst} ({st['storage']})"
                 + (f"; {st['skipped']} skipped" if st["skipped"] else ""))
    lines.append("topics: " + ", ".join(f"{t} [{c}]" for t, c in sorted(st["counts"].items())))
    lines.append(f"focal: {focal_text([dict(f, name=str(i)) for i, f in enumerate(st['focals'])])}")
    doms = [d for d in st["domains"] if d]
    if doms:
        lines.append("domains: " + ", ".join(f"{d}: {doms.count(d)}" for d in sorted(set(doms))))
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=1, default=str) + "\n")
    print("\n".join(lines))


def add_parser(sub) -> None:
    pb = sub.add_parser("bag", help="rosbag2 in -> rosbag2 out with depth/image, camera_info, confidence, points",
                        description="Reads Image or CompressedImage (+ CameraInfo) from a rosbag2 (sqlite3 or mcap) "
                                    "and writes a new bag with <ns>/depth/image, <ns>/depth/camera_info, "
                                    "<ns>/depth/confidence, <ns>/depth/points at the input stamps, as depth_node "
                                    "would publish them.")
    pb.add_argument("input", metavar="IN", help="input rosbag2 folder")
    pb.add_argument("output", metavar="OUT", help="output rosbag2 folder (must not exist)")
    pb.add_argument("--image-topic", required=True, help="sensor_msgs/Image or CompressedImage topic")
    pb.add_argument("--camera-info-topic", default=None,
                    help="sensor_msgs/CameraInfo topic (default: the image topic's sibling camera_info, if present)")
    pb.add_argument("--output-ns", default=None,
                    help="namespace of the output topics (default: the image topic's namespace, e.g. /camera)")
    pb.add_argument("--copy", choices=("none", "input", "all"), default="input",
                    help="copy the input image/camera_info topics (default), every topic, or none")
    pb.add_argument("--storage", choices=("sqlite3", "mcap"), default=None, help="default: as the input bag")
    pb.add_argument("--depth-encoding", default="32FC1", help="32FC1 metres (default) or 16UC1 millimetres")
    pb.add_argument("--no-points", action="store_true", help="do not write depth/points")
    pb.add_argument("--summary", default=None, help="also write the summary as JSON here")
    pb.add_argument("--odometry-topic", default=None,
                    help="nav_msgs/Odometry topic for --scale-stabilization odometry (default: the bag's only one)")
    pb.add_argument("--camera-mount", type=float, nargs=6, default=[0.0] * 6, metavar=("X", "Y", "Z", "R", "P", "YAW"),
                    help="the camera's pose in the odometry child frame (m, rad), as the node's camera_mount")
    add_model_options(pb)
    pb.set_defaults(func=run)
