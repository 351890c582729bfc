"""The rclpy executor the node executables and the one-process bringup spin (rclpy imported lazily)."""
from __future__ import annotations

from typing import Any

EXECUTORS = ("events", "single")


def make_executor(kind: str = "events") -> Any:
    """'events': rclpy's EventsExecutor (C++ event queue: a fraction of the per-message overhead of the
    wait-set executors, measured side by side by bench/bench_node_latency.py); 'single': SingleThreadedExecutor."""
    if kind == "events":
        from rclpy.experimental import EventsExecutor

        return EventsExecutor()
    if kind == "single":
        from rclpy.executors import SingleThreadedExecutor

        return SingleThreadedExecutor()
    raise ValueError(f"unknown executor {kind!r}; choose one of {', '.join(EXECUTORS)}")
