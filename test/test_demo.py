"""The demo: its helpers, and the whole ROS graph in --quick mode (three real processes)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from depth_ros import bag as bagio
from depth_ros import cli, msgs
from depth_ros import files as O
from depth_ros.demo import run_demo
from depth_ros.demo.recorder import format_summary

REPO = Path(__file__).resolve().parents[1]


def test_depth_metrics():
    gt = np.full((10, 10), 2.0, np.float32)
    gt[0] = np.nan  # no ground truth (sky)
    gt[1] = 100.0  # beyond the evaluation cap
    m = O.depth_metrics(gt.copy(), gt, max_depth=80.0)
    assert m["abs_rel"] == 0.0 and m["delta1"] == 1.0 and m["rmse"] == 0.0 and m["pixels"] == 80
    m = O.depth_metrics(gt * 1.3, gt, max_depth=80.0)
    assert np.isclose(m["abs_rel"], 0.3) and m["delta1"] == 0.0
    pred = gt * 1.1
    pred[2:4] = np.nan  # no prediction for 20 of the 80 evaluated pixels
    m = O.depth_metrics(pred, gt)
    assert np.isclose(m["abs_rel"], 0.1) and m["delta1"] == 1.0 and np.isclose(m["coverage"], 0.75)
    assert O.depth_metrics(np.full((4, 4), np.nan), np.ones((4, 4)))["abs_rel"] is None


def test_side_by_side_and_ply(tmp_path):
    rgb = np.zeros((48, 64, 3), np.uint8)
    depth = np.linspace(1, 5, 48 * 64, dtype=np.float32).reshape(48, 64)
    plain = O.side_by_side(rgb, depth, None, 1.0, 5.0)
    marked = O.side_by_side(rgb, depth, np.ones_like(depth), 1.0, 5.0, "caption", True,
                            [("ground truth", rgb)])
    assert plain.dtype == np.uint8 and plain.shape[1] > 3 * 64
    assert marked.shape[0] > plain.shape[0] and marked.shape[1] > plain.shape[1]
    assert (marked[5, 5] == (170, 0, 0)).all()  # the red banner
    pts = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    pts[3] = np.nan
    n = O.write_ply(tmp_path / "c.ply", pts, np.full((10, 3), 200, np.uint8), ["hello world", O.RANDOM_WEIGHTS_NOTE])
    assert n == 9
    import open3d as o3d
    pcd = o3d.io.read_point_cloud(str(tmp_path / "c.ply"))
    assert len(pcd.points) == 9 and np.allclose(np.asarray(pcd.colors), 200 / 255)
    assert b"comment hello world\n" in (tmp_path / "c.ply").read_bytes()[:300]


def test_format_summary_handles_missing_values():
    s = {"random_weights": True, "camera": {"published": None, "rate_hz": None, "rate_requested_hz": 2.0,
                                             "max_period_error_ms": None, "received_by_recorder": 0},
         "outputs": {"depth_frames": 0, "output_rate_hz": None, "messages": {}}, "dropped_frames": None,
         "latency_ms": {"mean": None, "p50": None, "max": None},
         "metrics": {"frames_evaluated": 0}, "node_diagnostics": {"inference_ms_mean": "12.3456"}}
    text = format_summary(s)
    assert "RANDOM WEIGHTS" in text and "n/a" in text and "inference 12 ms" in text


def test_demo_refuses_a_foreign_output_folder(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    assert run_demo.main(["--quick", "--out", str(tmp_path)]) == 2
    assert "not written by the demo" in capsys.readouterr().err
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_demo_script_sets_up_then_runs_the_venv_python():
    text = (REPO / "scripts" / "demo.sh").read_text()
    setup = text.index("bash scripts/setup_env.sh")
    run = text.index('.venv/bin/python" -m depth_ros.demo.run_demo "$@"')
    assert setup < run


def test_cli_demo_subcommand_delegates(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "--help"])
    assert exc.value.code == 0
    assert "--quick" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_quick_runs_the_ros_graph(tmp_path):
    out = tmp_path / "demo"
    env = dict(os.environ, DEPTH_ROS_OFFLINE="1")
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    p = subprocess.run([sys.executable, "-m", "depth_ros.demo.run_demo", "--quick", "--quiet", "--frames", "12",
                        "--out", str(out)], capture_output=True, text=True, timeout=300, env=env, cwd=str(tmp_path))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "depth_ros demo summary" in p.stdout and "RANDOM WEIGHTS" in p.stdout
    s = json.loads((out / "summary.json").read_text())
    assert s["random_weights"] is True and s["demo"]["mode"].startswith("quick")
    assert s["camera"]["published"] == 12 and s["camera"]["rate_hz"] > 0
    n = s["outputs"]["depth_frames"]
    assert 1 <= n <= 12
    assert s["dropped_frames"] == 12 - n
    assert s["latency_ms"]["n"] == n and s["latency_ms"]["mean"] > 0
    assert s["metrics"]["frames_evaluated"] >= 1 and 0 <= s["metrics"]["delta1"] <= 1
    assert s["depth_camera_info"]["width"] == 320
    assert (out / O.MARKER_FILE).is_file()
    # pictures and clouds read back
    pics = sorted((out / "frames").glob("*_side.png"))
    assert len(pics) == len(s["pictures"]) >= 1
    assert cv2.imread(str(pics[0])).shape[0] > 240
    import open3d as o3d
    for name, count in s["ply"].items():
        assert len(o3d.io.read_point_cloud(str(out / name)).points) == count > 0
    # the bag: topics, and every depth stamp is a camera stamp
    topics = bagio.bag_summary(out / "bag")
    for t in ("/depth/image", "/depth/camera_info", "/depth/confidence", "/depth/points", "/depth/colorized"):
        assert topics[t][1] == n, (t, topics)
    assert topics["/camera/image_raw"][1] >= 1 and "/diagnostics" in topics
    assert bagio.bag_custom_data(out / "bag")["depth_ros.note"] == O.RANDOM_WEIGHTS_NOTE
    stamps = {}
    for t, _mt, _lt, msg in bagio.read_topics(out / "bag", ["/depth/image", "/depth/points"]):
        stamps.setdefault(t, []).append(msgs.stamp_ns(msg.header))
    sent = {f[0] for f in json.loads((out / "logs" / "camera_stats.json").read_text())["frames"]}
    assert set(stamps["/depth/image"]) <= sent and stamps["/depth/image"] == stamps["/depth/points"]
    assert "AbsRel" in (out / "summary.txt").read_text()


def test_demo_explicit_missing_weights_is_an_error_not_random(tmp_path, capsys):
    out = tmp_path / "demo"
    assert run_demo.main(["--weights", str(tmp_path / "ZoeD_M12_NK.pt"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "ZoeD_M12_NK.pt" in err and "does not exist" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # nothing started, nothing replaced
