"""ONNX export of the networks, checked against PyTorch before a file is written.

``export_onnx(model_name, weights, out_path, ...)`` is what ``depth-ros export`` calls. Arguments:

=============== ===================================================================================
model_name      ``zoedepth_nk``, ``zoedepth_n``, ``zoedepth_k``, ``depth_pro``, or ``depth_pro_fov``
                (Depth Pro's focal-only network: FOV from the image, ~3 ViT passes instead of 38;
                the node uses it when CameraInfo is missing). Weights of ``depth_pro_fov`` are the
                Depth Pro checkpoint.
weights         what ``create_model`` accepts: a checkpoint path, ``"random"``, or None (cache/download).
out_path        the ``.onnx`` file. Networks above 2 GB (Depth Pro ViT-L in float32: 3.8 GB) keep their
                weights in ``<out_path>.data`` next to it (ONNX external data; keep both files together).
height, width   ZoeDepth only: the network input size (multiples of 32). Default: the model's own
                (384 x 512 for N/NK, 384 x 768 for K). Pick the size ``network_size`` gives for the
                camera (640 x 480 -> 384 x 512). Depth Pro's input is fixed (1536 x 1536 released).
precision       ``float32`` or ``float16``. float16 keeps the parts that PyTorch keeps in float32 in
                float32 (ZoeDepth: metric heads and router; Depth Pro: ``depth_pro.FP32_MODULES``);
                the graph's input and outputs are float32 either way.
model_config    extra keyword arguments of ``create_model`` (``backbone``, ``vit_preset``,
                ``decoder_features``, ``use_fov``, ...; the CLI's ``--model-arg K=V``).
opset           ONNX opset (default ``DEFAULT_OPSET``).
check           run the exported graph in ONNX Runtime (CPU) on a random batch of 2 and compare every
                output with PyTorch float32 on the same input; beyond ``tolerance`` (relative to the
                output's largest magnitude; default 1e-4 for float32, 1e-2 for float16) nothing is
                written and ``ExportError`` is raised. The error of each output is in the report.
tolerance       override of the default tolerance.
=============== ===================================================================================

Graphs (batch axis dynamic, named ``batch``; everything else fixed):

* ZoeDepth: input ``image`` N x 3 x H x W float32 RGB in [0, 1] (the graph normalises it as the network
  does, ``(x - 0.5) / 0.5``). Outputs ``metric_depth`` N x 1 x H x W (metres) and ``confidence``
  N x 1 x H x W; NK also ``domain_logits`` N x 2 (indoor, outdoor) and ``head_depth`` /
  ``head_confidence`` N x 2 x H x W (each head's result, channel 0 indoor, 1 outdoor). NK routes per
  image inside the graph: both heads run on the whole batch and ``metric_depth`` takes, per image, the
  head with the larger logit (ties: indoor, as ``argmax``), so one graph serves a batch of mixed
  indoor/outdoor images. The heads are small next to the BEiT backbone; the cost of running both is
  measured by ``bench/bench_onnx.py`` (``routing`` line).
* Depth Pro: input ``image`` N x 3 x S x S float32 in [-1, 1] (``2 * rgb / 255 - 1``, squashed to S x S,
  S = 1536 released); outputs ``canonical_inverse_depth`` N x 1 x S x S and ``fov_deg`` N (horizontal
  field of view in degrees; absent when the network was built with ``use_fov=False``).
* Depth Pro FOV: input as Depth Pro, output ``fov_deg`` N.

``metadata_props`` carry everything the loader needs (``read_metadata``): ``depth_ros.model``,
``depth_ros.variant``, ``depth_ros.input_size`` (``HxW``), ``depth_ros.normalization``,
``depth_ros.precision``, ``depth_ros.version``, ``depth_ros.outputs`` and ``depth_ros.config`` (JSON of the
network configuration).

The exporter is PyTorch's TorchScript-based ``torch.onnx.export(dynamo=False)``: the torch.export-based one
(``dynamo=True``) cannot keep the batch axis dynamic through the decomposed attention of these networks
(torch 2.14).
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

import depth_ros

#: model names ``export_onnx`` accepts
EXPORT_MODELS = ("zoedepth_nk", "zoedepth_n", "zoedepth_k", "depth_pro", "depth_pro_fov")
PRECISIONS = ("float32", "float16")
DEFAULT_OPSET = 18
#: default export check tolerance: max |onnx - torch| / max |torch| per output
DEFAULT_TOLERANCE = {"float32": 1e-4, "float16": 1e-2}
#: ONNX's protobuf limit: larger models keep their weights in an external ``.data`` file
_PROTO_LIMIT = 2_000_000_000
META_PREFIX = "depth_ros."

ZOEDEPTH_NORMALIZATION = "RGB in [0, 1], N x 3 x H x W float32 (the graph applies (x - 0.5) / 0.5)"
DEPTH_PRO_NORMALIZATION = "RGB scaled to [-1, 1] (2 * rgb / 255 - 1), bilinear to S x S, N x 3 x S x S float32"


class ExportError(RuntimeError):
    """The export failed or its check disagreed with PyTorch; no file was written."""


# ---------------------------------------------------------------------------------------------
# Graph modules (the network's forward at network resolution, graph-friendly)
# ---------------------------------------------------------------------------------------------
class ZoeDepthGraph(nn.Module):
    """ZoeDepthNet at a fixed H x W on [0, 1] input; both heads, per-image selection in the graph."""

    def __init__(self, net, height: int, width: int):
        super().__init__()
        self.net = net
        self.size = (int(height), int(width))

    def forward(self, image: torch.Tensor):
        net = self.net
        dpt = net.core.core
        h, w = self.size
        x = ((image - 0.5) / 0.5).to(dpt.pretrained.model.cls_token.dtype)
        biases = dpt.build_rel_pos_biases(h // dpt.patch, w // dpt.patch, x.dtype, x.device)
        feats = dpt._forward_features(x, biases)
        bott, logits = net.route(feats)
        maps = [m.float() for m in (feats.r4, feats.r3, feats.r2, feats.r1, feats.out_conv, feats.rel_depth)]
        heads = [net._head(name, bott, *maps, False, True) for name in net.head_names]
        if logits is None:
            return heads[0]["metric_depth"], heads[0]["confidence"]
        outdoor = (logits[:, 1] > logits[:, 0]).view(-1, 1, 1, 1)
        depth = torch.where(outdoor, heads[1]["metric_depth"], heads[0]["metric_depth"])
        conf = torch.where(outdoor, heads[1]["confidence"], heads[0]["confidence"])
        head_depth = torch.cat([hd["metric_depth"] for hd in heads], dim=1)
        head_conf = torch.cat([hd["confidence"] for hd in heads], dim=1)
        return depth, conf, logits, head_depth, head_conf


class DepthProGraph(nn.Module):
    """DepthProNet.forward with the FOV flattened to N (or without it when the net has no FOV network)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor):
        canonical, fov = self.net(image.to(self._dtype()), compute_fov=True)
        if fov is None:
            return canonical.float()
        return canonical.float(), fov.float().reshape(-1)

    def _dtype(self) -> torch.dtype:
        return self.net.encoder.patch_encoder.cls_token.dtype


class DepthProFovGraph(DepthProGraph):
    """DepthProNet.forward_fov (focal-only network), FOV flattened to N."""

    def forward(self, image: torch.Tensor):
        return self.net.forward_fov(image.to(self._dtype())).float().reshape(-1)


# ---------------------------------------------------------------------------------------------
# Building the graph module and its metadata
# ---------------------------------------------------------------------------------------------
def _zoedepth_parts(model, height, width, precision):
    net = model.net
    if height is None and width is None:
        height, width = net.core.img_size
    if height is None or width is None:
        raise ValueError("give both height and width (or neither, for the model's own size)")
    height, width = int(height), int(width)
    if height < 32 or width < 32 or height % 32 or width % 32:
        raise ValueError(f"ZoeDepth network size must be positive multiples of 32, got {height}x{width}")
    outputs = ["metric_depth", "confidence"] + (["domain_logits", "head_depth", "head_confidence"]
                                                if net.routed else [])
    meta = {
        "variant": net.variant,
        "input_size": f"{height}x{width}",
        "normalization": ZOEDEPTH_NORMALIZATION,
        "config": {"backbone": net.backbone, "img_size": list(net.core.img_size),
                   "keep_aspect": net.core.keep_aspect, "head_names": list(net.head_names)},
    }
    return (lambda n: ZoeDepthGraph(n, height, width)), (height, width), outputs, meta


def _depth_pro_parts(model, height, width, fov_only):
    cfg = model.config
    s = cfg.img_size
    if (height is not None and int(height) != s) or (width is not None and int(width) != s):
        raise ValueError(f"Depth Pro's network input is fixed at {s}x{s} for this preset; got {height}x{width}")
    if fov_only and not cfg.use_fov:
        raise ValueError("depth_pro_fov needs the FOV network; it was built with use_fov=False")
    vit = cfg.vit_preset if isinstance(cfg.vit_preset, str) else "custom"
    outputs = ["fov_deg"] if fov_only else (["canonical_inverse_depth"] + (["fov_deg"] if cfg.use_fov else []))
    meta = {
        "variant": vit,
        "input_size": f"{s}x{s}",
        "normalization": DEPTH_PRO_NORMALIZATION,
        "config": {"vit_preset": vit, "decoder_features": cfg.decoder_features, "use_fov": cfg.use_fov,
                   "patch_batch": model.net.encoder.patch_batch},
    }
    return (DepthProFovGraph if fov_only else DepthProGraph), (s, s), outputs, meta


def _weight_constants(net: nn.Module):
    """Weights that the forward derives from parameters, computed once for the trace so that the graph
    holds them as constants (Depth Pro's folded head, ``DepthProNet.head_folded_once``)."""
    from depth_ros.models.depth_pro import DepthProNet

    return net.head_folded_once() if isinstance(net, DepthProNet) else contextlib.nullcontext()


def _to_precision(model_name: str, net: nn.Module, precision: str) -> nn.Module:
    if precision == "float32":
        return net
    net = copy.deepcopy(net)
    if model_name.startswith("zoedepth"):
        net.core.half()              # heads and router stay float32, as in ZoeDepth(dtype=float16)
    else:
        net.set_precision(torch.float16)
    return net


def _relative_errors(got: Sequence[np.ndarray], ref: Sequence[np.ndarray], names: Sequence[str]) -> Dict[str, float]:
    errs = {}
    for name, a, b in zip(names, got, ref):
        if a.shape != b.shape:
            raise ExportError(f"ONNX output '{name}' has shape {a.shape}, PyTorch {b.shape}")
        b = b.astype(np.float64)
        scale = max(float(np.abs(b).max()), 1e-12)
        errs[name] = float(np.abs(a.astype(np.float64) - b).max() / scale)
    return errs


def check_input(model_name: str, size: Tuple[int, int], batch: int = 2, seed: int = 0) -> torch.Tensor:
    """The export check's input: a smooth random image batch in the graph's input range."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(batch, 3, max(2, size[0] // 16), max(2, size[1] // 16), generator=g)
    x = torch.nn.functional.interpolate(low, size=size, mode="bilinear", align_corners=False)
    x = (x + 0.05 * torch.rand(batch, 3, *size, generator=g)).clamp(0, 1)
    return x if model_name.startswith("zoedepth") else x * 2 - 1


def export_onnx(model_name: str, weights, out_path, height: Optional[int] = None, width: Optional[int] = None,
                precision: str = "float32", model_config: Optional[Dict[str, Any]] = None,
                opset: int = DEFAULT_OPSET, check: bool = True, tolerance: Optional[float] = None) -> Dict[str, Any]:
    """Build ``model_name`` with ``weights`` (see ``create_model``) and export it; see the module docstring.

    Returns the report: ``path``, ``data_path`` (external weights file or None), ``model``, ``precision``,
    ``input_size``, ``outputs``, ``bytes`` (both files), ``export_s``, ``check_s``, ``max_rel_error`` and
    ``max_abs_error`` (per output, vs PyTorch float32), ``tolerance``.
    """
    from depth_ros.models.registry import create_model

    if model_name not in EXPORT_MODELS:
        raise ValueError(f"cannot export '{model_name}'; exportable: {', '.join(EXPORT_MODELS)}")
    config = dict(model_config or {})
    family = "depth_pro" if model_name == "depth_pro_fov" else model_name
    model = create_model(family, weights=weights, device="cpu", dtype="float32", **config)
    return export_model(model, out_path, height=height, width=width, precision=precision, opset=opset,
                        check=check, tolerance=tolerance, fov_only=model_name == "depth_pro_fov")


def export_model(model, out_path, height: Optional[int] = None, width: Optional[int] = None,
                 precision: str = "float32", opset: int = DEFAULT_OPSET, check: bool = True,
                 tolerance: Optional[float] = None, fov_only: bool = False) -> Dict[str, Any]:
    """Export an already built float32 ``ZoeDepth`` / ``DepthPro`` model (``export_onnx`` does the
    building); ``fov_only`` exports Depth Pro's focal-only network (model name ``depth_pro_fov``)."""
    from depth_ros.models.depth_pro import DepthPro
    from depth_ros.models.zoedepth import ZoeDepth

    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision '{precision}'; use one of {', '.join(PRECISIONS)}")
    if isinstance(model, ZoeDepth):
        if fov_only:
            raise ValueError("fov_only applies to Depth Pro only")
        name = model.name
        make_graph, size, outputs, meta = _zoedepth_parts(model, height, width, precision)
    elif isinstance(model, DepthPro):
        name = "depth_pro_fov" if fov_only else "depth_pro"
        make_graph, size, outputs, meta = _depth_pro_parts(model, height, width, fov_only)
    else:
        raise ValueError(f"cannot export a {type(model).__name__}; exportable: ZoeDepth and Depth Pro models")
    if next(model.net.parameters()).dtype != torch.float32 or next(model.net.parameters()).device.type != "cpu":
        raise ValueError("export_model needs a float32 model on the CPU (the precision is chosen by 'precision')")
    out_path = Path(out_path)
    if out_path.suffix != ".onnx":
        raise ValueError(f"output file must end in .onnx, got '{out_path}'")
    if not out_path.parent.is_dir():
        raise ValueError(f"output folder '{out_path.parent}' does not exist")
    tol = float(tolerance) if tolerance is not None else DEFAULT_TOLERANCE[precision]

    ref_graph = make_graph(model.net).eval()
    graph = make_graph(_to_precision(name, model.net, precision)).eval()
    x = check_input(name, size)
    metadata = {
        "model": name, "variant": meta["variant"], "input_size": meta["input_size"],
        "normalization": meta["normalization"], "precision": precision, "version": depth_ros.__version__,
        "outputs": ",".join(outputs), "config": json.dumps(meta["config"], sort_keys=True),
    }
    report: Dict[str, Any] = {"model": name, "precision": precision, "input_size": list(size),
                              "outputs": outputs, "tolerance": tol, "opset": int(opset)}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out_path.parent) as tmp:
        raw = Path(tmp) / "raw.onnx"
        dynamic = {n: {0: "batch"} for n in ["image"] + outputs}
        try:
            with warnings.catch_warnings(), torch.no_grad(), _weight_constants(graph.net):
                warnings.simplefilter("ignore")     # tracer warnings about Python ints from shapes (expected)
                torch.onnx.export(graph, (x,), str(raw), dynamo=False, input_names=["image"], output_names=outputs,
                                  opset_version=int(opset), dynamic_axes=dynamic, do_constant_folding=True)
        except Exception as exc:  # noqa: BLE001 - re-raised with the model named
            raise ExportError(f"exporting {name} to ONNX failed: {type(exc).__name__}: {exc}") from exc
        staged = Path(tmp) / out_path.name
        data_name = out_path.name + ".data"
        _finish_file(raw, staged, data_name, metadata)
        report["export_s"] = time.perf_counter() - t0
        if check:
            t1 = time.perf_counter()
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.log_severity_level = 3
            sess = ort.InferenceSession(str(staged), so, providers=["CPUExecutionProvider"])
            got = sess.run(outputs, {"image": x.numpy()})
            del sess
            with torch.no_grad():
                ref = ref_graph(x)
            ref = [ref] if isinstance(ref, torch.Tensor) else list(ref)
            ref_np = [r.float().numpy() for r in ref]
            errs = _relative_errors(got, ref_np, outputs)
            report["max_rel_error"] = errs
            report["max_abs_error"] = {n: float(np.abs(a.astype(np.float64) - b).max())
                                       for n, a, b in zip(outputs, got, ref_np)}
            report["check_s"] = time.perf_counter() - t1
            bad = {k: v for k, v in errs.items() if not v <= tol}
            if bad:
                worst = ", ".join(f"{k} {v:.2e}" for k, v in bad.items())
                raise ExportError(f"ONNX export of {name} ({precision}) disagrees with PyTorch beyond {tol:g} "
                                  f"relative ({worst}); no file written")
        # move into place: the weights file first, so that a .onnx never points at a missing .data
        data_src = staged.parent / data_name
        data_dst = out_path.parent / data_name
        if data_src.exists():
            os.replace(data_src, data_dst)
        elif data_dst.exists():
            data_dst.unlink()                # a stale weights file of an earlier, larger export
        os.replace(staged, out_path)
    report["path"] = str(out_path)
    report["data_path"] = str(data_dst) if data_dst.exists() else None
    report["bytes"] = out_path.stat().st_size + (data_dst.stat().st_size if data_dst.exists() else 0)
    return report


def _finish_file(raw: Path, dst: Path, data_name: str, metadata: Dict[str, str]) -> None:
    """Add the metadata and write one ``.onnx`` (+ one ``.data`` file when above the protobuf limit)."""
    import onnx

    model = onnx.load(str(raw), load_external_data=True)
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = META_PREFIX + key, str(value)
    model.producer_name = "depth_ros"
    model.producer_version = depth_ros.__version__
    size = sum(len(t.raw_data) for t in model.graph.initializer)
    if size > _PROTO_LIMIT:
        onnx.save_model(model, str(dst), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name, size_threshold=1024)
    else:
        onnx.save_model(model, str(dst))


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------
class OnnxFileError(ValueError):
    """An ONNX file that is missing, unreadable, or not a depth_ros export."""


def read_metadata(path) -> Dict[str, Any]:
    """The ``depth_ros.*`` metadata of an exported file (prefix stripped; ``config`` parsed, ``input_size``
    as (H, W), ``outputs`` as a list), plus ``graph_inputs``: (name, shape) of the graph's inputs (dimension
    names for symbolic axes). Reads the graph structure only, not the external weights."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise OnnxFileError(f"ONNX file '{path}' not found")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types
        raise OnnxFileError(f"'{path}' is not a readable ONNX file ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else 'parse error'})") from None
    meta = {p.key[len(META_PREFIX):]: p.value for p in model.metadata_props if p.key.startswith(META_PREFIX)}
    missing = [k for k in ("model", "input_size", "precision", "config", "outputs") if k not in meta]
    if missing:
        raise OnnxFileError(f"'{path}' was not exported by depth-ros export (metadata lacks "
                            f"{', '.join(META_PREFIX + k for k in missing)})")
    try:
        h, w = (int(v) for v in meta["input_size"].split("x"))
        meta["config"] = json.loads(meta["config"])
    except (ValueError, json.JSONDecodeError):
        raise OnnxFileError(f"'{path}': malformed depth_ros metadata") from None
    meta["input_size"] = (h, w)
    meta["outputs"] = meta["outputs"].split(",")
    meta["graph_inputs"] = [(inp.name, [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim])
                            for inp in model.graph.input]
    return meta
