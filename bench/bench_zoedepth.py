#!/usr/bin/env python3
"""ZoeDepth forward-pass benchmark: depth_ros vs Hugging Face transformers, random weights.

CPU (always, unless --skip-cpu): ZoeDepth-NK network forward at 384x512, batch 1, BEiT-L and BEiT-B,
ours next to HF's ZoeDepthForDepthEstimation holding the same weights (timed alternately; min and
median of the repeats). The max relative difference of the two outputs is printed too.

CUDA (when available, unless --skip-cuda): BEiT-L NK, batch 1, 384x512: float32, bfloat16,
bfloat16 + torch.compile; HF float32 / bfloat16 for reference; and the end-to-end ``infer`` on a
480x640 uint8 frame (upload, resize, forward, resize back, download).

    .venv/bin/python bench/bench_zoedepth.py                  # CPU part, then CUDA if present
    .venv/bin/python bench/bench_zoedepth.py --skip-cpu --compile-mode max-autotune-no-cudagraphs
    .venv/bin/python bench/bench_zoedepth.py --smoke     # seconds: tiny network, both parts on the CPU
                                                         # (checks the GPU part's code path, not its speed)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from depth_ros.models.zoedepth import ZoeDepth, ZoeDepthNet, net_from_state_dict  # noqa: E402

HF_BACKBONES = {
    "beitl16_384": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                        out_features=["stage6", "stage12", "stage18", "stage24"], neck=[256, 512, 1024, 1024]),
    "beitb16_384": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                        out_features=["stage3", "stage6", "stage9", "stage12"], neck=[96, 192, 384, 768]),
    # our "test_tiny" preset (for --smoke)
    "test_tiny": dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64, image_size=64,
                      out_features=["stage1", "stage2", "stage3", "stage4"], neck=[16, 32, 64, 64],
                      head=dict(fusion_hidden_size=32, bottleneck_features=32, num_relative_features=8,
                                patch_transformer_intermediate_size=64)),
}
# network input of the benchmark (the released models' 384x512; the tiny preset's own size)
SIZES = {"beitl16_384": (384, 512), "beitb16_384": (384, 512), "test_tiny": (64, 96)}


def hf_nk(backbone: str):
    from transformers import BeitConfig, ZoeDepthConfig, ZoeDepthForDepthEstimation
    spec = dict(HF_BACKBONES[backbone])
    neck = spec.pop("neck")
    head = {"patch_transformer_intermediate_size": 1024, **spec.pop("head", {})}
    spec.setdefault("image_size", 384)
    bc = BeitConfig(patch_size=16, use_relative_position_bias=True, reshape_hidden_states=False,
                    layer_norm_eps=1e-6, **spec)
    cfg = ZoeDepthConfig(backbone_config=bc, neck_hidden_sizes=neck, reassemble_factors=[4, 2, 1, 0.5],
                         bin_configurations=[{"name": "nyu", "n_bins": 64, "min_depth": 1e-3, "max_depth": 10.0},
                                             {"name": "kitti", "n_bins": 64, "min_depth": 1e-3, "max_depth": 80.0}],
                         num_patch_transformer_layers=4, patch_transformer_hidden_size=128,
                         patch_transformer_num_attention_heads=4, **head)
    torch.manual_seed(0)
    model = ZoeDepthForDepthEstimation(cfg).eval()
    with torch.no_grad():  # random heads give near-constant depth: perturb them so outputs vary per pixel
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * (0.02 if name.startswith(("backbone.", "neck.")) else 0.2))
    return model


def ours_from(hf, backbone: str) -> ZoeDepthNet:
    """Our network holding the HF model's weights (converted; tensors shared where possible)."""
    return net_from_state_dict(dict(hf.state_dict()), "nk", backbone, source="HF weights").eval()


def timed(fn, sync=lambda: None) -> float:
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def cpu_part(backbones, repeats: int) -> None:
    print(f"== CPU: torch {torch.__version__}, {torch.get_num_threads()} threads, NK forward, batch 1")
    for backbone in backbones:
        hf = hf_nk(backbone)
        ours = ours_from(hf, backbone)
        x = torch.rand(1, 3, *SIZES[backbone])
        px = (x - 0.5) / 0.5
        with torch.inference_mode():
            ref = hf(pixel_values=px)
            out = ours(x)
            d_ref = ref.predicted_depth
            rel = (d_ref - out["metric_depth"][:, 0]).abs().max() / d_ref.abs().max()
            rel_l = (ref.domain_logits - out["domain_logits"]).abs().max() / ref.domain_logits.abs().max()
            t_ours, t_hf = [], []
            for _ in range(repeats):                 # alternate so that machine load hits both alike
                t_ours.append(timed(lambda: ours(x)))
                t_hf.append(timed(lambda: hf(pixel_values=px)))
        print(f"{backbone} at {x.shape[2]}x{x.shape[3]}: ours min {min(t_ours):6.2f} s  median {statistics.median(t_ours):6.2f} s | "
              f"HF min {min(t_hf):6.2f} s  median {statistics.median(t_hf):6.2f} s | "
              f"ours/HF {min(t_ours) / min(t_hf):.2f}")
        print(f"    outputs: depth {d_ref.min().item():.2f}..{d_ref.max().item():.2f} m "
              f"(std {d_ref.std().item():.2f}), "
              f"max rel diff depth {rel.item():.1e}, domain_logits {rel_l.item():.1e}")
        hf = ours = None  # free the memory before the next size


def cuda_part(iters: int, compile_mode: str, device: str = "cuda", backbone: str = "beitl16_384") -> None:
    """fp32 / bf16 / bf16 + compile, ours and HF. ``device="cpu"`` (with --smoke) only checks the code path."""
    import numpy as np
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    name = torch.cuda.get_device_name(0) if cuda else "CPU (smoke run: code path only, times mean nothing)"
    h, w = SIZES[backbone]
    print(f"== {dev.type.upper()}: {name}, torch {torch.__version__}, NK {backbone}, batch 1, {h}x{w}")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = False   # fp32 means fp32 (cuDNN convs keep PyTorch's default)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    hf = hf_nk(backbone)
    x = torch.rand(1, 3, h, w, device=dev)
    # the end-to-end frame: 480x640 for the released size (network 384x512), the tiny preset's own size otherwise
    frame = (480, 640) if (h, w) == (384, 512) else (h, w)
    rgb = (np.random.rand(*frame, 3) * 255).astype(np.uint8)

    def bench(fn, label):
        with torch.inference_mode():
            for _ in range(5 if cuda else 1):
                fn()
            sync()
            ts = [timed(fn, sync) * 1e3 for _ in range(iters)]
        print(f"{label:38s} median {statistics.median(ts):7.2f} ms   min {min(ts):7.2f} ms", flush=True)
        return statistics.median(ts)

    configs = [("ours fp32", "float32", False), ("ours bf16", "bfloat16", False)]
    if compile_mode != "off":
        configs.append((f"ours bf16 + compile({compile_mode})", "bfloat16", compile_mode))
    for label, dtype, comp in configs:
        # Same weights as HF (converted), wrapped like create_model would.
        model = ZoeDepth.from_net(ours_from(hf, backbone), device=dev, dtype=dtype, compile=comp)
        t0 = time.perf_counter()
        with torch.inference_mode():
            model.net(x)
        sync()
        if comp:
            print(f"  (first call incl. compilation: {time.perf_counter() - t0:.1f} s)", flush=True)
        bench(lambda: model.net(x), label)
        if dtype == "bfloat16":
            bench(lambda: model.infer(rgb), f"{label} infer({frame[0]}x{frame[1]} uint8)")
        model = None  # free the memory before the next mode
        if cuda:
            torch.cuda.empty_cache()
    hf = hf.to(dev)
    px = (x - 0.5) / 0.5
    bench(lambda: hf(pixel_values=px), "HF fp32")
    hf = hf.to(torch.bfloat16)
    bench(lambda: hf(pixel_values=px.bfloat16()), "HF bf16 (whole model, heads included)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-cpu", action="store_true")
    ap.add_argument("--skip-cuda", action="store_true")
    ap.add_argument("--backbones", default="beitl16_384,beitb16_384")
    ap.add_argument("--repeats", type=int, default=3, help="CPU repeats per implementation")
    ap.add_argument("--iters", type=int, default=50, help="CUDA timed iterations")
    ap.add_argument("--compile-mode", default="default", help='a torch.compile mode, or "off"')
    ap.add_argument("--smoke", action="store_true",
                    help="tiny network, 1 repeat, and the GPU part on the CPU: checks that every path runs")
    args = ap.parse_args()
    if args.smoke:
        cpu_part(["test_tiny"], 1)
        cuda_part(2, args.compile_mode, device="cpu", backbone="test_tiny")
        return
    if not args.skip_cpu:
        cpu_part(args.backbones.split(","), args.repeats)
    if not args.skip_cuda:
        if torch.cuda.is_available():
            cuda_part(args.iters, args.compile_mode)
        else:
            print("== CUDA: not available, skipped")


if __name__ == "__main__":
    main()
