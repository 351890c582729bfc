"""Processes that end with their parent.

A spawn worker blocks on its job queue; when the parent dies without
cleaning up (SIGKILL, or SIGTERM, which skips Python's exit handlers) the
worker is re-parented and waits forever, holding its simulators (gigabytes
for MT50). A node started by `ros2 launch` that is SIGKILLed goes on
running, a policy actuating with nobody to stop it. A daemon thread polls
the parent pid and acts once the parent has gone.
"""
from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable


def watch_parent(on_gone: Callable[[], None], parent: int | None = None, poll_s: float = 1.0) -> threading.Thread:
    """Start a daemon thread that calls ``on_gone()`` once ``parent`` (a pid; None: this process's parent now) is no
    longer this process's parent: it died and the process was re-parented. At once when it already is not (it died
    before this call: then ``os.getppid()`` is already another's, the init process's or a subreaper's)."""
    if not poll_s > 0:
        raise ValueError(f"poll_s must be > 0, got {poll_s!r}")
    expected = os.getppid() if parent is None else parent

    def watch() -> None:
        while os.getppid() == expected:
            time.sleep(poll_s)
        on_gone()

    thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
    thread.start()
    return thread


def exit_with_parent(poll_s: float = 1.0, exit_code: int = 1) -> threading.Thread:
    """Start a daemon thread that ends this process (``os._exit``) once its parent process has gone. The parent is
    multiprocessing's where there is one: a spawn worker whose parent was killed while it started (before this
    call) was left behind, blocked on its job queue, when the parent was taken from ``os.getppid()`` here."""
    known = multiprocessing.parent_process()
    # no cleanup on the way out: the parent that would collect our results is gone
    return watch_parent(lambda: os._exit(exit_code), known.pid if known is not None else None, poll_s)
