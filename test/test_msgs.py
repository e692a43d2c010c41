"""depth_ros.msgs with real sensor_msgs types (ROS 2 installation or the venv's ROS wheels)."""

import array

import numpy as np
import pytest

sensor_msgs = pytest.importorskip("sensor_msgs.msg", reason="sensor_msgs (ROS 2) not importable")
std_msgs = pytest.importorskip("std_msgs.msg", reason="std_msgs (ROS 2) not importable")

from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from depth_ros.core.camera import PinholeCamera  # noqa: E402
from depth_ros.core.cloud import depth_to_cloud, pack_cloud  # noqa: E402
from depth_ros.core.encodings import ImageEncodingError  # noqa: E402
from depth_ros.msgs import (  # noqa: E402
    array_to_image_msg,
    camera_from_info_msg,
    camera_info_msg,
    cloud_msg,
    compressed_msg_to_rgb8,
    copy_header,
    depth_image_msg,
    image_msg_to_array,
    image_msg_to_rgb8,
)


def _header():
    h = Header()
    h.stamp.sec = 1700000000
    h.stamp.nanosec = 123456789
    h.frame_id = "camera_color_optical_frame"
    return h


def _same_header(out, ref):
    assert out is not ref and out.stamp is not ref.stamp
    assert (out.stamp.sec, out.stamp.nanosec, out.frame_id) == (ref.stamp.sec, ref.stamp.nanosec, ref.frame_id)


def test_copy_header_is_independent():
    h = _header()
    c = copy_header(h)
    _same_header(c, h)
    c.frame_id = "other"
    c.stamp.sec = 1
    assert h.frame_id == "camera_color_optical_frame" and h.stamp.sec == 1700000000
    assert copy_header(None).frame_id == "" and copy_header(h, frame_id="x").frame_id == "x"


def test_image_round_trip_32fc1_and_rgb():
    h = _header()
    depth = np.array([[1.0, np.nan], [np.inf, 2.5], [0.0, 3.0]], np.float32)
    msg = array_to_image_msg(depth, "32FC1", h)
    assert isinstance(msg, Image) and isinstance(msg.data, array.array)
    assert (msg.height, msg.width, msg.encoding, msg.step, msg.is_bigendian) == (3, 2, "32FC1", 8, 0)
    _same_header(msg.header, h)
    assert bytes(msg.data) == depth.astype("<f4").tobytes()
    np.testing.assert_array_equal(image_msg_to_array(msg), depth)
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    bgr = array_to_image_msg(rgb[..., ::-1], "bgr8", h)
    np.testing.assert_array_equal(image_msg_to_rgb8(bgr), rgb)
    np.testing.assert_array_equal(image_msg_to_rgb8(array_to_image_msg(rgb, "rgb8", h)), rgb)


def test_big_endian_padded_message():
    vals = np.array([[1, 2, 0x0102], [0xFFFF, 300, 7]], np.uint16)
    row = vals.astype(">u2").view(np.uint8).reshape(2, 6)
    padded = np.concatenate([row, np.full((2, 2), 0xEE, np.uint8)], 1)
    msg = Image(height=2, width=3, encoding="16UC1", is_bigendian=1, step=8)
    msg.data = array.array("B", padded.tobytes())
    out = image_msg_to_array(msg)
    assert out.dtype == np.uint16 and out.dtype.isnative
    np.testing.assert_array_equal(out, vals)


def test_image_errors_name_the_problem():
    msg = Image(height=2, width=3, encoding="rgb8", step=9)
    msg.data = array.array("B", bytes(10))
    with pytest.raises(ImageEncodingError, match=r"data has 10 bytes, expected at least step\*height = 9\*2 = 18"):
        image_msg_to_rgb8(msg)
    msg.encoding = "nv21"
    with pytest.raises(ImageEncodingError, match="unsupported image encoding 'nv21'"):
        image_msg_to_array(msg)


def test_compressed():
    cv2 = pytest.importorskip("cv2")
    rgb = np.random.default_rng(0).integers(0, 255, (6, 8, 3), dtype=np.uint8)
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    msg = CompressedImage(format="png")
    msg.data = array.array("B", png.tobytes())
    np.testing.assert_array_equal(compressed_msg_to_rgb8(msg), rgb)


def test_depth_image_msg():
    h = _header()
    d = np.array([[0.5, np.nan], [1.2344, 70.0]], np.float64)
    m32 = depth_image_msg(d, h)
    assert m32.encoding == "32FC1" and m32.step == 8
    np.testing.assert_array_equal(image_msg_to_array(m32), d.astype(np.float32))
    m16 = depth_image_msg(d, h, encoding="16UC1")
    assert m16.encoding == "16UC1" and m16.step == 4
    # 70 m does not fit in 16-bit millimetres: invalid (0), not a false 65.535 m
    assert image_msg_to_array(m16).tolist() == [[500, 0], [1234, 0]]
    edge = np.array([[65.535, 65.5349, 65.536, np.inf]], np.float32)
    assert image_msg_to_array(depth_image_msg(edge, h, encoding="16UC1")).tolist() == [[65535, 65535, 0, 0]]
    _same_header(m16.header, h)
    with pytest.raises(ValueError):
        depth_image_msg(d, h, encoding="8UC1")


def test_camera_info_round_trip():
    h = _header()
    cam = PinholeCamera(640, 480, 525.0, 530.0, 319.5, 239.5)
    info = camera_info_msg(cam, h)
    assert isinstance(info, CameraInfo)
    _same_header(info.header, h)
    assert (info.width, info.height, info.distortion_model) == (640, 480, "plumb_bob")
    np.testing.assert_array_equal(info.k, cam.K.reshape(-1))
    np.testing.assert_array_equal(info.p, [525, 0, 319.5, 0, 0, 530, 239.5, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(info.r, np.eye(3).reshape(-1))
    assert list(info.d) == [0.0] * 5
    assert camera_from_info_msg(info) == cam
    # ROI + binning from the message fields
    info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = 100, 40, 400, 300
    info.binning_x = info.binning_y = 2
    assert camera_from_info_msg(info) == PinholeCamera(200, 150, 262.5, 265.0, 109.75, 99.75)
    assert camera_from_info_msg(CameraInfo(width=640, height=480)) is None


def test_cloud_msg_fields_bytes_and_serialization():
    serialization = pytest.importorskip("rclpy.serialization")
    h = _header()
    cam = PinholeCamera(5, 4, 4.0, 4.0, 2.0, 1.5)
    d = np.linspace(0.5, 3.0, 20, dtype=np.float32).reshape(4, 5)
    d[0, 0] = np.nan
    rgb = np.random.default_rng(1).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    packed = depth_to_cloud(d, cam, rgb=rgb)
    msg = cloud_msg(packed, h)
    assert isinstance(msg, PointCloud2)
    _same_header(msg.header, h)
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1), ("z", 8, PointField.FLOAT32, 1),
        ("rgb", 16, PointField.FLOAT32, 1)]
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (4, 5, 32, 160)
    assert (msg.is_dense, msg.is_bigendian) == (False, False)
    assert isinstance(msg.data, array.array) and len(msg.data) == 640
    raw = bytes(msg.data)
    z = np.ndarray((20,), "<f4", raw, 8, (32,))
    np.testing.assert_array_equal(z, d.reshape(-1))
    x = np.ndarray((20,), "<f4", raw, 0, (32,))
    u = np.tile(np.arange(5), 4)
    np.testing.assert_allclose(x[1:], ((u - 2.0) * d.reshape(-1) / 4.0)[1:], rtol=1e-6)
    c = np.ndarray((20,), "<u4", raw, 16, (32,))
    assert c[7] == (int(rgb[1, 2, 0]) << 16) | (int(rgb[1, 2, 1]) << 8) | int(rgb[1, 2, 2])
    # the message survives serialization (data set without the generated setter)
    back = serialization.deserialize_message(serialization.serialize_message(msg), PointCloud2)
    assert bytes(back.data) == raw and back.width == 5 and back.header.stamp.nanosec == 123456789
    # a PackedCloud without an array.array backing is copied
    plain = pack_cloud(np.zeros((2, 3), np.float32))
    plain.backing = None
    m2 = cloud_msg(plain, h)
    assert (m2.height, m2.width, m2.is_dense, len(m2.data)) == (1, 2, True, 32)


def test_image_msg_serializes():
    serialization = pytest.importorskip("rclpy.serialization")
    msg = array_to_image_msg(np.arange(6, dtype=np.uint16).reshape(2, 3), "mono16", _header())
    back = serialization.deserialize_message(serialization.serialize_message(msg), Image)
    np.testing.assert_array_equal(image_msg_to_array(back), np.arange(6).reshape(2, 3))
