"""Router hysteresis (depth_ros.pipeline.router) on rigged routers."""
import math

import numpy as np
import pytest

from depth_ros.demo.sequences import SyntheticRouter
from depth_ros.pipeline.router import RouterHysteresis


def _logits(p_outdoor):
    """Logits (indoor, outdoor) with softmax probability ``p_outdoor`` of outdoor."""
    d = math.log(p_outdoor / (1.0 - p_outdoor))
    return (-d / 2, d / 2)


def test_flip_flopping_router_does_not_switch_the_head():
    h = RouterHysteresis(margin=0.5, frames=5, initial="indoor")
    # Every other frame strongly outdoor, and runs of 4 outdoor frames: never 5 in a row.
    pattern = [0.95, 0.1] * 20 + ([0.95] * 4 + [0.2]) * 10
    for p in pattern:
        assert h.update(_logits(p)) == "indoor"
        assert h.last_switch is None
    assert h.switches == 0
    # Sustained preference, but below the margin (p_outdoor 0.7: 0.7 - 0.3 = 0.4 < 0.5): no switch either.
    for _ in range(50):
        h.update(_logits(0.7))
    assert h.head == "indoor" and h.switches == 0


def test_sustained_change_switches_once_after_the_given_frames():
    h = RouterHysteresis(margin=0.5, frames=5, initial="indoor")
    heads = [h.update(_logits(0.9)) for _ in range(12)]
    assert heads[:4] == ["indoor"] * 4 and heads[4:] == ["outdoor"] * 8  # 5th frame decides the 6th
    assert h.switches == 1
    # Back to indoor: also after 5 frames, reported once.
    seen = []
    for _ in range(8):
        h.update(_logits(0.05))
        seen.append(h.last_switch)
    assert seen[4] == ("outdoor", "indoor") and sum(s is not None for s in seen) == 1
    assert h.switches == 2 and h.state()["head"] == "indoor"


def test_first_frame_takes_the_routers_choice():
    h = RouterHysteresis()
    assert h.head is None  # the caller lets the router choose ("auto") on the first frame
    assert h.update(_logits(0.8)) == "outdoor"
    assert h.switches == 0 and h.last_switch is None
    assert h.probability == pytest.approx(0.8)
    h.reset()
    assert h.head is None and h.switches == 0
    # Huge logits do not overflow.
    assert RouterHysteresis().update((1000.0, -1000.0)) == "indoor"


def test_hysteresis_in_the_pipeline_loop_with_a_rigged_model():
    """The loop the pipeline runs: force the sticky head, infer, feed that frame's logits."""
    from depth_ros.models.base import Capabilities, DepthModel, DepthPrediction

    class Rigged(DepthModel):
        name = "rigged_router"
        capabilities = Capabilities(domains=("indoor", "outdoor"), routes_domains=True)

        def __init__(self, script):
            super().__init__(None, "cpu", "float32")
            self.domain = "auto"
            self.script = iter(script)
            self.forced = []

        def infer(self, rgb, f_px=None):
            logits = next(self.script)
            self.forced.append(self.domain)
            head = self.domain if self.domain != "auto" else ("outdoor" if logits[1] > logits[0] else "indoor")
            return DepthPrediction(np.ones((2, 2), np.float32), domain=head, domain_logits=logits)

    ambiguous = SyntheticRouter(sigma=1.0, rho=0.6, seed=3).logits(np.zeros(300))
    clear = SyntheticRouter(sigma=1.0, rho=0.6, seed=4).logits(np.full(30, 3.0))
    script = [tuple(v) for v in np.concatenate([SyntheticRouter(seed=5).logits(np.full(20, -3.0)), ambiguous,
                                                SyntheticRouter(seed=6).logits(np.full(30, -3.0)), clear])]
    model = Rigged(script)
    h = RouterHysteresis()
    rgb = np.zeros((2, 2, 3), np.uint8)
    routed = []
    for _ in script:
        model.set_domain(h.head or "auto")
        pred = model.infer(rgb)
        routed.append(pred.domain_logits[1] > pred.domain_logits[0])
        h.update(pred.domain_logits)
    assert model.forced[0] == "auto" and model.forced[1] == "indoor"
    per_image_flips = int(np.sum(np.diff(np.array(routed[20:320], int)) != 0))
    assert per_image_flips > 50  # per-image routing would flip the head all the time
    assert h.switches <= 4  # the sticky head hardly moves on the ambiguous part...
    assert model.forced[-1] == "outdoor"  # ...and follows the clear change at the end
    assert model.forced[-30:].count("outdoor") >= 20


def test_bad_parameters_and_logits():
    with pytest.raises(ValueError, match="margin"):
        RouterHysteresis(margin=1.0)
    with pytest.raises(ValueError, match="frames"):
        RouterHysteresis(frames=0)
    with pytest.raises(ValueError, match="initial"):
        RouterHysteresis(initial="underwater")
    h = RouterHysteresis()
    with pytest.raises(ValueError, match="two numbers"):
        h.update((1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="finite"):
        h.update((float("nan"), 0.0))


def test_tiny_zoedepth_nk_router_logits_do_not_depend_on_the_forced_head(torch_one_thread):
    """The API's premise: the router runs before the heads, so forcing a head leaves its logits alone."""
    from depth_ros.models.registry import create_model

    model = create_model("zoedepth_nk", weights="random", backbone="test_tiny", device="cpu")
    assert model.capabilities.routes_domains
    rgb = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    out = {}
    for d in ("indoor", "outdoor", "auto"):
        model.set_domain(d)
        out[d] = model.infer(rgb)
    assert out["indoor"].domain == "indoor" and out["outdoor"].domain == "outdoor"
    np.testing.assert_allclose(out["indoor"].domain_logits, out["outdoor"].domain_logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["indoor"].domain_logits, out["auto"].domain_logits, rtol=1e-5, atol=1e-6)
