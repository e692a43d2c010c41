"""Scale stabilisation and router hysteresis, measured on rendered sequences with ground truth.

    .venv/bin/python bench/bench_scale.py [--frames 80] [--width 256] [--seed 0] [--quick]

Scale: each sequence (depth_ros.demo.sequences) is fed through a flickering-network stand-in
(ground truth x per-frame random scale: 3 % jitter, jumps of 10-30 % lasting 1-3 frames with 4 % chance per
frame, 2 % per-pixel noise, a +3 % bias) and stabilised in each mode. Per-frame log-scale = median of
log(depth / ground truth) over pixels with ground truth. Columns:

  jitter    std of the frame-to-frame differences of the log-scale ('step': the 10 frames from the step left out)
  |s-1|     mean absolute scale error against ground truth, %
  AbsRel    mean |d - gt| / gt, raw network -> after the mode
  d1        share of pixels with max(d/gt, gt/d) < 1.25, raw -> after
  follow    'step' only: frames from the true step until the output stays within a quarter of the step of
            the network's new level for 5 frames (1 = at the step frame)
  restarts  track restarts (the first frame not counted)

Router: a synthetic router (evidence + AR(1) noise, depth_ros.demo.sequences.SyntheticRouter) on an
ambiguous scene (evidence 0: false switches per 1000 frames) and on indoor -> outdoor changes (evidence
-3 -> +3: frames from the change to the switch), for a grid of (margin, frames).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from depth_ros.demo import render as R  # noqa: E402
from depth_ros.demo.sequences import FlickeringNetwork, SyntheticRouter, make_sequence, odometry_stream  # noqa: E402
from depth_ros.pipeline.router import RouterHysteresis  # noqa: E402
from depth_ros.pipeline.scale import ScaleStabilizer  # noqa: E402


def frame_metrics(pred, gt, valid):
    m = valid & np.isfinite(pred) & (pred > 0)
    p, g = pred[m].astype(np.float64), gt[m].astype(np.float64)
    ls = float(np.median(np.log(p / g)))
    absrel = float(np.mean(np.abs(p - g) / g))
    d1 = float(np.mean(np.maximum(p / g, g / p) < 1.25))
    return ls, absrel, d1


def run_case(seq, net, mode, motions):
    stab = None if mode == "none" else ScaleStabilizer(mode)
    ls, ar, d1, ls_raw, ar_raw, d1_raw = [], [], [], [], [], []
    t_total = 0.0
    for k in range(len(seq)):
        raw = net.predict(k, seq.depth[k])
        valid = seq.valid_gt(k)
        a = frame_metrics(raw, seq.depth[k], valid)
        ls_raw.append(a[0]), ar_raw.append(a[1]), d1_raw.append(a[2])
        if stab is None:
            out = raw
        else:
            t0 = time.perf_counter()
            out, _info = stab.update(raw, seq.camera, motions[k] if mode == "odometry" else None)
            t_total += time.perf_counter() - t0
        b = frame_metrics(out, seq.depth[k], valid)
        ls.append(b[0]), ar.append(b[1]), d1.append(b[2])
    return dict(ls=np.array(ls), absrel=np.mean(ar), d1=np.mean(d1), absrel_raw=np.mean(ar_raw),
                d1_raw=np.mean(d1_raw), restarts=0 if stab is None else stab.restarts,
                ms=1000 * t_total / len(seq))


def jitter(ls, step_at=None, window=10):
    """Std of frame-to-frame log-scale differences; with a true step, the differences from the step to
    ``window`` frames after it are left out (each mode follows the step at a different frame)."""
    d = np.diff(ls)  # d[i] = ls[i + 1] - ls[i]
    if step_at is not None:
        d = np.delete(d, np.arange(step_at - 1, min(step_at - 1 + window, d.size)))
    return float(np.std(d))


def follow_frames(ls, level, step_at, step, hold=5):
    tol = abs(step) / 4
    for k in range(step_at, len(ls) - hold + 1):
        if np.all(np.abs(ls[k:k + hold] - level[k:k + hold]) < tol):
            return k - step_at + 1
    return None


def _load_or_render(name, args, cam):
    """Render a sequence, or reuse it from ``--cache`` (a pickle keyed by the arguments)."""
    if not args.cache:
        return make_sequence(name, args.frames, cam)
    import pickle

    path = Path(args.cache) / f"seq_{name}_{args.frames}_{cam.width}x{cam.height}_r{R.RENDER_VERSION}.pkl"
    if path.is_file():
        with open(path, "rb") as f:
            return pickle.load(f)
    seq = make_sequence(name, args.frames, cam)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(seq, f)
    return seq


def bench_scale(args):
    cam = R.default_intrinsics(args.width, args.width * 3 // 4)
    cases = [("room", "room", {}), ("room-noisy-odom", "room", {"odom_noise": True}), ("street", "street", {}),
             ("pan", "pan", {}), ("cut", "cut", {}), ("step", "room", {"step": True})]
    if args.quick:
        cases = [c for c in cases if c[0] in ("room", "step")]
    rendered = {}
    print(f"scale stabilisation: {args.frames} frames per sequence, {cam.width}x{cam.height}, seed {args.seed}")
    hdr = (f"{'sequence':<16} {'mode':<9} {'jitter':>7} {'x less':>7} {'|s-1|%':>7} {'AbsRel raw->out':>16} "
           f"{'d1 raw->out':>14} {'follow':>6} {'restarts':>8} {'ms/frame':>8}")
    print(hdr)
    print("-" * len(hdr))
    summary = []
    for label, name, opt in cases:
        if name not in rendered:
            t0 = time.perf_counter()
            rendered[name] = _load_or_render(name, args, cam)
            print(f"  (rendered '{name}' in {time.perf_counter() - t0:.1f} s)")
        seq = rendered[name]
        step_at = args.frames // 2 if opt.get("step") else None
        net = FlickeringNetwork(len(seq), seed=args.seed, bias=0.03, step_at=step_at, step=0.2)
        noise = (0.01, 0.2) if opt.get("odom_noise") else (0.0, 0.0)
        motions = odometry_stream(seq.poses, noise[0], noise[1], seed=args.seed + 1)
        base = None
        for mode in ("none", "static", "odometry"):
            r = run_case(seq, net, mode, motions)
            j = jitter(r["ls"], step_at)
            if mode == "none":
                base = j
            err = 100 * float(np.mean(np.abs(np.exp(r["ls"]) - 1)))
            fol = "-"
            if step_at is not None:
                f = follow_frames(r["ls"], net.level, step_at, 0.2)
                fol = "never" if f is None else str(f)
            print(f"{label:<16} {mode:<9} {j:7.4f} {base / j:7.1f} {err:7.2f} "
                  f"{r['absrel_raw']:7.4f}->{r['absrel']:7.4f} {r['d1_raw']:6.3f}->{r['d1']:6.3f} {fol:>6} "
                  f"{r['restarts']:8d} {r['ms']:8.1f}")
            summary.append((label, mode, base / j, r["absrel"] - r["absrel_raw"], fol))
    return summary


def _latency(margin, frames, trials):
    lat = []
    for lg_seq in trials:
        h = RouterHysteresis(margin=margin, frames=frames, initial="indoor")
        when = None
        for k, lg in enumerate(lg_seq):
            h.update(lg)
            if k >= 30 and when is None and h.head == "outdoor":
                when = k - 30 + 1  # the head used from the next frame on
        lat.append(when if when is not None else len(lg_seq) - 30 + 1)
    return np.array(lat)


def bench_router(args):
    n_amb = 20000
    print(f"\nrouter hysteresis: synthetic router, logit noise sigma={args.router_sigma} "
          f"(AR(1) rho={args.router_rho}); "
          f"switches per 1000 frames on an ambiguous scene (evidence 0, {n_amb} frames); frames from an "
          f"indoor->outdoor change to the switch (200 trials; evidence -3 -> +3 'clear', -2 -> +2 'weak'; "
          f"31 = not within 30 frames)")
    hdr = (f"{'margin (prob)':>13} {'frames':>6} {'switches/1000':>13} {'clear mean':>10} {'clear max':>9} "
           f"{'weak mean':>9} {'weak max':>8}")
    print(hdr)
    print("-" * len(hdr))
    amb = SyntheticRouter(args.router_sigma, args.router_rho, seed=args.seed).logits(np.zeros(n_amb))
    trials = {}
    for ev in (3.0, 2.0):
        trials[ev] = [SyntheticRouter(args.router_sigma, args.router_rho, seed=1000 + t).logits(
            np.r_[np.full(30, -ev), np.full(30, ev)]) for t in range(200)]
    for margin in (0.0, 0.2, 0.4, 0.5, 0.6):
        for frames in (1, 3, 5, 8):
            h = RouterHysteresis(margin=margin, frames=frames, initial="indoor")
            for lg in amb:
                h.update(lg)
            clear, weak = _latency(margin, frames, trials[3.0]), _latency(margin, frames, trials[2.0])
            print(f"{margin:13.1f} {frames:6d} {1000.0 * h.switches / n_amb:13.1f} {clear.mean():10.1f} "
                  f"{clear.max():9d} {weak.mean():9.1f} {weak.max():8d}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=80)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="room and step only")
    ap.add_argument("--router-sigma", type=float, default=1.0)
    ap.add_argument("--router-rho", type=float, default=0.6)
    ap.add_argument("--cache", default=None, help="folder to keep rendered sequences in between runs")
    ap.add_argument("--skip-router", action="store_true")
    ap.add_argument("--skip-scale", action="store_true")
    args = ap.parse_args(argv)
    if not args.skip_scale:
        summary = bench_scale(args)
        print("\ntargets: jitter reduced >= 10x, AbsRel no worse than raw, a true step followed within 10 frames")
        for label, mode, red, dabs, fol in summary:
            if mode == "none":
                continue
            ok = red >= 10 and dabs <= 1e-4 and (fol == "-" or (fol != "never" and int(fol) <= 10))
            print(f"  {label:<16} {mode:<9} {'met' if ok else 'NOT met'}")
    if not args.skip_router:
        bench_router(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
