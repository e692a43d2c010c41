"""A worker thread that processes only the newest item (ROS-free).

``submit`` never blocks: it replaces a frame that is still waiting (the replaced one is counted as
dropped), so a publisher faster than the network cannot grow a queue and latency stays bounded by one
inference plus the one waiting frame.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Optional


class LatestFrameWorker:
    """Runs ``process(item)`` on a daemon thread for the newest submitted item."""

    def __init__(self, process: Callable[[Any], None], on_error: Optional[Callable[[BaseException], None]] = None,
                 name: str = "depth_worker"):
        self._process = process
        self._on_error = on_error
        self._cond = threading.Condition()
        self._pending: Any = None
        self._has_pending = False
        self._stop = False
        self._busy = False
        self.submitted = 0
        self.dropped = 0
        self.processed = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "LatestFrameWorker":
        self._thread.start()
        return self

    def submit(self, item: Any) -> bool:
        """Queue ``item`` as the next one; returns True when it replaced an unprocessed item."""
        with self._cond:
            replaced = self._has_pending
            if replaced:
                self.dropped += 1
            self._pending = item
            self._has_pending = True
            self.submitted += 1
            self._cond.notify()
            return replaced

    def clear(self) -> bool:
        """Discard the waiting item (not counted as dropped); True if there was one."""
        with self._cond:
            had = self._has_pending
            self._pending, self._has_pending = None, False
            return had

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._busy or self._has_pending

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is waiting or running (tests); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not (self._busy or self._has_pending), timeout)

    def stop(self, timeout: float = 5.0) -> bool:
        """Ask the thread to finish after the current item; True if it ended within ``timeout``."""
        with self._cond:
            self._stop = True
            self._pending, self._has_pending = None, False
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._has_pending or self._stop)
                if self._stop:
                    self._busy = False
                    self._cond.notify_all()
                    return
                item, self._pending, self._has_pending = self._pending, None, False
                self._busy = True
            try:
                self._process(item)
            except BaseException as exc:  # the thread must survive anything a frame can do
                if self._on_error is not None:
                    try:
                        self._on_error(exc)
                    except Exception:  # pragma: no cover - logging failed, nothing left to do
                        pass
            finally:
                with self._cond:
                    self.processed += 1
                    self._busy = False
                    self._cond.notify_all()
