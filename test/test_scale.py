"""Scale stabilisation (depth_ros.pipeline.scale) and the rendered sequences it is measured on."""
import math

import numpy as np
import pytest

from depth_ros.core.camera import PinholeCamera
from depth_ros.demo.sequences import FlickeringNetwork, make_sequence, odometry_stream
from depth_ros.pipeline.scale import (
    LogScaleFilter,
    ScaleStabilizer,
    as_motion,
    fit_log_scale,
    fit_log_scale_static,
    relative_motion,
    warp_depth,
)

CAM = PinholeCamera(41, 31, 20.0, 20.0, 20.0, 15.0)


def _motion(rot=None, t=(0.0, 0.0, 0.0)):
    m = np.eye(4)
    m[:3, :3] = np.eye(3) if rot is None else rot
    m[:3, 3] = t
    return m


def _rot_y(theta):
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


# -- warp ------------------------------------------------------------------------------------------


def test_warp_pure_translation_along_the_optical_axis():
    plane = np.full((31, 41), 5.0, np.float32)
    out = warp_depth(plane, CAM, _motion(t=(0.0, 0.0, -1.0)))  # camera moved 1 m forward
    assert out[15, 20] == pytest.approx(4.0)
    # Source pixel u=28 (x = 8/20 * 5 = 2 m) lands at u = 20 + 20 * 2 / 4 = 30 in the new view.
    assert out[15, 30] == pytest.approx(4.0)
    finite = np.isfinite(out)
    assert np.allclose(out[finite], 4.0)
    assert finite.mean() > 0.5  # magnified view: some gaps, mostly covered
    # Moving back by 1 m instead: depth 6, the old view shrinks into the centre.
    back = warp_depth(plane, CAM, (np.eye(3), np.array([0.0, 0.0, 1.0])))
    assert back[15, 20] == pytest.approx(6.0)
    assert not np.isfinite(back[0, 0]) and not np.isfinite(back[15, 1])  # 20 * 5/6 = 16.7 px from centre max


def test_warp_pure_rotation():
    theta = math.atan(0.25)  # fx tan(theta) = 5 px
    depth = np.full((31, 41), np.nan, np.float32)
    depth[15, 20] = 5.0  # the centre pixel's point (0, 0, 5)
    out = warp_depth(depth, CAM, _motion(_rot_y(theta)))
    # X_cur = R_y(theta) (0, 0, 5) = (5 sin, 0, 5 cos): u = cx + fx tan(theta) = 25, depth 5 cos(theta).
    assert out[15, 25] == pytest.approx(5.0 * math.cos(theta), rel=1e-6)
    assert np.isfinite(out).sum() == 1
    # A point behind the camera after the motion is dropped.
    assert not np.isfinite(warp_depth(depth, CAM, _motion(_rot_y(math.pi)))).any()


def test_warp_z_buffer_keeps_the_nearest_surface():
    depth = np.full((31, 41), np.nan, np.float32)
    depth[15, 20] = 2.0  # (0, 0, 2)
    depth[15, 30] = 4.0  # (2, 0, 4)
    # Shift by tx = 2: both land on u = 40 (20 + 20 * 2 / 2 and 20 + 20 * 4 / 4).
    out = warp_depth(depth, CAM, _motion(t=(2.0, 0.0, 0.0)))
    assert out[15, 40] == pytest.approx(2.0)
    assert np.isfinite(out).sum() == 1


def test_warp_matches_the_renderer_between_two_frames():
    """Relative pose from two world-from-optical poses + warp of frame 0 reproduces frame 1's depth."""
    seq = make_sequence("room", 12, PinholeCamera.from_hfov(64, 48, 70.0))
    motion = relative_motion(seq.poses[2], seq.poses[3])
    out = warp_depth(seq.depth[2], seq.camera, motion)
    both = np.isfinite(out) & np.isfinite(seq.depth[3])
    assert both.mean() > 0.7
    err = np.abs(np.log(out[both] / seq.depth[3][both]))
    assert np.median(err) < 0.005
    assert np.mean(err < 0.02) > 0.9
    assert np.allclose(odometry_stream(seq.poses)[3], motion)


def test_motion_validation():
    with pytest.raises(ValueError, match="4x4"):
        as_motion(np.eye(3))
    with pytest.raises(ValueError, match="last row"):
        as_motion(np.ones((4, 4)))
    with pytest.raises(ValueError, match="orthonormal"):
        as_motion((2 * np.eye(3), np.zeros(3)))
    with pytest.raises(ValueError, match="non-finite"):
        as_motion((np.eye(3), np.array([0.0, np.nan, 0.0])))
    with pytest.raises(ValueError, match="camera is"):
        warp_depth(np.ones((10, 10), np.float32), CAM, np.eye(4))


# -- fit -------------------------------------------------------------------------------------------


def test_fit_is_robust_to_30_percent_outliers():
    rng = np.random.default_rng(0)
    ref = rng.uniform(1.0, 10.0, (60, 80)).astype(np.float32)
    depth = ref * 1.1 * np.exp(0.01 * rng.standard_normal(ref.shape))
    bad = rng.random(ref.shape) < 0.3
    depth[bad] *= np.exp(rng.uniform(0.3, 1.0, bad.sum()))  # all on one side: the worst case for a median
    fit = fit_log_scale(depth.astype(np.float32), ref)
    assert fit.log_scale == pytest.approx(math.log(1.1), abs=0.004)
    assert fit.inlier_fraction == pytest.approx(0.7, abs=0.02)
    assert fit.overlap == 1.0
    # The plain mean would be far off: the test can fail.
    assert abs(np.mean(np.log(depth / ref)) - math.log(1.1)) > 0.1
    # Invalid pixels are not compared; too few valid pixels give no fit.
    ref2 = ref.copy()
    ref2[:, :70] = np.nan
    fit2 = fit_log_scale(depth.astype(np.float32), ref2)
    assert fit2.overlap == pytest.approx(10 / 80) and fit2.count == 600
    assert math.isnan(fit_log_scale(depth[:5, :5], ref[:5, :5]).log_scale)


def test_static_fit_ignores_depth_edges():
    ref = np.full((40, 40), 2.0, np.float32)
    ref[:, 20:] = 8.0  # a depth edge in the middle
    cur = ref * np.float32(1.05)
    cur[:, 19:22] = 8.0 * 1.05  # the edge moved by a pixel: different surfaces there
    fit = fit_log_scale_static(cur, ref)
    assert fit.log_scale == pytest.approx(math.log(1.05), abs=1e-4)
    assert fit.inlier_fraction == 1.0  # edge pixels left out


# -- filter ----------------------------------------------------------------------------------------


def test_filter_step_response_and_jump_rejection():
    f = LogScaleFilter(jitter=0.03, drift=0.002, gate=3.0, step_frames=4)
    events = []
    levels = []
    for k in range(60):
        z = 0.0
        if k in (10, 25, 26, 27):  # a 1-frame and a 3-frame jump: rejected
            z = 0.25
        if k >= 40:  # a persistent step: followed
            z = 0.2
        lv, ev = f.update(z)
        levels.append(lv)
        events.append(ev)
    assert events[0] == "start"
    assert max(abs(v) for v in levels[:40]) < 1e-9
    assert events[10] == "outlier" and events[25:28] == ["outlier"] * 3
    assert events[40:43] == ["outlier"] * 3 and events[43] == "step"
    assert levels[42] == pytest.approx(0.0) and levels[43] == pytest.approx(0.2)
    assert f.steps == 1


def test_filter_rejects_jitter_and_runs_a_mean_first():
    rng = np.random.default_rng(1)
    z = 0.05 + 0.03 * rng.standard_normal(400)
    f = LogScaleFilter()
    lv = np.array([f.update(v)[0] for v in z])
    assert lv[4] == pytest.approx(z[:5].mean(), abs=2e-3)  # ~ running mean at first
    assert np.std(np.diff(lv[50:])) < np.std(np.diff(z[50:])) / 10
    assert abs(lv[50:].mean() - 0.05) < 0.01
    assert 0.05 < f.steady_gain < 0.08
    trend = LogScaleFilter(trend=0.0005)
    ramp = [trend.update(0.01 * k)[0] for k in range(100)]
    assert ramp[-1] == pytest.approx(0.99, abs=0.01)  # the trend model follows a ramp without lag
    with pytest.raises(ValueError, match="jitter"):
        LogScaleFilter(jitter=0)
    with pytest.raises(ValueError, match="step_frames"):
        LogScaleFilter(step_frames=0)
    with pytest.raises(ValueError, match="finite"):
        f.update(float("nan"))


# -- stabiliser ------------------------------------------------------------------------------------


def _scene(h=31, w=41, phase=0.0):
    v, u = np.mgrid[0:h, 0:w]
    return (4.0 * np.exp(0.12 * np.sin(2 * np.pi * u / w + phase) + 0.12 * np.cos(2 * np.pi * v / h + phase))
            ).astype(np.float32)


def test_stabiliser_restarts_and_says_why():
    st = ScaleStabilizer("static", min_inliers=0.5, edge_tol=0.5)
    d = _scene()
    out, info = st.update(d, CAM)
    assert info.state == "started" and not info.restarted and info.scale == 1.0
    np.testing.assert_array_equal(out, d)
    _, info = st.update(d * np.float32(1.05), CAM)
    assert info.state == "tracking" and info.relative_scale == pytest.approx(1.05, rel=1e-4)
    small = PinholeCamera(20, 15, 10.0, 10.0, 10.0, 7.5)
    _, info = st.update(_scene(15, 20), small)
    assert info.state == "restarted: resolution changed 41x31 -> 20x15" and info.restarted
    _, info = st.update(_scene(15, 20), PinholeCamera(20, 15, 11.0, 11.0, 10.0, 7.5))
    assert info.state == "restarted: intrinsics changed"
    _, info = st.update(_scene(15, 20, phase=np.pi), PinholeCamera(20, 15, 11.0, 11.0, 10.0, 7.5))
    assert info.state.startswith("restarted: scene changed (fit inliers")
    holes = _scene(15, 20, phase=np.pi)
    holes[:, 3:] = np.nan
    _, info = st.update(holes, PinholeCamera(20, 15, 11.0, 11.0, 10.0, 7.5))
    assert info.state.startswith("restarted: too little overlap")
    noisy = np.random.default_rng(0).uniform(2.0, 6.0, (15, 20)).astype(np.float32)
    st2 = ScaleStabilizer("static")
    st2.update(noisy, PinholeCamera(20, 15, 11.0, 11.0, 10.0, 7.5))
    _, info = st2.update(noisy, PinholeCamera(20, 15, 11.0, 11.0, 10.0, 7.5))
    assert info.state == "restarted: too few comparable pixels (0)"  # all depth edges
    assert st.restarts == 4
    odo = ScaleStabilizer("odometry")
    odo.update(d, CAM, None)
    _, info = odo.update(d, CAM, None)
    assert info.state == "restarted: no camera motion for this frame"
    _, info = odo.update(d, CAM, np.eye(4))
    assert info.state == "tracking"


def test_stabiliser_input_errors():
    with pytest.raises(ValueError, match="mode"):
        ScaleStabilizer("sometimes")
    with pytest.raises(ValueError, match="min_overlap"):
        ScaleStabilizer(min_overlap=0)
    st = ScaleStabilizer()
    with pytest.raises(ValueError, match="camera is"):
        st.update(_scene(10, 10), CAM)
    with pytest.raises(ValueError, match="float"):
        st.update(np.ones((31, 41), np.uint16), CAM)
    with pytest.raises(ValueError, match="PinholeCamera"):
        st.update(_scene(), (41, 31))
    with pytest.raises(ValueError, match="motion"):
        st.update(_scene(), CAM, np.eye(3))


@pytest.mark.parametrize("mode, path", [("odometry", "room"), ("static", "pan")])
def test_stabiliser_removes_flicker_on_a_rendered_sequence(mode, path):
    """Odometry mode on a walk through the room, static mode on a slow pan (what it is for)."""
    seq = make_sequence(path, 30, PinholeCamera.from_hfov(80, 60, 70.0))
    net = FlickeringNetwork(len(seq), seed=0, bias=0.03, jump_prob=0.1)
    assert net.jumps[0] == 0 and (net.jumps != 0).sum() >= 6  # three jumps of 2-3 frames, none at the start
    motions = odometry_stream(seq.poses)
    st = ScaleStabilizer(mode)
    raw_ls, out_ls, raw_ar, out_ar = [], [], [], []
    for k in range(len(seq)):
        raw = net.predict(k, seq.depth[k])
        out, info = st.update(raw, seq.camera, motions[k])
        assert not info.restarted
        m = seq.valid_gt(k)
        g = seq.depth[k][m]
        raw_ls.append(np.median(np.log(raw[m] / g)))
        out_ls.append(np.median(np.log(out[m] / g)))
        raw_ar.append(np.mean(np.abs(raw[m] - g) / g))
        out_ar.append(np.mean(np.abs(out[m] - g) / g))
    assert np.std(np.diff(out_ls)) < np.std(np.diff(raw_ls)) / 5
    assert np.mean(out_ar) <= np.mean(raw_ar)
    assert abs(np.mean(out_ls) - 0.03) < 0.03  # anchored near the network's average scale


# -- sequences -------------------------------------------------------------------------------------


def test_flickering_network_is_seeded_and_has_the_step():
    a = FlickeringNetwork(50, seed=4, step_at=20, step=0.2, jump_prob=0.0, jitter=0.0, pixel_noise=0.0)
    assert np.allclose(a.log_scale[:20], 0.0) and np.allclose(a.log_scale[20:], 0.2)
    b1 = FlickeringNetwork(50, seed=7)
    b2 = FlickeringNetwork(50, seed=7)
    np.testing.assert_array_equal(b1.log_scale, b2.log_scale)
    gt = np.full((4, 5), 3.0, np.float32)
    gt[0, 0] = np.inf
    np.testing.assert_array_equal(b1.predict(3, gt), b2.predict(3, gt))
    assert np.isinf(b1.predict(3, gt)[0, 0])
    assert (np.abs(b1.jumps) > 0).any()
    with pytest.raises(ValueError, match="step_at"):
        FlickeringNetwork(10, step_at=10)
    noisy = odometry_stream([np.eye(4)] * 3, trans_noise=0.01, rot_noise_deg=0.1, seed=1)
    assert noisy[0] is None and not np.allclose(noisy[1], np.eye(4))
    as_motion(noisy[2])  # still a rigid motion


def test_flickering_network_as_a_depth_model():
    seq = make_sequence("pan", 3, PinholeCamera.from_hfov(32, 24, 70.0), rgb=True)
    net = FlickeringNetwork(3, seed=2)
    model = net.as_model(seq)
    pred = model.infer(seq.rgb[1])
    np.testing.assert_array_equal(pred.depth, net.predict(1, seq.depth[1]))
    assert not model.capabilities.routes_domains
    with pytest.raises(ValueError, match="not a frame"):
        model.infer(np.zeros_like(seq.rgb[0]))
    with pytest.raises(ValueError, match="without images"):
        net.as_model(make_sequence("pan", 2, PinholeCamera.from_hfov(32, 24, 70.0)))
