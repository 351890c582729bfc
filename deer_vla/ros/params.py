"""Policy node parameters: defaults, validation and the budget they describe.

ROS parameters cannot be null, so an unset budget is 0.0 (or 0 bytes); a
negative or non-finite value is an error. Validation happens at configure
and again on every runtime change (the parameter callback rejects bad
values with the message built here).
"""
from __future__ import annotations

import array
import difflib
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from deer_vla.core.action_spec import MAX_FRAME_CHARS, check_frame_id
from deer_vla.core.control_rate import MAX_CONTROL_RATE_HZ, MIN_CONTROL_RATE_HZ
from deer_vla.core.instruction_text import MAX_INSTRUCTION_CHARS
from deer_vla.data.mcap_io import DEFAULT_SPLIT_MIB, DEFAULT_SPLIT_S, SplitLimits
from deer_vla.model.checkpoint_dir import CheckpointDir
from deer_vla.model.device import is_device_name
from deer_vla.model.shipped import resolve_checkpoint

BUDGET_PARAMS: tuple[str, ...] = (
    "budget.average_gflops",
    "budget.peak_gflops",
    "budget.peak_ms",
    "budget.memory_bytes",
    "budget.deadline_ms",
    "budget.metric",
    "fixed_exit",
)

# Slowest timer rate: a timer's period must fit rcl's int64 nanoseconds (a 1e-12 Hz rate made create_timer
# raise), and a control period beyond 100 s is no control loop.
MIN_RATE_HZ = MIN_CONTROL_RATE_HZ
POLICY_NODE_NAME = "deer_vla_policy"  # the policy node's default name (the graph's, the parameter files' key)
DEFAULT_RATE_HZ = 10.0  # the control rate of a checkpoint that records none (the simulator's demonstrations)
DEFAULT_FRAME_ID = "base_link"  # the twists' frame for a checkpoint that records none (REP-105's robot base)
# /diagnostics period bounds (s): faster floods the topic, slower is no health signal
MIN_DIAGNOSTICS_PERIOD_S, MAX_DIAGNOSTICS_PERIOD_S = 0.05, 60.0


# Smallest split limits (besides 0 = none): below them a log would scatter into thousands of files a day.
MIN_SPLIT_MIB = 1.0
MIN_SPLIT_S = 10.0


def check_split_mib(value: float) -> float:
    """A split size in MiB (record_split_mib, log_split_mib): 0 = no size limit, else at least MIN_SPLIT_MIB."""
    if not (math.isfinite(value) and (value == 0 or value >= MIN_SPLIT_MIB)):
        raise ValueError(f"must be 0 (no size limit) or at least {MIN_SPLIT_MIB:g} MiB, got {value:g}")
    return value


def check_split_s(value: float) -> float:
    """A split duration in s (record_split_s, log_split_s): 0 = no time limit, else at least MIN_SPLIT_S."""
    if not (math.isfinite(value) and (value == 0 or value >= MIN_SPLIT_S)):
        raise ValueError(f"must be 0 (no time limit) or at least {MIN_SPLIT_S:g} s, got {value:g}")
    return value


MAX_KEEP_PARTS = 1_000_000


def check_keep_parts(value: int) -> int:
    """Parts a log keeps on disk (record_keep_parts, log_keep_parts): 0 = every part, else the newest N."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_KEEP_PARTS:
        raise ValueError(f"must be an integer in 0..{MAX_KEEP_PARTS} (0 = keep every part), got {value!r}")
    return value


def split_limits(mib: float, seconds: float, keep_parts: int = 0) -> SplitLimits:
    return SplitLimits(max_bytes=int(mib * 2**20), max_seconds=seconds, keep_parts=keep_parts)


# read once, when the node starts (the rest at configure, or at run time: policy_node.RUNTIME_PARAMS)
START_UP_PARAMS = frozenset({"autostart"})

# name -> default; the type of the default is the ROS parameter type.
POLICY_DEFAULTS: dict[str, Any] = {
    "checkpoint_dir": "",  # a directory, or a shipped checkpoint's name ("" = "default"): PARAMETER_DESCRIPTIONS
    "thresholds_file": "",  # "" = the checkpoint's own (CheckpointDir.thresholds_path)
    "device": "cpu",
    "image_topics": ["camera/static/image_raw", "camera/wrist/image_raw"],  # in the model's camera order
    "instruction_topic": "instruction",
    # an instruction message longer than this (characters) is refused and the previous instruction kept
    "max_instruction_chars": 1024,
    # the same text again: "reset" = a new episode (the simulator's episodes of one task); "keep" = carry on (a
    # task planner that re-publishes its goal periodically must not wipe the history at every message)
    "repeated_instruction": "reset",
    # an instruction unlike every wording the checkpoint was trained on (model/instruction_match.py: cosine
    # similarity of mean token embeddings under min_instruction_similarity): "warn" = run it, say so (log and
    # /diagnostics); "refuse" = keep the previous instruction; "strict" = keep it for every text "warn" would run at
    # WARN too (a close call, a direction contradicted, two tasks, a word never learned); "off" = do not compare
    "unfamiliar_instruction": "warn",
    "min_instruction_similarity": 0.45,
    "proprio_topic": "proprio",  # std_msgs/Float32MultiArray, the model's proprio_dim values; "" = none
    # where proprioception comes from: "array" (proprio_topic) or "joint_state" (sensor_msgs/JointState on
    # proprio.joint_state_topic, values picked by the checkpoint's proprio names: deer_vla/ros/joint_state.py)
    "proprio.source": "array",
    "proprio.joint_state_topic": "joint_states",
    "twist_topic": "cmd_twist",
    "gripper_topic": "cmd_gripper",
    # what goes out on gripper_topic: "unit" = std_msgs/Float64, -1 open .. +1 closed; "positions" =
    # std_msgs/Float64MultiArray, each joint's position linear between gripper.open_positions and
    # gripper.closed_positions (one value per joint, in the controller's order): ros2_controllers'
    # forward_command_controller / JointGroupPositionController takes it on <controller>/commands
    "gripper.output": "unit",
    "gripper.open_positions": [-1.0],
    "gripper.closed_positions": [1.0],
    "action_topic": "action",
    "record_topic": "step_record",
    # the frame the twists are sent in; "" = the checkpoint's action frame (its demonstrations'), base_link for
    # a checkpoint that records none: settled at configure (with_frame)
    "frame_id": "",
    # "timer": step at rate_hz on the newest inputs (cameras and arm drivers that publish at their own rate);
    # "event": step when every camera (and the proprio) has a new message: a lock-step source that sends one
    # observation per action (the simulator; graph "sim" sets it). On a 30 Hz camera event mode would step at
    # 30 Hz a policy trained at 10 Hz
    "control_mode": "timer",
    # timer rate, and the control period that turns per-step deltas into velocities. 0 = the checkpoint's
    # control_rate_hz (its demonstrations' rate; DEFAULT_RATE_HZ for a checkpoint without one)
    "rate_hz": 0.0,
    "max_image_age_s": 0.5,  # images older than this (header stamp vs node clock) give no new action
    "max_image_skew_s": 0.5,  # newest images of two cameras further apart than this are not paired
    "max_image_future_s": 0.1,  # images stamped further ahead of the node clock than this are not fresh
    # the proprioception's age limit (a joint state's stamp, a float array's arrival); 0 = max_image_age_s. A
    # joint-state driver or float-array feed slower than 1/max_image_age_s needs its own limit
    "max_proprio_age_s": 0.0,
    # proprio.source joint_state: a step whose joint state and any of its images are stamped further apart than
    # this is skipped (config/policy.yaml says why 0.1 s)
    "max_joint_state_skew_s": 0.1,
    "stale_action": "none",  # "none": publish nothing; "zero": publish a zero twist
    "enabled": False,  # gate: False = dry run (compute + record, actuate nothing)
    "hold_rate_hz": 0.0,  # >0: republish the last twist at this rate ...
    "hold_max_s": 0.5,  # ... for at most this long after the action was computed
    "budget.average_gflops": 0.0,
    "budget.peak_gflops": 0.0,
    "budget.peak_ms": 0.0,
    "budget.memory_bytes": 0,
    "budget.deadline_ms": 0.0,
    "budget.metric": "llm_gflops",
    # True: an online tracker scales the thresholds so the running mean holds budget.average_gflops (the
    # thresholds file was solved for one budget on calibration scenes; without it another average is not held)
    "budget.track_average": True,
    "fixed_exit": 0,  # >0: always use this exit (baseline); 0 = dynamic early exit
    # exit criterion: "" = the one the thresholds file was solved for; "consecutive" (DeeR's) or "learned" (the
    # checkpoint's exit gates: deer-vla train-gate, then deer-vla calibrate --criterion learned) insist on it, and
    # a file solved for the other is refused
    "criterion": "",
    # fidelity guarantee (deer-vla calibrate --risk): >0 re-tests the thresholds file's certified family for this
    # eps (and the average budget) at configure; 0 = use the file as it is (its own guarantee, if any)
    "risk.eps": 0.0,
    "risk.delta": 0.1,  # may not be below the delta the file was calibrated at
    "record_path": "",  # MCAP file for the policy's inputs and outputs per step ("" = off)
    # the recording goes on in <stem>_1.mcap, <stem>_2.mcap, ... past this size or time (0 = no limit of that kind;
    # configure-time): bounds the writer's memory and each file on a robot that runs for days (mcap_io says why)
    "record_split_mib": DEFAULT_SPLIT_MIB,
    "record_split_s": DEFAULT_SPLIT_S,
    # only the newest N parts of the recording stay on disk, the oldest deleted as a part begins (0 = all;
    # configure-time): at 10 Hz two 64 px cameras record up to ~0.9 GB/h
    "record_keep_parts": 0,
    "autostart": False,  # configure + activate on start (for running the executable alone)
    # torch intra-op threads, set at configure (0 = torch's default, one per core). 1 by measurement: beside
    # other busy processes more threads oversubscribe the cores (docs/RESULTS.md, bench_node_latency --cpu-load)
    "torch_threads": 1,
    # seconds between the node's own status on /diagnostics (steps, skips by reason, input ages; configure-time)
    "diagnostics_period_s": 1.0,
}


# what `ros2 param describe` and rqt_reconfigure show (config/policy.yaml has the longer story); the limits and
# whether a parameter changes at run time are added by the node (parameter_constraints, RUNTIME_PARAMS)
PARAMETER_DESCRIPTIONS: dict[str, str] = {
    "checkpoint_dir": 'policy checkpoint: a directory, or the name of a checkpoint shipped in the package '
                      '(deer_vla/assets/<name>_checkpoint, e.g. "default"); "" = "default". An existing path wins '
                      'over a name.',
    "thresholds_file": 'exit thresholds (deer-vla calibrate); "" = <checkpoint_dir>/thresholds.json',
    "device": "cpu, cuda or cuda:N (a GPU this machine lacks fails configure)",
    "image_topics": "camera topics in the checkpoint's camera order; one whose last name is 'compressed' is read "
                    "as sensor_msgs/CompressedImage (image_transport), the others as sensor_msgs/Image",
    "instruction_topic": "std_msgs/String instruction (latched and plain publishers both heard)",
    "max_instruction_chars": "a longer instruction message is refused and the previous one kept",
    "repeated_instruction": "the same instruction again: reset (a new episode) or keep (carry on)",
    "unfamiliar_instruction": "an instruction unlike every wording the checkpoint was trained on: warn, refuse "
                              "(keep the previous), strict (keep the previous for every text warn runs at WARN) or "
                              "off",
    "min_instruction_similarity": "below this cosine similarity to the nearest trained wording an instruction is "
                                  "unfamiliar",
    "proprio_topic": "std_msgs/Float32MultiArray of the checkpoint's proprio names, in order; \"\" = none",
    "proprio.source": "array (proprio_topic) or joint_state (sensor_msgs/JointState on proprio.joint_state_topic)",
    "proprio.joint_state_topic": "sensor_msgs/JointState topic read with proprio.source joint_state",
    "twist_topic": "geometry_msgs/TwistStamped out, m/s and rad/s (remap to /servo_node/delta_twist_cmds for "
                   "MoveIt Servo)",
    "gripper_topic": "gripper command out (gripper.output says its type)",
    "gripper.output": "unit: std_msgs/Float64, -1 open .. +1 closed; positions: std_msgs/Float64MultiArray of each "
                      "gripper joint's position (forward_command_controller)",
    "gripper.open_positions": "with gripper.output positions: each gripper joint's open position, in the "
                              "controller's order",
    "gripper.closed_positions": "with gripper.output positions: each gripper joint's closed position (as many as "
                                "gripper.open_positions)",
    "action_topic": "std_msgs/Float32MultiArray out: the normalised 7-D action (x, y, z, roll, pitch, yaw, gripper)",
    "record_topic": "std_msgs/String out: one JSON step record per step (the monitor reads it)",
    "frame_id": 'TF frame of the twists sent (header.frame_id); "" = the checkpoint\'s action frame (the one its '
                'demonstrations\' actions were recorded in), base_link for a checkpoint that records none.',
    "control_mode": "timer: a step every 1/rate_hz on the newest inputs; event: a step per new observation (a "
                    "lock-step source such as the simulator)",
    "rate_hz": "control rate; 0 = the checkpoint's (its demonstrations'), 10 Hz for one that records none",
    "max_image_age_s": "an image stamped longer ago is stale: no step on it, and a step that ends later publishes "
                       "no action",
    "max_image_skew_s": "the cameras' newest images stamped further apart are not one observation",
    "max_image_future_s": "an image stamped further ahead of the node clock is not fresh (a wrong camera clock)",
    "max_proprio_age_s": "a joint state stamped, or a float-array proprio arrived, longer ago is stale; 0 = "
                         "max_image_age_s",
    "max_joint_state_skew_s": "proprio.source joint_state: a joint state and an image stamped further apart are "
                              "not one observation",
    "stale_action": "a period without an action: none = publish nothing, zero = a zero twist",
    "enabled": "actuation gate: false = dry run (the ~/halt and ~/enable services set it)",
    "hold_rate_hz": "> 0: re-send the last twist, restamped, at this rate (MoveIt Servo's command timeout); 0 = off",
    "hold_max_s": "hold_rate_hz re-sends a twist for at most this long, and not past a period that produces no "
                  "action (stale inputs, a failed or late step)",
    "budget.average_gflops": "average compute budget per step (budget.metric); 0 = unset",
    "budget.peak_gflops": "peak compute budget per step (budget.metric): no deeper exit; 0 = unset",
    "budget.peak_ms": "latency budget per step, by this machine's profiled exit times; 0 = unset",
    "budget.memory_bytes": "accelerator memory budget: only the exits whose weights fit are loaded; 0 = unset",
    "budget.deadline_ms": "each step stops at the exit it can finish by this deadline; 0 = unset",
    "budget.metric": "what the GFLOPs budgets count: llm_gflops (the decoder) or total_gflops",
    "budget.track_average": "an online tracker holds budget.average_gflops on the run's own inputs",
    "fixed_exit": "> 0: always this exit (a static model); 0 = dynamic",
    "criterion": 'exit criterion: "" = the thresholds file\'s own; consecutive (DeeR\'s) or learned (exit gates)',
    "risk.eps": "> 0: re-test the thresholds file's certified family for this fidelity limit",
    "risk.delta": "confidence of risk.eps (not below the file's own)",
    "record_path": 'MCAP recording of every step\'s inputs and outputs (deer-vla replay reads it); "" = none',
    "record_split_mib": "the recording goes on in a new part past this size (MiB); 0 = no size limit, else >= 1",
    "record_split_s": "the recording goes on in a new part past this many seconds; 0 = no limit, else >= 10",
    "record_keep_parts": "only the newest N parts stay on disk; 0 = every part",
    "autostart": "configure and activate at start-up (the plain executable; launch files drive the lifecycle)",
    "torch_threads": "torch intra-op threads, set at configure; 0 = torch's default (one per core)",
    "diagnostics_period_s": "seconds between the node's own status on /diagnostics",
}


def parameter_constraints(name: str) -> str:
    """The limits PolicyParams puts on ``name`` (a ROS parameter name), as `ros2 param describe` shows them:
    choices, bounds, list lengths; "" where the type says it all."""
    field = PolicyParams.model_fields[name.replace(".", "_")]
    said = []
    choices = getattr(field.annotation, "__args__", ()) if getattr(field.annotation, "__origin__", None) is Literal \
        else ()
    if choices:
        said.append("one of " + ", ".join(repr(c) for c in choices))
    if name in VALIDATOR_LIMITS:  # what a validator refuses beyond the field's own bounds says it all
        return "; ".join([*said, VALIDATOR_LIMITS[name]])
    words = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "min_length": "at least", "max_length": "at most"}
    unit = "character(s)" if field.annotation is str else "item(s)"
    for limit in field.metadata:
        for attr, word in words.items():
            value = getattr(limit, attr, None)
            if value is not None:
                said.append(f"{word} {value:g}" if attr in ("ge", "gt", "le", "lt") else f"{word} {value} {unit}")
    return "; ".join(said)


# limits a validator applies, said in its words (the field's own bounds would mislead: rate_hz 0.005 is refused)
VALIDATOR_LIMITS: dict[str, str] = {
    "rate_hz": f"0 (the checkpoint's) or {MIN_RATE_HZ:g}..1000",
    "hold_rate_hz": f"0 (off) or {MIN_RATE_HZ:g}..1000",
    "max_joint_state_skew_s": "> 0",
    "record_split_mib": f"0 (no size limit) or >= {MIN_SPLIT_MIB:g}",
    "record_split_s": f"0 (no time limit) or >= {MIN_SPLIT_S:g}",
    "record_keep_parts": f"0..{MAX_KEEP_PARTS} (0 = every part)",
    "frame_id": f"a TF frame id: no spaces, at most {MAX_FRAME_CHARS} characters; \"\" = the checkpoint's",
    "gripper.open_positions": "1..16 finite values, as many as gripper.closed_positions (checked at configure)",
    "gripper.closed_positions": "1..16 finite values, as many as gripper.open_positions (checked at configure)",
}


class PolicyParams(BaseModel):
    # strict: `true` is not a number and "1.5" is not a float (ROS would keep storing the string); an int is
    # still a valid float, so `budget.average_gflops: 1` in YAML works
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    checkpoint_dir: str
    thresholds_file: str
    device: str
    image_topics: list[str] = Field(min_length=1, max_length=16)  # as many as the checkpoint has cameras (configure)
    instruction_topic: str = Field(min_length=1)
    max_instruction_chars: int = Field(ge=1, le=MAX_INSTRUCTION_CHARS)
    repeated_instruction: Literal["reset", "keep"]
    unfamiliar_instruction: Literal["off", "warn", "refuse", "strict"]
    min_instruction_similarity: float = Field(ge=0, le=1)
    proprio_topic: str
    proprio_source: Literal["array", "joint_state"]
    proprio_joint_state_topic: str = Field(min_length=1)
    twist_topic: str = Field(min_length=1)
    gripper_topic: str = Field(min_length=1)
    gripper_output: Literal["unit", "positions"]
    gripper_open_positions: list[float] = Field(min_length=1, max_length=16)
    gripper_closed_positions: list[float] = Field(min_length=1, max_length=16)
    action_topic: str = Field(min_length=1)
    record_topic: str = Field(min_length=1)
    frame_id: str  # "" = the checkpoint's, settled at configure (with_frame)
    control_mode: Literal["event", "timer"]
    rate_hz: float = Field(ge=0, le=MAX_CONTROL_RATE_HZ)  # 0 = the checkpoint's, settled at configure (with_rate)
    max_image_age_s: float = Field(gt=0)
    max_image_skew_s: float = Field(gt=0)
    max_image_future_s: float = Field(gt=0)
    max_proprio_age_s: float = Field(ge=0)  # 0 = max_image_age_s: proprio_age
    max_joint_state_skew_s: float  # > 0: _joint_state_skew_limit
    stale_action: Literal["none", "zero"]
    enabled: bool
    hold_rate_hz: float = Field(ge=0, le=1000)  # 0 = off, else >= MIN_RATE_HZ: _hold_rate
    hold_max_s: float = Field(ge=0)
    budget_average_gflops: float = Field(ge=0)
    budget_peak_gflops: float = Field(ge=0)
    budget_peak_ms: float = Field(ge=0)
    budget_memory_bytes: int = Field(ge=0)
    budget_deadline_ms: float = Field(ge=0)
    budget_metric: Literal["llm_gflops", "total_gflops"]
    budget_track_average: bool
    fixed_exit: int = Field(ge=0)
    criterion: Literal["", "consecutive", "learned"]
    risk_eps: float = Field(ge=0)
    risk_delta: float = Field(gt=0, lt=1)
    record_path: str
    record_split_mib: float
    record_split_s: float
    record_keep_parts: int
    autostart: bool
    torch_threads: int = Field(ge=0, le=1024)
    diagnostics_period_s: float = Field(ge=MIN_DIAGNOSTICS_PERIOD_S, le=MAX_DIAGNOSTICS_PERIOD_S)  # finite by these

    @field_validator("*", mode="before")
    @classmethod
    def _finite(cls, v: Any) -> Any:
        """Every number parameter is finite, said before its bounds ("less than or equal to 1000" for a NaN)."""
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"must be finite, got {v}")
        return v

    @field_validator("record_split_mib")
    @classmethod
    def _split_mib(cls, v: float) -> float:
        return check_split_mib(v)

    @field_validator("record_split_s")
    @classmethod
    def _split_s(cls, v: float) -> float:
        return check_split_s(v)

    @field_validator("record_keep_parts", mode="before")
    @classmethod
    def _keep_parts(cls, v: Any) -> int:
        return check_keep_parts(v)

    @field_validator("rate_hz", "hold_rate_hz")
    @classmethod
    def _rate_or_zero(cls, v: float, info: ValidationInfo) -> float:
        if 0 < v < MIN_RATE_HZ:
            zero = "the checkpoint's control rate" if info.field_name == "rate_hz" else "off"
            raise ValueError(f"must be 0 ({zero}) or at least {MIN_RATE_HZ:g} Hz, got {v:g}")
        return v

    @field_validator("frame_id")
    @classmethod
    def _frame_id(cls, v: str) -> str:
        # ROS 1's "/base_link" (parameter files that worked before frames were checked): tf2 ids carry no '/'
        return check_frame_id(v[1:] if isinstance(v, str) and v.startswith("/") else v, "frame_id")

    @field_validator("checkpoint_dir")
    @classmethod
    def _checkpoint_name(cls, v: str, info: ValidationInfo) -> str:
        if info.context is not None and not info.context.get("check_checkpoint", True):
            return v  # a configured node's: looked up and loaded at configure (its folder may have moved since)
        try:
            resolve_checkpoint(v)  # an unknown bare name fails here, listing the shipped names
        except OSError as exc:  # e.g. a name too long for the file system: a refusal, not a crash
            raise ValueError(f"not a usable path: {exc.strerror or exc}") from None
        return v

    @field_validator("max_joint_state_skew_s")
    @classmethod
    def _joint_state_skew_limit(cls, v: float) -> float:
        if not v > 0:
            raise ValueError(f"must be > 0 s, got {v}; to turn the check off set it to at least the larger of "
                             "max_image_age_s and max_proprio_age_s, plus max_image_future_s (the age checks "
                             "already bound the gap by that)")
        return v

    @field_validator("unfamiliar_instruction", mode="before")
    @classmethod
    def _off_as_yaml_reads_it(cls, v: Any) -> Any:
        """YAML 1.1 (rcl's parameter files, `ros2 param set`) reads an unquoted off as false."""
        return "off" if v is False else v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not is_device_name(v):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {shown_value(v)}")
        return v  # whether this machine has it is checked at configure (model.device.check_device)

    @model_validator(mode="after")
    def _paired(self) -> PolicyParams:
        if len(set(self.image_topics)) != len(self.image_topics):
            raise ValueError(f"image_topics must differ, got {shown_value(self.image_topics)}")
        if any(not t for t in self.image_topics):
            raise ValueError(f"image_topics must be non-empty names, got {shown_value(self.image_topics)}")
        return self

    @field_validator("gripper_open_positions", "gripper_closed_positions")
    @classmethod
    def _finite_positions(cls, v: list[float]) -> list[float]:
        if not all(math.isfinite(x) for x in v):
            raise ValueError(f"gripper positions must be finite, got {shown_value(v)}")
        return v

    def gripper_problem(self) -> str | None:
        """Why gripper.open_positions and gripper.closed_positions do not make a gripper command, or None.
        Asked at configure, not at each parameter set: a gripper of one more joint changes both lists, and
        `ros2 param set` / `ros2 param load` set them one at a time."""
        opened, closed = self.gripper_open_positions, self.gripper_closed_positions
        if len(opened) != len(closed):
            return (f"gripper.open_positions has {len(opened)} value(s), gripper.closed_positions {len(closed)}: "
                    "one per joint of the gripper's controller, in its order")
        if opened == closed:
            return f"gripper.open_positions and gripper.closed_positions are the same {opened}: the gripper would " \
                   "never move"
        return None

    @model_validator(mode="after")
    def _risk_needs_dynamic_exits(self) -> PolicyParams:
        if self.risk_eps > 0 and self.fixed_exit:
            raise ValueError("risk.eps certifies dynamic exits; it cannot apply with fixed_exit set")
        return self

    @property
    def checkpoint(self) -> Path:
        """The checkpoint folder: checkpoint_dir as a path, or the shipped checkpoint it names."""
        return resolve_checkpoint(self.checkpoint_dir)

    @property
    def thresholds_path(self) -> Path:
        if self.thresholds_file:
            return Path(self.thresholds_file).expanduser()
        return CheckpointDir(self.checkpoint).thresholds_path

    @property
    def proprio_input_topic(self) -> str:
        """The topic proprioception is read from ("" = none): per proprio.source."""
        return self.proprio_joint_state_topic if self.proprio_source == "joint_state" else self.proprio_topic

    @property
    def proprio_age(self) -> tuple[float, str]:
        """The proprioception's age limit in seconds, and the parameter it comes from (for messages)."""
        if self.max_proprio_age_s:
            return self.max_proprio_age_s, "max_proprio_age_s"
        return self.max_image_age_s, "max_image_age_s"

    @property
    def record_split(self) -> SplitLimits:
        return split_limits(self.record_split_mib, self.record_split_s, self.record_keep_parts)

    def with_rate(self, checkpoint_rate_hz: float | None) -> PolicyParams:
        """These parameters with rate_hz 0 settled: the checkpoint's control rate, else DEFAULT_RATE_HZ."""
        if self.rate_hz:
            return self
        return self.model_copy(update={"rate_hz": float(checkpoint_rate_hz or DEFAULT_RATE_HZ)})

    def with_frame(self, checkpoint_frame: str) -> PolicyParams:
        """These parameters with frame_id "" settled: the checkpoint's action frame, else DEFAULT_FRAME_ID."""
        if self.frame_id:
            return self
        return self.model_copy(update={"frame_id": checkpoint_frame or DEFAULT_FRAME_ID})

    @property
    def period_s(self) -> float:
        if not self.rate_hz:
            raise ValueError("rate_hz 0 is settled at configure from the checkpoint (PolicyParams.with_rate)")
        return 1.0 / self.rate_hz

    def budget_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for control.BudgetSpec (unset budgets -> None)."""
        unset = lambda v: v if v > 0 else None
        return {
            "average_gflops": unset(self.budget_average_gflops),
            "peak_gflops": unset(self.budget_peak_gflops),
            "peak_ms": unset(self.budget_peak_ms),
            "memory_bytes": unset(self.budget_memory_bytes),
            "deadline_ms": unset(self.budget_deadline_ms),
            "metric": self.budget_metric,
        }


def crossed_camera_topics(cameras: Sequence[str], topics: Sequence[str]) -> list[tuple[str, str]]:
    """(slot, topic) pairs where a topic feeds a camera slot while its path names another of the model's
    cameras and not this one (``camera/static/image_raw`` into slot ``wrist``): image_topics given in another
    order than the model's cameras, which would feed each slot the other camera's pictures."""
    crossed = []
    for camera, topic in zip(cameras, topics):
        parts = set(topic.strip("/").split("/"))
        if camera not in parts and any(other in parts for other in cameras if other != camera):
            crossed.append((camera, topic))
    return crossed


MAX_SHOWN_CHARS = 200  # of a refused value in a refusal (`ros2 param set` prints all of it: 1 MB was sent back)


def shown_value(value: Any) -> str:
    """``repr(value)``, cut to MAX_SHOWN_CHARS with its length said."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN_CHARS else f"{text[:MAX_SHOWN_CHARS]}... ({len(text)} characters)"


class ParameterError(ValueError):
    """A parameter value is invalid; the message names every bad parameter and value (``problems``, one
    sentence each)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid policy parameters: " + "; ".join(problems))


def parse_params(values: dict[str, Any], *, check_checkpoint: bool = True) -> PolicyParams:
    """Validate ROS parameter values (dotted names) into PolicyParams. ``check_checkpoint=False``: leave
    ``checkpoint_dir`` unresolved (a configured node's, whose checkpoint is already loaded)."""
    # rclpy hands array parameters over as array.array ('d', 'q'): a list to the model, as a file gives them
    data = {name.replace(".", "_"): list(value) if isinstance(value, array.array | tuple) else value
            for name, value in values.items()}
    try:
        return PolicyParams.model_validate(data, context={"check_checkpoint": check_checkpoint})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            if not err["loc"]:  # a check across parameters: its message names them (the input is every value)
                problems.append(str(err["msg"]).removeprefix("Value error, "))
                continue
            field, *within = (str(p) for p in err["loc"])  # a list's item: (field, index)
            ros_name = next((n for n in values if n.replace(".", "_") == field), field)
            shown = values.get(ros_name, err.get("input"))
            shown = list(shown) if isinstance(shown, array.array) else shown
            item = f"item {'.'.join(within)}: " if within else ""
            problems.append(f"parameter '{ros_name}' = {shown_value(shown)}: {item}{err['msg']}")
        raise ParameterError(problems) from None


def unknown_names(given: Iterable[str], declared: Iterable[str]) -> list[tuple[str, str | None]]:
    """Each name in ``given`` (overrides rclpy matched to a node) that is not in ``declared``, sorted, with the
    closest declared name or None. ``qos_overrides.*`` are rclpy's own. Shared by every node's check."""
    known = sorted(declared)
    unknown = sorted(n for n in given if n not in known and not n.startswith("qos_overrides."))
    return [(name, next(iter(difflib.get_close_matches(name, known, n=1)), None)) for name in unknown]


def unknown_parameters(given: Iterable[str], declared: Iterable[str]) -> str | None:
    """Why some parameters given to the node (parameter files, launch, ``-p``) would be ignored: rclpy drops a
    name the node does not declare without a word, so a misspelt key silently keeps its default. -> a message
    naming each with the closest declared name, or None."""
    unknown = unknown_names(given, declared)
    if not unknown:
        return None
    named = [f"'{name}'" + (f" (did you mean '{close}'?)" if close else "") for name, close in unknown]
    return (f"unknown parameter(s) {', '.join(named)}: the node would ignore them; "
            "config/policy.yaml lists every parameter")
