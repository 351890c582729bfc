"""Shared pytest fixtures (helpers that are not fixtures live in fixtures.py).

ROS isolation: every pytest run gets its own ROS_DOMAIN_ID and localhost-only
discovery, set before rclpy is imported anywhere, so parallel runs (and other
machines on the network) never see each other's topics. rclpy is initialised
once per run and shut down at the end; spinning always has a timeout so that a
lost message fails a test instead of hanging it.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("EGL_PLATFORM", "surfaceless")
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny checkpoint per test session (fixtures.build_tiny_checkpoint; thresholds 0). Read-only:
    a test that changes files copies it first."""
    from fixtures import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_ckpt"))


@pytest.fixture(scope="session")
def tiny_cfg() -> object:
    """The "tiny" model preset's config (the training tests' model)."""
    from deer_vla.model.presets import preset_config

    return preset_config("tiny")


@pytest.fixture(scope="session")
def ros_context() -> Iterator[object]:
    import rclpy

    rclpy.init()
    try:
        yield rclpy.get_default_context()
    finally:
        if rclpy.ok():
            rclpy.shutdown()


@pytest.fixture
def executor(ros_context: object) -> Iterator[object]:
    """A single-threaded executor; nodes added to it are destroyed after the test."""
    from rclpy.executors import SingleThreadedExecutor

    ex = SingleThreadedExecutor()
    try:
        yield ex
    finally:
        for node in list(ex.get_nodes()):
            ex.remove_node(node)
            node.destroy_node()
        ex.shutdown(timeout_sec=1.0)


@pytest.fixture
def spin_until() -> Callable[..., bool]:
    """spin_until(executor, predicate, timeout=5.0) -> whether predicate became true."""

    def _spin(ex: object, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            ex.spin_once(timeout_sec=0.02)  # type: ignore[attr-defined]
        return bool(predicate())

    return _spin
