"""The policy node's MCAP recordings read back offline (numpy and mcap only, no ROS).

Per step, in this order and with the same log time: one Image (or CompressedImage) per camera,
the instruction, the proprioception (if any), the raw 7-D action and the
step record (``deer_vla.ros.recorder.PolicyRecorder`` writes them). A step is
complete when its record arrives, so a reader needs no index and a truncated
file loses at most the last step. A recording split into parts is read part
after part (``deer_vla.data.mcap_parts``: the first file, a directory or a
glob names it); the recorder splits only between steps. Used by
``deer-vla replay`` and by ``deer-vla calibrate --recording``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deer_vla.core import Observation, StepRecord
from deer_vla.core.image_resize import resize_rgb
from deer_vla.core.json_text import parse_json
from deer_vla.data.image_msg import compressed_msg_to_rgb, image_msg_to_rgb
from deer_vla.data.mcap_io import TruncatedMcapWarning
from deer_vla.data.mcap_parts import read_log_by_part

PREFIX = "/deer_vla/policy"
INSTRUCTION = f"{PREFIX}/input/instruction"
PROPRIO = f"{PREFIX}/input/proprio"
ACTION = f"{PREFIX}/output/action"
RECORD = f"{PREFIX}/output/record"
# once, before the first step: the policy that made the recording (checkpoint, weights_sha256, thresholds), so
# that a replay under other weights says so (the shipped default and mt50 take each other's recordings)
POLICY = f"{PREFIX}/policy"


def image_topic(camera: str) -> str:
    return f"{PREFIX}/input/{camera}/image"


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


def recorded_episodes(path: str | Path, cameras: tuple[str, ...] | list[str], image_size: int | None = None
                      ) -> list[list[Observation]]:
    """The recording's observations, split into its episodes (a new instruction starts one); ``image_size`` as
    for ``read_recording``."""
    steps = read_recording(path, image_size)
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


def recorded_policy(path: str | Path) -> dict[str, str] | None:
    """What the recording says of the policy that made it (``PolicyRecorder``'s ``policy``), or None for one
    without it (written before the recorder wrote it). Reads only up to the first step."""
    for part, m in read_log_by_part(path):
        if m.topic == RECORD:
            return None
        if m.topic == POLICY:
            try:
                data = parse_json(m.message.data)
            except (AttributeError, TypeError, ValueError) as exc:  # JsonTextError is a ValueError
                raise RecordingError(f"{part}: {m.topic} at {m.log_time_ns} ns: not a JSON string ({exc})") from exc
            if not isinstance(data, dict):
                raise RecordingError(f"{part}: {m.topic} at {m.log_time_ns} ns: expected a JSON object")
            return {str(k): str(v) for k, v in data.items()}
    return None


class RecordingError(ValueError):
    """A policy recording with a message its reader cannot use; the message names the file, topic and log time."""


_TYPES = {INSTRUCTION: "std_msgs/msg/String", PROPRIO: "std_msgs/msg/Float32MultiArray",
          ACTION: "std_msgs/msg/Float32MultiArray", RECORD: "std_msgs/msg/String"}
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"  # a compressed camera's frames, recorded as they came


def image_type(msg: Any) -> str | None:
    """The MCAP type a camera frame is recorded as (its fields decide); None: not a camera frame."""
    if all(hasattr(msg, f) for f in ("encoding", "height", "width", "step", "data")):
        return IMAGE_TYPE
    if all(hasattr(msg, f) for f in ("format", "data")):
        return COMPRESSED_IMAGE_TYPE
    return None


def _finite(values: Any, size: int | None = None) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if size is not None and array.shape != (size,):
        raise ValueError(f"{array.size} values, expected {size}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"NaN or inf in {array.tolist()}")
    return array


def read_recording(path: str | Path, image_size: int | None = None) -> list[RecordedStep]:
    """The recorded steps in order, over every part of a split recording (``path``: its first file, a directory
    or a glob); RecordingError names the file, topic and log time of a message of the wrong type or with unusable
    values (a policy node never writes one: the file was damaged or is another program's); MissingPartError
    names a missing part. ``image_size``: each image shrunk as it is read to the model's input by the resize the
    model applies (core.image_resize), so the steps hold what the model reads: a recording of 1080p cameras
    otherwise held every frame at full size (8.7 GB for 90 s at 10 Hz).

    A step is the messages of one log time in one part, up to its record. One that lacks part of itself (a write
    that failed partway: the log goes on in a new part, which may begin inside a step) is left out with a
    TruncatedMcapWarning, never completed with the previous step's action or instruction."""
    steps: list[RecordedStep] = []
    images: dict[str, np.ndarray] = {}
    instruction: str | None = None
    proprio: np.ndarray | None = None
    action: np.ndarray | None = None
    image_prefix, image_suffix = f"{PREFIX}/input/", "/image"
    step_key: tuple[Path, int] | None = None  # (part, log time) of the step being read
    torn: list[str] = []  # "<part> at <t> ns" of each step left out
    for part, m in read_log_by_part(path):
        is_image = m.topic.startswith(image_prefix) and m.topic.endswith(image_suffix)
        expected = (m.datatype if m.datatype in (IMAGE_TYPE, COMPRESSED_IMAGE_TYPE) else IMAGE_TYPE) if is_image \
            else _TYPES.get(m.topic)
        if expected is None:
            continue  # another node's topic
        if (part, m.log_time_ns) != step_key:  # a new step (or part): nothing carries over
            if images or instruction is not None or action is not None:
                torn.append(f"{step_key[0]} at {step_key[1]} ns" if step_key else "?")
            images, instruction, proprio, action = {}, None, None, None
            step_key = (part, m.log_time_ns)
        try:
            if m.datatype != expected:
                raise ValueError(f"type {m.datatype or '(no schema)'}, expected {expected}")
            if is_image:
                rgb = (compressed_msg_to_rgb if m.datatype == COMPRESSED_IMAGE_TYPE else image_msg_to_rgb)(m.message)
                images[m.topic[len(image_prefix): -len(image_suffix)]] = (
                    rgb if image_size is None else resize_rgb(rgb, image_size))
            elif m.topic == INSTRUCTION:
                instruction = str(m.message.data)
                if not instruction.strip():  # the node never steps without one
                    raise ValueError("empty instruction")
            elif m.topic == PROPRIO:
                proprio = _finite(m.message.data).astype(np.float32)
            elif m.topic == ACTION:
                action = _finite(m.message.data, 7)
            else:
                record = StepRecord.from_json(m.message.data)
                if images and instruction is not None and action is not None:
                    steps.append(RecordedStep(images, instruction, proprio, action, record, m.log_time_ns))
                else:
                    torn.append(f"{part} at {m.log_time_ns} ns")
                images, instruction, proprio, action = {}, None, None, None
        except ValueError as exc:  # ImageConversionError, JSONDecodeError and StepRecord's checks among them
            raise RecordingError(f"{part}: {m.topic} at {m.log_time_ns} ns: {exc}") from exc
    if images or instruction is not None or action is not None:
        torn.append(f"{step_key[0]} at {step_key[1]} ns (the last)" if step_key else "?")
    cameras = set().union(*(s.images for s in steps)) if steps else set()
    torn += [f"step {s.record.step} at {s.stamp_ns} ns (cameras {sorted(s.images)} of {sorted(cameras)})"
             for s in steps if set(s.images) != cameras]
    steps = [s for s in steps if set(s.images) == cameras]
    if torn:
        warnings.warn(TruncatedMcapWarning(
            f"recording {path}: {len(torn)} incomplete step(s) left out (a write that failed partway?): "
            f"{', '.join(torn[:3])}{', ...' if len(torn) > 3 else ''}"), stacklevel=2)
    return steps
