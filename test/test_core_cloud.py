"""depth_ros.core.cloud: back-projection math and the PointCloud2 byte layout."""

import numpy as np
import pytest

from depth_ros.core.camera import PinholeCamera
from depth_ros.core.cloud import (
    FLOAT32,
    backproject,
    depth_to_cloud,
    downsample_stride,
    pack_cloud,
    pack_rgb_float,
    pack_rgb_uint32,
    voxel_filter,
)

CAM = PinholeCamera(4, 3, 2.0, 4.0, 1.5, 1.0)


def _field(packed, name, fmt="<f4"):
    """Read one field straight from the bytes by its offset (independent of PackedCloud)."""
    off = {f[0]: f[1] for f in packed.fields}[name]
    n = packed.height * packed.width
    buf = packed.data.tobytes()
    assert len(buf) == packed.row_step * packed.height
    return np.ndarray((n,), dtype=fmt, buffer=buf, offset=off, strides=(packed.point_step,)).copy()


def test_backproject_hand_values():
    d = np.full((3, 4), 2.0, np.float32)
    pts = backproject(d, CAM)
    assert pts.shape == (3, 4, 3) and pts.dtype == np.float32
    # (u, v) = (3, 2): X = (3 - 1.5) * 2 / 2, Y = (2 - 1) * 2 / 4, Z = 2
    np.testing.assert_allclose(pts[2, 3], [1.5, 0.5, 2.0])
    # (0, 0): X = -1.5 * 2 / 2, Y = -1 * 2 / 4
    np.testing.assert_allclose(pts[0, 0], [-1.5, -0.5, 2.0])
    d[1, 2] = 8.0
    np.testing.assert_allclose(backproject(d, CAM)[1, 2], [0.5 * 8 / 2, 0.0, 8.0])


def test_backproject_invalid_and_ranges():
    d = np.array([[np.nan, np.inf, -np.inf, 0.0],
                  [-1.0, 0.2, 0.5, 5.0],
                  [9.99, 10.0, 10.5, 3.0]], np.float32)
    pts = backproject(d, CAM, min_range=0.3, max_range=10.0)
    valid = ~np.isnan(pts[..., 2])
    assert valid.tolist() == [[False] * 4, [False, False, True, True], [True, True, False, True]]
    # invalid -> all three coordinates NaN; valid -> all finite
    assert np.isnan(pts[~valid]).all()
    assert np.isfinite(pts[valid]).all()
    # defaults: only non-finite and <= 0 are invalid
    pts = backproject(d, CAM)
    assert (~np.isnan(pts[..., 2])).sum() == 7


def test_backproject_shape_mismatch():
    with pytest.raises(ValueError, match="does not match the camera size 4x3"):
        backproject(np.ones((4, 3), np.float32), CAM)


def test_backproject_matches_open3d():
    o3d = pytest.importorskip("open3d", reason="open3d not importable (needs libusb-1.0-0)")
    rng = np.random.default_rng(0)
    h, w = 24, 32
    cam = PinholeCamera(w, h, 30.0, 28.0, 15.3, 11.8)
    d = rng.uniform(0.2, 8.0, (h, w)).astype(np.float32)
    d[rng.random((h, w)) < 0.1] = 0.0
    pcd = o3d.geometry.PointCloud.create_from_depth_image(
        o3d.geometry.Image(d), o3d.camera.PinholeCameraIntrinsic(w, h, cam.fx, cam.fy, cam.cx, cam.cy),
        depth_scale=1.0, depth_trunc=6.0, project_valid_depth_only=False)
    ref = np.asarray(pcd.points).reshape(h, w, 3)
    ours = backproject(d, cam, max_range=6.0)
    np.testing.assert_array_equal(np.isnan(ref[..., 2]), np.isnan(ours[..., 2]))
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_pack_rgb():
    rgb = np.array([[255, 128, 1], [0, 0, 0], [1, 2, 3]], np.uint8)
    u = pack_rgb_uint32(rgb)
    assert u.tolist() == [0x00FF8001, 0, 0x00010203]
    f = pack_rgb_float(rgb)
    assert f.dtype == np.float32 and f.view(np.uint32).tolist() == u.tolist()
    rgba = np.concatenate([rgb, np.full((3, 1), 200, np.uint8)], 1)
    assert pack_rgb_uint32(rgba).tolist() == u.tolist()  # alpha dropped, byte 3 = 0
    with pytest.raises(ValueError):
        pack_rgb_uint32(rgb.astype(np.float32))


def test_pack_xyz_organized_layout():
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(3, 4, 3)).astype(np.float32)
    pts[1, 1] = np.nan
    c = pack_cloud(pts)
    assert [tuple(f) for f in c.fields] == [("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, FLOAT32, 1)]
    assert FLOAT32 == 7
    assert (c.height, c.width, c.point_step, c.row_step) == (3, 4, 16, 64)
    assert c.is_dense is False and c.is_bigendian is False
    assert c.data.dtype == np.uint8 and c.data.ndim == 1 and c.data.size == 3 * 64
    for i, name in enumerate("xyz"):
        np.testing.assert_array_equal(_field(c, name), pts[..., i].reshape(-1))
    # padding 12..16 is zero
    assert not c.data.reshape(12, 16)[:, 12:].any()
    # structured view agrees
    s = c.as_structured()
    assert s.shape == (3, 4)
    np.testing.assert_array_equal(s["z"], pts[..., 2])


def test_pack_xyzrgb_confidence_layout():
    rng = np.random.default_rng(2)
    pts = rng.normal(size=(2, 5, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (2, 5, 3), dtype=np.uint8)
    conf = rng.random((2, 5)).astype(np.float32)
    c = pack_cloud(pts, rgb=rgb, confidence=conf)
    assert [tuple(f) for f in c.fields] == [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1),
                                            ("rgb", 16, 7, 1), ("confidence", 20, 7, 1)]
    assert (c.point_step, c.row_step) == (32, 160)
    packed = _field(c, "rgb", "<u4")
    r, g, b = (rgb[..., i].reshape(-1).astype(np.uint32) for i in range(3))
    np.testing.assert_array_equal(packed, (r << 16) | (g << 8) | b)
    np.testing.assert_array_equal(_field(c, "confidence"), conf.reshape(-1))
    np.testing.assert_array_equal(_field(c, "x"), pts[..., 0].reshape(-1))
    rows = c.data.reshape(10, 32)
    assert not rows[:, 12:16].any() and not rows[:, 24:].any() and not rows[:, 19].any()
    # xyz + confidence keeps point_step 16
    c2 = pack_cloud(pts, confidence=conf)
    assert c2.point_step == 16 and [tuple(f) for f in c2.fields][-1] == ("confidence", 12, 7, 1)
    np.testing.assert_array_equal(_field(c2, "confidence"), conf.reshape(-1))


def test_pack_remove_invalid_and_unorganized():
    pts = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    pts[0, 1, 0] = np.nan
    pts[1, 2, 2] = np.inf
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    c = pack_cloud(pts, rgb=rgb, remove_invalid=True)
    assert (c.height, c.width, c.is_dense) == (1, 4, True)
    keep = [0, 2, 3, 4]
    np.testing.assert_array_equal(_field(c, "y"), pts.reshape(-1, 3)[keep, 1])
    np.testing.assert_array_equal(_field(c, "rgb", "<u4") >> 16, rgb.reshape(-1, 3)[keep, 0])
    c = pack_cloud(pts, organized=False)
    assert (c.height, c.width, c.is_dense) == (1, 6, False)
    c = pack_cloud(pts.reshape(-1, 3)[keep])
    assert (c.height, c.width, c.is_dense) == (1, 4, True)
    empty = pack_cloud(np.full((2, 2, 3), np.nan, np.float32), remove_invalid=True)
    assert (empty.height, empty.width, empty.data.size, empty.is_dense) == (1, 0, 0, True)
    with pytest.raises(ValueError, match="rgb shape"):
        pack_cloud(pts, rgb=rgb[:1])


def test_depth_to_cloud_equals_backproject_pack():
    rng = np.random.default_rng(3)
    h, w = 7, 9
    cam = PinholeCamera(w, h, 8.0, 9.0, 4.2, 3.1)
    d = rng.uniform(0.1, 5.0, (h, w)).astype(np.float32)
    d[rng.random((h, w)) < 0.2] = np.nan
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    conf = rng.random((h, w)).astype(np.float32)
    for kw in (dict(), dict(rgb=rgb), dict(rgb=rgb, confidence=conf), dict(confidence=conf)):
        ref = pack_cloud(backproject(d, cam, 0.3, 4.0), **kw)
        got = depth_to_cloud(d, cam, min_range=0.3, max_range=4.0, **kw)
        assert got.data.tobytes() == ref.data.tobytes()
        assert (got.height, got.width, got.fields, got.is_dense) == (ref.height, ref.width, ref.fields, False)
        ref = pack_cloud(backproject(d, cam, 0.3, 4.0), remove_invalid=True, **kw)
        got = depth_to_cloud(d, cam, min_range=0.3, max_range=4.0, remove_invalid=True, **kw)
        assert got.data.tobytes() == ref.data.tobytes() and (got.width, got.is_dense) == (ref.width, True)
        p, r, c = downsample_stride(backproject(d, cam), 2, kw.get("rgb"), kw.get("confidence"))
        ref = pack_cloud(p, rgb=r, confidence=c)
        got = depth_to_cloud(d, cam, stride=2, **kw)
        assert (got.height, got.width) == (4, 5)
        assert got.data.tobytes() == ref.data.tobytes()


def test_downsample_stride():
    pts = np.random.default_rng(4).normal(size=(5, 7, 3)).astype(np.float32)
    conf = np.arange(35, dtype=np.float32).reshape(5, 7)
    p, r, c = downsample_stride(pts, 2, confidence=conf)
    assert p.shape == (3, 4, 3) and r is None and c.shape == (3, 4)
    np.testing.assert_array_equal(p[1, 2], pts[2, 4])
    assert c[2, 3] == conf[4, 6]
    with pytest.raises(ValueError):
        downsample_stride(pts, 0)


def test_voxel_filter_means():
    pts = np.array([[0.1, 0.1, 0.1], [0.3, 0.5, 0.7], [np.nan, 0, 0], [2.5, 2.5, 2.5], [-0.5, 0.2, 0.2]],
                   np.float32)
    rgb = np.array([[10, 20, 30], [30, 40, 50], [0, 0, 0], [7, 8, 9], [1, 1, 1]], np.uint8)
    conf = np.array([0.2, 0.4, 1.0, 0.9, 0.5], np.float32)
    p, r, c = voxel_filter(pts, 1.0, rgb=rgb, confidence=conf)
    order = np.argsort(p[:, 0])
    p, r, c = p[order], r[order], c[order]
    # cells floor(p / 1): (-1,0,0) alone, (0,0,0) holds two points, (2,2,2) alone; NaN dropped
    np.testing.assert_allclose(p, [[-0.5, 0.2, 0.2], [0.2, 0.3, 0.4], [2.5, 2.5, 2.5]], atol=1e-6)
    assert r.tolist() == [[1, 1, 1], [20, 30, 40], [7, 8, 9]]
    np.testing.assert_allclose(c, [0.5, 0.3, 0.9], atol=1e-6)
    # voxel_size 0: only the invalid points go
    p, r, c = voxel_filter(pts.reshape(5, 1, 3), 0.0)
    assert p.shape == (4, 3) and r is None and c is None


def test_voxel_filter_matches_open3d_grid():
    o3d = pytest.importorskip("open3d", reason="open3d not importable (needs libusb-1.0-0)")
    rng = np.random.default_rng(7)
    pts = rng.uniform(-1.0, 1.0, (3000, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (3000, 3), dtype=np.uint8)
    ref = o3d.t.geometry.PointCloud(o3d.core.Tensor(pts))
    ref.point["colors"] = o3d.core.Tensor(rgb.astype(np.float32))
    ref = ref.voxel_down_sample(0.25)
    ref_p = ref.point["positions"].numpy()
    ref_c = ref.point["colors"].numpy()
    p, r, _ = voxel_filter(pts, 0.25, rgb=rgb)
    assert p.shape == ref_p.shape
    a, b = np.lexsort(p.T[::-1]), np.lexsort(ref_p.T[::-1])
    np.testing.assert_allclose(p[a], ref_p[b], atol=1e-5)
    np.testing.assert_allclose(r[a], ref_c[b], atol=0.51)


def test_statistical_outlier_removal():
    pytest.importorskip("open3d", reason="open3d not importable (needs libusb-1.0-0)")
    g = np.stack(np.meshgrid(np.arange(6), np.arange(6), [0.0]), -1).reshape(-1, 3) * 0.1
    g = np.vstack([g, [[5.0, 5.0, 5.0]]]).astype(np.float32)
    conf = np.arange(37, dtype=np.float32)
    p, _, c = voxel_filter(g, 0.0, confidence=conf, outlier_nb=6, outlier_std=1.0)
    assert p.shape == (36, 3) and p[:, 0].max() < 1.0
    assert c.tolist() == list(range(36))


def test_colorize_depth_near_is_warm_and_invalid_colour():
    from depth_ros.core.colormap import colorbar, colorize_confidence, colorize_depth
    d = np.array([[1.0, 5.0, np.nan, 0.0, 20.0]], np.float32)
    img = colorize_depth(d, 1.0, 5.0, invalid_color=(1, 2, 3))
    assert img.shape == (1, 5, 3) and img.dtype == np.uint8
    assert img[0, 0, 0] > img[0, 0, 2]  # near: red dominates (turbo warm end)
    assert img[0, 1, 2] > img[0, 1, 0]  # far: blue dominates
    assert img[0, 2].tolist() == [1, 2, 3] and img[0, 3].tolist() == [1, 2, 3]
    assert img[0, 4].tolist() == img[0, 1].tolist()  # beyond max saturates
    auto = colorize_depth(np.linspace(1, 5, 50, dtype=np.float32).reshape(5, 10))
    assert auto[0, 0, 0] > auto[0, 0, 2] and auto[-1, -1, 2] > auto[-1, -1, 0]
    conf = colorize_confidence(np.array([[0.0, 1.0]], np.float32))
    assert int(conf[0, 1].sum()) > int(conf[0, 0].sum())  # high confidence brighter
    bar = colorbar(120, 0.5, 10.0, width=70)
    assert bar.shape == (120, 70, 3) and bar.dtype == np.uint8
    assert bar[110, 5, 0] > bar[110, 5, 2] and bar[10, 5, 2] > bar[10, 5, 0]  # near at the bottom
    assert bar[:, 30:].max() > 200  # labels drawn


def test_large_buffer_reuse_is_safe(monkeypatch):
    import depth_ros.core.cloud as cloud_mod
    monkeypatch.setattr(cloud_mod, "_POOL_MIN_BYTES", 1)
    monkeypatch.setattr(cloud_mod, "_pool", [])
    rng = np.random.default_rng(6)
    cam_a = PinholeCamera(8, 10, 5.0, 5.0, 3.5, 4.5)
    cam_b = PinholeCamera(8, 20, 5.0, 5.0, 3.5, 9.5)
    d_a = rng.uniform(1, 2, (10, 8)).astype(np.float32)
    d_a[3, 3] = np.nan
    d_b = rng.uniform(1, 2, (20, 8)).astype(np.float32)
    rgb = rng.integers(1, 256, (10, 8, 3), dtype=np.uint8)
    conf = np.full((20, 8), 7.0, np.float32)
    held = depth_to_cloud(d_b, cam_b, confidence=conf)  # 160 x 16 bytes, confidence in word 3
    other = depth_to_cloud(d_a, cam_a, rgb=rgb)  # 80 x 32 bytes: same size, must not share while held
    assert other.backing is not held.backing and not np.shares_memory(other.data, held.data)
    ref = other.data.tobytes()
    first_id = id(held.backing)
    del held, other
    again = depth_to_cloud(d_a, cam_a, rgb=rgb)  # reuses the first buffer: its old bytes must be gone
    assert id(again.backing) == first_id
    assert again.data.tobytes() == ref


def test_colorbar_labels_follow_the_range():
    from depth_ros.core import colormap

    assert colormap.colorbar_labels(0.0, 80.0) == ["80 m", "60 m", "40 m", "20 m", "0 m"]
    assert colormap.colorbar_labels(0.5, 4.5) == ["4.5 m", "3.5 m", "2.5 m", "1.5 m", "0.5 m"]
    for lo, hi in ((0.69, 0.695), (2.0, 2.0004), (0.5, 10.0), (1.0, 80.0)):
        labels = colormap.colorbar_labels(lo, hi)
        assert len(set(labels)) == len(labels), labels
    bar = colormap.colorbar(200, 0.69, 0.695)
    assert bar.shape == (200, 80, 3) and bar.dtype == np.uint8


# ------------------------------------------------------- never +-inf in a cloud (issue 10, defect 6)

def _xyz_of(packed):
    return np.stack([_field(packed, k) for k in "xyz"], axis=-1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_depth_gives_nan_never_inf(dtype):
    big = 3e38 if dtype == np.float32 else 1e300
    d = np.array([[1.0, big, np.inf, 2.0],
                  [np.finfo(np.float32).max, 1e37, -np.inf, np.nan],
                  [1e30, 5.0, big, 1.0]], dtype)
    pts = backproject(d, CAM)
    assert not np.isinf(pts).any()
    finite = np.isfinite(pts).all(axis=-1)
    assert (finite | np.isnan(pts).all(axis=-1)).all()   # a point is all finite or all NaN
    # plain depths keep their exact values; 1e30 m still fits (rays here are at most 0.75)
    assert finite.tolist() == [[True, False, False, True], [False, True, False, False], [True, True, False, True]]
    np.testing.assert_array_equal(pts[0, 0], [(0 - 1.5) / 2.0, (0 - 1.0) / 4.0, 1.0])
    for remove_invalid in (False, True):
        xyz = _xyz_of(depth_to_cloud(d, CAM, remove_invalid=remove_invalid))
        assert not np.isinf(xyz).any()
        assert int(np.isfinite(xyz).all(axis=-1).sum()) == int(finite.sum())


def test_tiny_focal_never_gives_inf():
    # the case: fx = 1e-300 (refused by validate(); the cloud must still not emit inf)
    cam = PinholeCamera(4, 3, 1e-300, 1e-300, 1.5, 1.0)
    with pytest.raises(ValueError, match="non-finite rays"):
        backproject(np.ones((3, 4), np.float32), cam)
    # a focal that is absurd but finite: large depths become NaN instead of overflowing
    cam = PinholeCamera(4, 3, 1e-30, 1e-30, 1.5, 1.0)
    pts = backproject(np.full((3, 4), 1e10, np.float32), cam)
    assert not np.isinf(pts).any()
    pts = backproject(np.full((3, 4), 1.0, np.float32), cam)
    assert np.isfinite(pts).all()


def test_depth_times_wide_ray_would_overflow_float32():
    # rays up to 15 (a wide view): 1e38 m is a finite float32 depth but 15 * 1e38 is not
    cam = PinholeCamera(4, 3, 0.1, 0.1, 1.5, 1.0)
    d = np.full((3, 4), 1e38, np.float32)
    d[0, 0] = 2.0
    for pts in (backproject(d, cam), _xyz_of(depth_to_cloud(d, cam)).reshape(3, 4, 3),
                _xyz_of(depth_to_cloud(d, cam, stride=2)).reshape(2, 2, 3)):
        assert not np.isinf(pts).any()
        assert np.isfinite(pts[0, 0]).all() and np.isnan(pts[1:]).all()


def test_unpack_rgb_uint32_inverts_pack():
    from depth_ros.core.cloud import pack_rgb_uint32, unpack_rgb_uint32

    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(unpack_rgb_uint32(pack_rgb_uint32(rgb)), rgb)
