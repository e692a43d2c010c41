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
  ``DepthProForDepthEstimation(pixel_values)``. All compute the FOV.

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

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def _t(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _session(path, threads):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


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
    # routing cost: the graph runs both metric heads; one head's time next to the whole forward
    with torch.inference_mode():
        feats = net.features(x)
        bott, _ = net.route(feats)
        maps = [feats.r4, feats.r3, feats.r2, feats.r1, feats.out_conv, feats.rel_depth]
        t_head = statistics.median([_t(lambda: net._head("kitti", bott, *maps, False, True)) for _ in range(3)])
    print(f"  routing in the graph: both heads run; the second head costs {t_head * 1e3:.1f} ms "
          f"= {100 * t_head / med['depth_ros PyTorch (ZoeDepthNet)']:.1f} % of the PyTorch forward", flush=True)
    sess = hf = net = None  # free the memory before the next model


def bench_depth_pro(quick: bool, rounds: int, warmup: int, tmp: Path, threads: int):
    from transformers import DepthProForDepthEstimation

    from depth_ros.models.depth_pro import DepthPro, DepthProConfig, DepthProNet, checkpoint_filter_fn, hf_config
    from depth_ros.models.export import export_model
    from depth_ros.models.weights import load_strict

    cfg = DepthProConfig(vit_preset="test_tiny", decoder_features=16) if quick else \
        DepthProConfig(vit_preset="dinov2s16_384", decoder_features=48)
    torch.manual_seed(0)
    hf = DepthProForDepthEstimation(hf_config(cfg)).eval()
    net = DepthProNet(cfg).eval()
    load_strict(net, checkpoint_filter_fn(hf.state_dict(), net), "transformers weights")
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
    _report(f"Depth Pro {cfg.vit_preset} decoder {cfg.decoder_features}, 1x3x{s}x{s}, float32, {threads} threads",
            times)
    sess = hf = net = None  # free the memory before the next model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny configs (seconds), to check the script")
    ap.add_argument("--models", nargs="+", default=["zoedepth_nk", "depth_pro"], choices=["zoedepth_nk", "depth_pro"])
    ap.add_argument("--rounds", type=int, default=None, help="timed alternating rounds (default 5, quick 3)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch and ONNX Runtime threads (default: torch's)")
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
            bench_depth_pro(args.quick, rounds, args.warmup, Path(tmp), threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
