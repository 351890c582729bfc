"""BackgroundWriter: the policy's recording is written from a thread of its own, so a stalled disk never holds up
a step, the stops or ~/halt; what it queues is written in order and whole before it closes."""
from __future__ import annotations

import threading
import time

from deer_vla.ros.background_writer import BackgroundWriter


def test_every_queued_item_is_written_in_order_before_finish_and_a_failure_does_not_stop_the_rest() -> None:
    written: list[int] = []
    failures: list[str] = []
    finished: list[int] = []

    def write(item: int) -> None:
        time.sleep(0.002)
        if item == 3:
            raise OSError(28, "No space left on device")
        written.append(item)

    writer = BackgroundWriter("test", write, failures.append, depth=100, finish=lambda: finished.append(len(written)))
    assert all(writer.put(i) for i in range(20))
    assert writer.close(timeout_s=10.0)
    assert written == [i for i in range(20) if i != 3]
    assert finished == [19]  # once, after the last item
    assert failures == ["OSError: [Errno 28] No space left on device"]
    assert not writer.put(99) and failures[-1] == "the log is closed: item dropped"


def test_a_stalled_write_drops_what_does_not_fit_says_how_long_it_stalls_and_does_not_hold_up_close() -> None:
    release = threading.Event()
    written: list[int] = []
    failures: list[str] = []

    def write(item: int) -> None:
        if item == 0:
            release.wait(10)  # the disk blocks the first write
        written.append(item)

    writer = BackgroundWriter("test", write, failures.append, depth=3)
    assert writer.put(0)
    deadline = time.monotonic() + 5
    while writer.stalled_s == 0.0 and time.monotonic() < deadline:  # the thread took item 0 and is blocked
        time.sleep(0.005)
    started = time.monotonic()
    assert [writer.put(i) for i in range(1, 6)] == [True, True, True, False, False]  # 3 wait, the rest dropped
    assert time.monotonic() - started < 0.5  # put never waits for the disk
    assert len(failures) == 2 and "dropped" in failures[0]
    time.sleep(0.3)
    assert writer.stalled_s >= 0.3
    started = time.monotonic()
    assert not writer.close(timeout_s=0.2)  # still blocked: close returns, the thread finishes on its own
    assert time.monotonic() - started < 1.0
    release.set()
    deadline = time.monotonic() + 5
    while written != [0, 1, 2, 3] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert written == [0, 1, 2, 3] and writer.stalled_s == 0.0


def test_a_stalled_finish_is_no_waiting_item() -> None:
    """The footer written by finish() on a stalled disk was counted as a waiting step ("1 step(s) waiting")."""
    release = threading.Event()
    writer = BackgroundWriter("test", lambda item: None, lambda what: None, depth=4, finish=lambda: release.wait(10))
    assert writer.put(1) and writer.put(2)
    assert not writer.close(timeout_s=0.5)  # the items are written, the footer blocks
    assert writer.stalled_s > 0.0 and writer.waiting == 0
    release.set()
    deadline = time.monotonic() + 5
    while not writer.finished and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.finished
