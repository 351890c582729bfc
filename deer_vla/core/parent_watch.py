"""Worker processes end with their parent.

A spawn worker blocks on its job queue; when the parent dies without
cleaning up (SIGKILL, or SIGTERM, which skips Python's exit handlers) the
worker is re-parented and waits forever, holding its simulators (gigabytes
for MT50). A daemon thread in the worker polls its parent pid and ends the
process once the parent has gone.
"""
from __future__ import annotations

import os
import threading
import time


def exit_with_parent(poll_s: float = 1.0, exit_code: int = 1) -> threading.Thread:
    """Start a daemon thread that ends this process (``os._exit``) once its parent process has gone."""
    if not poll_s > 0:
        raise ValueError(f"poll_s must be > 0, got {poll_s!r}")
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(exit_code)  # no cleanup: the parent that would collect our results is gone

    thread = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    thread.start()
    return thread
