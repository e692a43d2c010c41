#!/usr/bin/env python3
"""Marigold benchmark: seconds per frame of the diffusers pipeline + metric alignment, random weights.

Configurations (each on a 480x640 uint8 frame, seed fixed, reference given so that only Marigold is timed;
the alignment is timed separately on the same frame):

* ``tiny``: the test pipeline (``build_random_pipeline("tiny")``), 1 step at 32 px processing resolution;
* ``sd2``: the real architecture sizes (SD2 UNet with 8 input channels, 866 M parameters; SD VAE, 84 M;
  OpenCLIP-H text encoder with a tiny vocabulary, used once), random weights, 1 denoising step at 768 px
  (the LCM / v1-1 1-step setting), ensemble 1; with ``--taesd`` also with a random ``AutoencoderTiny`` of
  TAESD's architecture instead of the VAE.

CPU always (float32, torch's threads); CUDA too when available (float32 and bfloat16).

    .venv/bin/python bench/bench_marigold.py                # tiny + sd2 on the CPU (sd2: ~5 GB RAM, minutes)
    .venv/bin/python bench/bench_marigold.py --smoke        # tiny only (seconds)
    .venv/bin/python bench/bench_marigold.py --repeats 3 --taesd --steps 1 4
"""
from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from depth_ros.core.align import fit_scale_shift  # noqa: E402
from depth_ros.models.marigold import Marigold, build_random_pipeline  # noqa: E402

H, W = 480, 640


def frame() -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:H, 0:W]
    img = np.stack([xx * 255 // W, yy * 255 // H, (xx + yy) * 255 // (H + W)], -1) + rng.integers(0, 30, (H, W, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def timed(fn, device: torch.device) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def run(label: str, model: Marigold, rgb: np.ndarray, repeats: int, warmup: bool) -> None:
    if warmup:
        model.predict_affine(rgb)
    times = [timed(lambda: model.predict_affine(rgb), model.device) for _ in range(repeats)]
    affine, _ = model.predict_affine(rgb) if repeats > 1 or warmup else (None, None)
    if affine is None:   # one expensive frame only: align a stand-in of the same size
        affine = np.random.default_rng(0).random((H, W)).astype(np.float32)
    ref = (5.0 * affine + 0.5).astype(np.float32)
    t_fit = min(timed(lambda: fit_scale_shift(affine, ref), torch.device("cpu")) for _ in range(3))
    print(f"{label:58s} {min(times):9.3f} s/frame (min of {len(times)}, median {statistics.median(times):.3f})"
          f"   + alignment {t_fit * 1e3:.1f} ms", flush=True)


def bench(device: torch.device, dtype: str, preset: str, steps_list, repeats: int, taesd: bool) -> None:
    rgb = frame()
    t0 = time.perf_counter()
    pipe = build_random_pipeline(preset)
    n_unet = sum(p.numel() for p in pipe.unet.parameters()) / 1e6
    n_vae = sum(p.numel() for p in pipe.vae.parameters()) / 1e6
    print(f"[{device.type} {dtype}] {preset}: UNet {n_unet:.0f} M, VAE {n_vae:.1f} M parameters, "
          f"built in {time.perf_counter() - t0:.1f} s", flush=True)
    res = 32 if preset == "tiny" else 768
    vaes = [("VAE", None)]
    if taesd:
        from diffusers import AutoencoderTiny

        torch.manual_seed(0)
        vaes.append(("TAESD-size tiny VAE", AutoencoderTiny()))   # the default config is TAESD's architecture
    own_vae = pipe.vae
    for vae_name, vae in vaes:
        if vae is not None:
            from diffusers import MarigoldDepthPipeline

            pipe = MarigoldDepthPipeline(unet=pipe.unet, vae=vae, scheduler=pipe.scheduler,
                                         text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
                                         **{k: pipe.config[k] for k in ("prediction_type", "scale_invariant",
                                                                        "shift_invariant", "default_denoising_steps",
                                                                        "default_processing_resolution")})
        for steps in steps_list:
            model = Marigold.from_pipeline(pipe, device=device, dtype=dtype, steps=steps, processing_resolution=res,
                                           reference_model="none")
            # sd2 on the CPU: no separate warm-up frame (a frame takes minutes); the first one is timed
            warm = not (device.type == "cpu" and preset == "sd2")
            run(f"  {preset} {vae_name}, {steps} step(s) @ {res} px, {W}x{H} input", model, rgb, repeats, warm)
    del pipe, own_vae, model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny pipeline only")
    ap.add_argument("--repeats", type=int, default=0, help="timed frames (default: 5 tiny, 1 sd2 CPU, 5 CUDA)")
    ap.add_argument("--steps", type=int, nargs="+", default=[1], help="denoising steps to time (default 1)")
    ap.add_argument("--taesd", action="store_true", help="also time a random TAESD-size AutoencoderTiny")
    ap.add_argument("--skip-cpu", action="store_true")
    ap.add_argument("--skip-cuda", action="store_true")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads", flush=True)
    presets = ["tiny"] if args.smoke else ["tiny", "sd2"]
    if not args.skip_cpu:
        for preset in presets:
            reps = args.repeats or (1 if preset == "sd2" else 5)
            bench(torch.device("cpu"), "float32", preset, args.steps, reps, args.taesd and preset == "sd2")
    if not args.skip_cuda and torch.cuda.is_available():
        for dtype in ("float32", "bfloat16"):
            for preset in presets:
                bench(torch.device("cuda"), dtype, preset, args.steps, args.repeats or 5, args.taesd)


if __name__ == "__main__":
    with torch.inference_mode():
        main()
