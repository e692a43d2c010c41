"""depth_node in-process: real rclpy (one isolated context), user model classes from fake_models.py.

Every test runs its node in its own namespace, so that messages of one test never reach another.
"""
import itertools
import math
import time

import numpy as np
import pytest
import ros_utils as ru
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import Log
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from depth_ros import msgs
from depth_ros.node.node import DepthNode, StartupError
from depth_ros.pipeline.outputs import (
    COLORIZED_TOPIC,
    CONFIDENCE_TOPIC,
    DEPTH_INFO_TOPIC,
    DEPTH_TOPIC,
    POINTS_TOPIC,
)

ALL_OUTPUTS = {DEPTH_TOPIC: Image, DEPTH_INFO_TOPIC: CameraInfo, CONFIDENCE_TOPIC: Image,
               POINTS_TOPIC: PointCloud2, COLORIZED_TOPIC: Image}
BASE = {"model": "fake_models:ConstantDepthModel", "camera_info_timeout": 1.0, "diagnostics_period": 0.2}
_ns = itertools.count()


@pytest.fixture(scope="module")
def ros():
    session = ru.RosSession(name="test_node_probe")
    yield session
    session.close()


class Harness:
    """A DepthNode in namespace ``ns`` plus publishers/collectors of the probe node."""

    def __init__(self, ros, node, ns, compressed=False):
        self.ros, self.node, self.ns = ros, node, ns
        self.image_pub = ros.publisher(CompressedImage if compressed else Image,
                                       f"{ns}/image" + ("/compressed" if compressed else ""))
        self.info_pub = ros.publisher(CameraInfo, f"{ns}/camera_info")
        self.cols = {}
        self._seed = itertools.count()

    def collect(self, *topics):
        for t in topics:
            if t not in self.cols:
                self.cols[t] = self.ros.collect(ALL_OUTPUTS[t], f"{self.ns}/{t}")
        assert ru.wait_for(lambda: set(topics) <= set(self.node.wanted_outputs()), 5.0), "discovery"
        # the node subscribes to the image lazily (timer); wait until it does
        assert ru.wait_for(lambda: self.image_pub.get_subscription_count() > 0, 5.0), "image subscription"
        return [self.cols[t] for t in topics]

    def stamp(self):
        return self.ros.node.get_clock().now().to_msg()

    def send(self, width=64, height=48, encoding="rgb8", info=True, fx=50.0, image=None, frame_id="cam"):
        """Publish CameraInfo (``True`` = a valid one, a message, or None) and an image; returns the stamp."""
        st = self.stamp()
        if info is True:
            info = ru.camera_info_msg(width, height, fx, frame_id=frame_id)
        if info is not None:
            info.header.stamp = st
            self.info_pub.publish(info)
            time.sleep(0.01)  # let the CameraInfo arrive first
        msg = image if image is not None else ru.image_msg(width, height, encoding, frame_id=frame_id,
                                                           seed=next(self._seed))
        msg.header.stamp = st
        self.image_pub.publish(msg)
        return st

    def send_until(self, topic, timeout=5.0, **kw):
        """Send frames until ``topic`` has an output with one of their stamps; returns that output."""
        col = self.cols[topic]
        deadline = time.monotonic() + timeout
        stamps = set()
        while time.monotonic() < deadline:
            st = self.send(**kw)
            stamps.add((st.sec, st.nanosec))
            if ru.wait_for(lambda: any((m.header.stamp.sec, m.header.stamp.nanosec) in stamps
                                       for m in col.messages), 0.3):
                return [m for m in col.messages if (m.header.stamp.sec, m.header.stamp.nanosec) in stamps][-1]
        raise AssertionError(f"no output on {topic} within {timeout} s")

    def by_stamp(self, topic, stamp):
        found = self.cols[topic].find(lambda m: m.header.stamp == stamp)
        return found[-1] if found else None


@pytest.fixture
def make(ros):
    made = []

    def _make(compressed=False, **params):
        ns = f"/t{next(_ns)}"
        values = dict(BASE, **params)
        if compressed:
            values["image_transport"] = "compressed"
        node = DepthNode(context=ros.context, namespace=ns,
                         parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
        ros.add_node(node)
        made.append(node)
        return Harness(ros, node, ns, compressed)

    yield _make
    for node in made:
        ros.remove_node(node)


def _diag_for(col, node, predicate=lambda v: True, timeout=5.0):
    name = f"depth_ros: {node.get_fully_qualified_name()}"
    out = []

    def ok():
        for m in col.messages:
            for s in m.status:
                if s.name == name:
                    v = {kv.key: kv.value for kv in s.values}
                    if predicate(v):
                        out.append((s, v))
                        return True
        return False
    assert ru.wait_for(ok, timeout), "no matching diagnostics"
    return out[0]


# ------------------------------------------------------------------------------------------------
def test_outputs_share_the_input_header_and_are_consistent(ros, make):
    h = make(output_width=32, **{"model_config.ramp": 1.0, "model_config.depth": 2.0}, min_range=0.1,
             max_range=80.0, cloud_confidence=True)
    diag_col = ros.collect(DiagnosticArray, "/diagnostics")
    h.collect(*ALL_OUTPUTS)
    pts = h.send_until(POINTS_TOPIC, width=64, height=48, encoding="bgr8", fx=50.0)
    stamp = pts.header.stamp
    assert ru.wait_for(lambda: all(h.by_stamp(t, stamp) is not None for t in ALL_OUTPUTS), 3.0)
    out = {t: h.by_stamp(t, stamp) for t in ALL_OUTPUTS}
    for t, m in out.items():
        assert m.header.frame_id == "cam", t
        assert m.header.stamp == stamp, t

    depth = out[DEPTH_TOPIC]
    assert (depth.encoding, depth.width, depth.height, depth.step) == ("32FC1", 32, 24, 128)
    d = msgs.image_msg_to_array(depth)
    assert d.dtype == np.float32 and np.nanmin(d) >= 2.0 and np.nanmax(d) <= 3.0

    info = out[DEPTH_INFO_TOPIC]
    assert (info.width, info.height) == (32, 24)
    # 64x48 with fx 50, cx 31.5, cy 23.5  -> scaled by 0.5
    np.testing.assert_allclose(info.k, [25.0, 0, 15.75, 0, 25.0, 11.75, 0, 0, 1])
    np.testing.assert_allclose(info.p[:4], [25.0, 0, 15.75, 0])

    conf = out[CONFIDENCE_TOPIC]
    assert (conf.encoding, conf.width, conf.height) == ("32FC1", 32, 24)
    c = msgs.image_msg_to_array(conf)
    assert c.min() >= 0.0 and c.max() <= 1.0

    cloud = out[POINTS_TOPIC]
    assert (cloud.height, cloud.width, cloud.point_step, cloud.row_step) == (24, 32, 32, 32 * 32)
    assert [(f.name, f.offset, f.datatype) for f in cloud.fields] == [
        ("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("rgb", 16, 7), ("confidence", 20, 7)]
    assert not cloud.is_dense and not cloud.is_bigendian
    words = np.frombuffer(bytes(cloud.data), np.float32).reshape(24, 32, 8)
    np.testing.assert_allclose(words[..., 2], d, rtol=1e-6)  # z = depth
    u, v = 3, 20
    np.testing.assert_allclose(words[v, u, 0], (u - 15.75) * d[v, u] / 25.0, rtol=1e-5)
    np.testing.assert_allclose(words[v, u, 1], (v - 11.75) * d[v, u] / 25.0, rtol=1e-5)
    np.testing.assert_allclose(words[..., 5], c)

    col = out[COLORIZED_TOPIC]
    assert (col.encoding, col.width, col.height) == ("rgb8", 32, 24)

    _, values = _diag_for(diag_col, h.node, lambda v: int(v.get("frames_processed", 0)) >= 1)
    assert values["domain"] == "indoor" and float(values["domain_confidence"]) == pytest.approx(0.75)
    assert values["focal_source"] == "camera_info"
    assert float(values["focal_px"]) == pytest.approx(25.0)
    assert values["model"] == "fake_models:ConstantDepthModel"
    assert values["output_size"] == "32x24"
    for key in ("input_rate_hz", "output_rate_hz", "frames_dropped", "latency_ms_p50", "overhead_ms_p50"):
        assert key in values
    ros.node.destroy_subscription(diag_col.sub)


def test_16uc1_and_strided_xyz_cloud(make):
    h = make(depth_encoding="16UC1", cloud_mode="stride", cloud_stride=4, cloud_color=False,
             **{"model_config.depth": 2.0})
    h.collect(DEPTH_TOPIC, POINTS_TOPIC)
    cloud = h.send_until(POINTS_TOPIC, width=64, height=48)
    # every 4th pixel of 64 x 48, invalid points removed: 1 x N, dense
    assert (cloud.height, cloud.width, cloud.point_step, cloud.is_dense) == (1, 12 * 16, 16, True)
    assert [f.name for f in cloud.fields] == ["x", "y", "z"]
    xyz = np.frombuffer(bytes(cloud.data), np.float32).reshape(-1, 4)[:, :3]
    assert np.isfinite(xyz).all() and np.allclose(xyz[:, 2], 2.0)
    assert ru.wait_for(lambda: h.by_stamp(DEPTH_TOPIC, cloud.header.stamp) is not None, 2.0)
    depth = h.by_stamp(DEPTH_TOPIC, cloud.header.stamp)
    assert depth.encoding == "16UC1" and depth.step == 128
    assert np.all(msgs.image_msg_to_array(depth) == 2000)


def test_non_positive_depth_is_invalid_even_with_min_range_zero(make):
    # depth 0 .. 1 m left to right (column 0 exactly 0): min_range 0 must not let a 0 depth through
    # (REP 118: NaN = invalid; a 0 in 32FC1 is a point at the camera centre for depth_image_proc),
    # and depth/image must agree with the cloud, which drops it
    h = make(min_range=0.0, cloud_color=False, **{"model_config.depth": 0.0, "model_config.ramp": 1.0})
    h.collect(DEPTH_TOPIC, POINTS_TOPIC)
    cloud = h.send_until(POINTS_TOPIC, width=64, height=48)
    assert ru.wait_for(lambda: h.by_stamp(DEPTH_TOPIC, cloud.header.stamp) is not None, 2.0)
    d = msgs.image_msg_to_array(h.by_stamp(DEPTH_TOPIC, cloud.header.stamp))
    z = np.frombuffer(bytes(cloud.data), np.float32).reshape(48, 64, 4)[..., 2]
    assert np.isnan(d[:, 0]).all() and (d[:, 1:] > 0).all()
    np.testing.assert_array_equal(np.isnan(d), np.isnan(z))


def test_voxel_cloud_for_nav2(make):
    pytest.importorskip("open3d")
    h = make(cloud_mode="voxel", voxel_size=0.2, **{"model_config.ramp": 2.0})
    h.collect(POINTS_TOPIC)
    cloud = h.send_until(POINTS_TOPIC, timeout=15.0, width=64, height=48)
    assert cloud.height == 1 and 0 < cloud.width < 64 * 48
    assert cloud.is_dense and cloud.point_step == 32
    pts = np.frombuffer(bytes(cloud.data), np.float32).reshape(-1, 8)[:, :3]
    assert np.isfinite(pts).all() and pts[:, 2].min() >= 2.0 - 0.2


def test_compressed_input(make):
    import cv2

    h = make(compressed=True)
    h.collect(DEPTH_TOPIC)
    rgb = ru.pattern_image(64, 48)
    ok, jpg = cv2.imencode(".jpg", rgb[..., ::-1])
    assert ok
    msg = CompressedImage(format="rgb8; jpeg compressed bgr8")
    msg.header.frame_id = "cam"
    msg.data = jpg.tobytes()
    depth = h.send_until(DEPTH_TOPIC, image=msg, width=64, height=48)
    assert (depth.width, depth.height, depth.header.frame_id) == (64, 48, "cam")


# -- intrinsics -----------------------------------------------------------------------------------
def test_missing_camera_info_uses_the_models_focal_estimate(ros, make):
    h = make(model="fake_models:FocalEstimatingModel", camera_info_timeout=0.3, focal_samples=3)
    h.collect(DEPTH_INFO_TOPIC, POINTS_TOPIC)
    info = h.send_until(DEPTH_INFO_TOPIC, info=None, width=64, height=48)
    assert info.k[0] == pytest.approx(0.8 * 64) and info.k[4] == pytest.approx(0.8 * 64)
    assert info.k[2] == pytest.approx(31.5) and info.k[5] == pytest.approx(23.5)
    assert h.node.stats.frames_waiting >= 1  # frames inside camera_info_timeout were held back
    assert h.node.resolver.current["source"] == "model"
    # once frozen, the median is given to the model (f_px) instead of being re-estimated
    deadline = time.monotonic() + 5.0
    while h.node.model.last_f_px is None and time.monotonic() < deadline:
        h.send(info=None)
        time.sleep(0.1)
    assert h.node.model.last_f_px == pytest.approx(0.8 * 64)


def test_missing_camera_info_uses_depth_pro_fov_network(make):
    h = make(camera_info_timeout=0.0, focal_samples=2, focal_estimator_weights="random",
             allow_random_weights=True, **{"focal_estimator_config.vit_preset": "test_tiny",
                                           "focal_estimator_config.decoder_features": 16})
    h.collect(DEPTH_INFO_TOPIC)
    info = h.send_until(DEPTH_INFO_TOPIC, timeout=20.0, info=None, width=64, height=48)
    assert h.node.resolver.current["source"] == "estimated"
    assert math.isfinite(info.k[0]) and info.k[0] > 0 and info.k[0] == info.k[4]
    assert info.k[2] == pytest.approx(31.5)


def test_fallback_hfov_without_estimator_and_uncalibrated_info(make):
    h = make(camera_info_timeout=0.0, focal_estimator="none", fallback_hfov_deg=90.0)
    h.collect(DEPTH_INFO_TOPIC)
    uncalibrated = CameraInfo(width=64, height=48)
    uncalibrated.header.frame_id = "cam"
    info = h.send_until(DEPTH_INFO_TOPIC, info=uncalibrated, width=64, height=48)
    assert info.k[0] == pytest.approx(32.0)  # 0.5 * 64 / tan(45 deg)
    assert h.node.resolver.current["source"] == "fallback_hfov"
    assert "uncalibrated" in h.node.resolver.current["reason"]


def test_camera_info_wins_once_it_arrives(make):
    h = make(camera_info_timeout=0.0, focal_estimator="none", fallback_hfov_deg=90.0)
    h.collect(DEPTH_INFO_TOPIC)
    assert h.send_until(DEPTH_INFO_TOPIC, info=None).k[0] == pytest.approx(32.0)
    info = h.send_until(DEPTH_INFO_TOPIC, info=True, fx=77.0)
    assert info.k[0] == pytest.approx(77.0)


# -- robustness -----------------------------------------------------------------------------------
def _bad_image(kind):
    msg = ru.image_msg(64, 48, "rgb8", frame_id="cam")
    if kind == "encoding":
        msg.encoding = "weird_encoding"
    elif kind == "short":
        msg.data = msg.data[: len(msg.data) // 2]
    elif kind == "empty":
        msg.width, msg.height, msg.step = 0, 0, 0
        msg.data = []
    return msg


def _bad_info(kind):
    info = ru.camera_info_msg(64, 48, 50.0, frame_id="cam")
    if kind == "size":
        info = ru.camera_info_msg(320, 240, 50.0, frame_id="cam")
    elif kind == "nan":
        info.k[0] = info.p[0] = float("nan")
    elif kind == "negative":
        info.k[4] = info.p[5] = -50.0
    return info


@pytest.mark.parametrize("case,words", [
    ("encoding", "weird_encoding"), ("short", "step"), ("empty", "zero size"),
    ("size", "320x240"), ("nan", "not finite"), ("negative", "> 0"),
])
def test_bad_input_is_skipped_and_the_next_frame_processed(ros, make, case, words):
    h = make()
    rosout = ros.collect(Log, "/rosout", ru.reliable_qos(100))
    h.collect(DEPTH_TOPIC)
    h.send_until(DEPTH_TOPIC)  # the node works
    before = h.node.stats.frames_skipped
    if case in ("encoding", "short", "empty"):
        st = h.send(image=_bad_image(case))
    else:
        st = h.send(info=_bad_info(case))
    assert ru.wait_for(lambda: h.node.stats.frames_skipped > before, 3.0), "bad frame not reported"
    assert h.by_stamp(DEPTH_TOPIC, st) is None
    logger = h.ns.strip("/") + ".depth_node"
    assert ru.wait_for(lambda: any(m.name == logger and m.level == Log.ERROR and "skipped" in m.msg
                                   for m in rosout.messages), 3.0)
    err = [m.msg for m in rosout.messages if m.name == logger and m.level == Log.ERROR][-1]
    assert words in err, err
    ok = h.send_until(DEPTH_TOPIC)  # still alive, good frames processed again
    assert ok.width == 64
    ros.node.destroy_subscription(rosout.sub)


def test_invalid_camera_info_can_fall_back_to_estimation(make):
    h = make(invalid_camera_info="estimate", focal_estimator="none", fallback_hfov_deg=90.0)
    h.collect(DEPTH_INFO_TOPIC)
    info = h.send_until(DEPTH_INFO_TOPIC, info=_bad_info("size"))
    assert info.k[0] == pytest.approx(32.0) and (info.width, info.height) == (64, 48)


# -- real time ------------------------------------------------------------------------------------
def test_fast_publisher_frames_are_dropped_latency_bounded(make):
    delay = 0.15
    h = make(**{"model_config.delay": delay})
    (col,) = h.collect(DEPTH_TOPIC)
    h.send_until(DEPTH_TOPIC)
    h.node.stats.latency_ms.__init__()
    sent = 0
    t_end = time.monotonic() + 1.5
    while time.monotonic() < t_end:  # ~60 Hz against a ~6 Hz model
        h.send(info=True)
        sent += 1
        time.sleep(1 / 60)
    t_last = time.monotonic()
    assert ru.wait_for(lambda: not h.node.worker.busy, 2 * delay + 0.5), "a backlog is being worked off"
    drained = time.monotonic() - t_last
    stats = h.node.stats
    assert h.node.worker.dropped >= sent // 2
    assert drained <= 2 * delay + 0.5
    lat = stats.latency_ms.summary()
    assert lat["max"] <= (2 * delay + 0.4) * 1e3, lat  # at most one frame waits for one inference
    assert len(col) < sent


def test_lazy_no_subscribers_no_inference(ros, make):
    h = make()
    model = h.node.model
    time.sleep(0.5)
    for _ in range(5):
        h.send()
        time.sleep(0.05)
    assert model.calls == 0 and h.node.stats.inferences == 0
    assert not h.node.image_subscribed
    (col,) = h.collect(POINTS_TOPIC)
    h.send_until(POINTS_TOPIC)
    assert model.calls >= 1
    assert h.node.wanted_outputs() == [POINTS_TOPIC]  # only the wanted output is produced
    ros.node.destroy_subscription(col.sub)
    assert ru.wait_for(lambda: not h.node.image_subscribed, 3.0)
    calls = model.calls
    for _ in range(3):
        h.send()
        time.sleep(0.05)
    assert model.calls == calls


# -- parameters -----------------------------------------------------------------------------------
def test_runtime_parameter_changes_validated(make):
    h = make(model="fake_models:DomainSwitchModel")
    node = h.node

    def set_(name, value):
        return node.set_parameters([Parameter(name, value=value)])[0]

    r = set_("cloud_mode", "dense")
    assert not r.successful and "one of" in r.reason
    r = set_("model", "depth_pro")
    assert not r.successful and "read-only" in r.reason
    r = set_("min_range", 500.0)
    assert not r.successful and "max_range" in r.reason
    r = set_("cloud_stride", 0)
    assert not r.successful
    assert set_("min_range", 0.5).successful and node.processor.config.min_range == 0.5
    assert set_("domain", "outdoor").successful and node.processor.config.domain == "outdoor"
    assert set_("fallback_hfov_deg", 70.0).successful and node.resolver.fallback_hfov_deg == 70.0
    h.collect(DEPTH_TOPIC)
    h.send_until(DEPTH_TOPIC)
    assert node.stats.domain == "outdoor"


@pytest.mark.parametrize("params,fragment", [
    ({"model": "depth_pro", "weights": "/nonexistent/depth_pro.pt"}, "does not exist"),
    ({"weights": "random"}, "allow_random_weights"),
    ({"cloud_mode": "dense"}, "cloud_mode"),
    ({"model": "fake_models:BrokenModel"}, "fake.pt"),
    ({"model": "fake_models:NoSuchClass"}, "NoSuchClass"),
    ({"min_range": 10.0, "max_range": 5.0}, "min_range"),
    ({"model": "zoedepth_k", "weights": "random", "allow_random_weights": True, "device": "cpu",
      "model_config.backbone": "test_tiny", "domain": "indoor"}, "heads: outdoor"),
])
def test_startup_errors_are_one_clear_message(ros, params, fragment):
    overrides = [Parameter(k, value=v) for k, v in dict(BASE, **params).items()]
    with pytest.raises(StartupError) as err:
        DepthNode(context=ros.context, namespace=f"/bad{next(_ns)}", parameter_overrides=overrides)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_integer_override_for_double_parameter(ros, make):
    h = make(min_range=1)
    assert h.node.processor.config.min_range == 1.0


def test_corrupt_weights_are_one_clear_message(ros, tmp_path):
    bad = tmp_path / "depth_pro.pt"
    bad.write_bytes(b"this is not a checkpoint")
    overrides = [Parameter(k, value=v) for k, v in dict(BASE, model="depth_pro", weights=str(bad)).items()]
    with pytest.raises(StartupError, match="corrupt"):
        DepthNode(context=ros.context, namespace=f"/bad{next(_ns)}", parameter_overrides=overrides)


def test_every_parameter_is_declared_with_a_descriptor(make):
    from depth_ros.node import params as P

    node = make(**{"model_config.depth": 4.0}).node
    names = set(node.list_parameters([], 0).names)
    assert set(P.SPECS) | {"model_config.depth"} <= names
    descs = dict(zip(P.SPECS, node.describe_parameters(list(P.SPECS))))
    assert descs["cloud_stride"].integer_range[0].from_value == 1
    assert descs["min_confidence"].floating_point_range[0].to_value == 1.0
    assert "one of" in descs["cloud_mode"].additional_constraints
    assert descs["model"].read_only and not descs["min_range"].read_only
    assert node.model.depth == 4.0  # model_config.* reached the constructor


def test_different_problems_are_each_logged_at_once(ros, make):
    h = make()
    rosout = ros.collect(Log, "/rosout", ru.reliable_qos(100))
    h.collect(DEPTH_TOPIC)
    h.send_until(DEPTH_TOPIC)
    logger = h.ns.strip("/") + ".depth_node"

    def errors():
        return [m.msg for m in rosout.messages if m.name == logger and m.level == Log.ERROR]
    for case in ("short", "empty", "short"):
        n = h.node.stats.frames_skipped
        h.send(image=_bad_image(case))
        assert ru.wait_for(lambda: h.node.stats.frames_skipped > n, 3.0)
    time.sleep(0.3)
    errs = errors()
    assert len(errs) == 2, errs  # the repeated "short" problem is throttled, "empty" is not
    assert "step*height" in errs[0] and "zero size" in errs[1]
    ros.node.destroy_subscription(rosout.sub)


def test_scale_stabilization_uses_odometry_at_the_image_stamp(ros, make):
    from nav_msgs.msg import Odometry

    h = make(scale_stabilization="odometry", **{"model_config.ramp": 2.0})
    (depth_col,) = h.collect("depth/image")
    odom = ros.publisher(Odometry, f"{h.ns}/odom")
    assert ru.wait_for(lambda: odom.get_subscription_count() > 0, 5.0), "odometry subscription"
    diag_col = ros.collect(DiagnosticArray, "/diagnostics")
    try:
        for i in range(8):
            st = h.stamp()
            m = Odometry()
            m.header.stamp = st
            m.header.frame_id = "odom"
            m.pose.pose.position.x = 0.01 * i  # moving forward slowly
            m.pose.pose.orientation.w = 1.0
            odom.publish(m)  # the image's stamp follows within milliseconds: within the pose buffer's tolerance
            time.sleep(0.02)
            sent = h.send(image=ru.image_msg(64, 48, frame_id="cam", seed=i))
            assert ru.wait_for(lambda s=sent: h.by_stamp("depth/image", s) is not None, 5.0), f"frame {i}"
        _, values = _diag_for(diag_col, h.node, lambda v: v.get("scale_state") == "tracking", timeout=5.0)
        assert values["scale_stabilization"] == "odometry" and float(values["scale_applied"]) > 0
        assert float(values["scale_fit_overlap"]) > 0.2
    finally:
        ros.node.destroy_subscription(diag_col.sub)


@pytest.mark.slow
def test_marigold_end_to_end_with_a_metric_reference_topic(ros, make, tmp_path):
    """The tiny random Marigold pipeline in the node, aligned to depth arriving on 'metric_reference'."""
    from depth_ros.models.marigold import tiny_test_kwargs

    kw = tiny_test_kwargs(tmp_path)
    params = {"model": "marigold", "weights": kw.pop("weights"), "camera_info_timeout": 0.0}
    for k, v in kw.items():
        if isinstance(v, dict):
            params.update({f"model_config.{k}.{kk}": vv for kk, vv in v.items()})
        else:
            params[f"model_config.{k}"] = v
    h = make(**params)
    (depth_col, conf_col) = h.collect("depth/image", "depth/confidence")
    ref_pub = ros.publisher(Image, f"{h.ns}/metric_reference")
    assert ru.wait_for(lambda: ref_pub.get_subscription_count() > 0, 5.0)
    diag_col = ros.collect(DiagnosticArray, "/diagnostics")
    try:
        ramp = np.broadcast_to(np.linspace(1.0, 4.0, 64, dtype=np.float32), (48, 64)).copy()
        for i in range(3):
            st = h.stamp()
            ref_pub.publish(msgs.array_to_image_msg(ramp, "32FC1", msgs.make_header(
                st.sec * 10 ** 9 + st.nanosec, "cam")))
            time.sleep(0.05)
            img = ru.image_msg(64, 48, frame_id="cam", seed=i)
            img.header.stamp = st
            h.info_pub.publish(ru.camera_info_msg(64, 48, 50.0, frame_id="cam", stamp=st))
            time.sleep(0.02)
            h.image_pub.publish(img)
            assert ru.wait_for(lambda st=st: h.by_stamp("depth/image", st) is not None, 60.0), f"frame {i}"
        depth = msgs.image_msg_to_array(h.by_stamp("depth/image", st))
        assert np.isfinite(depth).any()
        conf = msgs.image_msg_to_array(conf_col.last)
        assert conf.shape == (48, 64) and np.nanstd(conf) > 0  # never a constant image
        _, values = _diag_for(diag_col, h.node, lambda v: "model_reference_source" in v, timeout=10.0)
        assert values["model_reference_source"] == "given"
    finally:
        ros.node.destroy_subscription(diag_col.sub)


def test_depth_pro_publishes_a_confidence(make):
    """Depth Pro (tiny random) with its flip-consistency confidence and the edge confidence: a
    non-constant depth/confidence in [0, 1]."""
    h = make(model="depth_pro", weights="random", allow_random_weights=True, device="cpu",
             **{"model_config.vit_preset": "test_tiny", "model_config.decoder_features": 16})
    assert h.node.model.capabilities.confidence
    h.collect(CONFIDENCE_TOPIC)
    msg = h.send_until(CONFIDENCE_TOPIC, timeout=60.0, width=64, height=48)
    conf = msgs.image_msg_to_array(msg)
    assert conf.shape == (48, 64) and np.isfinite(conf).all() and conf.min() >= 0 and conf.max() <= 1
    assert conf.std() > 0


def test_onnxruntime_backend_in_the_node(make, tmp_path):
    from depth_ros.models.export import export_onnx

    path = tmp_path / "zoe_nk.onnx"
    export_onnx("zoedepth_nk", "random", path, model_config={"backbone": "test_tiny"}, height=64, width=64)
    h = make(model="zoedepth_nk", backend="onnxruntime", weights=str(path), device="cpu", onnx_providers="cpu")
    assert h.node.model.capabilities.routes_domains
    h.collect(DEPTH_TOPIC)
    msg = h.send_until(DEPTH_TOPIC, timeout=20.0, width=64, height=48)
    assert np.isfinite(msgs.image_msg_to_array(msg)).any()
