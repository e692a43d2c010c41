"""ONNX Runtime backend: the exported graphs (``depth_ros.models.export``) behind the ``DepthModel`` contract.

``create_model(NAME, backend="onnxruntime", weights=FILE.onnx, ...)`` ends here
(``create_onnx_model``). The models are subclasses of the PyTorch ones (``ZoeDepth``, ``DepthPro``) that
replace only the network call: image checks, resizing, padding/flip, routing decisions, metric
conversion, FOV -> focal, confidence and ``DepthPrediction`` are the same code. Pre/post-processing
runs in PyTorch on the CPU; the network runs in ONNX Runtime.

Providers (``providers``, tried in order; names or ONNX Runtime's full names):

* ``tensorrt`` (``TensorrtExecutionProvider``): ``trt_fp16`` lets TensorRT build fp16 kernels,
  ``trt_cache_dir`` keeps built engines (first start builds them: minutes on a Jetson);
* ``cuda`` (``CUDAExecutionProvider``), on ``device`` ``cuda:N``'s GPU N;
* ``cpu`` (``CPUExecutionProvider``).

Default: ``tensorrt, cuda, cpu`` for ``device`` ``auto``/``cuda[:N]``, ``cpu`` for ``device="cpu"``.
A provider that this onnxruntime build lacks (or that fails to start) is skipped with one warning line;
none left is an error. The CPU wheel (``onnxruntime``) has only ``cpu``; a GPU robot installs
``onnxruntime-gpu`` (x86-64) or NVIDIA's Jetson wheel of onnxruntime-gpu (JetPack), which carry the
CUDA and TensorRT providers.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from depth_ros.models.base import Capabilities, DepthModel, DepthPrediction, resolve_dtype
from depth_ros.models.depth_pro import CONFIDENCE_MODES, VIT_PRESETS, DepthPro, DepthProConfig
from depth_ros.models.export import OnnxFileError, read_metadata
from depth_ros.models.zoedepth import (
    DOMAINS,
    VARIANTS,
    ZoeDepth,
    head_indices,
    image_logits,
    network_size,
    pad_and_flip,
    resize_input,
    to_predictions,
)

__all__ = ["PROVIDERS", "OnnxFileError", "OnnxRunner", "OnnxZoeDepth", "OnnxDepthPro", "create_onnx_model",
           "open_session", "resolve_providers", "session_options"]

#: short provider names -> ONNX Runtime's
PROVIDERS = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}
_SHORT = {v: k for k, v in PROVIDERS.items()}
DEFAULT_GPU_PROVIDERS = ("tensorrt", "cuda", "cpu")


def _device_id(device) -> Tuple[str, int]:
    dev = "auto" if device is None else str(device)
    if dev in ("auto", "cpu", "cuda"):
        return dev, 0
    if dev.startswith("cuda:") and dev[5:].isdigit():
        return "cuda", int(dev[5:])
    raise ValueError(f"unknown device '{device}' for the onnxruntime backend; use auto, cpu, cuda or cuda:N")


def resolve_providers(providers: Optional[Sequence[str]] = None, device="auto", trt_fp16: bool = True,
                      trt_cache_dir=None,
                      available: Optional[Sequence[str]] = None) -> List[Tuple[str, Dict[str, Any]]]:
    """The (provider, options) list for ``InferenceSession``: requested order, unavailable ones dropped with
    one warning line each. ``available`` defaults to ``onnxruntime.get_available_providers()``."""
    kind, index = _device_id(device)
    if providers is None:
        providers = ("cpu",) if kind == "cpu" else DEFAULT_GPU_PROVIDERS
    elif isinstance(providers, str):
        providers = [p for p in providers.replace(",", " ").split() if p]
    if not providers:
        raise ValueError("providers is empty; use e.g. ['tensorrt', 'cuda', 'cpu']")
    full = []
    for p in providers:
        name = PROVIDERS.get(str(p).lower(), str(p))
        if name not in _SHORT:
            raise ValueError(f"unknown ONNX Runtime provider '{p}'; use tensorrt, cuda or cpu")
        if name not in full:
            full.append(name)
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    out: List[Tuple[str, Dict[str, Any]]] = []
    for i, name in enumerate(full):
        if name not in available:
            rest = [_SHORT[n] for n in full[i + 1:] if n in available]
            warnings.warn(f"ONNX Runtime provider {_SHORT[name]} is not available in this onnxruntime build "
                          f"(has: {', '.join(_SHORT.get(a, a) for a in available)}); "
                          f"{'using ' + rest[0] if rest else 'no provider left'}", RuntimeWarning, stacklevel=3)
            continue
        opts: Dict[str, Any] = {}
        if name == "TensorrtExecutionProvider":
            opts = {"device_id": index, "trt_fp16_enable": bool(trt_fp16)}
            if trt_cache_dir:
                Path(trt_cache_dir).mkdir(parents=True, exist_ok=True)
                opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(trt_cache_dir))
        elif name == "CUDAExecutionProvider":
            opts = {"device_id": index}
        out.append((name, opts))
    if not out:
        raise ValueError(f"none of the ONNX Runtime providers {', '.join(_SHORT[n] for n in full)} is available "
                         f"(this onnxruntime has: {', '.join(_SHORT.get(a, a) for a in available)})")
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def session_options(threads: Optional[int] = None):
    """``SessionOptions`` the backend uses: all graph optimisations, warnings and errors only."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = int(threads)
    return so


def _fused_model(path: Path):
    """(serialized graph with attention fused, folder of its external data or None, blocks fused), or None
    when the graph has no attention block that ``fuse_attention`` recognises."""
    import onnx

    from depth_ros.models.onnx_fusion import fuse_attention

    model = onnx.load(str(path), load_external_data=False)
    count = fuse_attention(model)
    if not count:
        return None
    external = any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    return model.SerializeToString(), (str(path.resolve().parent) if external else None), count


def open_session(path, providers: List[Tuple[str, Dict[str, Any]]], threads: Optional[int] = None,
                 fuse: Optional[bool] = None):
    """``(InferenceSession, fused)`` for an exported file. Unless a TensorRT provider is requested (it fuses
    attention itself and cannot run contrib operators), the graph's attention blocks are first rewritten in
    memory into ONNX Runtime's fused kernel (``onnx_fusion.fuse_attention``; ``fused`` says how many); if
    that graph does not load (an older onnxruntime), the file runs as it is, with one warning line.
    ``fuse=False`` opens the file as it is."""
    import onnxruntime as ort

    path = Path(path)
    names = [p for p, _ in providers]
    options = [o for _, o in providers]
    if fuse is None:
        fuse = "TensorrtExecutionProvider" not in names
    fused = _fused_model(path) if fuse else None
    if fused is not None:
        data, folder, count = fused
        so = session_options(threads)
        if folder:
            so.add_session_config_entry("session.model_external_initializers_file_folder_path", folder)
        try:
            session = ort.InferenceSession(data, so, providers=names, provider_options=options)
            return session, count
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            warnings.warn(f"ONNX Runtime cannot run '{path.name}' with fused attention ({_first_line(exc)}); running the "
                          f"file as it is", RuntimeWarning, stacklevel=3)
    return ort.InferenceSession(str(path), session_options(threads), providers=names,
                                provider_options=options), 0


class OnnxRunner:
    """One ``InferenceSession`` of an exported graph: float32 N x 3 x H x W ``image`` in, outputs by name."""

    def __init__(self, path, providers: List[Tuple[str, Dict[str, Any]]], meta: Dict[str, Any]):
        self.path = Path(path)
        self.meta = meta
        self.input_size = tuple(meta["input_size"])
        inputs = meta["graph_inputs"]
        if len(inputs) != 1 or inputs[0][0] != "image" or len(inputs[0][1]) != 4 or \
                tuple(inputs[0][1][1:]) != (3,) + self.input_size:
            raise OnnxFileError(f"'{self.path}': graph input {inputs} does not match its metadata "
                                f"(image N x 3 x {self.input_size[0]} x {self.input_size[1]})")
        try:
            self.session, self.fused_attention = open_session(self.path, providers)
        except Exception as exc:  # noqa: BLE001 - ORT and protobuf raise their own exception types
            raise OnnxFileError(f"ONNX Runtime cannot load '{self.path}': {_first_line(exc)}") from None
        got = self.session.get_providers()
        for name, _ in providers:
            if name not in got:
                warnings.warn(f"ONNX Runtime provider {_SHORT[name]} failed to start for '{self.path.name}'; "
                              f"running on {', '.join(_SHORT.get(g, g) for g in got)}", RuntimeWarning, stacklevel=3)
        self.providers = got
        self.outputs = [o.name for o in self.session.get_outputs()]
        missing = [o for o in meta["outputs"] if o not in self.outputs]
        if missing:
            raise OnnxFileError(f"'{self.path}' lacks the outputs {', '.join(missing)} its metadata lists")

    def run(self, x, names: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
        if isinstance(x, torch.Tensor):
            x = x.detach().to("cpu", torch.float32).numpy()
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1:] != (3,) + self.input_size:
            raise ValueError(f"'{self.path.name}' takes N x 3 x {self.input_size[0]} x {self.input_size[1]}, "
                             f"got {x.shape}")
        names = list(names) if names is not None else self.outputs
        return dict(zip(names, self.session.run(names, {"image": x})))


def _check_file(path, name: str, expect: Sequence[str]) -> Dict[str, Any]:
    meta = read_metadata(path)
    if meta["model"] not in expect:
        raise OnnxFileError(f"'{path}' holds a {meta['model']} graph, not {' or '.join(expect)}")
    return meta


def _resolve_precision(dtype, meta, path) -> str:
    if dtype is None or (isinstance(dtype, str) and dtype == "auto"):
        return meta["precision"]
    want = resolve_dtype(dtype)
    have = resolve_dtype(meta["precision"])
    if want != have:
        raise ValueError(f"'{path}' holds a {meta['precision']} graph but dtype {dtype} was asked for; "
                         f"pass dtype='auto' (or '{meta['precision']}'), or export again with --precision")
    return meta["precision"]


_IGNORED = {"allow_download", "channels_last", "timm_pretrained"}


class OnnxZoeDepth(ZoeDepth):
    """ZoeDepth N / K / NK from an exported graph (``ZoeDepth``'s infer, infer_batch, domain, options
    ``domain``, ``flip_aug``, ``pad_input``). Every input is resized to the graph's H x W; when the
    PyTorch model would have picked another network size for that image (``keep_aspect``), one warning
    says so (export with ``--height/--width`` for the camera)."""

    def __init__(self, runner: OnnxRunner, precision: str, **config):
        meta = runner.meta
        DepthModel.__init__(self, None, "cpu", "float32")   # pre/post-processing tensors: CPU float32
        self.runner = runner
        self.precision = precision
        self.variant = meta["variant"]
        self.name = f"zoedepth_{self.variant}"
        cfg = meta["config"]
        self.head_names = tuple(cfg["head_names"])
        self.img_size = tuple(cfg["img_size"])
        self.keep_aspect = bool(config.get("keep_aspect", cfg["keep_aspect"]))
        self.flip_aug = bool(config.get("flip_aug", False))
        self.pad_input = bool(config.get("pad_input", False))
        self.graph_size = tuple(runner.input_size)
        self.net = None
        self._warned_sizes = set()
        self.capabilities = Capabilities(confidence=True, domains=self.domains, routes_domains=len(self.head_names) > 1,
                                         batch=True)
        self._domain = "auto"
        self.domain = config.get("domain", "auto")

    @property
    def domains(self) -> Tuple[str, ...]:
        return tuple(DOMAINS[n] for n in self.head_names)

    @torch.inference_mode()
    def predict(self, x: torch.Tensor) -> List[DepthPrediction]:
        """B x 3 x H x W RGB in [0, 1] -> one DepthPrediction per image (the graph does the network)."""
        b, _, h, w = x.shape
        domain = self._domain
        xs, pads = pad_and_flip(x, self.pad_input, self.flip_aug)
        want = network_size(xs.shape[-2], xs.shape[-1], self.img_size, self.keep_aspect)
        if want != self.graph_size and want not in self._warned_sizes:
            self._warned_sizes.add(want)
            warnings.warn(f"{self.runner.path.name} runs at {self.graph_size[0]}x{self.graph_size[1]}; the PyTorch "
                          f"model would use {want[0]}x{want[1]} for {xs.shape[-2]}x{xs.shape[-1]} images "
                          f"(export with --height {want[0]} --width {want[1]} to match)", RuntimeWarning, stacklevel=2)
        out = self.runner.run(resize_input(xs, self.graph_size))
        routed = len(self.head_names) > 1
        logits = torch.from_numpy(out["domain_logits"]) if routed else None
        img_logits = image_logits(logits, b, self.flip_aug)
        idx = head_indices(self.head_names, None if domain == "auto" else domain, img_logits, b)
        if not routed or (domain == "auto" and not self.flip_aug):
            depth, conf = torch.from_numpy(out["metric_depth"]), torch.from_numpy(out["confidence"])
        else:   # a forced head, or the flip pair's mean logits: take each image's head from the per-head outputs
            sel = torch.tensor(idx * 2 if self.flip_aug else idx)
            rows = torch.arange(sel.numel())
            depth = torch.from_numpy(out["head_depth"])[rows, sel].unsqueeze(1)
            conf = torch.from_numpy(out["head_confidence"])[rows, sel].unsqueeze(1)
        return to_predictions(depth, conf, img_logits, idx, self.head_names, (h, w), pads, self.flip_aug)


class OnnxDepthPro(DepthPro):
    """Depth Pro from an exported graph (``DepthPro``'s infer, estimate_focal, estimate_fov).

    ``fov_runner``: an optional focal-only graph (``depth_pro_fov``) for ``estimate_focal``/``estimate_fov``
    (3 ViT passes); without it they run the full graph and use its ``fov_deg``. The full graph always
    computes the FOV, also when ``f_px`` is given.
    """

    def __init__(self, runner: OnnxRunner, precision: str, fov_runner: Optional[OnnxRunner] = None,
                 confidence: str = "flip"):
        if confidence not in CONFIDENCE_MODES:
            raise ValueError(f"Depth Pro confidence must be one of {', '.join(CONFIDENCE_MODES)}, got {confidence!r}")
        meta = runner.meta
        DepthModel.__init__(self, None, "cpu", "float32")
        self.runner = runner
        self.fov_runner = fov_runner
        self.precision = precision
        cfg = meta["config"]
        preset = cfg.get("vit_preset")
        self.config = (DepthProConfig(vit_preset=preset, decoder_features=int(cfg["decoder_features"]),
                                      use_fov=bool(cfg["use_fov"])) if preset in VIT_PRESETS else None)
        self._img_size = int(runner.input_size[0])
        self.net = None
        has_fov = "fov_deg" in runner.outputs or fov_runner is not None
        self.confidence_mode = confidence
        self.capabilities = Capabilities(estimates_focal=has_fov, confidence=confidence != "none")
        self._forward = self._run
        self._forward_fov = self._run_fov

    @property
    def img_size(self) -> int:
        return self._img_size

    def _run(self, x: torch.Tensor, compute_fov: bool = True):
        out = self.runner.run(x)
        canonical = torch.from_numpy(out["canonical_inverse_depth"])
        fov = out.get("fov_deg")
        if fov is not None:
            fov = torch.from_numpy(fov).view(-1, 1, 1, 1)
        elif compute_fov and self.fov_runner is not None:
            fov = self._run_fov(x)
        return canonical, fov

    def _run_fov(self, x: torch.Tensor) -> torch.Tensor:
        runner = self.fov_runner if self.fov_runner is not None else self.runner
        if "fov_deg" not in runner.outputs:
            raise ValueError("this Depth Pro graph has no FOV output: pass f_px, or fov_weights=FOV.onnx")
        return torch.from_numpy(runner.run(x, ["fov_deg"])["fov_deg"]).view(-1, 1, 1, 1)


def create_onnx_model(name: str, weights=None, device="auto", dtype="float32", providers=None, trt_fp16: bool = True,
                      trt_cache_dir=None, fov_weights=None, **config) -> DepthModel:
    """A ``DepthModel`` running an exported ONNX graph (see the module docstring).

    name: ``zoedepth_nk``, ``zoedepth_n``, ``zoedepth_k`` or ``depth_pro``; the file's metadata must say
      the same model. weights: the ``.onnx`` file (``depth-ros export``). dtype: the file's precision, or
      ``"auto"`` to take whatever the file holds (a mismatch is an error: ONNX files are exported per
      precision). providers / trt_fp16 / trt_cache_dir: see the module docstring. fov_weights: Depth Pro
      only, an optional ``depth_pro_fov`` graph for ``estimate_focal``. config: ZoeDepth ``domain``,
      ``flip_aug``, ``pad_input``, ``keep_aspect`` (only for the size warning); Depth Pro ``confidence``
      (``"flip"``/``"none"``, as the PyTorch model); ``backbone``,
      ``vit_preset``, ``decoder_features``, ``use_fov`` and ``img_size`` are checked against the file.
    """
    if name not in ("zoedepth_nk", "zoedepth_n", "zoedepth_k", "depth_pro"):
        raise ValueError(f"the onnxruntime backend serves zoedepth_nk, zoedepth_n, zoedepth_k and depth_pro, "
                         f"not '{name}'")
    if weights is None or (isinstance(weights, str) and weights in ("", "random")):
        raise ValueError(f"the onnxruntime backend needs weights=FILE.onnx (made by 'depth-ros export {name}'), "
                         f"got {weights!r}")
    path = Path(os.path.expanduser(str(weights)))
    meta = _check_file(path, name, [name])
    precision = _resolve_precision(dtype, meta, path)
    plist = resolve_providers(providers, device, trt_fp16, trt_cache_dir)
    cfg = meta["config"]
    if config.pop("compile", False):
        raise ValueError("compile is a PyTorch option; the onnxruntime backend does not take it")
    for key in _IGNORED:
        config.pop(key, None)
    if name.startswith("zoedepth"):
        allowed = {"domain", "flip_aug", "pad_input", "keep_aspect", "backbone", "img_size"}
        _check_config(config, allowed, name)
        if "backbone" in config and config.pop("backbone") != cfg["backbone"]:
            raise ValueError(f"'{path}' holds backbone {cfg['backbone']}, not the requested one")
        if "img_size" in config and config.get("img_size") is not None and \
                tuple(config["img_size"]) != tuple(meta["input_size"]):
            raise ValueError(f"'{path}' was exported at {meta['input_size'][0]}x{meta['input_size'][1]}, not "
                             f"{tuple(config['img_size'])}; export again with --height/--width")
        config.pop("img_size", None)
        if meta["variant"] not in VARIANTS:
            raise OnnxFileError(f"'{path}': unknown ZoeDepth variant '{meta['variant']}' in its metadata")
        if fov_weights is not None:
            raise ValueError("fov_weights applies to depth_pro only")
        model = OnnxZoeDepth(OnnxRunner(path, plist, meta), precision, **config)
        return model
    allowed = {"vit_preset", "decoder_features", "use_fov", "confidence", "patch_batch"}
    _check_config(config, allowed, name)
    confidence = config.pop("confidence", "flip")
    for key, value in config.items():
        exported = cfg.get(key, 0 if key == "patch_batch" else None)   # files from before patch_batch: 0
        if value is not None and value != exported:
            raise ValueError(f"'{path}' was exported with {key}={exported!r}, not {value!r}")
    fov_runner = None
    if fov_weights is not None:
        fov_path = Path(os.path.expanduser(str(fov_weights)))
        fov_meta = _check_file(fov_path, "depth_pro_fov", ["depth_pro_fov"])
        if tuple(fov_meta["input_size"]) != tuple(meta["input_size"]):
            raise OnnxFileError(f"'{fov_path}' takes {fov_meta['input_size']} images, '{path}' {meta['input_size']}")
        fov_runner = OnnxRunner(fov_path, plist, fov_meta)
    return OnnxDepthPro(OnnxRunner(path, plist, meta), precision, fov_runner, confidence=confidence)


def _check_config(config: Dict[str, Any], allowed, name: str) -> None:
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for {name} on the onnxruntime backend; "
                         f"known: {', '.join(sorted(allowed))}")
