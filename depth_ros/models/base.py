"""The model interface shared by every depth network (no ROS imports).

A ``DepthModel`` wraps a ``torch.nn.Module`` (``.net``, the raw network) and adds ``infer``:
numpy RGB in, metric depth out, at the input resolution.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

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
    """

    depth: np.ndarray
    confidence: Optional[np.ndarray] = None
    focal_px: Optional[float] = None
    focal_source: Optional[str] = None
    domain: Optional[str] = None
    domain_confidence: Optional[float] = None


class DepthModel:
    """Base class. Subclasses set ``self.net`` and implement ``infer``.

    Users may bring their own class (``create_model("pkg.mod:Class", ...)``): it only needs
    ``infer(rgb, f_px=None) -> DepthPrediction``; subclassing this class is optional.
    """

    name: str = "depth_model"
    #: True when the model can estimate the focal length itself (Depth Pro).
    estimates_focal: bool = False

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
    def warmup(self, height: int = 480, width: int = 640) -> None:
        """Run one inference on a blank image so that kernels/compilation are ready."""
        self.infer(np.zeros((height, width, 3), np.uint8))


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
