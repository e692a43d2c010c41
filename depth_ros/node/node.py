"""``depth_node``: camera image (+ CameraInfo) -> metric depth, confidence, PointCloud2.

Threads: the rclpy executor only stores the newest message (image callbacks are O(1)); a
``LatestFrameWorker`` decodes, runs the network and publishes, so the executor is never blocked
by inference, and frames that arrive while the network is busy replace the waiting one (dropped and
counted). All message <-> array conversion goes through ``depth_ros.msgs``.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from depth_ros import msgs
from depth_ros.core.camera import CameraInfoError
from depth_ros.core.cloud import backproject, depth_to_cloud, pack_cloud, voxel_filter
from depth_ros.core.colormap import colorize_depth
from depth_ros.node import diagnostics as diag
from depth_ros.node import params as P
from depth_ros.node.intrinsics import (
    INFO_INVALID,
    INFO_MISSING,
    INFO_OK,
    INFO_UNCALIBRATED,
    InfoStatus,
    IntrinsicsResolver,
    IntrinsicsUnavailable,
)
from depth_ros.node.worker import LatestFrameWorker

NODE_NAME = "depth_node"
# Topic names (relative, so namespaces and remapping apply).
IMAGE_TOPIC = "image"
COMPRESSED_SUFFIX = "/compressed"
CAMERA_INFO_TOPIC = "camera_info"
DEPTH_TOPIC = "depth/image"
DEPTH_INFO_TOPIC = "depth/camera_info"
CONFIDENCE_TOPIC = "depth/confidence"
POINTS_TOPIC = "depth/points"
COLORIZED_TOPIC = "depth/colorized"
DIAGNOSTICS_TOPIC = "/diagnostics"
INPUT_TOPICS = (IMAGE_TOPIC, IMAGE_TOPIC + COMPRESSED_SUFFIX, CAMERA_INFO_TOPIC)
OUTPUT_TOPICS = {DEPTH_TOPIC: Image, DEPTH_INFO_TOPIC: CameraInfo, CONFIDENCE_TOPIC: Image,
                 POINTS_TOPIC: PointCloud2, COLORIZED_TOPIC: Image}

_LAZY_CHECK_PERIOD_S = 0.2
_PROBLEM_WINDOW_S = 5.0


class StartupError(RuntimeError):
    """The node cannot start (bad parameters, missing/corrupt weights); the message says why."""


def _descriptor(spec: P.ParamSpec) -> ParameterDescriptor:
    text = spec.constraints_text()
    d = ParameterDescriptor(description=spec.description, read_only=spec.read_only,
                            additional_constraints=text)
    if spec.type is float and (spec.min is not None or spec.max is not None):
        d.floating_point_range = [FloatingPointRange(
            from_value=float(spec.min if spec.min is not None else -sys.float_info.max),
            to_value=float(spec.max if spec.max is not None else sys.float_info.max), step=0.0)]
    elif spec.type is int and (spec.min is not None or spec.max is not None):
        d.integer_range = [IntegerRange(from_value=int(spec.min if spec.min is not None else -2 ** 63),
                                        to_value=int(spec.max if spec.max is not None else 2 ** 63 - 1),
                                        step=1)]
    return d


def _qos(reliability: str, depth: int) -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth),
                      reliability=(ReliabilityPolicy.RELIABLE if reliability == "reliable"
                                   else ReliabilityPolicy.BEST_EFFORT),
                      durability=DurabilityPolicy.VOLATILE)


class FrameStats:
    """Counters and timings of the worker (read by diagnostics, tests and the benchmark)."""

    def __init__(self) -> None:
        self.input_rate = diag.RateMeter()
        self.output_rate = diag.RateMeter()
        self.latency_ms = diag.RollingStats()      # image callback -> last output published
        self.age_ms = diag.RollingStats()          # header.stamp -> last output published (node clock)
        self.inference_ms = diag.RollingStats()    # model.infer
        self.overhead_ms = diag.RollingStats()     # everything in the worker except the network(s)
        self.overhead_cpu_ms = diag.RollingStats()  # CPU time of the worker thread for the same stages
        self.stage_ms: Dict[str, diag.RollingStats] = {
            k: diag.RollingStats() for k in ("decode", "intrinsics", "postprocess", "publish")}
        self.frames_in = 0
        self.frames_processed = 0
        self.frames_skipped = 0      # bad input / no intrinsics / model error
        self.frames_waiting = 0      # skipped while waiting for CameraInfo
        self.frames_idle = 0         # arrived while no output had a subscriber
        self.inferences = 0
        self.domain: Optional[str] = None
        self.domain_confidence: Optional[float] = None
        self.focal_px: Optional[float] = None      # of the output image
        self.last_size: Optional[tuple] = None


class DepthNode(Node):
    """See the module docstring and README.md."""

    def __init__(self, node_name: str = NODE_NAME, *, model: Any = None, **node_kwargs):
        super().__init__(node_name, **node_kwargs)
        try:
            self._setup(model)
        except BaseException:
            self._teardown()
            super().destroy_node()
            raise

    # ------------------------------------------------------------------------------------------
    # setup
    # ------------------------------------------------------------------------------------------
    def _setup(self, model: Any) -> None:
        self._worker: Optional[LatestFrameWorker] = None
        self._lock = threading.Lock()
        self._values = self._declare_parameters()
        problems = P.validate_all(self._values)
        if problems:
            raise StartupError("invalid parameters: " + "; ".join(problems))
        self._cfg: Dict[str, Any] = dict(self._values)
        self.stats = FrameStats()
        self._problems = diag.ProblemLog(period_s=_PROBLEM_WINDOW_S)
        self._once: set = set()
        self._info_msg: Optional[CameraInfo] = None
        self._info_cache: tuple = (None, None)
        self._first_image_time: Optional[float] = None
        self._image_sub = None
        self._closing = False

        self.model = model if model is not None else self._load_model()
        self._model_name = self._values["model"] if model is None else type(model).__name__
        self._device = str(getattr(self.model, "device", self._values["device"]))
        self._apply_domain(self._values["domain"], startup=True)
        self._warmup()

        self.resolver = IntrinsicsResolver(
            samples=self._values["focal_samples"], fallback_hfov_deg=self._values["fallback_hfov_deg"],
            invalid_policy=self._values["invalid_camera_info"], timeout_s=self._values["camera_info_timeout"],
            model_estimates_focal=(self._values["focal_estimator"] == "depth_pro"
                                   and bool(getattr(self.model, "estimates_focal", False))),
            estimator_factory=(self._make_focal_estimator if self._values["focal_estimator"] == "depth_pro"
                               else None),
            log=self._log_line)
        if self._values["focal_estimator"] == "none":
            self.resolver.estimator_error = "focal_estimator is 'none'"

        out_qos = _qos(self._values["qos_output_reliability"], self._values["qos_output_depth"])
        self._pubs = {name: self.create_publisher(mtype, name, out_qos) for name, mtype in OUTPUT_TOPICS.items()}
        self._diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        self._in_qos = _qos(self._values["qos_input_reliability"], self._values["qos_input_depth"])
        self._info_sub = self.create_subscription(CameraInfo, CAMERA_INFO_TOPIC, self._on_camera_info,
                                                  self._in_qos)
        compressed = self._values["image_transport"] == "compressed"
        self._image_type = CompressedImage if compressed else Image
        self._image_topic = self._resolve(IMAGE_TOPIC) + (COMPRESSED_SUFFIX if compressed else "")
        self._info_topic = self._resolve(CAMERA_INFO_TOPIC)

        self._worker = LatestFrameWorker(self._process, on_error=self._on_worker_error).start()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._lazy_timer = self.create_timer(_LAZY_CHECK_PERIOD_S, self._update_input_subscription)
        self._diag_timer = self.create_timer(self._values["diagnostics_period"], self._publish_diagnostics)
        self._update_input_subscription()
        self.get_logger().info(
            f"ready: model {self._model_name} on {self._device} ({self._values['precision']}), input "
            f"'{self._image_topic}' + '{self._info_topic}', outputs under "
            f"'{self._resolve('depth')}'" + (" (lazy: waiting for subscribers)" if self._values["lazy"] else ""))

    def _resolve(self, topic: str) -> str:
        resolve = getattr(self, "resolve_topic_name", None)
        if resolve is None:  # very old rclpy
            return topic
        try:
            return resolve(topic)
        except Exception:
            return topic

    def _declare_parameters(self) -> Dict[str, Any]:
        overrides: Dict[str, Parameter] = getattr(self, "_parameter_overrides", {}) or {}
        for name, spec in P.SPECS.items():
            ov = overrides.get(name)
            # "-p min_range:=1" arrives as an integer; accept it for a double parameter.
            if (ov is not None and spec.type is float and ov.type_ == Parameter.Type.INTEGER):
                overrides[name] = Parameter(name, Parameter.Type.DOUBLE, float(ov.value))
            try:
                self.declare_parameter(name, spec.default, _descriptor(spec))
            except Exception as exc:  # wrong type / out of range in a params file or -p
                given = overrides.get(name)
                shown = given.value if given is not None else spec.default
                raise StartupError(f"parameter {name}={shown!r}: {type(exc).__name__}: {exc}") from None
        passthrough = []
        for name, ov in list(overrides.items()):
            if P.is_passthrough(name):
                passthrough.append(name)
                self.declare_parameter(name, ov.value, ParameterDescriptor(
                    description="passed to the model constructor", read_only=True, dynamic_typing=True))
            elif name not in P.SPECS and name != "use_sim_time" and not name.startswith(
                    ("qos_overrides.", "start_type_description_service")):
                self.get_logger().warning(f"ignoring unknown parameter '{name}' (typo?)")
        values = {name: self.get_parameter(name).value for name in P.SPECS}
        for name in passthrough:
            values[name] = self.get_parameter(name).value
        return values

    def _model_kwargs(self, prefix: str) -> Dict[str, Any]:
        kwargs = P.passthrough(self._values, prefix)
        if self._values["compile"]:
            kwargs.setdefault("compile", True)
        return kwargs

    def _load_model(self):
        from depth_ros.models import create_model
        from depth_ros.models.weights import WeightsError

        name, weights = self._values["model"], self._values["weights"] or None
        kwargs = self._model_kwargs("model_config.")
        self.get_logger().info(f"loading model {name} (weights: {weights or 'default cache'}, "
                               f"device: {self._values['device']}, precision: {self._values['precision']}"
                               + (f", config: {kwargs}" if kwargs else "") + ")")
        try:
            return create_model(name, weights=weights, device=self._values["device"],
                                dtype=self._values["precision"], **kwargs)
        except WeightsError as exc:
            raise StartupError(f"cannot load the weights of model '{name}': {exc}") from None
        except Exception as exc:  # unknown name, bad config keyword, CUDA missing, import error...
            raise StartupError(f"cannot create model '{name}': {type(exc).__name__}: {exc}") from None

    def _warmup(self) -> None:
        w = self._values["output_width"] or 640
        h = max(8, int(round(w * 3 / 4)))
        t0 = time.perf_counter()
        try:
            warm = getattr(self.model, "warmup", None)
            if callable(warm):
                warm(h, w)
            else:
                self.model.infer(np.zeros((h, w, 3), np.uint8))
        except Exception as exc:
            raise StartupError(f"model warm-up failed: {type(exc).__name__}: {exc}") from None
        self.get_logger().info(f"model warmed up in {time.perf_counter() - t0:.2f} s")

    def _make_focal_estimator(self):
        """Depth Pro's FOV network for cameras without usable CameraInfo (loaded on first need)."""
        from depth_ros.models import create_model

        if getattr(self.model, "estimates_focal", False) and callable(getattr(self.model, "estimate_focal", None)):
            return self.model.estimate_focal
        weights = self._values["focal_estimator_weights"] or None
        kwargs = self._model_kwargs("focal_estimator_config.")
        self.get_logger().info("loading Depth Pro as focal-length estimator "
                               f"(weights: {weights or 'default cache'})")
        est = create_model("depth_pro", weights=weights, device=self._values["device"],
                           dtype=self._values["precision"], **kwargs)
        if not getattr(est, "estimates_focal", True):
            raise ValueError("the Depth Pro estimator has no FOV head (use_fov=False)")
        return est.estimate_focal

    def _apply_domain(self, domain: str, startup: bool = False) -> Optional[str]:
        if not hasattr(self.model, "domain"):
            if domain != "auto" and startup:
                self.get_logger().warning(f"model {self._model_name} has no domain switch; "
                                          f"domain '{domain}' is ignored")
            return None
        try:
            self.model.domain = domain
        except Exception as exc:
            return f"model rejected domain '{domain}': {exc}"
        return None

    # ------------------------------------------------------------------------------------------
    # parameters at runtime
    # ------------------------------------------------------------------------------------------
    def _on_set_parameters(self, parameters: Sequence[Parameter]) -> SetParametersResult:
        new = dict(self._values)
        for p in parameters:
            if P.is_passthrough(p.name):
                return SetParametersResult(successful=False, reason=f"{p.name} is read-only (restart the node)")
            spec = P.SPECS.get(p.name)
            if spec is None:  # use_sim_time etc.: not ours
                continue
            if spec.read_only:
                return SetParametersResult(successful=False, reason=f"{p.name} is read-only (restart the node)")
            value = p.value
            if spec.type is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            reason = spec.validate(value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            new[p.name] = value
        problems = P.validate_all(new)
        if problems:
            return SetParametersResult(successful=False, reason="; ".join(problems))
        if new["domain"] != self._values["domain"]:
            reason = self._apply_domain(new["domain"])
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        with self._lock:
            self._values = new
            self._cfg = dict(new)
            r = self.resolver
            if (new["focal_samples"] != r.samples or new["fallback_hfov_deg"] != r.fallback_hfov_deg):
                r.samples, r.fallback_hfov_deg = int(new["focal_samples"]), float(new["fallback_hfov_deg"])
                r.reset()
            r.invalid_policy = new["invalid_camera_info"]
            r.timeout_s = float(new["camera_info_timeout"])
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------------------------------
    # subscriptions (executor thread: keep these O(1))
    # ------------------------------------------------------------------------------------------
    def wanted_outputs(self) -> List[str]:
        """Outputs that have subscribers (all of them when ``lazy`` is false)."""
        if not self._cfg["lazy"]:
            return list(self._pubs)
        return [name for name, pub in self._pubs.items() if pub.get_subscription_count() > 0]

    def _update_input_subscription(self) -> None:
        if self._closing:
            return
        wanted = bool(self.wanted_outputs())
        if wanted and self._image_sub is None:
            self._image_sub = self.create_subscription(self._image_type, self._image_topic, self._on_image,
                                                       self._in_qos)
            self.get_logger().debug(f"subscribed to {self._image_topic}")
        elif not wanted and self._image_sub is not None:
            self.destroy_subscription(self._image_sub)
            self._image_sub = None
            if self._worker is not None:
                self._worker.clear()
            self.get_logger().debug(f"no subscribers: unsubscribed from {self._image_topic}")

    def _on_image(self, msg) -> None:
        now = time.perf_counter()
        self.stats.frames_in += 1
        self.stats.input_rate.tick()
        if self._worker is not None:
            self._worker.submit((msg, now))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._info_msg = msg

    # ------------------------------------------------------------------------------------------
    # the worker
    # ------------------------------------------------------------------------------------------
    def _log_line(self, level: str, text: str) -> None:
        log = self.get_logger()
        {"info": log.info, "warn": log.warning, "error": log.error}.get(level, log.info)(text)

    def _problem(self, key: str, text: str) -> None:
        self.stats.frames_skipped += 1
        line = self._problems.report(key, text)
        if line:
            self.get_logger().error(line)

    def _on_worker_error(self, exc: BaseException) -> None:
        self._problem("internal:" + type(exc).__name__,
                      f"frame skipped: unexpected {type(exc).__name__}: {exc}")

    def _info_status(self, width: int, height: int) -> InfoStatus:
        msg = self._info_msg
        if msg is None:
            return InfoStatus(INFO_MISSING, problem=f"no CameraInfo on '{self._info_topic}' within "
                                                    f"{self._cfg['camera_info_timeout']:g} s")
        cached_msg, result = self._info_cache
        if cached_msg is not msg:
            try:
                result = msgs.camera_from_info_msg(msg)
            except (CameraInfoError, ValueError) as exc:
                result = exc
            self._info_cache = (msg, result)
        if isinstance(result, Exception):
            return InfoStatus(INFO_INVALID, problem=f"invalid CameraInfo: {result}")
        if result is None:
            return InfoStatus(INFO_UNCALIBRATED, problem="CameraInfo is uncalibrated (K[0] == 0)")
        if (result.width, result.height) != (width, height):
            return InfoStatus(INFO_INVALID, problem=f"CameraInfo size {result.width}x{result.height} differs "
                                                    f"from the image size {width}x{height}")
        return InfoStatus(INFO_OK, camera=result)

    def _process(self, item) -> None:
        msg, t_recv = item
        cfg = self._cfg
        wanted = self.wanted_outputs()
        if not wanted:
            self.stats.frames_idle += 1
            return
        st = self.stats
        t0 = time.perf_counter()
        c0 = time.thread_time()
        # 1. decode
        try:
            if self._image_type is CompressedImage:
                rgb = msgs.compressed_msg_to_rgb8(msg)
            else:
                rgb = msgs.image_msg_to_rgb8(msg)
            if rgb.ndim != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
                raise ValueError(f"empty image ({rgb.shape[1] if rgb.ndim > 1 else 0}x{rgb.shape[0]})")
        except (ValueError, TypeError) as exc:
            enc = getattr(msg, "encoding", getattr(msg, "format", "?"))
            self._problem("image:" + diag.problem_key(str(exc)),
                          f"frame skipped: bad image on '{self._image_topic}' ({enc}, "
                          f"{getattr(msg, 'width', '?')}x{getattr(msg, 'height', '?')}): {exc}")
            return
        h, w = rgb.shape[:2]
        out_w = cfg["output_width"] or w
        if out_w != w:
            import cv2
            out_h = max(1, int(round(h * out_w / w)))
            rgb_p = cv2.resize(rgb, (out_w, out_h), interpolation=cv2.INTER_AREA if out_w < w
                               else cv2.INTER_LINEAR)
        else:
            out_h, rgb_p = h, rgb
        t1 = time.perf_counter()
        # 2. intrinsics
        if self._first_image_time is None:
            self._first_image_time = time.monotonic()
        frame_id = msg.header.frame_id
        try:
            plan = self.resolver.plan(frame_id, w, h, self._info_status(w, h),
                                      time.monotonic() - self._first_image_time, rgb_p)
        except IntrinsicsUnavailable as exc:
            if exc.waiting:
                st.frames_waiting += 1
            else:
                self._problem(exc.key, str(exc))
            return
        f_px = plan.camera.scaled(out_w, out_h).fx if plan.camera is not None else None
        t2 = time.perf_counter()
        c2 = time.thread_time()
        # 3. network
        try:
            pred = self.model.infer(rgb_p, f_px=f_px)
        except Exception as exc:
            self._problem("model:" + type(exc).__name__, f"frame skipped: inference failed: "
                                                          f"{type(exc).__name__}: {exc}")
            return
        t3 = time.perf_counter()
        c3 = time.thread_time()
        st.inferences += 1
        # 4. outputs
        depth = np.asarray(pred.depth, dtype=np.float32)
        if depth.ndim == 3 and depth.shape[2] == 1:
            depth = depth[:, :, 0]
        if depth.shape != (out_h, out_w):
            self._problem("model:shape", f"frame skipped: the model returned depth of shape {depth.shape}, "
                                         f"expected {(out_h, out_w)}")
            return
        try:
            camera_in = plan.camera
            if camera_in is None:
                focal = pred.focal_px * w / out_w if pred.focal_px is not None else None
                camera_in = self.resolver.add_model_sample(plan, focal)
        except IntrinsicsUnavailable as exc:
            self._problem(exc.key, str(exc))
            return
        camera = camera_in.scaled(out_w, out_h)
        confidence = None
        if pred.confidence is not None:
            confidence = np.asarray(pred.confidence, dtype=np.float32)
            if confidence.shape != depth.shape:
                confidence = None
                self._warn_once("conf_shape", "the model's confidence has the wrong shape; "
                                              "depth/confidence is not published")
        st.domain, st.domain_confidence = pred.domain, pred.domain_confidence
        st.focal_px, st.last_size = camera.fx, (out_w, out_h)
        header = msg.header
        publish_s = 0.0
        lo, hi = cfg["min_range"], cfg["max_range"]
        depth_out = None
        if DEPTH_TOPIC in wanted or COLORIZED_TOPIC in wanted:
            with np.errstate(invalid="ignore"):  # same validity as the cloud: finite, > 0, in range
                depth_out = np.where((depth > 0) & (depth >= lo) & (depth <= hi), depth, np.float32(np.nan))
        if DEPTH_TOPIC in wanted:
            m = msgs.depth_image_msg(depth_out, header, encoding=cfg["depth_encoding"])
            publish_s += self._publish(DEPTH_TOPIC, m)
        if DEPTH_INFO_TOPIC in wanted:
            publish_s += self._publish(DEPTH_INFO_TOPIC, msgs.camera_info_msg(camera, header))
        if CONFIDENCE_TOPIC in wanted:
            if confidence is not None:
                publish_s += self._publish(CONFIDENCE_TOPIC, msgs.array_to_image_msg(confidence, "32FC1", header))
            else:
                self._warn_once("no_conf", f"model {self._model_name} gives no confidence; "
                                           f"'{CONFIDENCE_TOPIC}' stays silent")
        if POINTS_TOPIC in wanted:
            cloud = self._cloud(cfg, depth, confidence, rgb_p, camera)
            publish_s += self._publish(POINTS_TOPIC, msgs.cloud_msg(cloud, header))
        if COLORIZED_TOPIC in wanted:
            cmin, cmax = cfg["colorize_min_depth"] or None, cfg["colorize_max_depth"] or None
            color = colorize_depth(depth_out, min_depth=cmin, max_depth=cmax)
            publish_s += self._publish(COLORIZED_TOPIC, msgs.array_to_image_msg(color, "rgb8", header))
        t4 = time.perf_counter()
        c4 = time.thread_time()
        # 5. bookkeeping
        st.frames_processed += 1
        st.output_rate.tick()
        st.inference_ms.add((t3 - t2) * 1e3)
        st.stage_ms["decode"].add((t1 - t0) * 1e3)
        st.stage_ms["intrinsics"].add((t2 - t1) * 1e3)
        st.stage_ms["publish"].add(publish_s * 1e3)
        st.stage_ms["postprocess"].add((t4 - t3 - publish_s) * 1e3)
        # overhead: everything but the networks (the focal estimator is a network too: only
        # count the intrinsics step when it did not run one)
        intr = (t2 - t1) if plan.source == "camera_info" else 0.0
        st.overhead_ms.add(((t1 - t0) + intr + (t4 - t3)) * 1e3)
        if plan.source == "camera_info":
            st.overhead_cpu_ms.add(((c2 - c0) + (c4 - c3)) * 1e3)
        st.latency_ms.add((t4 - t_recv) * 1e3)
        stamp = header.stamp
        if stamp.sec or stamp.nanosec:
            now = self.get_clock().now().nanoseconds
            st.age_ms.add((now - (stamp.sec * 10 ** 9 + stamp.nanosec)) / 1e6)

    def _publish(self, topic: str, message) -> float:
        t = time.perf_counter()
        self._pubs[topic].publish(message)
        return time.perf_counter() - t

    def _cloud(self, cfg, depth, confidence, rgb, camera):
        color = rgb if cfg["cloud_color"] else None
        conf_field = confidence if cfg["cloud_confidence"] else None
        lo, hi = cfg["min_range"], cfg["max_range"]
        if confidence is not None and cfg["min_confidence"] > 0:
            with np.errstate(invalid="ignore"):
                depth = np.where(confidence >= cfg["min_confidence"], depth, np.float32(np.nan))
        mode = cfg["cloud_mode"]
        if mode in ("organized", "stride"):
            stride = cfg["cloud_stride"] if mode == "stride" else 1
            # organized: H x W with NaN holes (depth_image_proc); stride: a downsampled cloud for
            # costmaps, 1 x N with the invalid points removed (is_dense)
            return depth_to_cloud(depth, camera, rgb=color, confidence=conf_field, min_range=lo,
                                  max_range=hi, stride=stride, remove_invalid=(mode == "stride"))
        points = backproject(depth, camera, lo, hi)
        pts, col, cf = voxel_filter(points, cfg["voxel_size"], rgb=color, confidence=conf_field,
                                    outlier_nb=cfg["outlier_nb"], outlier_std=cfg["outlier_std"])
        return pack_cloud(pts, rgb=col, confidence=cf, organized=False)

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self._once:
            self._once.add(key)
            self.get_logger().warning(text)

    # ------------------------------------------------------------------------------------------
    # diagnostics
    # ------------------------------------------------------------------------------------------
    def diagnostic_values(self) -> List[tuple]:
        st, cfg = self.stats, self._cfg
        worker = self._worker
        vals: List[tuple] = [
            ("input_rate_hz", st.input_rate.rate()),
            ("output_rate_hz", st.output_rate.rate()),
            ("frames_in", st.frames_in),
            ("frames_processed", st.frames_processed),
            ("frames_dropped", worker.dropped if worker else 0),
            ("frames_skipped", st.frames_skipped),
            ("frames_waiting_camera_info", st.frames_waiting),
            ("frames_without_subscribers", st.frames_idle),
        ]
        for name, stats in (("latency_ms", st.latency_ms), ("stamp_age_ms", st.age_ms),
                            ("inference_ms", st.inference_ms), ("overhead_ms", st.overhead_ms),
                            ("overhead_cpu_ms", st.overhead_cpu_ms)):
            s = stats.summary()
            vals += [(f"{name}_{k}", s[k]) for k in ("mean", "p50", "p95", "max") if k in s]
        for stage, stats in st.stage_ms.items():
            s = stats.summary()
            if s:
                vals += [(f"{stage}_ms_mean", s["mean"]), (f"{stage}_ms_p50", s["p50"])]
        cur = self.resolver.current
        vals += [
            ("model", self._model_name),
            ("device", self._device),
            ("precision", cfg["precision"]),
            ("domain_setting", cfg["domain"]),
            ("domain", st.domain or ""),
            ("domain_confidence", st.domain_confidence),
            ("focal_source", cur["source"]),
            ("focal_reason", cur["reason"]),
            ("focal_px", st.focal_px),
            ("output_size", f"{st.last_size[0]}x{st.last_size[1]}" if st.last_size else ""),
            ("subscribed_outputs", ",".join(self.wanted_outputs())),
        ]
        return vals

    def _publish_diagnostics(self) -> None:
        if self._closing:
            return
        cur = self.resolver.current
        level, message = diag.OK, "running"
        recent = self._problems.recent(_PROBLEM_WINDOW_S)
        if not self.wanted_outputs():
            message = "idle: no subscribers"
        elif self.stats.frames_processed == 0 and self.stats.frames_in == 0:
            message = f"no images on '{self._image_topic}' yet"
        if cur["source"] == "fallback_hfov":
            level, message = diag.WARN, f"intrinsics from fallback_hfov_deg: {cur['reason']}"
        elif self.stats.frames_waiting and cur["source"] == "none":
            level, message = diag.WARN, "waiting for CameraInfo"
        if recent:
            level, message = diag.ERROR, recent
        arr = diag.diagnostic_array(self.get_clock().now().to_msg(), f"depth_ros: {self.get_fully_qualified_name()}",
                                    self._device, level, message, self.diagnostic_values())
        self._diag_pub.publish(arr)

    # ------------------------------------------------------------------------------------------
    # teardown
    # ------------------------------------------------------------------------------------------
    def _teardown(self) -> None:
        self._closing = True
        worker = getattr(self, "_worker", None)
        if worker is not None:
            if not worker.stop(timeout=5.0):
                self.get_logger().warning("the worker is still busy with a frame; exiting anyway")

    def destroy_node(self):
        self._teardown()
        return super().destroy_node()


def tune_malloc() -> bool:
    """Serve large short-lived buffers (clouds, message copies: ~10 MB per 640x480 frame) from the heap.

    glibc hands blocks above its mmap threshold out as fresh ``mmap`` pages and unmaps them on free,
    so every frame paid the page faults of a new 10-30 MB buffer several times (in the cloud, rclpy's
    conversion and the DDS serialization): about 15 ms of a 20 ms per-frame overhead at 640x480.
    Raising the mmap and trim thresholds (and using one malloc arena) keeps those pages mapped and
    reused. Called by ``main`` before any thread starts. glibc/Linux only;
    ``DEPTH_ROS_NO_MALLOPT=1`` turns it off. Returns True when applied.
    """
    if os.environ.get("DEPTH_ROS_NO_MALLOPT", "0") not in ("", "0") or not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
    # one arena: a thread's own arena lives in 64 MB heaps, too small for 30 MB (720p) clouds, which
    # then get fresh mappings again; the main arena grows without that limit.
    mallopt(m_arena_max, 1)
    return bool(mallopt(m_mmap_threshold, 64 << 20)) and bool(mallopt(m_trim_threshold, 256 << 20))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console script ``depth_node`` (ROS arguments: ``--ros-args -p ... -r ...``)."""
    tune_malloc()
    args = list(sys.argv if argv is None else argv)
    try:
        rclpy.init(args=args)
    except Exception as exc:
        print(f"[depth_node] cannot initialise ROS: {exc}", file=sys.stderr)
        return 2
    node = None
    code = 0
    try:
        node = DepthNode()
    except StartupError as exc:
        rclpy.logging.get_logger(NODE_NAME).fatal(str(exc))
        code = 1
    except KeyboardInterrupt:
        code = 130
    except ExternalShutdownException:
        code = 0
    if node is not None:
        try:
            rclpy.spin(node)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            node.destroy_node()
    if rclpy.ok():
        try:
            rclpy.shutdown()
        except Exception:
            pass
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
