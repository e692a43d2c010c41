"""One behaviour: for the same frames and settings, ``depth_node``, ``depth-ros infer`` and ``depth-ros bag``
give identical depth (32FC1 and 16UC1, including <= 0, NaN, inf and > 65.535 m pixels), identical intrinsics
and identical clouds for every cloud mode."""
import itertools
import json
import time

import cv2
import numpy as np
import pytest
import ros_utils as ru
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from depth_ros import bag as B
from depth_ros import cli
from depth_ros import msgs as M
from depth_ros.node.node import DepthNode
from depth_ros.pipeline.frame import CLOUD_MODES
from depth_ros.pipeline.outputs import DEPTH_INFO_TOPIC, DEPTH_TOPIC, POINTS_TOPIC, bag_topics

W, H, FX = 40, 30, 35.0
MODEL = "fake_models:EdgeCaseDepthModel"
T0 = 1_700_000_000_000_000_000
N_FRAMES = 2
SETTINGS = {"organized": {}, "stride": {"cloud_stride": 3}, "voxel": {"voxel_size": 0.5}}
_ns = itertools.count()


def frames():
    return [ru.pattern_image(W, H, seed=i) for i in range(N_FRAMES)]


def cli_options(mode):
    opts = ["--model", MODEL, "--cloud-mode", mode, "-q"]
    for k, v in SETTINGS[mode].items():
        opts += ["--" + k.replace("_", "-"), str(v)]
    return opts


@pytest.fixture(scope="module")
def ros():
    session = ru.RosSession(name="test_parity_probe")
    yield session
    session.close()


def node_outputs(ros, mode, encoding):
    """{stamp: {topic: message}} of depth_node for the frames."""
    ns = f"/parity{next(_ns)}"
    params = dict({"model": MODEL, "cloud_mode": mode, "depth_encoding": encoding, "camera_info_timeout": 0.0},
                  **SETTINGS[mode])
    node = DepthNode(context=ros.context, namespace=ns,
                     parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    ros.add_node(node)
    try:
        cols = {t: ros.collect(m, f"{ns}/{t}") for t, m in ((DEPTH_TOPIC, Image), (DEPTH_INFO_TOPIC, CameraInfo),
                                                               (POINTS_TOPIC, PointCloud2))}
        img_pub, info_pub = ros.publisher(Image, f"{ns}/image"), ros.publisher(CameraInfo, f"{ns}/camera_info")
        assert ru.wait_for(lambda: img_pub.get_subscription_count() > 0 and info_pub.get_subscription_count() > 0,
                           10.0), "discovery"
        for i, rgb in enumerate(frames()):
            stamp = T0 + i * 100_000_000
            info = ru.camera_info_msg(W, H, FX, frame_id="cam")
            info.header = M.make_header(stamp, "cam")
            info_pub.publish(info)
            time.sleep(0.05)  # the CameraInfo first
            img_pub.publish(M.array_to_image_msg(rgb, "rgb8", M.make_header(stamp, "cam")))
            assert ru.wait_for(lambda: all(any(ru.stamp_of(m) == stamp for m in c.messages) for c in cols.values()),
                               10.0), f"node outputs of frame {i}"
        out = {}
        for topic, col in cols.items():
            for m in col.messages:
                out.setdefault(ru.stamp_of(m), {})[topic] = m
        return out
    finally:
        ros.remove_node(node)
        node.destroy_node()


def bag_outputs(tmp_path, mode, encoding):
    src, dst = tmp_path / f"in_{mode}_{encoding}", tmp_path / f"out_{mode}_{encoding}"
    with B.BagWriter(src) as w:
        for i, rgb in enumerate(frames()):
            stamp = T0 + i * 100_000_000
            h = M.make_header(stamp, "cam", kit=M.ROSBAGS)
            cam = M.camera_from_info_msg(ru.camera_info_msg(W, H, FX))
            w.write("/cam/camera_info", M.camera_info_msg(cam, h, kit=M.ROSBAGS), stamp)
            w.write("/cam/image_raw", M.array_to_image_msg(rgb, "rgb8", h, kit=M.ROSBAGS), stamp + 1)
    assert cli.main(["bag", str(src), str(dst), "--image-topic", "/cam/image_raw", "--depth-encoding", encoding,
                     *cli_options(mode)]) == 0
    topics = bag_topics("/cam")
    out = {}
    for t, _mt, _lt, msg in B.read_topics(dst, [topics["depth"], topics["camera_info"], topics["points"]]):
        key = {topics["depth"]: DEPTH_TOPIC, topics["camera_info"]: DEPTH_INFO_TOPIC, topics["points"]: POINTS_TOPIC}[t]
        out.setdefault(M.stamp_ns(msg.header), {})[key] = msg
    return out


def infer_outputs(tmp_path, mode):
    inp, out = tmp_path / f"frames_{mode}", tmp_path / f"infer_{mode}"
    inp.mkdir()
    for i, rgb in enumerate(frames()):
        cv2.imwrite(str(inp / f"{i}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cx, cy = (W - 1) / 2.0, (H - 1) / 2.0
    assert cli.main(["infer", str(inp), "--out", str(out), "--fx", str(FX), "--cx", str(cx), "--cy", str(cy),
                     "--no-side", *cli_options(mode)]) == 0
    return out, json.loads((out / "summary.json").read_text())["frames_detail"]


def _bytes(msg):
    return bytes(np.asarray(memoryview(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data, np.uint8))


@pytest.mark.parametrize("mode", CLOUD_MODES)
def test_node_infer_and_bag_agree(ros, tmp_path, mode):
    import open3d as o3d

    infer_dir, records = infer_outputs(tmp_path, mode)
    for encoding in ("32FC1", "16UC1"):
        node, bag = node_outputs(ros, mode, encoding), bag_outputs(tmp_path, mode, encoding)
        assert sorted(node) == sorted(bag) == [T0 + i * 100_000_000 for i in range(N_FRAMES)]
        for i, stamp in enumerate(sorted(node)):
            n, b = node[stamp], bag[stamp]
            # depth: same bytes in the node's message and the bag, same values in infer's files
            assert (n[DEPTH_TOPIC].encoding, b[DEPTH_TOPIC].encoding) == (encoding, encoding)
            assert _bytes(n[DEPTH_TOPIC]) == _bytes(b[DEPTH_TOPIC])
            depth = M.image_msg_to_array(n[DEPTH_TOPIC])
            if encoding == "32FC1":
                np.testing.assert_array_equal(np.load(infer_dir / records[i]["files"]["depth_npy"]), depth)
                row = depth[0, :8]
                assert np.isnan(row[:5]).all() and row[5] == np.float32(70.0)  # <= 0, NaN, +-inf invalid
            else:
                png = cv2.imread(str(infer_dir / records[i]["files"]["depth_png"]), cv2.IMREAD_UNCHANGED)
                np.testing.assert_array_equal(png, depth)
                assert list(depth[0, :8]) == [0, 0, 0, 0, 0, 0, 65535, 0]  # 70 m and 65.5356 m do not fit
                assert (depth[M.depth_from_image_msg(n[DEPTH_TOPIC]) > 0] > 0).all()
            # intrinsics
            for msg in (n[DEPTH_INFO_TOPIC], b[DEPTH_INFO_TOPIC]):
                assert list(msg.p) == pytest.approx([FX, 0, (W - 1) / 2, 0, 0, FX, (H - 1) / 2, 0, 0, 0, 1, 0])
            cam = records[i]["camera"]
            assert [cam["fx"], cam["fy"], cam["cx"], cam["cy"]] == pytest.approx(
                [n[DEPTH_INFO_TOPIC].k[0], n[DEPTH_INFO_TOPIC].k[4], n[DEPTH_INFO_TOPIC].k[2], n[DEPTH_INFO_TOPIC].k[5]])
            # clouds: byte-identical between node and bag; infer's PLY holds the same points
            pn, pb = n[POINTS_TOPIC], b[POINTS_TOPIC]
            assert (pn.height, pn.width, pn.point_step, pn.is_dense) == (pb.height, pb.width, pb.point_step,
                                                                         pb.is_dense)
            assert _bytes(pn) == _bytes(pb)
            pts, _ = M.cloud_msg_to_arrays(pn)
            pts = pts[np.isfinite(pts).all(axis=1)]
            ply = np.asarray(o3d.io.read_point_cloud(str(infer_dir / records[i]["files"]["ply"])).points)
            np.testing.assert_allclose(ply, pts, rtol=1e-6, atol=1e-6)
            if mode == "organized":
                assert (pn.height, pn.width) == (H, W) and not pn.is_dense
            elif mode == "stride":
                assert pn.height == 1 and pn.is_dense
