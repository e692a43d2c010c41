"""ROS-free parts of the node: parameter specification, intrinsics selection, latest-frame worker."""
import math
import threading
import time

import numpy as np
import pytest

from depth_ros.node import params as P
from depth_ros.node.diagnostics import ProblemLog, RateMeter, RollingStats
from depth_ros.node.worker import LatestFrameWorker
from depth_ros.pipeline.intrinsics import (
    CAMERA_INFO,
    ESTIMATED,
    FALLBACK,
    INFO_INVALID,
    INFO_MISSING,
    INFO_OK,
    INFO_UNCALIBRATED,
    MODEL,
    InfoStatus,
    IntrinsicsResolver,
    IntrinsicsUnavailable,
    focal_from_hfov,
)


# -- parameters -----------------------------------------------------------------------------------
def test_defaults_are_valid_and_documented():
    assert P.validate_all(P.DEFAULTS) == []
    for spec in P.PARAMS:
        assert spec.description, spec.name
        assert spec.type in (bool, int, float, str, list), spec.name
        assert spec.validate(spec.default) is None, spec.name
        if spec.choices:
            assert spec.default in spec.choices


@pytest.mark.parametrize("name,value,fragment", [
    ("domain", "kitchen", "one of"),
    ("cloud_mode", "dense", "one of"),
    ("depth_encoding", "8UC1", "one of"),
    ("cloud_stride", 0, ">= 1"),
    ("voxel_size", 0.0, "> 0"),
    ("min_confidence", 1.5, "<= 1"),
    ("fallback_hfov_deg", 190.0, "<= 179"),
    ("max_range", float("nan"), "NaN"),
    ("lazy", 1, "bool"),
    ("cloud_stride", 2.5, "integer"),
    ("model", "no such model", "unknown model"),
    ("device", "gpu0", "invalid device"),
])
def test_invalid_values_have_reasons(name, value, fragment):
    reason = P.validate(name, value)
    assert reason and fragment in reason, reason


def test_cross_parameter_checks():
    v = dict(P.DEFAULTS, min_range=5.0, max_range=2.0)
    assert any("min_range" in p for p in P.validate_all(v))
    v = dict(P.DEFAULTS, weights="random")
    assert any("allow_random_weights" in p for p in P.validate_all(v))
    assert P.validate_all(dict(P.DEFAULTS, weights="random", allow_random_weights=True)) == []


def test_user_models_and_passthrough():
    assert P.validate("model", "my_pkg.models:MyNet") is None
    assert P.validate("model", "fake_models:ConstantDepthModel") is None
    assert P.validate("model_config.backbone", "test_tiny") is None
    assert P.validate("nonsense", 1).startswith("unknown parameter")
    vals = {"model_config.backbone": "x", "model_config.n": 3, "focal_estimator_config.vit_preset": "t"}
    assert P.passthrough(vals, "model_config.") == {"backbone": "x", "n": 3}
    assert P.passthrough(vals, "focal_estimator_config.") == {"vit_preset": "t"}


def test_int_accepted_for_double():
    assert P.validate("min_range", 1) is None


# -- intrinsics -----------------------------------------------------------------------------------
class _Cam:
    def __init__(self, w, h, f):
        self.width, self.height, self.fx, self.fy = w, h, f, f


def _resolver(**kw):
    logs = []
    kw.setdefault("log", lambda level, text: logs.append((level, text)))
    return IntrinsicsResolver(**kw), logs


def test_camera_info_used_and_logged_once():
    r, logs = _resolver()
    cam = _Cam(640, 480, 500.0)
    for _ in range(3):
        plan = r.plan("cam", 640, 480, InfoStatus(INFO_OK, cam), 0.0)
        assert plan.source == CAMERA_INFO and plan.camera is cam
    assert len(logs) == 1 and "CameraInfo" in logs[0][1]


def test_wait_then_estimate_with_running_median_and_freeze():
    estimates = iter([500.0, 700.0, 600.0, 100.0, 900.0])
    calls = []

    def factory():
        def est(rgb):
            calls.append(rgb.shape)
            return next(estimates)
        return est

    r, logs = _resolver(samples=3, timeout_s=1.0, estimator_factory=factory)
    missing = InfoStatus(INFO_MISSING, problem="no CameraInfo")
    rgb = np.zeros((240, 320, 3), np.uint8)  # half the input size: estimates scale by 2
    with pytest.raises(IntrinsicsUnavailable) as e:
        r.plan("cam", 640, 480, missing, 0.5, rgb)
    assert e.value.waiting
    fx = [r.plan("cam", 640, 480, missing, 1.5, rgb).camera.fx for _ in range(5)]
    assert fx[0] == 1000.0                       # 500 * 2
    assert fx[1] == 1200.0                       # median(1000, 1400)
    assert fx[2] == 1200.0                       # median(1000, 1400, 1200) -> frozen
    assert fx[3] == fx[4] == 1200.0              # frozen: the estimator is not called again
    assert len(calls) == 3
    plan = r.plan("cam", 640, 480, missing, 9.0, rgb)
    assert plan.source == ESTIMATED
    assert plan.camera.cx == pytest.approx((640 - 1) / 2)
    assert any("frozen" in t for _, t in logs)
    # another camera (frame_id) or size has its own estimate
    r.plan("cam2", 640, 480, missing, 9.0, rgb)
    assert len(calls) == 4


def test_estimator_unavailable_falls_back_to_hfov():
    def factory():
        raise RuntimeError("weights 'depth_pro.pt' not found")

    r, logs = _resolver(fallback_hfov_deg=90.0, timeout_s=0.0, estimator_factory=factory)
    plan = r.plan("cam", 640, 480, InfoStatus(INFO_UNCALIBRATED, problem="uncalibrated"), 0.0,
                  np.zeros((48, 64, 3), np.uint8))
    assert plan.source == FALLBACK
    assert plan.camera.fx == pytest.approx(320.0)
    assert focal_from_hfov(640, 90.0) == pytest.approx(320.0)
    assert any(level == "warn" and "depth_pro.pt" in text for level, text in logs)
    r.fallback_hfov_deg = 0.0
    with pytest.raises(IntrinsicsUnavailable, match="fallback_hfov_deg is 0"):
        r.plan("cam", 640, 480, InfoStatus(INFO_UNCALIBRATED, problem="uncalibrated"), 0.0)


def test_invalid_info_policy():
    bad = InfoStatus(INFO_INVALID, problem="CameraInfo size 320x240 differs from the image size 640x480")
    r, _ = _resolver(invalid_policy="skip", fallback_hfov_deg=60.0)
    with pytest.raises(IntrinsicsUnavailable, match="320x240"):
        r.plan("cam", 640, 480, bad, 10.0)
    r.invalid_policy = "estimate"
    assert r.plan("cam", 640, 480, bad, 10.0).source == FALLBACK


def test_model_estimates_its_own_focal():
    r, _ = _resolver(samples=2, model_estimates_focal=True, timeout_s=0.0)
    missing = InfoStatus(INFO_MISSING, problem="none")
    p1 = r.plan("cam", 640, 480, missing, 0.0)
    assert p1.source == MODEL and p1.camera is None and p1.model_sample
    assert r.add_model_sample(p1, 400.0).fx == 400.0
    p2 = r.plan("cam", 640, 480, missing, 0.0)
    assert r.add_model_sample(p2, 600.0).fx == 600.0  # the frame's own estimate was used for it
    p3 = r.plan("cam", 640, 480, missing, 0.0)
    assert p3.camera is not None and p3.camera.fx == 500.0 and p3.source == MODEL  # frozen median


def test_hfov_roundtrip():
    f = focal_from_hfov(1000, 60.0)
    assert math.degrees(2 * math.atan(500 / f)) == pytest.approx(60.0)


# -- worker ----------------------------------------------------------------------------------------
def test_worker_keeps_only_newest_and_survives_errors():
    seen, errors = [], []
    gate = threading.Event()

    def process(item):
        gate.wait(2.0)
        if item == "boom":
            raise RuntimeError("bad frame")
        seen.append(item)

    w = LatestFrameWorker(process, on_error=errors.append).start()
    try:
        w.submit(0)
        time.sleep(0.05)  # 0 is being processed (blocked on the gate)
        for i in range(1, 6):
            w.submit(i)
        gate.set()
        assert w.wait_idle(2.0)
        assert seen == [0, 5] and w.dropped == 4
        w.submit("boom")
        w.submit(7)  # replaces boom before or after it ran; either way 7 is processed
        assert w.wait_idle(2.0)
        assert seen[-1] == 7
        w.submit("boom")
        assert w.wait_idle(2.0)
        w.submit(8)
        assert w.wait_idle(2.0)
        assert seen[-1] == 8 and errors and isinstance(errors[-1], RuntimeError)
    finally:
        assert w.stop(2.0)


def test_stats_helpers():
    t = [0.0]
    m = RateMeter(window_s=10.0, clock=lambda: t[0])
    for i in range(11):
        t[0] = i * 0.1
        m.tick()
    assert m.rate() == pytest.approx(10.0)
    s = RollingStats(5)
    for v in range(10):
        s.add(v)
    assert s.summary()["max"] == 9 and s.summary()["p50"] == 7
    log = ProblemLog(period_s=5.0, clock=lambda: t[0])
    assert log.report("a", "A") == "A"
    assert log.report("a", "A") is None
    assert log.report("b", "B") == "B"  # another problem is not hidden by the first
    t[0] += 6
    assert "1 more" in log.report("a", "A")
