"""Depth networks (torch + timm, no ROS imports)."""
from depth_ros.models.base import DepthModel, DepthPrediction
from depth_ros.models.registry import create_model, list_models, register_model

__all__ = ["DepthModel", "DepthPrediction", "create_model", "list_models", "register_model"]
