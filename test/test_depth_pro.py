"""Depth Pro: tiny random networks on CPU, key layouts on the meta device, parity with transformers."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from depth_ros.models import create_model
from depth_ros.models.depth_pro import (
    DEPTH_PRO_WEIGHTS,
    FOV_RANGE_DEG,
    VIT_PRESETS,
    DepthProConfig,
    DepthProNet,
    checkpoint_filter_fn,
    convert_hf_state_dict,
    fov_to_focal,
    recut_vit,
    upsampling_head,
)
from depth_ros.models.weights import WeightsError, load_strict

TINY = dict(weights="random", vit_preset="test_tiny", decoder_features=16, device="cpu")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("depth_pro", **TINY)


@pytest.fixture(scope="module")
def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(64, 96, 3), dtype=np.uint8)


def _rel(a, b):
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


# -- the head computed at the decoder's resolution ------------------------------------------------
@pytest.mark.parametrize("c_in,mid,out,last,h,w", [(8, 4, 6, 1, 5, 7), (8, 4, 6, 2, 6, 6), (24, 24, 32, 1, 16, 24)])
def test_upsampling_head_equals_the_layers(c_in, mid, out, last, h, w):
    """deconv 2x2 / 2 -> conv 3x3 -> ReLU -> conv 1x1 -> ReLU as the official head runs it, on every pixel
    (borders included, where the deconvolution's bias must not leak into the padding), for odd and even
    sizes and more than one output channel. A wrong phase or a bias in the padding would show."""
    torch.manual_seed(c_in + last + h)
    layers = torch.nn.Sequential(torch.nn.ConvTranspose2d(c_in, mid, 2, stride=2), torch.nn.Conv2d(mid, out, 3, padding=1),
                                 torch.nn.ReLU(), torch.nn.Conv2d(out, last, 1), torch.nn.ReLU())
    with torch.no_grad():
        layers[0].bias.normal_(0, 2.0)
        x = torch.randn(2, c_in, h, w)
        layers[3].bias -= layers[:4](x).median()    # about half the output above the last ReLU's zero
        want = layers(x)
        got = upsampling_head(x, layers[0].weight, layers[0].bias, layers[1].weight, layers[1].bias,
                              layers[3].weight, layers[3].bias)
        assert got.shape == want.shape == (2, last, 2 * h, 2 * w) and float((want > 0).float().mean()) > 0.3
        assert _rel(got, want) < 1e-5
        # the constant-one channel is what keeps the deconvolution's bias out of the padding
        no_bias = upsampling_head(x, layers[0].weight, torch.zeros_like(layers[0].bias), layers[1].weight,
                                  layers[1].bias, layers[3].weight, layers[3].bias)
        assert _rel(no_bias, want) > 1e-2


def test_net_head_is_the_official_sequence(tiny):
    net = tiny.net
    feats = torch.randn(1, net.config.decoder_features, 32, 32)
    with torch.no_grad():
        assert _rel(net._run_head(feats), net.head(feats)) < 1e-5


# -- the contract used by the node and the CLI ---------------------------------------------------
def test_tiny_infer_contract(tiny, rgb):
    assert tiny.estimates_focal is True
    assert tiny.net.img_size == 128
    pred = tiny.infer(rgb)
    assert pred.depth.shape == (64, 96) and pred.depth.dtype == np.float32
    assert np.isfinite(pred.depth).all() and (pred.depth > 0).all()
    assert pred.domain is None
    assert tiny.capabilities.confidence is True  # default confidence="flip" (test_flip_confidence_* below)
    assert pred.confidence.shape == (64, 96) and pred.confidence.dtype == np.float32
    assert pred.focal_source == "estimated"
    assert isinstance(pred.focal_px, float) and math.isfinite(pred.focal_px) and pred.focal_px > 0
    f = tiny.estimate_focal(rgb)
    assert isinstance(f, float) and f > 0


def test_net_forward_shapes(tiny):
    x = torch.rand(2, 3, 128, 128) * 2 - 1
    with torch.inference_mode():
        c, fov = tiny.net(x)
        c1, none = tiny.net(x[1:], compute_fov=False)
    assert c.shape == (2, 1, 512, 512) and fov.shape == (2, 1, 1, 1)
    assert torch.isfinite(c).all() and (c >= 0).all() and torch.isfinite(fov).all()
    assert none is None
    torch.testing.assert_close(c1, c[1:], rtol=1e-4, atol=1e-6)  # batch items are independent
    with pytest.raises(ValueError, match="128 x 128"):
        tiny.net(torch.zeros(1, 3, 96, 128))


def test_given_focal_scales_depth(tiny, rgb):
    with torch.inference_mode():
        c, _ = tiny.net(tiny.preprocess(rgb), compute_fov=False)
        c = F.interpolate(c.float(), size=(64, 96), mode="bilinear", align_corners=False)[0, 0]
    for f_px in (50.0, 75, np.float32(60.5), np.array(80.0), torch.tensor(90.0), torch.tensor([40.0])):
        pred = tiny.infer(rgb, f_px=f_px)
        f = float(np.asarray(f_px.item() if isinstance(f_px, torch.Tensor) else f_px))
        assert pred.focal_source == "given" and pred.focal_px == pytest.approx(f, rel=1e-7)
        assert float(c.min()) * 96 / f > 1e-4  # inside the clamp range: D = f / (W C) exactly
        np.testing.assert_allclose(pred.depth, (f / (96 * c)).numpy(), rtol=1e-5)


def test_focal_validation(tiny, rgb):
    for bad in (-1.0, 0, float("nan"), np.array([1.0, 2.0])):
        with pytest.raises(ValueError):
            tiny.infer(rgb, f_px=bad)
    with pytest.raises(ValueError):
        tiny.infer(rgb.astype(np.float32))


def test_estimate_focal_equals_full_forward(rgb):
    torch.manual_seed(1)
    m = create_model("depth_pro", **TINY)
    with torch.no_grad():  # make the FOV depend on the input visibly
        m.net.fov.head[-1].weight.mul_(50.0)
        m.net.fov.head[-1].bias.fill_(45.0)
    x = m.preprocess(rgb)
    with torch.inference_mode():
        fov_full = m.net(x)[1]
        fov_fast = m.net.forward_fov(x)
    assert abs(float(fov_full) - 45.0) > 1e-3  # not just the bias
    torch.testing.assert_close(fov_fast, fov_full, rtol=1e-5, atol=1e-5)
    f_est = m.estimate_focal(rgb)
    assert f_est == pytest.approx(fov_to_focal(fov_full, 96), rel=1e-5)
    assert f_est == pytest.approx(m.infer(rgb).focal_px, rel=1e-5)
    assert f_est == pytest.approx(0.5 * 96 / math.tan(math.radians(float(fov_full)) / 2), rel=1e-5)


def test_fov_clamp():
    lo, hi = FOV_RANGE_DEG
    assert fov_to_focal(-30.0, 100) == pytest.approx(fov_to_focal(lo, 100))
    assert fov_to_focal(500.0, 100) == pytest.approx(fov_to_focal(hi, 100))
    for v in (float("nan"), float("inf"), torch.tensor([[[[float("nan")]]]])):
        f = fov_to_focal(v, 100)
        assert math.isfinite(f) and f > 0
    assert fov_to_focal(90.0, 640) == pytest.approx(320.0)


def test_bfloat16_cpu(rgb):
    m = create_model("depth_pro", **{**TINY, "dtype": "bfloat16"})
    assert next(m.net.parameters()).dtype == torch.bfloat16
    pred = m.infer(rgb)
    assert pred.depth.dtype == np.float32 and np.isfinite(pred.depth).all() and (pred.depth > 0).all()


# -- presets and key layouts ---------------------------------------------------------------------
def _released_layout():
    """The released depth_pro.pt layout (names -> shapes), written out independently of the model."""
    d, mlp, L = 1024, 4096, 24
    sd = {}

    def vit(p):
        sd.update({p + "cls_token": (1, 1, d), p + "pos_embed": (1, 577, d),
                   p + "patch_embed.proj.weight": (d, 3, 16, 16), p + "patch_embed.proj.bias": (d,),
                   p + "norm.weight": (d,), p + "norm.bias": (d,)})
        for n in range(L):
            b = f"{p}blocks.{n}."
            sd.update({b + "norm1.weight": (d,), b + "norm1.bias": (d,), b + "attn.qkv.weight": (3 * d, d),
                       b + "attn.qkv.bias": (3 * d,), b + "attn.proj.weight": (d, d), b + "attn.proj.bias": (d,),
                       b + "ls1.gamma": (d,), b + "norm2.weight": (d,), b + "norm2.bias": (d,),
                       b + "mlp.fc1.weight": (mlp, d), b + "mlp.fc1.bias": (mlp,), b + "mlp.fc2.weight": (d, mlp),
                       b + "mlp.fc2.bias": (d,), b + "ls2.gamma": (d,)})

    vit("encoder.patch_encoder.")
    vit("encoder.image_encoder.")
    vit("fov.encoder.0.")
    e = "encoder."
    sd.update({e + "upsample_latent0.0.weight": (256, d, 1, 1), e + "upsample_latent0.1.weight": (256, 256, 2, 2),
               e + "upsample_latent0.2.weight": (256, 256, 2, 2), e + "upsample_latent0.3.weight": (256, 256, 2, 2),
               e + "upsample_latent1.0.weight": (256, d, 1, 1), e + "upsample_latent1.1.weight": (256, 256, 2, 2),
               e + "upsample_latent1.2.weight": (256, 256, 2, 2),
               e + "upsample0.0.weight": (512, d, 1, 1), e + "upsample0.1.weight": (512, 512, 2, 2),
               e + "upsample1.0.weight": (1024, d, 1, 1), e + "upsample1.1.weight": (1024, 1024, 2, 2),
               e + "upsample2.0.weight": (1024, d, 1, 1), e + "upsample2.1.weight": (1024, 1024, 2, 2),
               e + "upsample_lowres.weight": (d, 1024, 2, 2), e + "upsample_lowres.bias": (1024,),
               e + "fuse_lowres.weight": (1024, 2048, 1, 1), e + "fuse_lowres.bias": (1024,)})
    for i, c in zip((1, 2, 3, 4), (256, 512, 1024, 1024)):
        sd[f"decoder.convs.{i}.weight"] = (256, c, 3, 3)
    for i in range(5):
        f = f"decoder.fusions.{i}."
        for r in (1, 2):
            for j in (1, 3):
                sd[f"{f}resnet{r}.residual.{j}.weight"] = (256, 256, 3, 3)
                sd[f"{f}resnet{r}.residual.{j}.bias"] = (256,)
        if i:
            sd[f + "deconv.weight"] = (256, 256, 2, 2)
        sd[f + "out_conv.weight"] = (256, 256, 1, 1)
        sd[f + "out_conv.bias"] = (256,)
    sd.update({"head.0.weight": (128, 256, 3, 3), "head.0.bias": (128,), "head.1.weight": (128, 128, 2, 2),
               "head.1.bias": (128,), "head.2.weight": (32, 128, 3, 3), "head.2.bias": (32,),
               "head.4.weight": (1, 32, 1, 1), "head.4.bias": (1,),
               "fov.encoder.1.weight": (128, d), "fov.encoder.1.bias": (128,),
               "fov.downsample.0.weight": (128, 256, 3, 3), "fov.downsample.0.bias": (128,),
               "fov.head.0.weight": (64, 128, 3, 3), "fov.head.0.bias": (64,),
               "fov.head.2.weight": (32, 64, 3, 3), "fov.head.2.bias": (32,),
               "fov.head.4.weight": (1, 32, 6, 6), "fov.head.4.bias": (1,)})
    return sd


def _meta_net(**kw):
    with torch.device("meta"):
        return DepthProNet(DepthProConfig(**kw))


def test_released_layout_loads_strictly():
    layout = _released_layout()
    assert len(layout) == 1119
    assert sum(math.prod(s) for s in layout.values()) == 951_991_330
    net = _meta_net()
    ckpt = {k: torch.empty(s, dtype=torch.float16, device="meta") for k, s in layout.items()}
    load_strict(net, checkpoint_filter_fn(ckpt, net))
    assert net.img_size == 1536
    # use_fov=False drops the fov.* keys on purpose
    net_nofov = _meta_net(use_fov=False)
    filtered = checkpoint_filter_fn(ckpt, net_nofov)
    assert not any(k.startswith("fov.") for k in filtered) and len(filtered) == 1119 - 352
    load_strict(net_nofov, filtered)


@pytest.mark.parametrize("preset,dim,hooks,dims", [
    ("dinov2s16_384", 384, (2, 5), (48, 96, 192, 384)),
    ("dinov2b16_384", 768, (2, 5), (96, 192, 384, 768)),
])
def test_small_presets_build_on_meta(preset, dim, hooks, dims):
    net = _meta_net(vit_preset=preset, decoder_features=64)
    sd = net.state_dict()
    assert net.img_size == 1536
    assert net.encoder.hook_block_ids == hooks and VIT_PRESETS[preset].feature_dims == dims
    for p in ("encoder.patch_encoder.", "encoder.image_encoder.", "fov.encoder.0."):
        assert sd[p + "pos_embed"].shape == (1, 577, dim)
        assert sd[p + "patch_embed.proj.weight"].shape == (dim, 3, 16, 16)
        assert sd[p + "blocks.11.attn.qkv.weight"].shape == (3 * dim, dim)
        assert p + "blocks.12.norm1.weight" not in sd
    assert sd["encoder.upsample_latent0.0.weight"].shape == (dims[0], dim, 1, 1)
    assert sd["encoder.upsample_latent0.1.weight"].shape == (dims[0], 64, 2, 2)
    assert sd["encoder.fuse_lowres.weight"].shape == (dims[3], 2 * dims[3], 1, 1)
    assert sd["fov.head.4.weight"].shape == (1, 8, 6, 6)
    assert len(sd) == 3 * (6 + 12 * 14) + 17 + 4 + 54 + 8 + 10


def test_bad_config():
    with pytest.raises(ValueError, match="unknown vit_preset"):
        DepthProConfig(vit_preset="nope")
    with pytest.raises(ValueError, match="multiple of 8"):
        DepthProConfig(decoder_features=12)


# -- checkpoints ---------------------------------------------------------------------------------
def test_checkpoint_roundtrip_fp16(tmp_path, tiny, rgb):
    path = tmp_path / "tiny.pt"
    torch.save({k: v.half() for k, v in tiny.net.state_dict().items()}, path)
    m = create_model("depth_pro", weights=str(path), vit_preset="test_tiny", decoder_features=16, device="cpu")
    for k, v in m.net.state_dict().items():
        assert v.dtype == torch.float32
        torch.testing.assert_close(v, tiny.net.state_dict()[k].half().float(), rtol=0, atol=0)
    assert np.isfinite(m.infer(rgb).depth).all()


def test_use_fov_false(tmp_path, tiny, rgb):
    path = tmp_path / "tiny.pt"
    torch.save(tiny.net.state_dict(), path)  # has fov.* keys
    m = create_model("depth_pro", weights=str(path), vit_preset="test_tiny", decoder_features=16, device="cpu",
                     use_fov=False)
    assert m.net.fov is None and m.estimates_focal is False
    assert not any(k.startswith("fov.") for k in m.net.state_dict())
    with pytest.raises(ValueError, match="f_px"):
        m.infer(rgb)
    with pytest.raises(ValueError):
        m.estimate_focal(rgb)
    pred = m.infer(rgb, f_px=70.0)
    np.testing.assert_allclose(pred.depth, tiny.infer(rgb, f_px=70.0).depth, rtol=1e-6)


def test_wrong_key_readable_error(tmp_path, tiny):
    sd = dict(tiny.net.state_dict())
    sd["head.9.weight"] = sd.pop("head.4.weight")
    path = tmp_path / "bad.pt"
    torch.save(sd, path)
    with pytest.raises(WeightsError) as err:
        create_model("depth_pro", weights=str(path), vit_preset="test_tiny", decoder_features=16, device="cpu")
    msg = str(err.value)
    assert "missing keys [1]: head.4.weight" in msg and "unexpected keys [1]: head.9.weight" in msg
    # a released-size checkpoint into the tiny preset: shape mismatches are named
    sd = dict(tiny.net.state_dict())
    sd["head.0.weight"] = torch.zeros(128, 256, 3, 3)
    torch.save(sd, path)
    with pytest.raises(WeightsError, match=r"head\.0\.weight: checkpoint \(128, 256, 3, 3\)"):
        create_model("depth_pro", weights=str(path), vit_preset="test_tiny", decoder_features=16, device="cpu")


def test_missing_weights_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPTH_ROS_CACHE", str(tmp_path))
    with pytest.raises(WeightsError, match="depth_pro.pt") as err:
        create_model("depth_pro", weights=None, vit_preset="test_tiny", decoder_features=16, device="cpu",
                     allow_download=False)
    assert DEPTH_PRO_WEIGHTS.url in str(err.value)
    with pytest.raises(WeightsError, match="does not exist"):
        create_model("depth_pro", weights=str(tmp_path / "nope.pt"), vit_preset="test_tiny", device="cpu")


def test_recut_vit():
    import timm

    vit = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=64, patch_size=8,
                            embed_dim=32, depth=1, num_heads=2, num_classes=0)
    w = vit.patch_embed.proj.weight.detach().clone()
    recut_vit(vit, patch_size=4, img_size=32)
    assert vit.patch_embed.proj.weight.shape == (32, 3, 4, 4) and vit.pos_embed.shape == (1, 65, 32)
    # (old/new)^2 rescaling keeps each kernel's response to a constant image (its sum) about the same
    torch.testing.assert_close(vit.patch_embed.proj.weight.sum((1, 2, 3)), w.sum((1, 2, 3)), rtol=0.1, atol=0.05)
    assert vit.forward_features(torch.zeros(1, 3, 32, 32)).shape == (1, 65, 32)


# -- parity with transformers ----------------------------------------------------------------------
def _hf_tiny(use_fov=True, seed=0):
    from transformers import DepthProForDepthEstimation

    from depth_ros.models.depth_pro import hf_config

    torch.manual_seed(seed)
    hf = DepthProForDepthEstimation(hf_config(DepthProConfig("test_tiny", 16, use_fov))).eval()
    with torch.no_grad():  # C > 0 everywhere (not only ReLU zeros); a visible, input-dependent FOV
        hf.head.layers[4].bias.fill_(0.5)
        for p in hf.parameters():  # layer scales start at 1.0 in transformers, 1e-5 in timm
            p.add_(torch.randn_like(p) * 0.02)
    return hf


def test_parity_with_transformers():
    hf = _hf_tiny()
    net = DepthProNet(DepthProConfig("test_tiny", 16)).eval()
    load_strict(net, checkpoint_filter_fn(hf.state_dict(), net))
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        out = hf(pixel_values=x)
        c, fov = net(x)
        fov_fast = net.forward_fov(x)
    assert c.shape == (2, 1, 512, 512)
    assert float((out.predicted_depth > 0).float().mean()) > 0.2  # not a degenerate all-zero map
    assert _rel(c[:, 0], out.predicted_depth) <= 1e-4
    assert _rel(fov.flatten(), out.field_of_view) <= 1e-4
    assert _rel(fov_fast.flatten(), out.field_of_view) <= 1e-4


def test_hf_layout_conversion_old_names():
    hf_sd = _hf_tiny().state_dict()
    old = {}
    for k, v in hf_sd.items():  # the hub file's pre-5.x Dinov2 names
        for a, b in (("attention.q_proj", "attention.attention.query"), ("attention.k_proj", "attention.attention.key"),
                     ("attention.v_proj", "attention.attention.value"), ("attention.o_proj", "attention.output.dense")):
            k = k.replace(a, b)
        old[k] = v
    old["depth_pro.encoder.patch_encoder.model.embeddings.mask_token"] = torch.zeros(1, 32)
    new = convert_hf_state_dict(hf_sd)
    conv = convert_hf_state_dict(old)
    assert conv.keys() == new.keys()
    assert all(torch.equal(conv[k], new[k]) for k in new)
    net = DepthProNet(DepthProConfig("test_tiny", 16))
    load_strict(net, checkpoint_filter_fn(conv, net))


def test_hf_released_layout_maps_to_ours():
    from transformers import DepthProForDepthEstimation

    from depth_ros.models.depth_pro import hf_config

    cfg = DepthProConfig()
    with torch.device("meta"):
        hf = DepthProForDepthEstimation(hf_config(cfg))
    net = _meta_net()
    load_strict(net, checkpoint_filter_fn(hf.state_dict(), net))


@pytest.mark.slow
def test_compile_matches_eager(tiny, rgb):
    m = create_model("depth_pro", **TINY, compile=True)
    m.net.load_state_dict(tiny.net.state_dict())
    np.testing.assert_allclose(m.infer(rgb).depth, tiny.infer(rgb).depth, rtol=1e-4)
    assert m.estimate_focal(rgb) == pytest.approx(tiny.estimate_focal(rgb), rel=1e-5)


# -- confidence (issue 12) -----------------------------------------------------------------------
def _old_infer_depth(m, rgb, f_px=None):
    """``DepthPro.infer`` before confidence existed, step by step: the reference for bit-identity."""
    h, w = rgb.shape[:2]
    x = m.preprocess(rgb)
    with torch.inference_mode():
        canonical, fov_deg = m.net(x, compute_fov=f_px is None)
        focal = fov_to_focal(fov_deg, w) if f_px is None else float(f_px)
        inverse = canonical.float() * (w / focal)
        inverse = F.interpolate(inverse, size=(h, w), mode="bilinear", align_corners=False)
        inverse = torch.nan_to_num_(inverse, nan=1e-4)
        depth = 1.0 / inverse.clamp_(1e-4, 1e4)
    return depth[0, 0].numpy(), focal


@pytest.fixture(scope="module")
def tiny_pair(tiny):
    """The same network with confidence "none" and "flip"."""
    from depth_ros.models.depth_pro import DepthPro

    return (DepthPro(tiny.net, device="cpu", confidence="none"), DepthPro(tiny.net, device="cpu", confidence="flip"))


def test_confidence_none_is_bit_identical_to_before(tiny_pair, rgb, torch_one_thread):
    off, _ = tiny_pair
    assert off.capabilities.confidence is False and off.capabilities.estimates_focal is True
    for f_px in (None, 70.0):
        pred = off.infer(rgb, f_px=f_px)
        ref, focal = _old_infer_depth(off, rgb, f_px)
        assert pred.confidence is None
        np.testing.assert_array_equal(pred.depth, ref)
        assert pred.focal_px == focal


def test_flip_confidence_depth_and_formula(tiny_pair, rgb, torch_one_thread):
    from depth_ros.core.confidence import flip_confidence

    off, on = tiny_pair
    assert on.capabilities.confidence is True
    for f_px in (None, 70.0):
        pred, plain = on.infer(rgb, f_px=f_px), off.infer(rgb, f_px=f_px)
        # the published depth and focal length are the un-mirrored prediction's (batch of 2 vs 1: rounding only)
        np.testing.assert_allclose(pred.depth, plain.depth, rtol=1e-5)
        assert pred.focal_px == pytest.approx(plain.focal_px, rel=1e-6) and pred.focal_source == plain.focal_source
        c = pred.confidence
        assert c.shape == rgb.shape[:2] and c.dtype == np.float32
        assert np.isfinite(c).all() and (c >= 0).all() and (c <= 1).all()
        assert float(c.std()) > 1e-4 and float(c.min()) < float(c.max())  # not constant
        # = exp(-ln2 s / 0.1) of the depth and the mirror image's depth mirrored back (same focal length)
        mirrored = off.infer(np.ascontiguousarray(rgb[:, ::-1]), f_px=pred.focal_px).depth[:, ::-1]
        np.testing.assert_allclose(c, flip_confidence(plain.depth, mirrored), atol=2e-5)


def test_flip_confidence_of_a_mirror_symmetric_network_is_one(rgb, torch_one_thread):
    """A network that is exactly mirror-equivariant (here: every weight of the random net zeroed except the
    head bias, i.e. a constant output) agrees with itself: confidence 1."""
    torch.manual_seed(2)
    m = create_model("depth_pro", **TINY)
    with torch.no_grad():
        m.net.head[4].weight.zero_()
    pred = m.infer(rgb, f_px=50.0)
    np.testing.assert_array_equal(pred.confidence, 1.0)


def test_confidence_option_validation():
    with pytest.raises(ValueError, match="confidence"):
        create_model("depth_pro", **TINY, confidence="spread")
    m = create_model("depth_pro", **TINY, confidence="none")
    assert m.capabilities.confidence is False and m.confidence_mode == "none"

