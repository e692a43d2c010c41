"""The one list of model families, and ``create_model`` (importable without torch).

``FAMILIES`` names every built-in family, the module that implements it and the tiny random config
that the contract test (``test/test_model_contract.py``) runs through ``create_model -> infer``. A family
module registers its factory with ``@register_model(name)``; a name that is not in ``FAMILIES`` is
refused there, so a new family is always listed here, validated by the node and covered by the
contract test without new test code. A user's own network is ``package.module:ClassName``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple


@dataclass(frozen=True)
class Family:
    """One built-in model family."""

    name: str
    module: str
    description: str
    #: keyword arguments of ``create_model`` that build a tiny random network (CPU, seconds)
    tiny_config: Dict[str, Any] = field(default_factory=dict)
    #: ``"module:function"`` called with a temporary folder when the tiny model needs files made first
    #: (returns the keyword arguments); used instead of ``tiny_config`` when set
    tiny_factory: Optional[str] = None

    def tiny_kwargs(self, tmp_dir) -> Dict[str, Any]:
        if self.tiny_factory:
            mod, _, fn = self.tiny_factory.partition(":")
            return dict(getattr(importlib.import_module(mod), fn)(tmp_dir))
        return dict(self.tiny_config, weights="random")


FAMILIES: Dict[str, Family] = {f.name: f for f in (
    Family("zoedepth_nk", "depth_ros.models.zoedepth", "ZoeD-M12-NK: indoor + outdoor heads, learned router",
           {"backbone": "test_tiny"}),
    Family("zoedepth_n", "depth_ros.models.zoedepth", "ZoeD-M12-N: indoor (NYU, <= 10 m)", {"backbone": "test_tiny"}),
    Family("zoedepth_k", "depth_ros.models.zoedepth", "ZoeD-M12-K: outdoor (KITTI, <= 80 m)",
           {"backbone": "test_tiny"}),
    Family("depth_pro", "depth_ros.models.depth_pro", "Depth Pro: sharp metric depth + field-of-view head",
           {"vit_preset": "test_tiny"}),
    Family("marigold", "depth_ros.models.marigold",
           "Marigold (diffusers pipeline folder): sharp affine depth aligned to a metric reference, uncertainty",
           tiny_factory="depth_ros.models.marigold:tiny_test_kwargs"),
)}

#: every built-in model name, in the order users see them
MODEL_NAMES: Tuple[str, ...] = tuple(FAMILIES)
#: inference backends of ``create_model``
BACKENDS: Tuple[str, ...] = ("torch", "onnxruntime")

_FACTORIES: Dict[str, Callable] = {}


def register_model(name: str):
    """Decorator for a family module: ``fn(weights=None, device='auto', dtype='float32', **config)``."""
    if name not in FAMILIES:
        raise ValueError(f"model family '{name}' is not listed in depth_ros.models.registry.FAMILIES; "
                         "add it there (the node, the CLI and the contract test read that table)")

    def deco(fn):
        _FACTORIES[name] = fn
        return fn
    return deco


def list_models():
    return list(MODEL_NAMES)


def is_user_model(name: str) -> bool:
    module_name, sep, cls_name = name.partition(":")
    return bool(sep and module_name and cls_name)


def _factory(name: str) -> Callable:
    if name not in _FACTORIES:
        importlib.import_module(FAMILIES[name].module)
    if name not in _FACTORIES:  # pragma: no cover - a family module that forgot to register
        raise RuntimeError(f"module {FAMILIES[name].module} does not register model '{name}'")
    return _FACTORIES[name]


def _user_model(name: str, weights, device, dtype, config):
    from depth_ros.models.base import DepthModel, UserModel

    module_name, _, cls_name = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import user model module '{module_name}': {exc}") from exc
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise ValueError(f"module '{module_name}' has no attribute '{cls_name}'")
    model = cls(weights=weights, device=device, dtype=dtype, **config)
    if not callable(getattr(model, "infer", None)):
        raise ValueError(f"user model '{name}' has no infer(rgb, f_px) method")
    return model if isinstance(model, DepthModel) else UserModel(model)


def create_model(name: str, weights=None, device: str = "auto", dtype: str = "float32", backend: str = "torch",
                 **config):
    """Build a ready-to-use ``DepthModel``.

    name: a name of ``FAMILIES`` or ``package.module:ClassName`` for a user's class, constructed as
      ``ClassName(weights=weights, device=device, dtype=dtype, **config)`` (a class that does not derive
      from ``DepthModel`` is wrapped in ``UserModel``, which reads its optional ``capabilities``).
    weights: a file path, ``"random"`` (explicitly random weights, never implied), or None
      (local cache, then download when allowed; see ``depth_ros.models.weights``).
    backend: ``torch`` or ``onnxruntime`` (``weights`` is then an ``.onnx`` file made by ``depth-ros export``).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend '{backend}'; use one of {', '.join(BACKENDS)}")
    if ":" in name:
        if not is_user_model(name):
            raise ValueError(f"user model must be written 'package.module:ClassName', got '{name}'")
        if backend != "torch":
            raise ValueError(f"backend '{backend}' serves the built-in models only, not '{name}'")
        return _user_model(name, weights, device, dtype, config)
    if name not in FAMILIES:
        raise ValueError(f"unknown model '{name}'; known: {', '.join(MODEL_NAMES)} or 'package.module:ClassName'")
    if backend == "onnxruntime":
        from depth_ros.models.onnx_backend import create_onnx_model

        return create_onnx_model(name, weights=weights, device=device, dtype=dtype, **config)
    return _factory(name)(weights=weights, device=device, dtype=dtype, **config)
