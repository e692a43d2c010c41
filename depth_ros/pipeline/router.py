"""Router hysteresis for models that route each image to a domain head (ZoeDepth-NK), per camera.

ZoeDepth-NK's router picks the indoor (NYU) or the outdoor (KITTI) head per image. On scenes that are
neither clearly indoor nor outdoor (a garage, a corridor with windows, a porch) its preference flips from
frame to frame, and each flip changes the depth scale (the heads' scales differ by several percent up to
tens of percent). :class:`RouterHysteresis` keeps one head until the router prefers the other one by
``margin`` for ``frames`` consecutive frames.

Use with a model whose ``capabilities.routes_domains`` is true::

    hyst = RouterHysteresis()              # one per camera
    model.set_domain(hyst.head or "auto")  # None before the first frame: let the router choose
    pred = model.infer(rgb)                # forced head; pred.domain_logits is this image's router output
    hyst.update(pred.domain_logits)        # decides the head of the *next* frame
    if hyst.last_switch:                   # (from, to) on the frame that switched, else None
        log.info("domain head %s -> %s", *hyst.last_switch)

The router runs on the shared bottleneck before either head, so its logits are the same whichever head is
forced: the frame's own depth comes from the head in use and its logits feed the next decision (a
switch takes effect one frame after the frame that confirmed it).

Margin units: *probability*. ``p = softmax(logits)``; the other domain counts as preferred on a frame
when ``p_other - p_current >= margin``, i.e. ``p_other >= (1 + margin) / 2`` (logit difference
``>= 2 atanh(margin)``: 0.2 -> p_other >= 0.6, logit difference >= 0.41). Probability rather than logits:
it is bounded, reads the same as ``DepthPrediction.domain_confidence``, and a margin in logits would mean
nothing on saturated outputs (logit differences of 8 and 12 are both certain).

Defaults ``margin=0.5, frames=5`` from a measurement (``bench/bench_scale.py``, router section): a
synthetic router whose logit difference is scene evidence plus AR(1) noise (sigma 1 logit, frame-to-frame
correlation 0.6; no real weights were available to measure a real router's noise, so these numbers rest
on that model). On a fully ambiguous scene (evidence 0) per-image routing switches heads 293 times per
1000 frames; ``margin=0.5, frames=5`` switches 4 times per 1000 frames (73x fewer), while an
indoor -> outdoor change is followed 5.4 frames after it on average for a clear change (evidence
-3 -> +3, p ~ 0.95; at most 12 frames in 200 trials) and 7.8 frames for a weak one (-2 -> +2, p ~ 0.88).
Fewer frames let the correlated flips through (3 frames: 13.5 per 1000); more frames or a larger
margin add latency on weak changes faster than they remove flips (margin 0.5 with 8 frames: 0.2 per
1000 but 14 frames on a weak change, some never within 30).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

__all__ = ["DOMAINS", "RouterHysteresis"]

#: Index order of ``DepthPrediction.domain_logits``.
DOMAINS = ("indoor", "outdoor")


class RouterHysteresis:
    """Sticky domain head for one camera (see the module docstring).

    ``margin``: probability margin in [0, 1) by which the router must prefer the other domain on a frame;
    ``frames``: consecutive such frames needed to switch (>= 1); ``initial``: the head to start with, or
    None to take the router's choice of the first frame.

    Attributes: ``head`` (the head to force for the next frame; None until the first update when
    ``initial`` is None), ``switches`` (switches so far, the initial choice not counted),
    ``last_switch`` (``(from, to)`` when the latest ``update`` switched, else None), ``streak`` (consecutive
    frames preferring the other head so far), ``probability`` (the router's probability of ``DOMAINS[1]``
    on the latest frame).
    """

    def __init__(self, margin: float = 0.5, frames: int = 5, initial: Optional[str] = None):
        if not (isinstance(margin, (int, float)) and math.isfinite(margin) and 0.0 <= margin < 1.0):
            raise ValueError(f"router hysteresis margin must be a probability in [0, 1), got {margin!r}")
        if isinstance(frames, bool) or int(frames) != frames or frames < 1:
            raise ValueError(f"router hysteresis frames must be an integer >= 1, got {frames!r}")
        if initial is not None and initial not in DOMAINS:
            raise ValueError(f"initial head must be one of {', '.join(DOMAINS)} or None, got {initial!r}")
        self.margin = float(margin)
        self.frames = int(frames)
        self.initial = initial
        self.reset()

    def reset(self) -> None:
        """Back to the initial head; the switch count is kept (it is a diagnostic of the camera)."""
        self.head: Optional[str] = self.initial
        self.streak = 0
        self.last_switch: Optional[Tuple[str, str]] = None
        self.probability: Optional[float] = None
        if not hasattr(self, "switches"):
            self.switches = 0

    def update(self, domain_logits: Sequence[float]) -> str:
        """Feed one frame's router logits ``(indoor, outdoor)``; returns the head for the next frame."""
        try:
            a, b = (float(v) for v in domain_logits)
        except (TypeError, ValueError):
            raise ValueError(f"domain_logits must be two numbers (indoor, outdoor), got {domain_logits!r}") from None
        if not (math.isfinite(a) and math.isfinite(b)):
            raise ValueError(f"domain_logits must be finite, got ({a}, {b})")
        d = b - a
        p_out = 1.0 / (1.0 + math.exp(-d)) if d >= 0 else math.exp(d) / (1.0 + math.exp(d))
        self.probability = p_out
        self.last_switch = None
        if self.head is None:  # first frame without an initial head: take the router's choice
            self.head = DOMAINS[1] if d > 0 else DOMAINS[0]
            return self.head
        p_other = p_out if self.head == DOMAINS[0] else 1.0 - p_out
        if p_other - (1.0 - p_other) >= self.margin and p_other > 0.5:
            self.streak += 1
        else:
            self.streak = 0
        if self.streak >= self.frames:
            new = DOMAINS[1] if self.head == DOMAINS[0] else DOMAINS[0]
            self.last_switch = (self.head, new)
            self.head = new
            self.switches += 1
            self.streak = 0
        return self.head

    def state(self) -> dict:
        """Diagnostics: head, switches, streak, margin, frames, the latest probability of outdoor."""
        return {"head": self.head, "switches": self.switches, "streak": self.streak, "margin": self.margin,
                "frames": self.frames, "p_outdoor": self.probability}
