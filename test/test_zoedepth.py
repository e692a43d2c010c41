"""ZoeDepth: tiny random networks, checkpoint layout, routing, inference options (CPU, no real weights)."""
import os

import numpy as np
import pytest
import torch

from depth_ros.models import create_model
from depth_ros.models.dpt_beit import relative_position_index
from depth_ros.models.weights import WeightsError, load_strict
from depth_ros.models.zoedepth import WEIGHTS, ZoeDepthNet, bin_confidence, checkpoint_filter_fn, network_size

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _rgb(h=64, w=96, seed=0):
    rng = np.random.RandomState(seed)
    img = (rng.rand(h, w, 3) * 255).astype(np.uint8)
    img[: h // 2] = (img[: h // 2] * 0.3).astype(np.uint8)  # some structure
    return img


@pytest.fixture(scope="module")
def tiny_nk():
    torch.manual_seed(0)
    return create_model("zoedepth_nk", weights="random", backbone="test_tiny", device="cpu")


# ---------------------------------------------------------------------------------------------
# Official checkpoint layout, written out independently of the implementation (checked once against
# a model built from the archived official code): names, shapes and dtypes of ZoeD_M12_{NK,N,K}.pt.
# ---------------------------------------------------------------------------------------------
def official_layout(variant="nk"):
    dim, depth, heads, feats, width, window = 1024, 24, 16, (256, 512, 1024, 1024), 256, 24
    lay = {}

    def add(name, *shape, dtype=torch.float32):
        lay[name] = (shape, dtype)

    def conv(name, c_out, c_in, k):
        add(name + ".weight", c_out, c_in, k, k)
        add(name + ".bias", c_out)

    P = "core.core.pretrained.model."
    add(P + "cls_token", 1, 1, dim)
    conv(P + "patch_embed.proj", dim, 3, 16)
    for i in range(depth):
        b = f"{P}blocks.{i}."
        for n in ("gamma_1", "gamma_2", "norm1.weight", "norm1.bias", "attn.q_bias", "attn.v_bias",
                  "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc2.bias"):
            add(b + n, dim)
        add(b + "attn.relative_position_bias_table", (2 * window - 1) ** 2 + 3, heads)
        add(b + "attn.relative_position_index", window ** 2 + 1, window ** 2 + 1, dtype=torch.int64)
        add(b + "attn.qkv.weight", 3 * dim, dim)
        add(b + "attn.proj.weight", dim, dim)
        add(b + "mlp.fc1.weight", 4 * dim, dim)
        add(b + "mlp.fc1.bias", 4 * dim)
        add(b + "mlp.fc2.weight", dim, 4 * dim)
    add(P + "fc_norm.weight", dim)
    add(P + "fc_norm.bias", dim)
    add(P + "head.weight", 1000, dim)
    add(P + "head.bias", 1000)
    A = "core.core.pretrained.act_postprocess"
    for j, f in enumerate(feats, 1):
        add(f"{A}{j}.0.project.0.weight", dim, 2 * dim)
        add(f"{A}{j}.0.project.0.bias", dim)
        conv(f"{A}{j}.3", f, dim, 1)
    conv(A + "1.4", feats[0], feats[0], 4)
    conv(A + "2.4", feats[1], feats[1], 2)
    conv(A + "4.4", feats[3], feats[3], 3)
    S = "core.core.scratch."
    for j, f in enumerate(feats, 1):
        add(f"{S}layer{j}_rn.weight", width, f, 3, 3)
        conv(f"{S}refinenet{j}.out_conv", width, width, 1)
        for u in (1, 2):
            for c in (1, 2):
                conv(f"{S}refinenet{j}.resConfUnit{u}.conv{c}", width, width, 3)
    conv(S + "output_conv.0", width // 2, width, 3)
    conv(S + "output_conv.2", 32, width // 2, 3)
    conv(S + "output_conv.4", 1, 32, 1)
    conv("conv2", 256, 256, 1)

    def clb(prefix, c_in, hidden):
        add(prefix + "log_binomial_transform.k_idx", 1, 64, 1, 1, dtype=torch.int64)
        add(prefix + "log_binomial_transform.K_minus_1", 1, 1, 1, 1)
        conv(prefix + "mlp.0", hidden, c_in, 1)
        conv(prefix + "mlp.2", 4, hidden, 1)

    if variant == "nk":
        for i in range(4):
            t = f"patch_transformer.transformer_encoder.layers.{i}."
            add(t + "self_attn.in_proj_weight", 384, 128)
            add(t + "self_attn.in_proj_bias", 384)
            add(t + "self_attn.out_proj.weight", 128, 128)
            add(t + "self_attn.out_proj.bias", 128)
            add(t + "linear1.weight", 1024, 128)
            add(t + "linear1.bias", 1024)
            add(t + "linear2.weight", 128, 1024)
            add(t + "linear2.bias", 128)
            for n in ("norm1", "norm2"):
                add(t + n + ".weight", 128)
                add(t + n + ".bias", 128)
        conv("patch_transformer.embedding_convPxP", 128, 256, 1)
        add("mlp_classifier.0.weight", 128, 128)
        add("mlp_classifier.0.bias", 128)
        add("mlp_classifier.2.weight", 2, 128)
        add("mlp_classifier.2.bias", 2)
        for p in ["seed_projector"] + [f"projectors.{i}" for i in range(4)]:
            conv(p + "._net.0", 64, 256, 1)
            conv(p + "._net.2", 128, 64, 1)
        for h in ("nyu", "kitti"):
            conv(f"seed_bin_regressors.{h}._net.0", 64, 256, 1)
            conv(f"seed_bin_regressors.{h}._net.2", 64, 64, 1)
            for i in range(4):
                conv(f"attractors.{h}.{i}._net.0", 128, 128, 1)
                conv(f"attractors.{h}.{i}._net.2", 16, 128, 1)
            clb(f"conditional_log_binomial.{h}.", 160, 40)
    else:
        conv("seed_bin_regressor._net.0", 256, 256, 1)
        conv("seed_bin_regressor._net.2", 64, 256, 1)
        for p in ["seed_projector"] + [f"projectors.{i}" for i in range(4)]:
            conv(p + "._net.0", 128, 256, 1)
            conv(p + "._net.2", 128, 128, 1)
        for i, n in enumerate((16, 8, 4, 1)):
            conv(f"attractors.{i}._net.0", 128, 128, 1)
            conv(f"attractors.{i}._net.2", n * (2 if variant == "k" else 1), 128, 1)
        clb("conditional_log_binomial.", 161, 80)
    return lay


def _meta_state_dict(layout):
    return {k: torch.empty(shape, dtype=dtype, device="meta") for k, (shape, dtype) in layout.items()}


@pytest.mark.parametrize("variant,count", [("nk", 615), ("n", 535), ("k", 535)])
def test_official_layout_loads_strictly(variant, count):
    layout = official_layout(variant)
    assert len(layout) == count
    with torch.device("meta"):
        net = ZoeDepthNet(variant)
    sd = checkpoint_filter_fn(_meta_state_dict(layout), net)
    dropped = set(layout) - set(sd)
    assert all(k.endswith("attn.relative_position_index") or ".fc_norm." in k or ".head." in k for k in dropped)
    assert len(dropped) == 24 + 4
    load_strict(net, sd, assign=True)


def test_wrong_checkpoint_fails_readably():
    with torch.device("meta"):
        net = ZoeDepthNet("nk")
    sd = _meta_state_dict(official_layout("nk"))
    sd["seed_projector._net.0.wieght"] = sd.pop("seed_projector._net.0.weight")
    sd["attractors.nyu.0._net.2.weight"] = torch.empty(8, 128, 1, 1, device="meta")
    with pytest.raises(WeightsError) as err:
        load_strict(net, checkpoint_filter_fn(sd, net), source="ZoeD_M12_NK.pt")
    msg = str(err.value)
    assert "ZoeD_M12_NK.pt" in msg
    assert "missing keys [1]: seed_projector._net.0.weight" in msg
    assert "unexpected keys [1]: seed_projector._net.0.wieght" in msg
    assert "attractors.nyu.0._net.2.weight: checkpoint (8, 128, 1, 1) != model (16, 128, 1, 1)" in msg
    # A single-head checkpoint is not an NK checkpoint.
    with pytest.raises(WeightsError, match="missing keys"):
        load_strict(net, checkpoint_filter_fn(_meta_state_dict(official_layout("n")), net))


def _tiny_official_file(tmp_path, variant="nk"):
    """A tiny network saved the way the official files are: {'model': sd} + index buffers + classifier."""
    torch.manual_seed(1)
    src = ZoeDepthNet(variant, "test_tiny").eval()
    sd = dict(src.state_dict())
    for i in range(4):
        sd[f"core.core.pretrained.model.blocks.{i}.attn.relative_position_index"] = relative_position_index(4, 4)
    sd["core.core.pretrained.model.fc_norm.weight"] = torch.ones(32)
    sd["core.core.pretrained.model.fc_norm.bias"] = torch.zeros(32)
    sd["core.core.pretrained.model.head.weight"] = torch.zeros(1000, 32)
    sd["core.core.pretrained.model.head.bias"] = torch.zeros(1000)
    path = tmp_path / f"ZoeD_tiny_{variant}.pt"
    torch.save({"model": sd}, path)
    return src, path


def test_checkpoint_file_loads_and_matches(tmp_path):
    src, path = _tiny_official_file(tmp_path)
    model = create_model("zoedepth_nk", weights=str(path), backbone="test_tiny", device="cpu")
    x = torch.rand(2, 3, 64, 96)
    a, b = src(x), model.net(x)
    torch.testing.assert_close(a["metric_depth"], b["metric_depth"], rtol=0, atol=0)
    torch.testing.assert_close(a["domain_logits"], b["domain_logits"], rtol=0, atol=0)
    assert not any(t.is_meta for t in list(model.net.parameters()) + list(model.net.buffers()))


def test_weights_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPTH_ROS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DEPTH_ROS_OFFLINE", "1")
    with pytest.raises(WeightsError) as err:
        create_model("zoedepth_nk", device="cpu")
    assert WEIGHTS["nk"].url in str(err.value) and str(tmp_path / "cache" / "ZoeD_M12_NK.pt") in str(err.value)
    with pytest.raises(WeightsError, match="no released ZoeDepth weights"):
        create_model("zoedepth_nk", backbone="test_tiny", device="cpu")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="not a PyTorch checkpoint"):
        create_model("zoedepth_nk", weights=str(bad), backbone="test_tiny", device="cpu")
    with pytest.raises(WeightsError, match="does not exist"):
        create_model("zoedepth_nk", weights=str(tmp_path / "nope.pt"), backbone="test_tiny", device="cpu")
    _, path = _tiny_official_file(tmp_path, "n")
    with pytest.raises(WeightsError, match="does not match the network"):
        create_model("zoedepth_nk", weights=str(path), backbone="test_tiny", device="cpu")
    with pytest.raises(ValueError, match="unknown ZoeDepth option"):
        create_model("zoedepth_nk", weights="random", backbone="test_tiny", device="cpu", flip=True)


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------
def test_network_size_rule():
    keep = {(480, 640): (384, 512), (600, 800): (384, 512), (720, 1280): (384, 672), (1080, 1920): (384, 672),
            (375, 1242): (384, 1280), (352, 1216): (384, 1312), (512, 512): (512, 512)}
    for (h, w), size in keep.items():
        assert network_size(h, w) == size, (h, w)
    assert network_size(720, 1280, keep_aspect=False) == (384, 512)
    assert network_size(375, 1242, (384, 768), keep_aspect=False) == (384, 768)
    assert network_size(2, 4000) == (32, 512)     # degenerate aspect ratios still give a valid size


def test_relative_position_index_matches_timm():
    from timm.models.beit import gen_relative_position_index
    for size in [(24, 24), (24, 32), (4, 6), (3, 2)]:
        assert torch.equal(relative_position_index(*size), gen_relative_position_index(size))


def test_bin_confidence_peaked_beats_flat():
    centres = torch.linspace(0.1, 10, 64).view(1, 64, 1, 1).repeat(1, 1, 1, 3)
    flat = torch.full_like(centres, 1 / 64)
    peaked = torch.softmax(-((centres - 5.0) ** 2) / 0.01, dim=1)
    broad = torch.softmax(-((centres - 5.0) ** 2) / 2.0, dim=1)
    onehot = torch.zeros_like(centres)
    onehot[:, 20] = 1
    c = {k: bin_confidence(p, centres).mean().item() for k, p in
         dict(flat=flat, broad=broad, peaked=peaked, onehot=onehot).items()}
    assert c["onehot"] == pytest.approx(1.0)
    assert c["onehot"] > c["peaked"] > c["broad"] > c["flat"] >= 0.0
    assert 0.3 < c["flat"] < 0.5                      # documented: about 0.4 for flat over 0-10 m


# ---------------------------------------------------------------------------------------------
# Tiny networks end to end
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,domain", [("zoedepth_nk", None), ("zoedepth_n", "indoor"), ("zoedepth_k", "outdoor")])
def test_tiny_models_build_and_infer(name, domain):
    model = create_model(name, weights="random", backbone="test_tiny", device="cpu")
    pred = model.infer(_rgb())
    assert pred.depth.shape == (64, 96) and pred.depth.dtype == np.float32
    assert pred.confidence.shape == (64, 96) and pred.confidence.dtype == np.float32
    assert np.isfinite(pred.depth).all() and (pred.depth > 0).all()
    assert (pred.confidence >= 0).all() and (pred.confidence <= 1).all()
    assert pred.focal_px is None and pred.focal_source is None
    assert pred.domain in ("indoor", "outdoor") and (domain is None or pred.domain == domain)
    assert isinstance(pred.domain_confidence, float) and 0 <= pred.domain_confidence <= 1
    assert model.net is not None and isinstance(model.net, torch.nn.Module)


def test_net_contract(tiny_nk):
    net = tiny_nk.net
    x = torch.rand(2, 3, 50, 70)
    out = net(x, return_probs=True, return_confidence=True)
    assert out["metric_depth"].shape == (2, 1, 64, 96)
    assert out["domain_logits"].shape == (2, 2)
    assert out["probs"].shape == out["bin_centers"].shape == (2, 64, 64, 96)
    torch.testing.assert_close(out["probs"].sum(1), torch.ones(2, 64, 96))
    torch.testing.assert_close((out["probs"] * out["bin_centers"]).sum(1, keepdim=True), out["metric_depth"])
    assert out["confidence"].shape == (2, 1, 64, 96)
    plain = net(x)
    assert set(plain) == {"metric_depth", "domain_logits", "domain_index"}
    torch.testing.assert_close(plain["metric_depth"], out["metric_depth"])


def _two_routes(net):
    """Shift the router's decision threshold between two images so that they take different heads."""
    x = torch.stack([torch.rand(3, 64, 96), torch.rand(3, 64, 96) * 0.2])
    logits = net(x)["domain_logits"]
    diff = logits[:, 0] - logits[:, 1]
    assert abs(diff[0] - diff[1]) > 1e-4
    mid = float(diff.mean())
    net.mlp_classifier[2].bias[0] -= mid / 2
    net.mlp_classifier[2].bias[1] += mid / 2
    return x


def test_per_image_routing():
    torch.manual_seed(0)
    model = create_model("zoedepth_nk", weights="random", backbone="test_tiny", device="cpu")
    net = model.net
    x = _two_routes(net)
    out = net(x)
    routes = out["domain_index"].tolist()
    assert sorted(routes) == [0, 1]
    for i in range(2):
        single = net(x[i:i + 1], domain=["indoor", "outdoor"][routes[i]])
        torch.testing.assert_close(out["metric_depth"][i:i + 1], single["metric_depth"], rtol=1e-5, atol=1e-6)
        assert net(x[i:i + 1])["domain_index"].item() == routes[i]
    # The same through infer_batch, with per-image domains and confidences.
    imgs = [(x[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for i in range(2)]
    preds = model.infer_batch(imgs)
    singles = [model.infer(im) for im in imgs]
    assert {p.domain for p in preds} == {"indoor", "outdoor"}
    for p, s in zip(preds, singles):
        assert p.domain == s.domain
        assert p.domain_confidence == pytest.approx(s.domain_confidence, abs=1e-6)
        assert p.domain_confidence >= 0.5
        np.testing.assert_allclose(p.depth, s.depth, rtol=1e-5, atol=1e-6)
    # Forcing a head overrides the router for every image.
    model.domain = "outdoor"
    assert {p.domain for p in model.infer_batch(imgs)} == {"outdoor"}
    model.domain = "auto"


def test_domain_setting(tiny_nk):
    with pytest.raises(ValueError, match="domain must be"):
        tiny_nk.domain = "underwater"
    n = create_model("zoedepth_n", weights="random", backbone="test_tiny", device="cpu", domain="auto")
    n.domain = "indoor"
    with pytest.raises(ValueError, match="has no outdoor head"):
        n.domain = "outdoor"
    with pytest.raises(ValueError, match="not available"):
        n.net(torch.rand(1, 3, 64, 96), domain="outdoor")
    m = create_model("zoedepth_nk", weights="random", backbone="test_tiny", device="cpu", domain="outdoor")
    assert m.domain == "outdoor" and m.infer(_rgb()).domain == "outdoor"


def test_infer_options_and_sizes(tiny_nk):
    net = tiny_nk.net
    rgb = _rgb(50, 81)
    model = create_model("zoedepth_nk", weights="random", backbone="test_tiny", device="cpu", flip_aug=True,
                         pad_input=True, keep_aspect=False)
    model.net.load_state_dict(net.state_dict())
    pred = model.infer(rgb)
    assert pred.depth.shape == (50, 81) and pred.confidence.shape == (50, 81)
    # flip averaging is symmetric: a mirrored image gives the mirrored depth
    mirrored = model.infer(np.ascontiguousarray(rgb[:, ::-1]))
    np.testing.assert_allclose(mirrored.depth[:, ::-1], pred.depth, rtol=1e-4, atol=1e-5)
    assert model.net.network_size(50, 81) == (64, 96)
    # mixed sizes in one batch keep order and match single calls
    imgs = [_rgb(64, 96, 1), _rgb(40, 40, 2), _rgb(64, 96, 3)]
    preds = tiny_nk.infer_batch(imgs)
    assert [p.depth.shape for p in preds] == [(64, 96), (40, 40), (64, 96)]
    np.testing.assert_allclose(preds[1].depth, tiny_nk.infer(imgs[1]).depth, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        tiny_nk.infer(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError):
        tiny_nk.infer(_rgb(), f_px=-1.0)


def test_reduced_precision_runs(tiny_nk):
    model = create_model("zoedepth_nk", weights="random", backbone="test_tiny", device="cpu", dtype="bfloat16")
    model.net.load_state_dict(tiny_nk.net.state_dict())
    assert model.net.core.core.pretrained.model.cls_token.dtype == torch.bfloat16
    assert model.net.conv2.weight.dtype == torch.float32           # heads stay float32
    a, b = model.infer(_rgb()), tiny_nk.infer(_rgb())
    assert np.isfinite(a.depth).all()
    np.testing.assert_allclose(a.depth, b.depth, rtol=0.05)


# ---------------------------------------------------------------------------------------------
# Real weights (DEPTH_ROS_WEIGHTS_DIR with ZoeD_M12_NK.pt)
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.weights
@pytest.mark.skipif(not os.environ.get("DEPTH_ROS_WEIGHTS_DIR"), reason="DEPTH_ROS_WEIGHTS_DIR not set")
def test_released_nk_on_synthetic_scenes():
    path = os.path.join(os.environ["DEPTH_ROS_WEIGHTS_DIR"], "ZoeD_M12_NK.pt")
    if not os.path.isfile(path):
        pytest.skip(f"{path} not found")
    model = create_model("zoedepth_nk", weights=path, device="auto")
    h, w = 480, 640
    yy = np.linspace(0, 1, h)[:, None, None]
    # "outdoor": sky on top, ground plane below; "indoor": walls and floor, warm light
    sky = np.where(yy < 0.45, [135, 180, 235], [90, 90, 80]) * (1 - 0.3 * np.abs(yy - 0.45))
    outdoor = np.broadcast_to(sky, (h, w, 3)).astype(np.uint8).copy()
    room = np.where(yy < 0.7, [200, 190, 170], [120, 90, 60]).astype(np.float64)
    indoor = np.broadcast_to(room, (h, w, 3)).astype(np.uint8).copy()
    indoor[100:300, 250:400] = (60, 60, 70)   # a doorway
    preds = model.infer_batch([outdoor, indoor])
    for p in preds:
        assert p.depth.shape == (h, w) and np.isfinite(p.depth).all()
        assert 0.05 < np.median(p.depth) < 80.0
        assert 0.5 <= p.domain_confidence <= 1.0
        assert p.confidence.min() >= 0 and p.confidence.max() <= 1
    for forced in ("indoor", "outdoor"):
        model.domain = forced
        assert model.infer(indoor).domain == forced
