"""The synthetic scene renderer and the shipped sample stream (depth_ros/data/sample_stream)."""
import json
import math

import numpy as np
import pytest

from depth_ros.core.camera import PinholeCamera
from depth_ros.core.cloud import backproject
from depth_ros.demo import render as R


def test_sequence_plan_splits_frames_over_scenes():
    plan = R.sequence_plan(5)
    assert [p[0] for p in plan] == ["room"] * 3 + ["street"] * 2
    assert [p[1] for p in plan] == [0, 1, 2, 0, 1]
    with pytest.raises(ValueError):
        R.sequence_plan(0)


def test_look_rotation_is_a_right_handed_optical_frame():
    for yaw, pitch in ((0.0, 0.0), (0.7, -0.2), (-2.0, 0.3)):
        rot = R.look_rotation(yaw, pitch)
        assert np.allclose(rot.T @ rot, np.eye(3), atol=1e-12)
        assert np.isclose(np.linalg.det(rot), 1.0)
    rot = R.look_rotation(0.0, 0.0)
    assert np.allclose(rot[:, 2], [1, 0, 0])  # z forward = world +x
    assert np.allclose(rot[:, 0], [0, -1, 0])  # x right = world -y
    assert np.allclose(rot[:, 1], [0, 0, -1])  # y down = world -z


def test_depth_is_z_depth_with_the_depth_image_proc_projection():
    """Camera at x=1 facing the far wall straight on: the centre ray meets the door at x = 5.98, and every
    back-projected pixel lies inside the room (back-projection X = (u - cx) Z / fx, like depth_image_proc)."""
    scene = R.build_room()
    cam = PinholeCamera.from_hfov(64, 48, 70.0)
    pose = R.Pose((1.0, 2.25, 1.35), 0.0, 0.0)
    rgb, depth = R.render(scene, pose, cam, supersample=1, shadows=False)
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    assert depth.shape == (48, 64) and depth.dtype == np.float32
    # the principal point is between pixels (31.5, 23.5): the 4 nearest pixels see the door plane
    assert np.allclose(depth[23:25, 31:33], 4.98, atol=1e-5)
    pts = backproject(depth, cam).reshape(-1, 3).astype(np.float64)
    world = pts @ pose.rotation.T + np.asarray(pose.position)
    assert np.isfinite(world).all()
    assert world[:, 0].min() > 1.0 and world[:, 0].max() <= 6.0 + 1e-4
    assert world[:, 1].min() >= -1e-4 and world[:, 1].max() <= 4.5 + 1e-4
    assert world[:, 2].min() >= -1e-4 and world[:, 2].max() <= 2.7 + 1e-4
    # bottom rows see the floor: z == 0 there
    bottom = world.reshape(48, 64, 3)[-1]
    assert np.abs(bottom[:, 2]).min() < 1e-4


def test_street_has_sky_as_infinite_depth():
    scene = R.build_street()
    cam = PinholeCamera.from_hfov(48, 36, 70.0)
    _, depth = R.render(scene, R.trajectory("street", 3)[0], cam, supersample=1, shadows=False)
    assert np.isinf(depth[0]).any()  # some sky in the top row
    assert np.isfinite(depth[-1]).all()  # road in the bottom row
    assert (depth[np.isfinite(depth)] > 0).all()


def test_shipped_stream_is_small_complete_and_loads():
    folder = R.SAMPLE_STREAM_DIR
    total = sum(p.stat().st_size for p in folder.iterdir())
    assert total < 5 * 1024 * 1024
    meta = json.loads((folder / "cameras.json").read_text())
    assert meta["render_version"] == R.RENDER_VERSION
    cam, frames = R.load_frames()
    assert len(frames) == len(meta["frames"]) == 16
    assert {f.scene for f in frames} == {"room", "street"}
    assert [f.domain for f in frames] == ["indoor"] * 8 + ["outdoor"] * 8
    expect = R.default_intrinsics()
    assert (cam.width, cam.height) == (320, 240)
    assert math.isclose(cam.fx, expect.fx) and math.isclose(cam.cx, 159.5) and math.isclose(cam.cy, 119.5)
    for f in frames:
        assert f.rgb.shape == (240, 320, 3) and f.depth.shape == (240, 320)
        valid = np.isfinite(f.depth)
        assert valid.mean() > 0.8
        assert np.nanmin(f.depth) > 0.1
    assert np.isnan(frames[-1].depth).any()  # street: sky has no ground truth


def test_shipped_frame_matches_the_renderer():
    """The shipped data is what ``python -m depth_ros.demo.render`` produces (first room frame)."""
    cam, frames = R.load_frames(limit=1)
    rgb, depth = R.render(R.build_room(), R.trajectory("room", 8)[0], cam)
    assert np.abs(rgb.astype(int) - frames[0].rgb.astype(int)).max() <= 2
    mm = np.round(depth * 1000.0)
    assert np.abs(mm / 1000.0 - frames[0].depth).max() < 1.5e-3


def test_write_and_load_roundtrip(tmp_path):
    cam = PinholeCamera.from_hfov(40, 30, 60.0)
    frames = list(R.render_sequence(2, cam, supersample=1, shadows=False))
    R.write_frames(tmp_path, frames, cam)
    cam2, loaded = R.load_frames(tmp_path)
    assert cam2 == cam
    assert [f.scene for f in loaded] == ["room", "street"]
    assert np.array_equal(loaded[0].rgb, frames[0].rgb)
    ok = np.isfinite(frames[1].depth) & (frames[1].depth <= 65.535)
    assert np.allclose(loaded[1].depth[ok], frames[1].depth[ok], atol=6e-4)
    assert np.isnan(loaded[1].depth[~ok]).all()


def test_render_cli_writes_frames(tmp_path):
    assert R.main(["--out", str(tmp_path), "--frames", "2", "--width", "32", "--height", "24",
                   "--supersample", "1"]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["0000_room.png", "0000_room_depth.png", "0001_street.png", "0001_street_depth.png",
                     "cameras.json"]
