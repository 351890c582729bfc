"""One worker thread fed by a one-slot "latest observation" buffer (no rclpy, so it is tested directly).

A control loop wants the freshest frame, not a backlog: ``submit`` replaces
an observation that has not started yet (it is dropped, never queued), and
the worker runs at most one step at a time. The executor thread only hands
observations over, so services, parameters and timers answer while a step
runs.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """Holds at most one item; a new one replaces the old."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False

    def put(self, item: T) -> bool:
        """-> True when an item that was still waiting got replaced (dropped)."""
        with self._cond:
            dropped = self._item is not None
            self._item = item
            self._cond.notify()
            return dropped

    def take(self) -> T | None:
        """Block until an item arrives (-> it) or the slot closes (-> None)."""
        with self._cond:
            while self._item is None and not self._closed:
                self._cond.wait()
            item, self._item = self._item, None
            return None if self._closed else item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._item = None
            self._cond.notify_all()


class StepWorker(Generic[T]):
    """Runs ``step(item)`` in one daemon thread for the newest submitted item."""

    def __init__(self, step: Callable[[T], None], on_error: Callable[[BaseException], None],
                 name: str = "deer_vla_step") -> None:
        self._step = step
        self._on_error = on_error
        self._slot: LatestSlot[T] = LatestSlot()
        self.dropped = 0  # items replaced before they started
        self.busy = threading.Event()  # set while a step runs
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> bool:
        """Hand over an item; -> True when it replaced one that had not started (that one is dropped)."""
        dropped = self._slot.put(item)
        self.dropped += int(dropped)
        return dropped

    def _loop(self) -> None:
        while True:
            item = self._slot.take()
            if item is None:
                return
            self.busy.set()
            try:
                self._step(item)
            # a failed step must not end the thread: not even a SystemExit a library raises (the thread died with
            # a traceback on stderr, and the node stayed active with no step ever again, blaming its cameras);
            # a KeyboardInterrupt goes on (a caller stepping on the main thread, bench_soak's, is being stopped)
            except (Exception, SystemExit) as exc:
                self._on_error(exc)
            finally:
                self.busy.clear()

    def stop(self, timeout: float = 10.0) -> bool:
        """Drop what waits, let the running step finish (up to ``timeout``); -> whether the thread ended."""
        self._slot.close()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
