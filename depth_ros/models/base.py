"""The model interface shared by every depth network (no ROS imports).

A ``DepthModel`` wraps a ``torch.nn.Module`` (``.net``, the raw network) and adds ``infer``:
numpy RGB in, metric depth out, at the input resolution.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

FocalLike = Union[None, float, int, np.floating, np.integer, np.ndarray, torch.Tensor]


@dataclass
class DepthPrediction:
    """One image's result.

    depth: H x W float32 metres along the optical axis (REP 118), at the input resolution.
    confidence: H x W float32 in [0, 1] (higher is more certain), or None when the model has none.
    focal_px: the horizontal focal length in pixels used for metric scale (Depth Pro), else None.
    focal_source: "given" (caller passed f_px), "estimated" (model estimated it), or None.
    domain: "indoor" / "outdoor" (ZoeDepth-NK router or a single-domain model), else None.
    domain_confidence: router softmax probability of ``domain`` in [0, 1], else None.
    domain_logits: the router's logits (indoor, outdoor) of this image when the model routes, else None.
    extras: family-specific results by name (Marigold: ``scale``, ``shift``, ``alignment``, ...); empty otherwise.
    """

    depth: np.ndarray
    confidence: Optional[np.ndarray] = None
    focal_px: Optional[float] = None
    focal_source: Optional[str] = None
    domain: Optional[str] = None
    domain_confidence: Optional[float] = None
    domain_logits: Optional[Tuple[float, float]] = None
    extras: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Capabilities:
    """What a model can do, declared by the model (the node and the pipeline read only this).

    estimates_focal: ``infer(rgb)`` without ``f_px`` estimates the focal length (``DepthPrediction.focal_px``)
      and ``estimate_focal(rgb)`` runs the estimate alone (Depth Pro).
    confidence: ``DepthPrediction.confidence`` is set.
    domains: the heads ``model.domain`` can be forced to besides ``"auto"`` (ZoeDepth-NK: indoor, outdoor);
      empty when the model has no domain switch.
    routes_domains: the model chooses a head per image (``DepthPrediction.domain_logits`` is set).
    batch: ``infer_batch`` runs several images in one pass (else it loops over ``infer``).
    metric_reference: ``infer(rgb, f_px, reference=...)`` accepts a metric depth image of the same frame
      (H x W float32 metres, NaN where unknown) to align its prediction to (Marigold).
    """

    estimates_focal: bool = False
    confidence: bool = False
    domains: Tuple[str, ...] = ()
    routes_domains: bool = False
    batch: bool = False
    metric_reference: bool = False


class DepthModel:
    """Base class of every model family (and of ``UserModel``, the wrapper of a user's class).

    The template every family follows (see ``zoedepth.py``, ``depth_pro.py``):

    * the module registers a factory with ``@register_model(name)`` for each name it has in
      ``registry.FAMILIES``; the factory resolves and loads the weights (``depth_ros.models.weights``:
      ``weights_only`` pickles, official and Hugging Face layouts detected by key names and converted,
      then loaded strictly);
    * ``self.net`` is the ``torch.nn.Module`` whose ``forward`` works at network resolution on a
      normalised batch (what ``depth-ros export`` traces);
    * ``infer(rgb, f_px)`` does the rest: checks and normalises the image, resizes it to the network,
      converts the output to metres and resizes it back to the input size;
    * ``capabilities`` says what the model offers (see ``Capabilities``).
    """

    name: str = "depth_model"
    capabilities: Capabilities = Capabilities()

    def __init__(self, net: Optional[torch.nn.Module] = None, device: Union[str, torch.device] = "cpu",
                 dtype: Union[str, torch.dtype] = "float32"):
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self.net = net

    # -- to implement -------------------------------------------------------------------------
    def infer(self, rgb: np.ndarray, f_px: FocalLike = None) -> DepthPrediction:  # pragma: no cover
        raise NotImplementedError

    def estimate_focal(self, rgb: np.ndarray) -> float:
        raise NotImplementedError(f"{type(self).__name__} cannot estimate the focal length")

    # -- helpers ------------------------------------------------------------------------------
    @property
    def estimates_focal(self) -> bool:
        return self.capabilities.estimates_focal

    def infer_batch(self, images: Sequence[np.ndarray]) -> List[DepthPrediction]:
        return [self.infer(im) for im in images]

    def set_domain(self, domain: str) -> None:
        """Force a head (``capabilities.domains``) or ``"auto"``; ValueError for anything else."""
        if domain == "auto" or domain in self.capabilities.domains:
            self.domain = domain
            return
        have = ", ".join(self.capabilities.domains) or "none"
        raise ValueError(f"model {self.name} has no '{domain}' head (heads: {have})")

    def warmup(self, height: int = 480, width: int = 640) -> None:
        """Run one inference on a blank image so that kernels/compilation are ready."""
        self.infer(np.zeros((height, width, 3), np.uint8))


class UserModel(DepthModel):
    """A user's class (``package.module:ClassName``) that does not derive from ``DepthModel``.

    The class needs ``infer(rgb, f_px=None) -> DepthPrediction``; it may declare ``capabilities``
    (a ``Capabilities``) and define ``warmup(height, width)`` and ``estimate_focal(rgb)``.
    """

    def __init__(self, inner: Any):
        caps = getattr(inner, "capabilities", Capabilities())
        if not isinstance(caps, Capabilities):
            raise ValueError(f"{type(inner).__name__}.capabilities must be a depth_ros.models.Capabilities, "
                             f"got {type(caps).__name__}")
        self.inner = inner
        self.capabilities = caps
        self.name = str(getattr(inner, "name", type(inner).__name__))
        self.device = getattr(inner, "device", "cpu")
        self.dtype = getattr(inner, "dtype", "float32")
        self.net = None
        self.domain = "auto"

    def infer(self, rgb: np.ndarray, f_px: FocalLike = None) -> DepthPrediction:
        return self.inner.infer(rgb, f_px=f_px)

    def estimate_focal(self, rgb: np.ndarray) -> float:
        if not self.capabilities.estimates_focal:
            return super().estimate_focal(rgb)
        return self.inner.estimate_focal(rgb)

    def set_domain(self, domain: str) -> None:
        super().set_domain(domain)
        if self.capabilities.domains:
            self.inner.domain = domain

    def warmup(self, height: int = 480, width: int = 640) -> None:
        warm = getattr(type(self.inner), "warmup", None)
        if warm is not None:
            self.inner.warmup(height, width)
        else:
            super().warmup(height, width)


def resolve_device(device: Union[str, torch.device, None]) -> torch.device:
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{device}' requested but CUDA is not available on this machine")
    return dev


_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
           "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def resolve_dtype(dtype: Union[str, torch.dtype, None]) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"unsupported dtype {dtype}; use float32, float16 or bfloat16")
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unknown dtype '{dtype}'; use one of float32, float16, bfloat16") from None


def check_rgb(rgb: np.ndarray) -> np.ndarray:
    """Validate an H x W x 3 uint8 RGB image; raise ValueError naming the problem."""
    if not isinstance(rgb, np.ndarray):
        raise ValueError(f"expected a numpy array (H x W x 3 uint8 RGB), got {type(rgb).__name__}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 RGB image, got shape {rgb.shape}")
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"empty image of shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"expected uint8 RGB, got dtype {rgb.dtype}")
    return rgb


def focal_to_float(f_px: FocalLike) -> Optional[float]:
    """Accept a Python number, numpy scalar/0-d array or a (1-element) tensor; return a float or None."""
    if f_px is None:
        return None
    if isinstance(f_px, torch.Tensor):
        if f_px.numel() != 1:
            raise ValueError(f"f_px must be a scalar, got a tensor of shape {tuple(f_px.shape)}")
        value = float(f_px.detach().reshape(()).cpu())
    else:
        arr = np.asarray(f_px, dtype=np.float64)
        if arr.size != 1:
            raise ValueError(f"f_px must be a scalar, got an array of shape {arr.shape}")
        value = float(arr.reshape(()))
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"f_px must be a finite positive focal length in pixels, got {value}")
    return value


def rgb_to_tensor(rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    """H x W x 3 uint8 -> 1 x 3 x H x W float32 in [0, 1] on device."""
    t = torch.from_numpy(np.ascontiguousarray(rgb)).to(device)
    return t.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
