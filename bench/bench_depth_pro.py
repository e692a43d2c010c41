#!/usr/bin/env python3
"""Depth Pro forward time: depth_ros's DepthProNet beside transformers' DepthProForDepthEstimation.

CPU (default when no GPU): a small equivalent configuration at the full 1536x1536 input
(dinov2s16_384 backbones = ViT-S/16 @ 384, decoder width 48), fp32; random weights, the same weights
in both (transformers' init converted to our layout), so the outputs are also compared.

CUDA: the released configuration (dinov2l16_384, decoder 256) at 1536x1536 in fp16 and bf16, eager and
torch.compile, transformers alongside in eager mode; plus the end-to-end ``infer`` on a 480x640 image
(upload, resize, forward, metric conversion, download) and ``estimate_focal``. Target: <= 50 ms per
forward on an H100.

Usage:
  python bench/bench_depth_pro.py                      # auto: CUDA if available, else CPU
  python bench/bench_depth_pro.py --device cpu --runs 2 --warmup 1
  python bench/bench_depth_pro.py --device cuda --dtypes float16 bfloat16 --compile both
Options: --preset/--decoder-features override the configuration, --no-hf skips transformers,
--threads sets torch's CPU threads. Times are wall clock (CUDA: synchronised), median and min over
--runs calls after --warmup calls (at least 1; on CUDA the second also measures peak memory),
interleaved between the candidates, batch 1.
"""
import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from depth_ros.models.depth_pro import (  # noqa: E402
    DepthPro,
    DepthProConfig,
    DepthProNet,
    checkpoint_filter_fn,
    hf_config,
)
from depth_ros.models.weights import load_strict  # noqa: E402


def timed(fn, runs, warmup, device):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times), min(times)


def row(name, med, mn, extra=""):
    print(f"  {name:<50s} median {med:10.1f} ms   min {mn:10.1f} ms  {extra}", flush=True)


def peak_mem(device):
    if device.type != "cuda":
        return ""
    return f"peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--preset", default=None)
    ap.add_argument("--decoder-features", type=int, default=None)
    ap.add_argument("--dtypes", nargs="+", default=None)
    ap.add_argument("--compile", choices=["off", "on", "both"], default=None)
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--no-hf", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    cuda = device.type == "cuda"
    preset = args.preset or ("dinov2l16_384" if cuda else "dinov2s16_384")
    dec = args.decoder_features or (256 if cuda else 48)
    dtypes = args.dtypes or (["float16", "bfloat16"] if cuda else ["float32"])
    compile_modes = {"off": [False], "on": [True], "both": [False, True]}[args.compile or ("both" if cuda else "off")]
    runs = args.runs or (20 if cuda else 2)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    if args.threads:
        torch.set_num_threads(args.threads)
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    cfg = DepthProConfig(vit_preset=preset, decoder_features=dec)
    s = cfg.img_size
    print(f"Depth Pro forward, {preset}, decoder {dec}, input 1x3x{s}x{s}, batch 1, device {device}"
          f" ({torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine()},"
          f" {torch.get_num_threads()} CPU threads), torch {torch.__version__}; runs {runs}, warmup {warmup}",
          flush=True)

    torch.manual_seed(0)
    hf = None
    if not args.no_hf:
        import transformers
        from transformers import DepthProForDepthEstimation

        print(f"transformers {transformers.__version__}", flush=True)
        with device:
            hf = DepthProForDepthEstimation(hf_config(cfg)).eval()
    with device:
        net = DepthProNet(cfg).eval()
    if hf is not None:  # same weights in both -> outputs comparable
        load_strict(net, checkpoint_filter_fn(hf.state_dict(), net), "transformers weights")

    x32 = torch.rand(1, 3, s, s, device=device, generator=torch.Generator(device).manual_seed(1)) * 2 - 1
    for dt_name in dtypes:
        dt = getattr(torch, dt_name)
        x = x32.to(dt)
        net.to(dt)
        if hf is not None:
            hf.to(dt)
        outs = {}
        candidates = []
        for comp in compile_modes:
            fwd = torch.compile(net) if comp else net

            def ours(fwd=fwd):
                with torch.inference_mode():
                    outs["ours"] = fwd(x)

            candidates.append((f"depth_ros DepthProNet {dt_name}{' compiled' if comp else ''}", ours))
        if hf is not None:
            def theirs():
                with torch.inference_mode():
                    outs["hf"] = hf(pixel_values=x)

            candidates.append((f"transformers DepthProForDepthEstimation {dt_name}", theirs))
        # warm up each (compilation happens here), note peak memory of one call, then interleave the
        # timed runs so that a changing machine load affects every candidate alike
        mems = []
        for name, fn in candidates:
            t = time.perf_counter()
            fn()
            if "compiled" in name:
                print(f"  ({name}: first call incl. compilation {time.perf_counter() - t:.1f} s)", flush=True)
            if cuda:  # one more call to measure the steady-state peak memory
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                fn()
            mems.append(peak_mem(device))
            for _ in range(max(0, warmup - 1 - cuda)):
                fn()
        times = {name: [] for name, _ in candidates}
        for _ in range(runs):
            for name, fn in candidates:
                times[name].append(timed(fn, 1, 0, device)[0])
        for (name, _), mem in zip(candidates, mems):
            row(name, statistics.median(times[name]), min(times[name]), mem)
        if hf is not None and dt == torch.float32:
            c, fov = outs["ours"]
            ref = outs["hf"]
            rel_c = float((c[:, 0].float() - ref.predicted_depth.float()).abs().max()
                          / ref.predicted_depth.float().abs().max())
            rel_f = float((fov.flatten().float() - ref.field_of_view.float()).abs().max()
                          / ref.field_of_view.float().abs().max())
            print(f"  same weights, same input: canonical inverse depth max rel diff {rel_c:.2e}, FOV {rel_f:.2e}",
                  flush=True)
        if hf is not None:
            hf.to(torch.float32)

        # end-to-end wrapper on a VGA frame and the FOV-only path
        model = DepthPro(net, device=device, dtype=dt)
        rgb = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
        med, mn = timed(lambda: model.infer(rgb), max(1, runs // 2), max(1, warmup // 2) if cuda else 0, device)
        row(f"DepthPro.infer 640x480 -> depth (est. focal) {dt_name}", med, mn)
        med, mn = timed(lambda: model.estimate_focal(rgb), runs, warmup, device)
        row(f"DepthPro.estimate_focal {dt_name}", med, mn)
        net.to(torch.float32)


if __name__ == "__main__":
    main()
