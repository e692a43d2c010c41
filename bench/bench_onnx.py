#!/usr/bin/env python3
"""CPU, float32, batch 1: depth_ros PyTorch vs depth_ros ONNX Runtime vs Hugging Face transformers' port.

Same weights in all three (transformers' random init converted to our layout; the ONNX graph exported
from our network with ``depth_ros.models.export``), same input, timed in alternating rounds so that
machine load hits every candidate alike; medians and ratios printed. Not a test: prints numbers.

* ZoeDepth-NK, BEiT-L, network input 384x512: ``ZoeDepthNet.forward`` (input [0, 1]), the exported graph
  (both heads + per-image select, ``image`` in [0, 1]), ``ZoeDepthForDepthEstimation(pixel_values)``
  (normalised input). Also the cost of routing in the graph: one extra metric head vs the forward.
* Depth Pro, ViT-S preset (``dinov2s16_384``, decoder 48; what transformers can hold with the same
  weights), input 1536x1536 in [-1, 1]: ``DepthProNet.forward``, the exported graph,
  ``DepthProForDepthEstimation(pixel_values)``. All compute the FOV. Ours run with ``patch_batch`` 5
  (``--patch-batch``; the CPU setting: same numbers, patch-encoder passes of 5 patches stay in cache).

The ONNX Runtime session is opened as the backend opens it (``onnx_backend.open_session``: attention fused
into ONNX Runtime's MultiHeadAttention in memory). After each race, the float32 floor: the forward's
matrix-product and convolution FLOPs over the best GEMM rate torch or ONNX Runtime reach on this machine,
i.e. the largest speed-up over transformers that any float32 backend could show here.

    .venv/bin/python bench/bench_onnx.py               # real sizes (minutes on 2 cores, ~6 GB RAM)
    .venv/bin/python bench/bench_onnx.py --quick       # tiny configs (seconds): checks the script
    .venv/bin/python bench/bench_onnx.py --models depth_pro --rounds 5
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def _t(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _session(path, threads):
    """The session the backend opens on the CPU (attention fused in memory, ``onnx_backend.open_session``)."""
    from depth_ros.models.onnx_backend import open_session

    sess, fused = open_session(path, [("CPUExecutionProvider", {})], threads=threads)
    print(f"  ONNX Runtime session: {fused} attention blocks fused", flush=True)
    return sess


def _race(candidates, rounds: int, warmup: int):
    """Alternate the candidates ``rounds`` times (after ``warmup`` calls each); seconds per call."""
    times = {name: [] for name, _ in candidates}
    with torch.inference_mode():
        for _ in range(warmup):
            for _, fn in candidates:
                fn()
        for _ in range(rounds):
            for name, fn in candidates:
                times[name].append(_t(fn))
    return times


def _gemm_rate(m: int, k: int, n: int, threads: int, reps: int = 5) -> Dict[str, float]:
    """Best sustained float32 GEMM rate (GFLOP/s) of torch and of ONNX Runtime's MatMul on m x k @ k x n."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from depth_ros.models.onnx_backend import session_options

    a = torch.randn(m, k)
    b = torch.randn(k, n)
    flops = 2.0 * m * k * n
    with torch.inference_mode():
        torch.mm(a, b)
        t_torch = min(_t(lambda: torch.mm(a, b)) for _ in range(reps))
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [m, n])],
                              [onnx.numpy_helper.from_array(b.numpy(), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    sess = ort.InferenceSession(model.SerializeToString(), session_options(threads), providers=["CPUExecutionProvider"])
    an = a.numpy()
    sess.run(None, {"a": an})
    t_ort = min(_t(lambda: sess.run(None, {"a": an})) for _ in range(reps))
    return {"torch": flops / t_torch / 1e9, "onnxruntime": flops / t_ort / 1e9}


def roofline(net, x, tokens: int, dim: int, threads: int, med: Dict[str, float]) -> None:
    """The float32 floor of this machine for the frame: matrix-product and convolution FLOPs of the
    network's forward (torch's FLOP counter) over the best sustained GEMM rate measured here (torch and
    ONNX Runtime, on the ViT's own matrix shapes and a large square one). Everything else (softmax, GELU,
    normalisation, resizing) is left out, so no float32 backend runs a frame faster than that; the reference's
    time over it is the largest speed-up any of them could show."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    # the counter knows the CUDA attention kernels but not the CPU one: same formula
    cpu_sdpa = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu:
                lambda q, k, v, *args, out_shape=None, **kwargs: sdpa_flop_count(q, k, v)}
    with torch.inference_mode(), FlopCounterMode(display=False, custom_mapping=cpu_sdpa) as counter:
        net(x)
    gflop = counter.get_total_flops() / 1e9
    shapes = [(tokens, dim, 3 * dim), (tokens, dim, 4 * dim), (tokens, 4 * dim, dim), (2048, 2048, 2048)]
    rates = {}
    for shape in shapes:
        for lib, r in _gemm_rate(*shape, threads).items():
            if r > rates.get(lib, (0.0, None))[0]:
                rates[lib] = (r, shape)
    best = max(r for r, _ in rates.values())
    floor_s = gflop / best
    ours, ort_, hf = list(med)
    where = ", ".join(f"{lib} {r:.0f} ({s[0]}x{s[1]} @ {s[1]}x{s[2]})" for lib, (r, s) in rates.items())
    print(f"  float32 floor: {gflop:.4g} GFLOP of matrix products and convolutions per frame; best sustained "
          f"GEMM here {best:.0f} GFLOP/s ({where}) -> no float32 backend under {floor_s * 1e3:.0f} ms, i.e. at "
          f"most {med[hf] / floor_s:.2f}x faster than transformers; ONNX Runtime is at "
          f"{100 * floor_s / med[ort_]:.0f} % of the floor's speed, PyTorch at {100 * floor_s / med[ours]:.0f} %",
          flush=True)


def _report(title, times):
    med = {k: statistics.median(v) for k, v in times.items()}
    print(title)
    for k, v in times.items():
        print(f"  {k:<34s} median {med[k] * 1e3:9.1f} ms   min {min(v) * 1e3:9.1f} ms   (n={len(v)})")
    names = list(med)
    ours, ort_, hf = names
    print(f"  ratios (median time): PyTorch/ONNX Runtime {med[ours] / med[ort_]:.2f}x, "
          f"HF/ONNX Runtime {med[hf] / med[ort_]:.2f}x, HF/PyTorch {med[hf] / med[ours]:.2f}x "
          f"(> 1: the second is faster)", flush=True)
    return med


def bench_zoedepth(quick: bool, rounds: int, warmup: int, tmp: Path, threads: int):
    from bench_zoedepth import SIZES, hf_nk, ours_from

    from depth_ros.models.export import export_model
    from depth_ros.models.zoedepth import ZoeDepth

    backbone = "test_tiny" if quick else "beitl16_384"
    h, w = SIZES[backbone]
    hf = hf_nk(backbone)
    net = ours_from(hf, backbone)
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    px = (x - 0.5) / 0.5
    path = tmp / "zoedepth_nk.onnx"
    t = time.perf_counter()
    # random, perturbed weights make a poorly conditioned network: float32 rounding differences grow
    # through 24 blocks (see the input-sensitivity line below), hence the looser tolerance here
    rep = export_model(ZoeDepth.from_net(net, device="cpu"), path, height=h, width=w, tolerance=1e-2)
    print(f"ZoeDepth-NK {backbone} exported in {time.perf_counter() - t:.1f} s ({rep['bytes'] / 1e6:.0f} MB), "
          f"check vs PyTorch: max rel error {max(rep['max_rel_error'].values()):.1e}", flush=True)
    sess = _session(path, threads)
    xn = x.numpy()
    with torch.inference_mode():
        ref = hf(pixel_values=px).predicted_depth
        ours = net(x)["metric_depth"][:, 0]
        got = sess.run(["metric_depth"], {"image": xn})[0][:, 0]
    print(f"  same input: ours vs HF depth max rel diff {float((ours - ref).abs().max() / ref.abs().max()):.1e}, "
          f"ONNX vs ours {float(abs(got - ours.numpy()).max() / abs(ours.numpy()).max()):.1e}")
    if not quick:   # conditioning: how much PyTorch itself moves when the input moves by float32 rounding
        with torch.inference_mode():
            xe = x * (1 + 1e-7 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2)))
            moved = net(xe)["metric_depth"][:, 0]
        print(f"  PyTorch vs PyTorch on the input x (1 + 1e-7 noise): depth max rel diff "
              f"{float((moved - ours).abs().max() / ours.abs().max()):.1e} (the network's float32 sensitivity "
              f"with these random weights)", flush=True)
    times = _race([("depth_ros PyTorch (ZoeDepthNet)", lambda: net(x)),
                   ("depth_ros ONNX Runtime (CPU EP)", lambda: sess.run(None, {"image": xn})),
                   ("transformers ZoeDepthForDepth...", lambda: hf(pixel_values=px))], rounds, warmup)
    med = _report(f"ZoeDepth-NK {backbone}, 1x3x{h}x{w}, float32, {threads} threads", times)
    vit = next(m for m in net.modules() if hasattr(m, "patch_embed") and hasattr(m, "embed_dim"))
    roofline(net, x, (h // 16) * (w // 16) + 1, vit.embed_dim, threads, med)
    # routing cost: the graph runs both metric heads; one head's time next to the whole forward
    with torch.inference_mode():
        feats = net.features(x)
        bott, _ = net.route(feats)
        maps = [feats.r4, feats.r3, feats.r2, feats.r1, feats.out_conv, feats.rel_depth]
        t_head = statistics.median([_t(lambda: net._head("kitti", bott, *maps, False, True)) for _ in range(3)])
    print(f"  routing in the graph: both heads run; the second head costs {t_head * 1e3:.1f} ms "
          f"= {100 * t_head / med['depth_ros PyTorch (ZoeDepthNet)']:.1f} % of the PyTorch forward", flush=True)
    sess = hf = net = None  # free the memory before the next model


def bench_depth_pro(quick: bool, rounds: int, warmup: int, tmp: Path, threads: int, patch_batch: int):
    from transformers import DepthProForDepthEstimation

    from depth_ros.models.depth_pro import (
        VIT_PRESETS,
        DepthPro,
        DepthProConfig,
        DepthProNet,
        checkpoint_filter_fn,
        hf_config,
    )
    from depth_ros.models.export import export_model
    from depth_ros.models.weights import load_strict

    cfg = DepthProConfig(vit_preset="test_tiny", decoder_features=16) if quick else \
        DepthProConfig(vit_preset="dinov2s16_384", decoder_features=48)
    torch.manual_seed(0)
    hf = DepthProForDepthEstimation(hf_config(cfg)).eval()
    net = DepthProNet(cfg).eval()
    load_strict(net, checkpoint_filter_fn(hf.state_dict(), net), "transformers weights")
    net.encoder.patch_batch = patch_batch    # ours as a CPU deployment runs it (same numbers, see DepthProConfig)
    s = cfg.img_size
    x = torch.rand(1, 3, s, s, generator=torch.Generator().manual_seed(0)) * 2 - 1
    path = tmp / "depth_pro.onnx"
    t = time.perf_counter()
    rep = export_model(DepthPro(net, device="cpu", confidence="none"), path)
    print(f"Depth Pro {cfg.vit_preset} exported in {time.perf_counter() - t:.1f} s ({rep['bytes'] / 1e6:.0f} MB), "
          f"check vs PyTorch: max rel error {max(rep['max_rel_error'].values()):.1e}", flush=True)
    sess = _session(path, threads)
    xn = x.numpy()
    times = _race([("depth_ros PyTorch (DepthProNet)", lambda: net(x)),
                   ("depth_ros ONNX Runtime (CPU EP)", lambda: sess.run(None, {"image": xn})),
                   ("transformers DepthProForDepth...", lambda: hf(pixel_values=x))], rounds, warmup)
    med = _report(f"Depth Pro {cfg.vit_preset} decoder {cfg.decoder_features}, 1x3x{s}x{s}, float32, "
                  f"{threads} threads, ours with patch_batch={patch_batch}", times)
    vit = VIT_PRESETS[cfg.vit_preset]
    tokens = 35 * ((vit.img_size // vit.patch_size) ** 2 + 1)   # 35 patches through the patch encoder
    roofline(net, x, tokens, vit.embed_dim, threads, med)
    sess = hf = net = None  # free the memory before the next model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny configs (seconds), to check the script")
    ap.add_argument("--models", nargs="+", default=["zoedepth_nk", "depth_pro"], choices=["zoedepth_nk", "depth_pro"])
    ap.add_argument("--rounds", type=int, default=None, help="timed alternating rounds (default 5, quick 3)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch and ONNX Runtime threads (default: torch's)")
    ap.add_argument("--patch-batch", type=int, default=5,
                    help="Depth Pro patch_batch of ours, PyTorch and exported (default 5, the CPU setting; "
                         "0: all 35 patches in one pass, as the official code)")
    args = ap.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 5)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    import onnxruntime
    import transformers

    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, transformers {transformers.__version__}; "
          f"{threads} threads; rounds {rounds}, warm-up {args.warmup}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_onnx_") as tmp:
        if "zoedepth_nk" in args.models:
            bench_zoedepth(args.quick, rounds, args.warmup, Path(tmp), threads)
        if "depth_pro" in args.models:
            bench_depth_pro(args.quick, rounds, args.warmup, Path(tmp), threads, args.patch_batch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
