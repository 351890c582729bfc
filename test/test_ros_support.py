"""Shared helpers for the ROS tests: a tiny real checkpoint and a driver node.

Imported by the test_ros_* modules (pytest puts test/ on sys.path). The
checkpoint is the real "tiny" model preset, saved to a tmp dir and loaded by
the policy node through PolicyRunner.from_checkpoint, so the tests drive the
real model runner and the real ExitController.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

INSTRUCTIONS = ["reach the red goal", "push the puck to the goal", "open the drawer"]


def build_tiny_checkpoint(out_dir: Path, eta: float = 0.0, seed: int = 0) -> Path:
    """Save the "tiny" preset (random weights) + thresholds eta_k = ``eta`` (0: never stop early)."""
    import torch

    from deer_vla.control.thresholds import Thresholds
    from deer_vla.model.checkpoint import save_checkpoint
    from deer_vla.model.policy import MultiExitPolicy
    from deer_vla.model.presets import preset_config
    from deer_vla.model.tokenizer import build_word_tokenizer

    torch.manual_seed(seed)
    model = MultiExitPolicy(preset_config("tiny")).eval()
    save_checkpoint(model, build_word_tokenizer(INSTRUCTIONS), out_dir)
    Thresholds(values=[eta] * (model.num_exits - 1)).save(out_dir / "thresholds.json")
    return out_dir


_CACHE: dict[str, Path] = {}


def tiny_checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny checkpoint per test session (built on first use)."""
    if "tiny" not in _CACHE:
        _CACHE["tiny"] = build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_ckpt"))
    return _CACHE["tiny"]


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
