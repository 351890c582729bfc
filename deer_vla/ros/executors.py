"""The rclpy executor the node executables and the one-process bringup spin (rclpy imported lazily)."""
from __future__ import annotations

from typing import Any

EXECUTORS = ("events", "single")


def make_executor(kind: str = "events") -> Any:
    """'events': rclpy's EventsExecutor (C++ event queue: a fraction of the per-message overhead of the
    wait-set executors, measured side by side by bench/bench_node_latency.py); 'single': SingleThreadedExecutor.

    The EventsExecutor reached Jazzy in rclpy 7.1.4: on an older rclpy 'events' falls back to the
    SingleThreadedExecutor with a warning, rather than every node dying at start."""
    if kind not in EXECUTORS:
        raise ValueError(f"unknown executor {kind!r}; choose one of {', '.join(EXECUTORS)}")
    if kind == "events":
        try:
            from rclpy.experimental import EventsExecutor
        except ImportError as exc:
            from rclpy.logging import get_logger

            get_logger("deer_vla").warning(
                f"rclpy's EventsExecutor is not available ({exc}; it needs rclpy >= 7.1.4 on Jazzy): "
                "spinning the SingleThreadedExecutor instead (same behaviour, more overhead per message)")
        else:
            return EventsExecutor()
    from rclpy.executors import SingleThreadedExecutor

    return SingleThreadedExecutor()
