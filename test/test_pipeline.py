"""The ROS-free frame pipeline: validity, per-camera router hysteresis and scale stabilisation, poses."""
import numpy as np
import pytest

from depth_ros.core.camera import PinholeCamera
from depth_ros.models.base import Capabilities, DepthModel, DepthPrediction
from depth_ros.pipeline.frame import FrameProcessor, PipelineConfig, valid_depth
from depth_ros.pipeline.intrinsics import INFO_OK, InfoStatus, IntrinsicsResolver
from depth_ros.pipeline.motion import PoseBuffer, base_from_camera, pose_matrix


class RiggedRouterModel(DepthModel):
    """Routes like ZoeDepth-NK: replays ``logits`` one per frame; depth 2 m indoor, 3 m outdoor."""

    name = "rigged_router"
    capabilities = Capabilities(domains=("indoor", "outdoor"), routes_domains=True)

    def __init__(self, logits):
        self.logits, self.k, self.forced = list(logits), 0, []
        self.domain = "auto"

    def infer(self, rgb, f_px=None):
        lg = self.logits[self.k]
        self.k += 1
        self.forced.append(self.domain)
        head = self.domain if self.domain != "auto" else ("indoor" if lg[0] >= lg[1] else "outdoor")
        d = np.full(rgb.shape[:2], 2.0 if head == "indoor" else 3.0, np.float32)
        return DepthPrediction(depth=d, domain=head, domain_confidence=0.6, domain_logits=tuple(lg))


def _processor(model, **cfg):
    resolver = IntrinsicsResolver(fallback_hfov_deg=60.0)
    return FrameProcessor(model, PipelineConfig(**cfg), resolver)


def _ok(w, h, f=50.0):
    return InfoStatus(INFO_OK, camera=PinholeCamera.from_focal(w, h, f))


RGB = np.zeros((12, 16, 3), np.uint8)
FLIP = [(1.0, 0.0), (0.0, 1.0)] * 10           # the router flip-flops every frame
SUSTAINED = [(2.0, 0.0)] * 6 + [(0.0, 2.0)] * 10  # indoor, then clearly outdoor


def test_validity_rule():
    d = np.array([[-1, 0, np.nan, np.inf, 0.05, 0.1, 80.0, 80.5]], np.float32)
    out = valid_depth(d, 0.1, 80.0)
    assert np.isnan(out[0, :5]).all() and list(out[0, 5:7]) == [np.float32(0.1), 80.0] and np.isnan(out[0, 7])


def test_stable_domain_ignores_flip_flops_and_follows_a_sustained_change():
    model = RiggedRouterModel(FLIP)
    proc = _processor(model)
    heads = [proc.process(RGB, "cam", _ok(16, 12)).domain for _ in FLIP]
    assert set(heads) == {"indoor"} and proc.cameras["cam"].router.switches == 0
    model = RiggedRouterModel(SUSTAINED)
    proc = _processor(model)
    results = [proc.process(RGB, "cam", _ok(16, 12)) for _ in SUSTAINED]
    heads = [r.domain for r in results]
    assert heads[:7] == ["indoor"] * 7 and heads[-1] == "outdoor"
    switch = heads.index("outdoor")
    assert 6 + 5 <= switch <= 6 + 5 + 1  # 5 frames of preference, then one frame of lag
    assert results[-1].domain_switches == 1
    assert any(k.startswith("domain_switch") for r in results for k, _ in r.events)


def test_auto_domain_routes_every_image_and_cameras_are_separate():
    model = RiggedRouterModel(FLIP)
    proc = _processor(model, domain="auto")
    heads = [proc.process(RGB, "cam", _ok(16, 12)).domain for _ in FLIP]
    assert heads == ["indoor", "outdoor"] * 10 and set(model.forced) == {"auto"}
    model = RiggedRouterModel(SUSTAINED[:2] + [(0.0, 2.0)] * 2)
    proc = _processor(model)
    for cam in ("a", "b", "a", "b"):
        proc.process(RGB, cam, _ok(16, 12))
    assert set(proc.cameras) == {"a", "b"}


def test_forced_head_and_models_without_heads():
    model = RiggedRouterModel(FLIP)
    proc = _processor(model, domain="outdoor")
    assert {proc.process(RGB, "cam", _ok(16, 12)).domain for _ in range(3)} == {"outdoor"}

    class Plain(DepthModel):
        def infer(self, rgb, f_px=None):
            return DepthPrediction(depth=np.full(rgb.shape[:2], 1.5, np.float32))

    res = _processor(Plain()).process(RGB, "cam", _ok(16, 12))
    assert res.domain is None and res.domain_switches == 0 and res.scale is None


def _flicker_run(name, modes):
    from depth_ros.demo.sequences import FlickeringNetwork, make_sequence

    seq = make_sequence(name, frames=16, camera=PinholeCamera.from_focal(96, 72, 70.0), rgb=True)
    net = FlickeringNetwork(len(seq), seed=3, jitter=0.04, jump_prob=0.0, pixel_noise=0.0)
    results = {}
    for mode in modes:
        proc = _processor(net.as_model(seq), scale_stabilization=mode, max_range=100.0)
        info = _ok(96, 72, 70.0)
        results[mode] = [proc.process(seq.rgb[k], "cam", info, pose=seq.poses[k]) for k in range(len(seq))]

    def jitter(res):
        logs = [np.nanmedian(np.log(r.raw_depth / seq.depth[k])[np.isfinite(seq.depth[k])])
                for k, r in enumerate(res)]
        return float(np.std(np.diff(logs)))

    return seq, net, results, {m: jitter(r) for m, r in results.items()}


def test_scale_stabilisation_removes_flicker_with_odometry(torch_one_thread):
    seq, net, results, jitter = _flicker_run("room", ("off", "odometry"))
    assert jitter["odometry"] < jitter["off"] / 4
    assert results["odometry"][-1].scale.state == "tracking" and results["off"][0].scale is None
    # off is the model's depth, untouched
    np.testing.assert_array_equal(results["off"][5].raw_depth, net.predict(5, seq.depth[5]))


def test_static_scale_stabilisation_on_a_slow_pan(torch_one_thread):
    _, _, _, jitter = _flicker_run("pan", ("off", "static"))
    assert jitter["static"] < jitter["off"] / 4


def test_scale_track_restarts_without_motion_and_says_so():
    class Ramp(DepthModel):
        def infer(self, rgb, f_px=None):
            return DepthPrediction(depth=np.linspace(1, 5, rgb.shape[0] * rgb.shape[1], dtype=np.float32)
                                   .reshape(rgb.shape[:2]))

    proc = _processor(Ramp(), scale_stabilization="odometry")
    first = proc.process(RGB, "cam", _ok(16, 12))
    second = proc.process(RGB, "cam", _ok(16, 12))  # no pose: no motion
    assert first.scale.state == "started" and second.scale.restarted
    assert any("no camera motion" in text for _, text in second.events)


def test_pose_buffer_and_camera_mount():
    buf = PoseBuffer(tolerance_ns=100)
    assert buf.at(5) is None
    buf.add(0, pose_matrix((0, 0, 0), (0, 0, 0, 1)))
    buf.add(100, pose_matrix((1, 0, 0), (0, 0, 0, 1)))
    assert buf.at(50)[:3, 3] == pytest.approx([0.5, 0, 0])
    assert buf.at(100)[0, 3] == 1.0 and buf.at(180)[0, 3] == 1.0 and buf.at(1000) is None
    mount = base_from_camera()
    # REP 103: the optical z axis (forward) is the body x axis, optical x (right) is body -y, optical y (down) -z
    assert mount[:3, 2] == pytest.approx([1, 0, 0]) and mount[:3, 0] == pytest.approx([0, -1, 0])
    assert mount[:3, 1] == pytest.approx([0, 0, -1])
    with pytest.raises(ValueError):
        pose_matrix((0, 0, 0), (0, 0, 0, 0))


class BlurredStep(DepthModel):
    """A near plane (1 m) in the left half, a far one (4 m) on the right, blurred across the edge the way
    networks blur discontinuities: the pixels between are flying pixels."""

    def infer(self, rgb, f_px=None):
        h, w = rgb.shape[:2]
        x = np.arange(w, dtype=np.float32)
        t = np.clip((x - (w / 2 - 2)) / 4.0, 0.0, 1.0)  # 4-pixel ramp
        return DepthPrediction(depth=np.broadcast_to(1.0 + 3.0 * t, (h, w)).astype(np.float32).copy())


def test_edge_confidence_marks_flying_pixels_and_threshold_zero_changes_nothing():
    rgb = np.zeros((24, 32, 3), np.uint8)
    info = _ok(32, 24, 30.0)
    off = _processor(BlurredStep(), edge_confidence=False).process(rgb, "cam", info)
    on = _processor(BlurredStep()).process(rgb, "cam", info)
    # min_confidence 0: depth and cloud are bit-identical with and without edge confidence
    np.testing.assert_array_equal(on.depth, off.depth)
    assert bytes(on.cloud().data) == bytes(off.cloud().data)
    assert off.confidence is None and on.confidence.shape == (24, 32)
    flying = (on.raw_depth > 1.05) & (on.raw_depth < 3.8)
    assert on.confidence[flying].max() < 0.5 and on.confidence[:, :10].min() > 0.9
    strict = _processor(BlurredStep(), min_confidence=0.5, cloud_mode="stride", cloud_stride=1).process(rgb, "cam", info)
    pts = strict.cloud().as_structured()
    zs = np.asarray(pts["z"]).reshape(-1)
    assert not ((zs > 1.05) & (zs < 3.8)).any() and zs.size > 0.7 * 24 * 32
    assert 0 < strict.low_confidence_fraction() < 0.3
    assert np.isfinite(strict.depth).sum() == 24 * 32  # depth/image keeps every estimate by default
    masked = _processor(BlurredStep(), min_confidence=0.5, confidence_masks_depth=True).process(rgb, "cam", info)
    assert not np.isfinite(masked.depth[flying]).any()
    img, plain = strict.colorized(), on.colorized()
    np.testing.assert_array_equal(img[flying], (plain[flying] * 0.35).astype(np.uint8))  # dimmed
    np.testing.assert_array_equal(img[:, :10], plain[:, :10])


def test_check_domain():
    from depth_ros.pipeline.frame import check_domain

    routed = RiggedRouterModel.capabilities
    assert check_domain(routed, "stable") == (None, False) and check_domain(routed, "outdoor") == (None, False)
    assert check_domain(Capabilities(), "indoor") == (None, True)
    problem, ignored = check_domain(Capabilities(domains=("outdoor",)), "indoor")
    assert "heads: outdoor" in problem and not ignored
