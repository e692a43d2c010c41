"""The frame step shared by ``depth_node``, ``depth-ros infer`` and ``depth-ros bag`` (ROS-free).

RGB (+ the camera's CameraInfo status) -> ``FrameResult``: metric depth with one validity rule,
confidence, the camera at the output size, and on demand the cloud of the configured cloud mode and
the colorized picture. Callers only decode their input and encode the result.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from depth_ros.core.camera import PinholeCamera
from depth_ros.core.cloud import PackedCloud, backproject, depth_to_cloud, pack_cloud, unpack_rgb_uint32, voxel_filter
from depth_ros.core.colormap import colorize_depth
from depth_ros.core.confidence import COMBINE_RULES, combine, edge_confidence, fraction_below
from depth_ros.pipeline.intrinsics import CAMERA_INFO, FrameSkipped, InfoStatus, IntrinsicsResolver, problem_key
from depth_ros.pipeline.router import RouterHysteresis
from depth_ros.pipeline.scale import ScaleInfo, ScaleStabilizer, relative_motion

CLOUD_MODES = ("organized", "stride", "voxel")
#: ``auto``: the router picks per image; ``stable``: router hysteresis per camera; or a forced head
DOMAIN_MODES = ("stable", "auto", "indoor", "outdoor")
SCALE_MODES = ("off", "static", "odometry")


@dataclass(frozen=True)
class PipelineConfig:
    """Per-frame settings (the node's parameters of the same names; the CLI's options)."""

    output_width: int = 0            #: resize the image to this width before inference (0 = keep)
    min_range: float = 0.1           #: depth below this (m) is invalid
    max_range: float = 80.0          #: depth above this (m) is invalid
    min_confidence: float = 0.0      #: cloud points below this confidence are dropped
    cloud_mode: str = "organized"    #: organized (H x W, NaN holes) | stride (1 x N dense) | voxel
    cloud_stride: int = 4
    cloud_color: bool = True
    cloud_confidence: bool = False
    voxel_size: float = 0.05
    outlier_nb: int = 0
    outlier_std: float = 2.0
    colorize_min_depth: float = 0.0  #: 0 = per-frame robust minimum
    colorize_max_depth: float = 0.0  #: 0 = per-frame robust maximum
    domain: str = "stable"           #: DOMAIN_MODES (models with domain heads)
    domain_switch_margin: float = 0.5  #: stable: probability margin the other head must win by ...
    domain_switch_frames: int = 5      #: ... on this many consecutive frames (pipeline.router)
    scale_stabilization: str = "off"   #: SCALE_MODES (pipeline.scale); odometry needs camera poses
    edge_confidence: bool = True       #: combine the model's confidence with edge (flying-pixel) confidence
    confidence_rule: str = "product"   #: COMBINE_RULES: how the two confidences combine
    confidence_masks_depth: bool = False  #: depth below min_confidence is invalid in depth/image too

    def __post_init__(self):
        if self.cloud_mode not in CLOUD_MODES:
            raise ValueError(f"cloud_mode must be one of {', '.join(CLOUD_MODES)}, got '{self.cloud_mode}'")
        if self.domain not in DOMAIN_MODES:
            raise ValueError(f"domain must be one of {', '.join(DOMAIN_MODES)}, got '{self.domain}'")
        if self.confidence_rule not in COMBINE_RULES:
            raise ValueError(f"confidence_rule must be one of {', '.join(COMBINE_RULES)}, got '{self.confidence_rule}'")
        if self.scale_stabilization not in SCALE_MODES:
            raise ValueError(f"scale_stabilization must be one of {', '.join(SCALE_MODES)}, "
                             f"got '{self.scale_stabilization}'")
        if not self.min_range < self.max_range:
            raise ValueError(f"min_range ({self.min_range}) must be below max_range ({self.max_range})")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "PipelineConfig":
        """The fields of ``values`` (e.g. the node's parameter dict) that name a setting here."""
        return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values})


def check_domain(capabilities, domain: str) -> Tuple[Optional[str], bool]:
    """(problem, ignored) of a ``domain`` setting for a model: ``problem`` names why the model cannot take
    it (a head it does not have); ``ignored`` is true when the model has no domain switch at all."""
    heads = capabilities.domains
    if domain in ("auto", "stable") or domain in heads:
        return None, False
    if not heads:
        return None, True
    return f"domain '{domain}' is not a head of this model (heads: {', '.join(heads)})", False


def valid_depth(depth: np.ndarray, min_range: float, max_range: float) -> np.ndarray:
    """The validity rule of every output: finite, > 0 and within [min_range, max_range]; else NaN."""
    d = np.asarray(depth, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        ok = (d > 0) & (d >= min_range) & (d <= max_range)  # NaN compares False; +inf > max_range
    return np.where(ok, d, np.float32(np.nan))


def _at_size(depth: np.ndarray, width: int, height: int) -> np.ndarray:
    """A metric reference at the output size (nearest neighbour: sparse depth must not be blended)."""
    d = np.asarray(depth, dtype=np.float32)
    if d.shape == (height, width):
        return d
    import cv2

    return cv2.resize(d, (width, height), interpolation=cv2.INTER_NEAREST)


def _as_image(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    return a


@dataclass
class FrameResult:
    """One frame's outputs, all at the output size (``rgb.shape[:2]``)."""

    raw_depth: np.ndarray              #: the model's metric depth (float32), before the validity rule
    model_confidence: Optional[np.ndarray]  #: the model's own confidence (float32 in [0, 1]) or None
    camera: PinholeCamera              #: intrinsics of the outputs
    rgb: np.ndarray                    #: the image the network saw (output size)
    config: PipelineConfig
    source: str                        #: where the intrinsics came from (pipeline.intrinsics sources)
    reason: str
    domain: Optional[str] = None
    domain_confidence: Optional[float] = None
    #: seconds: resize, intrinsics, inference, inference_cpu (thread CPU time), estimator (a focal network)
    timings: Dict[str, float] = field(default_factory=dict)
    warnings: List[Tuple[str, str]] = field(default_factory=list)  #: (key, text), to be said once per key
    events: List[Tuple[str, str]] = field(default_factory=list)    #: (key, text), to be said (throttled per key)
    scale: Optional[ScaleInfo] = None      #: what scale stabilisation did (None when off)
    extras: Dict[str, Any] = field(default_factory=dict)  #: the model's extras (Marigold: scale, shift, ...)
    domain_switches: int = 0               #: router hysteresis switches of this camera so far

    @cached_property
    def depth(self) -> np.ndarray:
        """float32 metres, NaN where invalid (``valid_depth``; with ``confidence_masks_depth`` also below
        ``min_confidence``): what depth/image publishes."""
        return self._drop_unsure(self.depth_unmasked)

    @cached_property
    def confidence(self) -> Optional[np.ndarray]:
        """What depth/confidence publishes: the model's confidence combined (``confidence_rule``) with the
        edge confidence of the valid depth (``core.confidence.edge_confidence``: low across depth
        discontinuities, where pixels fly between foreground and background), computed on first use."""
        if not self.config.edge_confidence:
            return self.model_confidence
        return combine(self.model_confidence, edge_confidence(self.depth_unmasked), self.config.confidence_rule)

    def low_confidence_fraction(self) -> Optional[float]:
        """Fraction of the valid pixels below ``min_confidence`` (None when there is no threshold)."""
        cfg = self.config
        if cfg.min_confidence <= 0 or self.confidence is None:
            return None
        return fraction_below(self.confidence, cfg.min_confidence, valid=np.isfinite(self.depth_unmasked))

    @cached_property
    def depth_unmasked(self) -> np.ndarray:
        """The validity rule alone (no confidence masking)."""
        return valid_depth(self.raw_depth, self.config.min_range, self.config.max_range)

    def _drop_unsure(self, depth: np.ndarray) -> np.ndarray:
        cfg = self.config
        if cfg.min_confidence <= 0 or not cfg.confidence_masks_depth or self.confidence is None:
            return depth
        with np.errstate(invalid="ignore"):
            return np.where(self.confidence >= cfg.min_confidence, depth, np.float32(np.nan))

    def cloud(self) -> PackedCloud:
        """The cloud of ``config.cloud_mode`` in depth_image_proc's layout."""
        cfg = self.config
        depth = self.raw_depth
        conf = self.confidence if (cfg.cloud_confidence or cfg.min_confidence > 0) else None
        color = self.rgb if cfg.cloud_color else None
        conf_field = conf if cfg.cloud_confidence else None
        if conf is not None and cfg.min_confidence > 0:
            with np.errstate(invalid="ignore"):
                depth = np.where(conf >= cfg.min_confidence, depth, np.float32(np.nan))
        lo, hi = cfg.min_range, cfg.max_range
        if cfg.cloud_mode in ("organized", "stride"):
            stride = cfg.cloud_stride if cfg.cloud_mode == "stride" else 1
            # organized: H x W with NaN holes (depth_image_proc); stride: every stride-th pixel,
            # 1 x N without the invalid points (is_dense), for costmaps
            return depth_to_cloud(depth, self.camera, rgb=color, confidence=conf_field, min_range=lo,
                                  max_range=hi, stride=stride, remove_invalid=(cfg.cloud_mode == "stride"))
        points = backproject(depth, self.camera, lo, hi)
        pts, col, cf = voxel_filter(points, cfg.voxel_size, rgb=color, confidence=conf_field,
                                    outlier_nb=cfg.outlier_nb, outlier_std=cfg.outlier_std)
        return pack_cloud(pts, rgb=col, confidence=cf, organized=False)

    def colorized(self) -> np.ndarray:
        """The depth as a picture; with ``min_confidence`` the pixels below it are dimmed."""
        cfg = self.config
        img = colorize_depth(self.depth, min_depth=cfg.colorize_min_depth or None,
                             max_depth=cfg.colorize_max_depth or None)
        if cfg.min_confidence > 0 and self.confidence is not None:
            with np.errstate(invalid="ignore"):
                unsure = ~(self.confidence >= cfg.min_confidence)
            img[unsure] = (img[unsure] * 0.35).astype(np.uint8)
        return img


def cloud_points(cloud: PackedCloud) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(N x 3 float32 finite points, N x 3 uint8 RGB or None) of a packed cloud (for PLY files)."""
    s = cloud.as_structured().reshape(-1)
    pts = np.stack([s["x"], s["y"], s["z"]], axis=1).astype(np.float32)
    ok = np.isfinite(pts).all(axis=1)
    rgb = None
    if "rgb" in s.dtype.names:
        rgb = unpack_rgb_uint32(np.ascontiguousarray(s["rgb"]).view(np.uint32)[ok])
    return pts[ok], rgb


class CameraState:
    """Per-camera state besides the intrinsics: router hysteresis, scale track, the previous pose."""

    def __init__(self) -> None:
        self.router: Optional[RouterHysteresis] = None
        self.stabilizer: Optional[ScaleStabilizer] = None
        self.pose: Optional[np.ndarray] = None

    def router_for(self, cfg: PipelineConfig) -> RouterHysteresis:
        r = self.router
        if r is None or (r.margin, r.frames) != (cfg.domain_switch_margin, cfg.domain_switch_frames):
            r = self.router = RouterHysteresis(cfg.domain_switch_margin, cfg.domain_switch_frames)
        return r

    def stabilizer_for(self, mode: str) -> ScaleStabilizer:
        if self.stabilizer is None or self.stabilizer.mode != mode:
            self.stabilizer = ScaleStabilizer(mode)
        return self.stabilizer


class FrameProcessor:
    """Runs the frame step for one model. Per-camera state (by ``frame_id``): the intrinsics tracks in
    ``resolver``, router hysteresis and the scale track in ``cameras``.

    ``config`` may be replaced between frames (the node's dynamic parameters).
    """

    MAX_CAMERAS = 64

    def __init__(self, model, config: PipelineConfig, resolver: IntrinsicsResolver):
        self.model = model
        self.config = config
        self.resolver = resolver
        self.cameras: Dict[str, CameraState] = {}

    def reconfigure(self, settings: Mapping[str, Any]) -> None:
        """New settings (the node's parameters): the per-frame config and the intrinsics policy; the focal
        tracks restart when their sample count or the fallback FOV changes."""
        self.config = PipelineConfig.from_mapping(settings)
        r = self.resolver
        if settings["focal_samples"] != r.samples or settings["fallback_hfov_deg"] != r.fallback_hfov_deg:
            r.samples, r.fallback_hfov_deg = int(settings["focal_samples"]), float(settings["fallback_hfov_deg"])
            r.reset()
        r.invalid_policy, r.timeout_s = settings["invalid_camera_info"], float(settings["camera_info_timeout"])

    def _head(self, cfg: PipelineConfig, state: CameraState) -> Optional[str]:
        """The head to force for this frame (None: the model has no domain switch)."""
        caps = self.model.capabilities
        if not caps.domains:
            return None
        if cfg.domain in ("indoor", "outdoor"):
            return cfg.domain
        if cfg.domain == "auto" or not caps.routes_domains:
            return "auto"
        return state.router_for(cfg).head or "auto"

    def _route(self, cfg: PipelineConfig, state: CameraState, frame_id: str, pred, events) -> int:
        if cfg.domain != "stable" or not self.model.capabilities.routes_domains or pred.domain_logits is None:
            return state.router.switches if state.router is not None else 0
        router = state.router_for(cfg)
        router.update(pred.domain_logits)
        if router.last_switch is not None:
            a, b = router.last_switch
            events.append((f"domain_switch:{frame_id}", f"camera '{frame_id}': domain head {a} -> {b} (the router "
                           f"preferred {b} by >= {cfg.domain_switch_margin:g} for {cfg.domain_switch_frames} frames)"))
        return router.switches

    def _stabilize(self, cfg: PipelineConfig, state: CameraState, frame_id: str, depth: np.ndarray,
                   camera: PinholeCamera, pose: Optional[np.ndarray], events) -> Tuple[np.ndarray, ScaleInfo]:
        stab = state.stabilizer_for(cfg.scale_stabilization)
        motion = None
        if cfg.scale_stabilization == "odometry":
            if pose is not None and state.pose is not None:
                motion = relative_motion(state.pose, pose)
            state.pose = pose
        out, info = stab.update(depth, camera, motion)
        if info.restarted:
            events.append((f"scale_restart:{frame_id}", f"camera '{frame_id}': scale track {info.state}"))
        return out, info

    def resize(self, rgb: np.ndarray, config: Optional[PipelineConfig] = None) -> np.ndarray:
        """The image at the output size (``output_width``, aspect kept)."""
        cfg = config or self.config
        h, w = rgb.shape[:2]
        out_w = cfg.output_width or w
        if out_w == w:
            return rgb
        import cv2

        out_h = max(1, int(round(h * out_w / w)))
        return cv2.resize(rgb, (out_w, out_h), interpolation=cv2.INTER_AREA if out_w < w else cv2.INTER_LINEAR)

    def process(self, rgb: np.ndarray, frame_id: str, info: InfoStatus, waited_s: float = float("inf"),
                reference: Optional[np.ndarray] = None, pose: Optional[np.ndarray] = None) -> FrameResult:
        """One frame. ``rgb``: H x W x 3 uint8 at the input size; ``info``: its CameraInfo status;
        ``waited_s``: time since the first image (for the CameraInfo timeout; offline: inf);
        ``reference``: metric depth of the same frame for models that align to one;
        ``pose``: 4x4 world-from-optical pose of the camera at this frame (scale stabilisation ``odometry``).

        Raises ``FrameSkipped`` (with a one-line reason) when the frame gives no output.
        """
        cfg = self.config  # read once: the node may replace it from another thread
        t0 = time.perf_counter()
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
            raise FrameSkipped(f"empty or non-RGB image of shape {rgb.shape}", key="image:shape")
        h, w = rgb.shape[:2]
        rgb_p = self.resize(rgb, cfg)
        out_h, out_w = rgb_p.shape[:2]
        t1 = time.perf_counter()
        plan = self.resolver.plan(frame_id, w, h, info, waited_s, rgb_p)
        f_px = plan.camera.scaled(out_w, out_h).fx if plan.camera is not None else None
        t2 = time.perf_counter()
        caps = self.model.capabilities
        kwargs = {}
        if caps.metric_reference and reference is not None:
            kwargs["reference"] = _at_size(reference, out_w, out_h)
        state = self.cameras.get(frame_id)
        if state is None:
            if len(self.cameras) >= self.MAX_CAMERAS:  # made-up frame_ids cannot grow memory
                del self.cameras[next(iter(self.cameras))]
            state = self.cameras[frame_id] = CameraState()
        head = self._head(cfg, state)
        if head is not None:
            self.model.set_domain(head)
        c2 = time.thread_time()
        try:
            pred = self.model.infer(rgb_p, f_px=f_px, **kwargs)
        except Exception as exc:
            text = f"{type(exc).__name__}: {exc}"
            raise FrameSkipped(f"inference failed: {text}", key="model:" + problem_key(text), cause=exc) from None
        t3 = time.perf_counter()
        c3 = time.thread_time()
        depth = _as_image(pred.depth)
        if depth.shape != (out_h, out_w):
            raise FrameSkipped(f"the model returned depth of shape {depth.shape}, expected {(out_h, out_w)}",
                               key="model:shape")
        camera_in = plan.camera
        if camera_in is None:  # the model estimated the focal length of this frame itself
            focal = pred.focal_px * w / out_w if pred.focal_px is not None else None
            camera_in = self.resolver.add_model_sample(plan, focal)
        warnings: List[Tuple[str, str]] = []
        events: List[Tuple[str, str]] = []
        switches = self._route(cfg, state, frame_id, pred, events)
        camera = camera_in.scaled(out_w, out_h)
        scale = None
        if cfg.scale_stabilization != "off":
            depth, scale = self._stabilize(cfg, state, frame_id, depth, camera, pose, events)
        confidence = None
        if pred.confidence is not None:
            confidence = _as_image(pred.confidence)
            if confidence.shape != depth.shape:
                confidence = None
                warnings.append(("conf_shape", "the model's confidence has the wrong shape "
                                 f"{np.shape(pred.confidence)}; no confidence is output"))
        timings = {"resize": t1 - t0, "intrinsics": t2 - t1, "inference": t3 - t2, "inference_cpu": c3 - c2,
                   "estimator": (t2 - t1) if plan.source != CAMERA_INFO else 0.0}
        return FrameResult(depth, confidence, camera, rgb_p, cfg, plan.source, plan.reason, domain=pred.domain,
                           domain_confidence=pred.domain_confidence, timings=timings, warnings=warnings,
                           events=events, scale=scale, domain_switches=switches, extras=dict(pred.extras))


__all__ = ["CLOUD_MODES", "DOMAIN_MODES", "SCALE_MODES", "CameraState", "FrameProcessor", "FrameResult",
           "FrameSkipped", "PipelineConfig", "check_domain", "cloud_points", "problem_key", "valid_depth"]
