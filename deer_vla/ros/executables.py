"""The entry points of the node executables (console scripts in <prefix>/bin and the launchers in
<prefix>/lib/deer_vla that `ros2 launch` and `ros2 run` start).

Each imports its node's module only when run: a Ctrl-C during that import (rclpy and torch, seconds on a
robot's CPU) printed a KeyboardInterrupt traceback through torch; now one line and status 130. Their standard
output may close under them (``core.console``).
"""
from __future__ import annotations

import importlib
import sys

from deer_vla.core.console import stdout_may_close

MODULES = {
    "policy_node": "deer_vla.ros.policy_node",
    "monitor_node": "deer_vla.ros.monitor_node",
    "sim_node": "deer_vla.ros.sim_node",
    "bringup": "deer_vla.ros.bringup",
}


def run(name: str) -> int:
    """Run executable ``name`` (a key of MODULES): its module's ``main()``, the exit status."""
    stdout_may_close()
    try:  # main() too: the bringup checks its policy (loads the model) before its handlers are installed
        module = importlib.import_module(MODULES[name])
        return int(module.main() or 0)
    except KeyboardInterrupt:
        print(f"{name}: interrupted while starting", file=sys.stderr)
        return 130


def policy_node() -> int:
    return run("policy_node")


def monitor_node() -> int:
    return run("monitor_node")


def sim_node() -> int:
    return run("sim_node")


def bringup() -> int:
    return run("bringup")
