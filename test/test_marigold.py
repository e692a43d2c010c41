"""Marigold family: tiny random diffusers pipeline saved to a folder, loaded through create_model.

No weights are downloaded; the pipeline is built by ``depth_ros.models.marigold.save_random_pipeline``.
"""
import json
import shutil
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from depth_ros.models import create_model  # noqa: E402
from depth_ros.models.base import Capabilities, DepthPrediction  # noqa: E402
from depth_ros.models.marigold import AlignmentError, Marigold, check_pipeline_folder, save_random_pipeline  # noqa: E402
from depth_ros.models.weights import WeightsError  # noqa: E402

S, T = 6.0, 0.5
NO_REF = dict(reference_model="none")


@pytest.fixture(scope="module")
def folder(tmp_path_factory, torch_one_thread):
    return save_random_pipeline(tmp_path_factory.mktemp("marigold") / "pipe", "tiny", seed=0)


@pytest.fixture(scope="module")
def rgb():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:56]
    img = np.stack([xx * 4, yy * 6, (xx + yy) * 2], -1) + rng.integers(0, 40, (40, 56, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def model(folder):
    return create_model("marigold", weights=str(folder), device="cpu", steps=2, processing_resolution=32, seed=7,
                        **NO_REF)


def _direct(folder, rgb, **kw):
    from diffusers import MarigoldDepthPipeline

    pipe = MarigoldDepthPipeline.from_pretrained(folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe(rgb, output_type="np", **kw)


# -- the affine prediction is diffusers' ------------------------------------------------------
def test_affine_equals_direct_pipeline_call(folder, model, rgb):
    pred, unc = model.predict_affine(rgb)
    ref = _direct(folder, rgb, num_inference_steps=2, processing_resolution=32,
                  generator=torch.Generator().manual_seed(7))
    assert pred.shape == rgb.shape[:2] and pred.dtype == np.float32 and unc is None
    np.testing.assert_array_equal(pred, ref.prediction[0, :, :, 0])
    assert 0.0 <= pred.min() < pred.max() <= 1.0


def test_ensemble_and_uncertainty_equal_direct_call(folder, rgb):
    m = create_model("marigold", weights=str(folder), device="cpu", steps=1, ensemble_size=3,
                     ensemble_reduction="mean", processing_resolution=32, seed=3, **NO_REF)
    pred, unc = m.predict_affine(rgb)
    ref = _direct(folder, rgb, num_inference_steps=1, ensemble_size=3, processing_resolution=32,
                  ensembling_kwargs={"reduction": "mean"}, output_uncertainty=True,
                  generator=torch.Generator().manual_seed(3))
    np.testing.assert_array_equal(pred, ref.prediction[0, :, :, 0])
    np.testing.assert_array_equal(unc, ref.uncertainty[0, :, :, 0])


def test_checkpoint_defaults_and_seed(folder, model, rgb):
    m = create_model("marigold", weights=str(folder), device="cpu", seed=7, **NO_REF)
    assert m.steps == 1 and m.processing_resolution == 32          # from model_index.json
    a1, _ = model.predict_affine(rgb)
    a2, _ = model.predict_affine(rgb)
    np.testing.assert_array_equal(a1, a2)                            # deterministic for a seed
    other = create_model("marigold", weights=str(folder), device="cpu", steps=2, processing_resolution=32,
                         seed=8, **NO_REF)
    assert not np.array_equal(other.predict_affine(rgb)[0], a1)


# -- metric alignment -------------------------------------------------------------------------
def test_alignment_recovers_the_reference_scale(model, rgb):
    affine, _ = model.predict_affine(rgb)
    rng = np.random.default_rng(1)
    ref = (S * affine + T).astype(np.float32)
    ref[rng.random(ref.shape) < 0.5] = np.nan                        # sparse reference
    noisy = ref.copy()
    noisy[:, :28] *= 1 + 0.2 * rng.standard_normal((40, 28)).astype(np.float32)  # left half disagrees
    out = model.infer(rgb, reference=noisy)
    assert isinstance(out, DepthPrediction)
    fit = out.extras["alignment"]
    assert fit.ok and out.extras["fallback"] is False and out.extras["reference_source"] == "given"
    assert out.extras["scale"] == pytest.approx(S, rel=0.01) and out.extras["shift"] == pytest.approx(T, abs=0.05)
    np.testing.assert_allclose(out.depth, S * affine + T, rtol=0.01, atol=0.02)
    assert out.depth.dtype == np.float32 and out.depth.shape == rgb.shape[:2]
    c = out.confidence
    assert c.dtype == np.float32 and c.shape == rgb.shape[:2] and 0 <= c.min() and c.max() <= 1
    assert c[:, :20].mean() < c[:, 36:].mean() - 0.05                # less agreement -> less confidence
    assert c[:, 36:].mean() > 0.95
    exact = model.infer(rgb, reference=ref)
    assert exact.extras["scale"] == pytest.approx(S, rel=1e-4)


def test_disparity_space(folder, rgb):
    with pytest.warns(UserWarning, match="affine depth"):
        m = create_model("marigold", weights=str(folder), device="cpu", fit_space="disparity", **NO_REF)
    affine, _ = m.predict_affine(rgb)
    ref = 1.0 / (0.3 * affine + 0.1)
    out = m.infer(rgb, reference=ref)
    assert out.extras["space"] == "disparity"
    assert out.extras["scale"] == pytest.approx(0.3, rel=1e-3) and out.extras["shift"] == pytest.approx(0.1, rel=1e-3)


class AffineReference:
    """A user reference model whose metric depth is S * (Marigold's affine prediction) + T; estimates focal."""

    capabilities = Capabilities(estimates_focal=True, confidence=False)
    name = "affine_reference"
    marigold = None

    def __init__(self, weights=None, device="cpu", dtype="float32", **config):
        self.config = config

    def infer(self, rgb, f_px=None):
        affine, _ = AffineReference.marigold.predict_affine(rgb)
        return DepthPrediction(depth=S * affine + T, focal_px=500.0 if f_px is None else float(f_px),
                               focal_source="estimated" if f_px is None else "given")

    def estimate_focal(self, rgb):
        return 500.0


def test_reference_model_runs_on_the_frame(folder, model, rgb):
    AffineReference.marigold = model
    m = create_model("marigold", weights=str(folder), device="cpu", steps=2, processing_resolution=32, seed=7,
                     reference_model="test_marigold:AffineReference", reference_config={"a": 1},
                     **{"reference_config.b": 2})
    assert m.reference_model.inner.config == {"a": 1, "b": 2}     # flattened node parameters are folded in
    assert m.capabilities == Capabilities(estimates_focal=True, confidence=True, metric_reference=True)
    out = m.infer(rgb)
    assert out.extras["reference_source"] == "affine_reference" and out.extras["scale"] == pytest.approx(S, rel=1e-4)
    assert out.focal_px == 500.0 and out.focal_source == "estimated" and m.estimate_focal(rgb) == 500.0
    out = m.infer(rgb, f_px=321.0)
    assert out.focal_px == 321.0 and out.focal_source == "given"
    affine, _ = model.predict_affine(rgb)
    out = m.infer(rgb, reference=2.0 * affine + 1.0)                # given reference wins; focal still estimated
    assert out.extras["reference_source"] == "given" and out.extras["scale"] == pytest.approx(2.0, rel=1e-4)
    assert out.focal_px == 500.0 and out.focal_source == "estimated"


def test_ensemble_confidence_from_uncertainty(folder, rgb):
    m = create_model("marigold", weights=str(folder), device="cpu", ensemble_size=3, seed=1, **NO_REF)
    affine, unc = m.predict_affine(rgb)
    out = m.infer(rgb, reference=S * affine + T)
    expect = np.clip(1 - out.extras["scale"] * 1.4826 * unc / out.depth, 0, 1)   # median -> MAD * 1.4826
    np.testing.assert_allclose(out.confidence, expect, atol=1e-5)
    assert out.confidence.std() > 0


def test_fit_failure_policies(folder, model, rgb):
    affine, _ = model.predict_affine(rgb)
    backwards = (20.0 - S * affine).astype(np.float32)             # scale < 0
    with pytest.raises(AlignmentError, match="scale") as err:
        model.infer(rgb, reference=backwards)
    assert err.value.result.cause == "nonpositive_scale"
    sparse = np.full(affine.shape, np.nan, np.float32)
    sparse[0, :5] = 3.0
    with pytest.raises(AlignmentError) as err:
        model.infer(rgb, reference=sparse)
    assert err.value.result.cause == "too_few_points"
    m = create_model("marigold", weights=str(folder), device="cpu", on_fit_failure="reference", **NO_REF)
    out = m.infer(rgb, reference=sparse)
    assert out.extras["fallback"] is True and np.isnan(out.extras["scale"])
    np.testing.assert_array_equal(out.depth[0, :5], 3.0)
    assert np.isnan(out.depth[1:]).all() and out.confidence[0, :5].min() == 1 and out.confidence[1:].max() == 0


def test_smoothing(folder, model, rgb):
    affine, _ = model.predict_affine(rgb)
    m = create_model("marigold", weights=str(folder), device="cpu", steps=2, processing_resolution=32, seed=7,
                     smoothing="ema", smoothing_alpha=0.5, **NO_REF)
    assert m.infer(rgb, reference=2.0 * affine + 1.0).extras["scale"] == pytest.approx(2.0, rel=1e-4)
    out = m.infer(rgb, reference=8.0 * affine + 3.0)
    assert out.extras["scale"] == pytest.approx(4.0, rel=1e-3) and out.extras["shift"] == pytest.approx(2.0, abs=1e-3)
    assert out.extras["alignment"].scale == pytest.approx(8.0, rel=1e-4)   # the raw fit is kept
    m.reset_smoothing()
    assert m.infer(rgb, reference=8.0 * affine + 3.0).extras["scale"] == pytest.approx(8.0, rel=1e-4)


def test_tiny_vae(folder, tmp_path, rgb):
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    AutoencoderTiny(encoder_block_out_channels=(16, 16), decoder_block_out_channels=(16, 16),
                    num_encoder_blocks=(1, 1), num_decoder_blocks=(1, 1)).save_pretrained(tmp_path / "taesd")
    m = create_model("marigold", weights=str(folder), device="cpu", tiny_vae=str(tmp_path / "taesd"), **NO_REF)
    assert type(m.pipe.vae).__name__ == "AutoencoderTiny"
    pred, _ = m.predict_affine(rgb)
    assert pred.shape == rgb.shape[:2] and np.isfinite(pred).all()
    with pytest.raises(WeightsError, match="tiny_vae folder .* does not exist"):
        create_model("marigold", weights=str(folder), device="cpu", tiny_vae=str(tmp_path / "nope"), **NO_REF)


# -- errors -------------------------------------------------------------------------------------
def _copy(folder, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(folder, dst)
    return dst


def test_default_folder_lookup(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("DEPTH_ROS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DEPTH_ROS_WEIGHTS_DIR", str(tmp_path / "mine"))
    with pytest.raises(WeightsError, match="needs weights=FOLDER.*marigold-depth-v1-1"):
        check_pipeline_folder("")
    shutil.copytree(folder, tmp_path / "cache" / "marigold-depth-v1-1")
    assert check_pipeline_folder(None) == tmp_path / "cache" / "marigold-depth-v1-1"
    shutil.copytree(folder, tmp_path / "mine" / "marigold-depth-v1-1")
    assert check_pipeline_folder("") == tmp_path / "mine" / "marigold-depth-v1-1"


@pytest.mark.parametrize("weights,match", [
    (None, "needs weights=FOLDER"),
    ("random", "no weights='random'"),
    ("/nonexistent/marigold", "does not exist"),
])
def test_weights_argument_errors(weights, match, tmp_path, monkeypatch):
    monkeypatch.setenv("DEPTH_ROS_CACHE", str(tmp_path))
    monkeypatch.delenv("DEPTH_ROS_WEIGHTS_DIR", raising=False)
    with pytest.raises(WeightsError, match=match):
        create_model("marigold", weights=weights, device="cpu")


@pytest.mark.parametrize("remove,match", [
    ("model_index.json", "model_index.json is missing"),
    ("unet/diffusion_pytorch_model.safetensors", r"missing unet/diffusion_pytorch_model.safetensors"),
    ("vae", r"missing subfolder vae/"),
    ("text_encoder/config.json", r"missing text_encoder/config.json"),
    ("text_encoder/model.safetensors", r"missing text_encoder/model.safetensors"),
    ("scheduler/scheduler_config.json", r"missing scheduler/scheduler_config.json"),
    ("tokenizer/tokenizer.json", r"missing tokenizer/vocab.json"),
])
def test_incomplete_folder_names_what_is_missing(folder, tmp_path, remove, match):
    bad = _copy(folder, tmp_path)
    target = bad / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(WeightsError, match=match):
        create_model("marigold", weights=str(bad), device="cpu", **NO_REF)


def test_other_folder_errors(folder, tmp_path):
    with pytest.raises(WeightsError, match="is a file"):
        check_pipeline_folder(folder / "model_index.json")
    with pytest.raises(WeightsError, match=r"missing unet/diffusion_pytorch_model.fp16.safetensors"):
        check_pipeline_folder(folder, variant="fp16")
    bad = _copy(folder, tmp_path)
    info = json.loads((bad / "model_index.json").read_text())
    del info["tokenizer"]
    (bad / "model_index.json").write_text(json.dumps(info))
    with pytest.raises(WeightsError, match="does not list the component.* tokenizer"):
        check_pipeline_folder(bad)


def test_not_a_marigold_unet(folder, tmp_path):
    from diffusers import UNet2DConditionModel

    bad = _copy(folder, tmp_path)
    shutil.rmtree(bad / "unet")
    UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
                         down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                         up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                         attention_head_dim=8, norm_num_groups=16).save_pretrained(bad / "unet")
    with pytest.raises(WeightsError, match="takes 4 input channels, Marigold's takes 8"):
        create_model("marigold", weights=str(bad), device="cpu", **NO_REF)


@pytest.mark.parametrize("config,match", [
    (dict(colour="red"), "unknown Marigold option"),
    (dict(processing_resolution=31), "multiple of 2"),
    (dict(ensemble_size=0), "ensemble_size must be an integer >= 1"),
    (dict(on_fit_failure="guess"), "on_fit_failure must be one of"),
    (dict(fit_space="log"), "fit_space must be one of"),
    (dict(fit_min_depth=5.0, fit_max_depth=1.0), "fit_max_depth"),
    (dict(reference_model="marigold"), "cannot be marigold"),
    (dict(reference_config="x"), "reference_config must be a dict"),
])
def test_bad_options(folder, config, match):
    with pytest.raises(ValueError, match=match):
        create_model("marigold", weights=str(folder), device="cpu", **dict(NO_REF, **config))


def test_bad_inputs(model, rgb):
    with pytest.raises(ValueError, match="no metric reference"):
        model.infer(rgb)
    with pytest.raises(ValueError, match="frame's size"):
        model.infer(rgb, reference=np.ones((10, 10), np.float32))
    with pytest.raises(ValueError, match="float metres"):
        model.infer(rgb, reference=np.ones(rgb.shape[:2], np.uint16))
    with pytest.raises(ValueError, match="uint8"):
        model.infer(rgb.astype(np.float32), reference=np.ones(rgb.shape[:2], np.float32))


def test_parameter_file_model_config_is_accepted():
    """config/marigold.yaml's model_config.* as the node passes them (flattened, dotted) are valid options."""
    from pathlib import Path

    import yaml

    from depth_ros.models.marigold import _options

    doc = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "marigold.yaml").read_text())
    values = doc["/**"]["ros__parameters"]
    assert values["model"] == "marigold"

    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v

    opts = _options(dict(flat(values["model_config"])))
    assert opts["reference_config"] == {"domain": "auto"} and opts["reference_model"] == "zoedepth_nk"


def test_float16_warns(folder):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = Marigold(weights=str(folder), device="cpu", dtype="float16", **NO_REF)
    assert any("bfloat16 is suggested" in str(w.message) for w in caught)
    assert m.pipe.unet.dtype == torch.float16


def test_registry_tiny_kwargs_contract(tmp_path, rgb):
    from depth_ros.models.registry import FAMILIES

    m = create_model("marigold", device="cpu", **FAMILIES["marigold"].tiny_kwargs(tmp_path))
    assert m.capabilities.metric_reference and m.capabilities.confidence and not m.capabilities.estimates_focal
    out = m.infer(rgb)
    valid = np.isfinite(out.depth)
    assert out.depth.shape == rgb.shape[:2] and out.depth.dtype == np.float32 and valid.any()
    assert (out.depth[valid] > 0).all()
    assert out.confidence.shape == rgb.shape[:2] and 0 <= out.confidence.min() and out.confidence.max() <= 1
    m.warmup(24, 32)
