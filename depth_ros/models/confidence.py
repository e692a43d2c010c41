"""Torch twins of ``depth_ros.core.confidence`` for a depth that is still on the device (GPU path).

Same formulae, same defaults, same float32 operations in the same order, so the numbers equal the NumPy
functions' (up to float rounding of the accelerator); see ``depth_ros.core.confidence`` for their meaning.
Inputs are H x W or B x 1 x H x W tensors; outputs have the input's shape, float32, on its device.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from depth_ros.core.confidence import (
    COMBINE_RULES,
    EDGE_R_HALF,
    EDGE_SHARPNESS,
    EDGE_WINDOW,
    FLIP_R_HALF,
    _check_positive,
    _check_window,
    integer_power,
    is_small_integer,
)

__all__ = ["combine_torch", "edge_confidence_torch", "flip_confidence_torch", "local_relative_range_torch",
           "relative_difference_torch", "soft_threshold_torch", "valid_depth_torch"]


def _as_4d(name: str, t: torch.Tensor) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.ndim == 2:
        return t[None, None]
    if t.ndim == 4 and t.shape[1] == 1:
        return t
    raise ValueError(f"{name} must be H x W or B x 1 x H x W, got shape {tuple(t.shape)}")


def valid_depth_torch(depth: torch.Tensor) -> torch.Tensor:
    """Boolean mask of usable depth: finite and > 0."""
    return torch.isfinite(depth) & (depth > 0)


def relative_difference_torch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``2 |a - b| / (a + b)`` elementwise, float32; 0 where ``a + b`` is 0."""
    a, b = a.float(), b.float()
    total = a + b
    r = 2.0 * (a - b).abs() / total
    return torch.where(total > 0, r, torch.zeros_like(r))


def local_relative_range_torch(depth: torch.Tensor, window: int = EDGE_WINDOW):
    """``(r, valid)`` like ``core.confidence.local_relative_range`` (max/min pooling; invalid neighbours
    and the outside of the image are ignored)."""
    window = _check_window(window)
    d = _as_4d("depth", depth).float()
    valid = valid_depth_torch(d)
    k = window // 2
    inf = torch.tensor(float("inf"), device=d.device)
    hi = F.max_pool2d(torch.where(valid, d, -inf), window, stride=1, padding=k)
    lo = -F.max_pool2d(torch.where(valid, -d, -inf), window, stride=1, padding=k)
    r = (hi - lo) * 2.0 / (hi + lo)
    r = torch.where(valid, r, torch.zeros_like(r))
    return r.reshape(depth.shape), valid.reshape(depth.shape)


def _power(t: torch.Tensor, k: float) -> torch.Tensor:
    return integer_power(t, int(k)) if is_small_integer(k) else torch.pow(t, float(k))


def soft_threshold_torch(r: torch.Tensor, r_half: float, sharpness: float = EDGE_SHARPNESS) -> torch.Tensor:
    """``1 / (1 + (r / r_half) ** sharpness)``, float32."""
    r_half = _check_positive("r_half", r_half)
    sharpness = _check_positive("sharpness", sharpness)
    t = r.float() / torch.tensor(r_half, dtype=torch.float32, device=r.device)
    return torch.reciprocal(_power(t, sharpness) + 1.0)


def edge_confidence_torch(depth: torch.Tensor, window: int = EDGE_WINDOW, r_half: float = EDGE_R_HALF,
                          sharpness: float = EDGE_SHARPNESS) -> torch.Tensor:
    """Flying-pixel confidence (``core.confidence.edge_confidence``) on the tensor's device."""
    r, valid = local_relative_range_torch(depth, window)
    c = soft_threshold_torch(r, r_half, sharpness)
    return torch.where(valid, c, torch.zeros_like(c))


def flip_confidence_torch(depth: torch.Tensor, depth_mirror: torch.Tensor, r_half: float = FLIP_R_HALF) -> torch.Tensor:
    """``exp(-ln2 * s(d, d') / r_half)`` (``core.confidence.flip_confidence``); 0 where either is invalid.
    Also right for two inverse depths (the relative difference is the same)."""
    if depth.shape != depth_mirror.shape:
        raise ValueError(f"depth {tuple(depth.shape)} and depth_mirror {tuple(depth_mirror.shape)} differ in shape")
    tau = _check_positive("r_half", r_half) / math.log(2.0)
    d, m = depth.float(), depth_mirror.float()
    valid = valid_depth_torch(d) & valid_depth_torch(m)
    one = torch.ones_like(d)
    r = relative_difference_torch(torch.where(valid, d, one), torch.where(valid, m, one))
    c = torch.exp(-r / torch.tensor(tau, dtype=torch.float32, device=r.device))
    return torch.where(valid, c, torch.zeros_like(c))


def _clean(c: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num(c.float(), nan=0.0, posinf=1.0, neginf=0.0).clamp_(0.0, 1.0)


def combine_torch(model_conf: Optional[torch.Tensor], edge_conf: Optional[torch.Tensor],
                  rule: str = "product") -> Optional[torch.Tensor]:
    """``core.confidence.combine`` on tensors."""
    if rule not in COMBINE_RULES:
        raise ValueError(f"unknown confidence combination rule '{rule}'; use one of {', '.join(COMBINE_RULES)}")
    if model_conf is None and edge_conf is None:
        return None
    if model_conf is None:
        return _clean(edge_conf)
    if edge_conf is None:
        return _clean(model_conf)
    if model_conf.shape != edge_conf.shape:
        raise ValueError(f"model_conf {tuple(model_conf.shape)} and edge_conf {tuple(edge_conf.shape)} differ in shape")
    a, b = _clean(model_conf), _clean(edge_conf)
    return a * b if rule == "product" else torch.minimum(a, b)
