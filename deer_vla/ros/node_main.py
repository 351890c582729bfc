"""The `main` of every node executable: init rclpy, spin, shut down cleanly on Ctrl-C."""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

N = TypeVar("N", bound=Node)


def run_node(make_node: Callable[[], N], argv: list[str] | None = None,
             until: Callable[[N], bool] | None = None, on_done: Callable[[N], None] | None = None) -> int:
    """Spin ``make_node()`` until shutdown, or until ``until(node)`` holds; then ``on_done(node)``."""
    rclpy.init(args=argv)
    node = make_node()
    try:
        if until is None:
            rclpy.spin(node)
        else:
            while rclpy.ok() and not until(node):
                rclpy.spin_once(node, timeout_sec=0.1)
        if on_done is not None:
            on_done(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
