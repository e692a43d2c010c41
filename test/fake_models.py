"""User model classes for the node tests and the benchmark (``model:=fake_models:ConstantDepthModel``).

They follow the user-class contract of ``create_model("package.module:ClassName", ...)``: constructed
with ``weights``, ``device``, ``dtype`` and the ``model_config.*`` keyword arguments; ``infer(rgb, f_px)``
returns a ``DepthPrediction``. This directory must be on ``sys.path`` (pytest puts it there; for a
subprocess ``test/ros_utils.py`` adds it to ``PYTHONPATH``).
"""
from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np

from depth_ros.models.base import Capabilities, DepthModel, DepthPrediction


class ConstantDepthModel(DepthModel):
    """Returns ``depth`` metres everywhere (a left-to-right ramp when ``ramp > 0``), after ``delay`` s.

    Confidence is 0.25 in the left half and 1.0 in the right half. Counts its calls (thread-safe).
    """

    capabilities = Capabilities(confidence=True)
    name = "constant_depth"
    #: every instance, so that in-process tests can find the one a node built
    instances: list = []

    def __init__(self, weights=None, device="cpu", dtype="float32", depth=2.0, ramp=0.0, delay=0.0, load_delay=0.0,
                 confidence=True, domain_name="indoor", domain_confidence=0.75, **extra):
        self.weights, self.device, self.dtype = weights, device, dtype
        self.depth, self.ramp, self.delay = float(depth), float(ramp), float(delay)
        self.with_confidence = bool(confidence)
        if load_delay:  # like loading weights
            time.sleep(float(load_delay))
        self.capabilities = dataclasses.replace(type(self).capabilities, confidence=self.with_confidence)
        self.domain_name, self.domain_conf = domain_name, float(domain_confidence)
        self.extra = extra
        self.calls = 0
        self.warmups = 0
        self.last_f_px = None
        self.sizes = []
        self._lock = threading.Lock()
        ConstantDepthModel.instances.append(self)

    def warmup(self, height=480, width=640):
        self.warmups += 1

    def _depth(self, h, w):
        if self.ramp:
            row = self.depth + self.ramp * np.linspace(0.0, 1.0, w, dtype=np.float32)
            return np.broadcast_to(row, (h, w)).copy()
        return np.full((h, w), self.depth, np.float32)

    def infer(self, rgb, f_px=None):
        if self.delay:
            time.sleep(self.delay)
        h, w = rgb.shape[:2]
        with self._lock:
            self.calls += 1
            self.last_f_px = f_px
            self.sizes.append((w, h))
        conf = None
        if self.with_confidence:
            conf = np.ones((h, w), np.float32)
            conf[:, : w // 2] = 0.25
        return DepthPrediction(depth=self._depth(h, w), confidence=conf,
                               focal_px=None if f_px is None else float(f_px),
                               focal_source=None if f_px is None else "given",
                               domain=self.domain_name, domain_confidence=self.domain_conf)


class FocalEstimatingModel(ConstantDepthModel):
    """Like Depth Pro: estimates the focal length itself (``focal_ratio * width``) when f_px is None."""

    capabilities = Capabilities(estimates_focal=True, confidence=True)

    def __init__(self, focal_ratio=0.8, **kw):
        super().__init__(**kw)
        self.focal_ratio = float(focal_ratio)

    def estimate_focal(self, rgb):
        return self.focal_ratio * rgb.shape[1]

    def infer(self, rgb, f_px=None):
        pred = super().infer(rgb, f_px)
        if f_px is None:
            pred.focal_px, pred.focal_source = self.estimate_focal(rgb), "estimated"
        return pred


class BrokenModel(ConstantDepthModel):
    """Its constructor fails like a model without weights."""

    def __init__(self, **kw):
        from depth_ros.models.weights import WeightsError

        raise WeightsError("weights file '/nonexistent/fake.pt' does not exist (test)")


class DomainSwitchModel(ConstantDepthModel):
    """Has a settable ``domain`` like ZoeDepth-NK ("auto" reports the router's pick: indoor)."""

    capabilities = Capabilities(confidence=True, domains=("indoor", "outdoor"))

    def __init__(self, **kw):
        super().__init__(**kw)
        self._domain = "auto"

    @property
    def domain(self):
        return self._domain

    @domain.setter
    def domain(self, value):
        if value not in ("auto", "indoor", "outdoor"):
            raise ValueError(f"unknown domain {value!r}")
        self._domain = value

    def infer(self, rgb, f_px=None):
        pred = super().infer(rgb, f_px)
        if self._domain != "auto":
            pred.domain, pred.domain_confidence = self._domain, 1.0
        return pred


class EdgeCaseDepthModel(ConstantDepthModel):
    """Depth a known function of the pixel and the image, with every edge case of the validity rule.

    ``depth = 0.05 + 100 * (v * W + u) / (H * W) + rgb[..., 2] / 2550`` metres (0.05 ... ~100 m, so some
    pixels are beyond 65.535 m and beyond max_range), then in row 0: ``-1``, ``0``, NaN, +inf, -inf,
    70 m (valid in 32FC1, not representable in 16UC1), 65.5354 m (rounds to 65535 mm) and 65.5356 m.
    Confidence is ``rgb[..., 0] / 255``.
    """

    name = "edge_case_depth"

    def infer(self, rgb, f_px=None):
        h, w = rgb.shape[:2]
        with self._lock:
            self.calls += 1
        v, u = np.mgrid[0:h, 0:w]
        d = (0.05 + 100.0 * (v * w + u) / (h * w) + rgb[..., 2] / 2550.0).astype(np.float32)
        special = [-1.0, 0.0, np.nan, np.inf, -np.inf, 70.0, 65.5354, 65.5356]
        d[0, : len(special)] = np.asarray(special, np.float32)[: w]
        conf = (rgb[..., 0] / 255.0).astype(np.float32)
        return DepthPrediction(depth=d, confidence=conf, focal_px=None if f_px is None else float(f_px),
                               focal_source=None if f_px is None else "given")


class FailingDepthModel(EdgeCaseDepthModel):
    """``EdgeCaseDepthModel`` whose ``infer`` raises ``RuntimeError`` on the calls listed in ``fail_on``
    (1-based call numbers), like a network that hits a CUDA error or a bad kernel on one frame."""

    name = "failing_depth"

    def __init__(self, fail_on=(3,), **kw):
        super().__init__(**kw)
        self.fail_on = {int(x) for x in (fail_on if isinstance(fail_on, (list, tuple)) else [fail_on])}
        self._infer_calls = 0

    def infer(self, rgb, f_px=None):
        with self._lock:
            self._infer_calls += 1
            n = self._infer_calls
        if n in self.fail_on:
            raise RuntimeError(f"injected model failure on call {n} (test)")
        return super().infer(rgb, f_px)
