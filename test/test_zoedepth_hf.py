"""Parity with Hugging Face transformers' ZoeDepthForDepthEstimation (tiny random configs, CPU).

HF's port reproduces the official model to ~1e-6 (see shared/reference/zoedepth.md), so matching it on
random weights checks our network, our key mapping and the non-square relative-position resampling.
"""
import re

import pytest
import torch

transformers = pytest.importorskip("transformers")

from depth_ros.models.weights import load_strict  # noqa: E402
from depth_ros.models.zoedepth import ZoeDepthNet, checkpoint_filter_fn, convert_hf_state_dict  # noqa: E402

NYU = {"name": "nyu", "n_bins": 64, "min_depth": 1e-3, "max_depth": 10.0}
KITTI = {"name": "kitti", "n_bins": 64, "min_depth": 1e-3, "max_depth": 80.0}


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _hf_model(variant):
    from transformers import BeitConfig, ZoeDepthConfig, ZoeDepthForDepthEstimation
    # Same tiny network as our "test_tiny" preset (timm's LayerNorm eps is 1e-6).
    bc = BeitConfig(image_size=64, patch_size=16, num_hidden_layers=4, hidden_size=32, intermediate_size=64,
                    num_attention_heads=4, use_relative_position_bias=True, reshape_hidden_states=False,
                    layer_norm_eps=1e-6, out_features=["stage1", "stage2", "stage3", "stage4"])
    extra = {}
    if variant == "nk":
        bins = [NYU, KITTI]
        extra = dict(num_patch_transformer_layers=4, patch_transformer_hidden_size=128,
                     patch_transformer_intermediate_size=64, patch_transformer_num_attention_heads=4)
    elif variant == "n":
        bins = [NYU]
    else:
        bins = [KITTI]
        extra = dict(bin_centers_type="normed")
    cfg = ZoeDepthConfig(backbone_config=bc, neck_hidden_sizes=[16, 32, 64, 64], reassemble_factors=[4, 2, 1, 0.5],
                         fusion_hidden_size=32, bottleneck_features=32, num_relative_features=8,
                         bin_configurations=bins, **extra)
    torch.manual_seed(0)
    hf = ZoeDepthForDepthEstimation(cfg).eval()
    # HF initialises the bias tables to zero and its heads give near-constant depth: perturb everything,
    # the heads strongly enough that depth, bins and probabilities vary across the image.
    for name, p in hf.named_parameters():
        p.add_(torch.randn_like(p) * (0.05 if name.startswith(("backbone.", "neck.")) else 0.2))
    return hf


def _ours_from_hf(hf, variant):
    ours = ZoeDepthNet(variant, "test_tiny").eval()
    load_strict(ours, checkpoint_filter_fn(dict(hf.state_dict()), ours), source="HF state_dict")
    return ours


def _rel(a, b):
    assert a.shape == b.shape
    return ((a - b).abs().max() / a.abs().max()).item()


def _varied(depth):
    assert depth.std() > 1e-3 * depth.abs().mean()


@pytest.fixture(scope="module")
def nk_pair():
    hf = _hf_model("nk")
    return hf, _ours_from_hf(hf, "nk")


def test_nk_parity_both_heads(nk_pair):
    hf, ours = nk_pair
    torch.manual_seed(1)
    x = torch.rand(1, 3, 64, 96)                      # non-square: 4x6 patches vs the 4x4 training window
    px = ours.core.prepare(x)
    bias = hf.metric_head.mlp_classifier.linear2.bias
    orig = bias.clone()
    try:
        for forced in (0, 1):                         # push HF's (batch-level) router to each head in turn
            bias.copy_(torch.tensor([10.0, -10.0]) if forced == 0 else torch.tensor([-10.0, 10.0]))
            ours.mlp_classifier[2].bias.copy_(bias)
            ref = hf(pixel_values=px)
            out = ours(x)
            assert out["domain_index"].item() == forced
            _varied(ref.predicted_depth)
            assert _rel(ref.predicted_depth, out["metric_depth"][:, 0]) <= 1e-4
            assert _rel(ref.domain_logits, out["domain_logits"]) <= 1e-4
    finally:
        bias.copy_(orig)
        ours.mlp_classifier[2].bias.copy_(orig)
    ref = hf(pixel_values=px)
    out = ours(x)
    assert _rel(ref.domain_logits, out["domain_logits"]) <= 1e-4
    assert _rel(ref.predicted_depth, out["metric_depth"][:, 0]) <= 1e-4


@pytest.mark.parametrize("variant", ["n", "k"])
def test_single_head_parity(variant):
    hf = _hf_model(variant)
    ours = _ours_from_hf(hf, variant)
    torch.manual_seed(2)
    x = torch.rand(2, 3, 64, 96)
    ref = hf(pixel_values=ours.core.prepare(x))
    out = ours(x)
    assert ref.domain_logits is None and "domain_logits" not in out
    _varied(ref.predicted_depth)
    assert _rel(ref.predicted_depth, out["metric_depth"][:, 0]) <= 1e-4
    if variant == "k":       # KITTI range: bin centres live in [1e-3, 80]
        c = ours(x, return_probs=True)["bin_centers"]
        assert c.min() >= 1e-3 - 1e-6 and c.max() <= 80 + 1e-4


def test_transformers_4x_names_convert_the_same(nk_pair):
    hf, ours = nk_pair
    sd5 = dict(hf.state_dict())
    # transformers 4.x (and the files on the Hub) spell the BEiT backbone differently.
    to4 = [(r"^backbone\.beit\.layers\.(\d+)\.", r"backbone.encoder.layer.\1."),
           (r"^backbone\.beit\.embeddings\.", "backbone.embeddings."),
           (r"\.attention\.q_proj\.", ".attention.attention.query."),
           (r"\.attention\.k_proj\.", ".attention.attention.key."),
           (r"\.attention\.v_proj\.", ".attention.attention.value."),
           (r"\.attention\.o_proj\.", ".attention.output.dense."),
           (r"\.mlp\.fc1\.", ".intermediate.dense."),
           (r"^(backbone\..*)\.mlp\.fc2\.", r"\1.output.dense."),
           (r"(layer\.\d+)\.relative_position_bias\.", r"\1.attention.attention.relative_position_bias.")]
    sd4 = {}
    for k, v in sd5.items():
        for pat, rep in to4:
            k = re.sub(pat, rep, k)
        sd4[k] = v
    assert "backbone.encoder.layer.0.output.dense.weight" in sd4
    assert "backbone.encoder.layer.0.attention.attention.relative_position_bias.relative_position_bias_table" in sd4
    a, b = convert_hf_state_dict(sd5, ours), convert_hf_state_dict(sd4, ours)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_hf_unknown_key_is_reported(nk_pair):
    from depth_ros.models.weights import WeightsError
    hf, ours = nk_pair
    sd = dict(hf.state_dict())
    sd["metric_head.something_new.weight"] = torch.zeros(1)
    with pytest.raises(WeightsError, match="unexpected keys.*something_new"):
        load_strict(ours, checkpoint_filter_fn(sd, ours))


def test_hf_weights_through_the_model_api(nk_pair):
    """HF weights -> meta-device build + assign (no copy) -> the DepthModel wrapper."""
    import numpy as np

    from depth_ros.models.zoedepth import ZoeDepth, net_from_state_dict
    hf, ours = nk_pair
    net = net_from_state_dict(dict(hf.state_dict()), "nk", "test_tiny", source="HF")
    model = ZoeDepth.from_net(net, device="cpu", domain="indoor")
    x = torch.rand(1, 3, 64, 96)
    torch.testing.assert_close(model.net(x)["metric_depth"], ours(x, domain="indoor")["metric_depth"])
    pred = model.infer((np.random.RandomState(0).rand(48, 72, 3) * 255).astype(np.uint8))
    assert pred.depth.shape == (48, 72) and pred.domain == "indoor"
