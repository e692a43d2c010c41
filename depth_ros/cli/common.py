"""What every ``depth-ros`` command shares: one-line errors, model and intrinsics options, the frame
pipeline built from them, progress and logging."""
from __future__ import annotations

import argparse
import ast
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from depth_ros.models.registry import BACKENDS, MODEL_NAMES
from depth_ros.pipeline.frame import (
    CLOUD_MODES,
    DOMAIN_MODES,
    SCALE_MODES,
    FrameProcessor,
    PipelineConfig,
    check_domain,
)
from depth_ros.pipeline.intrinsics import GivenIntrinsics, IntrinsicsUnavailable
from depth_ros.pipeline.loading import ModelLoadError, load_model, make_resolver, one_line

DEFAULTS = PipelineConfig()


class CliError(Exception):
    """A user-facing error; the message is printed as one line."""


def log_fn(quiet: bool) -> Callable[[str], None]:
    def log(text: str) -> None:
        if not quiet:
            print(f"[depth-ros] {text}", file=sys.stderr, flush=True)
    return log


def parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        low = text.lower()
        if low in ("true", "false"):
            return low == "true"
        return text


def key_values(items, option: str) -> Dict[str, Any]:
    cfg: Dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise CliError(f"{option} expects KEY=VALUE, got '{item}'")
        k, _, v = item.partition("=")
        cfg[k.strip().replace("-", "_")] = parse_value(v.strip())
    return cfg


def model_config(args) -> Dict[str, Any]:
    cfg: Dict[str, Any] = {}
    if getattr(args, "backbone", None):
        cfg["backbone"] = args.backbone
    if getattr(args, "vit_preset", None):
        cfg["vit_preset"] = args.vit_preset
    cfg.update(key_values(getattr(args, "model_arg", None), "--model-arg"))
    return cfg


def progress(total: Optional[int], args):
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc="depth", file=sys.stderr, dynamic_ncols=True,
                disable=args.quiet or args.no_progress or (total is not None and total <= 1))


@dataclass
class Session:
    """The loaded model and the frame pipeline of one command."""

    model: Any
    name: str
    weights: str  # what was loaded: a path, "random" or "default"
    random: bool
    config: Dict[str, Any]
    load_s: float
    processor: FrameProcessor
    log: Callable[[str], None]

    def check_intrinsics(self) -> None:
        try:
            self.processor.resolver.check_available()
        except IntrinsicsUnavailable as exc:
            raise CliError(f"{exc}: pass --fx (and --fy/--cx/--cy) or --hfov, or --fallback-hfov") from None


def open_session(args, log: Callable[[str], None]) -> Session:
    """Model + intrinsics policy + frame pipeline from the command-line options (one-line CliError)."""
    resolve_cloud_options(args)
    weights = args.weights or None
    random = weights == "random"
    if random and not args.allow_random_weights:
        raise CliError("--weights random gives an untrained network; add --allow-random-weights if that is really "
                       "wanted (tests, smoke runs)")
    try:
        given = GivenIntrinsics(args.fx, args.fy, args.cx, args.cy, args.hfov)
        config = PipelineConfig(output_width=0, min_range=args.min_range, max_range=args.max_range,
                                min_confidence=args.min_confidence, cloud_mode=args.cloud_mode,
                                cloud_stride=args.cloud_stride, cloud_color=True, voxel_size=args.voxel_size,
                                domain=args.domain, scale_stabilization=args.scale_stabilization)
    except ValueError as exc:
        raise CliError(one_line(exc)) from None
    focal_weights = args.focal_weights or None
    if focal_weights == "random" and not args.allow_random_weights:
        raise CliError("--focal-weights random needs --allow-random-weights")
    if not 0 <= args.fallback_hfov < 180:
        raise CliError(f"--fallback-hfov must be in [0, 180) degrees, got {args.fallback_hfov}")
    cfg = model_config(args)
    t0 = time.perf_counter()
    try:
        model = load_model(args.model, weights, args.device, args.precision, backend=args.backend, config=cfg)
    except ModelLoadError as exc:
        hint = "" if random or "weights" not in str(exc) else \
            " (or, for a smoke test only: --weights random --allow-random-weights)"
        raise CliError(f"{exc}{hint}") from None
    problem, ignored = check_domain(model.capabilities, args.domain)
    if problem:
        raise CliError(f"model '{args.model}' rejected --domain: {problem}")
    if ignored:
        log(f"note: model '{args.model}' has no domain switch; --domain {args.domain} is ignored")
    if random:
        log(f"warning: {args.model} with RANDOM weights: outputs are not a depth result")

    def say(level: str, text: str) -> None:
        log(text if level == "info" else f"{level}: {text}")

    settings = {"focal_samples": max(1, args.focal_samples), "fallback_hfov_deg": args.fallback_hfov,
                "invalid_camera_info": args.invalid_camera_info, "camera_info_timeout": 0.0,
                "focal_estimator": "depth_pro", "focal_estimator_weights": focal_weights, "device": args.device,
                "precision": args.precision}
    resolver = make_resolver(model, settings, key_values(args.focal_arg, "--focal-arg"), log=say, given=given)
    return Session(model, args.model, weights or "default", random, cfg, time.perf_counter() - t0,
                   FrameProcessor(model, config, resolver), log)


def add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default="zoedepth_nk",
                   help=f"{', '.join(MODEL_NAMES)} or package.module:ClassName (default zoedepth_nk)")
    g.add_argument("--weights", default=None,
                   help="checkpoint path (an .onnx file with --backend onnxruntime); default: the cache "
                        "($DEPTH_ROS_CACHE or ~/.cache/depth_ros) or a download; 'random' = untrained "
                        "(needs --allow-random-weights)")
    g.add_argument("--backend", default="torch", choices=BACKENDS, help="inference backend (default torch)")
    g.add_argument("--allow-random-weights", action="store_true", help="permit --weights random (smoke tests only)")
    g.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N, mps")
    g.add_argument("--precision", default="float32", choices=("float32", "float16", "bfloat16"))
    g.add_argument("--domain", default=DEFAULTS.domain, choices=DOMAIN_MODES,
                   help="ZoeDepth-NK head: stable (router with hysteresis per video / bag camera; default), auto "
                        "(the router picks per frame), indoor, outdoor")
    g.add_argument("--backbone", default=None, help="model config 'backbone' (ZoeDepth), e.g. test_tiny")
    g.add_argument("--vit-preset", default=None, help="model config 'vit_preset' (Depth Pro), e.g. test_tiny")
    g.add_argument("--model-arg", action="append", metavar="KEY=VALUE",
                   help="extra model constructor argument (repeatable), e.g. decoder_features=16")
    i = p.add_argument_group("intrinsics (default: CameraInfo, else estimated with Depth Pro)")
    i.add_argument("--fx", type=float, help="focal length in pixels (fy defaults to fx)")
    i.add_argument("--fy", type=float)
    i.add_argument("--cx", type=float, help="principal point x (default: (width-1)/2)")
    i.add_argument("--cy", type=float, help="principal point y (default: (height-1)/2)")
    i.add_argument("--hfov", type=float, help="horizontal field of view in degrees (instead of --fx)")
    i.add_argument("--focal-weights", default=None,
                   help="Depth Pro checkpoint for the focal estimate when the model cannot estimate it")
    i.add_argument("--focal-arg", action="append", metavar="KEY=VALUE", help="Depth Pro estimator config")
    i.add_argument("--focal-samples", type=int, default=5,
                   help="estimates per source combined (median) before the focal length is frozen")
    i.add_argument("--fallback-hfov", type=float, default=0.0,
                   help="horizontal FOV (deg) when nothing else gives intrinsics (default 0: an error)")
    i.add_argument("--invalid-camera-info", choices=("skip", "estimate"), default="skip",
                   help="a malformed CameraInfo (wrong size, bad numbers): skip the frame or estimate")
    o = p.add_argument_group("outputs")
    o.add_argument("--min-range", type=float, default=DEFAULTS.min_range, help="depth below this (m) is invalid")
    o.add_argument("--max-range", type=float, default=DEFAULTS.max_range, help="depth above this (m) is invalid")
    o.add_argument("--min-confidence", type=float, default=DEFAULTS.min_confidence,
                   help="cloud points below this confidence are dropped")
    o.add_argument("--cloud-mode", choices=CLOUD_MODES, default=None,
                   help="organized (H x W, NaN holes; default), stride (every --cloud-stride-th pixel, 1 x N "
                        "dense; implied by --cloud-stride > 1) or voxel (--voxel-size grid)")
    o.add_argument("--cloud-stride", type=int, default=None, help=f"pixel stride (default {DEFAULTS.cloud_stride})")
    o.add_argument("--voxel-size", type=float, default=DEFAULTS.voxel_size, help="voxel edge (m) for --cloud-mode voxel")
    o.add_argument("--scale-stabilization", choices=SCALE_MODES, default=DEFAULTS.scale_stabilization,
                   help="hold the metric scale from frame to frame per camera: off (default), static, or odometry "
                        "(bags with nav_msgs/Odometry: --odometry-topic)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or log lines (summary only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def resolve_cloud_options(args) -> None:
    """``--cloud-stride N`` alone means ``--cloud-mode stride``; defaults as the node's."""
    if args.cloud_stride is not None and args.cloud_stride < 1:
        raise CliError(f"--cloud-stride must be >= 1, got {args.cloud_stride}")
    if args.cloud_mode is None:
        args.cloud_mode = "stride" if (args.cloud_stride or 1) > 1 else DEFAULTS.cloud_mode
    if args.cloud_stride is None:
        args.cloud_stride = DEFAULTS.cloud_stride


def focal_text(records) -> str:
    fs = [r["focal_px"] for r in records]
    sources = sorted({r["focal_source"] for r in records})
    if max(fs) - min(fs) < 0.05:
        return f"{fs[0]:.1f} px; source: {'; '.join(sources)}"
    return f"{min(fs):.1f}-{max(fs):.1f} px per frame; source: {'; '.join(sources)}"
