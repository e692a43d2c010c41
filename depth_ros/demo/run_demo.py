"""The demo: a real ROS 2 graph in three processes, then a summary.

    sample_camera  --/camera/image_raw, /camera/camera_info-->  depth_node  --/depth/*-->  depth_recorder
                   --/camera/ground_truth/depth------------------------------------------->

* ``sample_camera`` publishes the shipped synthetic stream (a room, then a street; rendered by
  ``depth_ros.demo.render``, exact intrinsics and ground-truth depth) at a steady rate;
* ``depth_node`` runs as ``launch/zoedepth.launch.py`` starts it:
  ``depth_node --ros-args -r __node:=depth_node --params-file config/zoedepth_nk.yaml
  -r image:=/camera/image_raw -r camera_info:=/camera/camera_info`` (plus ``-p`` overrides for the
  weights when needed);
* ``depth_recorder`` writes OUT/bag (rosbag2), OUT/frames/*_side.png, OUT/cloud_*.ply and
  OUT/summary.{json,txt} (rates, latency, dropped frames, AbsRel / delta1 vs the ground truth).

Weights: ``--weights PATH``, else ``$DEPTH_ROS_WEIGHTS_DIR/ZoeD_M12_NK.pt``, else the cache
(``$DEPTH_ROS_CACHE`` or ``~/.cache/depth_ros``), else a download (unless ``DEPTH_ROS_OFFLINE=1``). When
none can be had the demo says so in one line and runs with random weights; every output is then marked
"random weights: not a depth result".

``--quick`` runs the tiny test network (random weights) on a faster camera: a smoke test of the whole
graph in well under a minute.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from depth_ros.ros_env import find_share_file, isolation_env

PKG_DIR = Path(__file__).resolve().parents[1]
MARKER = ".depth_ros_demo"


def _say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


# --------------------------------------------------------------------------------------------------
# executables


def executable(name: str, module: str) -> List[str]:
    """The console script next to this Python (a venv's bin/), else on PATH, else ``python -c``."""
    here = Path(sys.executable).parent / name
    if here.is_file() and os.access(here, os.X_OK):
        return [str(here)]
    found = shutil.which(name)
    if found:
        return [found]
    return [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())"]


# --------------------------------------------------------------------------------------------------
# weights


def resolve_demo_weights(explicit: Optional[str], allow_download: bool = True) -> Tuple[Optional[str], str]:
    """(checkpoint path or None, one line saying where it came from / why there is none)."""
    from depth_ros.models.weights import WeightsError, resolve_weights
    from depth_ros.models.zoedepth import WEIGHTS

    spec = WEIGHTS["nk"]
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            return None, f"--weights '{p}' does not exist"
        return str(p), f"weights: {p}"
    wdir = os.environ.get("DEPTH_ROS_WEIGHTS_DIR")
    if wdir and (Path(wdir) / spec.filename).is_file():
        p = Path(wdir) / spec.filename
        return str(p), f"weights: {p} (DEPTH_ROS_WEIGHTS_DIR)"
    try:
        path = resolve_weights(None, spec, allow_download=allow_download)
        return str(path), f"weights: {path}"
    except WeightsError as exc:
        return None, " ".join(str(exc).split())


# --------------------------------------------------------------------------------------------------
# processes


class Proc:
    """A child process whose output goes to a log file and, prefixed, to our stdout."""

    def __init__(self, name: str, cmd: List[str], env: Dict[str, str], log_path: Path, echo: bool = True):
        self.name = name
        self.cmd = cmd
        self.log_path = log_path
        self.lines: List[str] = []
        self._log = open(log_path, "w", buffering=1)
        self._log.write("$ " + " ".join(cmd) + "\n")
        self.p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  bufsize=1, start_new_session=True)
        self._echo = echo
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            self._log.write(line + "\n")
            if self._echo and line.strip():
                print(f"  {self.name:>8} | {line}", flush=True)

    def poll(self) -> Optional[int]:
        return self.p.poll()

    def wait(self, timeout: float) -> Optional[int]:
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = 10.0) -> int:
        """SIGINT, then SIGTERM, then SIGKILL (to this child's own process group only)."""
        if self.p.poll() is None:
            for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self.p.pid, sig)
                except ProcessLookupError:
                    break
                if self.wait(wait) is not None:
                    break
        self._thread.join(timeout=2.0)
        self._log.close()
        return self.p.returncode if self.p.returncode is not None else -9

    def last_error(self) -> str:
        for line in reversed(self.lines):
            low = line.lower()
            if "error" in low or "fatal" in low or "exception" in low:
                return line.strip()
        return self.lines[-1].strip() if self.lines else "(no output)"


# --------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="depth-ros demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="out/demo", help="output folder (default out/demo; replaced if it is a demo's)")
    ap.add_argument("--quick", action="store_true",
                    help="tiny test network with random weights, faster camera: a smoke test (CI)")
    ap.add_argument("--rate", type=float, default=None, help="camera rate in Hz (default 1, quick 8)")
    ap.add_argument("--frames", type=int, default=None, help="frames to publish (default: the 16-frame stream)")
    ap.add_argument("--params-file", default=None, help="depth_node parameters (default config/zoedepth_nk.yaml)")
    ap.add_argument("--weights", default=None, help="ZoeD_M12_NK.pt path (default: DEPTH_ROS_WEIGHTS_DIR, cache, "
                                                    "download)")
    ap.add_argument("--no-download", action="store_true", help="do not try to download the weights")
    ap.add_argument("--device", default=None, help="override the params file's device (auto, cpu, cuda)")
    ap.add_argument("--startup-timeout", type=float, default=None,
                    help="seconds for depth_node to load and warm up (default 600, quick 120)")
    ap.add_argument("--drain-timeout", type=float, default=None,
                    help="seconds to wait for depth after the camera stopped (default 120, quick 30)")
    ap.add_argument("--storage", choices=("sqlite3", "mcap"), default="sqlite3", help="rosbag2 storage")
    ap.add_argument("--quiet", action="store_true", help="do not echo the processes' output")
    return ap


def _prepare_out(out: Path) -> None:
    if out.exists():
        if (out / MARKER).exists() or (out.is_dir() and not any(out.iterdir())):
            shutil.rmtree(out)
        else:
            raise SystemExit(f"[demo] error: '{out}' exists and was not written by the demo; choose another --out")
    out.mkdir(parents=True)
    (out / MARKER).write_text("written by depth_ros.demo.run_demo; replaced by the next demo run\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    t_start = time.monotonic()
    out = Path(args.out).resolve()
    if args.weights and not Path(args.weights).expanduser().is_file():
        # a wrong path is a mistake to report, not a reason to fall back to random weights
        print(f"[demo] error: --weights '{args.weights}' does not exist (leave --weights out to use the cache, a "
              "download or, failing those, random weights)", file=sys.stderr)
        return 2
    try:
        _prepare_out(out)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 2
    logs = out / "logs"
    logs.mkdir()
    quick = args.quick
    rate = args.rate if args.rate is not None else (8.0 if quick else 1.0)
    startup_timeout = args.startup_timeout if args.startup_timeout is not None else (120.0 if quick else 600.0)
    drain_timeout = args.drain_timeout if args.drain_timeout is not None else (30.0 if quick else 120.0)
    params_file = Path(args.params_file) if args.params_file else find_share_file("config/zoedepth_nk.yaml")
    if params_file is None or not params_file.is_file():
        print("[demo] error: config/zoedepth_nk.yaml not found (pass --params-file)", file=sys.stderr)
        return 2

    # -- weights --------------------------------------------------------------------------------
    overrides: List[str] = []
    if quick:
        random_weights = True
        mode = "quick: tiny test network (model_config.backbone:=test_tiny) with random weights"
        overrides += ["-p", "weights:=random", "-p", "allow_random_weights:=true",
                      "-p", "model_config.backbone:=test_tiny"]
        weights_line = "quick mode: random weights (not a depth result)"
    else:
        path, weights_line = resolve_demo_weights(args.weights, allow_download=not args.no_download)
        random_weights = path is None
        if random_weights:
            weights_line = (f"ZoeDepth-NK weights unavailable: {weights_line.rstrip('.')}. Running with RANDOM "
                            "weights instead: outputs are not a depth result")
            overrides += ["-p", "weights:=random", "-p", "allow_random_weights:=true"]
        else:
            overrides += ["-p", f"weights:={path}"]
        mode = "full: ZoeDepth-NK (BEiT-L) as configured in " + params_file.name
    if args.device:
        overrides += ["-p", f"device:={args.device}"]
    _say(weights_line)

    # -- environment ----------------------------------------------------------------------------
    env = dict(os.environ)
    domain = os.environ.get("DEPTH_ROS_DEMO_DOMAIN_ID")
    user_profile = env.get("FASTDDS_DEFAULT_PROFILES_FILE")
    env.update(isolation_env(int(domain) if domain else None))
    if user_profile:  # the user's own Fast DDS profile wins
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = user_profile
    env.setdefault("RCUTILS_COLORIZED_OUTPUT", "0")
    env["PYTHONUNBUFFERED"] = "1"
    if quick:
        env.setdefault("OMP_NUM_THREADS", "2")

    from depth_ros.demo.render import load_frames

    cam, frames = load_frames()
    n_frames = args.frames or len(frames)
    _say(f"mode: {mode}; camera {cam.width}x{cam.height} @ {rate:g} Hz, {n_frames} frames (room, then street); "
         f"ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}; output: {out}")

    node_cmd = executable("depth_node", "depth_ros.node") + [
        "--ros-args", "-r", "__node:=depth_node", "--params-file", str(params_file),
        "-r", "image:=/camera/image_raw", "-r", "camera_info:=/camera/camera_info"] + overrides
    rec_cmd = executable("depth_recorder", "depth_ros.demo.recorder") + [
        "--out", str(out), "--storage", args.storage, "--drain-timeout", str(drain_timeout),
        "--timeout", str(startup_timeout + n_frames / rate + drain_timeout + 60)] + (
        ["--random-weights"] if random_weights else []) + ["--ros-args", "-r", "__node:=depth_recorder"]
    cam_cmd = executable("sample_camera", "depth_ros.demo.sample_camera") + [
        "--rate", str(rate), "--frames", str(n_frames), "--loop", "--wait-subscribers", "2",
        "--wait-timeout", str(startup_timeout), "--stats", str(logs / "camera_stats.json"),
        "--ros-args", "-r", "__ns:=/camera"]

    echo = not args.quiet
    procs: List[Proc] = []
    code = 0
    try:
        rec = Proc("recorder", rec_cmd, env, logs / "recorder.log", echo)
        procs.append(rec)
        node = Proc("node", node_cmd, env, logs / "depth_node.log", echo)
        procs.append(node)
        camp = Proc("camera", cam_cmd, env, logs / "sample_camera.log", echo)
        procs.append(camp)
        _say("started sample_camera, depth_node and depth_recorder; the camera starts once depth_node has loaded "
             "and warmed up the network and subscribed")
        # Wait for the camera to finish (it waits for depth_node), watching for failures.
        while True:
            if node.poll() is not None:
                raise RuntimeError(f"depth_node exited ({node.poll()}): {node.last_error()}")
            if rec.poll() is not None and camp.poll() is None:
                if rec.poll() != 0:
                    raise RuntimeError(f"depth_recorder exited early ({rec.poll()}): {rec.last_error()}")
                # The recorder saw the depth of the camera's last frame before the camera process
                # itself exited: the run is complete.
                break
            rc = camp.poll()
            if rc is not None:
                if rc != 0:
                    raise RuntimeError(f"sample_camera failed ({rc}): {camp.last_error()}")
                break
            time.sleep(0.2)
        # Then for the recorder (it stops when the last frame's depth arrived or after the drain timeout).
        rc = rec.wait(drain_timeout + 60)
        if rc is None:
            raise RuntimeError("depth_recorder did not finish in time")
        if rc != 0:
            raise RuntimeError(f"depth_recorder failed ({rc}): {rec.last_error()}")
    except KeyboardInterrupt:
        _say("interrupted")
        code = 130
    except RuntimeError as exc:
        print(f"[demo] error: {' '.join(str(exc).split())} (logs: {logs})", file=sys.stderr)
        code = 1
    finally:
        for p in reversed(procs):
            p.stop()
    summary_path = out / "summary.json"
    if not summary_path.is_file():
        if code == 0:
            print(f"[demo] error: the recorder wrote no summary (logs: {logs})", file=sys.stderr)
            code = 1
        return code
    from depth_ros.demo.recorder import format_summary

    summary = json.loads(summary_path.read_text())
    summary["demo"] = {
        "mode": mode, "weights": weights_line, "random_weights": random_weights, "params_file": str(params_file),
        "camera_rate_hz": rate, "frames": n_frames, "ros_domain_id": env["ROS_DOMAIN_ID"],
        "total_time_s": time.monotonic() - t_start,
        "commands": {"depth_node": node_cmd, "sample_camera": cam_cmd, "depth_recorder": rec_cmd},
    }
    summary_path.write_text(json.dumps(summary, indent=1, default=str) + "\n")
    text = format_summary(summary)
    head = [f"mode: {mode}", weights_line]
    files = [f"bag: {summary.get('bag')} ({sum(summary.get('bag_messages', {}).values())} messages)",
             f"pictures: {len(summary.get('pictures', []))} in {out / 'frames'}",
             "point clouds: " + ", ".join(f"{k} ({v} points)" for k, v in (summary.get('ply') or {}).items()),
             f"summary: {out / 'summary.txt'}, {out / 'summary.json'}; logs: {logs}",
             f"total time: {summary['demo']['total_time_s']:.0f} s"]
    full = "\n".join(head + [text] + files)
    (out / "summary.txt").write_text(full + "\n")
    print("\n========== depth_ros demo summary ==========")
    print(full)
    if not summary.get("outputs", {}).get("depth_frames"):
        print("[demo] error: no depth frame was received", file=sys.stderr)
        code = code or 1
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
