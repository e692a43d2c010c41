#!/usr/bin/env python3
"""One GPU check: latency, peak memory and error of every precision / compile / runtime mode, one table.

Models (random weights, batch 1): ZoeDepth-NK (BEiT-L, network input 384x512, ``ZoeDepthNet.forward``)
and Depth Pro (ViT-L ``dinov2l16_384``, 1536x1536, ``DepthProNet.forward`` with the FOV head).
Modes, in this order (the most important first, so that a time limit cuts the least useful ones):

  eager float32 | eager bfloat16 | eager float16 | cuda graph bfloat16 (Depth Pro: the whole forward;
  ZoeDepth: the export graph, both heads + per-image select, no host sync) | compile default bfloat16 |
  onnxruntime float32 / float16 (CUDA EP; when onnxruntime-gpu is installed; exported with
  ``depth_ros.models.export``, check skipped: the tests prove parity; opened as the backend opens it,
  attention fused into ONNX Runtime's MultiHeadAttention) | compile max-autotune-no-cudagraphs
  bfloat16

Per mode: p50 / p90 latency (ms, CUDA-synchronised, after warm-up), peak CUDA memory (GiB, PyTorch
allocator; not for ONNX Runtime), and the error against eager float32 on the same input (depth: max |diff|
/ max |ref| and mean |diff| / |ref|; Depth Pro FOV: |diff| in degrees; NK router logits: max |diff|).
Each mode runs in its own process with a timeout (OOM or a slow autotune cannot stop the table); the
whole run keeps to ``--budget`` seconds (default 280). Then the node's end-to-end latency at 640x480
(``bench/bench_node.py`` in a subprocess, when present and ROS 2 is importable; skipped with a note
otherwise).

    .venv/bin/python bench/gpu_check.py --out out/gpu_check          # writes out/gpu_check.json and .md
    .venv/bin/python bench/gpu_check.py --smoke --out /tmp/gc       # CPU, tiny configs, seconds (tests)

``--smoke`` runs in-process on the CPU with the tiny test configurations: eager modes and ONNX Runtime
(CPU EP) run, CUDA graphs and compile modes are listed as skipped. It checks the script, not speed.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODELS = ("zoedepth_nk", "depth_pro")
MODES = ("eager float32", "eager bfloat16", "eager float16", "cuda graph bfloat16", "compile default bfloat16",
         "onnxruntime float32", "onnxruntime float16", "compile max-autotune-no-cudagraphs bfloat16")
SMOKE_MODES = ("eager float32", "eager bfloat16", "eager float16", "cuda graph bfloat16", "compile default bfloat16",
               "onnxruntime float32", "compile max-autotune-no-cudagraphs bfloat16")
FULL = {"zoedepth_nk": {"backbone": "beitl16_384", "size": (384, 512)},
        "depth_pro": {"vit_preset": "dinov2l16_384", "decoder_features": 256}}
TINY = {"zoedepth_nk": {"backbone": "test_tiny", "size": (64, 96)},
        "depth_pro": {"vit_preset": "test_tiny", "decoder_features": 32}}


# ---------------------------------------------------------------------------------------------
# One (model, mode) measurement
# ---------------------------------------------------------------------------------------------
def _build(model: str, smoke: bool, device):
    """fp32 network on ``device`` (seeded), its input, and a function net -> dict of output tensors."""
    import torch

    cfg = (TINY if smoke else FULL)[model]
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    if model == "zoedepth_nk":
        from depth_ros.models.zoedepth import ZoeDepthNet

        with torch.device(device):
            net = ZoeDepthNet("nk", cfg["backbone"]).eval()
        h, w = cfg["size"]
        x = torch.rand(1, 3, h, w, generator=gen).to(device)

        def run(n, inp):
            out = n(inp)
            return {"depth": out["metric_depth"], "logits": out["domain_logits"]}
    else:
        from depth_ros.models.depth_pro import DepthProConfig, DepthProNet

        config = DepthProConfig(vit_preset=cfg["vit_preset"], decoder_features=cfg["decoder_features"])
        with torch.device(device):
            net = DepthProNet(config).eval()
        s = config.img_size
        x = (torch.rand(1, 3, s, s, generator=gen) * 2 - 1).to(device)

        def run(n, inp):
            c, fov = n(inp)
            return {"depth": c, "fov": fov}
    with torch.no_grad():   # random heads give near-constant depth: perturb so that errors mean something
        for name, p in net.named_parameters():
            backbone = name.startswith(("core.", "encoder.", "decoder."))
            p.add_(torch.randn(p.shape, generator=gen).to(device) * (0.02 if backbone else 0.2))
    return net, x, run


def _errors(out, ref):
    import torch

    err = {}
    d, r = out["depth"].float(), ref["depth"].float()
    err["max_rel_error"] = float((d - r).abs().max() / r.abs().max().clamp_min(1e-12))
    err["mean_rel_error"] = float(((d - r).abs() / r.abs().clamp_min(1e-6)).mean())
    if "fov" in ref:
        err["fov_abs_error_deg"] = float((out["fov"].float() - ref["fov"].float()).abs().max())
    if "logits" in ref:
        err["logits_abs_error"] = float((out["logits"].float() - ref["logits"].float()).abs().max())
    if not torch.isfinite(d).all():
        err["non_finite"] = True
    return err


def _time(fn, iters: int, warmup: int, cuda: bool):
    import torch

    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    out = None
    for _ in range(max(1, iters)):
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        if cuda:
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    p90 = times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    return statistics.median(times), p90, peak, out


def measure(model: str, mode: str, smoke: bool, iters: int, warmup: int) -> dict:
    import torch

    cuda = torch.cuda.is_available() and not smoke
    device = torch.device("cuda" if cuda else "cpu")
    row = {"model": model, "mode": mode, "status": "ok", "p50_ms": None, "p90_ms": None, "peak_gib": None,
           "max_rel_error": None}
    kind, dtype_name = mode.split()[0], mode.split()[-1]
    if kind in ("cuda", "compile") and not cuda:
        row["status"] = "skipped: needs CUDA" if kind == "cuda" else "skipped in --smoke (compiles for minutes)"
        return row
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    net, x, run = _build(model, smoke, device)
    with torch.inference_mode():
        ref = {k: v.clone() for k, v in run(net, x).items()}
    dtype = getattr(torch, dtype_name)

    if kind == "onnxruntime":
        return _measure_onnx(row, model, net, x, ref, dtype_name, smoke, iters, warmup, cuda)

    if dtype != torch.float32:
        if model == "zoedepth_nk":
            net.core.to(dtype)               # heads/router stay float32 (as ZoeDepth(dtype=...))
        else:
            net.set_precision(dtype)         # FP32_MODULES stay float32
    xin = x if model == "zoedepth_nk" else x.to(dtype)
    fn = None
    if kind == "eager":
        def fn():
            return run(net, xin)
    elif kind == "compile":
        compile_mode = mode.split()[1]
        if model == "zoedepth_nk":
            net.compile_parts(mode=compile_mode)     # what ZoeDepth(compile=...) does
            fwd = net
        else:
            fwd = torch.compile(net, mode=compile_mode)

        def fn():
            return run(fwd, xin)
        t = time.perf_counter()
        with torch.inference_mode():
            fn()
        row["compile_s"] = round(time.perf_counter() - t, 1)
    elif kind == "cuda":
        if model == "zoedepth_nk":
            from depth_ros.models.export import ZoeDepthGraph

            graph_mod = ZoeDepthGraph(net, *x.shape[-2:]).eval()

            def body(inp):
                d, _, logits, _, _ = graph_mod(inp)
                return {"depth": d, "logits": logits}
        else:
            def body(inp):
                return run(net, inp)
        static_in = xin.clone()
        with torch.inference_mode():
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(2):
                    body(static_in)
            torch.cuda.current_stream().wait_stream(s)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = body(static_in)

        def fn():
            graph.replay()
            return static_out
    with torch.inference_mode():
        row["p50_ms"], row["p90_ms"], row["peak_gib"], out = _time(fn, iters, warmup, cuda)
        row.update(_errors(out, ref))
    return row


def _measure_onnx(row, model, net, x, ref, precision, smoke, iters, warmup, cuda):
    import numpy as np
    import torch

    try:
        import onnxruntime as ort
    except ImportError:
        row["status"] = "skipped: onnxruntime not installed"
        return row
    provider = "CUDAExecutionProvider" if cuda else "CPUExecutionProvider"
    if provider not in ort.get_available_providers():
        row["status"] = f"skipped: this onnxruntime has no {provider} (install onnxruntime-gpu)"
        return row
    from depth_ros.models.depth_pro import DepthPro
    from depth_ros.models.export import export_model
    from depth_ros.models.zoedepth import ZoeDepth

    cpu_net = net.to("cpu")
    wrapped = (ZoeDepth.from_net(cpu_net, device="cpu") if model == "zoedepth_nk"
               else DepthPro(cpu_net, device="cpu", confidence="none"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{model}.onnx"
        t = time.perf_counter()
        size = tuple(x.shape[-2:])
        export_model(wrapped, path, precision=precision, check=False,
                     **({"height": size[0], "width": size[1]} if model == "zoedepth_nk" else {}))
        row["export_s"] = round(time.perf_counter() - t, 1)
        from depth_ros.models.onnx_backend import open_session

        sess, fused = open_session(path, [(provider, {})])     # as the backend opens it: attention fused
        names = [o.name for o in sess.get_outputs()]
        xin = x.float().cpu().numpy()
        if cuda:   # keep input and outputs on the GPU (IO binding), as a deployment would
            binding = sess.io_binding()
            x_ort = ort.OrtValue.ortvalue_from_numpy(xin, "cuda", 0)
            binding.bind_ortvalue_input("image", x_ort)
            for n in names:
                binding.bind_output(n, "cuda")

            def fn():
                sess.run_with_iobinding(binding)
                return binding
        else:
            def fn():
                return sess.run(names, {"image": xin})
        row["p50_ms"], row["p90_ms"], _, last = _time(fn, iters, warmup, False)   # run_with_iobinding syncs
        outs = dict(zip(names, binding.copy_outputs_to_cpu() if cuda else last))
    got = {"depth": torch.from_numpy(np.asarray(outs["metric_depth" if model == "zoedepth_nk"
                                                     else "canonical_inverse_depth"]))}
    if "fov_deg" in outs:
        got["fov"] = torch.from_numpy(outs["fov_deg"]).view(-1, 1, 1, 1)
    if "domain_logits" in outs:
        got["logits"] = torch.from_numpy(outs["domain_logits"])
    row.update(_errors(got, {k: v.cpu() for k, v in ref.items()}))
    row["note"] = f"{provider}; {fused} attention blocks fused; peak memory not tracked"
    return row


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------
def _worker(args) -> int:
    row = measure(args.worker[0], args.worker[1], args.smoke, args.iters, args.warmup)
    Path(args.worker[2]).write_text(json.dumps(row))
    return 0


def _run_isolated(model, mode, args, timeout) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        res = Path(tmp) / "row.json"
        cmd = [sys.executable, __file__, "--worker", model, mode, str(res), "--iters", str(args.iters),
               "--warmup", str(args.warmup)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
        except subprocess.TimeoutExpired:
            return {"model": model, "mode": mode, "status": f"timeout after {timeout:.0f} s"}
        if proc.returncode != 0 or not res.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            return {"model": model, "mode": mode, "status": f"failed: {tail[0][:200]}"}
        return json.loads(res.read_text())


def node_latency(timeout: float, extra_args) -> dict:
    script = REPO / "bench" / "bench_node.py"
    if not script.exists():
        return {"status": "skipped: bench/bench_node.py not present"}
    try:
        import rclpy  # noqa: F401
    except ImportError:
        return {"status": "skipped: ROS 2 (rclpy) not importable"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "node.json"
        cmd = [sys.executable, str(script), "--sizes", "640x480", "--frames", "30", "--warmup", "5",
               "--json", str(out)] + list(extra_args)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
        except subprocess.TimeoutExpired:
            return {"status": f"timeout after {timeout:.0f} s"}
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            return {"status": f"failed: {tail[0][:200]}"}
        data = json.loads(out.read_text())
    r = data["results"][0]
    e2e = r.get("end_to_end_ms") or {}
    return {"status": "ok", "size": r.get("size"), "end_to_end_p50_ms": e2e.get("median"),
            "end_to_end_p95_ms": e2e.get("p95"), "node": r.get("node"),
            "note": "bench_node.py's node (its model as configured there); network latency adds per frame"}


def marigold_latency(timeout: float, smoke: bool) -> dict:
    """bench/bench_marigold.py in a subprocess (CUDA fp32 + bf16, 1 step at 768 px, SD2-size random weights,
    also with a TAESD-size VAE; ``smoke``: the tiny pipeline on the CPU): its result lines."""
    script = REPO / "bench" / "bench_marigold.py"
    if not script.exists():
        return {"status": "skipped: bench/bench_marigold.py not present"}
    cmd = [sys.executable, str(script)] + (["--smoke"] if smoke else ["--skip-cpu", "--taesd", "--repeats", "3"])
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"status": f"timeout after {timeout:.0f} s"}
    lines = [ln.strip() for ln in proc.stdout.splitlines() if " s/frame" in ln or "per frame" in ln or "ms" in ln]
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"status": f"failed: {tail[0][:200]}", "lines": lines}
    return {"status": "ok", "lines": lines[-12:]}


def _fmt(v, nd=2):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}e}" if (abs(v) < 1e-2 and v != 0) else f"{v:.{nd}f}"
    return str(v)


def markdown(result: dict) -> str:
    lines = [f"# depth_ros GPU check ({result['device']})", "",
             f"torch {result['torch']}, onnxruntime {result.get('onnxruntime') or '-'}, "
             f"{'smoke (tiny configs, CPU)' if result['smoke'] else 'full configs'}; batch 1, random weights; "
             f"{result['iters']} timed runs after {result['warmup']} warm-up. Total {result['total_s']:.0f} s.", "",
             "| model | mode | p50 ms | p90 ms | peak GiB | depth max rel err | depth mean rel err | FOV err deg "
             "| logits err | status |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['model']} | {r['mode']} | {_fmt(r.get('p50_ms'))} | {_fmt(r.get('p90_ms'))} | "
                     f"{_fmt(r.get('peak_gib'))} | {_fmt(r.get('max_rel_error'))} | {_fmt(r.get('mean_rel_error'))} | "
                     f"{_fmt(r.get('fov_abs_error_deg'))} | {_fmt(r.get('logits_abs_error'))} | "
                     f"{r.get('status')}{'; ' + r['note'] if r.get('note') else ''}"
                     f"{'; compile ' + str(r['compile_s']) + ' s' if r.get('compile_s') else ''} |")
    node = result["node"]
    lines += ["", "Node end-to-end at 640x480: " + (
        f"p50 {node['end_to_end_p50_ms']:.1f} ms, p95 {node['end_to_end_p95_ms']:.1f} ms ({node['note']})"
        if node.get("status") == "ok" else node.get("status", "-"))]
    mg = result.get("marigold") or {}
    lines += ["", f"Marigold (bench/bench_marigold.py): {mg.get('status', '-')}"] + [f"    {ln}" for ln in mg.get("lines", [])]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="gpu_check", help="output path stem: writes STEM.json and STEM.md")
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny configs, in-process (seconds)")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--modes", nargs="+", default=None, help=f"subset of: {'; '.join(MODES)}")
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--budget", type=float, default=190.0,
                    help="seconds for the (model, mode) rows (GPU); with the node (45 s) and Marigold (60 s) the "
                         "whole run stays under 5 minutes")
    ap.add_argument("--mode-timeout", type=float, default=120.0, help="seconds per (model, mode) process")
    ap.add_argument("--node-timeout", type=float, default=45.0)
    ap.add_argument("--skip-node", action="store_true")
    ap.add_argument("--marigold-timeout", type=float, default=60.0)
    ap.add_argument("--skip-marigold", action="store_true")
    ap.add_argument("--node-args", nargs=argparse.REMAINDER, default=[], help="passed on to bench/bench_node.py")
    ap.add_argument("--worker", nargs=3, metavar=("MODEL", "MODE", "RESULT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.iters is None:
        args.iters = 2 if args.smoke else 30
    if args.warmup is None:
        args.warmup = 0 if args.smoke else 5
    if args.worker:
        return _worker(args)

    import torch

    cuda = torch.cuda.is_available() and not args.smoke
    if not cuda and not args.smoke:
        print("no CUDA device: run with --smoke for the CPU check of this script", file=sys.stderr)
        return 2
    modes = args.modes or list(SMOKE_MODES if args.smoke else MODES)
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        ap.error(f"unknown mode(s) {unknown}; known: {'; '.join(MODES)}")
    try:
        import onnxruntime as ort
        ort_version = ort.__version__
    except ImportError:
        ort_version = None
    t0 = time.perf_counter()
    rows = []
    for mode in modes:
        for model in args.models:
            left = args.budget - (time.perf_counter() - t0)
            if args.smoke:
                row = measure(model, mode, True, args.iters, args.warmup)
            elif left < 20:
                row = {"model": model, "mode": mode, "status": "skipped: time budget spent"}
            else:
                row = _run_isolated(model, mode, args, min(args.mode_timeout, left))
            rows.append(row)
            print(f"{model:12s} {mode:45s} p50 {_fmt(row.get('p50_ms')):>9} ms  p90 {_fmt(row.get('p90_ms')):>9} ms"
                  f"  peak {_fmt(row.get('peak_gib')):>6} GiB  err {_fmt(row.get('max_rel_error')):>9}  "
                  f"{row.get('status')}", flush=True)
    if args.skip_node or args.smoke:
        node = {"status": "skipped (--smoke)" if args.smoke else "skipped (--skip-node)"}
    else:
        node = node_latency(min(args.node_timeout, max(10.0, args.budget + 60 - (time.perf_counter() - t0))),
                            args.node_args)
    marigold = ({"status": "skipped (--skip-marigold)"} if args.skip_marigold
                else marigold_latency(args.marigold_timeout, args.smoke))
    result = {"device": torch.cuda.get_device_name() if cuda else f"CPU ({platform.machine()}, "
              f"{torch.get_num_threads()} threads)", "torch": torch.__version__, "onnxruntime": ort_version,
              "smoke": args.smoke, "iters": args.iters, "warmup": args.warmup, "rows": rows, "node": node,
              "marigold": marigold,
              "total_s": time.perf_counter() - t0}
    stem = Path(args.out)
    if stem.suffix in (".json", ".md"):
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    stem.with_suffix(".md").write_text(markdown(result))
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
