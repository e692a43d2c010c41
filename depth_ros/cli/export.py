"""``depth-ros export``: a model's network at network resolution -> an ONNX file, checked against PyTorch."""
from __future__ import annotations

import json

from depth_ros.cli.common import CliError, key_values
from depth_ros.pipeline.loading import one_line


def run(args) -> int:
    from depth_ros.models.export import ExportError, export_onnx

    if args.weights == "random" and not args.allow_random_weights:
        raise CliError("--weights random gives an untrained network; add --allow-random-weights if that is really "
                       "wanted (tests, smoke runs)")
    try:
        report = export_onnx(args.model, args.weights, args.out, height=args.height, width=args.width,
                             precision=args.precision, model_config=key_values(args.model_arg, "--model-arg"))
    except (ExportError, ValueError, OSError) as exc:
        raise CliError(one_line(exc)) from None
    print(json.dumps(report, indent=1, default=str))
    return 0


def add_parser(sub) -> None:
    pe = sub.add_parser("export", help="export a model's network to ONNX (checked against PyTorch)",
                        description="Writes the network's forward at network resolution as ONNX, with the metadata "
                                    "the onnxruntime backend needs; refuses to write a graph that disagrees with "
                                    "PyTorch (ONNX Runtime on the CPU, same input) beyond 1e-4 relative (fp32).")
    pe.add_argument("model", help="zoedepth_nk, zoedepth_n, zoedepth_k, depth_pro or depth_pro_fov")
    pe.add_argument("--weights", required=True, help="checkpoint path ('random' needs --allow-random-weights)")
    pe.add_argument("--allow-random-weights", action="store_true")
    pe.add_argument("--out", required=True, help="the .onnx file to write")
    pe.add_argument("--height", type=int, default=None, help="network input height (ZoeDepth; default 384)")
    pe.add_argument("--width", type=int, default=None, help="network input width (ZoeDepth; default 512)")
    pe.add_argument("--precision", choices=("float32", "float16"), default="float32")
    pe.add_argument("--model-arg", action="append", metavar="KEY=VALUE",
                    help="model constructor argument, e.g. backbone=beitl16_384; patch_batch=5 for Depth Pro on a CPU")
    pe.set_defaults(func=run)
