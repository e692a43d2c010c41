"""Counters and timings of the node's worker (ROS-free; read by diagnostics, tests and the benchmark)."""
from __future__ import annotations

from typing import Dict, List, Optional

from depth_ros.node.diagnostics import RateMeter, RollingStats

STAGES = ("decode", "intrinsics", "postprocess", "publish")


class FrameStats:
    def __init__(self) -> None:
        self.input_rate = RateMeter()
        self.output_rate = RateMeter()
        self.latency_ms = RollingStats()      # image callback -> last output published
        self.age_ms = RollingStats()          # header.stamp -> last output published (node clock)
        self.inference_ms = RollingStats()    # model.infer
        self.overhead_ms = RollingStats()     # everything in the worker except the network(s)
        self.overhead_cpu_ms = RollingStats()  # CPU time of the worker thread for the same stages
        self.stage_ms: Dict[str, RollingStats] = {k: RollingStats() for k in STAGES}
        self.frames_in = 0
        self.frames_processed = 0
        self.frames_skipped = 0      # bad input / no intrinsics / model error
        self.frames_waiting = 0      # skipped while waiting for CameraInfo
        self.frames_idle = 0         # arrived while no output had a subscriber
        self.inferences = 0
        self.domain: Optional[str] = None
        self.domain_confidence: Optional[float] = None
        self.focal_px: Optional[float] = None      # of the output image
        self.last_size: Optional[tuple] = None
        self.scale = None                          # pipeline.scale.ScaleInfo of the newest frame
        self.domain_switches = 0
        self.extras: Dict[str, object] = {}        # the model's scalar extras (Marigold: scale, shift, ...)
        self.low_confidence: Optional[float] = None  # fraction of valid pixels below min_confidence

    def record(self, res, t: Dict[str, float], cpu_s: Optional[float], publish_s: float, latency_s: float) -> None:
        """One processed frame: ``t`` has perf_counter stamps start/decoded/processed/published."""
        self.frames_processed += 1
        self.inferences += 1
        self.output_rate.tick()
        tm = res.timings
        self.domain, self.domain_confidence = res.domain, res.domain_confidence
        self.focal_px, self.last_size = res.camera.fx, (res.camera.width, res.camera.height)
        self.scale, self.domain_switches, self.extras = res.scale, res.domain_switches, res.extras
        self.low_confidence = res.low_confidence_fraction()
        self.inference_ms.add(tm["inference"] * 1e3)
        self.stage_ms["decode"].add((t["decoded"] - t["start"]) * 1e3)
        self.stage_ms["intrinsics"].add(tm["intrinsics"] * 1e3)
        self.stage_ms["publish"].add(publish_s * 1e3)
        self.stage_ms["postprocess"].add((t["published"] - t["processed"] - publish_s) * 1e3)
        # overhead: everything but the networks (the focal estimator is a network too)
        total = t["published"] - t["start"]
        self.overhead_ms.add((total - tm["inference"] - tm["estimator"]) * 1e3)
        if cpu_s is not None:
            self.overhead_cpu_ms.add(cpu_s * 1e3)
        self.latency_ms.add(latency_s * 1e3)

    def values(self, dropped: int) -> List[tuple]:
        vals: List[tuple] = [
            ("input_rate_hz", self.input_rate.rate()),
            ("output_rate_hz", self.output_rate.rate()),
            ("frames_in", self.frames_in),
            ("frames_processed", self.frames_processed),
            ("frames_dropped", dropped),
            ("frames_skipped", self.frames_skipped),
            ("frames_waiting_camera_info", self.frames_waiting),
            ("frames_without_subscribers", self.frames_idle),
        ]
        for name, stats in (("latency_ms", self.latency_ms), ("stamp_age_ms", self.age_ms),
                            ("inference_ms", self.inference_ms), ("overhead_ms", self.overhead_ms),
                            ("overhead_cpu_ms", self.overhead_cpu_ms)):
            s = stats.summary()
            vals += [(f"{name}_{k}", s[k]) for k in ("mean", "p50", "p95", "max") if k in s]
        for stage, stats in self.stage_ms.items():
            s = stats.summary()
            if s:
                vals += [(f"{stage}_ms_mean", s["mean"]), (f"{stage}_ms_p50", s["p50"])]
        return vals
