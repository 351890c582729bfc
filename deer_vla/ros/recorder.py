"""Record the policy node's inputs and outputs per step to MCAP (read back by ``deer_vla.data.recording``).

Per step, in this order and with the same log time: one Image per camera (a
CompressedImage for a compressed camera, as it came),
the instruction, the proprioception (if any), the raw 7-D action and the
step record. A step is complete when its record arrives, so a reader needs
no index and a truncated file loses at most the last step. The recording is
split into parts (``<stem>_1.mcap``, ...) by ``split``, only between steps. A
recording already at the path (an earlier run's) is renamed, with its parts,
to ``<stem>.<n>.mcap`` (``<stem>.<n>_1.mcap``, ...), not overwritten.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deer_vla.data.mcap_io import DEFAULT_SPLIT, McapLog, SplitLimits, numbered_parts, part_path
from deer_vla.data.recording import ACTION, INSTRUCTION, POLICY, PROPRIO, RECORD, image_topic, image_type
from deer_vla.ros.background_writer import BackgroundWriter

# steps that may wait for a stalled disk before the next is dropped (about 3 s at 10 Hz; each holds its images)
RECORD_QUEUE_STEPS = 32
CLOSE_WAIT_S = 2.0  # how long closing waits for the queued steps and the footer before leaving it to the thread


class PolicyRecorder:
    def __init__(self, path: str | Path, cameras: tuple[str, ...], split: SplitLimits = DEFAULT_SPLIT,
                 policy: Mapping[str, str] | None = None) -> None:
        """policy: what made the outputs (checkpoint, weights_sha256, thresholds), written once just before the
        first step and with its stamp (``deer_vla.data.recording.recorded_policy`` reads it back): stamped with
        the wall clock, it was 57 years after the steps of a node on ``use_sim_time``, so viewers drew a
        57-year timeline and a tool rewriting the file in log-time order put it after every step, where
        ``recorded_policy`` no longer finds it."""
        self.cameras = tuple(cameras)
        # record_path is a fixed name in a parameter file: a restart (or cleanup + configure) must not truncate
        # the recording already there, least of all the one a crash left behind
        self.moved_aside = _move_aside(Path(path))
        self.log = McapLog(path, split=split)
        self.steps = 0
        self._policy = json.dumps(dict(policy)) if policy is not None else None

    def write_step(
        self,
        images: Mapping[str, Any],  # camera -> sensor_msgs/Image, or CompressedImage (recorded compressed)
        instruction: str,
        proprio: np.ndarray | None,
        action7: np.ndarray,
        record_msg: Any,  # std_msgs/String with the StepRecord JSON
        stamp_ns: int,
    ) -> None:
        if self._policy is not None:  # the steps' clock (sim time under use_sim_time), first in log time
            self.log.write(POLICY, "std_msgs/msg/String", {"data": self._policy}, stamp_ns, may_split=False)
            self._policy = None
        types: dict[str, str] = {}
        for cam in self.cameras:  # checked first: the MCAP writer takes any object, and wrote empty images
            kind = image_type(images[cam])
            if kind is None:
                raise TypeError(f"camera '{cam}': a sensor_msgs/Image or CompressedImage to record, got "
                                f"{type(images[cam]).__name__}")
            types[cam] = kind
        for i, cam in enumerate(self.cameras):  # a new part may begin with a step, never inside one
            self.log.write(image_topic(cam), types[cam], images[cam], stamp_ns, may_split=i == 0)
        self.log.write(INSTRUCTION, "std_msgs/msg/String", {"data": instruction}, stamp_ns, may_split=False)
        if proprio is not None:
            self.log.write(PROPRIO, "std_msgs/msg/Float32MultiArray",
                           {"layout": {"dim": [], "data_offset": 0}, "data": [float(v) for v in proprio]}, stamp_ns,
                           may_split=False)
        self.log.write(ACTION, "std_msgs/msg/Float32MultiArray",
                       {"layout": {"dim": [], "data_offset": 0}, "data": [float(v) for v in action7]}, stamp_ns,
                       may_split=False)
        self.log.write(RECORD, "std_msgs/msg/String", record_msg, stamp_ns, may_split=False)
        self.steps += 1

    def close(self) -> None:
        self.log.close()


class BackgroundRecorder:
    """A PolicyRecorder written from a thread of its own (background_writer): the step that records it never
    waits for the disk. Failures, and steps dropped while the disk is stalled, go to ``on_failure``."""

    def __init__(self, recorder: PolicyRecorder, on_failure: Callable[[str], None]) -> None:
        self.recorder = recorder
        self.log = recorder.log
        self._writer: BackgroundWriter[tuple[Any, ...]] = BackgroundWriter(
            f"recorder:{recorder.log.path.name}", lambda step: recorder.write_step(*step), on_failure,
            RECORD_QUEUE_STEPS, finish=lambda: recorder.close())

    def write_step(self, images: Mapping[str, Any], instruction: str, proprio: np.ndarray | None,
                   action7: np.ndarray, record_msg: Any, stamp_ns: int) -> None:
        """Queue the step (PolicyRecorder.write_step's arguments); never raises, never waits."""
        self._writer.put((images, instruction, proprio, action7, record_msg, stamp_ns))

    @property
    def finished(self) -> bool:
        """Whether the queued steps and the footer are written (or failed): the file is no longer open."""
        return self._writer.finished

    @property
    def waiting(self) -> int:
        """Steps not written yet (queued, and the one being written)."""
        return self._writer.waiting

    @property
    def stalled_s(self) -> float:
        """How long the write in progress has been running (0: none runs)."""
        return self._writer.stalled_s

    def close(self, timeout_s: float = CLOSE_WAIT_S) -> bool:
        """Write the queued steps and the footer, waiting at most ``timeout_s``; False when a stalled disk holds
        them (the thread finishes when the write returns; a kill then loses the queued steps)."""
        return self._writer.close(timeout_s)


def _move_aside(path: Path) -> Path | None:
    """Rename a recording at ``path`` and its parts (``<stem>_<k>``, even with the first file deleted) to the first
    free ``<stem>.<n><suffix>`` (n = 1, 2, ...) and ``<stem>.<n>_<k><suffix>``; -> the new first name."""
    parts = numbered_parts(path)
    if not path.exists() and not parts:
        return None
    for n in range(1, 10_000):
        aside = path.with_name(f"{path.stem}.{n}{path.suffix}")
        if not aside.exists() and not numbered_parts(aside):
            if path.exists():
                path.rename(aside)
            for k, part in parts.items():
                part.rename(part_path(aside, k))
            return aside
    raise FileExistsError(f"{path} and 10000 earlier recordings beside it exist")
