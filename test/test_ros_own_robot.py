"""Own robot data end to end: a LeRobot v3 dataset and a teleoperation MCAP, each imported, trained a few steps and
run through the policy node (real rclpy): the rotation axes reach cmd_twist.angular in the checkpoint's units, in
the frame the teleoperation's twists were recorded in, and proprioception of the wrong length is refused."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fixtures import Driver
from robot_data_support import train_tiny, write_teleop_mcap

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, int]]:
    from deer_vla.data.import_lerobot import import_lerobot
    from deer_vla.data.import_mcap import McapSources, import_mcap
    from deer_vla.data.lerobot_writer import write_demo_dataset

    root = tmp_path_factory.mktemp("own_robot")
    write_demo_dataset(root / "lerobot", n_episodes=4, steps=10)
    import_lerobot(root / "lerobot", root / "from_lerobot", gripper_open=0, gripper_closed=1, image_size=32,
                   log=lambda *_: None)
    write_teleop_mcap(root / "teleop.mcap")
    import_mcap(root / "teleop.mcap", root / "from_mcap",
                McapSources({"static": "/camera/image_raw", "wrist": "/wrist/image/compressed"},
                            "/servo/delta_twist_cmds", instruction_topic="/instruction", gripper="/gripper_cmd",
                            proprio="/joint_states"), rate_hz=10.0, image_size=32)
    return {"lerobot": (train_tiny(root / "from_lerobot", root / "ckpt_lerobot"), 6),
            "mcap": (train_tiny(root / "from_mcap", root / "ckpt_mcap"), 3)}


@pytest.mark.parametrize("source, units, frame", [("lerobot", "rad", "base_link"), ("mcap", "rad/s", "tool0")])
def test_imported_policy_drives_the_twist_with_rotation(executor, trained, source, units, frame):
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from rclpy.parameter import Parameter

    from deer_vla.ros.actions import to_robot_command
    from deer_vla.ros.policy_node import PolicyNode

    checkpoint, proprio_dim = trained[source]
    node = PolicyNode(parameter_overrides=[Parameter(k, value=v) for k, v in {
        "checkpoint_dir": str(checkpoint), "enabled": True, "rate_hz": 10.0, "control_mode": "event"}.items()])
    executor.add_node(node)
    assert node.trigger_configure() == R.SUCCESS and node.trigger_activate() == R.SUCCESS
    spec = node.stack.action_spec
    assert spec.axes == ("x", "y", "z", "roll", "pitch", "yaw") and spec.units[3:] == (units,) * 3
    assert node.stack.proprio_spec is not None and node.stack.proprio_spec.dim == proprio_dim

    drv = Driver(executor, proprio_dim=proprio_dim)
    drv.instruct("turn the blue knob" if source == "lerobot" else "turn the valve")
    assert drv.drive_until(lambda: len(drv.twists) >= 3 and len(drv.actions) >= 3)
    action7 = np.asarray(drv.actions[-1].data, dtype=np.float64)  # the published standard 7-D action
    expected = to_robot_command(spec.from_standard7(action7), spec, period_s=0.1)
    assert drv.twists[-1].header.frame_id == frame  # the recording's, carried by the checkpoint; LeRobot has none
    twist = drv.twists[-1].twist
    angular = np.array([twist.angular.x, twist.angular.y, twist.angular.z])
    np.testing.assert_allclose(angular, expected.angular, rtol=1e-5, atol=1e-9)
    assert np.abs(angular).max() > 0  # the rotation axes are actuated, not dropped
    np.testing.assert_allclose([twist.linear.x, twist.linear.y, twist.linear.z], expected.linear, rtol=1e-5,
                               atol=1e-9)

    # proprioception of another length is refused and never stepped on (event mode waits for a valid one)
    steps = node.stats.steps
    drv.proprio_dim = proprio_dim + 1
    drv.drive_until(lambda: node.stats.rejected_proprio >= 3, timeout=3.0)
    assert node.stats.rejected_proprio >= 3 and node.stats.steps == steps


def test_the_gripper_values_the_demonstrations_recorded_are_kept_and_said(executor, trained, monkeypatch):
    """The importer maps the recorded gripper command (here 0 open .. 1 closed) onto -1..+1 and the checkpoint
    kept nothing of it: a guide-follower wired cmd_gripper to a finger-width controller and sent it -0.67. The
    training record keeps the raw values, and configure says how to send them."""
    import json

    from rclpy.lifecycle import TransitionCallbackReturn as R
    from rclpy.parameter import Parameter

    from deer_vla.ros.policy_node import PolicyNode

    checkpoint, _ = trained["lerobot"]
    recorded = json.loads((checkpoint / "extra.json").read_text())["training"]["gripper"]
    assert recorded["raw_open"] == 0.0 and recorded["raw_closed"] == 1.0
    for output, said in (("unit", 1), ("positions", 0)):
        params = {"checkpoint_dir": str(checkpoint), "gripper.output": output}
        if output == "positions":
            params.update({"gripper.open_positions": [0.0], "gripper.closed_positions": [1.0]})
        node = PolicyNode(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        warnings: list[str] = []
        monkeypatch.setattr(node.get_logger(), "warn", lambda m, said=warnings, **_: said.append(m))
        executor.add_node(node)
        assert node.trigger_configure() == R.SUCCESS
        told = [m for m in warnings if "recorded the gripper command as 0 open .. 1 closed" in m]
        assert len(told) == said, warnings
        if said:
            assert "gripper.output: positions, gripper.open_positions: [0], gripper.closed_positions: [1]" in told[0]
        executor.remove_node(node)
        node.destroy_node()
