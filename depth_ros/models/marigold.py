"""Marigold (Ke et al., CVPR 2024) made metric: diffusion depth aligned to a metric reference.

``create_model("marigold", weights=FOLDER, device="auto", dtype="float32", **config)``

Marigold repurposes Stable Diffusion 2 into a depth estimator with sharp detail, but its output is
affine-invariant: ``p`` in [0, 1] with 0 = near plane and 1 = far plane, both chosen per image. This family
runs diffusers' ``MarigoldDepthPipeline`` (no UNet, VAE or scheduler code of our own), then fits
``metric = scale * p + shift`` to a metric reference of the same frame (``depth_ros.core.align``: robust,
subsampled) and returns metres.

Weights: ``weights`` is a local pipeline folder in diffusers layout, as ``huggingface-cli download
prs-eth/marigold-depth-v1-1 --local-dir FOLDER`` (or ``prs-eth/marigold-depth-lcm-v1-0``) leaves it:
``model_index.json`` and the ``unet``, ``vae``, ``scheduler``, ``text_encoder`` and ``tokenizer`` subfolders.
It is loaded with ``local_files_only=True`` (nothing is fetched); a missing or incomplete folder raises one
``WeightsError`` naming what is missing. An empty ``weights`` looks for ``marigold-depth-v1-1/`` in
``$DEPTH_ROS_WEIGHTS_DIR``, then in the cache (``$DEPTH_ROS_CACHE`` or ``~/.cache/depth_ros``).
There is no ``weights="random"``: an untrained diffusion pipeline has no meaningful output and no standard
architecture config to build it from offline; tests and benchmarks save a tiny random pipeline with
``tiny_test_kwargs`` / ``save_random_pipeline`` and load that folder.
Weights licence: OpenRAIL++-M (code of the official repo: Apache-2.0).

Precision is ``dtype`` (the node's ``precision``): ``bfloat16`` is suggested on GPUs; ``float16`` warns
(NaNs are reported in a Marigold variant in fp16).

Config (keyword arguments; the node passes them as ``model_config.<key>``):

=====================  ========================================================================================
steps                  denoising steps; 0 (default) = the checkpoint's ``default_denoising_steps``
                       (v1-1: 4, LCM: 1)
ensemble_size          predictions per image (default 1); > 1 ensembles them (needs scipy) and gives uncertainty
ensemble_reduction     ``median`` (default; uncertainty = MAD) or ``mean`` (uncertainty = std)
processing_resolution  longest side the image is resized to; -1 (default) = the checkpoint's default (768),
                       0 = native resolution; a multiple of the VAE's downscale factor (8)
batch_size             ensemble members per UNet/VAE pass (default 1)
seed                   initial noise seed, the same for every frame (default 1234, the official evaluation
                       seed): the output is deterministic for a seed; -1 = fresh noise every frame
variant                weights variant in the folder, e.g. ``fp16`` (``*.fp16.safetensors``); "" = full
tiny_vae               folder of an ``AutoencoderTiny`` (e.g. ``madebyollin/taesd``) that replaces the VAE for
                       speed; "" = the pipeline's own VAE
reference_model        the metric reference run on the same frame when ``infer`` gets no ``reference``:
                       ``zoedepth_nk`` (default), ``depth_pro``, any ``create_model`` name or
                       ``package.module:ClassName``, or ``none`` (every frame must bring a ``reference``)
reference_weights      its ``weights`` ("" = that family's default: local cache, then download)
reference_config       its config dict (flattened keys ``reference_config.<key>`` are accepted too, as the node's
                       parameters arrive)
fit_space              ``auto`` (default: the checkpoint's ``prediction_type``, ``depth`` for every released
                       Marigold depth model), ``depth`` or ``disparity``; see ``depth_ros.core.align``
fit_method             ``huber`` (default: least-median start, Huber IRLS, inlier refit) or ``lstsq``
fit_min_points         fewest valid reference pixels for a fit (default 100)
fit_max_samples        pixels the fit is subsampled to (default 20000)
fit_min_depth,         reference depths outside [min, max] metres are not used (default 0.1, 80.0)
fit_max_depth
on_fit_failure         ``skip`` (default: ``infer`` raises ``AlignmentError``; the frame is skipped) or
                       ``reference`` (return the reference's depth for that frame)
smoothing              ``none`` (default), ``ema`` or ``median``: smooth (log scale, shift) over frames. One
                       model serves one camera then; ``reset_smoothing()`` restarts. Marigold renormalises every
                       frame, so use it only where the view changes slowly.
smoothing_alpha        EMA weight of the newest frame (default 0.2)
smoothing_window       median window in frames (default 5)
=====================  ========================================================================================

``infer(rgb, f_px=None, reference=None)``: ``reference`` is an H x W float metric depth image of the same
frame (metres; NaN, 0 or out-of-range = unknown): sparse LiDAR points projected into the image, a registered
depth camera. When it is given the reference model is not run (except its ``estimate_focal`` when it estimates
focal and ``f_px`` is None); otherwise the reference model runs on ``rgb`` (with ``f_px``; its focal estimate
is passed through when it estimates focal). The result carries
``extras``: ``scale``, ``shift`` (the values applied, after smoothing), ``alignment`` (the raw
``AlignResult``: ok, cause, reason, inliers, residual, ...), ``space``, ``reference_source`` (``given`` or
the reference model's name) and ``fallback`` (True when the depth is the reference's, see
``on_fit_failure``).

Confidence (``DepthPrediction.confidence``, in [0, 1], ``1 - relative depth uncertainty``, the same form as
ZoeDepth's):

* ``ensemble_size > 1``: the pipeline's uncertainty ``u`` (MAD for the median reduction, times 1.4826 to be
  comparable to a standard deviation; std for the mean; both in units of the [0, 1] prediction) is carried
  to metres through the fit, ``sigma = scale * u`` (depth space) or ``scale * u * depth^2`` (disparity
  space), and ``confidence = clip(1 - sigma / depth, 0, 1)``;
* ``ensemble_size == 1``: from the agreement with the reference. ``e = |depth - ref| / ref`` on the valid
  reference pixels is averaged locally by normalised convolution (a box of 1/32 of the longer image side,
  then of 1/8 where the first has no reference pixel, then the frame's median), and
  ``confidence = clip(1 - e_local, 0, 1)`` (10 % disagreement -> 0.9).
* fallback frames (``on_fit_failure: reference``): the reference model's confidence if it has one, else 1
  where the reference is valid and 0 elsewhere.
"""
from __future__ import annotations

import json
import math
import os
import threading
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from depth_ros.core.align import (
    METHODS,
    SPACES,
    AlignResult,
    ScaleShiftSmoother,
    apply_scale_shift,
    fit_scale_shift,
    valid_reference_mask,
)
from depth_ros.models.base import (
    Capabilities,
    DepthModel,
    DepthPrediction,
    FocalLike,
    check_rgb,
    focal_to_float,
)
from depth_ros.models.registry import create_model, register_model
from depth_ros.models.weights import WeightsError, cache_dir

COMPONENTS = ("unet", "vae", "scheduler", "text_encoder", "tokenizer")
#: the folder name looked up when ``weights`` is empty (the Hugging Face repository's name)
DEFAULT_FOLDER = "marigold-depth-v1-1"
_MAD_TO_SIGMA = 1.4826

_DEFAULTS: Dict[str, Any] = dict(
    steps=0, ensemble_size=1, ensemble_reduction="median", processing_resolution=-1, batch_size=1, seed=1234,
    variant="", tiny_vae="", reference_model="zoedepth_nk", reference_weights="", reference_config=None,
    fit_space="auto", fit_method="huber", fit_min_points=100, fit_max_samples=20000, fit_min_depth=0.1,
    fit_max_depth=80.0, on_fit_failure="skip", smoothing="none", smoothing_alpha=0.2, smoothing_window=5,
)
OPTIONS = tuple(_DEFAULTS)


class AlignmentError(RuntimeError):
    """The metric fit of a frame was rejected (``on_fit_failure: skip``); ``.result`` is the ``AlignResult``
    (``.result.cause`` is one of ``depth_ros.core.align.CAUSES``, for logging once per cause)."""

    def __init__(self, result: AlignResult):
        super().__init__(f"Marigold metric alignment rejected: {result.reason}")
        self.result = result


# ---------------------------------------------------------------------------------------------
# Folder checks
# ---------------------------------------------------------------------------------------------
def _weight_names(stem: str, variant: str):
    v = f".{variant}" if variant else ""
    return (f"{stem}{v}.safetensors", f"{stem}{v}.bin", f"{stem}.safetensors.index{v}.json",
            f"{stem}.safetensors.index.json", f"{stem}{v}.safetensors.index.json", f"{stem}.bin.index.json")


def default_folder() -> Optional[Path]:
    """``DEFAULT_FOLDER`` in ``$DEPTH_ROS_WEIGHTS_DIR``, then in the cache (``$DEPTH_ROS_CACHE`` or
    ``~/.cache/depth_ros``), where it has a model_index.json; else None (nothing is downloaded)."""
    places = [os.environ.get("DEPTH_ROS_WEIGHTS_DIR"), str(cache_dir())]
    for place in places:
        if place and (Path(place) / DEFAULT_FOLDER / "model_index.json").is_file():
            return Path(place) / DEFAULT_FOLDER
    return None


def check_pipeline_folder(folder, variant: str = "") -> Path:
    """Raise ``WeightsError`` naming what is missing unless ``folder`` holds a Marigold pipeline in diffusers
    layout (model_index.json, config and weights of unet/vae/text_encoder, scheduler config, tokenizer).
    ``folder`` None or "" means ``default_folder()``."""
    if folder is None or str(folder) == "":
        found = default_folder()
        if found is None:
            raise WeightsError(f"Marigold needs weights=FOLDER, a local diffusers pipeline folder, or "
                               f"{DEFAULT_FOLDER}/ in $DEPTH_ROS_WEIGHTS_DIR or {cache_dir()} (e.g. `huggingface-cli "
                               f"download prs-eth/{DEFAULT_FOLDER} --local-dir {cache_dir() / DEFAULT_FOLDER}`)")
        folder = found
    if str(folder) == "random":
        raise WeightsError("Marigold has no weights='random': pass a pipeline folder (tests build one with "
                           "depth_ros.models.marigold.save_random_pipeline)")
    root = Path(folder).expanduser()
    if not root.exists():
        raise WeightsError(f"Marigold pipeline folder '{root}' does not exist")
    if not root.is_dir():
        raise WeightsError(f"Marigold weights must be a pipeline folder (diffusers layout), '{root}' is a file")
    index = root / "model_index.json"
    if not index.is_file():
        raise WeightsError(f"'{root}' is not a diffusers pipeline folder: model_index.json is missing")
    try:
        info = json.loads(index.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read {index}: {exc}") from exc
    missing = [c for c in COMPONENTS if c not in info]
    if missing:
        raise WeightsError(f"{index} does not list the component(s) {', '.join(missing)} of a Marigold pipeline")
    problems = []
    for comp, config_name, stem in (("unet", "config.json", "diffusion_pytorch_model"),
                                    ("vae", "config.json", "diffusion_pytorch_model"),
                                    ("text_encoder", "config.json", None),
                                    ("scheduler", "scheduler_config.json", "")):
        sub = root / comp
        if not sub.is_dir():
            problems.append(f"subfolder {comp}/")
            continue
        if not (sub / config_name).is_file():
            problems.append(f"{comp}/{config_name}")
        if stem == "":
            continue
        names = (_weight_names("model", variant) + _weight_names("pytorch_model", variant)) if stem is None \
            else _weight_names(stem, variant)
        if not any((sub / n).is_file() for n in names):
            problems.append(f"{comp}/{names[0]} (or {names[1]})")
    tok = root / "tokenizer"
    if not tok.is_dir():
        problems.append("subfolder tokenizer/")
    elif not ((tok / "tokenizer.json").is_file() or ((tok / "vocab.json").is_file() and (tok / "merges.txt").is_file())):
        problems.append("tokenizer/vocab.json + tokenizer/merges.txt (or tokenizer/tokenizer.json)")
    if problems:
        raise WeightsError(f"incomplete Marigold pipeline folder '{root}': missing {'; '.join(problems)}")
    return root


def _check_tiny_vae_folder(folder) -> Path:
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise WeightsError(f"tiny_vae folder '{root}' does not exist")
    if not (root / "config.json").is_file():
        raise WeightsError(f"tiny_vae folder '{root}' has no config.json (expected an AutoencoderTiny, "
                           "e.g. madebyollin/taesd)")
    if not any((root / n).is_file() for n in _weight_names("diffusion_pytorch_model", "")):
        raise WeightsError(f"tiny_vae folder '{root}' has no diffusion_pytorch_model.safetensors (or .bin)")
    return root


# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------
def _options(config: Dict[str, Any]) -> Dict[str, Any]:
    """Defaults + config, with flattened ``reference_config.<key>`` folded in; ValueError on bad values."""
    ref_cfg: Dict[str, Any] = {}
    opts = dict(_DEFAULTS)
    unknown = []
    for key, value in config.items():
        if key.startswith("reference_config.") and len(key) > len("reference_config."):
            ref_cfg[key[len("reference_config."):]] = value
        elif key in _DEFAULTS:
            opts[key] = value
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"unknown Marigold option(s) {', '.join(sorted(unknown))}; known: {', '.join(OPTIONS)}")
    given = opts["reference_config"]
    if given is not None and not isinstance(given, dict):
        raise ValueError(f"reference_config must be a dict, got {type(given).__name__}")
    opts["reference_config"] = dict(given or {}, **ref_cfg)

    def integer(name, lo):
        v = opts[name]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"Marigold option {name} must be an integer >= {lo}, got {v!r}")
        opts[name] = int(v)

    def number(name, lo=None):
        v = opts[name]
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(float(v)) or \
                (lo is not None and float(v) <= lo):
            raise ValueError(f"Marigold option {name} must be a finite number{'' if lo is None else f' > {lo:g}'}, "
                             f"got {v!r}")
        opts[name] = float(v)

    def choice(name, allowed):
        if opts[name] not in allowed:
            raise ValueError(f"Marigold option {name} must be one of {', '.join(allowed)}, got {opts[name]!r}")

    integer("steps", 0)
    integer("ensemble_size", 1)
    integer("processing_resolution", -1)
    integer("batch_size", 1)
    integer("seed", -1)
    integer("fit_min_points", 2)
    integer("fit_max_samples", 2)
    integer("smoothing_window", 1)
    number("fit_min_depth", 0.0)
    number("fit_max_depth", 0.0)
    number("smoothing_alpha", 0.0)
    if opts["fit_max_depth"] <= opts["fit_min_depth"]:
        raise ValueError(f"fit_max_depth ({opts['fit_max_depth']}) must be above fit_min_depth ({opts['fit_min_depth']})")
    if opts["fit_max_samples"] < opts["fit_min_points"]:
        raise ValueError(f"fit_max_samples ({opts['fit_max_samples']}) must be >= fit_min_points "
                         f"({opts['fit_min_points']})")
    choice("ensemble_reduction", ("median", "mean"))
    choice("fit_space", ("auto",) + SPACES)
    choice("fit_method", METHODS)
    choice("on_fit_failure", ("skip", "reference"))
    choice("smoothing", ScaleShiftSmoother.MODES)
    for name in ("variant", "tiny_vae", "reference_model", "reference_weights"):
        if not isinstance(opts[name], str):
            raise ValueError(f"Marigold option {name} must be a string, got {type(opts[name]).__name__}")
    if opts["reference_model"] == "marigold":
        raise ValueError("reference_model cannot be marigold itself: it needs a metric model "
                         "(zoedepth_nk, depth_pro, a user class) or none")
    return opts


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------
def load_pipeline(folder, device: torch.device, dtype: torch.dtype, variant: str = "", tiny_vae: str = ""):
    """``MarigoldDepthPipeline`` from a checked local folder (``local_files_only``), on ``device`` in ``dtype``."""
    root = check_pipeline_folder(folder, variant)
    from diffusers import MarigoldDepthPipeline
    from diffusers.utils import is_accelerate_available

    kwargs: Dict[str, Any] = dict(local_files_only=True, dtype=dtype,
                                  low_cpu_mem_usage=is_accelerate_available())
    if variant:
        kwargs["variant"] = variant
    if tiny_vae:
        from diffusers import AutoencoderTiny

        vroot = _check_tiny_vae_folder(tiny_vae)
        try:
            kwargs["vae"] = AutoencoderTiny.from_pretrained(vroot, local_files_only=True, dtype=dtype)
        except Exception as exc:  # diffusers raises many types for unreadable folders
            raise WeightsError(f"cannot load the tiny VAE from '{vroot}': {exc}") from exc
    try:
        pipe = MarigoldDepthPipeline.from_pretrained(root, **kwargs)
    except Exception as exc:
        raise WeightsError(f"cannot load the Marigold pipeline from '{root}': {exc}") from exc
    latent = int(pipe.vae.config.latent_channels)
    if int(pipe.unet.config.in_channels) != 2 * latent:
        raise WeightsError(f"'{root}' is not a Marigold pipeline: its UNet takes {pipe.unet.config.in_channels} "
                           f"input channels, Marigold's takes {2 * latent} (image latent + depth latent)")
    if pipe.config.prediction_type not in ("depth", "disparity"):
        raise WeightsError(f"'{root}' predicts '{pipe.config.prediction_type}', not depth or disparity "
                           "(a Marigold normals/intrinsics pipeline?)")
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


class Marigold(DepthModel):
    """Marigold + metric alignment as a ``DepthModel`` (see the module docstring)."""

    name = "marigold"

    def __init__(self, weights=None, device="auto", dtype="float32", **config):
        opts = _options(config)
        DepthModel.__init__(self, None, device, dtype)   # validates device and dtype before loading
        self._setup(load_pipeline(weights, self.device, self.dtype, opts["variant"], opts["tiny_vae"]), opts)

    @classmethod
    def from_pipeline(cls, pipe, device="auto", dtype="float32", **config) -> "Marigold":
        """Wrap an existing ``MarigoldDepthPipeline`` (moved to ``device`` / ``dtype``); same options."""
        self = cls.__new__(cls)
        opts = _options(config)
        DepthModel.__init__(self, None, device, dtype)
        pipe.set_progress_bar_config(disable=True)
        pipe.to(self.device)
        if pipe.dtype != self.dtype:
            pipe.to(dtype=self.dtype)
        self._setup(pipe, opts)
        return self

    def _setup(self, pipe, opts: Dict[str, Any]) -> None:
        if self.dtype == torch.float16:
            warnings.warn("Marigold in float16 is reported to give NaNs (prs-eth/Marigold-DC #6); "
                          "bfloat16 is suggested", stacklevel=4)
        self.opts = opts
        self.pipe = pipe
        cfg = self.pipe.config
        self.prediction_type = str(cfg.prediction_type)
        self.steps = opts["steps"] or cfg.default_denoising_steps
        if not self.steps:
            raise ValueError("steps=0 (checkpoint default) but the pipeline has no default_denoising_steps; "
                             "set steps")
        res = opts["processing_resolution"]
        self.processing_resolution = cfg.default_processing_resolution if res == -1 else res
        if self.processing_resolution is None:
            raise ValueError("processing_resolution=-1 (checkpoint default) but the pipeline has no "
                             "default_processing_resolution; set processing_resolution")
        factor = self.pipe.vae_scale_factor
        if self.processing_resolution % factor:
            raise ValueError(f"processing_resolution must be a multiple of {factor} (the VAE's downscale factor) "
                             f"or 0 (native), got {self.processing_resolution}")
        self.ensemble_size = opts["ensemble_size"]
        if self.ensemble_size > 1 and (cfg.scale_invariant or cfg.shift_invariant):
            try:
                import scipy  # noqa: F401  (diffusers' ensembling needs it)
            except ImportError:
                raise ValueError("ensemble_size > 1 needs scipy (pip install scipy)") from None
        self.space = self.prediction_type if opts["fit_space"] == "auto" else opts["fit_space"]
        if self.space != self.prediction_type:
            warnings.warn(f"fit_space={self.space} but the checkpoint predicts affine {self.prediction_type}: the "
                          f"prediction is then treated as affine {self.space}", stacklevel=4)
        self.seed = opts["seed"]
        self.on_fit_failure = opts["on_fit_failure"]
        self._smoother = ScaleShiftSmoother(opts["smoothing"], opts["smoothing_alpha"], opts["smoothing_window"])
        self._lock = threading.Lock()
        self.net = None  # a diffusion pipeline, not one traceable module (no `depth-ros export`)
        self.reference_model: Optional[DepthModel] = None
        if opts["reference_model"] != "none":
            self.reference_model = create_model(opts["reference_model"], weights=opts["reference_weights"] or None,
                                                device=str(self.device), dtype=self.dtype,
                                                **opts["reference_config"])
        ref_focal = self.reference_model is not None and self.reference_model.capabilities.estimates_focal
        self.capabilities = Capabilities(estimates_focal=ref_focal, confidence=True, metric_reference=True)

    # -- affine prediction ----------------------------------------------------------------------
    @torch.inference_mode()
    def predict_affine(self, rgb: np.ndarray) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """The pipeline's affine-invariant prediction of ``rgb`` (H x W float32 in [0, 1]) and, with
        ``ensemble_size > 1``, its uncertainty (H x W float32, MAD or std in units of the prediction)."""
        rgb = check_rgb(rgb)
        generator = None if self.seed < 0 else torch.Generator(device="cpu").manual_seed(self.seed)
        ens = self.ensemble_size
        out = self.pipe(rgb, num_inference_steps=self.steps, ensemble_size=ens,
                        processing_resolution=self.processing_resolution, batch_size=self.opts["batch_size"],
                        ensembling_kwargs={"reduction": self.opts["ensemble_reduction"]} if ens > 1 else None,
                        generator=generator, output_type="np", output_uncertainty=ens > 1)
        pred = np.ascontiguousarray(out.prediction[0, :, :, 0], dtype=np.float32)
        unc = None if out.uncertainty is None else np.ascontiguousarray(out.uncertainty[0, :, :, 0], np.float32)
        return pred, unc

    # -- metric ----------------------------------------------------------------------------------
    def _reference(self, rgb: np.ndarray, f_px: FocalLike, reference) -> Tuple[np.ndarray, Optional[DepthPrediction], str]:
        h, w = rgb.shape[:2]
        if reference is not None:
            ref = np.asarray(reference)
            if ref.ndim == 3 and ref.shape[2] == 1:
                ref = ref[:, :, 0]
            if ref.shape != (h, w):
                raise ValueError(f"metric reference must be an H x W depth image of the frame's size {(h, w)}, "
                                 f"got shape {ref.shape}")
            if not np.issubdtype(ref.dtype, np.floating):
                raise ValueError(f"metric reference must be float metres (NaN = unknown), got dtype {ref.dtype}")
            return ref.astype(np.float32, copy=False), None, "given"
        if self.reference_model is None:
            raise ValueError("no metric reference for this frame: pass reference=H x W metres or configure "
                             "reference_model (zoedepth_nk, depth_pro, ...)")
        pred = self.reference_model.infer(rgb, f_px=f_px)
        return np.asarray(pred.depth, np.float32), pred, self.reference_model.name

    def _align(self, pred: np.ndarray, ref: np.ndarray) -> AlignResult:
        o = self.opts
        return fit_scale_shift(pred, ref, space=self.space, min_depth=o["fit_min_depth"], max_depth=o["fit_max_depth"],
                               method=o["fit_method"], max_samples=o["fit_max_samples"],
                               min_points=o["fit_min_points"], seed=0)

    def infer(self, rgb: np.ndarray, f_px: FocalLike = None, reference: Optional[np.ndarray] = None) -> DepthPrediction:
        """Metric depth of ``rgb`` (see the module docstring); raises ``AlignmentError`` for a rejected fit
        when ``on_fit_failure`` is ``skip``."""
        rgb = check_rgb(rgb)
        focal = focal_to_float(f_px)
        ref, ref_pred, source = self._reference(rgb, focal, reference)
        affine, unc = self.predict_affine(rgb)
        fit = self._align(affine, ref)
        if ref_pred is not None:
            focal_px, focal_source = ref_pred.focal_px, ref_pred.focal_source
        elif self.capabilities.estimates_focal:   # reference given: the reference model only for the focal
            focal_px, focal_source = (focal, "given") if focal is not None else (self.estimate_focal(rgb), "estimated")
        else:
            focal_px = focal_source = None
        extras: Dict[str, Any] = {"alignment": fit, "space": self.space, "reference_source": source}
        if not fit.ok:
            if self.on_fit_failure == "skip":
                raise AlignmentError(fit)
            valid = valid_reference_mask(ref, ref, self.opts["fit_min_depth"], self.opts["fit_max_depth"])
            depth = np.where(valid, ref, np.nan).astype(np.float32)
            if ref_pred is not None and ref_pred.confidence is not None:
                conf = np.where(valid, ref_pred.confidence, 0.0).astype(np.float32)
            else:
                conf = valid.astype(np.float32)
            extras.update(scale=float("nan"), shift=float("nan"), fallback=True)
            return DepthPrediction(depth=depth, confidence=conf, focal_px=focal_px, focal_source=focal_source,
                                   extras=extras)
        with self._lock:
            smoothed = self._smoother.smooth(fit)
        depth = apply_scale_shift(affine, smoothed.scale, smoothed.shift, self.space)
        if unc is not None:
            conf = self.confidence_from_uncertainty(depth, unc, smoothed.scale)
        else:
            conf = self.confidence_from_reference(depth, ref)
        extras.update(scale=smoothed.scale, shift=smoothed.shift, fallback=False)
        return DepthPrediction(depth=depth, confidence=conf, focal_px=focal_px, focal_source=focal_source,
                               extras=extras)

    def confidence_from_uncertainty(self, depth: np.ndarray, unc: np.ndarray, scale: float) -> np.ndarray:
        """``clip(1 - sigma / depth, 0, 1)``, ``sigma`` = the ensemble spread carried to metres through the fit."""
        sigma_p = unc.astype(np.float64) * (_MAD_TO_SIGMA if self.opts["ensemble_reduction"] == "median" else 1.0)
        d = depth.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = scale * sigma_p if self.space == "disparity" else scale * sigma_p / d
            if self.space == "disparity":
                rel = rel * d      # sigma_d = scale * u * d^2, relative: scale * u * d
            conf = np.clip(1.0 - rel, 0.0, 1.0)
        return np.where(np.isfinite(conf), conf, 0.0).astype(np.float32)

    @staticmethod
    def confidence_from_reference(depth: np.ndarray, ref: np.ndarray, min_depth: float = 1e-3) -> np.ndarray:
        """``clip(1 - e_local, 0, 1)`` with ``e = |depth - ref| / ref`` averaged by normalised convolution."""
        h, w = depth.shape
        with np.errstate(invalid="ignore", divide="ignore"):
            m = np.isfinite(depth) & np.isfinite(ref) & (ref >= min_depth)
            e = np.where(m, np.abs(depth - ref) / np.where(m, ref, 1.0), 0.0)
        if not m.any():
            return np.zeros((h, w), np.float32)
        e_t = torch.from_numpy(e.astype(np.float32))[None, None]
        m_t = torch.from_numpy(m.astype(np.float32))[None, None]
        local = torch.full((h, w), float("nan"))
        for frac in (32, 8):
            k = max(3, int(round(max(h, w) / frac)) | 1)
            num = F.avg_pool2d(e_t * m_t, k, stride=1, padding=k // 2, count_include_pad=False)[0, 0]
            den = F.avg_pool2d(m_t, k, stride=1, padding=k // 2, count_include_pad=False)[0, 0]
            fill = torch.isnan(local) & (den > 0)
            local[fill] = num[fill] / den[fill]
        local_np = local.numpy()
        local_np = np.where(np.isnan(local_np), float(np.median(e[m])), local_np)
        conf = np.clip(1.0 - local_np, 0.0, 1.0)
        return np.where(np.isfinite(depth), conf, 0.0).astype(np.float32)

    # -- other DepthModel methods -------------------------------------------------------------
    def reset_smoothing(self) -> None:
        with self._lock:
            self._smoother.reset()

    def estimate_focal(self, rgb: np.ndarray) -> float:
        if not self.capabilities.estimates_focal:
            return super().estimate_focal(rgb)
        return self.reference_model.estimate_focal(rgb)  # type: ignore[union-attr]

    def warmup(self, height: int = 480, width: int = 640) -> None:
        """Run the pipeline (and the reference model) once; a blank image's fit is not used."""
        rgb = np.zeros((height, width, 3), np.uint8)
        self.predict_affine(rgb)
        if self.reference_model is not None:
            self.reference_model.warmup(height, width)


@register_model("marigold")
def marigold(weights=None, device="auto", dtype="float32", **config) -> Marigold:
    """``create_model("marigold", weights=FOLDER, ...)``: see ``depth_ros.models.marigold``."""
    return Marigold(weights=weights, device=device, dtype=dtype, **config)


# ---------------------------------------------------------------------------------------------
# Tiny random pipeline (tests, benchmarks)
# ---------------------------------------------------------------------------------------------
def _write_tiny_tokenizer(folder: Path) -> None:
    """A CLIP BPE tokenizer with a 54-token vocabulary (no download): start/end tokens, a-z, a-z + </w>."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77}))


def build_random_pipeline(preset: str = "tiny", seed: int = 0, scheduler: str = "ddim"):
    """A ``MarigoldDepthPipeline`` with random weights (nothing downloaded).

    preset: ``tiny`` (seconds on a CPU: 2-level UNet of 32/64 channels, 2-level VAE of 16/32 channels, so a
    latent downscale of 2, a 2-layer CLIP text encoder of width 32; defaults 1 step at 32 px) or ``sd2``
    (the real architecture sizes: the SD2 UNet with 8 input channels (866 M parameters), the SD VAE
    (84 M), the OpenCLIP-H text encoder (340 M); ~5 GB in float32; defaults 1 step at 768 px).
    scheduler: ``ddim`` (v1-1 style: v-prediction, trailing timesteps, zero terminal SNR) or ``lcm``.
    """
    import tempfile

    from diffusers import AutoencoderKL, DDIMScheduler, LCMScheduler, MarigoldDepthPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = Path(tmp)
        _write_tiny_tokenizer(tok_dir)
        tokenizer = CLIPTokenizer.from_pretrained(tok_dir, local_files_only=True)
    torch.manual_seed(seed)
    if preset == "tiny":
        unet = UNet2DConditionModel(sample_size=16, in_channels=8, out_channels=4, layers_per_block=1,
                                    block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                    attention_head_dim=8, norm_num_groups=16)
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
                            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                            layers_per_block=1, norm_num_groups=8)
        text = CLIPTextConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                              projection_dim=32)
        steps, res = 1, 32
    elif preset == "sd2":
        unet = UNet2DConditionModel(sample_size=96, in_channels=8, out_channels=4, layers_per_block=2,
                                    block_out_channels=(320, 640, 1280, 1280),
                                    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                                    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                                    cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
                                    use_linear_projection=True)
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                            layers_per_block=2, sample_size=768)
        text = CLIPTextConfig(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=23,
                              projection_dim=512, hidden_act="gelu")
        steps, res = 1, 768
    else:
        raise ValueError(f"unknown random Marigold preset '{preset}'; use tiny or sd2")
    text.vocab_size, text.max_position_embeddings = len(tokenizer), 77
    text.bos_token_id, text.eos_token_id, text.pad_token_id = 0, 1, 1
    text_encoder = CLIPTextModel(text)
    common = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                  prediction_type="v_prediction", set_alpha_to_one=False, steps_offset=1, clip_sample=False)
    if scheduler == "ddim":
        sched = DDIMScheduler(timestep_spacing="trailing", rescale_betas_zero_snr=True, **common)
    elif scheduler == "lcm":
        sched = LCMScheduler(timestep_spacing="trailing", **common)
    else:
        raise ValueError(f"unknown scheduler '{scheduler}'; use ddim or lcm")
    return MarigoldDepthPipeline(unet=unet, vae=vae, scheduler=sched, text_encoder=text_encoder, tokenizer=tokenizer,
                                 prediction_type="depth", scale_invariant=True, shift_invariant=True,
                                 default_denoising_steps=steps, default_processing_resolution=res)


def save_random_pipeline(folder, preset: str = "tiny", seed: int = 0, scheduler: str = "ddim") -> Path:
    """``build_random_pipeline(...)`` saved with ``save_pretrained`` into ``folder`` (a pipeline folder in
    diffusers layout, loadable by ``create_model("marigold", weights=folder)``)."""
    folder = Path(folder)
    build_random_pipeline(preset, seed, scheduler).save_pretrained(folder)
    return folder


def tiny_test_kwargs(tmp_dir) -> Dict[str, Any]:
    """``create_model("marigold", device="cpu", **tiny_test_kwargs(tmp))``: a tiny random pipeline saved in
    ``tmp_dir/marigold_tiny`` and a tiny random ZoeDepth-NK as the metric reference. Random networks need not
    agree, so a rejected fit publishes the reference (``on_fit_failure: reference``)."""
    folder = save_random_pipeline(Path(tmp_dir) / "marigold_tiny", "tiny")
    return dict(weights=str(folder), steps=1, processing_resolution=32, seed=0,
                reference_model="zoedepth_nk", reference_weights="random",
                reference_config={"backbone": "test_tiny"}, on_fit_failure="reference", fit_min_points=20)
