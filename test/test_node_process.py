"""depth_node across processes, started exactly as the launch files start it.

Three processes: the camera (``ros_utils.py publish``), ``depth_node`` (the command line that
launch_ros builds from launch/*.launch.py, with a tiny random model via extra ``-p``), and this test,
which receives every output.
"""

import signal
import time

import numpy as np
import pytest
import ros_utils as ru
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from depth_ros import msgs

OUTPUTS = {"depth/image": Image, "depth/camera_info": CameraInfo, "depth/confidence": Image,
           "depth/points": PointCloud2, "depth/colorized": Image}


@pytest.fixture(scope="module")
def ros():
    session = ru.RosSession(name="test_process_probe")
    yield session
    session.close()


def _start(ros, launch_file, ns, extra_params, outputs, camera_cmd, timeout=60.0):
    """Start depth_node as the launch file would, and the camera process (it waits for a subscriber)."""
    nodes = ru.run_launch_file(ru.REPO / "launch" / launch_file,
                               {"image": "/cam/image_raw", "camera_info": "/cam/camera_info", "namespace": ns})
    kwargs = [n["kwargs"] for n in nodes if n["kwargs"]["package"] == "depth_ros"][0]
    cmd = ru.launch_node_command(kwargs, extra_params)
    node = ru.Proc(cmd, env=ru.subprocess_env(ros.domain_id), name="depth_node")
    cam = ru.Proc(camera_cmd, env=ru.subprocess_env(ros.domain_id), name="camera")
    cols = {t: ros.collect(OUTPUTS[t], f"/{ns}/{t}") for t in outputs}
    diag = ros.collect(DiagnosticArray, "/diagnostics")
    if not ru.wait_for(lambda: all(ros.node.count_publishers(f"/{ns}/{t}") for t in outputs) or not node.alive(),
                       timeout):
        node.stop()
        cam.stop()
        pytest.fail("depth_node did not come up:\n" + node.output())
    assert node.alive(), node.output()
    return node, cam, cols, diag


def _common_stamp(cols, timeout):
    """A stamp for which every collector has a message."""
    found = []

    def ok():
        sets = [{ru.stamp_of(m) for m in c.messages} for c in cols.values()]
        common = set.intersection(*sets) if sets else set()
        if common:
            found.append(min(common))
            return True
        return False
    return found[0] if ru.wait_for(ok, timeout, 0.05) else None


def _diag_values(diag, fq_name, predicate, timeout):
    got = []

    def ok():
        for m in diag.messages:
            for s in m.status:
                if s.name == f"depth_ros: {fq_name}":
                    v = {kv.key: kv.value for kv in s.values}
                    if predicate(v):
                        got.append(v)
                        return True
        return False
    assert ru.wait_for(ok, timeout, 0.05), "no matching diagnostics"
    return got[0]


def _check_outputs(ros, node, cols, diag, cam, fq_name, model_name):
    stamp = _common_stamp(cols, 40.0)
    assert stamp is not None, node.output() + cam.output()
    out = {t: [m for m in c.messages if ru.stamp_of(m) == stamp][0] for t, c in cols.items()}
    for t, m in out.items():
        assert m.header.frame_id == "camera_optical", t
        assert ru.stamp_of(m) == stamp
    depth = out["depth/image"]
    assert (depth.encoding, depth.width, depth.height) == ("32FC1", 160, 120)
    d = msgs.image_msg_to_array(depth)
    assert np.isfinite(d).any()
    info = out["depth/camera_info"]
    assert (info.width, info.height) == (160, 120)
    # the camera publishes 320x240 with fx 300, principal point at the centre
    np.testing.assert_allclose(info.k, [150.0, 0, 79.75, 0, 150.0, 59.75, 0, 0, 1])
    np.testing.assert_allclose(info.p, [150.0, 0, 79.75, 0, 0, 150.0, 59.75, 0, 0, 0, 1, 0])
    conf = out["depth/confidence"]
    assert (conf.encoding, conf.width, conf.height) == ("32FC1", 160, 120)
    cloud = out["depth/points"]
    assert (cloud.height, cloud.width, cloud.point_step, cloud.row_step) == (120, 160, 32, 160 * 32)
    assert [(f.name, f.offset) for f in cloud.fields] == [("x", 0), ("y", 4), ("z", 8), ("rgb", 16)]
    z = np.frombuffer(bytes(cloud.data), np.float32).reshape(120, 160, 8)[..., 2]
    np.testing.assert_allclose(z[np.isfinite(d)], d[np.isfinite(d)])
    assert out["depth/colorized"].encoding == "rgb8"
    v = _diag_values(diag, fq_name, lambda v: int(v.get("frames_processed", "0")) > 0, 10.0)
    assert v["model"] == model_name and v["device"] == "cpu"
    assert v["domain"] in ("indoor", "outdoor") and 0.0 <= float(v["domain_confidence"]) <= 1.0
    assert v["focal_source"] == "camera_info" and float(v["focal_px"]) == pytest.approx(150.0)


def _shutdown(node, cam):
    """Stop the camera and the node (SIGINT), clean both up; return the node's exit code and output."""
    cam.stop()
    code = node.stop()
    log = node.output()
    node.cleanup()
    cam.cleanup()
    return code, log


def _run_zoedepth_launch(ros, ns, model_params, model_name):
    camera = ru.publisher_command(image_topic="/cam/image_raw", info_topic="/cam/camera_info", width=320,
                                  height=240, encoding="bgr8", fx=300.0, rate=5, wait_subscribers=60)
    node, cam, cols, diag = _start(ros, "zoedepth.launch.py", ns, dict(
        model_params, device="cpu", output_width=160, diagnostics_period=0.25), list(OUTPUTS), camera)
    try:
        _check_outputs(ros, node, cols, diag, cam, f"/{ns}/depth_node", model_name)
    finally:
        code, log = _shutdown(node, cam)
    assert code == 0, log  # SIGINT (Ctrl-C / launch shutdown) ends it cleanly
    assert "Traceback" not in log, log


def test_launch_command_across_processes(ros):
    """zoedepth.launch.py's command line with a user model class (fast)."""
    _run_zoedepth_launch(ros, "front", {"model": "fake_models:ConstantDepthModel", "model_config.ramp": 1.0},
                         "fake_models:ConstantDepthModel")


@pytest.mark.slow
def test_zoedepth_launch_tiny_random_across_processes(ros):
    """zoedepth.launch.py's command line with a tiny random ZoeDepth-NK (imports timm: slow)."""
    _run_zoedepth_launch(ros, "zoe", {"weights": "random", "allow_random_weights": True,
                                      "model_config.backbone": "test_tiny"}, "zoedepth_nk")


@pytest.mark.slow
def test_depthpro_launch_estimates_missing_intrinsics(ros):
    camera = ru.publisher_command(image_topic="/cam/image_raw", width=256, height=192, rate=5,
                                  no_info=True, wait_subscribers=60)
    node, cam, cols, diag = _start(ros, "depthpro.launch.py", "dp", {
        "weights": "random", "allow_random_weights": True, "model_config.vit_preset": "test_tiny",
        "model_config.decoder_features": 16, "device": "cpu", "camera_info_timeout": 0.5, "output_width": 128,
        "focal_samples": 2, "diagnostics_period": 0.25}, ["depth/camera_info", "depth/image"], camera)
    try:
        stamp = _common_stamp(cols, 40.0)
        assert stamp is not None, node.output() + cam.output()
        info = [m for m in cols["depth/camera_info"].messages if ru.stamp_of(m) == stamp][0]
        assert (info.width, info.height) == (128, 96)
        assert info.k[0] > 0 and info.k[0] == info.k[4]
        assert info.k[2] == pytest.approx(127.5 / 2) and info.k[5] == pytest.approx(95.5 / 2)
        v = _diag_values(diag, "/dp/depth_node", lambda v: v.get("focal_source") == "model", 10.0)
        assert "no CameraInfo" in v["focal_reason"]
    finally:
        code, log = _shutdown(node, cam)
    assert code == 0, log
    assert "Depth Pro's own focal-length estimate" in log


def test_missing_weights_stop_the_node_with_one_message(ros):
    """main(): exit code 1, one FATAL line, no traceback. BrokenModel raises the WeightsError of a missing
    checkpoint (the real message for depth_pro is checked in-process, test_node.py)."""
    cmd = ru.node_command(params={"model": "fake_models:BrokenModel"})
    proc = ru.Proc(cmd, env=ru.subprocess_env(ros.domain_id), name="depth_node_noweights")
    code = proc.wait(60.0)
    log = proc.output()
    proc.stop()
    proc.cleanup()
    assert code == 1, log  # it exits by itself (wait returned its code, not None)
    assert "Traceback" not in log, log
    fatal = [line for line in log.splitlines() if "FATAL" in line]
    assert len(fatal) == 1 and "does not exist" in fatal[0], log


def _node_in_own_group(ros, name, model_params):
    cmd = ru.node_command(params=dict({"model": "fake_models:ConstantDepthModel", "lazy": False}, **model_params))
    return ru.Proc(cmd, env=ru.subprocess_env(ros.domain_id), name=name, new_group=True)


@pytest.mark.parametrize("when", ["running", "starting"])
def test_ctrl_c_twice_exits_cleanly(ros, when):
    """A terminal's Ctrl-C under ros2 launch: SIGINT twice, 3 ms apart, to the node's process group.

    Repeated; while the worker is busy with frames (``running``) and while the model is still loading
    (``starting``). Exit 0 (launch: "finished cleanly"), no traceback, no KeyboardInterrupt."""
    camera = ru.Proc(ru.publisher_command(image_topic="image", info_topic="camera_info", width=160, height=120,
                                          rate=30, wait_subscribers=60),
                     env=ru.subprocess_env(ros.domain_id), name="camera")
    try:
        for attempt in range(3):
            node = _node_in_own_group(ros, f"depth_node_sigint{attempt}",
                                      {"model_config.delay": 0.05, "model_config.load_delay": 1.0})
            code, log = _signal_and_wait(node, "ready:" if when == "running" else "loading model",
                                         [signal.SIGINT, signal.SIGINT], settle_s=0.5 if when == "running" else 0.0)
            assert code == 0, log
            assert "Traceback" not in log and "KeyboardInterrupt" not in log, log
    finally:
        camera.stop()
        camera.cleanup()


def _signal_and_wait(node, marker, signals, settle_s=0.0):
    """Wait for ``marker`` in the node's output, send ``signals`` 3 ms apart to its process group, return
    (exit code, output)."""
    try:
        assert node.wait_output(marker, 60.0), node.output()
        time.sleep(settle_s)  # e.g. frames flowing
        for i, sig in enumerate(signals):
            if i:
                time.sleep(0.003)
            node.signal_group(sig)
        return node.wait(20.0), node.output()
    finally:
        node.stop()
        node.cleanup()


def test_sigterm_exits_cleanly(ros):
    code, log = _signal_and_wait(_node_in_own_group(ros, "depth_node_sigterm", {}), "ready:", [signal.SIGTERM])
    assert code == 0, log
    assert "Traceback" not in log, log
