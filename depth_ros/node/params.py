"""Parameters of ``depth_node``: names, defaults, ranges, allowed values and validation.

ROS-free (plain Python), so the specification can be unit-tested and read by the static launch-file
test. ``node.py`` turns every ``ParamSpec`` into a declared parameter with a ``ParameterDescriptor``.

Two name prefixes are pass-through dictionaries for the model constructors (ROS parameters cannot be
dictionaries; nested YAML maps become dotted names):

* ``model_config.<key>``: extra keyword arguments for ``create_model`` of the depth model
  (e.g. ``model_config.backbone: test_tiny``).
* ``focal_estimator_config.<key>``: the same for the Depth Pro focal-length (FOV) estimator.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from depth_ros.core.confidence import COMBINE_RULES
from depth_ros.core.encodings import DEFAULT_MAX_PIXELS
from depth_ros.models.registry import BACKENDS, MODEL_NAMES
from depth_ros.pipeline.frame import CLOUD_MODES, DOMAIN_MODES, SCALE_MODES, PipelineConfig

#: Prefixes of pass-through (read-only, dynamically typed) parameters.
PASSTHROUGH_PREFIXES = ("model_config.", "focal_estimator_config.")

BUILTIN_MODELS = MODEL_NAMES  # the registry's list of families
_PIPELINE = PipelineConfig()  # defaults of the per-frame settings
DOMAINS = DOMAIN_MODES
PRECISIONS = ("float32", "float16", "bfloat16")
DEPTH_ENCODINGS = ("32FC1", "16UC1")
RELIABILITIES = ("reliable", "best_effort")
IMAGE_TRANSPORTS = ("raw", "compressed")
INVALID_INFO_POLICIES = ("skip", "estimate")
FOCAL_ESTIMATORS = ("depth_pro", "none")

_USER_MODEL = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?|xpu(:\d+)?)$")


def _check_model(value: str) -> Optional[str]:
    if value in MODEL_NAMES or _USER_MODEL.match(value):
        return None
    return (f"unknown model '{value}': use one of {', '.join(BUILTIN_MODELS)} "
            "or 'package.module:ClassName'")


def _check_mount(value) -> Optional[str]:
    vals = list(value)
    if len(vals) != 6 or not all(isinstance(v, (int, float)) and v == v and abs(v) < 1e6 for v in vals):
        return f"camera_mount must be 6 finite numbers [x, y, z, roll, pitch, yaw], got {vals}"
    return None


def _check_device(value: str) -> Optional[str]:
    if _DEVICE.match(value):
        return None
    return f"invalid device '{value}': use auto, cpu, cuda, cuda:N or mps"


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: name, default (its type is the parameter's type) and constraints."""

    name: str
    default: Any
    description: str
    read_only: bool = False
    choices: Tuple[str, ...] = ()
    min: Optional[float] = None
    max: Optional[float] = None
    #: the minimum itself is not allowed (e.g. voxel_size > 0); shown in the descriptor text.
    min_exclusive: bool = False
    check: Optional[Callable[[Any], Optional[str]]] = None

    @property
    def type(self) -> type:
        return type(self.default)

    def constraints_text(self) -> str:
        parts = []
        if self.choices:
            parts.append("one of: " + ", ".join(self.choices))
        if self.min is not None or self.max is not None:
            lo = "-inf" if self.min is None else f"{self.min:g}"
            hi = "inf" if self.max is None else f"{self.max:g}"
            parts.append(f"range {'(' if self.min_exclusive else '['}{lo}, {hi}]")
        if self.read_only:
            parts.append("read-only (set at start)")
        return "; ".join(parts)

    def validate(self, value: Any) -> Optional[str]:
        """None when ``value`` is acceptable, else the reason it is not."""
        want = self.type
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if want is bool and not isinstance(value, bool):
            return f"{self.name} must be a bool, got {type(value).__name__}"
        if want is int and (isinstance(value, bool) or not isinstance(value, int)):
            return f"{self.name} must be an integer, got {type(value).__name__}"
        if want is float and not isinstance(value, float):
            return f"{self.name} must be a number, got {type(value).__name__}"
        if want is list:
            if not isinstance(value, (list, tuple)) and not hasattr(value, "tolist"):
                return f"{self.name} must be a list, got {type(value).__name__}"
            return self.check(value) if self.check is not None else None
        if want is str and not isinstance(value, str):
            return f"{self.name} must be a string, got {type(value).__name__}"
        if want is float and value != value:  # NaN
            return f"{self.name} must not be NaN"
        if self.choices and value not in self.choices:
            return f"{self.name} must be one of {', '.join(self.choices)}, got '{value}'"
        if self.min is not None and (value < self.min or (self.min_exclusive and value == self.min)):
            op = ">" if self.min_exclusive else ">="
            return f"{self.name} must be {op} {self.min:g}, got {value}"
        if self.max is not None and value > self.max:
            return f"{self.name} must be <= {self.max:g}, got {value}"
        if self.check is not None:
            return self.check(value)
        return None


PARAMS: Tuple[ParamSpec, ...] = (
    # -- model ----------------------------------------------------------------------------------
    ParamSpec("model", "zoedepth_nk",
              f"Depth network: {', '.join(MODEL_NAMES)}, or 'package.module:ClassName' "
              "(a user class constructed with weights, device, dtype and model_config.* keyword arguments).",
              read_only=True, check=_check_model),
    ParamSpec("weights", "",
              "Checkpoint path; empty = the local cache (~/.cache/depth_ros, $DEPTH_ROS_CACHE) or a download; "
              "'random' = untrained weights (only with allow_random_weights).", read_only=True),
    ParamSpec("backend", "torch",
              "Inference backend: torch, or onnxruntime (weights = an .onnx file made by 'depth-ros export'; "
              "zoedepth_* and depth_pro).", read_only=True, choices=BACKENDS),
    ParamSpec("onnx_providers", "",
              "backend onnxruntime: ONNX Runtime providers in order, comma-separated (tensorrt, cuda, cpu); empty = "
              "tensorrt,cuda,cpu on a GPU device, cpu on device cpu. A provider that is not installed is skipped "
              "with one warning line.", read_only=True),
    ParamSpec("trt_fp16", True, "backend onnxruntime with TensorRT: let TensorRT build fp16 kernels.", read_only=True),
    ParamSpec("trt_cache_dir", "",
              "backend onnxruntime with TensorRT: folder that keeps built engines (the first start builds them: "
              "minutes on a Jetson); empty = no cache.", read_only=True),
    ParamSpec("device", "auto", "Torch device: auto (CUDA when available), cpu, cuda, cuda:N, mps.",
              read_only=True, check=_check_device),
    ParamSpec("precision", "float32", "Inference precision (float16/bfloat16 autocast on CUDA).",
              read_only=True, choices=PRECISIONS),
    ParamSpec("compile", False, "torch.compile the network (falls back to eager with a warning if it fails).",
              read_only=True),
    ParamSpec("allow_random_weights", False, "Permit weights:=random (tests, benchmarks). Never for real use.",
              read_only=True),
    ParamSpec("domain", _PIPELINE.domain,
              "ZoeDepth-NK head: stable (the router's choice with hysteresis per camera: the head changes only when "
              "the router prefers the other one by domain_switch_margin for domain_switch_frames frames), auto "
              "(the router picks per frame), indoor (NYU head) or outdoor (KITTI head). Ignored by models without "
              "a domain switch.", choices=DOMAINS),
    ParamSpec("domain_switch_margin", _PIPELINE.domain_switch_margin,
              "domain stable: probability margin by which the router must prefer the other head.", min=0.0, max=0.99),
    ParamSpec("domain_switch_frames", _PIPELINE.domain_switch_frames,
              "domain stable: consecutive frames of that preference before the head changes.", min=1, max=1000),
    ParamSpec("scale_stabilization", _PIPELINE.scale_stabilization,
              "Metric scale held from frame to frame, per camera: off, odometry (the previous depth warped with "
              "the camera motion from nav_msgs/Odometry on 'odom' and camera_mount, robust scale fit, filter on "
              "log-scale) or static (the same fit without motion, for slow cameras).", choices=SCALE_MODES),
    ParamSpec("camera_mount", [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
              "scale_stabilization odometry: the camera's pose in the odometry child frame (base_link) as "
              "[x, y, z, roll, pitch, yaw] (m, rad; the camera's body frame, x forward; REP 103's optical "
              "rotation is added).", read_only=True, check=lambda v: _check_mount(v)),
    # -- intrinsics -----------------------------------------------------------------------------
    ParamSpec("camera_info_timeout", 2.0,
              "Seconds to wait (from the first image) for a CameraInfo before estimating the intrinsics; "
              "0 = estimate at once when none has arrived.", min=0.0, max=3600.0),
    ParamSpec("invalid_camera_info", "skip",
              "What to do with a malformed CameraInfo (size differs from the image, NaN/negative focal length): "
              "skip the frame, or estimate the intrinsics instead. An uncalibrated CameraInfo (K[0] == 0) is "
              "always replaced by estimated intrinsics.", choices=INVALID_INFO_POLICIES),
    ParamSpec("focal_estimator", "depth_pro",
              "How to estimate a missing focal length: depth_pro (Depth Pro's FOV network; the model's own "
              "estimate when the model is Depth Pro) or none (use fallback_hfov_deg).",
              read_only=True, choices=FOCAL_ESTIMATORS),
    ParamSpec("focal_estimator_weights", "",
              "Depth Pro checkpoint for the focal estimator; empty = cache/download; 'random' needs "
              "allow_random_weights. Loaded only when an estimate is needed.", read_only=True),
    ParamSpec("focal_samples", 5,
              "Frames whose focal estimates are combined (running median) before the value is frozen per "
              "camera and image size.", min=1, max=1000),
    ParamSpec("fallback_hfov_deg", 60.0,
              "Horizontal field of view used when CameraInfo is unusable and the focal estimator is unavailable "
              "(no Depth Pro weights); 0 = no fallback (frames are skipped).", min=0.0, max=179.0),
    # -- processing -----------------------------------------------------------------------------
    ParamSpec("output_width", _PIPELINE.output_width,
              "Width the image is resized to before inference (height keeps the aspect ratio); every output "
              "and depth/camera_info have this size. 0 = the input size.", min=0, max=16384),
    ParamSpec("min_range", _PIPELINE.min_range, "Depth below this (m) is invalid (NaN / 0 in 16UC1, dropped from the cloud).",
              min=0.0, max=1.0e4),
    ParamSpec("max_range", _PIPELINE.max_range, "Depth above this (m) is invalid (NaN / 0 in 16UC1, dropped from the cloud).",
              min=0.0, max=1.0e5, min_exclusive=True),
    ParamSpec("min_confidence", _PIPELINE.min_confidence,
              "Cloud points whose confidence (depth/confidence) is below this are dropped in every cloud mode, and "
              "dimmed in depth/colorized (0 = keep all). 0.5 removes flying pixels at depth edges (measured: "
              "bench/bench_confidence.py).", min=0.0, max=1.0),
    ParamSpec("edge_confidence", _PIPELINE.edge_confidence,
              "Combine the model's confidence with edge confidence (low where the local depth range exceeds ~9 %: "
              "flying pixels between foreground and background); gives every model a depth/confidence."),
    ParamSpec("confidence_rule", _PIPELINE.confidence_rule,
              "How the model's and the edge confidence combine: product or min.", choices=COMBINE_RULES),
    ParamSpec("confidence_masks_depth", _PIPELINE.confidence_masks_depth,
              "Also make depth/image invalid below min_confidence (off: depth consumers see every estimate)."),
    ParamSpec("depth_encoding", "32FC1", "depth/image encoding: 32FC1 metres (REP 118) or 16UC1 millimetres.",
              choices=DEPTH_ENCODINGS),
    ParamSpec("cloud_mode", _PIPELINE.cloud_mode,
              "depth/points layout: organized (H x W, NaN for invalid), stride (every cloud_stride-th pixel, "
              "1 x N without invalid points), voxel (unorganized, voxel_size grid, optional outlier removal; for Nav2).",
              choices=CLOUD_MODES),
    ParamSpec("cloud_color", _PIPELINE.cloud_color, "Add the packed 'rgb' field (xyzrgb, point_step 32) instead of xyz only."),
    ParamSpec("cloud_confidence", _PIPELINE.cloud_confidence, "Add a float32 'confidence' field to depth/points."),
    ParamSpec("cloud_stride", _PIPELINE.cloud_stride, "Pixel stride for cloud_mode stride.", min=1, max=64),
    ParamSpec("voxel_size", _PIPELINE.voxel_size, "Voxel edge (m) for cloud_mode voxel.", min=0.0, max=10.0, min_exclusive=True),
    ParamSpec("outlier_nb", _PIPELINE.outlier_nb, "cloud_mode voxel: statistical outlier removal neighbours (0 = off).",
              min=0, max=100),
    ParamSpec("outlier_std", _PIPELINE.outlier_std, "cloud_mode voxel: outlier std-dev ratio.", min=0.0, max=100.0,
              min_exclusive=True),
    ParamSpec("colorize_min_depth", _PIPELINE.colorize_min_depth, "depth/colorized near limit (m); 0 = per-frame robust minimum.",
              min=0.0, max=1.0e5),
    ParamSpec("colorize_max_depth", _PIPELINE.colorize_max_depth, "depth/colorized far limit (m); 0 = per-frame robust maximum.",
              min=0.0, max=1.0e5),
    ParamSpec("lazy", True,
              "Subscribe to the image and run the network only while some output has a subscriber; "
              "compute each output only when it has one."),
    # -- topics / QoS ---------------------------------------------------------------------------
    ParamSpec("image_transport", "raw",
              "raw: subscribe 'image' (sensor_msgs/Image); compressed: subscribe '<image>/compressed' "
              "(sensor_msgs/CompressedImage).", read_only=True, choices=IMAGE_TRANSPORTS),
    ParamSpec("max_image_pixels", DEFAULT_MAX_PIXELS,
              "CompressedImage input: refuse an image whose header (PNG IHDR, JPEG SOF, ...) claims more pixels "
              "than this, before decoding (default 8192 x 6144, 8K cameras); 0 = no limit (OpenCV's own bound, "
              "2^30 pixels; also decodes formats whose size cannot be read first).", min=0, max=2 ** 31 - 1),
    ParamSpec("qos_input_reliability", "best_effort",
              "Input subscriptions (image, camera_info): best_effort (sensor data QoS, accepts any publisher) "
              "or reliable.", read_only=True, choices=RELIABILITIES),
    ParamSpec("qos_input_depth", 2, "Input keep-last depth (only the newest frame is processed).",
              read_only=True, min=1, max=100),
    ParamSpec("qos_output_reliability", "reliable",
              "Output publishers: reliable (connects with reliable and best-effort subscribers) or best_effort.",
              read_only=True, choices=RELIABILITIES),
    ParamSpec("qos_output_depth", 2, "Output keep-last depth.", read_only=True, min=1, max=100),
    ParamSpec("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", read_only=True,
              min=0.05, max=60.0),
)

SPECS: Dict[str, ParamSpec] = {p.name: p for p in PARAMS}
DEFAULTS: Dict[str, Any] = {p.name: p.default for p in PARAMS}


def is_passthrough(name: str) -> bool:
    return any(name.startswith(p) and len(name) > len(p) for p in PASSTHROUGH_PREFIXES)


def is_known(name: str) -> bool:
    """True for a declared parameter name (or a pass-through ``model_config.*`` style name)."""
    return name in SPECS or is_passthrough(name)


def validate(name: str, value: Any) -> Optional[str]:
    """None when ``name := value`` is acceptable on its own, else the reason."""
    spec = SPECS.get(name)
    if spec is None:
        if is_passthrough(name):
            return None
        return f"unknown parameter '{name}'"
    return spec.validate(value)


def validate_all(values: Mapping[str, Any]) -> List[str]:
    """Problems with a full parameter set (each value, then the relations between them)."""
    problems = [r for r in (validate(k, v) for k, v in values.items()) if r]
    if problems:
        return problems
    if values["min_range"] >= values["max_range"]:
        problems.append(f"min_range ({values['min_range']}) must be below max_range ({values['max_range']})")
    cmin, cmax = values["colorize_min_depth"], values["colorize_max_depth"]
    if cmin > 0 and cmax > 0 and cmin >= cmax:
        problems.append(f"colorize_min_depth ({cmin}) must be below colorize_max_depth ({cmax})")
    if values["weights"] == "random" and not values["allow_random_weights"]:
        problems.append("weights 'random' gives an untrained network; set allow_random_weights:=true "
                        "if that is really wanted (tests, benchmarks)")
    if values["focal_estimator_weights"] == "random" and not values["allow_random_weights"]:
        problems.append("focal_estimator_weights 'random' needs allow_random_weights:=true")
    return problems


def passthrough(values: Mapping[str, Any], prefix: str) -> Dict[str, Any]:
    """``{'model_config.backbone': 'x'}`` -> ``{'backbone': 'x'}`` for ``prefix='model_config.'``."""
    return {k[len(prefix):]: v for k, v in values.items() if k.startswith(prefix) and len(k) > len(prefix)}


def names() -> Iterable[str]:
    return SPECS.keys()
