"""Model registry: ``create_model(name, ...)`` for built-in names and ``package.module:ClassName``."""
from __future__ import annotations

import importlib
from typing import Callable, Dict

_REGISTRY: Dict[str, Callable] = {}
# Modules that register built-in models when imported (lazy, so torch-heavy code loads on demand).
_BUILTIN_MODULES = ("depth_ros.models.zoedepth", "depth_ros.models.depth_pro")


def register_model(name: str):
    """Decorator: register ``fn(weights=None, device='auto', dtype='float32', **config) -> DepthModel``."""
    def deco(fn):
        _REGISTRY[name] = fn
        return fn
    return deco


def _load_builtins() -> None:
    for mod in _BUILTIN_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:  # a family not written yet must not hide the others
            if exc.name != mod:
                raise


def list_models():
    _load_builtins()
    return sorted(_REGISTRY)


def create_model(name: str, weights=None, device: str = "auto", dtype: str = "float32", **config):
    """Build a ready-to-use ``DepthModel``.

    name: a registered name (``zoedepth_n``, ``zoedepth_k``, ``zoedepth_nk``, ``depth_pro``) or
      ``package.module:ClassName`` for a user's class, constructed as
      ``ClassName(weights=weights, device=device, dtype=dtype, **config)``.
    weights: a file path, ``"random"`` (explicitly random weights, never implied), or None
      (local cache, then download when allowed; see ``depth_ros.models.weights``).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")
    if ":" in name:
        module_name, _, cls_name = name.partition(":")
        if not module_name or not cls_name:
            raise ValueError(f"user model must be written 'package.module:ClassName', got '{name}'")
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
        return model
    _load_builtins()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model '{name}'; known: {', '.join(sorted(_REGISTRY)) or '(none)'}"
                         " or 'package.module:ClassName'")
    return _REGISTRY[name](weights=weights, device=device, dtype=dtype, **config)
