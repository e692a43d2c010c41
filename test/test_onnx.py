"""ONNX export (checked against PyTorch) and the ONNX Runtime backend, on tiny random networks."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from depth_ros.models.export import ExportError, export_model, export_onnx, read_metadata  # noqa: E402
from depth_ros.models.onnx_backend import OnnxFileError, resolve_providers  # noqa: E402
from depth_ros.models.registry import create_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RGB = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)


def _rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def _perturb(net, backbone_prefix, seed=0):
    """Random heads give near-constant depth: perturb so that outputs vary per pixel (as the benches do)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            scale = 0.02 if name.startswith(backbone_prefix) else 0.2
            p.add_(torch.randn(p.shape, generator=g) * scale)


def _images(n, seed=1):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        base = rng.integers(0, 256, (6, 10, 3)).astype(np.uint8)
        out.append(np.ascontiguousarray(np.kron(base, np.ones((8, 8, 1), np.uint8))))
    return out


@pytest.fixture(scope="module")
def nk(tmp_path_factory, torch_one_thread):
    """Tiny NK whose router sends some of ``_images(4)`` indoor and the others outdoor, and its export."""
    model = create_model("zoedepth_nk", "random", device="cpu", backbone="test_tiny")
    _perturb(model.net, "core.")
    ims = _images(4)
    x = torch.from_numpy(np.stack(ims)).permute(0, 3, 1, 2).float() / 255
    logits = model.net(x)["domain_logits"]
    diff = (logits[:, 1] - logits[:, 0]).sort().values
    with torch.no_grad():   # move the decision threshold between the 2nd and 3rd image
        model.net.mlp_classifier[2].bias[1] -= float(diff[1] + diff[2]) / 2
    path = tmp_path_factory.mktemp("onnx") / "nk.onnx"
    report = export_model(model, path)
    onnx_model = create_model("zoedepth_nk", backend="onnxruntime", weights=str(path), device="cpu")
    return model, onnx_model, path, report, ims


@pytest.fixture(scope="module")
def dpro(tmp_path_factory, torch_one_thread):
    model = create_model("depth_pro", "random", device="cpu", vit_preset="test_tiny", decoder_features=32)
    _perturb(model.net, "encoder.")
    d = tmp_path_factory.mktemp("onnx_dp")
    report = export_model(model, d / "dp.onnx")
    report_fov = export_model(model, d / "dp_fov.onnx", fov_only=True)
    return model, d, report, report_fov


def test_export_report_and_metadata(nk):
    model, _, path, report, _ = nk
    assert path.is_file() and not Path(str(path) + ".data").exists()
    assert report["path"] == str(path) and report["bytes"] == path.stat().st_size
    assert set(report["max_rel_error"]) == {"metric_depth", "confidence", "domain_logits", "head_depth",
                                            "head_confidence"}
    assert max(report["max_rel_error"].values()) <= 1e-4
    meta = read_metadata(path)
    assert meta["model"] == "zoedepth_nk" and meta["variant"] == "nk" and meta["precision"] == "float32"
    assert meta["input_size"] == tuple(model.net.core.img_size)
    assert "[0, 1]" in meta["normalization"] and meta["version"]
    assert meta["config"]["head_names"] == ["nyu", "kitti"]
    # the remaining files in the folder: only the export (no temporary leftovers)
    assert sorted(p.name for p in path.parent.iterdir()) == ["nk.onnx"]


def test_graph_routes_per_image(nk):
    """One batch, mixed routes: the graph's metric_depth is each image's own head, as in PyTorch."""
    model, onnx_model, _, _, ims = nk
    h, w = onnx_model.graph_size
    x = torch.from_numpy(np.stack(ims)).permute(0, 3, 1, 2).float() / 255
    xs = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=True)
    out = onnx_model.runner.run(xs)
    ref = model.net(xs)
    route = out["domain_logits"].argmax(1)
    assert set(route.tolist()) == {0, 1}, "fixture should route the batch both ways"
    assert route.tolist() == ref["domain_index"].tolist()
    assert _rel(out["metric_depth"], ref["metric_depth"].numpy()) < 1e-4
    picked = out["head_depth"][np.arange(len(route)), route][:, None]
    np.testing.assert_array_equal(out["metric_depth"], picked)


def test_onnx_model_matches_torch_model(nk):
    model, onnx_model, _, _, ims = nk
    assert onnx_model.capabilities == model.capabilities
    for domain in ("auto", "indoor", "outdoor"):
        model.domain = onnx_model.domain = domain
        for a, b in zip(onnx_model.infer_batch(ims), model.infer_batch(ims)):
            assert a.depth.shape == b.depth.shape == ims[0].shape[:2]
            assert _rel(a.depth, b.depth) < 1e-4
            assert np.abs(a.confidence - b.confidence).max() < 1e-4
            assert a.domain == b.domain
            assert a.domain_confidence == pytest.approx(b.domain_confidence, abs=1e-5)
            np.testing.assert_allclose(a.domain_logits, b.domain_logits, atol=1e-4)
    model.domain = onnx_model.domain = "auto"
    model.flip_aug = onnx_model.flip_aug = True
    try:
        a, b = onnx_model.infer(ims[0]), model.infer(ims[0])
        assert _rel(a.depth, b.depth) < 1e-4 and a.domain == b.domain
    finally:
        model.flip_aug = onnx_model.flip_aug = False


def test_size_mismatch_warns_once(nk):
    _, onnx_model, _, _, _ = nk
    onnx_model._warned_sizes.clear()
    square = np.zeros((64, 64, 3), np.uint8)
    with pytest.warns(RuntimeWarning, match="--height"):
        onnx_model.infer(square)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        onnx_model.infer(square)


@pytest.fixture(scope="module")
def n_export(tmp_path_factory, torch_one_thread):
    path = tmp_path_factory.mktemp("onnx_n") / "n.onnx"
    report = export_onnx("zoedepth_n", "random", path, model_config={"backbone": "test_tiny"}, height=64, width=64)
    return path, report


def test_export_refuses_disagreement_and_leaves_no_file(tmp_path, torch_one_thread):
    out = tmp_path / "bad.onnx"
    with pytest.raises(ExportError, match="disagrees with PyTorch.*no file written"):
        export_onnx("zoedepth_n", "random", out, model_config={"backbone": "test_tiny"}, height=32, width=32,
                    tolerance=1e-12)
    assert list(tmp_path.iterdir()) == []


def test_single_head_export_onnx_public_function(n_export):
    path, report = n_export
    assert report["outputs"] == ["metric_depth", "confidence"] and report["input_size"] == [64, 64]
    m = create_model("zoedepth_n", backend="onnxruntime", weights=str(path), device="cpu", dtype="auto")
    pred = m.infer(np.full((40, 40, 3), 128, np.uint8))
    assert pred.domain == "indoor" and pred.domain_logits is None and pred.confidence is not None
    assert m.capabilities.routes_domains is False and m.capabilities.domains == ("indoor",)


def test_depth_pro_onnx_matches_torch(dpro):
    model, d, report, report_fov = dpro
    assert max(report["max_rel_error"].values()) <= 1e-4 and report["outputs"] == ["canonical_inverse_depth",
                                                                                     "fov_deg"]
    assert report_fov["outputs"] == ["fov_deg"] and read_metadata(d / "dp_fov.onnx")["model"] == "depth_pro_fov"
    om = create_model("depth_pro", backend="onnxruntime", weights=str(d / "dp.onnx"), device="cpu",
                      fov_weights=str(d / "dp_fov.onnx"))
    assert om.capabilities == model.capabilities
    a, b = om.infer(RGB), model.infer(RGB)
    # compared as inverse depth (what the network gives): depth = 1 / inverse is ill-conditioned near the far
    # clamp, where float32 rounding of a tiny inverse depth moves the depth by metres
    assert _rel(1 / a.depth, 1 / b.depth) < 1e-4 and a.focal_px == pytest.approx(b.focal_px, rel=1e-5)
    assert a.focal_source == "estimated" and np.abs(a.confidence - b.confidence).max() < 1e-3  # exp(-ln2 s / 0.1)
    a, b = om.infer(RGB, f_px=55.0), model.infer(RGB, f_px=55.0)
    assert a.focal_px == 55.0 and a.focal_source == "given" and _rel(1 / a.depth, 1 / b.depth) < 1e-4
    assert om.estimate_focal(RGB) == pytest.approx(model.estimate_focal(RGB), rel=1e-5)
    # without the focal-only file the full graph's FOV output serves estimate_focal
    om2 = create_model("depth_pro", backend="onnxruntime", weights=str(d / "dp.onnx"), device="cpu",
                       confidence="none")
    assert om2.estimate_fov(RGB) == pytest.approx(model.estimate_fov(RGB), rel=1e-5)
    assert om2.infer(RGB).confidence is None


def test_depth_pro_fov_from_checkpoint(dpro, tmp_path):
    """export_onnx loads a checkpoint file: the focal-only graph of the same weights gives the same FOV."""
    model, d, _, _ = dpro
    ckpt = tmp_path / "dp.pt"
    torch.save(model.net.state_dict(), ckpt)
    rep = export_onnx("depth_pro_fov", str(ckpt), tmp_path / "fov.onnx",
                      model_config={"vit_preset": "test_tiny", "decoder_features": 32})
    assert rep["max_rel_error"]["fov_deg"] <= 1e-4
    om = create_model("depth_pro", backend="onnxruntime", weights=str(d / "dp.onnx"), device="cpu",
                      fov_weights=str(tmp_path / "fov.onnx"))
    assert om.estimate_fov(RGB) == pytest.approx(model.estimate_fov(RGB), rel=1e-4)


def test_convolution_weights_are_constants_of_the_graph(nk, dpro):
    """Every convolution in the exported files has constant weights and bias (TensorRT builds its kernels
    from them; ONNX Runtime pre-packs them): Depth Pro's folded head is computed once at export, not by
    einsums and reshapes inside the graph. The export leaves the network as it found it."""
    import onnx

    model, d, _, _ = dpro
    for path in (nk[2], d / "dp.onnx"):
        g = onnx.load(str(path)).graph
        consts = {t.name for t in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
        convs = [n for n in g.node if n.op_type in ("Conv", "ConvTranspose")]
        assert convs and all(i in consts for n in convs for i in n.input[1:] if i), path.name
        assert not any(n.op_type == "Einsum" for n in g.node)
    assert model.net._head_constants is None
    # the folded weights once (as the export uses them) or per forward: the same numbers
    x = torch.randn(1, 32, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        per_forward = model.net._run_head(x)
        with model.net.head_folded_once() as net:
            once = net._run_head(x)
    assert torch.equal(once, per_forward) and model.net._head_constants is None


# -- errors -------------------------------------------------------------------------------------
def test_bad_files_one_line_errors(nk, dpro, tmp_path):
    _, _, nk_path, _, _ = nk
    dp_dir = dpro[1]
    cases = []
    with pytest.raises(OnnxFileError, match="not found") as e:
        create_model("zoedepth_nk", backend="onnxruntime", weights=str(tmp_path / "missing.onnx"), device="cpu")
    cases.append(e)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 50)
    with pytest.raises(OnnxFileError, match="not a readable ONNX file|not exported by") as e:
        create_model("zoedepth_nk", backend="onnxruntime", weights=str(corrupt), device="cpu")
    cases.append(e)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(nk_path.read_bytes()[: nk_path.stat().st_size // 2])
    with pytest.raises(OnnxFileError) as e:
        create_model("zoedepth_nk", backend="onnxruntime", weights=str(truncated), device="cpu")
    cases.append(e)
    with pytest.raises(OnnxFileError, match="holds a zoedepth_nk graph, not depth_pro") as e:
        create_model("depth_pro", backend="onnxruntime", weights=str(nk_path), device="cpu")
    cases.append(e)
    with pytest.raises(OnnxFileError, match="holds a depth_pro_fov graph, not depth_pro") as e:
        create_model("depth_pro", backend="onnxruntime", weights=str(dp_dir / "dp_fov.onnx"), device="cpu")
    cases.append(e)
    with pytest.raises(ValueError, match="exported at 64x96, not") as e:
        create_model("zoedepth_nk", backend="onnxruntime", weights=str(nk_path), device="cpu", img_size=(384, 512))
    cases.append(e)
    with pytest.raises(ValueError, match="vit_preset='test_tiny', not 'dinov2l16_384'") as e:
        create_model("depth_pro", backend="onnxruntime", weights=str(dp_dir / "dp.onnx"), device="cpu",
                     vit_preset="dinov2l16_384")
    cases.append(e)
    with pytest.raises(ValueError, match="float32 graph but dtype float16") as e:
        create_model("zoedepth_nk", backend="onnxruntime", weights=str(nk_path), device="cpu", dtype="float16")
    cases.append(e)
    with pytest.raises(ValueError, match="needs weights=FILE.onnx") as e:
        create_model("zoedepth_nk", backend="onnxruntime", weights=None, device="cpu")
    cases.append(e)
    import onnx

    plain = tmp_path / "plain.onnx"
    m = onnx.load(str(nk_path))
    del m.metadata_props[:]
    onnx.save(m, str(plain))
    with pytest.raises(OnnxFileError, match="not exported by depth-ros export") as e:
        create_model("zoedepth_nk", backend="onnxruntime", weights=str(plain), device="cpu")
    cases.append(e)
    for e in cases:
        assert "\n" not in str(e.value), str(e.value)


def test_wrong_input_shape_is_refused(nk):
    runner = nk[1].runner
    with pytest.raises(ValueError, match="takes N x 3 x 64 x 96"):
        runner.run(np.zeros((1, 3, 64, 64), np.float32))


def test_providers_fall_back_with_one_warning():
    with pytest.warns(RuntimeWarning) as rec:
        got = resolve_providers(["tensorrt", "cuda", "cpu"], device="cuda:1", trt_cache_dir=None,
                                available=["CPUExecutionProvider"])
    assert [p for p, _ in got] == ["CPUExecutionProvider"]
    assert len(rec) == 2 and all("\n" not in str(r.message) for r in rec)
    assert "tensorrt is not available" in str(rec[0].message) and "using cpu" in str(rec[0].message)
    got = resolve_providers(None, device="cuda:1", trt_fp16=False, trt_cache_dir="/tmp/depth_ros_trt_test",
                            available=["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    assert got[0] == ("TensorrtExecutionProvider", {"device_id": 1, "trt_fp16_enable": False,
                                                    "trt_engine_cache_enable": True,
                                                    "trt_engine_cache_path": "/tmp/depth_ros_trt_test"})
    assert got[1] == ("CUDAExecutionProvider", {"device_id": 1}) and got[2][0] == "CPUExecutionProvider"
    assert [p for p, _ in resolve_providers(None, device="cpu", available=["CPUExecutionProvider"])] == \
        ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="unknown ONNX Runtime provider 'rocm'"):
        resolve_providers(["rocm"], available=["CPUExecutionProvider"])
    with pytest.warns(RuntimeWarning), pytest.raises(ValueError, match="none of the ONNX Runtime providers"):
        resolve_providers(["cuda"], available=["CPUExecutionProvider"])


def test_onnx_model_with_unavailable_provider_runs_on_cpu(n_export):
    path = n_export[0]
    with pytest.warns(RuntimeWarning, match="cuda is not available"):
        m = create_model("zoedepth_n", backend="onnxruntime", weights=str(path), device="cpu",
                         providers=["cuda", "cpu"])
    assert m.runner.providers == ["CPUExecutionProvider"]


@pytest.mark.slow
def test_gpu_check_smoke(tmp_path):
    """bench/gpu_check.py --smoke runs on the CPU with tiny configs and writes the JSON + markdown table."""
    out = tmp_path / "gpu_check"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    modes = ["eager float32", "eager bfloat16", "cuda graph bfloat16", "compile default bfloat16",
             "onnxruntime float32"]
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--smoke", "--out", str(out),
                           "--modes", *modes],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    import json

    data = json.loads((out.with_suffix(".json")).read_text())
    md = out.with_suffix(".md").read_text()
    rows = {(r["model"], r["mode"]) for r in data["rows"]}
    for model in ("zoedepth_nk", "depth_pro"):
        for mode in modes:
            assert (model, mode) in rows, (model, mode, rows)
    by = {(r["model"], r["mode"]): r for r in data["rows"]}
    for model in ("zoedepth_nk", "depth_pro"):
        for mode in ("eager float32", "eager bfloat16", "onnxruntime float32"):
            r = by[(model, mode)]
            assert r["status"] == "ok" and r["p50_ms"] > 0 and r["p90_ms"] >= r["p50_ms"], r
        assert by[(model, "eager float32")]["max_rel_error"] == 0.0
        assert 0 < by[(model, "eager bfloat16")]["max_rel_error"] < 5e-2
        assert by[(model, "onnxruntime float32")]["max_rel_error"] < 1e-4
        assert by[(model, "cuda graph bfloat16")]["status"].startswith("skipped")
    assert "fov_abs_error_deg" in by[("depth_pro", "eager bfloat16")]
    assert "logits_abs_error" in by[("zoedepth_nk", "eager bfloat16")]
    assert "| zoedepth_nk |" in md and "p50" in md


# -- attention fused in memory for ONNX Runtime ---------------------------------------------------
def _sessions(path, **kw):
    from depth_ros.models.onnx_backend import open_session

    cpu = [("CPUExecutionProvider", {})]
    return open_session(path, cpu, **kw), open_session(path, cpu, fuse=False)


def _run_all(sess, x):
    return sess.run(None, {"image": x})


def _with_outputs(model, names):
    """``model`` serialized with the tensors ``names`` added as graph outputs."""
    from onnx import TensorProto, helper

    model.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names)
    return model.SerializeToString()


def test_attention_fused_in_memory_matches_the_file(nk, dpro):
    """Every attention block of both families becomes one MultiHeadAttention (ZoeDepth's with BEiT's
    relative-position bias). Each block's output equals the unfused graph's (tiny random networks barely
    depend on attention end to end, so the blocks themselves are compared), and so do the outputs; the
    comparison can fail: a wrong attention scale moves every block. The file on disk stays standard ONNX
    (TensorRT reads it)."""
    import onnx
    import onnxruntime as ort

    from depth_ros.models.onnx_fusion import fuse_attention

    _, onnx_model, nk_path, _, _ = nk
    _, d, _, _ = dpro
    h, w = read_metadata(nk_path)["input_size"]
    rng = np.random.default_rng(2)
    cases = [(nk_path, rng.uniform(0, 1, (2, 3, h, w)).astype(np.float32)),
             (d / "dp.onnx", rng.uniform(-1, 1, (1, 3, 128, 128)).astype(np.float32))]
    assert onnx_model.runner.fused_attention > 0

    def run(data, x):
        return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"image": x})

    for path, x in cases:
        (_, fused), (_, none) = _sessions(path)
        plain = onnx.load(str(path))
        softmaxes = sum(n.op_type == "Softmax" for n in plain.graph.node)
        assert fused == softmaxes > 0 and none == 0, (path, fused, softmaxes)
        assert not any(n.domain for n in plain.graph.node)   # the file is unchanged
        graph = onnx.load(str(path))
        assert fuse_attention(graph) == fused
        blocks = [n.output[0] for n in graph.graph.node if n.op_type == "MultiHeadAttention"]
        want = run(_with_outputs(plain, blocks), x)
        got = run(_with_outputs(graph, blocks), x)
        for n in graph.graph.node:
            if n.op_type == "MultiHeadAttention":
                n.attribute.append(onnx.helper.make_attribute("scale", 1.0))
        wrong = run(graph.SerializeToString(), x)
        n_out = len(want) - len(blocks)
        for i, (a, b) in enumerate(zip(got, want)):
            if i >= n_out:   # an attention block's output
                assert _rel(a, b) < 1e-5 and _rel(wrong[i], b) > 1e-2, (path, i)
            else:            # the graph's outputs, at the export check's tolerance: the router logits are small
                assert _rel(a, b) < 1e-4, (path, i)   # sums of cancelling terms (seen: 1.5e-5 relative)


def test_attention_fusion_with_external_data_and_fallbacks(dpro, tmp_path, monkeypatch):
    import onnx

    from depth_ros.models import onnx_backend, onnx_fusion

    _, d, _, _ = dpro
    x = np.random.default_rng(4).uniform(-1, 1, (1, 3, 128, 128)).astype(np.float32)
    ref = _run_all(_sessions(d / "dp.onnx")[1][0], x)
    # weights in a side file (as files over 2 GB are written): the fused graph finds them next to the file
    m = onnx.load(str(d / "dp.onnx"))
    ext = tmp_path / "ext" / "dp.onnx"
    ext.parent.mkdir()
    onnx.save_model(m, str(ext), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="dp.onnx.data", size_threshold=0)
    (sess, fused), _ = _sessions(ext)
    assert fused > 0
    for a, b in zip(_run_all(sess, x), ref):
        assert _rel(a, b) < 1e-5
    # TensorRT fuses attention itself and cannot run contrib operators: no in-memory fusion for it
    cpu = [("CPUExecutionProvider", {})]
    monkeypatch.setattr(onnx_fusion, "fuse_attention", lambda model: pytest.fail("fused for TensorRT"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # onnxruntime's own notice that TensorRT is missing here
        try:
            _, fused = onnx_backend.open_session(d / "dp.onnx", [("TensorrtExecutionProvider", {})] + cpu)
        except Exception:   # noqa: BLE001 - an onnxruntime that refuses an unavailable provider outright
            fused = 0
    assert fused == 0
    # a fused graph this onnxruntime cannot load: one warning line, the file runs as it is

    def broken(model):
        model.graph.node[0].op_type = "NoSuchOp"
        model.graph.node[0].domain = onnx_fusion.CONTRIB_DOMAIN
        return 1

    monkeypatch.setattr(onnx_fusion, "fuse_attention", broken)
    with pytest.warns(RuntimeWarning, match="with fused attention") as rec:
        sess, fused = onnx_backend.open_session(d / "dp.onnx", cpu)
    assert fused == 0 and len(rec) == 1 and "\n" not in str(rec[0].message)
    for a, b in zip(_run_all(sess, x), ref):
        assert _rel(a, b) == 0


def test_attention_fusion_leaves_other_graphs_alone():
    import onnx
    from onnx import TensorProto, helper

    from depth_ros.models.onnx_fusion import fuse_attention

    # a softmax over a plain matrix product (no packed q/k/v): not attention, not touched
    g = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["s"]), helper.make_node("Softmax", ["s"], ["p"]),
                           helper.make_node("MatMul", ["p", "b"], ["o"])], "g",
                          [helper.make_tensor_value_info("a", TensorProto.FLOAT, [4, 4]),
                           helper.make_tensor_value_info("b", TensorProto.FLOAT, [4, 4])],
                          [helper.make_tensor_value_info("o", TensorProto.FLOAT, [4, 4])])
    m = helper.make_model(g)
    before = m.SerializeToString()
    assert fuse_attention(m) == 0 and m.SerializeToString() == before
    onnx.checker.check_model(m)


def test_depth_pro_patch_batch_same_numbers(dpro, tmp_path):
    """patch_batch (patch-encoder passes of a few patches, for CPU caches) changes no number: PyTorch and
    the exported graph, with a batch of 2 images and a last pass shorter than the others (35 = 8 x 4 + 3)."""
    from depth_ros.models.depth_pro import DepthProConfig

    model, _, _, _ = dpro
    net = model.net
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(5)) * 2 - 1
    with torch.inference_mode():
        ref = net(x)
        net.encoder.patch_batch = 4
        try:
            got = net(x)
            report = export_model(model, tmp_path / "dp_pb4.onnx")
        finally:
            net.encoder.patch_batch = 0
    for a, b in zip(got, ref):
        assert _rel(a.numpy(), b.numpy()) < 1e-6
    assert read_metadata(tmp_path / "dp_pb4.onnx")["config"]["patch_batch"] == 4
    assert max(report["max_rel_error"].values()) <= 1e-4
    from depth_ros.models.onnx_backend import open_session

    sess, _ = open_session(tmp_path / "dp_pb4.onnx", [("CPUExecutionProvider", {})])
    outs = sess.run(None, {"image": x.numpy()})
    assert _rel(outs[0], ref[0].numpy()) < 1e-5 and _rel(outs[1], ref[1].view(-1).numpy()) < 1e-5
    # the ONNX backend checks a requested patch_batch against the file's
    with pytest.raises(ValueError, match="exported with patch_batch=4, not 0"):
        create_model("depth_pro", backend="onnxruntime", weights=str(tmp_path / "dp_pb4.onnx"), device="cpu",
                     patch_batch=0)
    for bad in (-1, 2.5, True, "5"):
        with pytest.raises(ValueError, match="patch_batch must be an integer >= 0"):
            DepthProConfig(vit_preset="test_tiny", decoder_features=32, patch_batch=bad)
