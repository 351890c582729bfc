"""The `main` of every node executable: init rclpy, spin, shut down cleanly on Ctrl-C."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TypeVar

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.utilities import remove_ros_args

from deer_vla.ros.executors import EXECUTORS, make_executor

N = TypeVar("N", bound=Node)


def run_node(make_node: Callable[[], N], argv: list[str] | None = None,
             until: Callable[[N], bool] | None = None, on_done: Callable[[N], None] | None = None) -> int:
    """Spin ``make_node()`` until shutdown, or until ``until(node)`` holds; then ``on_done(node)``.

    ``--executor events|single`` (outside ``--ros-args``) picks the rclpy executor; events by default."""

    args = sys.argv if argv is None else argv
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--executor", choices=EXECUTORS, default="events")
    known, _ = parser.parse_known_args(remove_ros_args(args)[1:])
    rclpy.init(args=args)
    executor = make_executor(known.executor)
    node = make_node()
    executor.add_node(node)
    try:
        # spin_once in a loop, not spin(): the EventsExecutor's spin() does not return when SIGINT shuts
        # the context down (rclpy jazzy), which would leave a Ctrl-C'd node hanging
        while rclpy.ok() and (until is None or not until(node)):
            executor.spin_once(timeout_sec=0.1)
        if on_done is not None:
            on_done(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.remove_node(node)
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
