"""``depth_node``: camera image (+ CameraInfo) -> metric depth, confidence, PointCloud2 (ROS plumbing only).

The rclpy executor only stores the newest message (callbacks are O(1)); a ``LatestFrameWorker`` decodes
it, runs the frame pipeline (``depth_ros.pipeline``) and publishes the outputs that have subscribers.
Frames that arrive while the network is busy replace the waiting one (dropped and counted). Messages
are built by ``depth_ros.msgs``; parameters are specified in ``params`` and declared by ``ros_params``.
"""
from __future__ import annotations

import functools
import time
from typing import Any, List, Optional, Sequence

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from depth_ros import msgs
from depth_ros.models.base import DepthModel, UserModel
from depth_ros.node import diagnostics as diag
from depth_ros.node import params as P
from depth_ros.node.publisher import OutputPublisher
from depth_ros.node.ros_params import StartupError, declare, updated
from depth_ros.node.side_inputs import SideInputs
from depth_ros.node.stats import FrameStats
from depth_ros.node.worker import LatestFrameWorker
from depth_ros.pipeline import outputs as O
from depth_ros.pipeline.frame import FrameProcessor, FrameSkipped, PipelineConfig, check_domain
from depth_ros.pipeline.intrinsics import IntrinsicsResolver
from depth_ros.pipeline.loading import ModelLoadError, load_model, make_resolver

NODE_NAME = "depth_node"
_LAZY_CHECK_PERIOD_S = 0.2
_PROBLEM_WINDOW_S = 5.0
_TOPIC_OF_KEY = {o.key: o.topic for o in O.OUTPUTS}

__all__ = ["DepthNode", "NODE_NAME", "StartupError"]


def _qos(reliability: str, depth: int) -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth), durability=DurabilityPolicy.VOLATILE,
                      reliability=(ReliabilityPolicy.RELIABLE if reliability == "reliable"
                                   else ReliabilityPolicy.BEST_EFFORT))


class DepthNode(Node):
    """See the module docstring and README.md."""

    def __init__(self, node_name: str = NODE_NAME, *, model: Any = None, **node_kwargs):
        super().__init__(node_name, **node_kwargs)
        self._worker: Optional[LatestFrameWorker] = None
        self._out: Optional[OutputPublisher] = None
        self._stall_log = diag.ProblemLog(period_s=10.0)
        self._closing = False
        try:
            self._setup(model)
        except BaseException:
            self._teardown()
            super().destroy_node()
            raise

    # -- setup ------------------------------------------------------------------------------------
    def _setup(self, model: Any) -> None:
        v = self._values = declare(self)
        self.stats = FrameStats()
        self._say = diag.Reporter(self.get_logger(), self.stats, _PROBLEM_WINDOW_S)
        self._first_image_time: Optional[float] = None
        self._image_sub = None
        self._model_name = v["model"] if model is None else type(model).__name__
        if model is None:
            self.get_logger().info(f"loading model {v['model']} (weights: {v['weights'] or 'default cache'}, "
                                   f"device: {v['device']}, precision: {v['precision']})")
            try:
                model = load_model(v["model"], v["weights"], v["device"], v["precision"], backend=v["backend"],
                                   config=self._kwargs("model_config."))
            except ModelLoadError as exc:
                raise StartupError(str(exc)) from None
        self.model = model if isinstance(model, DepthModel) else UserModel(model)
        self._device = str(getattr(self.model, "device", v["device"]))
        problem = self._apply_domain(v["domain"], startup=True)
        if problem:
            raise StartupError(problem)
        self._warmup()
        self.processor = FrameProcessor(self.model, PipelineConfig.from_mapping(v), make_resolver(
            self.model, v, self._kwargs("focal_estimator_config."), log=self._say.line))
        out_qos = _qos(v["qos_output_reliability"], v["qos_output_depth"])
        self._pubs = {o.topic: self.create_publisher(self._msg_class(o.msg_type), o.topic, out_qos)
                      for o in O.OUTPUTS}
        self._diag_pub = self.create_publisher(DiagnosticArray, O.DIAGNOSTICS_TOPIC, 10)
        self._in_qos = _qos(v["qos_input_reliability"], v["qos_input_depth"])
        self._side = SideInputs(v["camera_mount"])
        self.create_subscription(self._msg_class(O.CAMERA_INFO), O.CAMERA_INFO_TOPIC, self._side.add_camera_info,
                                 self._in_qos)
        self._odom_sub = None
        self._update_odometry_subscription()
        if self.model.capabilities.metric_reference:
            self.create_subscription(self._msg_class(O.IMAGE), O.METRIC_REFERENCE_TOPIC, self._side.add_reference,
                                     self._in_qos)
        compressed = v["image_transport"] == "compressed"
        self._image_type = self._msg_class(O.COMPRESSED_IMAGE if compressed else O.IMAGE)
        self._image_topic = self._resolve(O.IMAGE_TOPIC) + (O.COMPRESSED_SUFFIX if compressed else "")
        self._info_topic = self._resolve(O.CAMERA_INFO_TOPIC)
        # publish() runs on its own thread: a stalled RELIABLE subscriber never blocks the worker
        self._out = OutputPublisher(self._publish_one, all_acked=self._all_acked,
                                    on_error=self._on_publish_error).start()
        self._worker = LatestFrameWorker(self._process, on_error=self._on_worker_error).start()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.create_timer(_LAZY_CHECK_PERIOD_S, self._update_input_subscription)
        self.create_timer(v["diagnostics_period"], self._publish_diagnostics)
        self._update_input_subscription()
        self.get_logger().info(
            f"ready: model {self._model_name} on {self._device} ({v['precision']}), input '{self._image_topic}' + "
            f"'{self._info_topic}', outputs under '{self._resolve('depth')}'"
            + (" (lazy: waiting for subscribers)" if v["lazy"] else ""))

    @staticmethod
    def _msg_class(type_name: str):
        return msgs.RCLPY.cls(type_name)

    @property
    def resolver(self) -> IntrinsicsResolver:
        return self.processor.resolver

    @property
    def worker(self) -> Optional[LatestFrameWorker]:
        return self._worker

    @property
    def image_subscribed(self) -> bool:
        """True while the node subscribes to its image topic (``lazy``: only with output subscribers)."""
        return self._image_sub is not None

    def _resolve(self, topic: str) -> str:
        try:
            return self.resolve_topic_name(topic)
        except Exception:
            return topic

    def _kwargs(self, prefix: str):
        v = self._values
        kwargs = P.passthrough(v, prefix)
        if v["compile"]:
            kwargs.setdefault("compile", True)
        if prefix == "model_config." and v["backend"] == "onnxruntime":
            kwargs.update(providers=v["onnx_providers"] or None, trt_fp16=v["trt_fp16"],
                          trt_cache_dir=v["trt_cache_dir"] or None)
        return kwargs

    def _warmup(self) -> None:
        w = self._values["output_width"] or 640
        t0 = time.perf_counter()
        try:
            self.model.warmup(max(8, int(round(w * 3 / 4))), w)
        except Exception as exc:
            raise StartupError(f"model warm-up failed: {type(exc).__name__}: {exc}") from None
        self.get_logger().info(f"model warmed up in {time.perf_counter() - t0:.2f} s")

    def _apply_domain(self, domain: str, startup: bool = False) -> Optional[str]:
        """Check ``domain`` against the model's heads (the pipeline forces the head per frame)."""
        problem, ignored = check_domain(self.model.capabilities, domain)
        if ignored and startup:
            self.get_logger().warning(f"model {self._model_name} has no domain switch; domain '{domain}' is ignored")
        return f"model {self._model_name}: {problem}" if problem else None

    # -- parameters at runtime -------------------------------------------------------------------
    def _on_set_parameters(self, parameters):
        from rcl_interfaces.msg import SetParametersResult

        new, reason = updated(self._values, parameters)
        if new is not None and new["domain"] != self._values["domain"]:
            reason = self._apply_domain(new["domain"]) or ""
        if new is None or reason:
            return SetParametersResult(successful=False, reason=reason)
        self._values = new
        self.processor.reconfigure(new)
        self._update_odometry_subscription()
        return SetParametersResult(successful=True)

    # -- subscriptions (executor thread: O(1)) ---------------------------------------------------
    def wanted_outputs(self) -> List[str]:
        """Outputs that have subscribers (all of them when ``lazy`` is false)."""
        if not self._values["lazy"]:
            return list(self._pubs)
        return [name for name, pub in self._pubs.items() if pub.get_subscription_count() > 0]

    def _update_input_subscription(self) -> None:
        if self._closing:
            return
        wanted = bool(self.wanted_outputs())
        if wanted and self._image_sub is None:
            self._image_sub = self.create_subscription(self._image_type, self._image_topic, self._on_image,
                                                       self._in_qos)
        elif not wanted and self._image_sub is not None:
            self.destroy_subscription(self._image_sub)
            self._image_sub = None
            self._worker.clear()

    def _on_image(self, msg) -> None:
        self.stats.frames_in += 1
        self.stats.input_rate.tick()
        self._worker.submit((msg, time.perf_counter()))

    def _update_odometry_subscription(self) -> None:
        if self._values["scale_stabilization"] == "odometry" and self._odom_sub is None:
            self._odom_sub = self.create_subscription(self._msg_class(O.ODOMETRY), O.ODOMETRY_TOPIC, self._on_odometry,
                                                      _qos("best_effort", 50))

    def _on_odometry(self, msg) -> None:
        problem = self._side.add_odometry(msg)
        if problem:
            self._say.once("odom:" + diag.problem_key(problem), f"ignoring odometry on '{O.ODOMETRY_TOPIC}': {problem}")

    # -- the worker --------------------------------------------------------------------------------
    def _on_worker_error(self, exc: BaseException) -> None:
        self._say.problem("internal:" + type(exc).__name__, f"frame skipped: unexpected {type(exc).__name__}: {exc}")
        self._say.traceback_once(type(exc).__name__, exc)

    def _process(self, item) -> None:
        msg, t_recv = item
        wanted = self.wanted_outputs()
        if not wanted:
            self.stats.frames_idle += 1
            return
        t = {"start": time.perf_counter()}
        c0 = time.thread_time()
        try:
            rgb = msgs.msg_to_rgb8(msg, max_pixels=self._values["max_image_pixels"] or None)
        except (ValueError, TypeError) as exc:
            self._say.problem("image:" + diag.problem_key(str(exc)), f"frame skipped: bad image on '{self._image_topic}' "
                          f"({getattr(msg, 'encoding', getattr(msg, 'format', '?'))}, {getattr(msg, 'width', '?')}x"
                          f"{getattr(msg, 'height', '?')}): {exc}")
            return
        t["decoded"] = time.perf_counter()
        if self._first_image_time is None:
            self._first_image_time = time.monotonic()
        h, w = rgb.shape[:2]
        missing = f"no CameraInfo on '{self._info_topic}' within {self._values['camera_info_timeout']:g} s"
        stamp_ns = msgs.stamp_ns(msg.header)
        side = self._side.for_image(msg.header.frame_id, stamp_ns, w, h, missing)
        while self._side.problems:
            self._say.once(*self._side.problems.pop())
        try:
            res = self.processor.process(rgb, msg.header.frame_id, side.info, time.monotonic() - self._first_image_time,
                                         reference=side.reference, pose=side.pose)
        except FrameSkipped as exc:
            if exc.waiting:
                self.stats.frames_waiting += 1
                return
            self._say.problem(exc.key, f"frame skipped: {exc}")
            if exc.cause is not None:
                self._say.traceback_once(exc.key, exc.cause)
            return
        t["processed"] = time.perf_counter()
        for key, text in res.warnings:
            self._say.once(key, text)
        for key, text in res.events:
            self._say.note(key, text)
        publish_s = self._publish_outputs(res, msg.header, wanted, stamp_ns)
        t["published"] = time.perf_counter()
        cpu = time.thread_time() - c0 - res.timings["inference_cpu"] if res.source == "camera_info" else None
        self.stats.record(res, t, cpu, publish_s, t["published"] - t_recv)

    def _publish_outputs(self, res, header, wanted: Sequence[str], stamp_ns: int = 0) -> float:
        """Build the wanted outputs of one frame and hand them to the publishing thread (``publisher.py``);
        returns the seconds the hand-off took (the worker never waits in publish())."""
        messages = []
        for o in O.OUTPUTS:
            if o.topic not in wanted:
                continue
            message = msgs.output_msg(o.key, res, header, self._values["depth_encoding"])
            if message is None:
                self._say.once("no_conf", f"model {self._model_name} gives no confidence; '{o.topic}' stays silent")
                continue
            messages.append((o.topic, message))
        t0 = time.perf_counter()
        self._out.submit(messages, done=functools.partial(self._on_published, stamp_ns))
        return time.perf_counter() - t0

    # -- the publishing thread -----------------------------------------------------------------------
    def _publish_one(self, topic: str, message) -> None:
        self._pubs[topic].publish(message)

    def _all_acked(self, topic: str) -> bool:
        return self._pubs[topic].wait_for_all_acked(Duration(seconds=0))

    def _on_published(self, stamp_ns: int) -> None:
        if stamp_ns:
            self.stats.age_ms.add((self.get_clock().now().nanoseconds - stamp_ns) / 1e6)

    def _on_publish_error(self, exc: BaseException) -> None:
        if self._closing:
            return
        line = self._stall_log.report("error:" + type(exc).__name__, f"publishing failed: {type(exc).__name__}: {exc}")
        if line:
            self._say.line("error", line)

    # -- diagnostics -------------------------------------------------------------------------------
    def diagnostic_values(self) -> List[tuple]:
        st, v, cur = self.stats, self._values, self.resolver.current
        return st.values(self._worker.dropped if self._worker else 0) + [
            ("model", self._model_name), ("device", self._device), ("precision", v["precision"]),
            ("domain_setting", v["domain"]), ("domain", st.domain or ""), ("domain_confidence", st.domain_confidence),
            ("focal_source", cur["source"]), ("focal_reason", cur["reason"]), ("focal_px", st.focal_px),
            ("domain_switches", st.domain_switches), ("low_confidence_fraction", st.low_confidence),
            ("scale_stabilization", v["scale_stabilization"]),
            ("scale_applied", st.scale.scale if st.scale else None),
            ("scale_fit_inliers", st.scale.inlier_fraction if st.scale else None),
            ("scale_fit_overlap", st.scale.overlap if st.scale else None),
            ("scale_state", st.scale.state if st.scale else ""),
            ("output_size", f"{st.last_size[0]}x{st.last_size[1]}" if st.last_size else ""),
            *[(f"model_{k}", x) for k, x in st.extras.items() if isinstance(x, (bool, int, float, str))],
            ("subscribed_outputs", ",".join(self.wanted_outputs())),
        ] + (self._out.values() if self._out is not None else [])

    def _publish_diagnostics(self) -> None:
        if self._closing:
            return
        level, message = diag.node_status(self.stats, self.resolver.current, bool(self.wanted_outputs()),
                                          self._say.problems.recent(_PROBLEM_WINDOW_S), self._image_topic)
        stalled = self._out.problem() if self._out is not None else None
        if stalled:  # subscribers stopped acknowledging / publish() blocked: log (throttled) and WARN
            if level < diag.WARN:
                level, message = diag.WARN, stalled
            line = self._stall_log.report("stalled", stalled)
            if line:
                self._say.line("warn", line)
        self._diag_pub.publish(diag.diagnostic_array(
            self.get_clock().now().to_msg(), f"depth_ros: {self.get_fully_qualified_name()}", self._device, level,
            message, self.diagnostic_values()))

    # -- teardown ------------------------------------------------------------------------------------
    def _teardown(self) -> None:
        self._closing = True
        if self._worker is not None and not self._worker.stop(timeout=5.0):
            self.get_logger().warning("the worker is still busy with a frame; exiting anyway")
        if self._out is not None:
            self._out.stop(timeout=2.0)

    def destroy_node(self):
        self._teardown()
        return super().destroy_node()
