"""Shared pytest fixtures (helpers that are not fixtures live in fixtures.py).

ROS isolation: every pytest run gets its own ROS_DOMAIN_ID and localhost-only
discovery, set before rclpy is imported anywhere, so parallel runs (and other
machines on the network) never see each other's topics: a run holds a lock on
its domain for its lifetime, and the next run takes the next free one (a
domain from the process id alone put two runs on one domain 1 time in 100). rclpy is initialised
once per run and shut down at the end; spinning always has a timeout so that a
lost message fails a test instead of hanging it.
"""
from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROS_DOMAIN_LOCK = pytest.StashKey[int]()
TEST_DOMAINS = range(1, 101)  # ROS 2's usable domains on Linux are 0-101; 0 is every robot's default


def _claim_ros_domain() -> tuple[int, int]:
    """A ROS domain no other pytest run on this machine holds, and the open lock file that holds it for this
    process's lifetime (the lock goes with the process, even a killed one)."""
    first = os.getpid() % len(TEST_DOMAINS)
    for step in range(len(TEST_DOMAINS)):
        domain = TEST_DOMAINS[(first + step) % len(TEST_DOMAINS)]
        try:
            lock = os.open(os.path.join(tempfile.gettempdir(), f"deer_vla_test_ros_domain_{domain}.lock"),
                           os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:  # another user's file, not writable to this one: the next domain
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another run holds it: the next one
            os.close(lock)
            continue
        return domain, lock
    raise RuntimeError(f"every ROS domain in {TEST_DOMAINS} is held by another pytest run on this machine")


def pytest_configure(config: pytest.Config) -> None:
    """Before any test module (and so rclpy) is imported: the run's own domain, localhost-only discovery."""
    domain, lock = _claim_ros_domain()
    config.stash[ROS_DOMAIN_LOCK] = lock  # held open until the run ends
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"


@pytest.fixture
def spare_ros_domain() -> Iterator[int]:
    """A second domain, held by no run (nor by this one's nodes), for a process that must not meet them."""
    domain, lock = _claim_ros_domain()
    try:
        yield domain
    finally:
        os.close(lock)


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
