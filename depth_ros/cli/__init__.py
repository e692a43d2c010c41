"""``depth-ros``: metric depth for images, videos and rosbag2 recordings, without a running ROS graph.

    depth-ros infer INPUT... --out DIR [--model NAME] [--fx ... | --hfov ...]
    depth-ros bag IN OUT --image-topic T [--camera-info-topic C]
    depth-ros export MODEL --weights PATH --out FILE.onnx
    depth-ros demo [--quick] [--out out/demo]          (the ROS demo; see depth_ros.demo.run_demo)

One module per command (``infer``, ``bag``, ``export``); ``common`` holds the shared options and the
frame pipeline they build. Errors are printed as one line (``depth-ros: error: ...``), exit status 1.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from depth_ros.cli import bag, export, infer
from depth_ros.cli.common import CliError
from depth_ros.pipeline.loading import one_line

__all__ = ["CliError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="depth-ros", description="Metric depth from a single camera "
                                 "(ZoeDepth-NK, Depth Pro) for files, videos and rosbag2 recordings.")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    infer.add_parser(sub)
    bag.add_parser(sub)
    export.add_parser(sub)
    sub.add_parser("demo", help="run the ROS demo (sample camera -> depth_node -> recorder)", add_help=False)
    return ap


def _run_demo(argv: Sequence[str]) -> int:
    from depth_ros.demo.run_demo import main as demo_main
    return demo_main(list(argv))


def main(argv: Optional[Sequence[str]] = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["demo"]:  # everything after 'demo' belongs to the demo's own parser
        return _run_demo(args_list[1:])
    args = build_parser().parse_args(args_list)
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"depth-ros: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("depth-ros: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an unexpected failure: still one line, with the type
        if os.environ.get("DEPTH_ROS_DEBUG"):
            raise
        print(f"depth-ros: error: {type(exc).__name__}: {one_line(exc)} (set DEPTH_ROS_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
