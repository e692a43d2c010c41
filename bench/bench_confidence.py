#!/usr/bin/env python3
"""Edge confidence vs flying pixels on the rendered scenes (exact depth, known edges).

Scenes: ``depth_ros.demo.render`` (the room and the street), rendered here at 320 x 240, 70 deg FOV, with
exact float32 ground-truth depth. The sky (no surface) stands in as a surface at the scene's
``max_depth`` for both the stand-in model and the evaluation (a network predicts *some* far depth there,
and tree/pole-against-sky silhouettes are real flying-pixel sources).

Stand-in models (what real networks do at depth discontinuities: they smooth their output, which is
inverse depth for Depth Pro, ZoeDepth's relative branch and MiDaS-like decoders):
  blur1     Gaussian blur of inverse depth, sigma 1 px (a sharp network: Depth Pro)
  blur2     sigma 2 px (a softer one)
  lowres4   inverse depth predicted at 1/4 resolution (area) and upsampled bilinearly (a network run at
            a lower resolution than the camera, e.g. ZoeDepth at 384 px for a 1280 px image)
  noisy     blur1 and 1 % multiplicative pixel noise (does noise on flat surfaces get marked?)

Per pixel p (each pixel is one point of the organized cloud; predicted depth d, ground truth g):
  correct   |d - g(p)| <= X g(p)                                   (X = 5 %)
  flying    |d - g(q)| >  X g(q) for every q in the 5 x 5 neighbourhood of p: the point is more than X
            away from every surface around it (foreground and background alike), i.e. it hangs in the air
            between them. (A silhouette shifted by a pixel lands on the other surface: neither class.)
A pixel is dropped when its edge confidence is below the threshold. The table gives, per stand-in:
flying pixels kept (and the fall in %), correct pixels dropped (%).

Target (issue 12): at the default threshold (``DEFAULT_MIN_CONFIDENCE`` with the default edge parameters)
the flying-pixel count falls by >= 90 % while <= 5 % of the correct pixels are dropped.

Usage: python bench/bench_confidence.py [--frames 16] [--sweep]
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from depth_ros.core.confidence import (  # noqa: E402
    DEFAULT_MIN_CONFIDENCE,
    EDGE_R_HALF,
    EDGE_SHARPNESS,
    EDGE_WINDOW,
    edge_confidence,
)
from depth_ros.demo.render import default_intrinsics, render_sequence  # noqa: E402

TOLERANCE = 0.05  # X: "correct" / "flying" relative distance
NEIGHBOURHOOD = 5  # the window whose ground-truth depths count as "the surfaces around" a pixel


def _gauss_kernel(sigma: float) -> np.ndarray:
    k = int(np.ceil(3 * sigma))
    x = np.arange(-k, k + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur, edge-replicated borders."""
    g = _gauss_kernel(sigma)
    k = len(g) // 2
    p = np.pad(a, ((0, 0), (k, k)), mode="edge")
    a = sum(g[i] * p[:, i:i + a.shape[1]] for i in range(len(g)))
    p = np.pad(a, ((k, k), (0, 0)), mode="edge")
    return sum(g[i] * p[i:i + a.shape[0]] for i in range(len(g)))


def _lowres(inv: np.ndarray, factor: int) -> np.ndarray:
    import cv2

    h, w = inv.shape
    small = cv2.resize(inv, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def stand_in(gt: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    inv = (1.0 / gt).astype(np.float64)
    if kind == "blur1":
        out = _blur(inv, 1.0)
    elif kind == "blur2":
        out = _blur(inv, 2.0)
    elif kind == "lowres4":
        out = _lowres(inv.astype(np.float32), 4).astype(np.float64)
    elif kind == "noisy":
        out = _blur(inv, 1.0) * (1.0 + 0.01 * rng.standard_normal(inv.shape))
    else:
        raise ValueError(kind)
    return (1.0 / out).astype(np.float32)


def classify(pred: np.ndarray, gt: np.ndarray):
    """(correct, flying) boolean masks (module docstring)."""
    correct = np.abs(pred - gt) <= TOLERANCE * gt
    k = NEIGHBOURHOOD // 2
    h, w = gt.shape
    g = np.pad(gt, k, mode="edge")
    near_some = np.zeros(gt.shape, dtype=bool)
    for dy in range(NEIGHBOURHOOD):
        for dx in range(NEIGHBOURHOOD):
            q = g[dy:dy + h, dx:dx + w]
            near_some |= np.abs(pred - q) <= TOLERANCE * q
    return correct, ~near_some


KINDS = ("blur1", "blur2", "lowres4", "noisy")
PRIMARY = "blur1"  # Depth Pro-like: sharp, about 1 px of blur at the output resolution


def collect(frames: int):
    cam = default_intrinsics(320, 240, 70.0)
    rng = np.random.default_rng(0)
    data = {k: [] for k in KINDS}
    for f in render_sequence(frames, cam, supersample=1, shadows=False):
        gt = np.where(np.isfinite(f.depth), f.depth, np.float32(f.max_depth)).astype(np.float32)
        for kind in KINDS:
            pred = stand_in(gt, kind, rng)
            correct, flying = classify(pred, gt)
            data[kind].append((f.scene, pred, correct, flying))
    return cam, data


def evaluate(items, window, r_half, sharpness, threshold):
    n_fly = n_fly_kept = n_ok = n_ok_dropped = 0
    for _, pred, correct, flying in items:
        keep = edge_confidence(pred, window, r_half, sharpness) >= threshold
        n_fly += int(flying.sum())
        n_fly_kept += int((flying & keep).sum())
        n_ok += int(correct.sum())
        n_ok_dropped += int((correct & ~keep).sum())
    fall = 100.0 * (1 - n_fly_kept / n_fly) if n_fly else float("nan")
    return n_fly, n_fly_kept, fall, n_ok, 100.0 * n_ok_dropped / max(n_ok, 1)


def bench_depth_pro_flip(preset: str, runs: int) -> None:
    """Wall time of DepthPro.infer with confidence "none" (1 image) vs "flip" (image + mirror, batch 2)."""
    import torch

    from depth_ros.models import create_model
    from depth_ros.models.depth_pro import DepthPro

    torch.manual_seed(0)
    kw = {"decoder_features": 16} if preset == "test_tiny" else {}
    base = create_model("depth_pro", weights="random", vit_preset=preset, device="auto", confidence="none", **kw)
    models = {"none": base, "flip": DepthPro(base.net, device=base.device, confidence="flip")}
    rgb = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    times = {mode: [] for mode in models}
    for mode, m in models.items():  # warm-up
        m.infer(rgb, f_px=500.0)
    for _ in range(runs):  # interleaved, so that a load change on a shared machine hits both modes
        for mode, m in models.items():
            if m.device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            m.infer(rgb, f_px=500.0)
            if m.device.type == "cuda":
                torch.cuda.synchronize()
            times[mode].append(time.perf_counter() - t)
    none, flip = (float(np.median(times[k])) for k in ("none", "flip"))
    print(f"Depth Pro {preset} (S = {base.img_size}, {base.device}, {torch.get_num_threads()} threads, 640x480, "
          f"f_px given, median of {runs}): none {1e3 * none:.0f} ms, flip {1e3 * flip:.0f} ms (x{flip / none:.2f})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=16, help="frames rendered (split between room and street)")
    ap.add_argument("--sweep", action="store_true", help="also sweep window and r_half")
    ap.add_argument("--depth-pro", nargs="*", default=[], metavar="PRESET",
                    help="also time Depth Pro infer with confidence none vs flip (random weights, this machine's "
                         "CPU/GPU) for these vit presets, e.g. test_tiny dinov2s16_384")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per Depth Pro setting (after 1 warm-up)")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    cam, data = collect(args.frames)
    print(f"{args.frames} frames, {cam.width} x {cam.height}, fx {cam.fx:.1f} px, rendered + stand-ins in "
          f"{time.perf_counter() - t0:.1f} s; X = {TOLERANCE:.0%}, neighbourhood {NEIGHBOURHOOD} x {NEIGHBOURHOOD}")
    print(f"default: window {EDGE_WINDOW}, r_half {EDGE_R_HALF}, sharpness {EDGE_SHARPNESS}, "
          f"min_confidence {DEFAULT_MIN_CONFIDENCE}\n")

    head = (f"{'stand-in':<9} {'scene':<7} {'pixels':>7} {'flying':>7} {'kept':>6} {'fall %':>7} "
            f"{'correct':>8} {'dropped %':>9}  target")
    print("flying: flying pixels in the cloud with no threshold; kept: still in it at the default threshold;")
    print("correct: correct pixels; dropped %: share of them the threshold removes\n")
    print(head)
    print("-" * len(head))
    met = {}
    for kind in KINDS:
        for scene in ("room", "street", "all"):
            items = [it for it in data[kind] if scene == "all" or it[0] == scene]
            px = sum(it[1].size for it in items)
            n_fly, kept, fall, n_ok, dropped = evaluate(items, EDGE_WINDOW, EDGE_R_HALF, EDGE_SHARPNESS,
                                                        DEFAULT_MIN_CONFIDENCE)
            verdict = ""
            if scene == "all":
                met[kind] = fall >= 90.0 and dropped <= 5.0
                verdict = "met" if met[kind] else "missed"
            print(f"{kind:<9} {scene:<7} {px:>7} {n_fly:>7} {kept:>6} {fall:>7.1f} {n_ok:>8} {dropped:>9.2f}  "
                  f"{verdict}")
    print("\ntarget (flying pixels -90 %, <= 5 % of the correct pixels dropped, all frames): "
          + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in met.items())
          + f"; the primary stand-in ({PRIMARY}) decides the exit status")
    ok_all = met[PRIMARY]

    # cost of the edge confidence itself
    pred = data["blur1"][0][1]
    import cv2
    big = cv2.resize(pred, (1280, 720), interpolation=cv2.INTER_NEAREST)
    for im, name in ((pred, "320x240"), (big, "1280x720")):
        edge_confidence(im)
        ts = []
        for _ in range(20):
            t = time.perf_counter()
            edge_confidence(im)
            ts.append(time.perf_counter() - t)
        print(f"edge_confidence {name}: {1e3 * float(np.median(ts)):.2f} ms median (numpy, this machine)")

    for preset in args.depth_pro:
        bench_depth_pro_flip(preset, args.runs)

    if args.sweep:
        print("\nsweep (all frames; fall % / correct dropped %), threshold = 0.5 (i.e. r > r_half dropped):")
        for window in (3, 5):
            for r_half in (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5):
                cells = []
                for kind in KINDS:
                    _, _, fall, _, dropped = evaluate(data[kind], window, r_half, EDGE_SHARPNESS, 0.5)
                    cells.append(f"{kind} {fall:5.1f}/{dropped:5.2f}")
                print(f"window {window} r_half {r_half:<4}: " + "  ".join(cells))
    return 0 if ok_all else 1


if __name__ == "__main__":
    raise SystemExit(main())
