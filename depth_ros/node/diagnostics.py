"""Rates, latency statistics, throttled problem logging (ROS-free) and the /diagnostics message."""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Deque, Dict, List, Optional, Tuple

import numpy as np

from depth_ros.pipeline.intrinsics import problem_key

__all__ = ["RateMeter", "RollingStats", "ProblemLog", "problem_key", "diagnostic_array", "values_dict", "fmt"]


class RateMeter:
    """Events per second over a sliding time window."""

    def __init__(self, window_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.window_s = window_s
        self._clock = clock
        self._times: Deque[float] = deque()
        self._lock = threading.Lock()
        self.count = 0

    def tick(self, now: Optional[float] = None) -> None:
        now = self._clock() if now is None else now
        with self._lock:
            self.count += 1
            self._times.append(now)
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()

    def rate(self, now: Optional[float] = None) -> float:
        now = self._clock() if now is None else now
        with self._lock:
            self._trim(now)
            n = len(self._times)
            if n < 2:
                return 0.0
            span = max(now - self._times[0], self._times[-1] - self._times[0])
            return (n - 1) / span if span > 0 else 0.0


class RollingStats:
    """Keeps the last ``size`` samples; mean / percentiles on demand."""

    def __init__(self, size: int = 200):
        self._values: Deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()
        self.last: Optional[float] = None

    def add(self, value: float) -> None:
        with self._lock:
            self._values.append(float(value))
            self.last = float(value)

    def __len__(self) -> int:
        return len(self._values)

    def summary(self) -> Dict[str, float]:
        with self._lock:
            if not self._values:
                return {}
            arr = np.fromiter(self._values, dtype=np.float64)
        return {"mean": float(arr.mean()), "p50": float(np.percentile(arr, 50)),
                "p95": float(np.percentile(arr, 95)), "max": float(arr.max())}




class ProblemLog:
    """Throttles log lines per problem key, so that different problems are each reported promptly.

    ``report(key, text)`` returns the line to log (with a count of suppressed repeats) or None while
    the same key is throttled. Counts per key are kept for diagnostics.
    """

    def __init__(self, period_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.period_s = period_s
        self._clock = clock
        self._last: Dict[str, float] = {}
        self._suppressed: Dict[str, int] = {}
        self.counts: Dict[str, int] = {}
        self.last_text: Optional[str] = None
        self.last_time: Optional[float] = None
        self._lock = threading.Lock()

    def report(self, key: str, text: str) -> Optional[str]:
        now = self._clock()
        with self._lock:
            self.counts[key] = self.counts.get(key, 0) + 1
            self.last_text, self.last_time = text, now
            last = self._last.get(key)
            if last is not None and now - last < self.period_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return None
            self._last[key] = now
            n = self._suppressed.pop(key, 0)
        return text + (f" ({n} more like this in the last {self.period_s:g} s)" if n else "")

    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def recent(self, within_s: float) -> Optional[str]:
        with self._lock:
            if self.last_time is not None and self._clock() - self.last_time <= within_s:
                return self.last_text
        return None


def fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1e6 else f"{value:.6g}"
    return str(value)


# Diagnostic levels (diagnostic_msgs/DiagnosticStatus constants; kept here to stay ROS-free).
OK, WARN, ERROR, STALE = 0, 1, 2, 3


class Reporter:
    """The node's log lines: one call site per severity (rclpy refuses a severity change at one call
    site), throttled problems (frames skipped, counted in ``stats``), warnings said once, throttled notes."""

    def __init__(self, logger, stats, period_s: float = 5.0):
        self.logger, self.stats = logger, stats
        self.problems = ProblemLog(period_s=period_s)
        self.notes = ProblemLog(period_s=period_s)   # news: head switches, scale restarts
        self._once: set = set()

    def line(self, level: str, text: str) -> None:
        if level == "info":
            self.logger.info(text)
        elif level == "warn":
            self.logger.warning(text)
        else:
            self.logger.error(text)

    def problem(self, key: str, text: str) -> None:
        """A skipped frame: counted, logged as an error at most once per key and period."""
        self.stats.frames_skipped += 1
        line = self.problems.report(key, text)
        if line:
            self.logger.error(line)

    def once(self, key: str, text: str) -> None:
        if key not in self._once:
            self._once.add(key)
            self.logger.warning(text)

    def note(self, key: str, text: str) -> None:
        line = self.notes.report(key, text)
        if line:
            self.logger.info(line)

    def traceback_once(self, key: str, exc: BaseException) -> None:
        import traceback

        self.once("tb:" + key, "".join(traceback.format_exception(exc)).rstrip())


def node_status(stats, intrinsics: Dict[str, object], has_subscribers: bool, recent_problem: Optional[str],
                image_topic: str) -> Tuple[int, str]:
    """(level, message) of the node's diagnostic status."""
    level, message = OK, "running"
    if not has_subscribers:
        message = "idle: no subscribers"
    elif stats.frames_processed == 0 and stats.frames_in == 0:
        message = f"no images on '{image_topic}' yet"
    if intrinsics["source"] == "fallback_hfov":
        level, message = WARN, f"intrinsics from fallback_hfov_deg: {intrinsics['reason']}"
    elif stats.frames_waiting and intrinsics["source"] == "none":
        level, message = WARN, "waiting for CameraInfo"
    if recent_problem:
        level, message = ERROR, recent_problem
    return level, message


def diagnostic_array(stamp, name: str, hardware_id: str, level: int, message: str,
                     values: List[Tuple[str, object]]):
    """Build a ``diagnostic_msgs/DiagnosticArray`` with one status (imports the messages lazily)."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    status = DiagnosticStatus()
    status.level = bytes([level])
    status.name = name
    status.message = message
    status.hardware_id = hardware_id
    status.values = [KeyValue(key=k, value=fmt(v)) for k, v in values]
    arr = DiagnosticArray()
    arr.header.stamp = stamp
    arr.status = [status]
    return arr


def values_dict(array_msg) -> Dict[str, str]:
    """Key -> value of the first status of a DiagnosticArray (tests, bench)."""
    if not array_msg.status:
        return {}
    return {kv.key: kv.value for kv in array_msg.status[0].values}
