"""`deer-vla import-mcap`: a teleoperation recording (rosbag2 MCAP) -> a deer_vla episode dataset.

rosbag2 stores CDR-serialised messages with their .msg definitions; they
are decoded with mcap-ros2-support (no ROS installation needed). Topics:

* cameras: sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) or
  sensor_msgs/CompressedImage (jpeg, png);
* the commanded action: geometry_msgs/TwistStamped or Twist (linear ->
  x, y, z, angular -> roll, pitch, yaw, velocities in m/s and rad/s), or
  std_msgs/Float32MultiArray / Float64MultiArray with one ``--action-axes``
  label per value; the gripper from a Twist's ``--gripper-topic``
  (std_msgs/Float64 / Float32, Bool: true = closed, or a float array: its
  first joint's value) or, without one, open throughout;
* the instruction: std_msgs/String on ``--instruction-topic`` (a new text
  starts a new episode), or one ``--instruction`` for the whole file;
* optional proprioception: std_msgs/Float32MultiArray / Float64MultiArray
  or sensor_msgs/JointState (positions, named after the joints).

Time alignment (receive times, as rosbag2 logs them): ticks at ``--rate``
Hz; each tick takes the latest message of every topic at or before it, but a
sensor_msgs/JointState proprio the one stamped nearest the tick's images, as
the policy node pairs them (a tick whose pair is further apart than
``--max-joint-skew`` is dropped, as the node skips such a step), and with
``--twist-timeout`` a twist older than that labels zero motion.
Ticks before every topic has data are dropped; a tick where some topic's
latest message is older than ``--max-age`` seconds ends the episode (a gap),
as does a message on ``--episode-topic`` or a new instruction. An unclosed
recording (its recorder was killed) is read in file order: a message older
than one already read on its topic is ignored and counted. A topic of a type
its role cannot use, a NaN value or an undecodable image stops the import
with the file, topic and log time.
"""
from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deer_vla.core.action_spec import check_frame_id
from deer_vla.core.control_rate import control_rate_problem
from deer_vla.core.instruction_text import clean_instruction
from deer_vla.core.stamp_pairing import StampedHistory
from deer_vla.core.writable import path_argument
from deer_vla.data.episodes import DatasetError, DatasetWriteError, check_image_size
from deer_vla.data.image_msg import ImageConversionError, compressed_msg_to_rgb, image_msg_to_rgb
from deer_vla.data.importing import (
    ActionMapping,
    ImportWriter,
    check_action_frame,
    check_new_output,
    dataset_meta,
    fit_proprio_spec,
    next_train_command,
    resize_square,
    resolve_action_columns,
)
from deer_vla.data.mcap_io import McapFormatError, truncation_warnings_to_stderr

TWIST_TYPES = ("geometry_msgs/msg/TwistStamped", "geometry_msgs/msg/Twist")
ARRAY_TYPES = ("std_msgs/msg/Float32MultiArray", "std_msgs/msg/Float64MultiArray")
TWIST_LABELS = ("x", "y", "z", "roll", "pitch", "yaw", "gripper")


@dataclass
class McapSources:
    """Which topic is what; None = not recorded."""

    cameras: dict[str, str]  # slot -> image topic
    action: str
    instruction_topic: str | None = None
    instruction: str | None = None
    gripper: str | None = None
    proprio: str | None = None
    episode: str | None = None

    def __post_init__(self) -> None:
        if (self.instruction_topic is None) == (self.instruction is None):
            raise DatasetError("give exactly one of --instruction-topic and --instruction")
        try:
            cleaned = clean_instruction(self.instruction) if self.instruction is not None else None
        except ValueError as exc:  # not text (a non-UTF-8 locale's surrogates): one line, not a traceback
            raise DatasetError(f"--instruction: {exc}") from None
        if self.instruction is not None and not cleaned:
            raise DatasetError(f"--instruction is empty ({self.instruction!r}): say what the robot is doing")
        if not self.cameras:
            raise DatasetError("at least one image topic is needed")
        empty = [t for t in (*self.cameras.values(), self.action) if not t.strip()]
        if empty:
            raise DatasetError(f"empty topic name(s) {empty}")
        # one topic in two roles: a camera stored twice, or a camera read as episode marks (every frame ending
        # the episode, then "no episode of at least 2 steps" that names nothing)
        roles = {"--image-topic": self.cameras.get("static"), "--wrist-topic": self.cameras.get("wrist"),
                 "--action-topic": self.action, "--instruction-topic": self.instruction_topic,
                 "--gripper-topic": self.gripper, "--proprio-topic": self.proprio, "--episode-topic": self.episode}
        given: dict[str, str] = {}
        for option, topic in roles.items():
            if topic is None:
                continue
            if topic in given:
                raise DatasetError(f"{option} and {given[topic]} are both {topic}: each role needs its own topic")
            given[topic] = option

    @property
    def topics(self) -> list[str]:
        optional = (self.instruction_topic, self.gripper, self.proprio, self.episode)
        return list(dict.fromkeys([*self.cameras.values(), self.action, *(t for t in optional if t)]))

    @property
    def required(self) -> list[str]:
        """Topics that must have spoken before the first tick (the gripper and episode topics are optional)."""
        return [*self.fresh, *([self.instruction_topic] if self.instruction_topic else [])]

    @property
    def fresh(self) -> list[str]:
        """Streams every tick needs a recent message of (an instruction is sent once and stays valid)."""
        return [*self.cameras.values(), self.action, *([self.proprio] if self.proprio else [])]


@dataclass
class _Episode:
    instruction: str
    start_ns: int
    images: dict[str, list[np.ndarray]] = field(default_factory=dict)
    proprio: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)


def image_to_rgb(msg: Any, datatype: str) -> np.ndarray:
    """A decoded sensor_msgs/Image or CompressedImage -> (H, W, 3) uint8 RGB."""
    if datatype.endswith("CompressedImage"):
        return compressed_msg_to_rgb(msg)
    return image_msg_to_rgb(msg)


# a float array: a forward_command_controller's command to the gripper's joints, taken as its first joint's value
GRIPPER_TYPES = ("std_msgs/msg/Float64", "std_msgs/msg/Float32", "std_msgs/msg/Bool", *ARRAY_TYPES)
INSTRUCTION_TYPE = "std_msgs/msg/String"
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
JOINT_STATE_TYPE = "sensor_msgs/msg/JointState"


def _stamp_ns(msg: Any) -> int:
    """A message's header stamp in ns (0: none, or unstamped)."""
    header = getattr(msg, "header", None)
    stamp = getattr(header, "stamp", None)
    return 0 if stamp is None else int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _scalar(msg: Any, datatype: str) -> float:
    if datatype == "std_msgs/msg/Bool":
        return 1.0 if msg.data else -1.0
    if datatype in ARRAY_TYPES:  # a gripper's joints move together: the first one's position is its opening
        values = np.asarray(msg.data, dtype=np.float64)  # (a mean would cancel mirrored fingers, [0.04, -0.04])
        if not values.size:
            raise ValueError("a gripper array without values")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"NaN or inf in {values.tolist()}")
        return float(values[0])
    return float(msg.data)


# The gripper of a twist action before its topic has spoken (or with no gripper topic): open, in whatever raw
# units the mapping fitted on the values heard turns out to use (a raw -1 was "closed" to a 0.08 m = open gripper)
GRIPPER_UNHEARD = math.nan
SERVO_TIMEOUT_NS = 100_000_000  # MoveIt Servo's default incoming_command_timeout: it halts the arm 0.1 s after a twist
MAX_FRAME_REPEAT = 20  # ticks per camera frame beyond which --rate is taken for a mistake (_Aligner._check_rate)


class _Aligner:
    """Streams messages in log-time order and samples the latest of every topic at each tick."""

    def __init__(self, src: McapSources, period_ns: int, max_age_ns: int, image_size: int, where: str = "",
                 twist_timeout_ns: int | None = None, max_joint_skew_ns: int = 100_000_000) -> None:
        self.src, self.period_ns, self.max_age_ns, self.image_size = src, period_ns, max_age_ns, image_size
        # a twist older than this at a tick moved nothing (MoveIt Servo halts after its incoming_command_timeout):
        # labelled zero motion, not as the last twist held (None: every twist labels until max_age)
        self.twist_timeout_ns = twist_timeout_ns
        self.max_joint_skew_ns = max_joint_skew_ns
        self.skewed = 0  # ticks dropped: the paired joint state stamped further than that from an image
        self.stilled = 0  # ticks labelled zero motion by twist_timeout
        self.held_past_servo = 0  # ticks labelled with a twist older than MoveIt Servo's default timeout
        # recent stamped joint states, (log time, message): a tick pairs its images with the one stamped nearest
        # them, as the policy node does (core.stamp_pairing), not with the newest received
        self._joint_history: StampedHistory[tuple[int, Any]] = StampedHistory()
        self.where = where  # the file, in error messages
        self.latest: dict[str, tuple[int, str, Any]] = {}  # topic -> (log time, datatype, decoded)
        self.late = 0  # messages older than one already seen on their topic (an unfinished file, read in file order)
        self.episode_mark = False
        self.episodes: list[_Episode] = []
        self.current: _Episode | None = None
        self.proprio_names: list[str] | None = None
        self.dropped = 0  # ticks before every topic had data, or inside gaps
        self._frames: dict[str, tuple[int, np.ndarray]] = {}  # topic -> (log time of the message, resized frame)
        self._distinct: dict[str, int] = {}  # topic -> frames converted (each new message once)
        self._ticks = 0  # ticks that made a step
        self.next_tick: int | None = None

    def feed(self, topic: str, datatype: str, log_ns: int, msg: Any) -> None:
        while self.next_tick is not None and log_ns > self.next_tick:
            self._tick(self.next_tick)
            self.next_tick += self.period_ns
        if topic == self.src.episode:
            self.episode_mark = True
            return
        self._check_type(topic, datatype, log_ns)
        if topic in self.latest and log_ns < self.latest[topic][0]:
            self.late += 1  # the ticks it belonged to are past: keep the newer message
            return
        self.latest[topic] = (log_ns, datatype, msg)
        if topic == self.src.proprio and datatype == JOINT_STATE_TYPE and _stamp_ns(msg) > 0:  # 0: unstamped
            self._joint_history.add(_stamp_ns(msg), (log_ns, msg))
        if self.next_tick is None and all(t in self.latest for t in self.src.required):
            self.next_tick = log_ns

    def _fail(self, topic: str, log_ns: int, problem: str) -> DatasetError:
        return DatasetError(f"{self.where}: {topic} at {log_ns} ns: {problem}")

    def _check_type(self, topic: str, datatype: str, log_ns: int) -> None:
        """A topic of a type its role cannot use is refused at its first message (not read as garbage)."""
        roles: list[tuple[str, list[str | None], tuple[str, ...]]] = [
            ("camera", list(self.src.cameras.values()), IMAGE_TYPES),
            ("action", [self.src.action], TWIST_TYPES + ARRAY_TYPES),
            ("instruction", [self.src.instruction_topic], (INSTRUCTION_TYPE,)),
            ("gripper", [self.src.gripper], GRIPPER_TYPES),
            ("proprio", [self.src.proprio], (*ARRAY_TYPES, JOINT_STATE_TYPE)),
        ]
        for role, topics, types in roles:
            if topic in topics and datatype not in types:
                raise self._fail(topic, log_ns, f"{role} type {datatype or '(no schema)'} not supported "
                                                f"(use {', '.join(types)})")

    def finish(self, last_ns: int) -> list[_Episode]:
        while self.next_tick is not None and self.next_tick <= last_ns:
            self._tick(self.next_tick)
            self.next_tick += self.period_ns
        self._close()
        return self.episodes

    def _close(self) -> None:
        if self.current is not None and self.current.actions:
            self.episodes.append(self.current)
        self.current = None

    def _tick(self, tick: int) -> None:
        stale = [t for t in self.src.fresh if tick - self.latest[t][0] > self.max_age_ns]
        if stale:
            self.dropped += 1
            self._close()  # a gap ends the episode
            return
        instruction = self.src.instruction
        if self.src.instruction_topic is not None:
            try:  # as the model reads it: a goal re-sent with other spacing is the same episode
                instruction = clean_instruction(str(self.latest[self.src.instruction_topic][2].data))
            except ValueError:  # not valid text
                instruction = ""
        if not instruction:  # no goal here: the steps before and after are separate episodes
            self.dropped += 1
            self._close()
            return
        if self.episode_mark or (self.current is not None and self.current.instruction != instruction):
            self._close()
        self.episode_mark = False
        joint = self._paired_joint_state()
        if joint is not None and joint[2] > self.max_joint_skew_ns:
            # the node skips such a step (max_joint_state_skew_s): a gap here too, not a pose of another moment
            self.dropped += 1
            self.skewed += 1
            self._close()
            return
        if self.current is None:
            self.current = _Episode(instruction, tick, {slot: [] for slot in self.src.cameras})
        for slot, topic in self.src.cameras.items():
            self.current.images[slot].append(self._frame(topic))
        self._ticks += 1
        self._check_rate(tick)
        if self.src.proprio is not None:
            self.current.proprio.append(self._proprio(joint))
        self.current.actions.append(self._action(tick))

    def _check_rate(self, tick: int) -> None:
        """A --rate far above a camera's (a typo: 1e6 for 10) repeats each frame thousands of times and fills the
        memory long before the end: refuse it once it is clear, naming the camera and how often its frames repeat."""
        if self._ticks < MAX_FRAME_REPEAT * 50:
            return
        topic, frames = min(((t, self._distinct.get(t, 0)) for t in self.src.cameras.values()), key=lambda x: x[1])
        if self._ticks > MAX_FRAME_REPEAT * frames:
            rate = 1e9 / self.period_ns
            raise self._fail(topic, tick, f"--rate {rate:g} Hz repeats each of this camera's frames about "
                                          f"{self._ticks / max(frames, 1):.0f} times ({frames} frames in "
                                          f"{self._ticks} ticks): use a rate at or near the cameras' own")

    def _frame(self, topic: str) -> np.ndarray:
        log_ns, datatype, msg = self.latest[topic]
        cached = self._frames.get(topic)
        if cached is None or cached[0] != log_ns:  # a slow camera's frame serves several ticks: convert it once
            try:
                rgb = image_to_rgb(msg, datatype)
            except (ImageConversionError, AttributeError) as exc:
                raise self._fail(topic, log_ns, str(exc)) from exc
            cached = (log_ns, resize_square([rgb], self.image_size)[0])
            self._frames[topic] = cached
            self._distinct[topic] = self._distinct.get(topic, 0) + 1
        return cached[1]

    def _paired_joint_state(self) -> tuple[int, Any, int] | None:
        """(log time, message, worst gap in ns to any camera's image) of the joint state stamped nearest the
        tick's images, as the policy node pairs them; None where the images or the joint states carry no
        stamps. Of equally near ones the oldest (StampedHistory.nearest, the node's rule)."""
        if self.src.proprio is None:
            return None
        stamps = [_stamp_ns(self.latest[t][2]) for t in self.src.cameras.values()]
        found = self._joint_history.nearest(stamps) if all(stamps) else None
        if found is None:
            return None
        _, (log_ns, msg), gap = found
        return log_ns, msg, gap

    def _proprio(self, joint: tuple[int, Any, int] | None) -> np.ndarray:
        topic = self.src.proprio
        assert topic is not None
        log_ns, datatype, msg = self.latest[topic]
        if datatype == JOINT_STATE_TYPE and joint is not None:
            log_ns, msg = joint[0], joint[1]
        if datatype == JOINT_STATE_TYPE:
            names = [str(n) for n in msg.name]
            if self.proprio_names is None:
                self.proprio_names = names
            elif names != self.proprio_names:
                raise self._fail(topic, log_ns, f"joint names changed from {self.proprio_names} to {names}")
            return self._finite(topic, log_ns, np.asarray(msg.position, dtype=np.float64))
        if datatype in ARRAY_TYPES:
            return self._finite(topic, log_ns, np.asarray(msg.data, dtype=np.float64))
        raise self._fail(topic, log_ns, f"proprio type {datatype} not supported "
                                        f"(use {', '.join(ARRAY_TYPES)} or sensor_msgs/msg/JointState)")

    def _action(self, tick: int) -> np.ndarray:
        log_ns, datatype, msg = self.latest[self.src.action]
        if datatype in TWIST_TYPES:
            twist = msg.twist if datatype.endswith("Stamped") else msg
            motion = self._finite(self.src.action, log_ns, np.array(
                [twist.linear.x, twist.linear.y, twist.linear.z, twist.angular.x, twist.angular.y, twist.angular.z],
                dtype=np.float64))
            age_ns = tick - log_ns
            if self.twist_timeout_ns is not None and age_ns > self.twist_timeout_ns:
                motion = np.zeros(6)  # the teleoperator let go: the servo had stopped the arm
                self.stilled += 1
            elif self.twist_timeout_ns is None and age_ns > SERVO_TIMEOUT_NS:
                self.held_past_servo += 1  # labelled with a twist MoveIt Servo would no longer be moving on
            grip = GRIPPER_UNHEARD  # open until a gripper topic says otherwise: its raw "open" is known only later
            if self.src.gripper is not None and self.src.gripper in self.latest:
                grip_ns, grip_type, grip_msg = self.latest[self.src.gripper]
                try:
                    grip = _scalar(grip_msg, grip_type)
                except ValueError as exc:
                    raise self._fail(self.src.gripper, grip_ns, str(exc)) from exc
                grip = float(self._finite(self.src.gripper, grip_ns, np.array([grip]))[0])
            return np.append(motion, grip)
        if datatype in ARRAY_TYPES:
            if not len(msg.data):
                raise self._fail(self.src.action, log_ns, "an action array without values")
            return self._finite(self.src.action, log_ns, np.asarray(msg.data, dtype=np.float64))
        raise self._fail(self.src.action, log_ns, f"action type {datatype} not supported "
                                                  f"(use {', '.join(TWIST_TYPES + ARRAY_TYPES)})")

    def _finite(self, topic: str, log_ns: int, values: np.ndarray) -> np.ndarray:
        if not np.all(np.isfinite(values)):
            raise self._fail(topic, log_ns, f"NaN or inf in {values.tolist()}")
        return values


BAG_METADATA = "metadata.yaml"  # rosbag2's description of a bag folder: its files in order
MAX_BAG_METADATA_BYTES = 16 << 20


def bag_files(path: str | Path) -> list[Path]:
    """The MCAP files of a recording in order: a file alone, or a rosbag2 bag folder's files as its
    metadata.yaml lists them (a bag split by --max-bag-size/--max-bag-duration is several files)."""
    import yaml

    path = Path(path)
    if not path.is_dir():
        if not path.is_file():
            raise FileNotFoundError(f"MCAP file or rosbag2 bag folder not found: {path}")
        return [path]
    meta = path / BAG_METADATA
    if not meta.is_file():
        found = sorted(path.glob("*.mcap"))
        if len(found) != 1:
            raise DatasetError(f"{path}: a bag folder without {BAG_METADATA} must hold exactly one .mcap file, "
                               f"found {len(found)}; give the file")
        return found
    if meta.stat().st_size > MAX_BAG_METADATA_BYTES:
        raise DatasetError(f"{meta}: {meta.stat().st_size} bytes, far more than a bag's metadata holds")
    try:
        info = yaml.safe_load(meta.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
        raise DatasetError(f"{meta}: not rosbag2 metadata ({type(exc).__name__})") from exc
    info = info.get("rosbag2_bagfile_information") if isinstance(info, dict) else None
    if not isinstance(info, dict):
        raise DatasetError(f"{meta}: no rosbag2_bagfile_information")
    names = info.get("relative_file_paths")
    if not (isinstance(names, list) and names and all(isinstance(n, str) and n for n in names)):
        raise DatasetError(f"{meta}: no rosbag2_bagfile_information.relative_file_paths list")
    storage = info.get("storage_identifier", "mcap")
    if storage != "mcap":
        raise DatasetError(f"{path}: a {storage} bag; only MCAP is read (ros2 bag convert, or record with -s mcap)")
    files = []
    for name in names:
        file = (path / name).resolve()
        if path.resolve() not in file.parents:  # a listed path must not lead out of the bag
            raise DatasetError(f"{meta}: {name!r} is not a file inside the bag folder")
        if not file.is_file():
            raise DatasetError(f"{meta} lists {name}, which is missing: the bag is incomplete")
        files.append(file)
    return files


def other_bag_files(path: str | Path) -> list[Path]:
    """For an MCAP file given alone: the other files of the split rosbag2 bag it belongs to (none when its folder
    has no metadata.yaml listing it), which an import of that one file would leave out."""
    path = Path(path)
    if not (path.is_file() and (path.parent / BAG_METADATA).is_file()):
        return []
    try:
        files = bag_files(path.parent)
    except DatasetError:
        return []
    if path.resolve() not in files:
        return []
    return [f for f in files if f != path.resolve()]


def check_delta_rate(times_ns: Sequence[int], rate_hz: float, topic: str) -> None:
    """DatasetError when per-step delta actions come at another rate than ``--rate``: each tick takes the latest
    message, so a delta that covered one message period (1/20 s) would be labelled one tick's (1/40 s: twice
    the speed at run time). Gaps (pauses between episodes) do not count."""
    gaps = np.diff(np.asarray(sorted(times_ns), dtype=np.int64)) * 1e-9
    gaps = gaps[gaps > 0]
    if gaps.size < 3:
        return
    period = float(np.median(gaps[gaps < 5 * np.median(gaps)]))
    if abs(period * rate_hz - 1.0) > 0.05:
        raise DatasetError(
            f"{topic}: delta actions come every {period * 1e3:.1f} ms ({1 / period:.4g} Hz) but --rate is "
            f"{rate_hz:g} Hz: a per-message delta would be taken as a per-tick one ({rate_hz * period:.2g}x its "
            f"speed at run time); pass --rate {1 / period:.4g}, or --velocity if the values are velocities")


def _twists_frame(header: str, action_frame: str, topic: str) -> tuple[str, str | None]:
    """The action frame from the twists' header frame_id and --action-frame, and a note of what was made of
    the header (None: nothing to say). DatasetError where they disagree or neither gives a usable frame."""
    note = None
    if header.startswith("/"):  # ROS 1 and tf's convention; tf2 frame ids carry no leading '/'
        note = f"the twists' frame_id '{header}' taken as '{header[1:]}' (tf2 frame ids do not start with '/')"
        header = header[1:]
    try:
        check_frame_id(header, "frame_id")
    except ValueError:
        if not action_frame:
            raise DatasetError(f"{topic}: the twists' frame_id {header[:80]!r} is not a TF frame id (no spaces, "
                               "not starting with '/'): give their frame with --action-frame FRAME") from None
        return action_frame, f"the twists' frame_id {header[:80]!r} is not a TF frame id: --action-frame used"
    if header and action_frame and header != action_frame:
        raise DatasetError(f"{topic}: the twists say frame '{header}', --action-frame says '{action_frame}': drop "
                           "--action-frame, or re-record")
    return header or action_frame, note


def import_mcap(path: str | Path, out: str | Path, sources: McapSources, rate_hz: float,
                action_axes: str | None = None, velocity: bool = False, quantile: float = 0.99,
                gripper_open: float | None = None, gripper_closed: float | None = None,
                proprio_names: Sequence[str] | None = None, max_age_s: float | None = None,
                image_size: int = 64, min_steps: int = 2, action_frame: str = "",
                twist_timeout_s: float | None = None, max_joint_skew_s: float = 0.1) -> dict[str, Any]:
    """Align, fit the spaces and write; returns a summary. ``path``: an MCAP file or a rosbag2 bag folder.
    ``action_frame``: the TF frame of the action's axes where the messages do not say it (a TwistStamped does)."""
    from deer_vla.data.mcap_io import read_messages

    problem = control_rate_problem(rate_hz)
    if problem is not None:
        raise DatasetError(f"--rate {problem} (the policy's control rate range)")
    if max_age_s is not None and not (math.isfinite(max_age_s) and max_age_s > 0):
        raise DatasetError(f"--max-age must be > 0 seconds, got {max_age_s}")
    check_image_size(image_size, "--image-size")
    check_action_frame(action_frame)
    files = bag_files(path)
    check_new_output(out)  # before reading the whole recording, not after
    period_ns = int(round(1e9 / rate_hz))
    max_age_ns = int((max_age_s if max_age_s is not None else max(0.5, 3.0 / rate_hz)) * 1e9)
    if twist_timeout_s is not None and not (math.isfinite(twist_timeout_s) and twist_timeout_s > 0):
        raise DatasetError(f"--twist-timeout must be > 0 seconds, got {twist_timeout_s}")
    if not (math.isfinite(max_joint_skew_s) and max_joint_skew_s > 0):
        raise DatasetError(f"--max-joint-skew must be > 0 seconds, got {max_joint_skew_s}")
    aligner = _Aligner(sources, period_ns, max_age_ns, image_size, str(path),
                       None if twist_timeout_s is None else int(twist_timeout_s * 1e9), int(max_joint_skew_s * 1e9))
    seen: dict[str, str] = {}
    last_ns = 0
    action_ns: list[int] = []  # when each action message came: the period its per-message deltas cover
    twist_frames: set[str] = set()
    for file in files:  # a split bag's files follow each other in time
        aligner.where = str(file)
        for m in read_messages(file, sources.topics):
            seen[m.topic] = m.datatype
            last_ns = max(last_ns, m.log_time_ns)
            if m.topic == sources.action:
                action_ns.append(m.log_time_ns)
                header = getattr(m.message, "header", None)  # a TwistStamped says the frame its axes are in
                if header is not None:
                    twist_frames.add(str(header.frame_id))
            aligner.feed(m.topic, m.datatype, m.log_time_ns, m.message)
    missing = [t for t in sources.required if t not in seen]
    if missing:
        raise DatasetError(f"{path}: no messages on {missing}")
    found = aligner.finish(last_ns)
    episodes = [e for e in found if len(e.actions) >= min_steps]
    short = [e for e in found if len(e.actions) < min_steps]  # said: an instruction changed every tick or two
    if not episodes:
        skewed = (f" ({aligner.skewed} tick(s) dropped: the joint state stamped nearest their images was more than "
                  f"{max_joint_skew_s:g} s from them (--max-joint-skew): are the cameras and the joint states "
                  "stamped by one clock?)") if aligner.skewed else ""
        raise DatasetError(f"{path}: no episode of at least {min_steps} steps at {rate_hz:g} Hz{skewed}")
    for topic, vectors in ((sources.action, [a for e in episodes for a in e.actions]),
                           (sources.proprio, [p for e in episodes for p in e.proprio])):
        if len({len(v) for v in vectors}) > 1:
            raise DatasetError(f"{path}: {topic}: vectors of different lengths {sorted({len(v) for v in vectors})}")
    action_type = seen[sources.action]
    if twist_timeout_s is not None and action_type not in TWIST_TYPES:
        raise DatasetError(f"--twist-timeout applies to twist actions; {sources.action} is a {action_type}")
    if len(twist_frames) > 1:  # the policy node publishes every twist in one frame_id
        raise DatasetError(f"{sources.action}: twists in several frames {sorted(twist_frames)}; import each "
                           "frame's stretch on its own")
    twist_frame = next(iter(twist_frames), None)
    frame, frame_note = _twists_frame(twist_frame or "", action_frame, sources.action)
    if action_type in TWIST_TYPES:
        if action_axes:
            raise DatasetError(f"{sources.action} is a {action_type}: its axes are fixed, drop --action-axes")
        labels = list(TWIST_LABELS)
        velocity = True  # a twist is a velocity
    else:
        dim = len(episodes[0].actions[0])
        labels = resolve_action_columns(dim, None, action_axes)
        if not velocity:
            check_delta_rate(action_ns, rate_hz, sources.action)
    raw_actions = np.concatenate([np.stack(e.actions) for e in episodes])
    unheard = np.isnan(raw_actions[:, -1]) if action_type in TWIST_TYPES else np.zeros(len(raw_actions), bool)
    heard = raw_actions[~unheard, -1]
    # the fit sees the gripper values recorded, never a stand-in that would widen their range
    # (none heard: the stated open value, or -1 open; a stand-in out of the stated range read as data beyond it)
    raw_actions[unheard, -1] = heard.min() if heard.size else (-1.0 if gripper_open is None else gripper_open)
    mapping = ActionMapping.fit(raw_actions, labels, velocity, quantile, gripper_open, gripper_closed, frame)
    proprio = None
    if sources.proprio is not None:
        names = list(proprio_names) if proprio_names else aligner.proprio_names
        proprio = fit_proprio_spec(np.concatenate([np.stack(e.proprio) for e in episodes]), names)
    meta = dataset_meta(
        list(sources.cameras), image_size, mapping, proprio, [e.instruction for e in episodes], rate_hz,
        {"source": "mcap", "path": str(Path(path).resolve()), "topics": {
            "cameras": sources.cameras, "action": f"{sources.action} ({action_type})",
            "instruction": sources.instruction_topic or f"constant: {sources.instruction}",
            "gripper": sources.gripper or ("open throughout" if action_type in TWIST_TYPES else None),
            "twist_frame": twist_frame,
            "proprio": sources.proprio, "episode": sources.episode},
         "alignment": f"latest message at or before each tick at {rate_hz:g} Hz (receive times); a topic older "
                      f"than {max_age_ns / 1e9:g} s ends the episode"},
    )
    with ImportWriter(out, meta) as writer:
        for i, e in enumerate(episodes):
            raw = np.stack(e.actions)
            if action_type in TWIST_TYPES:
                raw[np.isnan(raw[:, -1]), -1] = mapping.gripper_open
            writer.write(e.instruction, i, {slot: np.stack(f) for slot, f in e.images.items()},
                         np.stack(e.proprio) if proprio is not None else None,
                         mapping.normalise(raw),
                         {"source_file": str(path), "start_ns": e.start_ns, "steps": len(e.actions)})
    return {"episodes": writer.count, "steps": writer.steps, "out": str(writer.root), "dropped_ticks": aligner.dropped,
            "files": [str(f) for f in files],
            "late_messages": aligner.late, "twist_frame": twist_frame, "action_frame": frame, "frame_note": frame_note,
            "stilled_ticks": aligner.stilled, "held_past_servo_ticks": aligner.held_past_servo,
            "skewed_ticks": aligner.skewed, "short_episodes": len(short),
            "short_episode_ticks": sum(len(e.actions) for e in short), "min_steps": min_steps,
            "action_spec": mapping.spec.to_dict(), "clipped_fraction": mapping.clipped_fraction,
            "gripper": mapping.gripper_text(),
            "proprio_names": None if proprio is None else list(proprio.names),
            "instructions": sorted({e.instruction for e in episodes})}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deer-vla import-mcap", description=__doc__.splitlines()[0])
    p.add_argument("file", type=path_argument, help="MCAP recording, or a rosbag2 bag folder (all its files, in order)")
    p.add_argument("--out", type=path_argument, required=True, help="new deer_vla dataset directory")
    p.add_argument("--image-topic", required=True, help="static camera: sensor_msgs/Image or CompressedImage")
    p.add_argument("--wrist-topic", default=None, help="wrist camera (optional second camera)")
    p.add_argument("--action-topic", required=True,
                   help="commanded action: geometry_msgs/TwistStamped, Twist, or std_msgs/Float32MultiArray or "
                        "Float64MultiArray")
    p.add_argument("--action-axes", default=None, metavar="LABELS",
                   help="for an array action: one label per value, x,y,z,roll,pitch,yaw,gripper or '-' to skip")
    p.add_argument("--velocity", action="store_true", help="array actions are velocities (m/s, rad/s)")
    p.add_argument("--action-frame", default="", metavar="FRAME",
                   help="TF frame the action's axes are in, for actions that do not say it (a TwistStamped "
                        "does); kept in the checkpoint, whose twists the policy node sends in it")
    p.add_argument("--gripper-topic", default=None,
                   help="gripper command for a twist action (Float64/Float32/Bool, or a float array: its first "
                        "joint's value, e.g. a forward_command_controller's commands)")
    p.add_argument("--gripper-open", type=float, default=None, help="raw gripper value meaning open (-> -1)")
    p.add_argument("--gripper-closed", type=float, default=None, help="raw gripper value meaning closed (-> +1)")
    text = p.add_mutually_exclusive_group(required=True)
    text.add_argument("--instruction-topic", default=None, help="std_msgs/String instruction topic")
    text.add_argument("--instruction", default=None, help="one instruction for the whole recording")
    p.add_argument("--proprio-topic", default=None,
                   help="proprioception: std_msgs/Float32MultiArray, Float64MultiArray or sensor_msgs/JointState")
    p.add_argument("--proprio-names", default=None, help="comma-separated names of the proprio values")
    p.add_argument("--episode-topic", default=None, help="any message on this topic starts a new episode")
    p.add_argument("--rate", type=float, required=True, help="control rate of the policy (Hz)")
    p.add_argument("--twist-timeout", type=float, default=None, metavar="S",
                   help="a twist older than S seconds at a tick is labelled zero motion (the teleoperator let go; "
                        "MoveIt Servo halts after its incoming_command_timeout, 0.1 s by default)")
    p.add_argument("--max-joint-skew", type=float, default=0.1, metavar="S",
                   help="a tick whose JointState (paired by header stamps) is further than S seconds from an image "
                        "is dropped, as the policy node skips such a step (default 0.1, its max_joint_state_skew_s)")
    p.add_argument("--max-age", type=float, default=None,
                   help="a topic silent this long (s) ends the episode (default max(0.5, 3 / rate))")
    p.add_argument("--action-quantile", type=float, default=0.99,
                   help="per-axis scale = this quantile of |action| (default 0.99)")
    p.add_argument("--image-size", type=int, default=64, help="stored square image size (default 64)")
    return p


def cli_main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cameras = {"static": args.image_topic, **({"wrist": args.wrist_topic} if args.wrist_topic else {})}
    try:
        sources = McapSources(cameras, args.action_topic, args.instruction_topic, args.instruction,
                              args.gripper_topic, args.proprio_topic, args.episode_topic)
        others = other_bag_files(args.file)
        if others:
            print(f"deer-vla import-mcap: warning: {args.file} is one of {len(others) + 1} files of the bag "
                  f"{args.file.parent}; only it is imported (give the folder to import the whole bag)",
                  file=sys.stderr)
        with truncation_warnings_to_stderr("deer-vla import-mcap"):  # a crashed recorder's file: its complete part
            summary = import_mcap(
                args.file, args.out, sources, args.rate, args.action_axes, args.velocity, args.action_quantile,
                args.gripper_open, args.gripper_closed, args.proprio_names.split(",") if args.proprio_names else None,
                args.max_age, args.image_size, action_frame=args.action_frame,
                twist_timeout_s=args.twist_timeout, max_joint_skew_s=args.max_joint_skew)
    except (DatasetError, McapFormatError, FileNotFoundError) as exc:  # the file or a setting refused
        print(f"deer-vla import-mcap: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, DatasetWriteError) else 2  # a write that failed (disk full): no usage error
    spec = summary["action_spec"]
    print(f"imported {summary['episodes']} episodes ({summary['steps']} steps at {args.rate:g} Hz; "
          f"{summary['dropped_ticks']} ticks dropped before data or in gaps) into {summary['out']}")
    if summary["short_episodes"]:
        print(f"  {summary['short_episodes']} episode(s) shorter than {summary['min_steps']} steps not imported "
              f"({summary['short_episode_ticks']} ticks): an instruction that changed every tick or two?")
    if len(summary["files"]) > 1:
        names = ", ".join(Path(f).name for f in summary["files"])
        print(f"  read the bag's {len(summary['files'])} files in order: {names}")
    if summary["late_messages"]:
        print(f"  {summary['late_messages']} late message(s) ignored: older than one already read on their topic "
              "(an unclosed recording is read in file order)")
    if summary["frame_note"]:
        print(f"  {summary['frame_note']}")
    if summary["skewed_ticks"]:
        print(f"  {summary['skewed_ticks']} tick(s) dropped: the joint state stamped nearest their images was more "
              f"than {args.max_joint_skew:g} s from them (the policy node skips such steps; --max-joint-skew)")
    if summary["stilled_ticks"]:
        print(f"  {summary['stilled_ticks']} tick(s) labelled zero motion: their newest twist was older than "
              f"--twist-timeout {args.twist_timeout:g} s")
    elif summary["held_past_servo_ticks"]:
        print(f"  {summary['held_past_servo_ticks']} tick(s) labelled with a twist over 0.1 s old, which MoveIt "
              "Servo no longer moves on (its default incoming_command_timeout): if the recording's arm ran under "
              "Servo, --twist-timeout 0.1 labels them zero motion")
    if summary["action_frame"]:
        print(f"  action axes in frame '{summary['action_frame']}': kept with the action space, so the policy node "
              "sends the twists of a model trained on it in that frame")
    else:
        print("  the action's frame is not recorded: the policy node will send twists in base_link unless its "
              "frame_id says otherwise (give --action-frame FRAME to keep it with the data)")
    axes = ", ".join(f"{a} {s:.4g} {u}" for a, u, s in zip(spec["axes"], spec["units"], spec["scale"]))
    print(f"  action    {axes} per unit; gripper {summary['gripper']} "
          f"({100 * summary['clipped_fraction']:.2f}% of motion values clipped)")
    print(f"  proprio   {', '.join(summary['proprio_names'] or ['none'])}")
    print(f"  instructions: {'; '.join(summary['instructions'])}")
    print(f"next: {next_train_command(summary['out'])}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main())
