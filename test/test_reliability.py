"""Reliability of depth_node across processes (issue 10): consumers without a Fast DDS profile, a stalled
RELIABLE subscriber, fuzzed inputs, faults, and (slow) an overload soak and broken weights.

The machinery is shared with the report script ``bench/reliability.py`` (imported from there), which
runs the same parts for longer. Deadlines are generous (a loaded 2-core machine); nothing asserts on
wall-clock latency.
"""
import sys
import time
from pathlib import Path

import pytest
import ros_utils as ru

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import reliability as R  # noqa: E402

from depth_ros.node.publisher import OutputPublisher  # noqa: E402


@pytest.fixture(scope="module")
def ros():
    session = ru.RosSession(name="test_reliability_probe")
    yield session
    session.close()


# ------------------------------------------------------------------------------------------------
# the publishing thread (no ROS)
# ------------------------------------------------------------------------------------------------
def test_output_publisher_never_blocks_the_caller_and_reports_stalls():
    """publish() stuck (a stalled reliable subscriber): submit() returns at once, unpublished frames are
    replaced and counted, and problem() names the blocked topic and the unacknowledged ones."""
    import threading

    release = threading.Event()
    published = []
    acked = {"a": True}
    clock = [0.0]

    def publish(topic, msg):
        if msg == "stuck":
            release.wait(10.0)
        published.append((topic, msg))

    pub = OutputPublisher(publish, all_acked=lambda t: acked["a"], ack_timeout_s=3.0, blocked_s=1.0,
                          clock=lambda: clock[0]).start()
    try:
        pub.submit([("depth/points", "stuck")])
        assert ru.wait_for(lambda: pub.blocked_for()[0] == "depth/points", 5.0)
        t0 = time.perf_counter()
        for i in range(5):
            pub.submit([("depth/points", f"frame{i}")])
        assert time.perf_counter() - t0 < 1.0  # never waits for the stuck publish()
        assert pub.dropped == 4  # frames 0-3 replaced, frame 4 waits
        clock[0] = 2.0
        assert "publish() on 'depth/points' has been blocked for 2.0 s" in pub.problem()
        release.set()
        assert pub.wait_idle(5.0)
        assert published == [("depth/points", "stuck"), ("depth/points", "frame4")]
        assert pub.problem() is None
        # acknowledgements stop: reported once the earlier message stayed unacknowledged for 3 s
        acked["a"] = False
        for t in (3.0, 4.0):
            clock[0] = t
            pub.submit([("depth/points", "x")])
            assert pub.wait_idle(5.0)
        assert pub.problem() is None  # unacknowledged since frame4 (t=2): 2 s < 3 s
        clock[0] = 6.5
        assert "subscribers stopped acknowledging 'depth/points'" in pub.problem()
        values = dict(pub.values())
        assert values["topics_not_acknowledging"] == "depth/points" and values["frames_unpublished"] == 4
        acked["a"] = True
        pub.submit([("depth/points", "y")])
        assert pub.wait_idle(5.0) and pub.problem() is None
    finally:
        release.set()
        pub.stop()


# ------------------------------------------------------------------------------------------------
# defect 8: consumers that set no Fast DDS profile
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("node_profile", [False, True], ids=["node_without_profile", "node_with_profile"])
def test_outputs_reach_a_consumer_without_a_profile(ros, node_profile):
    """A plain rclpy consumer of the four outputs (RELIABLE, 640x480, no FASTDDS_DEFAULT_PROFILES_FILE)
    receives every one of them, whether the node has the shared-memory profile or not."""
    ns = f"/noprof{int(node_profile)}"
    node = R.start_node(ros.domain_id, {"model": "fake_models:ConstantDepthModel", "model_config.delay": 0.05},
                        ns, name="depth_node_noprofile", profile=node_profile)
    cam = ru.Proc(ru.publisher_command(image_topic=f"{ns}/image", info_topic=f"{ns}/camera_info", width=640,
                                       height=480, rate=10, wait_subscribers=60),
                  env=R.child_env(ros.domain_id, profile=node_profile), name="camera_noprofile")
    consumer = R.Consumer(ros.domain_id, ns, 120.0, profile=False)
    try:
        assert consumer.wait_all(10, 90.0), (consumer.counts(), consumer.proc.output()[-2000:],
                                             node.output()[-3000:])
        assert '"profile": null' in consumer.proc.output()
    finally:
        consumer.stop()
        cam.stop()
        cam.cleanup()
        code = node.stop()
        log = node.output()
        node.cleanup()
    assert code == 0 and "Traceback" not in log, log


def test_stalled_subscriber_is_reported_and_others_keep_receiving(ros):
    note = R.fault_stalled_subscriber(ros)
    assert "stalled consumer reported" in note


# ------------------------------------------------------------------------------------------------
# fuzz (bounded): raw images + CameraInfo on one node, compressed images on another
# ------------------------------------------------------------------------------------------------
def _check_fuzz(r, n_cases):
    assert not r["crashed"] and r["exit_code"] == 0
    assert r["inputs"] == n_cases
    assert r["accounted"], r["diag"]  # every image sent: processed, dropped or skipped
    assert r["failures"] == []
    assert r["good"] == r["good_exact"] and r["good"] > n_cases  # every good frame after a bad one: exact
    assert r["tracebacks"] == 0 and r["unexpected"] == []
    assert r["error_lines"], "bad inputs gave no error"
    for line in r["error_lines"]:
        assert "frame skipped: " in line and line.split("frame skipped: ", 1)[1].strip(), line
    # throttled: at most one line per problem and 5 s (a pass takes well under that per problem)
    assert len(r["error_lines"]) < int(r["diag"]["frames_skipped"]) + 1


def test_fuzz_raw_images_and_camera_info_across_processes(ros):
    every = R.fuzz_cases(seed=1, n_random=6, kinds=("image", "camera_info"))
    images = [c for c in every if c["kind"] == "image"][::3][:60]  # every kind of image fault, bounded
    infos = [c for c in every if c["kind"] == "camera_info"][:50]
    cases = [c for pair in zip(images, infos) for c in pair] + images[len(infos):] + infos[len(images):]
    r = R.fuzz(ros, False, cases, passes=1, log=lambda *a: None)
    _check_fuzz(r, len(cases))
    assert r["refused_ok"] > 0


def test_fuzz_compressed_images_across_processes(ros):
    cases = [c for c in R.fuzz_cases(seed=2, n_random=8, kinds=("compressed",))]
    r = R.fuzz(ros, True, cases, passes=1, log=lambda *a: None)
    _check_fuzz(r, len(cases))
    assert any("too large" in line for line in r["error_lines"])  # bombs refused from their header


@pytest.mark.slow
def test_fuzz_memory_does_not_grow(ros):
    cases = R.fuzz_cases(seed=3, n_random=20, kinds=("image", "camera_info"))
    r = R.fuzz(ros, False, cases, passes=3, log=lambda *a: None)
    _check_fuzz(r, 3 * len(cases))
    warm, end = r["rss_mb"][0], r["rss_mb"][-1]
    assert end <= warm * 1.05 + 10, r["rss_mb"]


# ------------------------------------------------------------------------------------------------
# faults
# ------------------------------------------------------------------------------------------------
def test_model_exception_skips_one_frame(ros):
    assert "frames 4-6 served" in R.fault_model_exception(ros)


@pytest.mark.slow
def test_two_cameras_on_one_topic_keep_their_own_intrinsics(ros):
    R.fault_two_cameras(ros, frames=12)


@pytest.mark.slow
def test_camera_info_gap_and_resolution_changes(ros):
    R.fault_camera_info_gap(ros)
    R.fault_resolution_change(ros)


@pytest.mark.slow
def test_lazy_subscribers_and_parameter_changes_under_load(ros):
    R.fault_lazy_subscribers(ros)
    R.fault_params_under_load(ros)


@pytest.mark.slow
def test_broken_weights_stop_the_node_with_one_line(ros, tmp_path):
    """zoedepth_nk (tiny backbone) with truncated / foreign / random / empty / missing weights: exit code
    not 0, one FATAL line naming the file, no traceback, never 'weights_only=False'."""
    R.fault_broken_weights(ros, tmp_path)


# ------------------------------------------------------------------------------------------------
# overload soak
# ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_overload_soak_one_minute(ros):
    """640x480 at 30 Hz into a 200 ms model for 60 s: every frame accounted for, every processed frame's
    output received, RSS growth under 5 % after warm-up."""
    r = R.soak(ros, 60.0, log=lambda *a: None)
    assert not r["crashed"] and r["exit_code"] == 0, r
    assert r["accounted"], r
    assert r["missing_outputs"] == 0, r
    assert r["rss_growth_pct"] < 5.0, r
    assert r["errors"] == [], r["errors"]
