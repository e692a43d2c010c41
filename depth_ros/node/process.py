"""Process-level set-up of ``depth_node``: malloc tuning and signal handling (ROS-free)."""
from __future__ import annotations

import os
import signal
import sys
import threading


def tune_malloc() -> bool:
    """Serve large short-lived buffers (clouds, message copies: ~10 MB per 640x480 frame) from the heap.

    glibc hands blocks above its mmap threshold out as fresh ``mmap`` pages and unmaps them on free,
    so every frame paid the page faults of a new 10-30 MB buffer several times (in the cloud, rclpy's
    conversion and the DDS serialization): about 15 ms of a 20 ms per-frame overhead at 640x480.
    Raising the mmap and trim thresholds (and using one malloc arena) keeps those pages mapped and
    reused. Called by ``main`` before any thread starts. glibc/Linux only;
    ``DEPTH_ROS_NO_MALLOPT=1`` turns it off. Returns True when applied.
    """
    if os.environ.get("DEPTH_ROS_NO_MALLOPT", "0") not in ("", "0") or not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
    # one arena: a thread's own arena lives in 64 MB heaps, too small for 30 MB (720p) clouds, which
    # then get fresh mappings again; the main arena grows without that limit.
    mallopt(m_arena_max, 1)
    return bool(mallopt(m_mmap_threshold, 64 << 20)) and bool(mallopt(m_trim_threshold, 256 << 20))


class ShutdownSignals:
    """SIGINT / SIGTERM handling for a node started by ``ros2 launch`` or in a terminal.

    A terminal's Ctrl-C reaches launch and the node together, and launch forwards another SIGINT, so
    the node sees two within milliseconds. The first signal asks for one clean shutdown (``requested``);
    while the node is still starting (loading weights) it also interrupts the start with
    ``KeyboardInterrupt``. Every later signal is absorbed: no ``KeyboardInterrupt`` can fire inside the
    teardown, so the node exits 0 without a traceback, as launch expects ("finished cleanly").
    rclpy's own handlers are not installed (``SignalHandlerOptions.NO``); the spin loop polls
    ``requested`` between short waits.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.starting = True
        self.received = []

    def install(self) -> "ShutdownSignals":
        for sig in self.SIGNALS:
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.received.append(signum)
        first = not self.requested.is_set()
        self.requested.set()
        if first and self.starting:
            raise KeyboardInterrupt
