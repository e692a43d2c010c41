"""Edge / flip confidence, their combination and thresholds (depth_ros.core.confidence) and the torch twins
(depth_ros.models.confidence) on hand-made depth images."""
import math
import subprocess
import sys

import numpy as np
import pytest

from depth_ros.core.camera import PinholeCamera
from depth_ros.core.confidence import (
    DEFAULT_MIN_CONFIDENCE,
    EDGE_R_HALF,
    combine,
    edge_confidence,
    flip_confidence,
    fraction_below,
    keep_mask,
    local_relative_range,
    relative_difference,
    soft_threshold,
)

CAM = PinholeCamera.from_hfov(320, 240, 70.0)  # f = 228.5 px, the rendered scenes' camera


def plane_depth(normal, distance, cam=CAM):
    """``(depth, angle)``: depth along the optical axis of the plane n . X = distance seen by ``cam`` (NaN
    where the ray misses it) and the angle (degrees) between each pixel's ray and the plane's normal."""
    n = np.asarray(normal, float)
    n /= np.linalg.norm(n)
    u, v = np.meshgrid(np.arange(cam.width), np.arange(cam.height))
    x, y = (u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy
    ray_dot_n = n[0] * x + n[1] * y + n[2]
    with np.errstate(divide="ignore"):
        depth = np.where(ray_dot_n > 0, distance / ray_dot_n, np.nan).astype(np.float32)
    angle = np.degrees(np.arccos(np.clip(ray_dot_n / np.sqrt(x * x + y * y + 1), -1, 1)))
    return depth, angle


def tilted_normal(theta_deg):
    """Normal making ``theta`` with the optical axis, tilted about the vertical axis."""
    t = math.radians(theta_deg)
    return (math.sin(t), 0.0, math.cos(t))


# -- the measure ---------------------------------------------------------------------------------
def test_relative_difference_is_symmetric_scale_and_inversion_invariant():
    a = np.array([1.0, 2.0, 5.0, 3.0], np.float32)
    b = np.array([1.0, 4.0, 4.0, 0.0], np.float32)
    r = relative_difference(a, b)
    np.testing.assert_allclose(r, [0.0, 2 * 2 / 6, 2 * 1 / 9, 2.0], rtol=1e-6)
    np.testing.assert_allclose(relative_difference(b, a), r)
    np.testing.assert_allclose(relative_difference(7 * a, 7 * b), r, rtol=1e-6)
    np.testing.assert_allclose(relative_difference(1 / a[:3], 1 / b[:3]), r[:3], rtol=1e-6)
    assert relative_difference(np.zeros(2), np.zeros(2)).tolist() == [0.0, 0.0]


def test_soft_threshold():
    r = np.array([0.0, 0.5, 1.0, 2.0], np.float32)
    np.testing.assert_allclose(soft_threshold(r, 1.0, 4), [1.0, 1 / (1 + 0.5 ** 4), 0.5, 1 / 17], rtol=1e-6)
    np.testing.assert_allclose(soft_threshold(r, 1.0, 2.5), 1 / (1 + r.astype(float) ** 2.5), rtol=1e-6)
    for k in (1, 2, 3, 5, 8):  # the integer fast path is the power
        np.testing.assert_allclose(soft_threshold(r, 0.3, k), 1 / (1 + (r.astype(float) / 0.3) ** k), rtol=1e-5)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="r_half"):
            soft_threshold(r, bad)
        with pytest.raises(ValueError, match="sharpness"):
            soft_threshold(r, 0.1, bad)


# -- edge confidence on hand-made cases ----------------------------------------------------------
def test_step_edge_is_marked_only_next_to_the_edge():
    d = np.full((12, 16), 2.0, np.float32)
    d[:, 8:] = 4.0
    c = edge_confidence(d)
    assert c.dtype == np.float32 and c.shape == d.shape
    r_step = 2 * 2 / 6  # s(4, 2)
    expected_edge = 1 / (1 + (r_step / EDGE_R_HALF) ** 4)
    np.testing.assert_allclose(c[:, 7:9], expected_edge, rtol=1e-5)  # both sides see the jump in 3 x 3
    assert (c[:, 7:9] < DEFAULT_MIN_CONFIDENCE).all()
    np.testing.assert_array_equal(c[:, :7], 1.0)
    np.testing.assert_array_equal(c[:, 9:], 1.0)
    # a blurred step (flying pixels between 2 m and 4 m) is marked across the ramp
    ramp = d.copy()
    ramp[:, 7], ramp[:, 8] = 2.5, 3.3
    c = edge_confidence(ramp)
    assert (c[:, 6:10] < DEFAULT_MIN_CONFIDENCE).all()
    np.testing.assert_array_equal(c[:, :5], 1.0)
    # a 5 x 5 window widens the marked band by one pixel on each side
    c5 = edge_confidence(d, window=5)
    assert (c5[:, 6:10] < DEFAULT_MIN_CONFIDENCE).all() and (c5[:, :6] == 1).all() and (c5[:, 10:] == 1).all()


def test_constant_plane_is_fully_confident():
    d, _ = plane_depth((0, 0, 1), 3.0)
    np.testing.assert_array_equal(edge_confidence(d), 1.0)


@pytest.mark.parametrize("theta", [30.0, 60.0, 75.0])
def test_slanted_plane_is_not_marked(theta):
    """A plane tilted by theta (the rays meet it at theta +- 35 deg) is kept wherever a ray meets it at
    less than 79 deg (the module docstring's c >= 0.94 figure for f = 228 px)."""
    d, angle = plane_depth(tilted_normal(theta), 3.0)
    c = edge_confidence(d)
    keep = angle < 79.0
    assert keep.mean() > 0.3
    assert c[keep].min() > 0.93, (theta, c[keep].min())
    assert (c[keep] >= DEFAULT_MIN_CONFIDENCE).all()
    assert not np.isnan(c).any()


def test_plane_range_follows_tan_theta_over_f():
    """r ~ 2 tan(theta) / f on a plane (the figure the module docstring's angles come from)."""
    for theta in (45.0, 70.0, 80.0):
        d, _ = plane_depth(tilted_normal(theta), 3.0, PinholeCamera(321, 241, 228.5, 228.5, 160.0, 120.0))
        r, _ = local_relative_range(d)
        expected = 2 * math.tan(math.radians(theta)) / 228.5
        assert r[120, 160] == pytest.approx(expected, rel=0.05)


def test_grazing_plane_is_marked():
    """Beyond the stated angle (84 deg at f = 228 px) even a plane is marked: 2 tan(88 deg) / f = 0.25."""
    d, angle = plane_depth(tilted_normal(88.0), 3.0)
    c = edge_confidence(d)
    assert c[120, 160] < DEFAULT_MIN_CONFIDENCE and abs(angle[120, 160] - 88.0) < 0.5


def test_invalid_depth_gets_zero_and_does_not_spread():
    d = np.full((10, 12), 3.0, np.float32)
    d[2, 3] = np.nan
    d[5, 5] = np.inf
    d[7, 8] = -np.inf
    d[1, 10] = 0.0
    d[8, 1] = -2.0
    d[4:6, 9:11] = np.nan  # a hole
    c = edge_confidence(d)
    assert not np.isnan(c).any()
    bad = ~np.isfinite(d) | (d <= 0)
    np.testing.assert_array_equal(c[bad], 0.0)
    np.testing.assert_array_equal(c[~bad], 1.0)  # a hole in a flat surface is no edge
    assert (edge_confidence(np.full((4, 4), np.nan)) == 0).all()
    one = edge_confidence(np.array([[2.0]]))
    assert one.shape == (1, 1) and one[0, 0] == 1.0


def test_float64_and_hw1_inputs_and_errors():
    d = np.full((6, 7), 2.0)
    d[:, 4:] = 5.0
    c = edge_confidence(d)
    assert c.dtype == np.float32
    np.testing.assert_array_equal(edge_confidence(d[:, :, None]), c)
    np.testing.assert_array_equal(edge_confidence(d, window=1), 1.0)
    for bad in (0, 2, 4, -3, 3.0, True):
        with pytest.raises(ValueError, match="window"):
            edge_confidence(d, window=bad)
    with pytest.raises(ValueError, match="H x W"):
        edge_confidence(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="numeric"):
        edge_confidence(np.array([["a"]]))


# -- flip confidence -----------------------------------------------------------------------------
def test_flip_confidence_formula():
    d = np.array([[1.0, 0.95, 2.0, np.nan, 1.0]], np.float32)
    m = np.array([[1.0, 1.05, 2.5, 1.0, 0.0]], np.float32)
    c = flip_confidence(d, m)
    s = 2 * 0.5 / 4.5
    np.testing.assert_allclose(c, [[1.0, 0.5, math.exp(-math.log(2) * s / 0.1), 0.0, 0.0]], rtol=1e-5)
    np.testing.assert_allclose(flip_confidence(1 / d[:, :3], 1 / m[:, :3]), c[:, :3], rtol=1e-5)  # inverse depth
    np.testing.assert_allclose(flip_confidence(d, m, r_half=0.2)[0, 1], 2 ** -0.5, rtol=1e-5)
    with pytest.raises(ValueError, match="differ in shape"):
        flip_confidence(d, m[:, :3])


# -- combination and thresholds ------------------------------------------------------------------
def test_combine_rules():
    a = np.array([[1.0, 0.5, 0.2, np.nan]], np.float32)
    b = np.array([[0.5, 0.5, 0.9, 1.0]], np.float32)
    np.testing.assert_allclose(combine(a, b), [[0.5, 0.25, 0.18, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(combine(a, b, "min"), [[0.5, 0.5, 0.2, 0.0]])
    np.testing.assert_allclose(combine(None, b), b)
    np.testing.assert_allclose(combine(a, None), [[1.0, 0.5, 0.2, 0.0]])
    np.testing.assert_allclose(combine(np.array([[1.5, -0.1]]), None), [[1.0, 0.0]])
    assert combine(None, None) is None
    with pytest.raises(ValueError, match="rule"):
        combine(a, b, "mean")
    with pytest.raises(ValueError, match="differ in shape"):
        combine(a, b[:, :2])


def test_keep_mask_and_fraction_below():
    c = np.array([[0.0, 0.49, 0.5, 1.0], [np.nan, 0.7, 0.2, 0.9]], np.float32)
    np.testing.assert_array_equal(keep_mask(c, 0.5), [[False, False, True, True], [False, True, False, True]])
    assert keep_mask(c, 0.0).all()  # 0 keeps everything, NaN included (today's behaviour)
    assert fraction_below(c, 0.5) == pytest.approx(4 / 8)
    assert fraction_below(c, 0.0) == 0.0
    valid = np.array([[True, True, True, True], [False, False, False, False]])
    assert fraction_below(c, 0.5, valid) == pytest.approx(2 / 4)
    assert fraction_below(c, 0.5, np.zeros_like(valid)) == 0.0
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="min_confidence"):
            keep_mask(c, bad)
    with pytest.raises(ValueError, match="differ in shape"):
        fraction_below(c, 0.5, valid[:1])


def test_core_confidence_does_not_import_torch():
    code = ("import sys; import depth_ros.core.confidence as c, numpy as np; c.edge_confidence(np.ones((3, 3))); "
            "assert 'torch' not in sys.modules; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stdout + proc.stderr


# -- torch twins: the same numbers ---------------------------------------------------------------
def _scene(seed=0, h=40, w=56):
    rng = np.random.default_rng(seed)
    d, _ = plane_depth(tilted_normal(50.0), 3.0, PinholeCamera(w, h, 40.0, 40.0, w / 2, h / 2))
    d[10:25, 12:30] = 1.2  # a box in front
    d[30:, 40:] *= 1.0 + 0.02 * rng.standard_normal((h - 30, w - 40)).astype(np.float32)
    d[5:8, 45:50] = np.nan
    d[0, 0], d[20, 20], d[39, 55] = np.inf, 0.0, -1.0
    return d


@pytest.mark.parametrize("window", [1, 3, 5])
def test_torch_twin_gives_the_same_numbers(window, torch_one_thread):
    import torch

    from depth_ros.models.confidence import (
        combine_torch,
        edge_confidence_torch,
        flip_confidence_torch,
        local_relative_range_torch,
    )

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    d = _scene()
    m = _scene(1)
    for dev in devices:
        t = torch.from_numpy(d).to(dev)
        r, valid = local_relative_range_torch(t, window)
        r_np, valid_np = local_relative_range(d, window)
        np.testing.assert_array_equal(valid.cpu().numpy(), valid_np)
        np.testing.assert_allclose(r.cpu().numpy(), r_np, rtol=1e-6, atol=1e-7)
        e = edge_confidence_torch(t, window)
        assert e.shape == t.shape and e.dtype == torch.float32 and e.device == t.device
        e_np = edge_confidence(d, window)
        np.testing.assert_allclose(e.cpu().numpy(), e_np, rtol=1e-6, atol=1e-7)
        batch = torch.stack([t, torch.from_numpy(m).to(dev)])[:, None]
        eb = edge_confidence_torch(batch, window)
        assert eb.shape == (2, 1) + d.shape
        np.testing.assert_allclose(eb[1, 0].cpu().numpy(), edge_confidence(m, window), rtol=1e-6, atol=1e-7)
        f = flip_confidence_torch(t, torch.from_numpy(m).to(dev))
        np.testing.assert_allclose(f.cpu().numpy(), flip_confidence(d, m), rtol=1e-6, atol=1e-7)
        c = combine_torch(f, e, "product")
        np.testing.assert_allclose(c.cpu().numpy(), combine(flip_confidence(d, m), e_np), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(combine_torch(f, e, "min").cpu().numpy(),
                                   combine(flip_confidence(d, m), e_np, "min"), rtol=1e-6, atol=1e-7)
        assert not torch.isnan(e).any() and not torch.isnan(f).any()
    with pytest.raises(ValueError, match="H x W"):
        edge_confidence_torch(torch.ones(3, 4, 5))
    with pytest.raises(ValueError, match="torch.Tensor"):
        edge_confidence_torch(d)
    with pytest.raises(ValueError, match="rule"):
        combine_torch(None, torch.ones(2, 2), "max")
