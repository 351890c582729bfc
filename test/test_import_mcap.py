"""Teleoperation recordings in: an MCAP written like rosbag2 (CDR via rclpy serialization) imports time-aligned at
the control rate, split at gaps and instruction changes, with twist velocities as the action."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from robot_data_support import JOINTS, TELEOP_INSTRUCTIONS, teleop_twist, write_teleop_mcap

from deer_vla.data.episodes import DatasetError, EpisodeDataset
from deer_vla.data.import_mcap import McapSources, cli_main, import_mcap

pytest.importorskip("rclpy")

SOURCES = dict(cameras={"static": "/camera/image_raw", "wrist": "/wrist/image/compressed"},
               action="/servo/delta_twist_cmds", instruction_topic="/instruction", gripper="/gripper_cmd",
               proprio="/joint_states")


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_teleop_mcap(tmp_path_factory.mktemp("bag") / "teleop_0.mcap")


def test_ticks_take_the_latest_message_and_episodes_split_at_gaps_and_new_instructions(recording, tmp_path):
    summary = import_mcap(recording, tmp_path / "out", McapSources(**SOURCES), rate_hz=10.0, image_size=24)
    ds = EpisodeDataset(tmp_path / "out")
    meta = ds.meta
    assert meta.control_rate_hz == 10.0 and meta.cameras == ("static", "wrist")
    spec = meta.action_spec
    assert spec["units"] == ["m/s"] * 3 + ["rad/s"] * 3  # a twist is a velocity
    assert meta.proprio_spec["names"] == list(JOINTS)
    episodes = sorted(ds, key=lambda e: e.seed)
    assert [e.instruction for e in episodes] == list(TELEOP_INSTRUCTIONS) and summary["dropped_ticks"] > 0
    starts = [json.loads(line)["start_ns"] for line in (tmp_path / "out/import_map.jsonl").read_text().splitlines()]
    # the first tick waits for every stream: the wrist camera's first frame at 0.203 s
    assert starts[0] == 203_000_000
    first = episodes[0]
    # stream pause at 2.4 s: ticks continue while the latest data is younger than max_age (0.5 s), then the
    # episode ends; the 1-tick stretch between the pause and the new instruction at 3.5 s is too short to keep
    assert first.length == len(np.arange(0.203, 2.35 + 0.5, 0.1))
    scale = np.asarray(spec["scale"])
    for k in range(first.length):
        tick = 0.203 + 0.1 * k
        t_msg = 0.2 + 0.05 * np.floor((tick - 0.201) / 0.05 + 1e-9)  # latest twist at or before the tick
        t_msg = min(t_msg, 2.35)  # nothing arrives in the pause
        lin, ang = teleop_twist(t_msg, TELEOP_INSTRUCTIONS[0])
        np.testing.assert_allclose(first.actions[k, :6], np.clip(np.r_[lin, ang] / scale, -1, 1), atol=1e-5)
        np.testing.assert_allclose(first.proprio[k], [t_msg, -t_msg, 0.5 * t_msg], atol=1e-6)
    assert first.actions[0, 6] == -1.0  # no gripper message yet: open
    second = episodes[1]
    yaw = second.actions[:, spec["axes"].index("yaw")]
    assert np.all(yaw > 0.5)  # turning the valve is mostly yaw, carried as rad/s


def test_array_actions_and_one_instruction(tmp_path):
    import cv2
    from robot_data_support import RosbagLikeWriter
    from sensor_msgs.msg import CompressedImage
    from std_msgs.msg import Float32MultiArray

    w = RosbagLikeWriter(tmp_path / "arm.mcap")
    for k in range(30):
        t = int(k * 1e8)
        ok, png = cv2.imencode(".png", np.full((16, 16, 3), k * 8, np.uint8))
        w.write("/cam", CompressedImage(format="png", data=png.tobytes()), t)
        w.write("/cmd", Float32MultiArray(data=[0.01 * k, 0.5, -0.2, 0.3 if k > 15 else 0.9]), t + 1000)
    w.close()
    with pytest.raises(DatasetError, match="--action-axes"):
        import_mcap(tmp_path / "arm.mcap", tmp_path / "a", McapSources({"static": "/cam"}, "/cmd", instruction="x"),
                    rate_hz=5.0)
    assert cli_main([str(tmp_path / "arm.mcap"), "--out", str(tmp_path / "b"), "--image-topic", "/cam",
                     "--action-topic", "/cmd", "--action-axes", "z,-,yaw,gripper", "--gripper-open", "0.9",
                     "--gripper-closed", "0.3", "--instruction", "stack the cups", "--rate", "5"]) == 0
    ds = EpisodeDataset(tmp_path / "b")
    (ep,) = list(ds)
    assert ds.meta.action_spec["axes"] == ["z", "yaw"] and ds.meta.action_spec["units"] == ["m", "rad"]
    assert ep.instruction == "stack the cups" and ep.proprio is None and ds.meta.proprio_dim == 0
    # raw 0.9 = open -> -1, raw 0.3 = closed -> +1
    np.testing.assert_allclose(ep.actions[:, -1], np.where(np.arange(ep.length) * 2 > 15, 1.0, -1.0), atol=1e-6)
    np.testing.assert_allclose(ep.images["static"].reshape(ep.length, -1).mean(1), np.arange(ep.length) * 16,
                               atol=1.0)  # 5 Hz ticks take every second 10 Hz frame
