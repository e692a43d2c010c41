"""Precision and device correctness of both families, proven on the CPU (tiny random networks).

* bfloat16 / float16 (PyTorch) and float16 (ONNX Runtime) against float32 on the same weights:
  depth, router logits, FOV;
* the parts kept in float32 stay float32 (ZoeDepth heads and router; Depth Pro ``FP32_MODULES``);
* nothing inside ``forward`` creates a tensor on another device or in another dtype: the networks run
  with parameters and inputs on the ``meta`` device while every op's outputs are recorded;
* ``torch.compile`` sees no graph break in the backbones (``torch._dynamo.explain``), and compiled
  models give the eager numbers (inductor, slow).
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch.overrides import TorchFunctionMode  # noqa: E402

from depth_ros.models.depth_pro import FP32_MODULES, DepthProConfig, DepthProNet, create_depth_pro_net  # noqa: E402
from depth_ros.models.zoedepth import ZoeDepthNet  # noqa: E402


def _perturb(net, backbone_prefixes, seed=0):
    """Random heads give near-constant outputs: perturb them so that outputs vary per pixel and per image."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.add_(torch.randn(p.shape, generator=g) * (0.02 if name.startswith(backbone_prefixes) else 0.2))


def _rel(a, b):
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture(scope="module")
def zoe(torch_one_thread):
    torch.manual_seed(0)
    net = ZoeDepthNet("nk", "test_tiny").eval()
    _perturb(net, ("core.",))
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    return net, x, net(x, domain=["indoor", "outdoor"])


@pytest.fixture(scope="module")
def dpro(torch_one_thread):
    torch.manual_seed(0)
    net = DepthProNet(DepthProConfig("test_tiny", decoder_features=32)).eval()
    _perturb(net, ("encoder.", "decoder."))
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return net, x, net(x)


# -- PyTorch low precision ----------------------------------------------------------------------
@pytest.mark.parametrize("dtype, depth_tol, logit_tol", [(torch.bfloat16, 1e-2, 2e-2), (torch.float16, 2e-3, 2e-3)])
def test_zoedepth_low_precision_error_bounded(zoe, dtype, depth_tol, logit_tol):
    net, x, ref = zoe
    low = copy.deepcopy(net)
    low.core.to(dtype)           # what ZoeDepth(dtype=...) does: heads and router stay float32
    out = low(x, domain=["indoor", "outdoor"])
    assert out["metric_depth"].dtype == torch.float32 and out["domain_logits"].dtype == torch.float32
    assert _rel(out["metric_depth"], ref["metric_depth"]) < depth_tol
    assert _rel(out["domain_logits"], ref["domain_logits"]) < logit_tol
    assert all(p.dtype == torch.float32 for n, p in low.named_parameters() if not n.startswith("core."))


@pytest.mark.parametrize("dtype, depth_tol, fov_tol_deg", [(torch.bfloat16, 5e-2, 0.25), (torch.float16, 1e-2, 0.05)])
def test_depth_pro_low_precision_error_bounded(dpro, dtype, depth_tol, fov_tol_deg):
    net, x, (c_ref, fov_ref) = dpro
    low = copy.deepcopy(net).set_precision(dtype)
    for name in FP32_MODULES:
        assert all(p.dtype == torch.float32 for p in low.get_submodule(name).parameters()), name
    assert low.encoder.patch_encoder.cls_token.dtype == dtype and low.decoder.convs[1].weight.dtype == dtype
    c, fov = low(x.to(dtype))
    assert c.dtype == torch.float32 and fov.dtype == torch.float32
    assert _rel(c, c_ref) < depth_tol
    assert float((fov - fov_ref).abs().max()) < fov_tol_deg
    if dtype == torch.bfloat16:
        # the FOV is a float32 number, not a bfloat16 one (0.25 deg steps near 60 deg before this fix)
        assert float(fov) != float(fov.to(torch.bfloat16).float())
    fov_only = low.forward_fov(x.to(dtype))
    assert fov_only.dtype == torch.float32 and float((fov_only - fov).abs().max()) < 1e-3


def test_depth_pro_checkpoint_keeps_fp32_parts_exact(dpro, tmp_path):
    """Loading a checkpoint into a bfloat16 network leaves the float32 parts bit-exact (no bf16 round trip)."""
    net = dpro[0]
    ckpt = tmp_path / "dp.pt"
    torch.save(net.state_dict(), ckpt)
    low = create_depth_pro_net(net.config, weights=str(ckpt), device="cpu", dtype="bfloat16")
    assert torch.equal(low.head[4].weight, net.head[4].weight)
    assert torch.equal(low.fov.head[-1].weight, net.fov.head[-1].weight)
    assert low.head[0].weight.dtype == torch.bfloat16


# -- ONNX float16 -------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["zoedepth_nk", pytest.param("depth_pro", marks=pytest.mark.slow)])
def test_onnx_float16_error_bounded(zoe, dpro, family, tmp_path):
    pytest.importorskip("onnxruntime")
    from depth_ros.models.depth_pro import DepthPro
    from depth_ros.models.export import export_model, read_metadata
    from depth_ros.models.registry import create_model
    from depth_ros.models.zoedepth import ZoeDepth

    if family == "zoedepth_nk":
        model = ZoeDepth.from_net(copy.deepcopy(zoe[0]), device="cpu")
    else:
        model = DepthPro(copy.deepcopy(dpro[0]), device="cpu", confidence="none")
    path = tmp_path / f"{family}_fp16.onnx"
    report = export_model(model, path, precision="float16")
    assert read_metadata(path)["precision"] == "float16"
    import onnx

    types = {t.data_type for t in onnx.load(str(path)).graph.initializer}
    assert onnx.TensorProto.FLOAT16 in types           # really a float16 graph (plus the float32 parts)
    errs = report["max_rel_error"]
    if family == "zoedepth_nk":
        assert errs["metric_depth"] < 2e-3 and errs["domain_logits"] < 2e-3
    else:
        assert errs["canonical_inverse_depth"] < 1e-2
        assert report["max_abs_error"]["fov_deg"] < 0.05
    om = create_model(family, backend="onnxruntime", weights=str(path), device="cpu", dtype="float16",
                      **({} if family == "zoedepth_nk" else {"confidence": "none"}))
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    a, b = om.infer(rgb), model.infer(rgb)
    assert _rel(a.depth, b.depth) < (2e-3 if family == "zoedepth_nk" else 2e-2)


# -- devices and dtypes inside forward ----------------------------------------------------------
class _Recorder(TorchFunctionMode):
    """The outputs of every torch function / tensor method called (factories such as ``arange`` included;
    above the operator decompositions, so that e.g. the float32 softmax inside the math attention kernel
    is not counted): devices other than meta, and the floating dtypes seen."""

    def __init__(self):
        super().__init__()
        self.off_device = []
        self.float_dtypes = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                if t.device.type != "meta":
                    self.off_device.append((getattr(func, "__name__", str(func)), str(t.device)))
                if t.is_floating_point():
                    self.float_dtypes.add(t.dtype)
        return out


def test_recorder_catches_stray_tensors():
    with _Recorder() as rec:
        torch.arange(3)
        torch.zeros(2, device="meta", dtype=torch.bfloat16)
    assert rec.off_device and rec.off_device[0][1] == "cpu"
    assert torch.bfloat16 in rec.float_dtypes


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_zoedepth_forward_stays_on_device_and_dtype(dtype, torch_one_thread):
    net = ZoeDepthNet("nk", "test_tiny").eval()
    net.core.to(dtype)
    net.to("meta")
    dpt = net.core.core
    x = torch.rand(2, 3, 64, 96, device="meta")
    with _Recorder() as rec:   # backbone alone: only the low dtype (and integer indices) inside
        feats = dpt(x.to(dtype))
    assert rec.off_device == [] and rec.float_dtypes == {dtype}
    assert all(f.device.type == "meta" and f.dtype == dtype for f in feats)
    # the relative-position bias cache holds meta tensors of the low dtype
    cached = [b for biases in dpt._bias_cache.values() for b in biases]
    assert cached and all(b.device.type == "meta" and b.dtype == dtype for b in cached)
    with _Recorder() as rec:   # whole network, both heads in one batch (per-image routing path)
        out = net(x, domain=["indoor", "outdoor"], return_confidence=True)
    assert rec.off_device == []
    assert {k: (v.device.type, v.dtype) for k, v in out.items()} == {
        "metric_depth": ("meta", torch.float32), "confidence": ("meta", torch.float32),
        "domain_logits": ("meta", torch.float32), "domain_index": ("meta", torch.int64)}
    # the exported graph's forward (router decision inside the graph) too
    from depth_ros.models.export import ZoeDepthGraph

    with _Recorder() as rec:
        outs = ZoeDepthGraph(net, 64, 96)(x)
    assert rec.off_device == [] and all(o.device.type == "meta" for o in outs)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_depth_pro_forward_stays_on_device_and_dtype(dtype, torch_one_thread):
    net = DepthProNet(DepthProConfig("test_tiny", decoder_features=32)).eval().set_precision(dtype).to("meta")
    x = torch.rand(2, 3, 128, 128, device="meta", dtype=dtype)
    with _Recorder() as rec:   # encoders (position embeddings, patch split/merge) and decoder: low dtype only
        feats, lowres = net.decoder(net.encoder(x))
    assert rec.off_device == [] and rec.float_dtypes == {dtype}
    with _Recorder() as rec:
        c, fov = net(x)
        fov_only = net.forward_fov(x)
    assert rec.off_device == []
    assert rec.float_dtypes == {dtype, torch.float32}
    assert c.shape[:2] == (2, 1) and fov.shape == fov_only.shape == (2, 1, 1, 1)
    assert all(t.device.type == "meta" and t.dtype == torch.float32 for t in (c, fov, fov_only))


# -- torch.compile ------------------------------------------------------------------------------
def test_backbones_have_no_graph_breaks(zoe, dpro):
    import torch._dynamo as dynamo

    net, x, _ = zoe
    dpt = net.core.core
    xs = net.core.prepare(x)
    biases = dpt.rel_pos_biases(xs.shape[-2] // dpt.patch, xs.shape[-1] // dpt.patch, xs.dtype, xs.device)
    dynamo.reset()
    exp = dynamo.explain(dpt._forward_features)(xs, biases)
    assert exp.graph_break_count == 0 and exp.graph_count == 1, exp.break_reasons
    feats = dpt(xs)
    bott, _ = net.route(feats)
    maps = [feats.r4, feats.r3, feats.r2, feats.r1, feats.out_conv, feats.rel_depth]
    exp = dynamo.explain(net._head)("nyu", bott, *maps, False, True)
    assert exp.graph_break_count == 0, exp.break_reasons
    dnet, dx, _ = dpro
    exp = dynamo.explain(dnet)(dx)
    assert exp.graph_break_count == 0 and exp.graph_count == 1, exp.break_reasons
    dynamo.reset()


@pytest.mark.slow
def test_fullgraph_compile_matches_eager(zoe, dpro):
    """fullgraph=True (fails on any graph break) on the whole Depth Pro network and the BEiT DPT."""
    net, x, (c_ref, fov_ref) = dpro
    c, fov = torch.compile(net, fullgraph=True, backend="aot_eager")(x)
    assert _rel(c, c_ref) < 1e-5 and _rel(fov, fov_ref) < 1e-5
    znet, zx, _ = zoe
    dpt = znet.core.core
    xs = znet.core.prepare(zx)
    biases = dpt.rel_pos_biases(xs.shape[-2] // dpt.patch, xs.shape[-1] // dpt.patch, xs.dtype, xs.device)
    got = torch.compile(dpt._forward_features, fullgraph=True, backend="aot_eager")(xs, biases)
    ref = dpt._forward_features(xs, biases)
    assert _rel(got.out_conv, ref.out_conv) < 1e-5 and _rel(got.l4_rn, ref.l4_rn) < 1e-5
    torch._dynamo.reset()


@pytest.mark.slow
@pytest.mark.parametrize("name, cfg", [("zoedepth_nk", {"backbone": "test_tiny"}),
                                       ("depth_pro", {"vit_preset": "test_tiny", "decoder_features": 32})])
def test_inductor_compiled_model_matches_eager(name, cfg):
    from depth_ros.models.registry import create_model

    torch.manual_seed(0)
    eager = create_model(name, "random", device="cpu", **cfg)
    compiled = create_model(name, "random", device="cpu", compile=True, **cfg)
    compiled.net.load_state_dict(eager.net.state_dict())
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    a, b = compiled.infer(rgb), eager.infer(rgb)
    assert _rel(a.depth, b.depth) < 1e-4
    torch._dynamo.reset()
