"""Record the policy node's inputs and outputs per step to MCAP, and read them back.

Per step, in this order and with the same log time: one Image per camera,
the instruction, the proprioception (if any), the raw 7-D action and the
step record. A step is complete when its record arrives, so a reader needs
no index and a truncated file loses at most the last step.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deer_vla.core import Observation, StepRecord
from deer_vla.ros.image_conv import image_msg_to_rgb
from deer_vla.ros.mcap_io import McapLog, read_messages

PREFIX = "/deer_vla/policy"
INSTRUCTION = f"{PREFIX}/input/instruction"
PROPRIO = f"{PREFIX}/input/proprio"
ACTION = f"{PREFIX}/output/action"
RECORD = f"{PREFIX}/output/record"


def image_topic(camera: str) -> str:
    return f"{PREFIX}/input/{camera}/image"


class PolicyRecorder:
    def __init__(self, path: str | Path, cameras: tuple[str, ...]) -> None:
        self.cameras = tuple(cameras)
        self.log = McapLog(path)
        self.steps = 0

    def write_step(
        self,
        frames: Mapping[str, Any],  # camera -> object with .msg (sensor_msgs/Image)
        instruction: str,
        proprio: np.ndarray | None,
        action7: np.ndarray,
        record_msg: Any,  # std_msgs/String with the StepRecord JSON
        stamp_ns: int,
    ) -> None:
        for cam in self.cameras:
            self.log.write(image_topic(cam), "sensor_msgs/msg/Image", frames[cam].msg, stamp_ns)
        self.log.write(INSTRUCTION, "std_msgs/msg/String", {"data": instruction}, stamp_ns)
        if proprio is not None:
            self.log.write(PROPRIO, "std_msgs/msg/Float32MultiArray",
                           {"layout": {"dim": [], "data_offset": 0}, "data": [float(v) for v in proprio]}, stamp_ns)
        self.log.write(ACTION, "std_msgs/msg/Float32MultiArray",
                       {"layout": {"dim": [], "data_offset": 0}, "data": [float(v) for v in action7]}, stamp_ns)
        self.log.write(RECORD, "std_msgs/msg/String", record_msg, stamp_ns)
        self.steps += 1

    def close(self) -> None:
        self.log.close()


@dataclass
class RecordedStep:
    images: dict[str, np.ndarray]
    instruction: str
    proprio: np.ndarray | None
    action7: np.ndarray
    record: StepRecord
    stamp_ns: int

    def observation(self, cameras: tuple[str, ...] | list[str]) -> Observation:
        """What the policy saw at this step, for the given camera order."""
        return Observation(images={c: self.images[c] for c in cameras}, instruction=self.instruction,
                           proprio=self.proprio, stamp_ns=self.stamp_ns)


def check_cameras(steps: list[RecordedStep], cameras: tuple[str, ...] | list[str], path: str | Path) -> None:
    missing = [c for c in cameras if c not in steps[0].images]
    if missing:
        have = sorted(steps[0].images)
        raise ValueError(f"recording {path} lacks camera(s) {missing} the policy needs; it has {have}")


def recorded_episodes(path: str | Path, cameras: tuple[str, ...] | list[str]) -> list[list[Observation]]:
    """The recording's observations, split into its episodes (a new instruction starts one)."""
    steps = read_recording(path)
    if not steps:
        raise ValueError(f"recording {path} holds no complete policy steps")
    check_cameras(steps, cameras, path)
    episodes: list[list[Observation]] = []
    current = None
    for s in steps:
        if s.record.episode != current or not episodes:
            episodes.append([])
            current = s.record.episode
        episodes[-1].append(s.observation(cameras))
    return episodes


def read_recording(path: str | Path) -> list[RecordedStep]:
    steps: list[RecordedStep] = []
    images: dict[str, np.ndarray] = {}
    instruction, proprio, action = "", None, np.zeros(0)
    image_prefix, image_suffix = f"{PREFIX}/input/", "/image"
    for m in read_messages(path):
        if m.topic.startswith(image_prefix) and m.topic.endswith(image_suffix):
            images[m.topic[len(image_prefix): -len(image_suffix)]] = image_msg_to_rgb(m.message)
        elif m.topic == INSTRUCTION:
            instruction = m.message.data
        elif m.topic == PROPRIO:
            proprio = np.asarray(m.message.data, dtype=np.float32)
        elif m.topic == ACTION:
            action = np.asarray(m.message.data, dtype=np.float64)
        elif m.topic == RECORD:
            steps.append(RecordedStep(dict(images), instruction, proprio, action, StepRecord.from_json(m.message.data),
                                      m.log_time_ns))
            images, proprio = {}, None
    return steps
