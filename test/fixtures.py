"""Shared test helpers (imported by test modules; pytest puts test/ on sys.path).

``build_tiny_checkpoint``: the one builder of a real tiny checkpoint (the
"tiny" model preset, random weights, a word tokenizer), optionally with
thresholds and a measured cost profile, so tests drive the real loader,
PolicyRunner and ExitController. ``conftest.tiny_checkpoint`` is the session's
shared one (thresholds 0: every step runs all exits).

``Driver``: plays camera + instruction publisher and action/record
subscriber around a policy node (real rclpy).
"""
from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parents[1] / "bench"
INSTRUCTIONS = ["reach the red goal", "push the puck to the goal", "open the drawer"]


def build_tiny_checkpoint(out_dir: Path, *, model: Any = None, texts: Sequence[str] = INSTRUCTIONS,
                          eta: float | None = 0.0, profile: bool = False, seed: int = 0, **overrides: Any) -> Path:
    """Save the "tiny" preset with random weights (seeded; config keys in ``overrides`` replaced), or ``model``,
    with a word tokenizer over ``texts``. ``eta``: thresholds eta_k = eta for every exit (0: never stop early;
    None: no thresholds file). ``profile``: measure the cost profile once and save it, so every runner loads
    it instead of re-profiling."""
    from deer_vla.control.thresholds import Thresholds
    from deer_vla.model.checkpoint import save_checkpoint
    from deer_vla.model.checkpoint_dir import CheckpointDir
    from deer_vla.model.presets import save_random_checkpoint
    from deer_vla.model.tokenizer import build_word_tokenizer

    if model is None:
        path = save_random_checkpoint(out_dir, "tiny", texts, seed, **overrides)
    else:
        path = save_checkpoint(model, build_word_tokenizer(list(texts)), out_dir)
    ckpt = CheckpointDir(path)
    num_exits = ckpt.read_config().num_exits
    if eta is not None:
        Thresholds(values=[eta] * (num_exits - 1)).save(ckpt.thresholds_path)
    if profile:
        from deer_vla.model.runner import PolicyRunner

        ckpt.write_profile(PolicyRunner.from_checkpoint(path).model_profile)
    return path


def tiny_demos(root: Path, tasks: Sequence[str] | None = None) -> Path:
    """A tiny demonstration dataset in ``root`` shaped for the "tiny" model preset (its cameras, image size,
    proprioception and action): ``train.synthetic.write_tiny_dataset``, one episode per task of ``tasks``."""
    from deer_vla.model.presets import preset_config
    from deer_vla.train.synthetic import write_tiny_dataset

    cfg = preset_config("tiny")
    action = cfg.action if isinstance(cfg.action, dict) else cfg.action.to_dict()
    more = {"tasks": tuple(tasks)} if tasks else {}
    return write_tiny_dataset(root, tuple(cfg.cameras), int(cfg.image_size), int(cfg.proprio_dim), action, **more)


def tiny_train_overrides(data: Path, out: Path, **extra: object) -> list[str]:
    """`--set` values of a few-step training of the "tiny" preset on ``data`` into ``out`` (``extra`` on top)."""
    base: dict[str, object] = {
        "model_preset": "tiny", "dataset": str(data), "output_dir": str(out), "window": 4, "batch_size": 2,
        "joint.steps": 3, "joint.warmup_steps": 1, "refine.steps": 2, "checkpoint_every": 2, "device": "cpu",
        "num_threads": 1, "log_every": 1, "keep_checkpoints": 5,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def load_bench(name: str) -> ModuleType:
    """A bench script as a module (bench/ on sys.path while it imports ``common``)."""
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(f"{name}_mod", BENCH / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up here
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


def policy_node(executor: Any, checkpoint: Path, **params: Any) -> Any:
    """A PolicyNode on ``checkpoint`` with ``params`` as parameter overrides, added to ``executor``
    (unconfigured: the caller drives its lifecycle)."""
    from rclpy.parameter import Parameter

    from deer_vla.ros.policy_node import PolicyNode

    # event mode unless a test says otherwise: the tests send an observation and wait for its step (lock-step)
    overrides = {"checkpoint_dir": str(checkpoint), "control_mode": "event", **params}
    node = PolicyNode(parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    executor.add_node(node)
    return node


def spy_on_log(node: Any, level: str, monkeypatch: Any) -> list[tuple[str, dict]]:
    """The (message, keyword arguments) of each ``level`` call on ``node``'s logger from now on (the rest pass on)."""
    said: list[tuple[str, dict]] = []
    logger = node.get_logger()

    class Spy:
        def __getattr__(self, name: str) -> Any:
            if name == level:
                return lambda message, **kwargs: said.append((message, kwargs))
            return getattr(logger, name)

    monkeypatch.setattr(node, "get_logger", lambda: Spy())
    return said


def started_policy_node(executor: Any, checkpoint: Path, **params: Any) -> Any:
    """``policy_node``, configured and activated."""
    from rclpy.lifecycle import TransitionCallbackReturn as R

    node = policy_node(executor, checkpoint, **params)
    assert node.trigger_configure() == R.SUCCESS
    assert node.trigger_activate() == R.SUCCESS
    return node


class HeldStep:
    """The node's model step, held: ``started`` is set as a step begins, which then waits for ``release`` (at most
    ``timeout`` s) and runs the real step, or raises ``error``. Install with ``node.stack.controller.step = held``."""

    def __init__(self, node: Any, error: Exception | None = None, timeout: float = 20.0) -> None:
        import threading

        self.real = node.stack.controller.step
        self.started, self.release = threading.Event(), threading.Event()
        self.error, self.timeout = error, timeout

    def __call__(self, obs: Any, **kwargs: Any) -> Any:
        self.started.set()
        self.release.wait(self.timeout)
        if self.error is not None:
            raise self.error
        return self.real(obs, **kwargs)


class Driver:
    """Plays camera + instruction publisher and action/record subscriber around a policy node."""

    def __init__(self, executor: Any, name: str = "test_driver", topics: tuple[str, ...] = (
        "camera/static/image_raw", "camera/wrist/image_raw"), proprio_dim: int = 4) -> None:
        import rclpy
        from geometry_msgs.msg import TwistStamped
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image
        from std_msgs.msg import Float32MultiArray, Float64, String

        from deer_vla.ros.policy_node import INSTRUCTION_QOS

        self.node = rclpy.create_node(name)
        executor.add_node(self.node)
        self.executor = executor
        self.twists: list[Any] = []
        self.grippers: list[Any] = []
        self.actions: list[Any] = []
        self.records: list[Any] = []
        self.node.create_subscription(TwistStamped, "cmd_twist", self.twists.append, 10)
        self.node.create_subscription(Float64, "cmd_gripper", self.grippers.append, 10)
        self.node.create_subscription(Float32MultiArray, "action", self.actions.append, 10)
        self.node.create_subscription(String, "step_record", self.records.append, 100)
        self.instruction_pub = self.node.create_publisher(String, "instruction", INSTRUCTION_QOS)
        self.image_pubs = [self.node.create_publisher(Image, t, qos_profile_sensor_data) for t in topics]
        self.proprio_dim = proprio_dim
        self.proprio_pub = self.node.create_publisher(Float32MultiArray, "proprio", qos_profile_sensor_data)
        self.rng = np.random.default_rng(0)

    def instruct(self, text: str = INSTRUCTIONS[0]) -> None:
        from std_msgs.msg import String

        self.instruction_pub.publish(String(data=text))

    def image(self, age_s: float = 0.0, h: int = 48, w: int = 64) -> Any:
        from rclpy.duration import Duration

        from deer_vla.ros.image_conv import rgb_to_image_msg

        stamp = (self.node.get_clock().now() - Duration(nanoseconds=int(age_s * 1e9))).to_msg()
        return rgb_to_image_msg(self.rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8), stamp)

    def send_pair(self, age_s: float = 0.0, first: Any = None) -> None:
        """Proprioception, then one new image per camera (``first`` replaces camera 1's): one event-driven step."""
        from std_msgs.msg import Float32MultiArray

        if self.proprio_dim:
            values = self.rng.uniform(-1, 1, self.proprio_dim)
            self.proprio_pub.publish(Float32MultiArray(data=[float(v) for v in values]))
        for pub in reversed(self.image_pubs[1:]):
            pub.publish(self.image(age_s))
        self.image_pubs[0].publish(first if first is not None else self.image(age_s))

    def spin(self, seconds: float) -> None:
        import time

        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.01)

    def _received(self) -> int:
        return len(self.twists) + len(self.grippers) + len(self.actions) + len(self.records)

    def settle(self, node: Any, quiet_s: float = 0.5, timeout: float = 20.0) -> bool:
        """Spin until ``node`` runs no step and nothing new has arrived for ``quiet_s``: every image pair sent
        so far has become a step and its outputs have landed, so counts taken now stay exact. Timing alone
        (a fixed spin) is not enough on a loaded machine, where a step can outlast it."""
        import time

        end = time.monotonic() + timeout
        seen, quiet_since = self._received(), time.monotonic()
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.01)
            now = time.monotonic()
            if self._received() != seen or node.health_snapshot().step_running:
                seen, quiet_since = self._received(), now
            elif now - quiet_since >= quiet_s:
                return True
        return False

    def step_once(self, node: Any, first: Any = None, timeout: float = 20.0) -> bool:
        """One event-driven step, deterministically: proprioception, then each camera's image, each sent only
        after ``node`` holds the one before (``first`` replaces camera 1's, sent last), then wait until the step
        has finished and its outputs have landed (see settle). Sent at once, a pair can merge with an earlier
        one on a slow machine, or the executor can hand camera 1's image over before a leftover frame of
        another camera is replaced, and that step is refused as stale."""
        import functools
        import time

        from std_msgs.msg import Float32MultiArray

        end = time.monotonic() + timeout

        def until(predicate: Any) -> bool:
            while not predicate() and time.monotonic() < end:
                self.executor.spin_once(timeout_sec=0.01)
            return bool(predicate())

        steps = node.stats.steps
        if self.proprio_dim:
            values = [float(v) for v in self.rng.uniform(-1, 1, self.proprio_dim)]
            self.proprio_pub.publish(Float32MultiArray(data=values))
            if not until(lambda: node.proprio is not None and np.allclose(node.proprio, values)):
                return False
        def holds(camera: str, msg: Any) -> bool:
            return camera in node.frames and node.frames[camera].msg == msg

        cameras = list(node.stack.cameras)
        for i in reversed(range(len(self.image_pubs))):
            msg = first if i == 0 and first is not None else self.image()
            self.image_pubs[i].publish(msg)
            if i and not until(functools.partial(holds, cameras[i], msg)):
                return False
        stepped = until(lambda: node.stats.steps > steps)
        return stepped and self.settle(node, timeout=max(end - time.monotonic(), 1.0))

    def drive_until(self, predicate: Any, timeout: float = 10.0, age_s: float = 0.0) -> bool:
        """Send image pairs (spinning in between) until ``predicate()``."""
        import time

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            self.send_pair(age_s)
            self.spin(0.05)
        return bool(predicate())


class StallingDisk:
    """Files whose writes block while ``stalled`` is set (an SD card holding a write for seconds), until
    ``release``; then they fail with EIO while ``failing`` is set."""

    def __init__(self) -> None:
        import threading

        self.stalled, self.release, self.failing = threading.Event(), threading.Event(), threading.Event()

    def open(self, path):
        disk = self

        class File:
            def __init__(self, raw) -> None:
                self._raw = raw

            def _wait(self) -> None:
                if disk.stalled.is_set():
                    disk.release.wait(20)
                if disk.failing.is_set():
                    raise OSError(5, "Input/output error")

            def write(self, data):
                self._wait()
                return self._raw.write(data)

            def flush(self) -> None:
                self._wait()
                self._raw.flush()

            def __getattr__(self, name: str):
                return getattr(self._raw, name)

        return File(path.open("wb"))


class SimTimeSource:
    """A simulator under use_sim_time: publishes /clock, two cameras and proprioception stamped with its own
    time, and a latched instruction; ``send`` publishes one set at the current sim time, ``advance`` moves it."""

    def __init__(self, executor: Any, start_s: float = 1000.0, instruction: str = INSTRUCTIONS[0]) -> None:
        import rclpy
        from rclpy.qos import qos_profile_sensor_data
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import Image
        from std_msgs.msg import Float32MultiArray, String

        from deer_vla.ros.policy_node import INSTRUCTION_QOS

        self.node = rclpy.create_node("sim_time_source")
        executor.add_node(self.node)
        self.executor = executor
        self.now_ns = int(start_s * 1e9)
        self.clock = self.node.create_publisher(Clock, "/clock", 10)
        self.cameras = [self.node.create_publisher(Image, f"camera/{c}/image_raw", qos_profile_sensor_data)
                        for c in ("static", "wrist")]
        self.proprio = self.node.create_publisher(Float32MultiArray, "proprio", qos_profile_sensor_data)
        self.rng = np.random.default_rng(0)
        self.node.create_publisher(String, "instruction", INSTRUCTION_QOS).publish(String(data=instruction))

    def stamp(self) -> Any:
        from builtin_interfaces.msg import Time

        return Time(sec=self.now_ns // 10**9, nanosec=self.now_ns % 10**9)

    def tick(self) -> None:
        from rosgraph_msgs.msg import Clock

        self.clock.publish(Clock(clock=self.stamp()))

    def advance(self, seconds: float) -> None:
        """Move sim time (back, for a negative ``seconds``) and publish it."""
        self.now_ns += int(round(seconds * 1e9))
        self.tick()

    def send(self) -> None:
        from std_msgs.msg import Float32MultiArray

        from deer_vla.ros.image_conv import rgb_to_image_msg

        self.tick()
        self.proprio.publish(Float32MultiArray(data=[0.1, 0.2, 0.3, 0.4]))
        for pub in self.cameras:
            pub.publish(rgb_to_image_msg(self.rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8), self.stamp()))

    def run_until(self, predicate: Any, seconds: float = 20.0, step_s: float = 0.05, send: bool = True) -> bool:
        """Every 50 ms of wall time: inputs (``send``) at the sim time, which then moves on ``step_s``."""
        import time

        end = time.monotonic() + seconds
        while not predicate() and time.monotonic() < end:
            if send:
                self.send()
            self.advance(step_s)
            tick_end = time.monotonic() + 0.05  # by the wall clock: a ready timer makes spin_once return at once
            while time.monotonic() < tick_end:
                self.executor.spin_once(timeout_sec=0.01)
        return bool(predicate())
