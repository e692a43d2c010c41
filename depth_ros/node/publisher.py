"""The publishing thread of ``depth_node``: the worker never waits in ``publish()``.

rmw_fastrtps publishes synchronously by default (Kilted): ``publish()`` of a large RELIABLE message
runs in the caller's thread and, when a matched reader has stopped acknowledging (a stalled RViz, a
process stopped with Ctrl-Z, a subscriber that cannot keep up), waits there for room (measured here:
a 9.8 MB cloud 15 ms -> about 100 ms per call with one stalled reader). If the worker published
itself, one bad subscriber would slow every output of every other subscriber.

``OutputPublisher`` takes the finished messages of a frame from the worker (a bounded hand-off of
one frame: a frame whose outputs are still unpublished when the next frame's are ready is replaced
and counted in ``dropped``) and publishes them on its own thread. It also watches acknowledgements
(``all_acked(topic)``, e.g. ``Publisher.wait_for_all_acked(0)``): a topic whose earlier message is
still unacknowledged at every later publish for ``ack_timeout_s`` has a subscriber that stopped
acknowledging; ``problem()`` says so (the node logs it and puts it in /diagnostics).

ROS-free: ``publish(topic, msg)`` and ``all_acked(topic)`` are callables.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from depth_ros.node.diagnostics import RollingStats
from depth_ros.node.worker import LatestFrameWorker

__all__ = ["OutputPublisher"]


class OutputPublisher:
    """Publishes the newest frame's messages on a thread; see the module docstring."""

    def __init__(self, publish: Callable[[str, Any], None], all_acked: Optional[Callable[[str], bool]] = None,
                 ack_timeout_s: float = 3.0, blocked_s: float = 1.0, on_error: Optional[Callable] = None,
                 clock: Callable[[], float] = time.monotonic, name: str = "depth_publisher"):
        self._publish = publish
        self._all_acked = all_acked
        self.ack_timeout_s = float(ack_timeout_s)
        self.blocked_s = float(blocked_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._unacked_since: Dict[str, float] = {}   # topic -> first publish not acknowledged since
        self._last_publish: Dict[str, float] = {}
        self._current: Optional[Tuple[str, float]] = None  # (topic, start) of the publish() running now
        self.frames_published = 0
        self.publish_ms = RollingStats()     # one frame: every publish() call of its outputs
        self.max_call_s = 0.0
        self._worker = LatestFrameWorker(self._run_frame, on_error=on_error, name=name)

    # -- the worker side -------------------------------------------------------------------------------
    def start(self) -> "OutputPublisher":
        self._worker.start()
        return self

    def submit(self, messages: Sequence[Tuple[str, Any]], done: Optional[Callable[[], None]] = None) -> bool:
        """Hand the ``(topic, message)`` pairs of one frame over (never blocks); ``done()`` runs on the
        publishing thread after the last one. True when it replaced a frame that was not yet published."""
        return self._worker.submit((list(messages), done))

    @property
    def dropped(self) -> int:
        """Frames whose outputs were replaced by a newer frame's before they were published."""
        return self._worker.dropped

    def wait_idle(self, timeout: float) -> bool:
        return self._worker.wait_idle(timeout)

    def stop(self, timeout: float = 2.0) -> bool:
        return self._worker.stop(timeout)

    # -- the publishing thread -------------------------------------------------------------------------
    def _run_frame(self, item) -> None:
        messages, done = item
        spent = 0.0
        for topic, msg in messages:
            if self._all_acked is not None:
                self._check_acked(topic)
            t0 = time.perf_counter()
            with self._lock:
                self._current = (topic, self._clock())
            try:
                self._publish(topic, msg)
            finally:
                dt = time.perf_counter() - t0
                spent += dt
                with self._lock:
                    self._current = None
                    self._last_publish[topic] = self._clock()
                    self.max_call_s = max(self.max_call_s, dt)
        self.publish_ms.add(spent * 1e3)
        with self._lock:
            self.frames_published += 1
        if done is not None:
            done()

    def _check_acked(self, topic: str) -> None:
        try:
            acked = bool(self._all_acked(topic))
        except Exception:  # the publisher is being destroyed
            return
        with self._lock:
            if acked:
                self._unacked_since.pop(topic, None)
            elif topic in self._last_publish:
                self._unacked_since.setdefault(topic, self._last_publish[topic])

    # -- health ----------------------------------------------------------------------------------------
    def not_acknowledging(self, now: Optional[float] = None) -> Dict[str, float]:
        """{topic: seconds} of topics whose messages stayed unacknowledged for ``ack_timeout_s`` or more."""
        now = self._clock() if now is None else now
        with self._lock:
            return {t: now - since for t, since in self._unacked_since.items() if now - since >= self.ack_timeout_s}

    def blocked_for(self, now: Optional[float] = None) -> Tuple[Optional[str], float]:
        """(topic, seconds) of the ``publish()`` call running now, (None, 0.0) when none is."""
        now = self._clock() if now is None else now
        with self._lock:
            if self._current is None:
                return None, 0.0
            return self._current[0], now - self._current[1]

    def problem(self, now: Optional[float] = None) -> Optional[str]:
        """One line when subscribers stopped acknowledging or publish() is blocked; None when healthy."""
        now = self._clock() if now is None else now
        parts: List[str] = []
        topic, blocked = self.blocked_for(now)
        if topic is not None and blocked >= self.blocked_s:
            parts.append(f"publish() on '{topic}' has been blocked for {blocked:.1f} s")
        late = self.not_acknowledging(now)
        if late:
            parts.append("subscribers stopped acknowledging " + ", ".join(
                f"'{t}' ({s:.1f} s)" for t, s in sorted(late.items())))
        if not parts:
            return None
        return ("; ".join(parts) + " - a stalled or too slow RELIABLE subscriber; the node goes on (outputs that "
                f"cannot be published in time are replaced by newer ones: {self.dropped} so far)")

    def values(self) -> List[Tuple[str, object]]:
        s = self.publish_ms.summary()
        _, blocked = self.blocked_for()
        return [("frames_published", self.frames_published), ("frames_unpublished", self.dropped),
                ("publish_frame_ms_p50", s.get("p50")), ("publish_frame_ms_max", s.get("max")),
                ("publish_blocked_s", blocked),
                ("topics_not_acknowledging", ",".join(sorted(self.not_acknowledging())))]
