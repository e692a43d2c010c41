"""Depth networks (torch + timm, no ROS imports).

``depth_ros.models.registry`` (the list of families, ``create_model``) imports without torch; the
names below that need torch load on first use.
"""
from depth_ros.models.registry import FAMILIES, MODEL_NAMES, create_model, list_models, register_model

__all__ = ["Capabilities", "DepthModel", "DepthPrediction", "FAMILIES", "MODEL_NAMES", "create_model",
           "list_models", "register_model"]


def __getattr__(name):
    if name in ("Capabilities", "DepthModel", "DepthPrediction"):
        from depth_ros.models import base

        return getattr(base, name)
    raise AttributeError(f"module 'depth_ros.models' has no attribute '{name}'")
