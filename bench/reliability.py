#!/usr/bin/env python3
"""Reliability report of depth_node across processes: fuzz, overload soak, faults; one table.

    .venv/bin/python bench/reliability.py              # about 10 minutes (soak: 6 minutes)
    .venv/bin/python bench/reliability.py --quick      # about 2 minutes
    .venv/bin/python bench/reliability.py --minutes 20 # longer soak and more random fuzz cases

Every part starts ``depth_node`` as its own process (the console script, as launch does) and talks to
it from this process (rclpy, isolated ROS_DOMAIN_ID, shared-memory Fast DDS profile) or from consumer
processes that set no Fast DDS profile at all:

* fuzz: the seeded malformed inputs of ``test/fuzz_inputs.py`` (Image, CompressedImage, CameraInfo)
  as messages, each followed by a good frame whose outputs must be exact (``EdgeCaseDepthModel``: depth
  is a known function of the pixels); node RSS after a warm-up pass and after the last pass.
* soak: 640x480 at 30 Hz (reliable) into a 200 ms model; stamp-to-output latency p50/p99 per window,
  RSS growth after warm-up, every frame accounted for (diagnostics counters).
* faults: CameraInfo stops and resumes, resolution changes, two cameras on one topic, subscribers
  come and go under ``lazy``, parameter changes under load, an exception in the model for one frame,
  a stalled RELIABLE subscriber, a consumer without a Fast DDS profile, broken weights.

``python bench/reliability.py consume NS SECONDS`` is the profile-less consumer process used here and by
``test/test_reliability.py``; ``python bench/reliability.py camera NS`` is the soak's camera (RELIABLE,
writer history 100, so that no frame is lost between the processes).
"""
from __future__ import annotations

import argparse
import array
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO, REPO / "test"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import ros_utils as ru  # noqa: E402

OUT4 = ("depth/image", "depth/camera_info", "depth/confidence", "depth/points")
PROFILE_VAR = "FASTDDS_DEFAULT_PROFILES_FILE"


# ------------------------------------------------------------------------------------------------
# processes
# ------------------------------------------------------------------------------------------------
def child_env(domain_id: int, profile: bool = True, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Environment of a child ROS process; ``profile=False``: no Fast DDS profile (a user's fresh shell)."""
    env = ru.subprocess_env(domain_id, extra=extra, shm=profile)
    if not profile:
        env.pop(PROFILE_VAR, None)
    return env


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def start_node(domain_id: int, params: Dict[str, object], namespace: str, name: str = "depth_node",
               profile: bool = True, timeout: float = 90.0) -> ru.Proc:
    """depth_node in its own process; waits for "ready:" (raises with the log if it does not come)."""
    proc = ru.Proc(ru.node_command(params=params, namespace=namespace), env=child_env(domain_id, profile),
                   name=name)
    if not proc.wait_output("ready:", timeout):
        log = proc.output()
        proc.stop()
        raise RuntimeError(f"{name} did not start:\n{log[-3000:]}")
    return proc


def error_lines(log: str) -> List[str]:
    return [line for line in log.splitlines() if line.startswith("[ERROR]")]


class Diag:
    """The newest /diagnostics values of one node (by its fully qualified name)."""

    def __init__(self, ros, fq_name: str):
        from diagnostic_msgs.msg import DiagnosticArray

        self.name = f"depth_ros: {fq_name}"
        self.col = ros.collect(DiagnosticArray, "/diagnostics")

    def latest(self) -> Dict[str, str]:
        with self.col._lock:
            msgs_ = list(self.col.messages[-50:])
        for m in reversed(msgs_):
            for s in m.status:
                if s.name == self.name:
                    v = {kv.key: kv.value for kv in s.values}
                    v["_level"] = s.level[0] if isinstance(s.level, bytes) else int(s.level)
                    v["_message"] = s.message
                    return v
        return {}

    def wait(self, predicate, timeout: float) -> Dict[str, str]:
        got: List[Dict[str, str]] = []

        def ok():
            v = self.latest()
            if v and predicate(v):
                got.append(v)
                return True
            return False
        ru.wait_for(ok, timeout, 0.05)
        return got[0] if got else self.latest()


def counts_add_up(v: Dict[str, str]) -> bool:
    """frames_in = processed + dropped + skipped + waiting for CameraInfo + without subscribers."""
    k = ("frames_processed", "frames_dropped", "frames_skipped", "frames_waiting_camera_info",
         "frames_without_subscribers")
    return bool(v) and int(v["frames_in"]) == sum(int(v[x]) for x in k)


# ------------------------------------------------------------------------------------------------
# the consumer without a Fast DDS profile (its own process)
# ------------------------------------------------------------------------------------------------
def consume_main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(prog="reliability.py consume")
    ap.add_argument("namespace")
    ap.add_argument("seconds", type=float)
    args = ap.parse_args(argv)
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    rclpy.init()
    node = rclpy.create_node(f"plain_consumer_{os.getpid()}")
    counts: Dict[str, int] = {t: 0 for t in OUT4}
    types = {"depth/image": Image, "depth/camera_info": CameraInfo, "depth/confidence": Image,
             "depth/points": PointCloud2}

    def cb(topic):
        def _cb(msg):
            counts[topic] += 1
        return _cb
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)  # RViz / Nav2 style, nothing else set
    subs = [node.create_subscription(types[t], f"{args.namespace}/{t}", cb(t), qos) for t in OUT4]
    print(json.dumps({"ready": True, "profile": os.environ.get(PROFILE_VAR)}), flush=True)
    t0 = time.monotonic()
    next_report = t0 + 0.5
    try:
        while time.monotonic() - t0 < args.seconds:
            rclpy.spin_once(node, timeout_sec=0.05)
            if time.monotonic() >= next_report:
                next_report += 0.5
                print(json.dumps({"t": round(time.monotonic() - t0, 2), "counts": counts}), flush=True)
    except KeyboardInterrupt:
        pass
    print(json.dumps({"t": round(time.monotonic() - t0, 2), "counts": counts, "done": True}), flush=True)
    del subs
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def camera_main(argv: List[str]) -> int:
    """The soak's camera: like ``ros_utils.py publish`` but RELIABLE with a deep writer history (100), so
    that no frame is lost between the processes and each one can be accounted for in the node."""
    ap = argparse.ArgumentParser(prog="reliability.py camera")
    ap.add_argument("namespace")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--count", type=int, default=300)
    args = ap.parse_args(argv)
    import rclpy
    from rclpy.duration import Duration
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    rclpy.init()
    node = rclpy.create_node(f"soak_camera_{os.getpid()}")
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    img_pub = node.create_publisher(Image, f"{args.namespace}/image", qos)
    info_pub = node.create_publisher(CameraInfo, f"{args.namespace}/camera_info", qos)
    ru.wait_for(lambda: img_pub.get_subscription_count() > 0 and info_pub.get_subscription_count() > 0, 60.0)
    frames = [ru.image_msg(args.width, args.height, "rgb8", seed=i) for i in range(4)]
    info = ru.camera_info_msg(args.width, args.height, 0.8 * args.width)
    n, t_next = 0, time.monotonic()
    try:
        while n < args.count:
            stamp = node.get_clock().now().to_msg()
            msg = frames[n % 4]
            msg.header.stamp = info.header.stamp = stamp
            info_pub.publish(info)
            img_pub.publish(msg)
            n += 1
            t_next += 1.0 / args.rate
            time.sleep(max(0.0, t_next - time.monotonic()))
        img_pub.wait_for_all_acked(Duration(seconds=10))
    except KeyboardInterrupt:
        pass
    print(f"published {n} frames", flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


class Consumer:
    """``consume`` in a child process (no Fast DDS profile unless asked); its counts from its output."""

    def __init__(self, domain_id: int, namespace: str, seconds: float, profile: bool = False, name="consumer"):
        cmd = [sys.executable, str(Path(__file__).resolve()), "consume", namespace, str(seconds)]
        self.proc = ru.Proc(cmd, env=child_env(domain_id, profile), name=name)

    def counts(self) -> Dict[str, int]:
        for line in reversed(self.proc.output().splitlines()):
            if line.startswith("{") and '"counts"' in line:
                try:
                    return json.loads(line)["counts"]
                except ValueError:
                    continue
        return {t: 0 for t in OUT4}

    def wait_all(self, n: int, timeout: float) -> bool:
        return ru.wait_for(lambda: min(self.counts().values()) >= n or not self.proc.alive(), timeout, 0.1) \
            and min(self.counts().values()) >= n

    def stop(self) -> None:
        self.proc.stop()
        self.proc.cleanup()


# ------------------------------------------------------------------------------------------------
# fuzz
# ------------------------------------------------------------------------------------------------
def case_msg(case: dict, frame_id: Optional[str] = None, stamp=None):
    """The rclpy message of a ``fuzz_inputs`` case (header overridden when given)."""
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image, RegionOfInterest

    kind = case["kind"]
    if kind == "image":
        m = Image(height=case["height"], width=case["width"], encoding=case["encoding"], step=case["step"],
                  is_bigendian=case["is_bigendian"])
        m.data = array.array("B", case["data"])
    elif kind == "compressed":
        m = CompressedImage(format=case["format"])
        m.data = array.array("B", case["data"])
    else:
        m = CameraInfo(width=case["width"], height=case["height"], distortion_model=case["distortion_model"],
                       binning_x=case["binning_x"], binning_y=case["binning_y"], roi=RegionOfInterest(**case["roi"]))
        m.d = array.array("d", [float(x) for x in case["d"]])
        m.k, m.r, m.p = (np.asarray(case[x], np.float64) for x in ("k", "r", "p"))
    m.header.frame_id = case["frame_id"] if frame_id is None else frame_id
    sec, nsec = case["stamp"] if stamp is None else stamp
    m.header.stamp.sec, m.header.stamp.nanosec = int(sec), int(nsec)
    return m


def expected_depth(rgb: np.ndarray, min_range: float = 0.1, max_range: float = 80.0) -> np.ndarray:
    """EdgeCaseDepthModel's depth of ``rgb`` after the outputs' validity rule (independent of the node)."""
    h, w = rgb.shape[:2]
    v, u = np.mgrid[0:h, 0:w]
    d = (0.05 + 100.0 * (v * w + u) / (h * w) + rgb[..., 2] / 2550.0).astype(np.float32)
    special = [-1.0, 0.0, np.nan, np.inf, -np.inf, 70.0, 65.5354, 65.5356]
    d[0, : len(special)] = np.asarray(special, np.float32)[:w]
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(d) & (d > 0) & (d >= min_range) & (d <= max_range)
    return np.where(ok, d, np.float32(np.nan))


FUZZ_W, FUZZ_H, FUZZ_FX, FUZZ_FRAME = 64, 48, 40.0, "fuzz_cam"


def fuzz(ros, compressed: bool, cases: List[dict], passes: int = 2, log=print) -> Dict[str, object]:
    """Send ``cases`` (``passes`` times) to a depth_node process, each followed by a good frame.

    Image cases go to a raw node, compressed ones to a ``image_transport:=compressed`` node (pass the
    right ones); CameraInfo cases are paired with a good image of their (overridden) stamp: those
    labelled ``error`` must give no output. Returns counts, failures and the node's RSS.
    """
    import cv2
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image

    from depth_ros import msgs

    ns = "/fuzz_c" if compressed else "/fuzz_r"
    params = {"model": "fake_models:EdgeCaseDepthModel", "lazy": False, "focal_estimator": "none",
              "camera_info_timeout": 0.0, "qos_input_reliability": "reliable", "qos_input_depth": 50,
              "diagnostics_period": 0.5}
    if compressed:
        params["image_transport"] = "compressed"
    node = start_node(ros.domain_id, params, ns, name="depth_node_fuzz")
    qos = ru.reliable_qos(50)
    img_pub = ros.publisher(CompressedImage if compressed else Image, f"{ns}/image" + ("/compressed" if compressed
                                                                                        else ""), qos)
    info_pub = ros.publisher(CameraInfo, f"{ns}/camera_info", qos)
    depth_col = ros.collect(Image, f"{ns}/depth/image", ru.reliable_qos(100))
    diag = Diag(ros, f"{ns}/depth_node")
    res: Dict[str, object] = {"inputs": 0, "images": 0, "good": 0, "good_exact": 0, "refused_ok": 0, "failures": [],
                              "crashed": False, "rss_mb": []}
    failures: List[str] = res["failures"]  # type: ignore[assignment]
    ru.wait_for(lambda: img_pub.get_subscription_count() > 0 and info_pub.get_subscription_count() > 0
                and depth_col.sub.get_publisher_count() > 0, 30.0)
    serial = [0]

    def next_stamp():
        serial[0] += 1
        return (100_000 + serial[0], 0)

    def good_image(stamp, seed):
        m = ru.image_msg(FUZZ_W, FUZZ_H, "rgb8", frame_id=FUZZ_FRAME, seed=seed)
        rgb = ru.pattern_image(FUZZ_W, FUZZ_H, seed)
        if compressed:
            ok, buf = cv2.imencode(".png", rgb[..., ::-1])
            m = CompressedImage(format="rgb8; png compressed bgr8")
            m.data = array.array("B", buf.tobytes())
            m.header.frame_id = FUZZ_FRAME
        m.header.stamp.sec, m.header.stamp.nanosec = stamp
        return m, rgb

    def output_for(stamp, timeout):
        found = []

        def ok():
            f = depth_col.find(lambda m: (m.header.stamp.sec, m.header.stamp.nanosec) == stamp)
            if f:
                found.append(f[-1])
                return True
            return False
        ru.wait_for(ok, timeout, 0.005)
        return found[0] if found else None

    def probe(label):
        """A good CameraInfo + image; its depth must arrive and be exact."""
        stamp = next_stamp()
        info = ru.camera_info_msg(FUZZ_W, FUZZ_H, FUZZ_FX, frame_id=FUZZ_FRAME)
        info.header.stamp.sec, info.header.stamp.nanosec = stamp
        info_pub.publish(info)
        m, rgb = good_image(stamp, serial[0] % 4)
        img_pub.publish(m)
        res["good"] += 1
        res["images"] += 1
        out = output_for(stamp, 30.0)
        if out is None:
            failures.append(f"no output for the good frame after {label!r}")
            return
        got = msgs.image_msg_to_array(out)
        if np.array_equal(got, expected_depth(rgb), equal_nan=True):
            res["good_exact"] += 1
        else:
            failures.append(f"good frame after {label!r}: depth differs from the model's")

    probe("start")
    for p in range(passes):
        for case in cases:
            if not node.alive():
                break
            res["inputs"] += 1
            if case["kind"] == "camera_info":
                stamp = next_stamp()
                info_pub.publish(case_msg(case, FUZZ_FRAME, stamp))
                m, _ = good_image(stamp, 0)
                img_pub.publish(m)
                res["images"] += 1
                time.sleep(0.02)
                if case["expect"] == "error":
                    probe(case["label"])
                    if depth_col.find(lambda m: (m.header.stamp.sec, m.header.stamp.nanosec) == stamp):
                        failures.append(f"CameraInfo {case['label']!r} was not refused")
                    else:
                        res["refused_ok"] += 1
                    continue
            else:
                img_pub.publish(case_msg(case))
                res["images"] += 1
                time.sleep(0.02)  # pacing: let the worker take it before the probe replaces it
            probe(case["label"])
        res["rss_mb"].append(rss_mb(node.popen.pid) if node.alive() else float("nan"))  # type: ignore[union-attr]
        log(f"  fuzz {'compressed' if compressed else 'raw'} pass {p + 1}/{passes}: {res['inputs']} inputs, "
            f"RSS {res['rss_mb'][-1]:.0f} MB")  # type: ignore[index]
    v = diag.wait(lambda v: int(v.get("frames_in", 0)) >= res["images"] and counts_add_up(v), 20.0)
    res["crashed"] = not node.alive()
    res["diag"] = {k: v.get(k) for k in ("frames_in", "frames_processed", "frames_skipped", "frames_dropped")}
    res["accounted"] = int(v.get("frames_in", -1)) == res["images"] and counts_add_up(v)
    code = node.stop()
    log_text = node.output()
    node.cleanup()
    res["exit_code"] = code
    res["error_lines"] = error_lines(log_text)
    res["tracebacks"] = log_text.count("Traceback")
    res["unexpected"] = [line for line in log_text.splitlines() if "unexpected" in line]
    for pub in (img_pub, info_pub):
        ros.node.destroy_publisher(pub)
    ros.node.destroy_subscription(depth_col.sub)
    ros.node.destroy_subscription(diag.col.sub)
    return res


def fuzz_cases(seed: int, n_random: int, kinds=("image", "camera_info")) -> List[dict]:
    from fuzz_inputs import all_cases

    return [c for c in all_cases(seed=seed, n_random=n_random, good_every=5) if c["kind"] in kinds]


# ------------------------------------------------------------------------------------------------
# soak
# ------------------------------------------------------------------------------------------------
def soak(ros, seconds: float, window_s: float = 10.0, rate: float = 30.0, delay: float = 0.2,
         log=print) -> Dict[str, object]:
    """640x480 at ``rate`` Hz (reliable) into a ``delay`` s model for ``seconds``; see the module docstring."""
    from sensor_msgs.msg import Image

    ns = "/soak"
    node = start_node(ros.domain_id, {"model": "fake_models:ConstantDepthModel", "model_config.delay": delay,
                                      "qos_input_reliability": "reliable", "qos_input_depth": 20,
                                      "diagnostics_period": 0.5}, ns, name="depth_node_soak")
    diag = Diag(ros, f"{ns}/depth_node")
    arrivals: List[tuple] = []  # (monotonic arrival, stamp -> arrival latency ms)

    def on_depth(msg):
        now = ros.node.get_clock().now().nanoseconds
        arrivals.append((time.monotonic(), (now - ru.stamp_of(msg)) / 1e6))
    sub = ros.node.create_subscription(Image, f"{ns}/depth/image", on_depth, ru.reliable_qos(10))
    count = int(seconds * rate)
    cam = ru.Proc([sys.executable, str(Path(__file__).resolve()), "camera", ns, "--rate", str(rate),
                   "--count", str(count)], env=child_env(ros.domain_id), name="camera_soak")
    rss: List[tuple] = []
    t0 = time.monotonic()
    while cam.alive() and node.alive():
        rss.append((time.monotonic() - t0, rss_mb(node.popen.pid)))
        time.sleep(2.0)
    sent_line = [ln for ln in cam.output().splitlines() if ln.startswith("published ")]
    sent = int(sent_line[-1].split()[1]) if sent_line else -1
    v = diag.wait(lambda v: int(v.get("frames_in", 0)) >= sent and counts_add_up(v)
                  and v.get("frames_published") == str(int(v["frames_processed"]) - int(v["frames_unpublished"])),
                  30.0)
    time.sleep(1.0)  # the last outputs arrive
    crashed = not node.alive()
    code = node.stop()
    log_text = node.output()
    cam.stop()
    for p in (node, cam):
        p.cleanup()
    ros.node.destroy_subscription(sub)
    ros.node.destroy_subscription(diag.col.sub)
    t_first = arrivals[0][0] if arrivals else t0
    windows = []
    lat = np.array([a[1] for a in arrivals]) if arrivals else np.zeros(0)
    times = np.array([a[0] - t_first for a in arrivals]) if arrivals else np.zeros(0)
    for w0 in np.arange(0.0, max(times.max() if times.size else 0, 0) + 1e-9, window_s):
        sel = lat[(times >= w0) & (times < w0 + window_s)]
        if sel.size:
            windows.append((float(w0), sel.size, float(np.percentile(sel, 50)), float(np.percentile(sel, 99))))
    warm = [r for t, r in rss if t >= min(20.0, seconds / 3)]
    growth = (max(warm) - warm[0]) / warm[0] * 100.0 if len(warm) >= 2 else float("nan")
    processed = int(v.get("frames_processed", -1))
    unpublished = int(v.get("frames_unpublished", 0))
    missing = processed - unpublished - len(arrivals)
    res = {"sent": sent, "diag": {k: v.get(k) for k in ("frames_in", "frames_processed", "frames_dropped",
                                                         "frames_skipped", "frames_waiting_camera_info",
                                                         "frames_without_subscribers", "frames_unpublished")},
           "accounted": sent == int(v.get("frames_in", -2)) and counts_add_up(v), "received": len(arrivals),
           "missing_outputs": missing, "windows": windows,
           "p50": float(np.percentile(lat, 50)) if lat.size else float("nan"),
           "p99": float(np.percentile(lat, 99)) if lat.size else float("nan"),
           "rss_growth_pct": growth, "rss_mb": (warm[0], max(warm)) if warm else None, "crashed": crashed,
           "exit_code": code, "errors": error_lines(log_text)}
    for w in windows:
        log(f"  soak window {w[0]:5.0f} s: {w[1]:4d} outputs, latency p50 {w[2]:6.1f} ms, p99 {w[3]:6.1f} ms")
    return res


# ------------------------------------------------------------------------------------------------
# faults
# ------------------------------------------------------------------------------------------------
class FaultRig:
    """One depth_node process + publishers and collectors in this process."""

    def __init__(self, ros, ns: str, params: Dict[str, object]):
        from sensor_msgs.msg import CameraInfo, Image

        self.ros, self.ns = ros, ns
        base = {"model": "fake_models:EdgeCaseDepthModel", "focal_estimator": "none", "camera_info_timeout": 0.5,
                "qos_input_reliability": "reliable", "diagnostics_period": 0.25}
        base.update(params)
        self.node = start_node(ros.domain_id, base, ns, name="depth_node_fault")
        self.img = ros.publisher(Image, f"{ns}/image", ru.reliable_qos(20))
        self.info = ros.publisher(CameraInfo, f"{ns}/camera_info", ru.reliable_qos(20))
        self.cols = {"depth/image": ros.collect(Image, f"{ns}/depth/image", ru.reliable_qos(50)),
                     "depth/camera_info": ros.collect(CameraInfo, f"{ns}/depth/camera_info", ru.reliable_qos(50))}
        self.diag = Diag(ros, f"{ns}/depth_node")
        self.serial = 0
        ru.wait_for(lambda: self.img.get_subscription_count() > 0, 30.0)

    def send(self, w=64, h=48, fx=40.0, info=True, frame_id="cam", seed=0):
        self.serial += 1
        stamp = (200_000 + self.serial, 0)
        if info:
            m = ru.camera_info_msg(w, h, fx, frame_id=frame_id)
            m.header.stamp.sec, m.header.stamp.nanosec = stamp
            self.info.publish(m)
        im = ru.image_msg(w, h, "rgb8", frame_id=frame_id, seed=seed)
        im.header.stamp.sec, im.header.stamp.nanosec = stamp
        self.img.publish(im)
        return stamp

    def out(self, topic, stamp, timeout=20.0):
        found = []

        def ok():
            f = self.cols[topic].find(lambda m: (m.header.stamp.sec, m.header.stamp.nanosec) == stamp)
            if f:
                found.append(f[-1])
            return bool(found)
        ru.wait_for(ok, timeout, 0.01)
        return found[0] if found else None

    def close(self):
        code = self.node.stop()
        log = self.node.output()
        self.node.cleanup()
        for pub in (self.img, self.info):
            self.ros.node.destroy_publisher(pub)
        for c in self.cols.values():
            self.ros.node.destroy_subscription(c.sub)
        self.ros.node.destroy_subscription(self.diag.col.sub)
        return code, log


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise AssertionError(what)


def fault_camera_info_gap(ros) -> str:
    rig = FaultRig(ros, "/f_gap", {})
    try:
        info = rig.out("depth/camera_info", rig.send(fx=40.0))
        _check(info is not None and info.k[0] == 40.0, "no output with CameraInfo")
        # CameraInfo stops: frames go on with the newest CameraInfo of this frame_id (as stamped before them)
        gap = [rig.out("depth/camera_info", rig.send(info=False), 10.0) for _ in range(8)]
        got = [g for g in gap if g is not None]
        _check(len(got) >= 4 and all(g.k[0] == 40.0 for g in got), f"{len(got)}/8 frames served during the gap")
        back = rig.out("depth/camera_info", rig.send(fx=45.0))
        _check(back is not None and back.k[0] == 45.0, "the resumed CameraInfo is not used")
    finally:
        code, log = rig.close()
    _check(code == 0 and "Traceback" not in log, f"exit {code}")
    return f"{len(got)}/8 frames served during the gap (last CameraInfo); the resumed one used at once"


def fault_resolution_change(ros) -> str:
    rig = FaultRig(ros, "/f_res", {"model": "fake_models:ConstantDepthModel"})
    sizes = []
    try:
        for w, h in ((640, 480), (1280, 720), (320, 240)):
            o = rig.out("depth/image", rig.send(w, h, fx=w * 0.8))
            _check(o is not None and (o.width, o.height) == (w, h), f"no {w}x{h} output")
            i = rig.out("depth/camera_info", (o.header.stamp.sec, o.header.stamp.nanosec))
            _check(i is not None and i.k[0] == w * 0.8, f"{w}x{h}: wrong intrinsics")
            sizes.append(f"{w}x{h}")
    finally:
        code, log = rig.close()
    _check(code == 0, f"exit {code}")
    return " -> ".join(sizes) + " with their own CameraInfo"


def fault_two_cameras(ros, frames: int = 20) -> str:
    rig = FaultRig(ros, "/f_two", {})
    wrong = served = 0
    try:
        for i in range(frames):
            fid, fx = ("cam_a", 30.0) if i % 2 == 0 else ("cam_b", 60.0)
            stamp = rig.send(fx=fx, frame_id=fid)
            o = rig.out("depth/camera_info", stamp, 10.0)
            if o is not None:
                served += 1
                wrong += int(o.header.frame_id != fid or o.k[0] != fx)
    finally:
        code, log = rig.close()
    _check(served >= frames // 2 and wrong == 0, f"{wrong} of {served} outputs carry the other camera's intrinsics")
    return f"{served}/{frames} outputs, 0 with the other camera's intrinsics"


def fault_lazy_subscribers(ros) -> str:
    from sensor_msgs.msg import Image

    rig = FaultRig(ros, "/f_lazy", {"lazy": True})
    try:
        ros.node.destroy_subscription(rig.cols["depth/image"].sub)
        ros.node.destroy_subscription(rig.cols["depth/camera_info"].sub)
        rounds = 0
        for _ in range(3):
            _check(ru.wait_for(lambda: rig.img.get_subscription_count() == 0, 20.0), "image still subscribed")
            col = ros.collect(Image, f"{rig.ns}/depth/image", ru.reliable_qos(10))
            rig.cols["depth/image"] = col
            _check(ru.wait_for(lambda: rig.img.get_subscription_count() > 0, 20.0), "image not subscribed")
            got = None
            for _ in range(20):
                got = rig.out("depth/image", rig.send(), 1.0)
                if got is not None:
                    break
            _check(got is not None, "no output after a subscriber came")
            ros.node.destroy_subscription(col.sub)
            rounds += 1
        from diagnostic_msgs.msg import DiagnosticArray  # noqa: F401 (diag already collected)
        v = rig.diag.wait(lambda v: v.get("subscribed_outputs", "x") == "", 20.0)
        _check(v.get("subscribed_outputs") == "", "outputs still subscribed")
    finally:
        rig.cols.pop("depth/image", None)
        rig.cols.pop("depth/camera_info", None)
        code, log = rig.close()
    _check(code == 0, f"exit {code}")
    return f"{rounds} rounds of subscribe / unsubscribe; input subscription follows"


def fault_params_under_load(ros, seconds: float = 6.0) -> str:
    from rcl_interfaces.msg import Parameter as PMsg
    from rcl_interfaces.msg import ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    rig = FaultRig(ros, "/f_par", {"model": "fake_models:ConstantDepthModel", "model_config.delay": 0.05})
    cli = ros.node.create_client(SetParameters, f"{rig.ns}/depth_node/set_parameters")
    changes = refused = 0
    try:
        _check(cli.wait_for_service(timeout_sec=20.0), "no parameter service")
        t_end = time.monotonic() + seconds
        k = 0
        while time.monotonic() < t_end:
            rig.send(320, 240, fx=250.0, seed=k % 4)
            if k % 3 == 0:
                vals = [("max_range", ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=[10.0, 80.0][k % 2])),
                        ("depth_encoding", ParameterValue(type=ParameterType.PARAMETER_STRING,
                                                          string_value=["16UC1", "32FC1"][k % 2])),
                        ("min_range", ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=1e6))]
                fut = cli.call_async(SetParameters.Request(parameters=[PMsg(name=n, value=v) for n, v in vals]))
                ru.wait_for(fut.done, 10.0)
                if fut.done():
                    r = fut.result().results
                    changes += sum(x.successful for x in r)
                    refused += sum(not x.successful for x in r)
            k += 1
            time.sleep(0.03)
        last = rig.out("depth/image", rig.send(320, 240, fx=250.0), 20.0)
        _check(last is not None, "no output after the parameter changes")
    finally:
        ros.node.destroy_client(cli)
        code, log = rig.close()
    _check(code == 0 and "Traceback" not in log, f"exit {code}")
    _check(changes > 0 and refused > 0, "parameters neither changed nor refused")
    return f"{changes} changes applied, {refused} invalid ones refused, {k} frames sent meanwhile"


def fault_model_exception(ros) -> str:
    rig = FaultRig(ros, "/f_exc", {"model": "fake_models:FailingDepthModel", "model_config.fail_on": 3})
    try:
        outs, stamps = [], []
        for i in range(6):
            stamps.append(rig.send())
            if i == 2:  # the model's third call raises: wait for the node to say so
                _check(rig.node.wait_output("injected model failure", 30.0), "the model failure is not logged")
                outs.append(None)
            else:
                outs.append(rig.out("depth/image", stamps[-1], 20.0))
        # outputs keep their order: frame 4's has come, so frame 3's never will
        outs[2] = rig.out("depth/image", stamps[2], 0.5)
    finally:
        code, log = rig.close()
    _check(outs[2] is None and all(o is not None for o in outs[:2] + outs[3:]),
           f"outputs: {[o is not None for o in outs]}")
    _check(log.count("injected model failure") >= 1 and log.count("Traceback") == 1,
           "the failure is not logged once with one traceback:\n" + log[-2000:])
    _check(code == 0, f"exit {code}")
    return "frame 3 skipped (one error, one traceback), frames 4-6 served"


def _run_node_expecting_failure(ros, params, name) -> tuple:
    proc = ru.Proc(ru.node_command(params=params), env=child_env(ros.domain_id), name=name)
    code = proc.wait(180.0)
    log = proc.output()
    proc.stop()
    proc.cleanup()
    return code, log


def broken_weight_files(folder: Path) -> Dict[str, Path]:
    """Broken checkpoints: truncated, of another model, random bytes, empty, missing."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    good = folder / "other.pt"
    torch.save({"encoder.weight": torch.zeros(4, 4), "head.bias": torch.zeros(3)}, good)
    data = good.read_bytes()
    files = {"truncated": folder / "truncated.pt", "wrong model": good, "random bytes": folder / "random.pt",
             "empty": folder / "empty.pt", "missing": folder / "missing.pt"}
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["random bytes"].write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    files["empty"].write_bytes(b"")
    return files


def fault_broken_weights(ros, folder: Path, model: str = "zoedepth_nk",
                         config: Optional[Dict[str, object]] = None) -> str:
    config = {"model_config.backbone": "test_tiny"} if config is None else config
    lines = []
    for what, path in broken_weight_files(folder).items():
        code, log = _run_node_expecting_failure(ros, dict({"model": model, "weights": str(path), "device": "cpu"},
                                                          **config), "depth_node_weights")
        fatal = [ln for ln in log.splitlines() if "FATAL" in ln]
        _check(code not in (0, None), f"{what}: exit code {code}")
        _check(len(fatal) == 1 and "Traceback" not in log and str(path.name) in fatal[0]
               and "weights_only=False" not in log, f"{what}: not one clear line:\n{log[-1500:]}")
        lines.append(f"{what}: exit {code}")
    return "; ".join(lines)


def fault_stalled_subscriber(ros, seconds: float = 12.0) -> str:
    """A RELIABLE subscriber process stops (SIGSTOP): the node says so (log + diagnostics) and another
    consumer without a Fast DDS profile keeps receiving."""
    ns = "/f_stall"
    node = start_node(ros.domain_id, {"model": "fake_models:ConstantDepthModel", "model_config.delay": 0.05,
                                      "diagnostics_period": 0.5}, ns, name="depth_node_stall", profile=False)
    cam = ru.Proc(ru.publisher_command(image_topic=f"{ns}/image", info_topic=f"{ns}/camera_info", width=640,
                                       height=480, rate=10, wait_subscribers=60),
                  env=child_env(ros.domain_id, profile=False), name="camera_stall")
    diag = Diag(ros, f"{ns}/depth_node")
    healthy = Consumer(ros.domain_id, ns, seconds + 60, profile=False, name="consumer_ok")
    stalled = Consumer(ros.domain_id, ns, seconds + 60, profile=False, name="consumer_stalled")
    try:
        _check(healthy.wait_all(3, 60.0) and stalled.wait_all(3, 60.0), "consumers without a profile got nothing")
        os.kill(stalled.proc.popen.pid, signal.SIGSTOP)
        before = healthy.counts()
        v = diag.wait(lambda v: v.get("topics_not_acknowledging", "") != "", 30.0)
        _check(v.get("topics_not_acknowledging", "") != "" and int(v["_level"]) >= 1,
               f"diagnostics do not report the stalled subscriber: {v.get('_message')}")
        ok = healthy.wait_all(min(before.values()) + 10, 30.0)
        _check(ok, f"the healthy consumer stopped receiving: {before} -> {healthy.counts()}")
        after = healthy.counts()
        _check(node.wait_output("subscribers stopped acknowledging", 10.0), "no WARN line in the node's log")
    finally:
        if stalled.proc.alive():
            os.kill(stalled.proc.popen.pid, signal.SIGCONT)
        for c in (healthy, stalled):
            c.stop()
        cam.stop()
        cam.cleanup()
        code = node.stop()
        node.cleanup()
        ros.node.destroy_subscription(diag.col.sub)
    _check(code == 0, f"exit {code}")
    return (f"stalled consumer reported in log + diagnostics; the other (no profile) got "
            f"{min(after.values()) - min(before.values())} more frames of all four outputs")


FAULTS = {
    "CameraInfo stops and resumes": fault_camera_info_gap,
    "resolution 640x480 -> 1280x720 -> 320x240": fault_resolution_change,
    "two cameras on one topic": fault_two_cameras,
    "subscribers come and go (lazy)": fault_lazy_subscribers,
    "parameter changes under load": fault_params_under_load,
    "exception in the model for one frame": fault_model_exception,
    "stalled RELIABLE subscriber, consumer without profile": fault_stalled_subscriber,
}


# ------------------------------------------------------------------------------------------------
# the report
# ------------------------------------------------------------------------------------------------
def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "consume":
        return consume_main(argv[1:])
    if argv and argv[0] == "camera":
        return camera_main(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="rough total time (default 10)")
    ap.add_argument("--quick", action="store_true", help="about 2 minutes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-weights", action="store_true", help="leave out the broken-weights processes")
    args = ap.parse_args(argv)
    minutes = 2.0 if args.quick else args.minutes
    soak_s = 30.0 if args.quick else max(60.0, minutes * 60 * 0.6)
    n_random = 10 if args.quick else int(40 * minutes)
    passes = 1 if args.quick else 2

    import tempfile

    t_start = time.monotonic()
    ros = ru.RosSession(name="reliability")
    rows: List[tuple] = []
    try:
        inputs = crashes = missing = fuzz_dropped = 0
        fuzz_notes = []
        rss_f = []
        for compressed in (False, True):
            kinds = ("compressed", "camera_info") if compressed else ("image", "camera_info")
            cases = fuzz_cases(args.seed, n_random, kinds)
            if compressed:
                cases = [c for c in cases if c["kind"] == "compressed"]
            r = fuzz(ros, compressed, cases, passes=passes)
            inputs += int(r["inputs"])
            fuzz_dropped += int(r["diag"]["frames_dropped"] or 0)
            crashes += int(bool(r["crashed"])) + int(r["exit_code"] not in (0,)) + len(r["unexpected"])
            missing += int(r["good"]) - int(r["good_exact"])
            fuzz_notes += r["failures"]
            if len(r["rss_mb"]) >= 2:
                rss_f.append((r["rss_mb"][-1] - r["rss_mb"][0]) / r["rss_mb"][0] * 100)
            print(f"  fuzz {'compressed' if compressed else 'raw'}: {r['inputs']} inputs, {r['good_exact']}/"
                  f"{r['good']} good frames exact, {r['refused_ok']} bad CameraInfo refused, "
                  f"{len(r['error_lines'])} error lines (throttled), diagnostics {r['diag']}", flush=True)
        survived = 0
        fault_fail = []
        for name, fn in FAULTS.items():
            try:
                note = fn(ros)
                survived += 1
                print(f"  fault ok: {name}: {note}", flush=True)
            except Exception as exc:
                fault_fail.append(f"{name}: {exc}")
                print(f"  fault FAILED: {name}: {exc}", flush=True)
        if not args.skip_weights:
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    note = fault_broken_weights(ros, Path(tmp))
                    survived += 1
                    print(f"  fault ok: broken weights: {note}", flush=True)
                except Exception as exc:
                    fault_fail.append(f"broken weights: {exc}")
                    print(f"  fault FAILED: broken weights: {exc}", flush=True)
        s = soak(ros, soak_s)
        crashes += int(bool(s["crashed"])) + int(s["exit_code"] != 0)
        missing += max(0, int(s["missing_outputs"]))
        n_faults = len(FAULTS) + (0 if args.skip_weights else 1)
        full = [w for w in s["windows"] if w[1] >= 10]  # the last, partial window says little
        rows = [
            ("inputs tried (fuzz; replaced before the worker took them)", f"{inputs} ({fuzz_dropped})"),
            ("node crashes", crashes),
            ("faults survived", f"{survived}/{n_faults}"),
            ("frames that should have produced output but did not", missing),
            ("soak frames sent / in / processed / dropped / skipped",
             f"{s['sent']} / {s['diag']['frames_in']} / {s['diag']['frames_processed']} / "
             f"{s['diag']['frames_dropped']} / {s['diag']['frames_skipped']} (accounted: {s['accounted']})"),
            (f"soak latency stamp->depth/image p50 / p99 ({soak_s / 60:.1f} min, 640x480 @ 30 Hz, 200 ms model)",
             f"{s['p50']:.0f} / {s['p99']:.0f} ms"),
            ("soak latency p99 per window (min-max)",
             f"{min(w[3] for w in full):.0f}-{max(w[3] for w in full):.0f} ms" if full else "-"),
            ("RSS growth after warm-up (soak)", f"{s['rss_growth_pct']:.1f} % ({s['rss_mb'][0]:.0f} -> "
                                                f"{s['rss_mb'][1]:.0f} MB)" if s["rss_mb"] else "-"),
            ("RSS growth after warm-up (fuzz, last pass)", ", ".join(f"{x:.1f} %" for x in rss_f) or "-"),
        ]
        for note in fuzz_notes[:10] + fault_fail:
            print("  problem:", note)
    finally:
        ros.close()
    width = max(len(r[0]) for r in rows) if rows else 10
    print(f"\nreliability report ({(time.monotonic() - t_start) / 60:.1f} min, seed {args.seed})")
    print(f"| {'what'.ljust(width)} | result |")
    print(f"|{'-' * (width + 2)}|--------|")
    for k, v in rows:
        print(f"| {k.ljust(width)} | {v} |")
    ok = rows and rows[1][1] == 0 and rows[3][1] == 0 and not fault_fail
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
