"""``depth-ros infer``: images, folders and videos -> depth PNG/NPY, confidence, pictures, PLY, summary."""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from depth_ros import files as F
from depth_ros.cli.common import CliError, add_model_options, focal_text, log_fn, open_session, progress
from depth_ros.core.colormap import colorize_depth, depth_range
from depth_ros.pipeline.frame import FrameSkipped, cloud_points
from depth_ros.pipeline.intrinsics import INFO_MISSING, InfoStatus

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm", ".jp2", ".exr",
              ".hdr", ".pfm", ".sr", ".ras"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts",
              ".mts", ".ogv", ".gif"}
NO_CAMERA_INFO = InfoStatus(INFO_MISSING, problem="files have no CameraInfo")


@dataclass
class InputItem:
    path: Path
    kind: str  # "image" | "video"
    frames: Optional[int]  # known frame count (videos: may be None)


_CV2_QUIET = False


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


def _files_of(raw: str) -> List[Path]:
    p = Path(raw).expanduser()
    if not p.exists():
        raise CliError(f"input '{raw}' does not exist")
    if not p.is_dir():
        return [p]
    found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTS | VIDEO_EXTS)
    if not found:
        raise CliError(f"folder '{raw}' has no images or videos ({', '.join(sorted(IMAGE_EXTS)[:6])}, "
                       f"{', '.join(sorted(VIDEO_EXTS)[:4])}, ...)")
    return found


def collect_inputs(inputs: Sequence[str], every: int = 1) -> List[InputItem]:
    cv2 = _cv2()
    items: List[InputItem] = []
    for f in (f for raw in inputs for f in _files_of(raw)):
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


def _video_frames(it: InputItem, every: int) -> Iterator[Tuple[int, np.ndarray]]:
    cv2 = _cv2()
    cap = cv2.VideoCapture(str(it.path))
    if not cap.isOpened():
        raise CliError(f"cannot open video '{it.path}'")
    got = idx = 0
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            if idx % every == 0:
                got += 1
                yield idx, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            idx += 1
    finally:
        cap.release()
    if got == 0:
        raise CliError(f"video '{it.path}' has no readable frames")


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
            frames: Iterator[Tuple[int, np.ndarray]] = iter([(0, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))])
        else:
            frames = _video_frames(it, every)
        for idx, rgb in frames:
            yield it, idx, rgb
            count += 1
            if max_frames is not None and count >= max_frames:
                return


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


def _prepare_out(path: str) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise CliError(f"--out '{out}' is a file; give a folder (created when missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create output folder '{out}': {exc.strerror}") from None
    if not os.access(out, os.W_OK):
        raise CliError(f"output folder '{out}' is not writable")
    return out


def _write_frame(args, sess, out: Path, stem: str, rgb: np.ndarray, res) -> Tuple[Dict[str, str], Optional[int]]:
    """The files of one frame; returns ({kind: file name}, PLY point count)."""
    files: Dict[str, str] = {}
    if args.depth_format in ("png", "both"):
        files["depth_png"] = f"{stem}_depth.png"
        F.write_depth_png(out / files["depth_png"], res.depth)
    if args.depth_format in ("npy", "both"):
        files["depth_npy"] = f"{stem}_depth.npy"
        np.save(out / files["depth_npy"], res.depth)
    if res.confidence is not None:
        files["confidence_png"] = f"{stem}_confidence.png"
        F.write_confidence_png(out / files["confidence_png"], res.confidence)
    lo, hi = tuple(args.depth_range) if args.depth_range else depth_range(res.depth)
    files["colorized_png"] = f"{stem}_depth_color.png"
    F.write_rgb_png(out / files["colorized_png"], colorize_depth(res.depth, lo, hi))
    if not args.no_side:
        caption = (f"{sess.name}  f={res.camera.fx:.1f}px, {res.source}"
                   + (f"  domain={res.domain}" if res.domain else ""))
        files["side_by_side_png"] = f"{stem}_side.png"
        F.write_rgb_png(out / files["side_by_side_png"],
                        F.side_by_side(rgb, res.depth, res.confidence, lo, hi, caption, sess.random))
    n_points = None
    if not args.no_ply:
        files["ply"] = f"{stem}.ply"
        pts, col = cloud_points(res.cloud())
        cam = res.camera
        n_points = F.write_ply(out / files["ply"], pts, col, ([F.RANDOM_WEIGHTS_NOTE] if sess.random else []) + [
            f"depth_ros {sess.name} fx={cam.fx:.3f} fy={cam.fy:.3f} cx={cam.cx:.3f} cy={cam.cy:.3f} "
            f"cloud_mode={res.config.cloud_mode} frame=optical (x right, y down, z forward) units=m"])
    return files, n_points


def _record(stem: str, item: InputItem, idx: int, rgb: np.ndarray, res, files, n_points) -> dict:
    finite = res.depth[np.isfinite(res.depth)]
    cam = res.camera
    return {
        "name": stem, "input": str(item.path), "frame": idx, "width": rgb.shape[1], "height": rgb.shape[0],
        "domain": res.domain, "domain_confidence": res.domain_confidence,
        "focal_px": float(cam.fx), "focal_source": res.source, "focal_reason": res.reason,
        "camera": {"fx": cam.fx, "fy": cam.fy, "cx": cam.cx, "cy": cam.cy},
        "depth_min_m": float(finite.min()) if finite.size else None,
        "depth_median_m": float(np.median(finite)) if finite.size else None,
        "depth_max_m": float(finite.max()) if finite.size else None,
        "valid_fraction": float(finite.size / res.depth.size),
        "ply_points": n_points, "inference_s": res.timings["inference"], "files": files,
    }


def run(args) -> int:
    log = log_fn(args.quiet)
    if args.every < 1:
        raise CliError("--every must be >= 1")
    if args.max_frames is not None and args.max_frames < 1:
        raise CliError("--max-frames must be >= 1")
    if args.scale_stabilization == "odometry":
        raise CliError("--scale-stabilization odometry needs camera motion: use it with 'depth-ros bag' and a bag "
                       "that holds nav_msgs/Odometry (or --scale-stabilization static for videos)")
    items = collect_inputs(args.inputs, args.every)
    out = _prepare_out(args.out)
    sess = open_session(args, log)
    sess.check_intrinsics()
    log(f"model {sess.name} ({'RANDOM weights' if sess.random else sess.weights}) loaded in {sess.load_s:.1f} s")
    known = [it.frames for it in items]
    total = None if any(n is None for n in known) else sum(known)
    if total is not None and args.max_frames is not None:
        total = min(total, args.max_frames)
    bar = progress(total, args)
    records: List[dict] = []
    used: Dict[str, int] = {}
    t_start = time.perf_counter()
    try:
        for item, idx, rgb in iter_frames(items, args.every, args.max_frames):
            stem = _stem_for(item, idx, used)
            try:
                res = sess.processor.process(rgb, str(item.path), NO_CAMERA_INFO)
            except FrameSkipped as exc:
                raise CliError(f"'{item.path}' frame {idx}: {exc}") from None
            files, n_points = _write_frame(args, sess, out, stem, rgb, res)
            records.append(_record(stem, item, idx, rgb, res, files, n_points))
            bar.update(1)
    finally:
        bar.close()
    if not records:
        raise CliError("no frames were read from the inputs")
    summary = _summary(args, sess, records, time.perf_counter() - t_start)
    if sess.random:
        summary["note"] = F.RANDOM_WEIGHTS_NOTE
        F.write_marker(out, f"model {sess.name}, command: depth-ros infer")
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    print(format_summary(summary, out))
    return 0


def _summary(args, sess, records: List[dict], elapsed: float) -> dict:
    infer_total = sum(r["inference_s"] for r in records)
    return {
        "command": "infer", "model": sess.name, "weights": sess.weights, "random_weights": sess.random,
        "model_config": sess.config, "device": str(getattr(sess.model, "device", args.device)),
        "precision": args.precision, "backend": args.backend, "frames": len(records), "elapsed_s": elapsed,
        "fps": len(records) / elapsed if elapsed > 0 else None,
        "inference_fps": len(records) / infer_total if infer_total > 0 else None,
        "frames_detail": records,
    }


def format_summary(summary: dict, out: Path) -> str:
    recs = summary["frames_detail"]
    lines = []
    if summary["random_weights"]:
        lines.append(f"*** {F.RANDOM_WEIGHTS_NOTE} ***")
    lines.append(f"frames: {summary['frames']} in {summary['elapsed_s']:.1f} s = {summary['fps']:.2f} frames/s "
                 f"(inference alone {summary['inference_fps']:.2f} frames/s) on {summary['device']}")
    lines.append(f"model: {summary['model']} ({'random weights' if summary['random_weights'] else summary['weights']})")
    lines.append(f"focal: {focal_text(recs)}")
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


def add_parser(sub) -> None:
    pi = sub.add_parser("infer", help="images / folders / videos -> depth PNG/NPY, confidence, pictures, PLY",
                        description="Per frame: <name>_depth.png (uint16 mm), <name>_depth.npy (float32 m), "
                                    "<name>_confidence.png, <name>_depth_color.png, <name>_side.png "
                                    "(input | depth | confidence | colour bar), <name>.ply (the cloud of "
                                    "--cloud-mode); plus summary.json.")
    pi.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders of images, video files")
    pi.add_argument("--out", "-o", required=True, help="output folder (created)")
    pi.add_argument("--depth-format", choices=("png", "npy", "both"), default="both")
    pi.add_argument("--depth-range", type=float, nargs=2, metavar=("MIN", "MAX"),
                    help="colour range in metres (default: per frame, 2nd-98th percentile)")
    pi.add_argument("--no-ply", action="store_true", help="skip the PLY point clouds")
    pi.add_argument("--no-side", action="store_true", help="skip the side-by-side pictures")
    pi.add_argument("--every", type=int, default=1, help="use every N-th video frame")
    pi.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    add_model_options(pi)
    pi.set_defaults(func=run)
