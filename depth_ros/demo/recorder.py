"""``depth_recorder``: records depth_node's outputs to a rosbag2 and writes pictures, PLY clouds and a summary.

Subscribes:

* outputs of depth_node: ``<depth-ns>/depth/image``, ``.../depth/camera_info``, ``.../depth/confidence``,
  ``.../depth/points``, ``.../depth/colorized`` (reliable, like the node's publishers) and ``/diagnostics``;
* the camera: ``<camera-ns>/image_raw``, ``camera_info`` and ``ground_truth/depth`` (best effort) and
  ``sample_camera/done`` (the sample camera's end-of-stream message with its stamps and rate).

Every message goes into ``OUT/bag`` (rosbag2, written with rosbags from the serialized messages).
It stops once the camera is done and the depth of its last frame arrived (or nothing came for
``--drain-timeout`` s), then writes into OUT:

* ``frames/NNNN_side.png``: input | depth | confidence | ground truth | colour bar, per output frame;
* ``cloud_first.ply`` / ``cloud_last.ply``: depth/points of the first and last output frames;
* ``summary.json`` / ``summary.txt``: input and output rates, latency (stamp -> depth received),
  dropped frames, AbsRel and delta1 against the ground truth, the node's diagnostics.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from depth_ros import files as O
from depth_ros import msgs as M
from depth_ros.pipeline.outputs import OUTPUT_TOPICS

INPUT_TOPICS = ("image_raw", "camera_info", "ground_truth/depth")
DONE_TOPIC = "sample_camera/done"
_KEEP = 400  # stamps kept in memory per kind


def _stats(values: Sequence[float]) -> Dict[str, Optional[float]]:
    if not values:
        return {"n": 0, "mean": None, "p50": None, "max": None, "min": None}
    a = np.asarray(values, np.float64)
    return {"n": int(a.size), "mean": float(a.mean()), "p50": float(np.median(a)), "max": float(a.max()),
            "min": float(a.min())}


def _rate(times: Sequence[float]) -> Optional[float]:
    if len(times) < 2:
        return None
    span = max(times) - min(times)
    return (len(times) - 1) / span if span > 0 else None


class _Cache(OrderedDict):
    def put(self, key, value):
        self[key] = value
        while len(self) > _KEEP:
            self.popitem(last=False)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="depth_recorder", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="out/demo", help="output folder")
    ap.add_argument("--camera-ns", default="/camera", help="namespace of the sample camera's topics")
    ap.add_argument("--depth-ns", default="", help="namespace of depth_node (its outputs are <ns>/depth/...)")
    ap.add_argument("--storage", choices=("sqlite3", "mcap"), default="sqlite3")
    ap.add_argument("--random-weights", action="store_true",
                    help="mark every output 'random weights: not a depth result'")
    ap.add_argument("--drain-timeout", type=float, default=60.0,
                    help="after the camera is done, stop when no depth arrived for this many seconds")
    ap.add_argument("--timeout", type=float, default=0.0, help="stop after this many seconds in total (0 = never)")
    ap.add_argument("--max-pictures", type=int, default=40, help="side-by-side pictures at most (evenly spaced)")
    ap.add_argument("--eval-max-depth", type=float, default=80.0,
                    help="ground truth beyond this (m) is not evaluated (KITTI-style cap)")
    ap.add_argument("--no-bag", action="store_true", help="do not write the rosbag2")
    ap.add_argument("--quiet", action="store_true", help="no per-frame log lines")
    return ap


class Recorder:
    def __init__(self, node, args):
        import rclpy.serialization  # noqa: F401
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from std_msgs.msg import String

        self.node = node
        self.args = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.t0 = time.time()
        self.types = {"depth/image": Image, "depth/camera_info": CameraInfo, "depth/confidence": Image,
                      "depth/points": PointCloud2, "depth/colorized": Image, "image_raw": Image,
                      "camera_info": CameraInfo, "ground_truth/depth": Image, "/diagnostics": DiagnosticArray,
                      DONE_TOPIC: String}
        self.bag = None
        if not args.no_bag:
            from depth_ros.bag import BagWriter

            bag_dir = self.out / "bag"
            if bag_dir.exists():
                import shutil
                shutil.rmtree(bag_dir)
            custom = {"depth_ros.recorder": "depth_recorder"}
            if args.random_weights:
                custom["depth_ros.note"] = O.RANDOM_WEIGHTS_NOTE
            self.bag = BagWriter(bag_dir, storage=args.storage, custom=custom)
        self.arrivals: Dict[str, List[tuple]] = {}  # topic -> [(wall time, stamp ns)]
        self.inputs = _Cache()
        self.gts = _Cache()
        self.depths = _Cache()
        self.confs = _Cache()
        self.points: Dict[str, Any] = {}  # "first"/"last" -> (stamp, raw bytes)
        self.depth_info: Optional[dict] = None
        self.diag: Dict[str, str] = {}
        self.diag_domains: List[str] = []
        self.done: Optional[dict] = None
        self.done_at: Optional[float] = None
        self.last_depth_at: Optional[float] = None
        self.finished = False
        self._grace_until: Optional[float] = None
        self.reason = ""
        reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                              durability=DurabilityPolicy.VOLATILE)
        done_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                              durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.subs = []
        cam_ns = "/" + args.camera_ns.strip("/") if args.camera_ns.strip("/") else ""
        depth_ns = "/" + args.depth_ns.strip("/") if args.depth_ns.strip("/") else ""
        self.names = {t: f"{depth_ns}/{t}" for t in OUTPUT_TOPICS}
        self.names.update({t: f"{cam_ns}/{t}" for t in INPUT_TOPICS + (DONE_TOPIC,)})
        self.names["/diagnostics"] = "/diagnostics"
        for topic in OUTPUT_TOPICS:
            self._sub(topic, reliable)
        for topic in INPUT_TOPICS:
            self._sub(topic, qos_profile_sensor_data)
        self._sub("/diagnostics", 10)
        self._sub(DONE_TOPIC, done_qos)
        self.timer = node.create_timer(0.2, self._check_finished)

    # ------------------------------------------------------------------------------------------
    def _sub(self, topic: str, qos) -> None:
        mtype = self.types[topic]
        self.subs.append(self.node.create_subscription(mtype, self.names[topic],
                                                       lambda raw, t=topic: self._on_raw(t, raw), qos, raw=True))

    def _on_raw(self, topic: str, raw: bytes) -> None:
        from rclpy.serialization import deserialize_message

        now = time.time()
        mtype = self.types[topic]
        if self.bag is not None and topic != DONE_TOPIC:
            name = self.names[topic]
            conn = self.bag.add_topic(name, mtype.__module__.split(".")[0] + "/msg/" + mtype.__name__)
            self.bag.write_raw(name, conn, raw, int(now * 1e9))
        if topic in ("depth/points",):
            # only the header is needed now; keep the bytes of the first and the latest cloud
            msg = deserialize_message(raw, mtype)
            stamp = M.stamp_ns(msg.header)
            self._arrive(topic, now, stamp)
            if "first" not in self.points:
                self.points["first"] = (stamp, raw)
            self.points["last"] = (stamp, raw)
            return
        msg = deserialize_message(raw, mtype)
        if topic == DONE_TOPIC:
            self.done = json.loads(msg.data)
            self.done_at = now
            self._log(f"camera done: {self.done['published']} frames published at "
                      f"{(self.done.get('rate_hz') or 0):.2f} Hz")
            return
        if topic == "/diagnostics":
            for st in msg.status:
                if "depth" in st.name:
                    self.diag = {kv.key: kv.value for kv in st.values}
                    self.diag["_level"] = str(int.from_bytes(st.level, "little") if isinstance(st.level, bytes)
                                              else int(st.level))
                    self.diag["_message"] = st.message
            return
        stamp = M.stamp_ns(msg.header)
        self._arrive(topic, now, stamp)

        if topic == "image_raw":
            self.inputs.put(stamp, M.msg_to_rgb8(msg))
        elif topic == "ground_truth/depth":
            self.gts.put(stamp, M.depth_from_image_msg(msg))
        elif topic == "depth/image":
            self.depths.put(stamp, M.depth_from_image_msg(msg))
            self.last_depth_at = now
            n = len(self.arrivals["depth/image"])
            dom = self.diag.get("domain") or ""
            if dom:
                self.diag_domains.append(dom)
            self._log(f"depth frame {n}: latency {(now - stamp / 1e9) * 1e3:.0f} ms (stamp -> received)"
                      + (f", node domain {dom}" if dom else ""))
        elif topic == "depth/confidence":
            self.confs.put(stamp, M.image_msg_to_array(msg).astype(np.float32))
        elif topic == "depth/camera_info":
            self.depth_info = {"fx": float(msg.k[0]), "fy": float(msg.k[4]), "cx": float(msg.k[2]),
                               "cy": float(msg.k[5]), "width": int(msg.width), "height": int(msg.height)}

    def _arrive(self, topic: str, now: float, stamp: int) -> None:
        self.arrivals.setdefault(topic, []).append((now, stamp))

    def _log(self, text: str) -> None:
        if not self.args.quiet:
            self.node.get_logger().info(text)

    def _check_finished(self) -> None:
        if self.finished:
            return
        now = time.time()
        if self.args.timeout > 0 and now - self.t0 > self.args.timeout:
            self.finished, self.reason = True, f"timeout ({self.args.timeout:g} s)"
            return
        if self.done is None:
            return
        frames = self.done.get("frames") or []
        last_stamp = frames[-1][0] if frames else None
        if last_stamp is not None and last_stamp in self.depths:
            # the node publishes depth/image first: give the frame's other outputs a moment to arrive
            if self._grace_until is None:
                self._grace_until = now + 3.0
            complete = all(any(st == last_stamp for _, st in self.arrivals.get(t, ())) for t in self.arrivals
                           if t.startswith("depth/"))
            if complete or now >= self._grace_until:
                self.finished, self.reason = True, "depth of the last camera frame received"
            return
        since = now - max(self.done_at or now, self.last_depth_at or 0)
        if since > self.args.drain_timeout:
            self.finished, self.reason = True, f"no depth for {self.args.drain_timeout:g} s after the camera stopped"

    # ------------------------------------------------------------------------------------------
    def finish(self) -> dict:
        if self.bag is not None:
            self.bag.close()
        summary = self._summary()
        self._pictures(summary)
        self._plys(summary)
        if self.args.random_weights:
            O.write_marker(self.out, "depth_node ran with weights:=random (see summary.txt)")
        (self.out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
        (self.out / "summary.txt").write_text(format_summary(summary) + "\n")
        return summary

    def _summary(self) -> dict:
        arr = self.arrivals
        depth_arr = arr.get("depth/image", [])
        in_arr = arr.get("image_raw", [])
        published = self.done.get("published") if self.done else None
        latencies = [(t - s / 1e9) * 1e3 for t, s in depth_arr]
        scene_of = {}
        if self.done:
            scene_of = {int(s): (int(i), sc) for s, i, sc in self.done.get("frames", [])}
        frames = []
        per_scene: Dict[str, List[dict]] = {}
        for t, s in depth_arr:
            idx, scene = scene_of.get(s, (None, None))
            rec = {"stamp_ns": s, "index": idx, "scene": scene, "latency_ms": (t - s / 1e9) * 1e3}
            d = self.depths.get(s)
            g = self.gts.get(s)
            if d is not None and g is not None:
                m = O.depth_metrics(d, g, max_depth=self.args.eval_max_depth)
                rec.update({k: m[k] for k in ("abs_rel", "delta1", "rmse", "coverage")})
                if scene and m["abs_rel"] is not None:
                    per_scene.setdefault(scene, []).append(m)
            if d is not None:
                fin = d[np.isfinite(d)]
                rec["depth_median_m"] = float(np.median(fin)) if fin.size else None
            frames.append(rec)
        evals = [f for f in frames if f.get("abs_rel") is not None]
        metrics = {
            "frames_evaluated": len(evals),
            "abs_rel": float(np.mean([f["abs_rel"] for f in evals])) if evals else None,
            "delta1": float(np.mean([f["delta1"] for f in evals])) if evals else None,
            "per_scene": {k: {"frames": len(v), "abs_rel": float(np.mean([m["abs_rel"] for m in v])),
                              "delta1": float(np.mean([m["delta1"] for m in v]))} for k, v in per_scene.items()},
            "eval_max_depth_m": self.args.eval_max_depth,
        }
        outputs = {t: len(arr.get(t, [])) for t in OUTPUT_TOPICS}
        n_out = len(depth_arr)
        summary = {
            "random_weights": bool(self.args.random_weights),
            "note": O.RANDOM_WEIGHTS_NOTE if self.args.random_weights else None,
            "stop_reason": self.reason or "interrupted",
            "camera": {"published": published,
                       "rate_requested_hz": self.done.get("rate_requested_hz") if self.done else None,
                       "rate_hz": self.done.get("rate_hz") if self.done else None,
                       "max_period_error_ms": self.done.get("max_period_error_ms") if self.done else None,
                       "received_by_recorder": len(in_arr), "receive_rate_hz": _rate([t for t, _ in in_arr])},
            "outputs": {"messages": outputs, "depth_frames": n_out,
                        "output_rate_hz": _rate([t for t, _ in depth_arr])},
            "dropped_frames": (published - n_out) if published is not None else None,
            "latency_ms": _stats(latencies),
            "metrics": metrics,
            "depth_camera_info": self.depth_info,
            "node_diagnostics": {k: v for k, v in self.diag.items()},
            "node_domains_seen": {d: self.diag_domains.count(d) for d in sorted(set(self.diag_domains))},
            "frames": frames,
            "bag": str(self.bag.path) if self.bag is not None else None,
            "bag_messages": dict(self.bag.counts) if self.bag is not None else {},
        }
        return summary

    def _pictures(self, summary: dict) -> None:
        from depth_ros.core.colormap import colorize_depth, depth_range

        frames = summary["frames"]
        if not frames:
            return
        pdir = self.out / "frames"
        pdir.mkdir(exist_ok=True)
        k = max(1, int(self.args.max_pictures))
        pick = frames if len(frames) <= k else [frames[int(round(i))] for i in np.linspace(0, len(frames) - 1, k)]
        written = []
        for rec in pick:
            s = rec["stamp_ns"]
            d = self.depths.get(s)
            if d is None:
                continue
            rgb = self.inputs.get(s)
            if rgb is None:
                rgb = np.zeros(d.shape + (3,), np.uint8)
            g = self.gts.get(s)
            lo, hi = depth_range(g if g is not None and np.isfinite(g).any() else d)
            extra = []
            if g is not None:
                extra.append(("ground truth", colorize_depth(g, lo, hi)))
            cap = f"frame {rec['index'] if rec['index'] is not None else '?'} ({rec['scene'] or '?'})" \
                  f"  latency {rec['latency_ms'] / 1e3:.2f}s"
            if rec.get("abs_rel") is not None:
                cap += f"  AbsRel {rec['abs_rel']:.3f}  d1 {rec['delta1']:.2f}"
            pic = O.side_by_side(rgb, d, self.confs.get(s), lo, hi, cap, self.args.random_weights, extra)
            name = f"{rec['index'] if rec['index'] is not None else len(written):04d}_side.png"
            O.write_rgb_png(pdir / name, pic)
            written.append(f"frames/{name}")
        summary["pictures"] = written

    def _plys(self, summary: dict) -> None:
        from rclpy.serialization import deserialize_message
        from sensor_msgs.msg import PointCloud2


        written = {}
        note = [O.RANDOM_WEIGHTS_NOTE] if self.args.random_weights else []
        seen = set()
        for which in ("first", "last"):
            item = self.points.get(which)
            if item is None or item[0] in seen:
                continue
            seen.add(item[0])
            msg = deserialize_message(item[1], PointCloud2)
            pts, rgb = M.cloud_msg_to_arrays(msg)
            name = f"cloud_{which}.ply"
            n = O.write_ply(self.out / name, pts, rgb, note + [
                f"depth_ros demo: depth/points stamp {item[0]} frame {msg.header.frame_id} (optical: x right, "
                "y down, z forward) units=m"])
            written[name] = n
        summary["ply"] = written


def _f(v, fmt="{:.2f}", none="n/a"):
    return none if v is None else fmt.format(v)


def _num(v, fmt="{:.0f}"):
    """A diagnostics value (string) as a rounded number when it is one."""
    try:
        return fmt.format(float(v))
    except (TypeError, ValueError):
        return "?" if v in (None, "") else str(v)


def format_summary(s: dict) -> str:
    lines = []
    if s.get("random_weights"):
        lines.append(f"*** {O.RANDOM_WEIGHTS_NOTE.upper()} ***")
    cam, out = s["camera"], s["outputs"]
    lines.append(f"input:   {cam['published'] if cam['published'] is not None else '?'} frames published at "
                 f"{_f(cam['rate_hz'])} Hz (requested {_f(cam['rate_requested_hz'], '{:g}')} Hz, worst period error "
                 f"{_f(cam['max_period_error_ms'], '{:.1f}')} ms); recorder received {cam['received_by_recorder']}")
    lines.append(f"output:  {out['depth_frames']} depth frames at {_f(out['output_rate_hz'])} Hz; messages: "
                 + ", ".join(f"{k} {v}" for k, v in out["messages"].items()))
    lines.append(f"dropped: {_f(s['dropped_frames'], '{}')} frames (published - depth frames; depth_node keeps only the "
                 f"newest frame while the network is busy)")
    lat = s["latency_ms"]
    lines.append(f"latency: mean {_f(lat['mean'], '{:.0f}')} ms, median {_f(lat['p50'], '{:.0f}')} ms, "
                 f"max {_f(lat['max'], '{:.0f}')} ms (camera stamp -> depth received)")
    m = s["metrics"]
    if m["frames_evaluated"]:
        per = "; ".join(f"{k}: AbsRel {v['abs_rel']:.3f}, delta1 {v['delta1']:.3f} ({v['frames']} frames)"
                        for k, v in sorted(m["per_scene"].items()))
        lines.append(f"accuracy vs ground truth: AbsRel {m['abs_rel']:.3f}, delta1 {m['delta1']:.3f} over "
                     f"{m['frames_evaluated']} frames" + (f" [{per}]" if per else "")
                     + (" -- meaningless with random weights" if s.get("random_weights") else ""))
    else:
        lines.append("accuracy vs ground truth: n/a (no frame with ground truth)")
    d = s.get("node_diagnostics") or {}
    if d:
        lines.append(f"depth_node: model {d.get('model', '?')} on {d.get('device', '?')}, inference "
                     f"{_num(d.get('inference_ms_mean'))} ms mean, focal {_num(d.get('focal_px'), '{:.1f}')} px "
                     f"({d.get('focal_source', '?')}), frames_dropped {d.get('frames_dropped', '?')} "
                     f"(diagnostics)")
    if s.get("node_domains_seen"):
        lines.append("router domain (diagnostics at each depth frame): "
                     + ", ".join(f"{k} x{v}" for k, v in s["node_domains_seen"].items()))
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.utilities import remove_ros_args

    full = list(sys.argv if argv is None else ["depth_recorder"] + list(argv))
    args = build_parser().parse_args(remove_ros_args(full)[1:])
    rclpy.init(args=full)
    node = rclpy.create_node("depth_recorder")
    rec = None
    code = 0
    try:
        rec = Recorder(node, args)
        node.get_logger().info(f"recording to {rec.out}")
        while rclpy.ok() and not rec.finished:
            rclpy.spin_once(node, timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        if rec is not None:
            rec.reason = "interrupted"
        code = 130
    finally:
        if rec is not None:
            try:
                summary = rec.finish()
                node.get_logger().info(f"stopped: {summary['stop_reason']}; wrote {rec.out}/summary.txt")
            except Exception as exc:  # still report, then fail
                print(f"depth_recorder: error: cannot write the outputs: {type(exc).__name__}: {exc}",
                      file=sys.stderr)
                code = code or 1
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
