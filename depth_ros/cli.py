"""``depth-ros``: metric depth for images, videos and rosbag2 recordings, without a running ROS graph.

    depth-ros infer INPUT... --out DIR [--model zoedepth_nk|depth_pro|pkg.mod:Class] [--fx ... | --hfov ...]
    depth-ros bag IN OUT --image-topic T [--camera-info-topic C]
    depth-ros demo [--quick] [--out out/demo]          (the ROS demo; see depth_ros.demo.run_demo)

Errors are printed as one line (``depth-ros: error: ...``) and the exit status is non-zero.
"""
from __future__ import annotations

import argparse
import ast
import bisect
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm", ".jp2", ".exr",
              ".hdr", ".pfm", ".sr", ".ras"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts",
              ".mts", ".ogv", ".gif"}
DEFAULT_MIN_RANGE = 0.1
DEFAULT_MAX_RANGE = 80.0


class CliError(Exception):
    """A user-facing error; the message is printed as one line."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# ==================================================================================================
# model loading


def _parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        low = text.lower()
        if low in ("true", "false"):
            return low == "true"
        return text


def model_config(args) -> Dict[str, Any]:
    cfg: Dict[str, Any] = {}
    if getattr(args, "backbone", None):
        cfg["backbone"] = args.backbone
    if getattr(args, "vit_preset", None):
        cfg["vit_preset"] = args.vit_preset
    for item in getattr(args, "model_arg", None) or []:
        if "=" not in item:
            raise CliError(f"--model-arg expects KEY=VALUE, got '{item}'")
        k, _, v = item.partition("=")
        cfg[k.strip().replace("-", "_")] = _parse_value(v.strip())
    return cfg


@dataclass
class LoadedModel:
    model: Any
    name: str
    weights: str  # what was loaded: a path, "random" or "default"
    random: bool
    config: Dict[str, Any]
    load_s: float


def load_model(args, log: Callable[[str], None]) -> LoadedModel:
    """Create the depth model from the command-line options (one-line CliError on failure)."""
    weights = args.weights or None
    random = weights == "random"
    if random and not args.allow_random_weights:
        raise CliError("--weights random gives an untrained network; add --allow-random-weights if that is really "
                       "wanted (tests, smoke runs)")
    cfg = model_config(args)
    t0 = time.perf_counter()
    from depth_ros.models import create_model
    from depth_ros.models.weights import WeightsError

    try:
        model = create_model(args.model, weights=weights, device=args.device, dtype=args.precision, **cfg)
    except WeightsError as exc:
        hint = "" if random else " (or, for a smoke test only: --weights random --allow-random-weights)"
        raise CliError(f"cannot load the weights of model '{args.model}': {_one_line(exc)}{hint}") from None
    except TypeError as exc:
        raise CliError(f"cannot create model '{args.model}' with config {cfg}: {_one_line(exc)}") from None
    except (ValueError, RuntimeError, ImportError) as exc:
        raise CliError(f"cannot create model '{args.model}': {_one_line(exc)}") from None
    domain = getattr(args, "domain", "auto")
    if domain and domain != "auto":
        if hasattr(model, "domain"):
            try:
                model.domain = domain
            except Exception as exc:
                raise CliError(f"model '{args.model}' rejected --domain {domain}: {_one_line(exc)}") from None
        else:
            log(f"note: model '{args.model}' has no domain switch; --domain {domain} is ignored")
    if random:
        log(f"warning: {args.model} with RANDOM weights: outputs are not a depth result")
    return LoadedModel(model, args.model, weights or "default", random, cfg, time.perf_counter() - t0)


# ==================================================================================================
# intrinsics


@dataclass
class _Track:
    samples: List[float] = field(default_factory=list)
    frozen: Optional[float] = None


class Intrinsics:
    """Chooses the camera of each frame, like the node: given (--fx/--hfov) > CameraInfo > estimated.

    Estimates come from the model itself when it estimates focal lengths (Depth Pro) or from a Depth Pro
    focal-length estimator loaded on first need; per source (a video, an image, a bag topic) and image
    size the first ``samples`` estimates are combined as a median, which is then frozen.
    """

    def __init__(self, args, model: Any, log: Callable[[str], None]):
        self.fx, self.fy, self.cx, self.cy = args.fx, args.fy, args.cx, args.cy
        self.hfov = args.hfov
        if (self.fy is not None or self.cx is not None or self.cy is not None) and self.fx is None:
            raise CliError("--fy/--cx/--cy need --fx as well")
        if self.fx is not None and self.hfov is not None:
            raise CliError("give either --fx (with --fy/--cx/--cy) or --hfov, not both")
        if self.fx is not None and not (math.isfinite(self.fx) and self.fx > 0):
            raise CliError(f"--fx must be a positive focal length in pixels, got {self.fx}")
        if self.hfov is not None and not (0 < self.hfov < 180):
            raise CliError(f"--hfov must be in (0, 180) degrees, got {self.hfov}")
        self.model = model
        self.model_estimates = bool(getattr(model, "estimates_focal", False))
        self.samples = max(1, int(getattr(args, "focal_samples", 5) or 1))
        self._args = args
        self._log = log
        self._estimator = None
        self._estimator_error: Optional[str] = None
        self._tracks: Dict[tuple, _Track] = {}

    @property
    def fixed(self) -> bool:
        return self.fx is not None or self.hfov is not None

    def check_available(self) -> None:
        """Fail early (one line) when frames without CameraInfo could not be given intrinsics."""
        if self.fixed or self.model_estimates:
            return
        if self._get_estimator() is None:
            raise CliError(f"no intrinsics: pass --fx (and --fy/--cx/--cy) or --hfov; estimating them needs Depth "
                           f"Pro: {self._estimator_error}")

    def fixed_camera(self, w: int, h: int):
        from depth_ros.core.camera import PinholeCamera

        if self.fx is not None:
            cam = PinholeCamera.from_focal(w, h, self.fx, fy=self.fy, cx=self.cx, cy=self.cy)
            return cam, "given: --fx"
        cam = PinholeCamera.from_hfov(w, h, self.hfov)
        return cam, f"given: --hfov {self.hfov:g}"

    def _get_estimator(self):
        if self._estimator is None and self._estimator_error is None:
            args = self._args
            weights = getattr(args, "focal_weights", None) or None
            if weights == "random" and not args.allow_random_weights:
                self._estimator_error = "--focal-weights random needs --allow-random-weights"
                return None
            cfg = {}
            for item in getattr(args, "focal_arg", None) or []:
                k, _, v = item.partition("=")
                cfg[k.strip().replace("-", "_")] = _parse_value(v.strip())
            try:
                from depth_ros.models import create_model
                est = create_model("depth_pro", weights=weights, device=args.device, dtype=args.precision, **cfg)
                self._estimator = est.estimate_focal
                self._log("estimating focal lengths with Depth Pro's FOV head"
                          + (" (RANDOM weights)" if weights == "random" else ""))
            except Exception as exc:
                self._estimator_error = _one_line(exc)
        return self._estimator

    def before(self, key: tuple, rgb: np.ndarray, info_camera=None) -> Tuple[Any, Optional[str]]:
        """Camera for this frame before inference, or (None, None) when the model will estimate it."""
        h, w = rgb.shape[:2]
        if self.fixed:
            return self.fixed_camera(w, h)
        if info_camera is not None:
            return info_camera, "camera_info"
        from depth_ros.core.camera import PinholeCamera

        track = self._tracks.setdefault(key + (w, h), _Track())
        if track.frozen is not None:
            return PinholeCamera.from_focal(w, h, track.frozen), ("estimated by Depth Pro, median of "
                                                                  f"{len(track.samples)} frozen")
        if self.model_estimates:
            return None, None
        est = self._get_estimator()
        if est is None:
            raise CliError(f"no intrinsics for this frame: pass --fx (and --fy/--cx/--cy) or --hfov; estimating them "
                           f"needs Depth Pro: {self._estimator_error}")
        f = float(est(rgb))
        return PinholeCamera.from_focal(w, h, self._add(track, f)), "estimated by Depth Pro's FOV head"

    def after(self, key: tuple, rgb: np.ndarray, focal_px: Optional[float]):
        """Camera from the model's own focal estimate of this frame (``before`` returned None)."""
        from depth_ros.core.camera import PinholeCamera

        h, w = rgb.shape[:2]
        if focal_px is None or not np.isfinite(focal_px) or focal_px <= 0:
            raise CliError(f"model '{self._args.model}' returned no focal estimate; pass --fx or --hfov")
        track = self._tracks.setdefault(key + (w, h), _Track())
        self._add(track, float(focal_px))
        return PinholeCamera.from_focal(w, h, float(focal_px)), "estimated by the model (Depth Pro)"

    def _add(self, track: _Track, f: float) -> float:
        if track.frozen is None:
            track.samples.append(f)
            if len(track.samples) >= self.samples:
                track.frozen = float(np.median(track.samples))
        return track.frozen if track.frozen is not None else float(np.median(track.samples))


# ==================================================================================================
# one frame


@dataclass
class FrameResult:
    depth: np.ndarray  # float32 metres, NaN outside [min_range, max_range]
    confidence: Optional[np.ndarray]
    camera: Any
    focal_source: str
    domain: Optional[str]
    domain_confidence: Optional[float]
    infer_s: float


def run_frame(model, intr: Intrinsics, key: tuple, rgb: np.ndarray, min_range: float, max_range: float,
              info_camera=None) -> FrameResult:
    camera, source = intr.before(key, rgb, info_camera)
    t0 = time.perf_counter()
    pred = model.infer(rgb, f_px=None if camera is None else camera.fx)
    dt = time.perf_counter() - t0
    if camera is None:
        camera, source = intr.after(key, rgb, pred.focal_px)
    depth = np.asarray(pred.depth, np.float32)
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[:, :, 0]
    h, w = rgb.shape[:2]
    if depth.shape != (h, w):
        raise CliError(f"model returned depth of shape {depth.shape} for a {w}x{h} image")
    with np.errstate(invalid="ignore"):
        depth = np.where((depth >= min_range) & (depth <= max_range), depth, np.float32(np.nan)).astype(np.float32)
    conf = None
    if pred.confidence is not None:
        conf = np.asarray(pred.confidence, np.float32)
        if conf.ndim == 3 and conf.shape[2] == 1:
            conf = conf[:, :, 0]
        if conf.shape != depth.shape:
            conf = None
    return FrameResult(depth, conf, camera, source, getattr(pred, "domain", None),
                       getattr(pred, "domain_confidence", None), dt)


# ==================================================================================================
# infer: inputs


@dataclass
class InputItem:
    path: Path
    kind: str  # "image" | "video"
    frames: Optional[int]  # known frame count (videos: may be None)


def _cv2():
    import cv2
    global _CV2_QUIET
    if not _CV2_QUIET:  # OpenCV logs its own WARN/ERROR lines for corrupt files; the CLI reports one line itself
        try:
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_FATAL)
        except AttributeError:  # pragma: no cover - an OpenCV build without the logging utilities
            pass
        _CV2_QUIET = True
    return cv2


_CV2_QUIET = False


def collect_inputs(inputs: Sequence[str], every: int = 1) -> List[InputItem]:
    cv2 = _cv2()
    items: List[InputItem] = []
    for raw in inputs:
        p = Path(raw).expanduser()
        if not p.exists():
            raise CliError(f"input '{raw}' does not exist")
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTS | VIDEO_EXTS)
            if not files:
                raise CliError(f"folder '{raw}' has no images or videos ({', '.join(sorted(IMAGE_EXTS)[:6])}, "
                               f"{', '.join(sorted(VIDEO_EXTS)[:4])}, ...)")
        else:
            files = [p]
        for f in files:
            ext = f.suffix.lower()
            if ext in VIDEO_EXTS:
                items.append(_video_item(f))
            elif ext in IMAGE_EXTS or cv2.haveImageReader(str(f)):
                if not cv2.haveImageReader(str(f)):
                    raise CliError(f"cannot read image '{f}': not an image OpenCV can decode (empty or corrupt file?)")
                items.append(InputItem(f, "image", 1))
            else:
                items.append(_video_item(f))
    if every > 1:
        for it in items:
            if it.kind == "video" and it.frames:
                it.frames = (it.frames + every - 1) // every
    return items


def _video_item(f: Path) -> InputItem:
    cv2 = _cv2()
    cap = cv2.VideoCapture(str(f))
    try:
        if not cap.isOpened():
            raise CliError(f"cannot read '{f}': neither an image nor a video OpenCV can open")
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        cap.release()
    return InputItem(f, "video", n if n > 0 else None)


def iter_frames(items: Sequence[InputItem], every: int = 1, max_frames: Optional[int] = None
                ) -> Iterator[Tuple[InputItem, int, np.ndarray]]:
    """Yield (item, frame index within the item, RGB uint8)."""
    cv2 = _cv2()
    count = 0
    for it in items:
        if it.kind == "image":
            bgr = cv2.imread(str(it.path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise CliError(f"cannot read image '{it.path}' (corrupt or unsupported)")
            yield it, 0, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            count += 1
        else:
            cap = cv2.VideoCapture(str(it.path))
            if not cap.isOpened():
                raise CliError(f"cannot open video '{it.path}'")
            idx = 0
            got = 0
            try:
                while True:
                    ok, bgr = cap.read()
                    if not ok:
                        break
                    if idx % every == 0:
                        yield it, idx, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                        count += 1
                        got += 1
                        if max_frames is not None and count >= max_frames:
                            return
                    idx += 1
            finally:
                cap.release()
            if got == 0:
                raise CliError(f"video '{it.path}' has no readable frames")
            continue
        if max_frames is not None and count >= max_frames:
            return


# ==================================================================================================
# infer: command


def _log_fn(quiet: bool):
    def log(text: str) -> None:
        if not quiet:
            print(f"[depth-ros] {text}", file=sys.stderr, flush=True)
    return log


def _stem_for(item: InputItem, idx: int, used: Dict[str, int]) -> str:
    base = item.path.stem if item.kind == "image" else f"{item.path.stem}_{idx:06d}"
    key = base
    if key in used and used[key] != id(item):
        n = 2
        while f"{base}_{n}" in used and used[f"{base}_{n}"] != id(item):
            n += 1
        key = f"{base}_{n}"
    used[key] = id(item)
    return key


def cmd_infer(args) -> int:
    from depth_ros.core.cloud import backproject
    from depth_ros.core.colormap import colorize_depth, depth_range
    from depth_ros.demo import outputs as O

    log = _log_fn(args.quiet)
    if args.every < 1:
        raise CliError("--every must be >= 1")
    if args.max_frames is not None and args.max_frames < 1:
        raise CliError("--max-frames must be >= 1")
    items = collect_inputs(args.inputs, args.every)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CliError(f"--out '{out}' is a file; give a folder (created when missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create output folder '{out}': {exc.strerror}") from None
    if not os.access(out, os.W_OK):
        raise CliError(f"output folder '{out}' is not writable")
    want_png = args.depth_format in ("png", "both")
    want_npy = args.depth_format in ("npy", "both")
    color_range = tuple(args.depth_range) if args.depth_range else (None, None)

    lm = load_model(args, log)
    intr = Intrinsics(args, lm.model, log)
    intr.check_available()
    log(f"model {lm.name} ({'RANDOM weights' if lm.random else lm.weights}) loaded in {lm.load_s:.1f} s")

    known = [it.frames for it in items]
    total = None if any(n is None for n in known) else sum(known)
    if total is not None and args.max_frames is not None:
        total = min(total, args.max_frames)
    from tqdm import tqdm

    bar = tqdm(total=total, unit="frame", desc="depth", file=sys.stderr, dynamic_ncols=True,
               disable=args.quiet or args.no_progress or (total is not None and total <= 1))
    records = []
    used: Dict[str, int] = {}
    t_start = time.perf_counter()
    infer_total = 0.0
    note = [O.RANDOM_WEIGHTS_NOTE] if lm.random else []
    try:
        for item, idx, rgb in iter_frames(items, args.every, args.max_frames):
            stem = _stem_for(item, idx, used)
            key = (str(item.path),)
            res = run_frame(lm.model, intr, key, rgb, args.min_range, args.max_range)
            infer_total += res.infer_s
            files = {}
            if want_png:
                files["depth_png"] = f"{stem}_depth.png"
                O.write_depth_png(out / files["depth_png"], res.depth)
            if want_npy:
                files["depth_npy"] = f"{stem}_depth.npy"
                np.save(out / files["depth_npy"], res.depth)
            if res.confidence is not None:
                files["confidence_png"] = f"{stem}_confidence.png"
                O.write_confidence_png(out / files["confidence_png"], res.confidence)
            lo, hi = color_range
            if lo is None:
                lo, hi = depth_range(res.depth)
            files["colorized_png"] = f"{stem}_depth_color.png"
            O.write_rgb_png(out / files["colorized_png"], colorize_depth(res.depth, lo, hi))
            caption = (f"{lm.name}  f={res.camera.fx:.1f}px, {res.focal_source}"
                       + (f"  domain={res.domain}" if res.domain else ""))
            if not args.no_side:
                files["side_by_side_png"] = f"{stem}_side.png"
                O.write_rgb_png(out / files["side_by_side_png"],
                                O.side_by_side(rgb, res.depth, res.confidence, lo, hi, caption, lm.random))
            n_points = None
            if not args.no_ply:
                files["ply"] = f"{stem}.ply"
                pts = backproject(res.depth, res.camera, args.min_range, args.max_range)
                n_points = O.write_ply(out / files["ply"], pts, rgb, note + [
                    f"depth_ros {lm.name} fx={res.camera.fx:.3f} fy={res.camera.fy:.3f} cx={res.camera.cx:.3f} "
                    f"cy={res.camera.cy:.3f} frame=optical (x right, y down, z forward) units=m"])
            finite = res.depth[np.isfinite(res.depth)]
            records.append({
                "name": stem, "input": str(item.path), "frame": idx, "width": rgb.shape[1], "height": rgb.shape[0],
                "domain": res.domain, "domain_confidence": res.domain_confidence,
                "focal_px": float(res.camera.fx), "focal_source": res.focal_source,
                "camera": {"fx": res.camera.fx, "fy": res.camera.fy, "cx": res.camera.cx, "cy": res.camera.cy},
                "depth_min_m": float(finite.min()) if finite.size else None,
                "depth_median_m": float(np.median(finite)) if finite.size else None,
                "depth_max_m": float(finite.max()) if finite.size else None,
                "valid_fraction": float(finite.size / res.depth.size),
                "ply_points": n_points, "inference_s": res.infer_s, "files": files,
            })
            bar.update(1)
    finally:
        bar.close()
    elapsed = time.perf_counter() - t_start
    if not records:
        raise CliError("no frames were read from the inputs")
    summary = {
        "command": "infer", "model": lm.name, "weights": lm.weights, "random_weights": lm.random,
        "model_config": lm.config, "device": str(getattr(lm.model, "device", args.device)),
        "precision": args.precision, "frames": len(records), "elapsed_s": elapsed,
        "fps": len(records) / elapsed if elapsed > 0 else None,
        "inference_fps": len(records) / infer_total if infer_total > 0 else None,
        "frames_detail": records,
    }
    if lm.random:
        summary["note"] = O.RANDOM_WEIGHTS_NOTE
        O.write_marker(out, f"model {lm.name}, command: depth-ros infer")
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    print(format_infer_summary(summary, out))
    return 0


def _focal_text(records: Sequence[dict]) -> str:
    fs = [r["focal_px"] for r in records]
    sources = sorted({r["focal_source"] for r in records})
    if max(fs) - min(fs) < 0.05:
        return f"{fs[0]:.1f} px; source: {'; '.join(sources)}"
    return f"{min(fs):.1f}-{max(fs):.1f} px per frame; source: {'; '.join(sources)}"


def format_infer_summary(summary: dict, out: Path) -> str:
    from depth_ros.demo.outputs import RANDOM_WEIGHTS_NOTE

    recs = summary["frames_detail"]
    lines = []
    if summary["random_weights"]:
        lines.append(f"*** {RANDOM_WEIGHTS_NOTE} ***")
    lines.append(f"frames: {summary['frames']} in {summary['elapsed_s']:.1f} s = {summary['fps']:.2f} frames/s "
                 f"(inference alone {summary['inference_fps']:.2f} frames/s) on {summary['device']}")
    lines.append(f"model: {summary['model']} ({'random weights' if summary['random_weights'] else summary['weights']})")
    lines.append(f"focal: {_focal_text(recs)}")
    doms = [r["domain"] for r in recs]
    if any(doms):
        shown = recs if len(recs) <= 12 else recs[:6] + recs[-6:]
        per = ", ".join(f"{r['name']}={r['domain']}" + (f" ({r['domain_confidence']:.2f})"
                                                       if r.get("domain_confidence") is not None else "")
                        for r in shown)
        counts = {d: doms.count(d) for d in sorted(set(d for d in doms if d))}
        lines.append(f"domain per frame: {per}" + (" ..." if len(recs) > 12 else "")
                     + f"  [{', '.join(f'{k}: {v}' for k, v in counts.items())}]")
    else:
        lines.append("domain per frame: n/a (model has no domain)")
    lines.append(f"outputs: {out}/ (summary.json)")
    return "\n".join(lines)


# ==================================================================================================
# bag


def _pick_info(by_stamp: Dict[int, Any], times: List[int], infos: List[Tuple[int, Any]], stamp: int, t_ns: int):
    """CameraInfo for an image: same header stamp, else the latest logged at or before it, else the first."""
    if stamp in by_stamp:
        return by_stamp[stamp]
    if not infos:
        return None
    i = bisect.bisect_right(times, t_ns)
    return infos[i - 1][1] if i > 0 else infos[0][1]


def _sibling_info_topic(image_topic: str) -> str:
    t = image_topic.rstrip("/")
    if t.endswith("/compressed"):
        t = t[: -len("/compressed")]
    parent = t.rsplit("/", 1)[0] if "/" in t else ""
    return f"{parent}/camera_info" if parent else "camera_info"


def _output_ns(image_topic: str) -> str:
    t = image_topic.rstrip("/")
    if t.endswith("/compressed"):
        t = t[: -len("/compressed")]
    return t.rsplit("/", 1)[0] if "/" in t else ""


def cmd_bag(args) -> int:
    from rosbags.rosbag2 import Reader

    from depth_ros.core.cloud import depth_to_cloud
    from depth_ros.demo import bagio
    from depth_ros.demo import outputs as O

    log = _log_fn(args.quiet)
    src = Path(args.input)
    dst = Path(args.output)
    if not src.exists():
        raise CliError(f"input bag '{src}' does not exist")
    if dst.exists():
        raise CliError(f"output bag '{dst}' already exists; choose a new path (rosbag2 writers never overwrite)")
    if args.depth_encoding not in ("32FC1", "16UC1"):
        raise CliError("--depth-encoding must be 32FC1 or 16UC1")
    if args.cloud_stride < 1:
        raise CliError(f"--cloud-stride must be >= 1, got {args.cloud_stride}")
    try:
        reader = Reader(src)
        reader.open()
    except Exception as exc:
        raise CliError(f"cannot read rosbag2 '{src}': {_one_line(exc)}") from None
    try:
        topics = {c.topic: c.msgtype for c in reader.connections}
        img_topic = args.image_topic
        if img_topic not in topics:
            imgs = [f"{t} ({m.rsplit('/', 1)[-1]})" for t, m in sorted(topics.items())
                    if m in (bagio.IMAGE, bagio.COMPRESSED)]
            raise CliError(f"topic '{img_topic}' is not in bag '{src}'; image topics there: "
                           f"{', '.join(imgs) or 'none'}")
        if topics[img_topic] not in (bagio.IMAGE, bagio.COMPRESSED):
            raise CliError(f"topic '{img_topic}' has type {topics[img_topic]}, expected sensor_msgs/msg/Image or "
                           "CompressedImage")
        info_topic = args.camera_info_topic
        if info_topic is None:
            guess = _sibling_info_topic(img_topic)
            if not guess.startswith("/") and "/" + guess in topics:
                guess = "/" + guess
            info_topic = guess if topics.get(guess) == bagio.CAMERA_INFO else None
            if info_topic:
                log(f"using camera info topic '{info_topic}'")
        elif info_topic not in topics:
            infos = [t for t, m in sorted(topics.items()) if m == bagio.CAMERA_INFO]
            raise CliError(f"topic '{info_topic}' is not in bag '{src}'; CameraInfo topics there: "
                           f"{', '.join(infos) or 'none'}")
        elif topics[info_topic] != bagio.CAMERA_INFO:
            raise CliError(f"topic '{info_topic}' has type {topics[info_topic]}, expected sensor_msgs/msg/CameraInfo")
        n_images = sum(c.msgcount for c in reader.connections if c.topic == img_topic)
        if n_images == 0:
            raise CliError(f"topic '{img_topic}' in bag '{src}' has no messages")
        ns = args.output_ns if args.output_ns is not None else _output_ns(img_topic)
        ns = ns.rstrip("/")
        out_topics = {k: f"{ns}/depth/{k}" for k in ("image", "camera_info", "confidence", "points")}
        out_topics = {k: (v if v.startswith("/") else "/" + v) for k, v in out_topics.items()}
        clash = [t for t in out_topics.values() if t in topics and args.copy != "none"]
        if clash:
            raise CliError(f"output topic(s) {', '.join(clash)} already exist in the input bag; pick another "
                           "--output-ns")

        lm = load_model(args, log)
        intr = Intrinsics(args, lm.model, log)
        if info_topic is None:
            intr.check_available()
        storage = args.storage or bagio.bag_storage(src)
        custom = {"depth_ros.model": lm.name, "depth_ros.weights": lm.weights}
        if lm.random:
            custom["depth_ros.note"] = O.RANDOM_WEIGHTS_NOTE
        ts = bagio.typestore()
        copy_topics = set()
        if args.copy == "input":
            copy_topics = {img_topic} | ({info_topic} if info_topic else set())
        elif args.copy == "all":
            copy_topics = set(topics)
        # CameraInfo is small: read it all first (exact stamp match, else the latest before, else the first).
        info_cams: Dict[int, Any] = {}
        info_times: List[Tuple[int, Any]] = []
        if info_topic is not None:
            for conn, t_ns, raw in reader.messages(connections=[c for c in reader.connections
                                                                if c.topic == info_topic]):
                msg = ts.deserialize_cdr(raw, conn.msgtype)
                try:
                    cam = bagio.camera_from_info_message(msg)
                except ValueError as exc:
                    log(f"warning: ignoring invalid CameraInfo at {t_ns}: {_one_line(exc)}")
                    continue
                if cam is None:
                    continue  # uncalibrated
                info_cams[bagio.stamp_ns(msg.header)] = cam
                info_times.append((t_ns, cam))
            if not info_times:
                log(f"warning: no calibrated CameraInfo on '{info_topic}'")
                intr.check_available()

        info_times.sort(key=lambda tc: tc[0])
        info_t = [t for t, _ in info_times]

        def info_for(stamp: int, t_ns: int):
            return _pick_info(info_cams, info_t, info_times, stamp, t_ns)

        warned_size = False
        from tqdm import tqdm

        bar = tqdm(total=n_images, unit="frame", desc="depth", file=sys.stderr, dynamic_ncols=True,
                   disable=args.quiet or args.no_progress or n_images <= 1)
        processed = 0
        domains: List[Optional[str]] = []
        focals: List[dict] = []
        infer_total = 0.0
        t_start = time.perf_counter()
        try:
            writer = bagio.BagWriter(dst, storage=storage, custom=custom)
        except Exception as exc:
            raise CliError(f"cannot create output bag '{dst}': {_one_line(exc)}") from None
        try:
            for name, ttype in out_topics.items():
                msgtype = {"image": bagio.IMAGE, "camera_info": bagio.CAMERA_INFO, "confidence": bagio.IMAGE,
                           "points": bagio.POINTCLOUD2}[name]
                writer.add_topic(ttype, msgtype)
            for c in reader.connections:
                if c.topic in copy_topics:
                    try:
                        writer.add_topic(c.topic, c.msgtype, msgdef=c.msgdef.data if c.msgdef else None,
                                         rihs01=c.digest or None, qos=getattr(c.ext, "offered_qos_profiles", ()))
                    except ValueError as exc:
                        log(f"warning: not copying '{c.topic}': {_one_line(exc)}")
                        copy_topics.discard(c.topic)
            wanted = [c for c in reader.connections if c.topic in copy_topics or c.topic == img_topic]
            copied = {}
            for conn, t_ns, raw in reader.messages(connections=wanted):
                if conn.topic in copy_topics:
                    copied.setdefault(conn.topic, writer.add_topic(conn.topic, conn.msgtype))
                    writer.write_raw(conn.topic, copied[conn.topic], raw, t_ns)
                if conn.topic != img_topic:
                    continue
                msg = ts.deserialize_cdr(raw, conn.msgtype)
                try:
                    rgb = bagio.image_to_rgb(msg)
                except ValueError as exc:
                    log(f"warning: skipping image at {t_ns}: {_one_line(exc)}")
                    bar.update(1)
                    continue
                h, w = rgb.shape[:2]
                stamp = bagio.stamp_ns(msg.header)
                cam = info_for(stamp, t_ns)
                if cam is not None and (cam.width, cam.height) != (w, h):
                    if not warned_size:
                        log(f"warning: CameraInfo size {cam.width}x{cam.height} differs from the image {w}x{h}; "
                            "ignoring it")
                        warned_size = True
                    cam = None
                if cam is None:
                    intr.check_available()
                res = run_frame(lm.model, intr, (img_topic,), rgb, args.min_range, args.max_range, cam)
                infer_total += res.infer_s
                header = bagio.copy_header(msg.header)
                writer.write(out_topics["image"], bagio.depth_message(res.depth, header, args.depth_encoding), t_ns)
                writer.write(out_topics["camera_info"], bagio.camera_info_message(res.camera, header), t_ns)
                if res.confidence is not None:
                    writer.write(out_topics["confidence"],
                                 bagio.image_message(res.confidence.astype(np.float32), "32FC1", header), t_ns)
                if not args.no_points:
                    cloud = depth_to_cloud(res.depth, res.camera, rgb=rgb, min_range=args.min_range,
                                           max_range=args.max_range, stride=args.cloud_stride)
                    writer.write(out_topics["points"], bagio.cloud_message(cloud, header), t_ns)
                processed += 1
                domains.append(res.domain)
                focals.append({"focal_px": float(res.camera.fx), "focal_source": res.focal_source})
                bar.update(1)
        except BaseException:
            bar.close()
            writer.close()
            if processed == 0:  # nothing of value; leaving it would only block the next run ("already exists")
                shutil.rmtree(dst, ignore_errors=True)
            else:
                log(f"partial output bag kept: '{dst}' ({processed} frames)")
            raise
        bar.close()
        writer.close()
        if processed == 0:
            shutil.rmtree(dst, ignore_errors=True)
    finally:
        reader.close()
    if processed == 0:
        raise CliError(f"no frame of '{img_topic}' could be decoded; no output written")
    elapsed = time.perf_counter() - t_start
    counts = writer.counts
    summary = {"command": "bag", "input": str(src), "output": str(dst), "storage": storage, "model": lm.name,
               "weights": lm.weights, "random_weights": lm.random, "frames": processed,
               "elapsed_s": elapsed, "fps": processed / elapsed if elapsed > 0 else None,
               "inference_fps": processed / infer_total if infer_total > 0 else None,
               "topics": counts, "domains": domains, "focal": focals}
    lines = []
    if lm.random:
        lines.append(f"*** {O.RANDOM_WEIGHTS_NOTE} ***")
    lines.append(f"frames: {processed} in {elapsed:.1f} s = {summary['fps'] or 0:.2f} frames/s -> {dst} ({storage})")
    lines.append("topics: " + ", ".join(f"{t} [{n}]" for t, n in sorted(counts.items())))
    if focals:
        recs = [dict(f, name=str(i)) for i, f in enumerate(focals)]
        lines.append(f"focal: {_focal_text(recs)}")
    doms = [d for d in domains if d]
    if doms:
        lines.append("domains: " + ", ".join(f"{d}: {doms.count(d)}" for d in sorted(set(doms))))
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=1, default=str) + "\n")
    print("\n".join(lines))
    return 0


# ==================================================================================================
# parser


def _add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default="zoedepth_nk",
                   help="zoedepth_nk (default), zoedepth_n, zoedepth_k, depth_pro or package.module:ClassName")
    g.add_argument("--weights", default=None,
                   help="checkpoint path; default: the cache ($DEPTH_ROS_CACHE or ~/.cache/depth_ros) or a download; "
                        "'random' = untrained (needs --allow-random-weights)")
    g.add_argument("--allow-random-weights", action="store_true", help="permit --weights random (smoke tests only)")
    g.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N, mps")
    g.add_argument("--precision", default="float32", choices=("float32", "float16", "bfloat16"))
    g.add_argument("--domain", default="auto", choices=("auto", "indoor", "outdoor"),
                   help="ZoeDepth-NK head (auto = the router picks per frame)")
    g.add_argument("--backbone", default=None, help="model config 'backbone' (ZoeDepth), e.g. test_tiny")
    g.add_argument("--vit-preset", default=None, help="model config 'vit_preset' (Depth Pro), e.g. test_tiny")
    g.add_argument("--model-arg", action="append", metavar="KEY=VALUE",
                   help="extra model constructor argument (repeatable), e.g. decoder_features=16")
    i = p.add_argument_group("intrinsics (default: estimated with Depth Pro)")
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
    p.add_argument("--min-range", type=float, default=DEFAULT_MIN_RANGE, help="depth below this (m) is invalid")
    p.add_argument("--max-range", type=float, default=DEFAULT_MAX_RANGE, help="depth above this (m) is invalid")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or log lines (summary only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="depth-ros", description="Metric depth from a single camera "
                                 "(ZoeDepth-NK, Depth Pro) for files, videos and rosbag2 recordings.")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    pi = sub.add_parser("infer", help="images / folders / videos -> depth PNG/NPY, confidence, pictures, PLY",
                        description="Per frame: <name>_depth.png (uint16 mm), <name>_depth.npy (float32 m), "
                                    "<name>_confidence.png, <name>_depth_color.png, <name>_side.png "
                                    "(input | depth | confidence | colour bar), <name>.ply; plus summary.json.")
    pi.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders of images, video files")
    pi.add_argument("--out", "-o", required=True, help="output folder (created)")
    pi.add_argument("--depth-format", choices=("png", "npy", "both"), default="both")
    pi.add_argument("--depth-range", type=float, nargs=2, metavar=("MIN", "MAX"),
                    help="colour range in metres (default: per frame, 2nd-98th percentile)")
    pi.add_argument("--no-ply", action="store_true", help="skip the PLY point clouds")
    pi.add_argument("--no-side", action="store_true", help="skip the side-by-side pictures")
    pi.add_argument("--every", type=int, default=1, help="use every N-th video frame")
    pi.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    _add_model_options(pi)
    pi.set_defaults(func=cmd_infer)

    pb = sub.add_parser("bag", help="rosbag2 in -> rosbag2 out with depth/image, camera_info, confidence, points",
                        description="Reads Image or CompressedImage (+ CameraInfo) from a rosbag2 (sqlite3 or mcap) "
                                    "and writes a new bag with <ns>/depth/image, <ns>/depth/camera_info, "
                                    "<ns>/depth/confidence, <ns>/depth/points at the input stamps.")
    pb.add_argument("input", metavar="IN", help="input rosbag2 folder")
    pb.add_argument("output", metavar="OUT", help="output rosbag2 folder (must not exist)")
    pb.add_argument("--image-topic", required=True, help="sensor_msgs/Image or CompressedImage topic")
    pb.add_argument("--camera-info-topic", default=None,
                    help="sensor_msgs/CameraInfo topic (default: the image topic's sibling camera_info, if present)")
    pb.add_argument("--output-ns", default=None,
                    help="namespace of the output topics (default: the image topic's namespace, e.g. /camera)")
    pb.add_argument("--copy", choices=("none", "input", "all"), default="input",
                    help="copy the input image/camera_info topics (default), every topic, or none")
    pb.add_argument("--storage", choices=("sqlite3", "mcap"), default=None, help="default: as the input bag")
    pb.add_argument("--depth-encoding", default="32FC1", help="32FC1 metres (default) or 16UC1 millimetres")
    pb.add_argument("--cloud-stride", type=int, default=1, help="keep every N-th pixel in depth/points")
    pb.add_argument("--no-points", action="store_true", help="do not write depth/points")
    pb.add_argument("--summary", default=None, help="also write the summary as JSON here")
    _add_model_options(pb)
    pb.set_defaults(func=cmd_bag)

    pd = sub.add_parser("demo", help="run the ROS demo (sample camera -> depth_node -> recorder)", add_help=False)
    pd.add_argument("demo_args", nargs=argparse.REMAINDER)
    pd.set_defaults(func=lambda a: _run_demo(a.demo_args))
    return ap


def _run_demo(argv: Sequence[str]) -> int:
    from depth_ros.demo.run_demo import main as demo_main
    return demo_main(list(argv))


def main(argv: Optional[Sequence[str]] = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["demo"]:  # everything after 'demo' belongs to the demo's own parser
        return _run_demo(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"depth-ros: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("depth-ros: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an unexpected failure: still one line, with the type
        if os.environ.get("DEPTH_ROS_DEBUG"):
            raise
        print(f"depth-ros: error: {type(exc).__name__}: {_one_line(exc)} (set DEPTH_ROS_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
