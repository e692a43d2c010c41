"""The model contract, run over every family of the registry (a new family is tested without new test code):
``create_model`` of its tiny random config, then ``infer`` gives a ``DepthPrediction`` that keeps the
invariants the pipeline relies on, and does what ``capabilities`` declares."""
import subprocess
import sys

import numpy as np
import pytest

from depth_ros.models import Capabilities, DepthModel, DepthPrediction, create_model, register_model
from depth_ros.models.registry import FAMILIES, MODEL_NAMES

H, W = 40, 56


def _rgb(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


@pytest.fixture(scope="module", params=MODEL_NAMES)
def family_model(request, tmp_path_factory, torch_one_thread):
    family = FAMILIES[request.param]
    model = create_model(family.name, device="cpu", **family.tiny_kwargs(tmp_path_factory.mktemp(family.name)))
    return family, model


def test_every_family_keeps_the_prediction_invariants(family_model):
    family, model = family_model
    assert isinstance(model, DepthModel) and isinstance(model.capabilities, Capabilities)
    caps = model.capabilities
    pred = model.infer(_rgb())
    assert isinstance(pred, DepthPrediction)
    d = pred.depth
    assert isinstance(d, np.ndarray) and d.shape == (H, W) and d.dtype == np.float32
    finite = np.isfinite(d)
    assert finite.any() and (d[finite] > 0).all(), f"{family.name}: metric depth must be > 0 where finite"
    if caps.confidence:
        c = pred.confidence
        assert c is not None and c.shape == (H, W) and c.dtype == np.float32
        assert np.isfinite(c).all() and (c >= 0).all() and (c <= 1).all()
    else:
        assert pred.confidence is None
    if caps.estimates_focal:
        assert pred.focal_px is not None and pred.focal_px > 0 and pred.focal_source == "estimated"
        assert model.estimate_focal(_rgb()) > 0
        given = model.infer(_rgb(), f_px=40.0)
        assert given.focal_px == pytest.approx(40.0) and given.focal_source == "given"
    if caps.routes_domains:
        assert pred.domain in caps.domains and pred.domain_logits is not None and len(pred.domain_logits) == 2
        assert 0.0 <= pred.domain_confidence <= 1.0
    for domain in caps.domains:  # forcing a head is honoured
        model.set_domain(domain)
        assert model.infer(_rgb()).domain == domain
        model.set_domain("auto")
    if not caps.domains:
        with pytest.raises(ValueError):
            model.set_domain("outdoor")
    if caps.batch:
        batch = model.infer_batch([_rgb(1), _rgb(2)])
        assert len(batch) == 2 and all(p.depth.shape == (H, W) for p in batch)


def test_bad_input_is_a_clear_value_error(family_model):
    family, model = family_model
    for bad in (np.zeros((H, W), np.uint8), np.zeros((H, W, 3), np.float32), np.zeros((0, W, 3), np.uint8)):
        with pytest.raises(ValueError):
            model.infer(bad)


def test_a_family_must_be_listed_to_register():
    with pytest.raises(ValueError, match="FAMILIES"):
        register_model("not_listed")(lambda **kw: None)


def test_unknown_model_and_backend_are_named():
    with pytest.raises(ValueError, match="unknown model 'nope'.*zoedepth_nk"):
        create_model("nope")
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        create_model("zoedepth_nk", backend="tpu")


def test_user_classes_are_wrapped_and_declare_capabilities():
    class Plain:
        def __init__(self, **kw):
            self.kw = kw

        def infer(self, rgb, f_px=None):
            return DepthPrediction(depth=np.ones(rgb.shape[:2], np.float32))

    import types

    mod = types.ModuleType("depth_ros_contract_user")
    mod.Plain = Plain
    sys.modules[mod.__name__] = mod
    try:
        m = create_model("depth_ros_contract_user:Plain", weights="w", depth=3)
    finally:
        del sys.modules[mod.__name__]
    assert isinstance(m, DepthModel) and m.capabilities == Capabilities() and m.inner.kw["depth"] == 3
    assert m.infer(_rgb()).depth.shape == (H, W)
    with pytest.raises(ValueError):
        m.set_domain("indoor")


def test_registry_imports_without_torch():
    code = ("import sys; import depth_ros.models.registry as r; assert 'torch' not in sys.modules; "
            "print(','.join(r.MODEL_NAMES))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().split(",") == list(MODEL_NAMES)
