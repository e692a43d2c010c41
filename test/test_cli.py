"""``depth-ros infer`` / ``depth-ros bag`` on the shipped sample frames with tiny random networks."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from depth_ros import bag as bagio
from depth_ros import cli
from depth_ros import msgs as M
from depth_ros.demo.render import SAMPLE_STREAM_DIR, load_frames
from depth_ros.files import MARKER_FILE, RANDOM_WEIGHTS_NOTE
from depth_ros.models.base import DepthModel, DepthPrediction

TINY_ZOE = ["--weights", "random", "--allow-random-weights", "--backbone", "test_tiny", "--device", "cpu"]
TINY_PRO = ["--model", "depth_pro", "--weights", "random", "--allow-random-weights", "--vit-preset", "test_tiny",
            "--model-arg", "decoder_features=16", "--device", "cpu"]
ROOM = SAMPLE_STREAM_DIR / "0000_room.png"
STREET = SAMPLE_STREAM_DIR / "0008_street.png"


class GradientModel(DepthModel):
    """User model for ``--model test_cli:GradientModel``: depth = 1 + row/height metres, no confidence."""

    def __init__(self, weights=None, device="cpu", dtype="float32", offset=1.0):
        super().__init__(None, device, dtype)
        self.offset = float(offset)

    def infer(self, rgb, f_px=None):
        h, w = rgb.shape[:2]
        depth = np.repeat((self.offset + np.arange(h, dtype=np.float32) / h)[:, None], w, axis=1)
        return DepthPrediction(depth=depth)


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("DEPTH_ROS_OFFLINE", "1")
    monkeypatch.setenv("DEPTH_ROS_CACHE", str(tmp_path / "empty_cache"))


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def read_ply(path):
    import open3d as o3d
    pcd = o3d.io.read_point_cloud(str(path))
    return np.asarray(pcd.points), np.asarray(pcd.colors)


# ---------------------------------------------------------------------------------------------
# infer


def test_infer_writes_every_output_and_it_reads_back(tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "infer", ROOM, STREET, "--out", out, "--hfov", 70, *TINY_ZOE)
    assert code == 0, err
    for stem in ("0000_room", "0008_street"):
        d16 = cv2.imread(str(out / f"{stem}_depth.png"), cv2.IMREAD_UNCHANGED)
        assert d16.dtype == np.uint16 and d16.shape == (240, 320)
        dnpy = np.load(out / f"{stem}_depth.npy")
        assert dnpy.dtype == np.float32 and dnpy.shape == (240, 320)
        ok = np.isfinite(dnpy)
        assert ok.any()
        assert np.allclose(d16[ok] / 1000.0, np.minimum(dnpy[ok], 65.535), atol=6e-4)
        conf = cv2.imread(str(out / f"{stem}_confidence.png"), cv2.IMREAD_UNCHANGED)
        assert conf.dtype == np.uint8 and conf.shape == (240, 320)
        color = cv2.imread(str(out / f"{stem}_depth_color.png"))
        assert color.shape == (240, 320, 3)
        side = cv2.imread(str(out / f"{stem}_side.png"))
        assert side.shape[0] > 240 and side.shape[1] > 3 * 320
        pts, cols = read_ply(out / f"{stem}.ply")
        assert len(pts) == int(ok.sum()) and cols.shape == pts.shape
        assert np.allclose(np.sort(pts[:, 2]), np.sort(dnpy[ok]), atol=1e-5)
        head = (out / f"{stem}.ply").read_bytes()[:600]
        assert b"comment " + RANDOM_WEIGHTS_NOTE.encode() in head
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 2 and summary["random_weights"] is True
    assert summary["fps"] > 0
    rec = summary["frames_detail"][0]
    assert rec["focal_source"] == "given" and rec["focal_reason"] == "given: hfov=70 deg"
    assert rec["domain"] in ("indoor", "outdoor")
    assert (out / MARKER_FILE).is_file()
    assert "frames: 2" in stdout and "domain per frame" in stdout and "focal: 228.5 px" in stdout
    assert RANDOM_WEIGHTS_NOTE in stdout


def test_infer_folder_video_given_intrinsics_and_user_model(tmp_path, capsys):
    frames_dir = tmp_path / "imgs"
    frames_dir.mkdir()
    shutil.copy(ROOM, frames_dir / "a.png")
    shutil.copy(STREET, frames_dir / "b.jpg")
    video = tmp_path / "clip.avi"
    _, frames = load_frames(limit=5)
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (320, 240))
    assert vw.isOpened()
    for f in frames:
        vw.write(cv2.cvtColor(f.rgb, cv2.COLOR_RGB2BGR))
    vw.release()
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "infer", frames_dir, video, "--out", out, "--model", "test_cli:GradientModel",
                            "--model-arg", "offset=2.0", "--fx", 200, "--cx", 150, "--every", 2,
                            "--depth-format", "npy", "--no-ply")
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    names = [r["name"] for r in summary["frames_detail"]]
    assert names == ["a", "b", "clip_000000", "clip_000002", "clip_000004"]
    rec = summary["frames_detail"][2]
    assert rec["camera"] == {"fx": 200.0, "fy": 200.0, "cx": 150.0, "cy": 119.5}
    assert rec["focal_source"] == "given" and rec["domain"] is None
    d = np.load(out / "clip_000002_depth.npy")
    assert np.isclose(d[0, 0], 2.0) and np.isclose(d[-1, 0], 2.0 + 239 / 240)
    assert not list(out.glob("*_depth.png")) and not list(out.glob("*.ply"))
    assert len(list(out.glob("*_confidence.png"))) == len(names)  # no model confidence: the edge confidence alone
    assert not (out / MARKER_FILE).exists()
    assert "n/a" in stdout


def test_infer_depth_pro_estimates_the_focal_length(tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "infer", ROOM, "--out", out, "--no-side", *TINY_PRO)
    assert code == 0, err
    rec = json.loads((out / "summary.json").read_text())["frames_detail"][0]
    assert rec["focal_source"] == "model" and rec["focal_px"] > 0
    assert "ply" in rec["files"]
    pts, _ = read_ply(out / "0000_room.ply")
    assert len(pts) == rec["ply_points"] > 0


def test_infer_zoedepth_with_the_depth_pro_focal_estimator(tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "infer", ROOM, "--out", out, "--no-ply", "--no-side", *TINY_ZOE,
                            "--focal-weights", "random", "--focal-arg", "vit_preset=test_tiny",
                            "--focal-arg", "decoder_features=16")
    assert code == 0, err
    rec = json.loads((out / "summary.json").read_text())["frames_detail"][0]
    assert rec["focal_source"] == "estimated" and rec["focal_px"] > 0


# ---------------------------------------------------------------------------------------------
# errors: one line, actionable, non-zero


def _one_line_error(code, err):
    assert code != 0
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("[depth-ros]")
             and "frame/s" not in ln and "?frame" not in ln]
    assert len(lines) == 1, err
    assert lines[0].startswith("depth-ros: error: ")
    return lines[0]


def test_error_missing_input(tmp_path, capsys):
    line = _one_line_error(*run(capsys, "infer", tmp_path / "nope.png", "--out", tmp_path / "o", *TINY_ZOE)[::2])
    assert "nope.png" in line and "does not exist" in line


def test_error_unreadable_file(tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not a png")
    line = _one_line_error(*run(capsys, "infer", bad, "--out", tmp_path / "o", "--hfov", 60, *TINY_ZOE)[::2])
    assert "broken.png" in line and "cannot read" in line


def test_error_random_weights_need_permission(tmp_path, capsys):
    line = _one_line_error(*run(capsys, "infer", ROOM, "--out", tmp_path / "o", "--weights", "random")[::2])
    assert "--allow-random-weights" in line


def test_error_missing_weights_names_url_and_path(tmp_path, capsys):
    line = _one_line_error(*run(capsys, "infer", ROOM, "--out", tmp_path / "o", "--hfov", 60)[::2])
    assert "https://github.com/isl-org/ZoeDepth/releases/download/v1.0/ZoeD_M12_NK.pt" in line
    assert str(tmp_path / "empty_cache" / "ZoeD_M12_NK.pt") in line


def test_error_no_intrinsics_and_no_estimator(tmp_path, capsys):
    line = _one_line_error(*run(capsys, "infer", ROOM, "--out", tmp_path / "o", *TINY_ZOE)[::2])
    assert "--fx" in line and "--hfov" in line and "depth_pro.pt" in line


def test_error_exit_code_from_the_console_script(tmp_path):
    exe = Path(sys.executable).parent / "depth-ros"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "depth_ros.cli"]
    p = subprocess.run(cmd + ["infer", str(tmp_path / "missing"), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines()[-1].startswith("depth-ros: error: input")


# ---------------------------------------------------------------------------------------------
# bag


T0 = 1_700_000_000_000_000_000


def make_bag(path, storage="sqlite3", compressed=False, n=3, with_info=True):
    cam, frames = load_frames(limit=n)
    topic = "/cam/image_raw/compressed" if compressed else "/cam/image_raw"
    with bagio.BagWriter(path, storage=storage) as w:
        for i, f in enumerate(frames):
            t = T0 + i * 100_000_000
            h = M.make_header(t, "cam_optical", kit=M.ROSBAGS)
            if compressed:
                ok, buf = cv2.imencode(".jpg", cv2.cvtColor(f.rgb, cv2.COLOR_RGB2BGR))
                msg = M.ROSBAGS.cls(bagio.COMPRESSED_IMAGE)(header=h, format="rgb8; jpeg compressed bgr8",
                                                 data=np.frombuffer(buf.tobytes(), np.uint8))
                w.write(topic, msg, t + 7)
            else:
                w.write(topic, M.array_to_image_msg(np.ascontiguousarray(f.rgb[:, :, ::-1]), "bgr8", h, kit=M.ROSBAGS), t + 7)
            if with_info:
                w.write("/cam/camera_info", M.camera_info_msg(cam, h, kit=M.ROSBAGS), t + 9)
            w.write("/imu", M.string_msg(f"other {i}", M.ROSBAGS), t + 8)
    return topic, cam


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_bag_roundtrip(tmp_path, capsys, storage):
    src, dst = tmp_path / "in", tmp_path / "out"
    topic, cam = make_bag(src, storage)
    code, stdout, err = run(capsys, "bag", src, dst, "--image-topic", topic, *TINY_ZOE)
    assert code == 0, err
    assert bagio.bag_storage(dst) == storage
    topics = bagio.bag_summary(dst)
    assert topics == {"/cam/depth/image": (bagio.IMAGE, 3), "/cam/depth/camera_info": (bagio.CAMERA_INFO, 3),
                      "/cam/depth/confidence": (bagio.IMAGE, 3), "/cam/depth/points": (bagio.POINTCLOUD2, 3),
                      "/cam/image_raw": (bagio.IMAGE, 3), "/cam/camera_info": (bagio.CAMERA_INFO, 3)}
    assert bagio.bag_custom_data(dst)["depth_ros.note"] == RANDOM_WEIGHTS_NOTE
    seen = {}
    for t, _mt, log_t, msg in bagio.read_topics(dst):
        i = (log_t - T0) // 100_000_000
        if t.startswith("/cam/depth/"):
            assert M.stamp_ns(msg.header) == T0 + i * 100_000_000
            assert log_t == T0 + i * 100_000_000 + 7  # written at the input image's bag time
            assert msg.header.frame_id == "cam_optical"
        seen.setdefault(t, []).append(msg)
    d = M.depth_from_image_msg(seen["/cam/depth/image"][0])
    assert d.shape == (240, 320) and seen["/cam/depth/image"][0].encoding == "32FC1"
    info = seen["/cam/depth/camera_info"][0]
    assert np.allclose(info.k, cam.K.reshape(-1)) and (info.width, info.height) == (320, 240)
    conf = seen["/cam/depth/confidence"][0]
    assert conf.encoding == "32FC1"
    pc = seen["/cam/depth/points"][0]
    pts, rgb = M.cloud_msg_to_arrays(pc)
    assert (pc.height, pc.width) == (240, 320) and rgb is not None
    assert np.isfinite(pts).all(axis=1).sum() == np.isfinite(d).sum()
    assert "focal: 228.5 px; source: camera_info" in stdout


def test_bag_compressed_without_camera_info_uses_hfov_and_copies_all(tmp_path, capsys):
    src, dst = tmp_path / "in", tmp_path / "out"
    topic, _ = make_bag(src, compressed=True, n=2, with_info=False)
    code, stdout, err = run(capsys, "bag", src, dst, "--image-topic", topic, "--hfov", 90, "--copy", "all",
                            "--output-ns", "/est", "--depth-encoding", "16UC1", "--cloud-stride", 4, *TINY_ZOE)
    assert code == 0, err
    topics = bagio.bag_summary(dst)
    assert set(topics) == {"/est/depth/image", "/est/depth/camera_info", "/est/depth/confidence",
                           "/est/depth/points", topic, "/imu"}
    msgs = {t: m for t, _mt, _lt, m in bagio.read_topics(dst)}
    assert msgs["/est/depth/image"].encoding == "16UC1"
    assert np.isclose(msgs["/est/depth/camera_info"].k[0], 160.0)  # hfov 90 at 320 px
    pc = msgs["/est/depth/points"]  # --cloud-stride 4 alone = cloud_mode stride: 1 x N without invalid points
    depth = M.depth_from_image_msg(msgs["/est/depth/image"])[::4, ::4]
    assert pc.height == 1 and pc.is_dense and pc.width == int(np.isfinite(depth).sum()) > 0


def test_bag_command_does_not_need_rclpy(tmp_path):
    src, dst = tmp_path / "in", tmp_path / "out"
    topic, _ = make_bag(src, n=1)
    code = ("import sys; sys.modules['rclpy'] = None; sys.modules['sensor_msgs'] = None; "
            "from depth_ros.cli import main; sys.exit(main())")
    p = subprocess.run([sys.executable, "-c", code, "bag", str(src), str(dst), "--image-topic", topic, "-q",
                        *TINY_ZOE], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, DEPTH_ROS_OFFLINE="1"))
    assert p.returncode == 0, p.stderr
    assert bagio.bag_summary(dst)["/cam/depth/points"][1] == 1


def test_bag_errors(tmp_path, capsys):
    src = tmp_path / "in"
    make_bag(src, n=1)
    line = _one_line_error(*run(capsys, "bag", src, tmp_path / "o", "--image-topic", "/nope", *TINY_ZOE)[::2])
    assert "'/nope' is not in bag" in line and "/cam/image_raw (Image)" in line
    line = _one_line_error(*run(capsys, "bag", src, tmp_path / "o", "--image-topic", "/cam/image_raw",
                                "--camera-info-topic", "/cam/info", *TINY_ZOE)[::2])
    assert "'/cam/info' is not in bag" in line and "/cam/camera_info" in line
    line = _one_line_error(*run(capsys, "bag", src, src, "--image-topic", "/cam/image_raw", *TINY_ZOE)[::2])
    assert "already exists" in line
    line = _one_line_error(*run(capsys, "bag", tmp_path / "missing", tmp_path / "o", "--image-topic", "/x")[::2])
    assert "does not exist" in line
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------
# review fixes


def test_error_corrupt_image_with_a_valid_signature_is_one_line(tmp_path, capfd):
    # OpenCV itself prints WARN/ERROR lines for such a file (straight to fd 2): they must not precede ours
    bad = tmp_path / "cut.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"GARBAGE" * 8)
    code = cli.main([str(a) for a in ("infer", bad, "--out", tmp_path / "o", "--hfov", 60, "-q", *TINY_ZOE)])
    out, err = capfd.readouterr()
    line = _one_line_error(code, err)
    assert "cut.png" in line and "cannot read image" in line


def test_error_out_is_a_file(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("x")
    line = _one_line_error(*run(capsys, "infer", ROOM, "--out", target, "--hfov", 60, *TINY_ZOE)[::2])
    assert "taken" in line and "is a file" in line


def test_camera_info_pairing_exact_stamp_then_latest_before_then_first():
    from depth_ros.core.camera import PinholeCamera
    from depth_ros.pipeline.intrinsics import INFO_INVALID, INFO_MISSING, CameraInfoTracker

    cams = {t: PinholeCamera.from_focal(8, 6, f) for t, f in ((10, 5.0), (20, 6.0), (30, 7.0))}
    tr = CameraInfoTracker(keep=None)
    assert tr.status("cam", 5, 8, 6, "none yet").state == INFO_MISSING
    for t, cam in cams.items():
        tr.add("cam", t, cam)
    assert tr.status("cam", 20, 8, 6, "").camera.fx == 6.0
    assert tr.status("cam", 25, 8, 6, "").camera.fx == 6.0
    assert tr.status("cam", 99, 8, 6, "").camera.fx == 7.0
    assert tr.status("cam", 5, 8, 6, "").camera.fx == 5.0
    other = tr.status("cam2", 20, 8, 6, "")
    assert other.state == INFO_INVALID and "'cam'" in other.problem and "'cam2'" in other.problem


def _humble_style(bag):
    """Turn a rosbags-written sqlite3 bag into what ROS 2 Humble records: no definitions, no type hashes."""
    import sqlite3
    db = next(bag.glob("*.db3"))
    con = sqlite3.connect(db)
    con.execute("DROP TABLE message_definitions")
    con.execute("DROP TABLE schema")
    con.commit()
    con.close()
    meta = bag / "metadata.yaml"
    text = "\n".join(ln for ln in meta.read_text().splitlines() if "type_description_hash" not in ln
                     and "RIHS01_" not in ln)
    meta.write_text(text.replace("version: 8", "version: 5") + "\n")


def _qos_of(bag):
    from rosbags.rosbag2 import Reader
    with Reader(bag) as r:
        return {c.topic: c.ext.offered_qos_profiles for c in r.connections}


def test_bag_from_a_humble_recording_copies_topics_and_states_qos(tmp_path, capsys):
    src, dst = tmp_path / "in", tmp_path / "out"
    topic, _ = make_bag(src, n=2)
    _humble_style(src)
    code, stdout, err = run(capsys, "bag", src, dst, "--image-topic", topic, "--copy", "all", *TINY_ZOE)
    assert code == 0, err
    topics = bagio.bag_summary(dst)
    assert topics["/imu"] == ("std_msgs/msg/String", 2) and topics[topic] == (bagio.IMAGE, 2)
    assert topics["/cam/depth/image"] == (bagio.IMAGE, 2)
    from rosbags.interfaces import QosDurability, QosReliability
    for t, profiles in _qos_of(dst).items():  # stated, so that ros2 bag play need not guess
        assert len(profiles) == 1, t
        assert profiles[0].reliability == QosReliability.RELIABLE and profiles[0].durability == QosDurability.VOLATILE


def test_bag_writer_rejects_an_unknown_type_without_definition(tmp_path):
    with bagio.BagWriter(tmp_path / "b") as w:
        with pytest.raises(ValueError, match="no message definition for 'my_msgs/msg/Thing'"):
            w.add_topic("/thing", "my_msgs/msg/Thing")


def test_bag_single_mcap_file_as_input(tmp_path, capsys):
    src, dst = tmp_path / "in", tmp_path / "out"
    topic, _ = make_bag(src, storage="mcap", n=1)
    code, stdout, err = run(capsys, "bag", next(src.glob("*.mcap")), dst, "--image-topic", topic, *TINY_ZOE)
    assert code == 0, err
    assert bagio.bag_storage(dst) == "mcap"
    assert bagio.bag_summary(dst)[topic] == (bagio.IMAGE, 1)


def test_bag_failure_before_any_frame_leaves_no_output(tmp_path, capsys):
    src = tmp_path / "in"
    with bagio.BagWriter(src) as w:
        h = M.make_header(T0, "cam", kit=M.ROSBAGS)
        msg = M.array_to_image_msg(np.zeros((4, 6, 3), np.uint8), "rgb8", h, kit=M.ROSBAGS)
        msg.encoding = "no_such_encoding"
        w.write("/cam/image_raw", msg, T0)
    dst = tmp_path / "o"
    line = _one_line_error(*run(capsys, "bag", src, dst, "--image-topic", "/cam/image_raw", "--hfov", 60,
                                *TINY_ZOE)[::2])
    assert "gave an output" in line
    assert not dst.exists()  # a rerun must not stop at "already exists"
    line = _one_line_error(*run(capsys, "bag", src, dst, "--image-topic", "/cam/image_raw", "--hfov", 60,
                                "--cloud-stride", 0, *TINY_ZOE)[::2])
    assert "--cloud-stride" in line and not dst.exists()


def _odometry_msg(stamp, x):
    ts = M.ROSBAGS
    point = ts.cls("geometry_msgs/msg/Point")(x=float(x), y=0.0, z=0.0)
    quat = ts.cls("geometry_msgs/msg/Quaternion")(x=0.0, y=0.0, z=0.0, w=1.0)
    pose = ts.cls("geometry_msgs/msg/PoseWithCovariance")(pose=ts.cls("geometry_msgs/msg/Pose")(
        position=point, orientation=quat), covariance=np.zeros(36))
    vec = ts.cls("geometry_msgs/msg/Vector3")
    twist = ts.cls("geometry_msgs/msg/TwistWithCovariance")(twist=ts.cls("geometry_msgs/msg/Twist")(
        linear=vec(x=0.0, y=0.0, z=0.0), angular=vec(x=0.0, y=0.0, z=0.0)), covariance=np.zeros(36))
    return ts.cls("nav_msgs/msg/Odometry")(header=M.make_header(stamp, "odom", kit=ts), child_frame_id="base_link",
                                            pose=pose, twist=twist)


def test_bag_scale_stabilization_with_odometry(tmp_path, capsys):
    src, dst = tmp_path / "in", tmp_path / "out"
    topic, _ = make_bag(src, n=3)
    line = _one_line_error(*run(capsys, "bag", src, tmp_path / "x", "--image-topic", topic,
                                "--scale-stabilization", "odometry", *TINY_ZOE)[::2])
    assert "--odometry-topic" in line and "none" in line
    src2 = tmp_path / "in2"
    cam, frames = load_frames(limit=3)
    with bagio.BagWriter(src2) as w:
        for i, f in enumerate(frames):
            t = T0 + i * 100_000_000
            h = M.make_header(t, "cam_optical", kit=M.ROSBAGS)
            w.write("/odom", _odometry_msg(t, 0.05 * i), t)
            w.write("/cam/camera_info", M.camera_info_msg(cam, h, kit=M.ROSBAGS), t + 1)
            w.write("/cam/image_raw", M.array_to_image_msg(f.rgb, "rgb8", h, kit=M.ROSBAGS), t + 2)
    code, stdout, err = run(capsys, "bag", src2, dst, "--image-topic", "/cam/image_raw",
                            "--scale-stabilization", "odometry", *TINY_ZOE)
    assert code == 0, err
    assert bagio.bag_summary(dst)["/cam/depth/image"][1] == 3


@pytest.mark.slow
def test_infer_and_bag_with_marigold(tmp_path, capsys):
    from depth_ros.models.marigold import tiny_test_kwargs

    kw = tiny_test_kwargs(tmp_path / "mg")
    opts = ["--model", "marigold", "--weights", kw.pop("weights"), "--device", "cpu"]
    for k, v in kw.items():
        opts += ["--model-arg", f"{k}={v!r}" if isinstance(v, (str, dict)) else f"{k}={v}"]
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "infer", ROOM, "--out", out, "--hfov", 60, "--no-side", "-q", *opts)
    assert code == 0, err
    rec = json.loads((out / "summary.json").read_text())["frames_detail"][0]
    assert rec["files"].get("confidence_png") and rec["valid_fraction"] > 0
    src, dst = tmp_path / "in", tmp_path / "bag_out"
    topic, _ = make_bag(src, n=2)
    code, stdout, err = run(capsys, "bag", src, dst, "--image-topic", topic, "-q", *opts)
    assert code == 0, err
    assert bagio.bag_summary(dst)["/cam/depth/image"][1] == 2


def test_export_then_infer_with_the_onnxruntime_backend(tmp_path, capsys):
    onnx = tmp_path / "zoe_n.onnx"
    code, stdout, err = run(capsys, "export", "zoedepth_n", "--weights", "random", "--allow-random-weights",
                            "--out", onnx, "--height", 64, "--width", 64, "--model-arg", "backbone=test_tiny")
    assert code == 0, err
    report = json.loads(stdout)
    assert onnx.is_file() and max(report["max_rel_error"].values()) <= 1e-4
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "infer", ROOM, "--out", out, "--hfov", 60, "--no-side", "-q", "--model",
                            "zoedepth_n", "--backend", "onnxruntime", "--weights", onnx, "--device", "cpu")
    assert code == 0, err
    rec = json.loads((out / "summary.json").read_text())
    assert rec["backend"] == "onnxruntime" and rec["frames_detail"][0]["valid_fraction"] > 0
    line = _one_line_error(*run(capsys, "infer", ROOM, "--out", out, "--hfov", 60, "--model", "zoedepth_nk",
                                "--backend", "onnxruntime", "--weights", onnx)[::2])
    assert "zoedepth_n" in line  # the file is of another model
    line = _one_line_error(*run(capsys, "export", "zoedepth_n", "--weights", "random", "--out", onnx)[::2])
    assert "allow-random-weights" in line
