"""The step worker thread (deer_vla/ros/worker.py), without rclpy: what a failed step does to it."""
from __future__ import annotations

import threading

from deer_vla.ros.worker import StepWorker


def test_a_step_that_raises_systemexit_is_reported_and_the_thread_steps_on():
    """A library's SystemExit in a step ended the worker thread (the node stayed active and never stepped again);
    it goes to on_error like any exception, and the next item is stepped."""
    errors: list[BaseException] = []
    done = threading.Event()

    def step(item: int) -> None:
        if item == 1:
            raise SystemExit(3)
        done.set()

    worker: StepWorker[int] = StepWorker(step, errors.append, name="test_step")
    try:
        worker.submit(1)
        for _ in range(200):
            if errors:
                break
            threading.Event().wait(0.01)
        assert len(errors) == 1 and isinstance(errors[0], SystemExit) and worker.alive
        worker.submit(2)
        assert done.wait(2.0) and worker.alive
    finally:
        assert worker.stop()
