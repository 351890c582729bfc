"""Log writes on a thread of their own, through a bounded queue.

An SD card, a USB stick or an NFS mount can block a write for seconds. Done
where the node steps or answers services, that write held up actuation, the
stale-action stops, ``~/halt`` and lifecycle transitions for as long (a 5 s
stall: no action and a halt answered after 4.5 s). Here the caller only
queues; a full queue (the disk is that far behind) drops the item and says so
through ``on_failure``, as a failed write does. ``stalled_s`` tells how long
the write in progress has been running, for the node's /diagnostics.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

POLL_S = 0.1  # how often an idle writer looks whether it is to close


class BackgroundWriter(Generic[T]):
    def __init__(self, name: str, write: Callable[[T], None], on_failure: Callable[[str], None], depth: int,
                 finish: Callable[[], None] | None = None) -> None:
        """``write(item)`` runs on the thread; an exception it raises is passed to ``on_failure`` as text and
        the next item is written. ``finish()`` runs on the thread after the last item (closing the file)."""
        self._write, self._on_failure, self._finish = write, on_failure, finish
        self._queue: queue.Queue[T] = queue.Queue(maxsize=depth)
        self._started_ns = 0  # monotonic start of the write in progress; 0: none
        self._item_running = False  # that write is an item's (not finish()'s)
        self._closing = threading.Event()
        self._gate = threading.Lock()  # put's check and queueing against close's flag: nothing queued after it
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, item: T) -> bool:
        """Queue ``item``; False (and ``on_failure``) when the queue is full or the writer closed."""
        with self._gate:
            if self._closing.is_set():
                self._on_failure("the log is closed: item dropped")
                return False
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                self._on_failure(f"{self._queue.maxsize} items already wait for the disk (a stalled write?): "
                                 "dropped")
                return False
        return True

    @property
    def finished(self) -> bool:
        """Whether the thread has written everything queued and run ``finish()``."""
        return not self._thread.is_alive()

    @property
    def waiting(self) -> int:
        """Items not written yet: queued, and the one being written (not finish(): no item waits on it)."""
        return self._queue.qsize() + (1 if self._item_running else 0)

    @property
    def stalled_s(self) -> float:
        """How long the write in progress has been running (0 when none runs)."""
        started = self._started_ns
        return (time.monotonic_ns() - started) * 1e-9 if started else 0.0

    def drain(self, timeout_s: float) -> bool:
        """Wait (at most ``timeout_s``) until every item queued so far is written; False on a stalled disk."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.002)
        return not self._queue.unfinished_tasks

    def close(self, timeout_s: float) -> bool:
        """Write what is queued, then ``finish()``; wait at most ``timeout_s``. False when the thread has not
        finished by then (a stalled disk): it finishes on its own when the write returns."""
        with self._gate:
            self._closing.set()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=POLL_S)
            except queue.Empty:
                if self._closing.is_set():  # only once the queue is empty: what was queued is written
                    break
                continue
            self._timed(self._write, item)
            self._queue.task_done()
        while not self._queue.empty():  # queued between the last get and the closing flag: nothing comes after it
            self._timed(self._write, self._queue.get_nowait())
            self._queue.task_done()
        if self._finish is not None:
            self._timed(self._finish)

    def _timed(self, call: Callable[..., None], *args: object) -> None:
        self._started_ns, self._item_running = time.monotonic_ns(), bool(args)
        try:
            call(*args)
        except Exception as exc:  # a full disk, a stamp the log cannot hold: the next item is tried
            self._on_failure(f"{type(exc).__name__}: {exc}")
        finally:
            self._started_ns, self._item_running = 0, False
