"""Building the depth model and the focal-length estimator from settings (the node's parameters,
the CLI's options): one place, one-line errors."""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import numpy as np


class ModelLoadError(RuntimeError):
    """The model cannot be built; the message is one line naming the model and what is wrong."""


def one_line(text) -> str:
    return " ".join(str(text).split())


def load_model(name: str, weights: Optional[str], device: str = "auto", precision: str = "float32",
               backend: str = "torch", config: Optional[Dict[str, Any]] = None):
    """``create_model`` with errors turned into ``ModelLoadError`` (weights problems named as such)."""
    from depth_ros.models import create_model
    from depth_ros.models.weights import WeightsError

    config = dict(config or {})
    try:
        return create_model(name, weights=weights or None, device=device, dtype=precision, backend=backend,
                            **config)
    except WeightsError as exc:
        raise ModelLoadError(f"cannot load the weights of model '{name}': {one_line(exc)}") from None
    except Exception as exc:  # unknown name, bad config keyword, CUDA missing, import error...
        raise ModelLoadError(f"cannot create model '{name}': {type(exc).__name__}: {one_line(exc)}") from None


def focal_estimator_factory(model, weights: Optional[str], device: str, precision: str,
                            config: Optional[Dict[str, Any]] = None,
                            log: Optional[Callable[[str], None]] = None) -> Callable[[], Callable[[np.ndarray], float]]:
    """A factory (called on first need) of ``rgb -> focal px``: the model's own estimator when it has one,
    else Depth Pro's FOV network loaded with ``weights``."""

    def make():
        if model.capabilities.estimates_focal:
            return model.estimate_focal
        if log is not None:
            log(f"loading Depth Pro as focal-length estimator (weights: {weights or 'default cache'})")
        est = load_model("depth_pro", weights, device, precision, config=config)
        if not est.capabilities.estimates_focal:
            raise ValueError("the Depth Pro estimator has no FOV head (use_fov=False)")
        return est.estimate_focal

    return make


def make_resolver(model, settings: Dict[str, Any], estimator_config: Optional[Dict[str, Any]] = None,
                  log: Optional[Callable[[str, str], None]] = None, given=None):
    """The intrinsics policy from the node's parameters (``focal_samples``, ``fallback_hfov_deg``,
    ``invalid_camera_info``, ``camera_info_timeout``, ``focal_estimator``, ``focal_estimator_weights``,
    ``device``, ``precision``)."""
    from depth_ros.pipeline.intrinsics import IntrinsicsResolver

    use_estimator = settings["focal_estimator"] == "depth_pro"
    info = (lambda text: log("info", text)) if log is not None else None
    resolver = IntrinsicsResolver(
        samples=settings["focal_samples"], fallback_hfov_deg=settings["fallback_hfov_deg"],
        invalid_policy=settings["invalid_camera_info"], timeout_s=settings["camera_info_timeout"],
        model_estimates_focal=use_estimator and model.capabilities.estimates_focal,
        estimator_factory=(focal_estimator_factory(model, settings["focal_estimator_weights"], settings["device"],
                                                   settings["precision"], estimator_config, info)
                           if use_estimator else None),
        log=log, given=given)
    if not use_estimator:
        resolver.estimator_error = "focal_estimator is 'none'"
    return resolver
