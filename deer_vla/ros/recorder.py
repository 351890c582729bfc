"""Record the policy node's inputs and outputs per step to MCAP (read back by ``deer_vla.data.recording``).

Per step, in this order and with the same log time: one Image per camera,
the instruction, the proprioception (if any), the raw 7-D action and the
step record. A step is complete when its record arrives, so a reader needs
no index and a truncated file loses at most the last step. A file already
at the path (an earlier run's) is renamed to ``<stem>.<n>.mcap``, not overwritten.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deer_vla.data.mcap_io import McapLog
from deer_vla.data.recording import ACTION, INSTRUCTION, PROPRIO, RECORD, image_topic


class PolicyRecorder:
    def __init__(self, path: str | Path, cameras: tuple[str, ...]) -> None:
        self.cameras = tuple(cameras)
        # record_path is a fixed name in a parameter file: a restart (or cleanup + configure) must not truncate
        # the recording already there, least of all the one a crash left behind
        self.moved_aside = _move_aside(Path(path))
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


def _move_aside(path: Path) -> Path | None:
    """Rename an existing ``path`` to the first free ``<stem>.<n><suffix>`` (n = 1, 2, ...); -> the new name."""
    if not path.exists():
        return None
    for n in range(1, 10_000):
        aside = path.with_name(f"{path.stem}.{n}{path.suffix}")
        if not aside.exists():
            path.rename(aside)
            return aside
    raise FileExistsError(f"{path} and 10000 earlier recordings beside it exist")
