"""Policy node: camera images + instruction in; TwistStamped, gripper, raw action and step record out.

A managed (lifecycle) node: configure loads the checkpoint, its cost
profile and the thresholds and validates every parameter; activate starts
stepping and publishing; deactivate stops (model stays loaded); cleanup
unloads. Independently of the lifecycle state, actuation is gated: until
``enabled`` is true (parameter or ~/enable service) the node computes and
publishes step records (dry run) but nothing a robot would act on.

Threads: the executor thread only receives, checks and hands the newest
observation to one worker thread (a one-slot buffer: a frame that arrives
while a step runs replaces the waiting one, never queues). The model step and
its publishing run in the worker; the node's services and the hold timer stay
on the executor (their own callback group) and answer while a step runs. The
lifecycle and parameter services are rclpy's, in its default group: configure
(seconds) holds them and, under a single-threaded executor, the rest; a
multi-threaded executor runs them beside the node's callbacks, which the gate
and the instruction check allow for (docs/ros.md, "Executor").
Actuation goes through one lock: ~/halt, deactivate and disable bump a
generation number under it (and send a zero twist), and a step that started
before them publishes no action. ``control_mode``: ``timer`` (default) steps
at ``rate_hz`` on the newest inputs; ``event`` on each complete observation,
for a lock-step source (the simulator).
"""
from __future__ import annotations

import array
import functools
import math
import re
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import TwistStamped
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float32MultiArray, Float64, Float64MultiArray, String
from std_srvs.srv import SetBool, Trigger

from deer_vla.core import Observation, ProprioError
from deer_vla.core.action_spec import recorded_gripper_values, same_link
from deer_vla.core.instruction_text import clean_instruction
from deer_vla.core.log_text import quoted
from deer_vla.core.stamp_pairing import StampedHistory
from deer_vla.data.image_msg import (
    CompressedFrame,
    ImageConversionError,
    check_compressed_msg,
    image_msg_to_rgb,
    is_compressed_topic,
)
from deer_vla.model.checkpoint_dir import CheckpointDir
from deer_vla.model.device import check_device
from deer_vla.model.instruction_words import refusal
from deer_vla.ros.actions import RobotCommand, UnsafeActionError, gripper_positions, to_robot_command, zero_command
from deer_vla.ros.budget_monitor import ERROR
from deer_vla.ros.diagnostic_names import status_name
from deer_vla.ros.health import (
    HealthSnapshot,
    InputAge,
    Moment,
    PolicyStatus,
    image_problem,
    outputs_status,
    policy_status,
    unconfigured_status,
)
from deer_vla.ros.instruction_check import InstructionCheck
from deer_vla.ros.instruction_input import INSTRUCTION_QOS, INSTRUCTION_QOS_VOLATILE, CopyFilter
from deer_vla.ros.joint_state import JointStateProprio, skew_problem, stamp_problem
from deer_vla.ros.lifecycle import guard_change_state, report_errors
from deer_vla.ros.log_health import LogHealth
from deer_vla.ros.node_main import run_node
from deer_vla.ros.node_parameters import topic_name_problem, unknown_overrides
from deer_vla.ros.params import (
    BUDGET_PARAMS,
    MAX_DIAGNOSTICS_PERIOD_S,
    MIN_DIAGNOSTICS_PERIOD_S,
    PARAMETER_DESCRIPTIONS,
    POLICY_DEFAULTS,
    POLICY_NODE_NAME,
    START_UP_PARAMS,
    ParameterError,
    PolicyParams,
    crossed_camera_topics,
    parameter_constraints,
    parse_params,
    unknown_parameters,
)
from deer_vla.ros.policy_backend import (
    ConfigurationError,
    PolicyStack,
    TrackerCarry,
    check_budget,
    load_stack,
    make_budget,
)
from deer_vla.ros.recorder import CLOSE_WAIT_S, BackgroundRecorder, PolicyRecorder
from deer_vla.ros.worker import StepWorker

# Parameters that may change while configured; the rest need cleanup + configure.
RUNTIME_PARAMS = (set(BUDGET_PARAMS) - {"fixed_exit"}) | {
    "enabled", "stale_action", "max_image_age_s", "max_image_skew_s", "max_image_future_s", "max_proprio_age_s",
    "hold_rate_hz",
    "hold_max_s", "max_joint_state_skew_s", "max_instruction_chars", "repeated_instruction",
    "unfamiliar_instruction", "min_instruction_similarity",
}
OUTPUT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
OUTPUTS = ("twist", "gripper")  # the outputs that move the robot: another publisher on one is a WARN
DIAGNOSTICS_TOPIC = "/diagnostics"  # absolute, as diagnostic_aggregator and rqt_robot_monitor expect
# use_sim_time: how often the sim clock is checked on wall time, and how long it may stand before it is said
CLOCK_WATCH_S = 1.0
CLOCK_FROZEN_S = 3.0
SYSTEM_CLOCK_STEP_S = 1.0  # the system clock moving this much more or less than the steady clock between watches


@dataclass
class CameraFrame:
    # RGB (a raw frame, converted on arrival: 0.13 ms at 480x640, and off the step's critical path), or a
    # compressed frame whose header was checked on arrival and that is decoded when a step first takes it, in
    # the step worker: decoding every frame on the executor thread held ~/halt behind it (a 4K JPEG decodes in
    # ~60 ms: ~/halt p95 273 ms under two 30 Hz cameras, 3.8 ms decoded in the worker), and in timer mode most
    # frames are never stepped on
    image: np.ndarray | CompressedFrame | ImageConversionError
    stamp_ns: int  # header stamp (node clock if the header had none)
    msg: Image | CompressedImage  # as it came: recorded as it came (a compressed frame stays compressed)
    received_ns: int  # perf_counter_ns at arrival (the order of arrivals, latency)
    arrived: Moment  # the same moment, for its age on /diagnostics

    @property
    def rgb(self) -> np.ndarray:
        """The frame as RGB; ImageConversionError (every time) for a compressed frame that does not decode."""
        image = self.image
        if isinstance(image, CompressedFrame):
            try:
                image = image.decode()
            except ImageConversionError as exc:
                image = exc
            self.image = image  # decoded once, whichever thread asks first
        if isinstance(image, ImageConversionError):
            raise image
        return image

    @property
    def decoded(self) -> bool:
        return not isinstance(self.image, CompressedFrame)


@dataclass
class StepJob:
    """What the worker needs for one step, snapshotted on the executor thread."""

    frames: dict[str, CameraFrame]
    instruction: str
    proprio: np.ndarray | None
    episode_gen: int  # the step belongs to this episode (a new instruction or reset bumps it)
    actuation_gen: int  # halt/disable/deactivate bump it: an older step's action is not published

    @property
    def oldest_stamp_ns(self) -> int:
        """The oldest image's stamp: the step's action is as old as the picture it comes from."""
        return min(f.stamp_ns for f in self.frames.values())

    def outlived(self, now_ns: int, max_age_s: float, max_future_s: float) -> str | None:
        """Why the step's images, fresh when it was handed over, are not at ``now_ns`` (or None): its oldest is
        past ``max_age_s`` (a slow step), or its newest is ahead of the node clock by more than ``max_future_s``
        (the clock went back while it ran: a simulator reset under use_sim_time; those images are not of now)."""
        newest = max(f.stamp_ns for f in self.frames.values())
        return (stamp_problem(newest, now_ns, math.inf, max_future_s)
                or stamp_problem(self.oldest_stamp_ns, now_ns, max_age_s, math.inf))


PROPRIO_INPUT = "~proprio"  # the proprioception's key among the inputs (camera names cannot start with "~")


@dataclass
class NodeStats:
    steps: int = 0
    actions_published: int = 0
    stale: int = 0
    dropped: int = 0  # observations replaced by a newer one before the worker took them
    discarded: int = 0  # steps finished after halt/disable/deactivate/new episode: action not published
    rejected_images: int = 0
    # proprio messages refused (length, NaN/inf, outside the checkpoint's limits; JointState: a joint missing,
    # malformed, stale or future stamp)
    rejected_proprio: int = 0
    # longer than max_instruction_chars, or unfamiliar under unfamiliar_instruction "refuse": the previous one stays
    rejected_instructions: int = 0
    repeated_instructions: int = 0  # the same text again under repeated_instruction "keep": ignored
    # instructions (each text once) longer than the model reads (lm.max_text_len tokens): their end is ignored
    cut_instructions: int = 0
    # inputs byte-identical to the step that was running when they arrived (a lock-step simulator's re-send of
    # an observation the policy was still computing): not stepped again, so the sender gets one answer
    repeated_inputs: int = 0
    model_errors: int = 0
    unsafe_actions: int = 0
    no_instruction: int = 0
    hold_published: int = 0
    # steps the record_path recording could not take (disk full): control goes on, /diagnostics says it
    recording: LogHealth = field(default_factory=LogHealth)
    # (message in -> action out) and model time per step, ms; for the latency benchmark
    latency_ms: deque = field(default_factory=lambda: deque(maxlen=10000))
    # steps that gave no action, by health.SKIP_REASONS key, and the latest sentence per reason (/diagnostics)
    skipped: Counter[str] = field(default_factory=Counter)
    skip_details: dict[str, str] = field(default_factory=dict)
    # on both clocks (health.Moment): ages are read on the monotonic one, or the sim clock under use_sim_time
    # (a ROS clock that jumps back, a simulator reset or a bag played in a loop, then falls back to monotonic)
    last_step: Moment | None = None  # when the last step finished
    last_action: Moment | None = None  # ... and when the last action went out

    # messages refused per input (a camera name, "~proprio") and the latest reason: /diagnostics says an input
    # arrives and is refused, not that it never came
    refused: Counter[str] = field(default_factory=Counter)
    refusals: dict[str, str] = field(default_factory=dict)

    def skip(self, reason: str, detail: str) -> None:
        self.skipped[reason] += 1
        self.skip_details[reason] = detail

    def refuse(self, source: str, reason: str) -> None:
        self.refused[source] += 1
        self.refusals[source] = reason

    @property
    def future_stamps(self) -> int:
        """Steps refused because an image was stamped ahead of the node clock."""
        return self.skipped["future_image"]

    @property
    def joint_state_skew(self) -> int:
        """Steps refused because the joint state and an image were stamped further apart than
        max_joint_state_skew_s."""
        return self.skipped["joint_state_skew"]

    @property
    def record_errors(self) -> int:
        """Steps (and closes) the record_path recording could not take."""
        return self.recording.errors


class PolicyNode(LifecycleNode):
    # how long cleanup/shutdown waits for a running step; one that outlives it is dropped when it ends
    worker_stop_timeout_s = 10.0

    def __init__(self, name: str = POLICY_NODE_NAME, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        guard_change_state(self)  # an invalid ~/change_state request is refused, not fatal
        # Types are checked by parse_params (clear message naming the parameter and value), so
        # `budget.average_gflops: 1` in YAML or `ros2 param set ... 1` is accepted as 1.0.
        for key, value in POLICY_DEFAULTS.items():
            when = ("changeable at run time" if key in RUNTIME_PARAMS else "read at start-up"
                    if key in START_UP_PARAMS else "applied at configure")
            limits = parameter_constraints(key)
            described = ParameterDescriptor(dynamic_typing=True, description=PARAMETER_DESCRIPTIONS[key],
                                            additional_constraints=f"{limits}; {when}" if limits else when)
            self.declare_parameter(key, value, described)
        self.add_on_set_parameters_callback(self._validate_parameter_change)
        self.add_post_set_parameters_callback(self._apply_parameter_change)
        self.params: PolicyParams | None = None
        self.stack: PolicyStack | None = None
        self._initial_torch_threads: int | None = None
        self.stats = NodeStats()
        self.active = False
        self.enabled = bool(self.get_parameter("enabled").value)
        # what last closed the gate, said in /diagnostics; the next closing's cause, set by who closes it
        self._gated_by = "" if self.enabled else "enabled: false at start"
        self._gate_forced_shut = False  # the parameter could not be set false: closed until an explicit enable
        self._closing = threading.local()  # .why: the cause being applied, per thread (services run beside)
        self.instruction: str | None = None
        self._dropped_why: str | None = None  # why no instruction is in force, when one was (refused, dropped)
        self._instruction_key: str | None = None  # as the model reads it (PolicyRunner.instruction_key)
        self._cut_said: str | None = None  # the last instruction whose ignored end was reported
        # the configured checkpoint's trained wordings, to say what an instruction is heard as (configure)
        self._instruction_check: InstructionCheck | None = None
        self._refused_text: str | None = None  # the last text refused as unfamiliar (its repeats are throttled)
        self._instruction_read: str | None = None  # the instruction in force as the configured model reads it
        self._instruction_lock = threading.Lock()  # judging and taking an instruction (see _on_instruction)
        # applying a parameter change (post-set): rclpy stores a value, then calls back, unlocked; two changes from
        # two callback groups (a parameter set, ~/enable) applied at once left the older snapshot in force, or the
        # gate shut under an `enabled` parameter an enable had set true since
        self._apply_lock = threading.RLock()
        self.proprio: np.ndarray | None = None
        self._proprio_ns = -1
        self._proprio_arrived: Moment | None = None
        self._proprio_stamp_ns: int | None = None  # header stamp of the JointState the proprio came from
        self._proprio_refused_since = False  # messages refused since the last one accepted (why it went stale)
        # recent stamped joint states: a step pairs its images with the one stamped nearest them
        # (message_filters' ApproximateTime), not the newest, which a camera's latency puts ahead of the picture
        self._joint_history: StampedHistory[np.ndarray] = StampedHistory()
        self._joint_map: JointStateProprio | None = None  # proprio.source joint_state: names -> joint values
        self.frames: dict[str, CameraFrame] = {}
        self._used_ns: dict[str, int] = {}  # arrival time of the frames the last step used, per camera
        self._last_stepped: tuple[StepJob, int] | None = None  # the last step's inputs, perf_counter_ns at its end
        self.last_record: Any = None
        self._last_command: RobotCommand | None = None
        self._last_command_at = Moment(0, 0)  # when it went out (its clock_ns is the twist's stamp)
        self._subs: list[Any] = []
        # the instruction's subscriptions outlive a cleanup (see _subscribe_instruction): their topic, and the
        # newest text heard while no configuration was there to judge it
        self._instruction_subs: list[Any] = []
        self._instruction_topic: str | None = None
        self._heard_unconfigured: str | None = None
        # the last configuration's online tracker, over a cleanup: the same one configured again carries it on
        self._tracker_carry: TrackerCarry | None = None
        self._pubs: dict[str, Any] = {}
        self._shared_outputs = 0  # output topics another node publishes on too, at the last status
        self._control_timers: list[Any] = []  # timer-mode steps (not `_timers`: rclpy's Node keeps its own list there)
        self._recorder: BackgroundRecorder | None = None
        self._finishing_recordings: list[BackgroundRecorder] = []  # closes that gave up on a stalled disk
        # the node's services and the hold timer in one group, inputs in another: a multi-threaded executor runs
        # them apart; with any executor they stay quick because the model step runs in the worker thread
        self._control_group = MutuallyExclusiveCallbackGroup()
        self._input_group = MutuallyExclusiveCallbackGroup()
        self._actuation = threading.Lock()  # publishing actuation, and the gate/generation it checks
        self._actuation_gen = 0
        self._episode_gen = 0
        self._running_job: StepJob | None = None  # the step the worker runs now
        self._episode_applied = 0  # the episode the controller's state belongs to (worker thread)
        self._worker: StepWorker[StepJob] | None = None
        self._hold_timer: Any = None
        self._health_before: HealthSnapshot | None = None  # the previous period's, for its counts
        # /diagnostics from construction on: a node that is not configured, or whose configure failed, says so
        # on the robot's monitor instead of being absent from it
        self._configure_error: str | None = None
        # a transition that raised (report_errors), until a configure succeeds or fails: /diagnostics says it
        self._transition_error: str | None = None
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        self._steady_clock = Clock(clock_type=ClockType.STEADY_TIME)
        self._diagnostics_timer: Any = None
        self._start_diagnostics_timer(self.get_parameter("diagnostics_period_s").value)
        # under use_sim_time the status and control timers run on /clock: a simulator that stops it silenced
        # /diagnostics and left the last twist standing, unsaid. Watched on wall time (node clock, when it moved)
        self._clock_moved: tuple[int, int] | None = None  # (node clock, monotonic) when it last moved
        self._clock_frozen = False  # said WARN for the present freeze
        self._clock_stop_sent = False  # the present freeze's stop went out
        self._clock_watched_at: int | None = None  # monotonic ns of the watch's previous run
        self._clock_said_at: int | None = None  # monotonic ns of the last clock status (every period, on wall time)
        self._system_clock_seen: tuple[int, int] | None = None  # (node clock, monotonic) at the watch's last run
        self._clock_watch = self.create_timer(CLOCK_WATCH_S, self._on_clock_watch, callback_group=self._control_group,
                                              clock=self._steady_clock)
        self._active_since: Moment | None = None
        self.create_service(SetBool, "~/enable", self._srv_enable, callback_group=self._control_group)
        self.create_service(Trigger, "~/halt", self._srv_halt, callback_group=self._control_group)
        self.create_service(Trigger, "~/reset_episode", self._srv_reset, callback_group=self._control_group)
        # the instruction is heard from construction on: a planner that says it once, on a plain (volatile)
        # publisher, while configure loads the model, was never heard (a latched one is replayed anyway). A name
        # rcl refuses is left to configure, which says so.
        topic = self.get_parameter("instruction_topic").value
        if isinstance(topic, str) and topic and topic_name_problem(self, "instruction_topic", topic) is None:
            self._subscribe_instruction(topic)
        # said now, not only at configure: a misspelt "autostart" left the node unconfigured without a word
        for warning in unknown_overrides(self, "(configure will refuse it)"):
            self.get_logger().warning(warning)
        self.autostart_failed = False  # autostart's configure or activate failed (the exit status says so)
        if self.get_parameter("autostart").value:
            self._autostart_timer: Any = self.create_timer(0.0, self._autostart)

    # -- lifecycle ---------------------------------------------------------------------
    def _autostart(self) -> None:
        timer, self._autostart_timer = self._autostart_timer, None
        if timer is None:  # the EventsExecutor can fire the 0 s timer again before its destruction takes effect
            return
        self.destroy_timer(timer)
        if self._state_machine.current_state[1] != "unconfigured":
            # a manager got there first (the bringup, a launch file's configure, a parameter file dumped from a
            # node started with autostart): configuring an active node raised out of this timer and ended the process
            self.get_logger().info("autostart: already configured by a lifecycle manager; nothing to do")
            return
        started = (self.trigger_configure() == TransitionCallbackReturn.SUCCESS
                   and self.trigger_activate() == TransitionCallbackReturn.SUCCESS)
        self.autostart_failed = not started
        if not started:
            self.get_logger().error("autostart failed (see above): the node stays up for a lifecycle manager or "
                                    "`ros2 lifecycle set` to retry once `ros2 param set` has mended a value (a "
                                    "misspelt name needs a restart); unless then active, it exits with status 1")

    def _current_values(self) -> dict[str, Any]:
        return {k: self.get_parameter(k).value for k in POLICY_DEFAULTS}

    @report_errors
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        import torch

        threads = torch.get_num_threads()
        try:
            result = self._configure()
        except BaseException:
            torch.set_num_threads(threads)
            raise
        if result != TransitionCallbackReturn.SUCCESS:  # a failed configure leaves the thread count it found
            torch.set_num_threads(threads)
        return result

    def _configure(self) -> TransitionCallbackReturn:
        import torch

        try:
            # every override rclpy matched to this node's name, against all it declares (ours and rclpy's own)
            unknown = unknown_parameters(getattr(self, "_parameter_overrides", {}), self.list_parameters([], 0).names)
            if unknown is not None:
                raise ConfigurationError(unknown)
            params = parse_params(self._current_values())
            # looked up once: what runs, and what diagnostics and recordings name, is this folder, even if a
            # bare name's folder is removed or shadowed later
            params = params.model_copy(update={"checkpoint_dir": str(params.checkpoint.resolve())})
            self._check_topic_names(params)
            gripper = params.gripper_problem()
            if gripper is not None:
                raise ConfigurationError(gripper)
            try:  # a GPU this machine lacks: say so, not a pinned-memory error from deep inside the loader
                check_device(params.device)
            except ValueError as exc:
                raise ConfigurationError(f"parameter 'device': {exc}") from exc
            if self._initial_torch_threads is None:  # the process's own count, which torch_threads 0 returns to
                self._initial_torch_threads = torch.get_num_threads()
            # before the load: a time budget's steps are timed there, and must run as the node's steps will
            torch.set_num_threads(params.torch_threads or self._initial_torch_threads)
            stack = load_stack(params.checkpoint, params.thresholds_path, params.device, params.budget_kwargs(),
                               params.fixed_exit, track_average=params.budget_track_average,
                               risk_eps=params.risk_eps, risk_delta=params.risk_delta,
                               criterion=params.criterion)
            if len(params.image_topics) != len(stack.cameras):
                raise ConfigurationError(
                    f"parameter 'image_topics' lists {len(params.image_topics)} topic(s) {params.image_topics}, "
                    f"but the model uses {len(stack.cameras)} camera(s) {list(stack.cameras)} (give them in that order)"
                )
            # judged on the names subscribed: a remap (-r, a launch file's remappings) can cross them too
            crossed = crossed_camera_topics(stack.cameras, [self._in_namespace(t) for t in params.image_topics])
            if crossed:  # the order is the only pairing: each slot would see the other camera
                given = dict(zip(stack.cameras, params.image_topics))
                raise ConfigurationError(
                    "parameter 'image_topics' " + ", ".join(f"'{self._as_heard(given[c])}' feeds camera slot '{c}'"
                                                            for c, _ in crossed)
                    + f": give the topics in the model's camera order {list(stack.cameras)}")
            if stack.proprio_dim and not params.proprio_input_topic:
                raise ConfigurationError(
                    f"the model needs proprioception ({stack.proprio_dim} values per step) but parameter "
                    "'proprio_topic' is empty"
                )
            if not stack.proprio_dim and params.proprio_source == "array" and params.proprio_topic:
                # the default proprio_topic with a model that takes none: waiting for it would never step
                self.get_logger().warn(f"the model takes no proprioception: 'proprio_topic' "
                                       f"{quoted(params.proprio_topic, 80)} is not subscribed (set it to '')")
                params = params.model_copy(update={"proprio_topic": ""})
            joint_map = None
            if params.proprio_source == "joint_state":
                if stack.proprio_spec is None:
                    raise ConfigurationError("parameter 'proprio.source' is 'joint_state' but the model takes no "
                                             "proprioception: set proprio.source: array and proprio_topic: ''")
                try:
                    joint_map = JointStateProprio.from_spec(stack.proprio_spec)
                except ValueError as exc:
                    raise ConfigurationError(f"proprio.source joint_state: {exc}") from exc
        except (ParameterError, ConfigurationError, FileNotFoundError) as exc:
            return self._configure_failed(str(exc))
        except Exception as exc:  # a broken checkpoint must leave the node unconfigured, not dead
            return self._configure_failed(f"{type(exc).__name__}: {exc}")
        self._configure_error = self._transition_error = None
        explicit_rate, explicit_frame = params.rate_hz, params.frame_id
        params = params.with_rate(stack.control_rate_hz).with_frame(stack.action_spec.frame)
        # built before the locks: a record of 100 000 wordings takes seconds, and a ~/halt's reply waits on them
        check = InstructionCheck.for_runner(stack.runner)
        # under the apply lock: an ~/enable answered meanwhile (the node's callback group) applies its change
        # before or after this, never with a snapshot taken while unconfigured assigned over these
        with self._apply_lock:
            with self._actuation:
                # the parameter now, not as read before the load: a ~/halt or ~/enable answered meanwhile (a
                # multi-threaded executor runs them beside configure) set it, and the halt must stick
                self.enabled = bool(self.get_parameter("enabled").value) and not self._gate_forced_shut
                params = params.model_copy(update={"enabled": self.enabled})
            with self._instruction_lock:  # a text heard while unconfigured is taken before any the subscriptions bring
                self.params, self.stack, self._joint_map = params, stack, joint_map
                # an instruction heard before stays in force; read by this model's tokenizer from now on
                self._instruction_key = (None if self.instruction is None
                                         else stack.runner.instruction_key(self.instruction))
                self._say_new_reading(stack)
                self._cut_said = None
                self._instruction_check = check
                heard, self._heard_unconfigured = self._heard_unconfigured, None
                if params.instruction_topic != self._instruction_topic:  # heard on a topic no longer listened to
                    heard = None
                text = self._checked_instruction(heard, params) if heard is not None else None
                if text is not None:
                    self._take_instruction(text)
        self._episode_applied = self._episode_gen
        try:
            self._create_interfaces(params, stack)
        except OSError as exc:  # record_path: an unwritable folder, or an earlier recording's parts in the way
            self._destroy_interfaces()
            with self._apply_lock:
                self.params, self.stack, self._joint_map = None, None, None
            return self._configure_failed(f"parameter 'record_path' = '{params.record_path}': {exc}")
        self._worker = StepWorker(self.run_step, self._on_worker_error, name=f"{self.get_name()}_step")
        self._carry_tracker_on(stack)
        self.get_logger().info(
            f"configured: checkpoint {params.checkpoint}, {stack.profile.num_exits} exit(s) loaded (cap {stack.cap}), "
            f"cameras {list(stack.cameras)} <- {[self._as_heard(t) for t in params.image_topics]}, "
            f"device {params.device}, "
            f"{'ENABLED' if self.enabled else 'gated (dry run)'}"
        )
        unbound = stack.controller.average_unbound()
        if unbound is not None:
            self.get_logger().warning(unbound)
        if joint_map is not None:
            self.get_logger().info(f"proprioception from sensor_msgs/JointState on '{params.proprio_input_topic}': "
                                   f"{stack.proprio_dim} values ({joint_map.describe()})")
        elif stack.proprio_spec is not None:
            self.get_logger().info(f"proprioception on '{params.proprio_topic}': {stack.proprio_dim} values "
                                   f"({', '.join(stack.proprio_spec.names)})")
        rate = stack.control_rate_hz
        stepping = ("timer mode: a step every period on the newest inputs" if params.control_mode == "timer" else
                    "event mode: a step per new observation, for a lock-step source")
        if not explicit_rate:
            self.get_logger().info(f"control rate {params.rate_hz:g} Hz (" + (
                "the checkpoint's demonstrations'" if rate else "default: the checkpoint records none")
                + f"), {stepping}")
        else:
            self.get_logger().info(f"control rate {params.rate_hz:g} Hz (rate_hz), {stepping}")
        if explicit_rate and rate is not None and abs(params.rate_hz - rate) > 1e-6 * rate:
            # rate_hz is also the period that turns per-step deltas into twist velocities
            self.get_logger().warn(
                f"rate_hz {params.rate_hz:g} differs from the {rate:g} Hz of the demonstrations the policy was "
                f"trained on: its per-step actions move the robot at another speed than shown (set rate_hz: {rate:g})")
        self._say_frame(params.frame_id, explicit_frame, stack.action_spec.frame)
        # the model's gripper is -1 open .. +1 closed whatever the demonstrations recorded: said, so a position
        # controller is not sent -0.67 "m"
        self._say_recorded_gripper(stack, params)
        self.get_logger().info(
            f"gripper on '{params.gripper_topic}': " + (
                "std_msgs/Float64, -1 open .. +1 closed (gripper.output: unit; a controller that takes joint "
                "positions needs gripper.output: positions with gripper.open_positions/closed_positions)"
                if params.gripper_output == "unit" else
                f"std_msgs/Float64MultiArray of joint positions, {params.gripper_open_positions} open .. "
                f"{params.gripper_closed_positions} closed (gripper.output: positions)"))
        guarantee = getattr(stack.controller, "guarantee", None)
        if guarantee is not None:
            self.get_logger().info(f"fidelity guarantee in force: {guarantee.describe()}")
        check = self._instruction_check
        if check.matcher is None:
            self.get_logger().info(f"instructions: {check.why_not}")
        else:
            off = " (not while unfamiliar_instruction is off)" if params.unfamiliar_instruction == "off" else ""
            self.get_logger().info(f"instructions compared with the {len(check.matcher.tasks)} task(s) this checkpoint "
                                   f"was trained on{off}: {', '.join(check.matcher.tasks)}")
        self._judge_instruction_in_force()  # heard before, by another checkpoint or none
        return TransitionCallbackReturn.SUCCESS

    def _carry_tracker_on(self, stack: PolicyStack) -> None:
        """The average budget holds over the deployment: the same configuration again carries on the tracker."""
        carry, self._tracker_carry = self._tracker_carry, None
        if carry is None or not carry.resume(stack):
            return
        tracker = carry.tracker
        self.get_logger().info(
            f"average budget: the online tracker carries on from the last configuration (the same weights, "
            f"thresholds and costs): threshold scale {tracker.scale:.3g}, mean {tracker.running_mean:.6g} "
            f"{carry.metric} over {tracker.steps} step(s)")

    def _say_frame(self, frame_id: str, explicit: str, recorded: str) -> None:
        """Which frame the twists go out in, and a warning when frame_id contradicts the checkpoint's."""
        if not explicit:
            prefix = recorded.rpartition("/")[0]  # a namespaced robot's recording: its prefix is not this robot's
            self.get_logger().info(f"twists in frame '{frame_id}' (" + (
                "the checkpoint's action frame" if recorded else "default: the checkpoint records none") + (
                f"; its prefix '{prefix}/' comes from the recording: set frame_id for this robot's" if prefix
                else "") + ")")
        elif recorded and not same_link(explicit, recorded):
            # a tool-frame policy driven in the base frame moves along rotated axes
            self.get_logger().warn(
                f"frame_id '{explicit}' differs from the frame '{recorded}' the policy's actions were recorded in: "
                f"its twists move along another frame's axes than shown (set frame_id: {recorded}, or '' to take "
                "the checkpoint's)")
        else:
            self.get_logger().info(f"twists in frame '{frame_id}' (frame_id)")

    def _say_recorded_gripper(self, stack: PolicyStack, params: PolicyParams) -> None:
        """A checkpoint trained on an imported dataset records what the gripper command was on the robot
        (training.gripper: the raw values mapped to -1 open, +1 closed): with the unit output, say how to send
        those instead."""
        # an unreadable record is the instruction check's to say (runner.training is then {})
        recorded = recorded_gripper_values(getattr(stack.runner, "training", {}).get("gripper"))
        if recorded is None or params.gripper_output != "unit":
            return
        raw_open, raw_closed = recorded
        self.get_logger().warn(
            f"this checkpoint's demonstrations recorded the gripper command as {raw_open:g} open .. {raw_closed:g} "
            f"closed, and '{params.gripper_topic}' sends -1 open .. +1 closed: for a controller that takes the "
            f"recorded values set gripper.output: positions, gripper.open_positions: [{raw_open:g}], "
            f"gripper.closed_positions: [{raw_closed:g}]")

    def note_transition_error(self, said: str) -> None:
        """A transition raised (``report_errors``): the unconfigured status names it until the next configure (the
        newest failure: an older configure's error is no longer the one to show)."""
        self._transition_error, self._configure_error = said, None

    def _configure_failed(self, reason: str) -> TransitionCallbackReturn:
        self._configure_error, self._transition_error = reason, None
        self.get_logger().error(f"configure failed: {reason}")
        self.publish_diagnostics()  # at once, not a period later: the operator sees why
        return TransitionCallbackReturn.FAILURE

    def _check_topic_names(self, params: PolicyParams) -> None:
        """Resolve every topic the configuration uses as rcl will (namespace, ~, remapping): a bad name fails
        configure here, naming the parameter, not halfway through creating the interfaces (which leaked the
        publishers made before it)."""
        topics = [("image_topics", t) for t in params.image_topics] + [
            ("instruction_topic", params.instruction_topic), ("twist_topic", params.twist_topic),
            ("gripper_topic", params.gripper_topic), ("action_topic", params.action_topic),
            ("record_topic", params.record_topic)]
        if params.proprio_input_topic:
            source = "proprio.joint_state_topic" if params.proprio_source == "joint_state" else "proprio_topic"
            topics.append((source, params.proprio_input_topic))
        for name, topic in topics:
            problem = topic_name_problem(self, name, topic)
            if problem:
                raise ConfigurationError(problem)

    def _as_heard(self, topic: str) -> str:
        """``topic`` as logs and /diagnostics name it: as given, or, when a remap moves it, the name subscribed,
        so an operator is sent to the topic the node actually listens on."""
        try:
            heard = self.resolve_topic_name(topic)
            return heard if heard != self.resolve_topic_name(topic, only_expand=True) else topic
        except Exception:  # an invalid name: configure refuses it with the reason
            return topic

    def _in_namespace(self, topic: str) -> str:
        """The name subscribed for ``topic`` (remaps applied), relative to the node's namespace when inside it,
        so a namespace's own words are not read as camera names."""
        try:
            heard = self.resolve_topic_name(topic)
        except Exception:
            return topic
        namespace = self.get_namespace().rstrip("/") + "/"
        return heard[len(namespace):] if namespace != "/" and heard.startswith(namespace) else heard.lstrip("/")

    def _image_type(self, topic: str) -> type:
        """The message type camera topic ``topic`` is read as: image_transport's <base>/compressed carries
        CompressedImage (judged on the name subscribed, so a remap onto a compressed stream is read as one)."""
        return CompressedImage if is_compressed_topic(self._in_namespace(topic)) else Image

    def _create_interfaces(self, params: PolicyParams, stack: PolicyStack) -> None:
        if params.record_path:  # first: the one part that can fail (OSError), before anything is created
            policy = {"checkpoint": str(params.checkpoint.resolve()),
                      "weights_sha256": CheckpointDir(params.checkpoint).weights_digest(),
                      "config_sha256": CheckpointDir(params.checkpoint).config_digest(),
                      "thresholds": str(params.thresholds_path.resolve())}
            self._wait_for_earlier_recording(Path(params.record_path))
            # this recording's own status: an earlier one still finishing on a stalled disk reports to its own
            health = self.stats.recording = LogHealth()
            self._recorder = BackgroundRecorder(
                PolicyRecorder(params.record_path, stack.cameras, params.record_split, policy),
                functools.partial(self._not_recorded, health))
        for cam, topic in zip(stack.cameras, params.image_topics):
            # a compressed frame's header is checked on arrival (cheap), the frame decoded by the step taking it
            kind = self._image_type(topic)
            check = check_compressed_msg if kind is CompressedImage else image_msg_to_rgb
            self._subs.append(self.create_subscription(
                kind, topic, functools.partial(self._on_image, camera=cam, check=check), qos_profile_sensor_data,
                callback_group=self._input_group,
            ))
        self._subscribe_instruction(params.instruction_topic)
        if params.proprio_source == "joint_state":
            self._subs.append(self.create_subscription(JointState, params.proprio_input_topic, self._on_joint_state,
                                                       qos_profile_sensor_data, callback_group=self._input_group))
        elif params.proprio_topic:
            self._subs.append(self.create_subscription(Float32MultiArray, params.proprio_topic, self._on_proprio,
                                                       qos_profile_sensor_data, callback_group=self._input_group))
        self._pubs = {
            "twist": self.create_publisher(TwistStamped, params.twist_topic, OUTPUT_QOS),
            "gripper": self.create_publisher(Float64 if params.gripper_output == "unit" else Float64MultiArray,
                                             params.gripper_topic, OUTPUT_QOS),
            "action": self.create_publisher(Float32MultiArray, params.action_topic, OUTPUT_QOS),
            "record": self.create_publisher(String, params.record_topic, QoSProfile(depth=100)),
        }
        # the first period counts from here: the counters run on across a cleanup, and an earlier configuration's
        # steps and skips reported as the last period's made a fresh node read WARN
        self._health_before = self.health_snapshot()
        self._start_diagnostics_timer(params.diagnostics_period_s)

    def _subscribe_instruction(self, topic: str) -> None:
        """Latched and plain publishers both (ros.instruction_input); one message that reaches both counts once.
        Kept across cleanup and configure while the topic stays: a new transient-local subscription is sent a
        latched publisher's last message again, and that text (older, perhaps, than a plain publisher's since,
        in force) came back into force at every configure. A text heard while unconfigured is taken at the next
        configure instead."""
        if self._instruction_subs and topic == self._instruction_topic:
            return
        self._unsubscribe_instruction()
        copies = CopyFilter()
        # the latched route hears no plain (volatile) publisher, by DDS's rules, and rclpy would warn at every
        # configure that "no messages will be received" from it: the plain route below hears that one
        quiet = SubscriptionEventCallbacks(incompatible_qos=lambda _event: None)
        for route, qos in enumerate((INSTRUCTION_QOS, INSTRUCTION_QOS_VOLATILE)):
            self._instruction_subs.append(self.create_subscription(
                String, topic, functools.partial(self._on_instruction_route, copies=copies, route=route), qos,
                callback_group=self._input_group, event_callbacks=quiet if route == 0 else None))
        self._instruction_topic = topic

    def _unsubscribe_instruction(self) -> None:
        for sub in self._instruction_subs:
            self.destroy_subscription(sub)
        self._instruction_subs, self._instruction_topic, self._heard_unconfigured = [], None, None

    def _stop_worker(self) -> None:
        if self._worker is not None:
            if not self._worker.stop(timeout=self.worker_stop_timeout_s):
                self.get_logger().error(f"the step worker did not finish within {self.worker_stop_timeout_s:g} s; "
                                        "its result will be dropped")
            self._worker = None

    def _destroy_interfaces(self) -> None:
        self._stop_worker()  # before the publishers and the recorder it uses go away
        self._stop_hold_timer()
        for timer in self._control_timers:
            self.destroy_timer(timer)
        for sub in self._subs:
            self.destroy_subscription(sub)
        with self._actuation:
            pubs, self._pubs = self._pubs, {}
        for pub in pubs.values():
            self.destroy_publisher(pub)
        self._shared_outputs = 0  # a next configuration says a shared output again
        self._control_timers, self._subs = [], []
        self._close_recorder()

    @report_errors
    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        assert self.params is not None
        if self.params.control_mode == "timer":
            self._control_timers.append(self._periodic_timer(self.params.period_s, self._on_control_timer,
                                                             self._input_group))
        else:  # event mode steps on arrivals: an input that stops would leave the last velocity standing
            self._control_timers.append(self._periodic_timer(self.params.period_s, self._on_event_watchdog,
                                                             self._input_group))
        self.active = True
        self._active_since = self._moment()
        self._start_hold_timer()
        # a gate closed by a deactivate (a lifecycle manager's restart) is said here, or the node looks healthy
        self.get_logger().info("activated, actuation ENABLED" if self.enabled else
                               f"activated, gated (dry run, by {self._gated_by or 'enabled: false'}) until ~/enable")
        return super().on_activate(state)

    @report_errors
    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_actuation()
        self.get_logger().info("deactivated: actuation stopped and gated until ~/enable, model kept loaded")
        return super().on_deactivate(state)

    def _stop_actuation(self) -> None:
        """Step and actuate no more, leaving the robot with an explicit stop rather than its last velocity
        (deactivate, and shutdown or an error from the active state)."""
        try:
            with self._actuation:
                self._stop_if_actuating()
                self.active = False
                self._active_since = None
                self._actuation_gen += 1  # a step running now publishes no action
                self._last_command = None
            self._stop_hold_timer()
            for timer in self._control_timers:
                self.destroy_timer(timer)
            self._control_timers = []
        finally:  # a stop that failed (the reason it is called from on_error) must still close the gate
            self.active = False  # nothing more is published, the gate's closing included
            # as ~/halt: the gate closes, so a later activate (an operator's, a lifecycle manager's restart)
            # moves nothing until ~/enable; the stop above was the robot's last command
            state = self._state_machine.current_state[1]  # the transition running this
            self._close_gate({"deactivating": "deactivate", "shuttingdown": "shutdown",
                              "errorprocessing": "an error in a transition"}.get(state, state))

    @report_errors
    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unconfigure()
        return TransitionCallbackReturn.SUCCESS

    def _unconfigure(self) -> None:
        self._destroy_interfaces()
        if self.stack is not None and self.params is not None:
            carry = TrackerCarry.of(self.stack)
            # not a tracker that never ran (a configure that failed after the load) over the one it would have taken
            if carry is None or carry.tracker.steps or self._tracker_carry is None:
                self._tracker_carry = carry
        with self._apply_lock:  # an apply from the node's callback group assigns none over the cleared ones
            self.stack, self.params, self._joint_map = None, None, None
        self._instruction_check = None
        # the next configuration may read another source or checkpoint: wait for its own proprioception
        self.proprio, self._proprio_stamp_ns, self._proprio_ns, self._proprio_arrived = None, None, -1, None
        self._proprio_refused_since = False
        self._joint_history.clear()
        self.frames.clear()
        self._used_ns.clear()
        self._last_stepped = None
        # which inputs are refused is this configuration's (its topics, encodings, joints), not the next one's
        self.stats.refused.clear()
        self.stats.refusals.clear()

    @report_errors
    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_actuation()  # shutdown from active: the robot gets its stop, as on deactivate
        self._unconfigure()
        self._unsubscribe_instruction()
        return TransitionCallbackReturn.SUCCESS

    @report_errors
    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised: leave an unconfigured node (as after cleanup) that can be configured again."""
        try:
            self._stop_actuation()
        except Exception as exc:  # the stop may be what failed; the cleanup below must still run
            self.get_logger().error(f"error processing: stopping actuation failed: {type(exc).__name__}: {exc}")
            self.active = False
            if self.enabled or self.get_parameter("enabled").value:  # the gate's own closing failed too: closed
                with self._actuation:  # here, and kept closed by configure, whatever the parameter says
                    self.enabled, self._gated_by = False, "an error in a transition"
                    self._gate_forced_shut = True
        self._unconfigure()
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        self.active = False
        self._stop_worker()
        self._close_recorder(exiting=True)
        super().destroy_node()

    def _close_recorder(self, exiting: bool = False) -> None:
        """Write the queued steps and the footer. A failure (disk full: what was flushed stays readable) is
        counted by _not_recorded. On a stalled disk the recorder's thread finishes it when the write returns,
        unless the process ends first (``exiting``): then the waiting steps and the footer are lost."""
        recorder, self._recorder = self._recorder, None
        if recorder is not None and not recorder.close():
            self._finishing_recordings.append(recorder)
            if not exiting:
                self.get_logger().warn(f"recording {recorder.log.path}: {recorder.waiting} step(s) still waiting "
                                       f"for the disk after {CLOSE_WAIT_S:g} s (a stalled disk?): written when it "
                                       "returns")
        if exiting:  # this one, and any earlier one still finishing: their thread ends with the process
            for lost in (r for r in self._finishing_recordings if not r.finished):
                self.get_logger().error(f"recording {lost.log.path}: {lost.waiting} step(s) still waiting for the "
                                        "disk (a stalled disk?) are lost as the node exits; the file reads back, "
                                        "without its footer, up to its last whole chunk")

    def _wait_for_earlier_recording(self, path: Path) -> None:
        """An earlier configuration's recording still being written at ``path`` (its close gave up on a
        stalled disk) would have its files renamed under it and its next parts named as this one's: wait for
        it a while, then refuse (OSError: configure fails naming record_path)."""
        self._finishing_recordings = [r for r in self._finishing_recordings if not r.finished]
        for earlier in self._finishing_recordings:
            if earlier.log.path.resolve() == path.resolve() and not earlier.close(CLOSE_WAIT_S):
                raise OSError(f"the previous recording there is still being written ({earlier.waiting} step(s) "
                              "waiting for the disk: a stalled disk?); configure again once it is done, or "
                              "set another record_path")

    def _not_recorded(self, health: LogHealth, what: str) -> None:
        """A step (or the footer) the recording could not take: a full or stalled disk, a stamp MCAP cannot hold
        (before 1970). A side job: control goes on, it is no model error, /diagnostics says it (``health``: that
        recording's own)."""
        health.failed(what)
        self.get_logger().error(f"recording: {what}", throttle_duration_sec=5.0)

    # -- parameters --------------------------------------------------------------------
    @staticmethod
    def _closes_gate(changes: list[Parameter]) -> bool:
        """Only ``enabled := false``: accepted whatever the other parameters hold, so ~/halt always sticks (an
        unconfigured node's invalid parameters must not leave ``enabled`` true for the next configure)."""
        return bool(changes) and all(p.name == "enabled" and p.value is False for p in changes)

    def _validate_parameter_change(self, changes: list[Parameter]) -> SetParametersResult:
        if self._closes_gate(changes):
            return SetParametersResult(successful=True)
        if self._state_machine.current_state[1] == "finalized":  # nothing will apply them: say so, as ~/enable
            actuate = any(p.name == "enabled" and p.value is True for p in changes)
            return SetParametersResult(successful=False, reason="finalized: shut down, " + (
                "cannot actuate" if actuate else "no parameter takes effect any more") + " (restart the node)")
        names = {p.name for p in changes}
        if self.stack is not None:
            # a configure-time parameter set to the value it has changes nothing (`ros2 param load` of the node's
            # own dump sets every parameter): only a change of one is refused
            frozen = sorted(p.name for p in changes if p.name not in RUNTIME_PARAMS
                            and not (self.has_parameter(p.name) and _same_value(p.value,
                                                                                self.get_parameter(p.name).value)))
            if frozen == ["use_sim_time"]:  # rclpy's own: it would switch the clock every timer and stamp runs on
                return SetParametersResult(successful=False, reason="use_sim_time switches the node's clock: "
                                                                    "deactivate and clean up first")
            if frozen:
                return SetParametersResult(
                    successful=False,
                    reason=f"parameter(s) {frozen} take effect only at configure; deactivate and clean up first",
                )
        try:
            params = self._params_with(changes)
            if names & set(BUDGET_PARAMS):
                budget = make_budget(params.budget_kwargs())
                if self.stack is not None:
                    self._check_loaded_exits_fit(budget, params.fixed_exit)
                    # validates against the loaded exits and thresholds; applied at the next step
                    self.stack.controller.set_budget(budget)
                    unbound = self.stack.controller.average_unbound(budget)
                    if unbound is not None:  # accepted: true, but not what an average is set for
                        self.get_logger().warning(unbound)
        except ParameterError as exc:
            new = self._problems_of(changes, exc) if self.stack is None else exc.problems
            if not new:  # unconfigured, with others still wrong: one fixed at a time, as `ros2 param load` sets them
                return SetParametersResult(successful=True)
            return SetParametersResult(successful=False, reason=str(ParameterError(new)))
        except (ConfigurationError, ValueError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        except Exception as exc:  # raised out of this callback it would end the executor's spin: refuse instead
            return SetParametersResult(successful=False, reason=f"{type(exc).__name__}: {exc}")
        return SetParametersResult(successful=True)

    def _check_loaded_exits_fit(self, budget: Any, fixed_exit: int) -> None:
        """ConfigurationError for a run-time budget the loaded exits cannot honour. Configure loads only the exits
        its budget allows: one that allows deeper exits, or whose memory budget is below the weights already
        resident, would be accepted and not applied (the node would go on as before under a parameter that
        says otherwise)."""
        assert self.stack is not None
        first_exit = self.stack.controller.first_exit
        loaded = self.stack.profile.num_exits
        again = "deactivate, clean up and configure to load them"
        # first: untimed, a time budget's feasibility would be judged on the profile's times, not this machine's
        # (an audit: "the smallest feasible peak_ms is 4.18", then 4.18 refused as untimed)
        if (budget.peak_ms is not None or budget.deadline_ms is not None) and not self.stack.steps_timed:
            raise ConfigurationError(
                "a time budget (peak_ms, deadline_ms) is enforced with this machine's step times, and configure "
                f"did not time them (no time budget then): {again} with the time budget set, which times them")
        # judged as configure judged its cap (the gates' bytes, the learned criterion's gate FLOPs)
        cap = check_budget(self.stack.cap_profile.truncated(loaded), budget, fixed_exit, first_exit)
        wanted = check_budget(self.stack.cap_profile, budget, fixed_exit, first_exit)
        if wanted > loaded:
            raise ConfigurationError(f"the budget allows exit {wanted}, but configure loaded exits 1..{loaded} only "
                                     f"(the budget then in force): {again}")
        resident = self.stack.profile.weight_bytes[loaded - 1]
        if budget.memory_bytes is not None and budget.memory_bytes < resident:
            raise ConfigurationError(f"memory budget {budget.memory_bytes} bytes is below the {resident} bytes of "
                                     f"the loaded exits 1..{loaded}, which stay resident (a lower cap, exit {cap}, "
                                     "would not free them): deactivate, clean up and configure under it")

    def _problems_of(self, changes: list[Parameter], found: ParameterError) -> list[str]:
        """The problems (``found``: the parameters with ``changes``) that name a changed parameter, judged with
        every other parameter still wrong alone taken at its default: an unconfigured node started with two bad
        values refused every change, each naming the other, so neither could be mended with `ros2 param set`
        (configure judges them all). At their defaults, because a check across parameters runs only once each
        value is valid alone: it would hide what a change brings ("risk.eps" beside a set "fixed_exit")."""
        changed = {p.name for p in changes}
        wrong = {m.group(1) for p in found.problems if (m := re.match(r"parameter '([^']+)' = ", p))}
        values = self._current_values()
        values.update({p.name: p.value for p in changes if p.name in POLICY_DEFAULTS})
        values.update({n: POLICY_DEFAULTS[n] for n in wrong - changed if n in POLICY_DEFAULTS})
        try:
            parse_params(values)
        except ParameterError as exc:
            return [p for p in exc.problems
                    if any(re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", p) for name in changed)]
        return []

    def _params_with(self, changes: list[Parameter]) -> PolicyParams:
        """The parameters that would be in force with ``changes``. While configured, only the run-time ones
        can change: the rest stay what configure resolved (its checkpoint is not looked up again: a folder
        removed or renamed since it was loaded must not block ~/halt or a budget change)."""
        values = self._current_values()
        values.update({p.name: p.value for p in changes if p.name in POLICY_DEFAULTS})
        if self.stack is None or self.params is None:
            return parse_params(values)
        parsed = parse_params(values, check_checkpoint=False)
        fields = (name.replace(".", "_") for name in RUNTIME_PARAMS)
        return self.params.model_copy(update={f: getattr(parsed, f) for f in fields})

    def _apply_parameter_change(self, changes: list[Parameter]) -> None:
        """One at a time (``_apply_lock``), each from the values stored when it runs: the last to run has seen
        every value stored before it."""
        with self._apply_lock:
            self._apply_changes(changes)

    def _apply_changes(self, changes: list[Parameter]) -> None:
        # Raised out of this (post-set) callback an error would end the executor's spin: never raise here
        if self._closes_gate(changes):
            # whatever the other parameters hold, ~/halt sticks; unless an enable has stored true since (the later
            # word): the gate follows the value stored now
            enabled = bool(self.get_parameter("enabled").value)
            self._set_enabled(enabled)
            if self.params is not None and self.stack is not None:
                self.params = self.params.model_copy(update={"enabled": enabled})
            return
        names = {p.name for p in changes}
        try:
            params = self._params_with([])
        except ParameterError as exc:
            if self.stack is None:  # taken while others are still wrong (_problems_of): configure will say so too
                if "enabled" in names:
                    self._set_enabled(bool(self.get_parameter("enabled").value))
                self.get_logger().warn(f"parameter(s) {sorted(names)} set; configure will refuse until these are "
                                       f"mended: {exc}")
                return
            self.get_logger().error(f"parameter change to {sorted(names)} not applied: {exc}")
            return
        except Exception as exc:  # validated a moment ago; only a racing change of the world gets here
            self.get_logger().error(f"parameter change to {sorted(names)} not applied: {exc}")
            return
        if self.stack is not None:
            self.params = params
        if "enabled" in names:
            self._set_enabled(params.enabled)
        if "hold_rate_hz" in names and self.active:
            self._start_hold_timer()  # the new rate now, not at the next activation
        if names & {"unfamiliar_instruction", "min_instruction_similarity"}:
            self._judge_instruction_in_force()

    def _close_gate(self, why: str) -> None:
        """Set ``enabled`` false (the parameter, so ``ros2 param get`` and parameter events say it), naming why."""
        self._closing_for(why, self.set_parameters, [Parameter("enabled", Parameter.Type.BOOL, False)])

    def _closing_for(self, why: str, close: Callable[..., Any], *args: Any) -> None:
        """``close(*args)`` with ``why`` as the cause _set_enabled records: the parameter's callback runs on this
        thread, and a ~/halt beside a deactivate (a multi-threaded executor) keeps its own."""
        self._closing.why = why
        try:
            close(*args)
        finally:
            self._closing.why = None

    def _set_enabled(self, enabled: bool, stop: bool = False) -> None:
        """Open or close the actuation gate. Closing it while active sends a zero twist (``stop``: even when it
        was closed already), as deactivate does: a consumer without a command timeout would otherwise keep the
        robot at its last velocity."""
        with self._actuation:
            if enabled and not self.get_parameter("enabled").value:
                # an opening read before a ~/halt or deactivate closed the gate (a multi-threaded executor runs
                # them beside the parameter service): the closing, answered already, stands
                return
            if enabled != self.enabled:
                self.get_logger().info("actuation ENABLED" if enabled else "actuation gated (dry run)")
            if enabled:
                self._gate_forced_shut = False  # an explicit enable after it
            closing = self.enabled and not enabled
            self.enabled = enabled
            self._gated_by = "" if enabled else (getattr(self._closing, "why", None)
                                                 or "enabled set false (~/enable or a parameter)")
            if not enabled:
                self._actuation_gen += 1
                self._last_command = None
                if (closing or stop) and self.active and self.stack is not None and self._pubs:
                    self._publish_stop(self.stack)

    def _start_hold_timer(self) -> None:
        self._stop_hold_timer()
        params = self.params
        if params is not None and params.hold_rate_hz > 0:
            self._hold_timer = self._periodic_timer(1.0 / params.hold_rate_hz, self._on_hold_timer,
                                                    self._control_group)

    def _stop_hold_timer(self) -> None:
        if self._hold_timer is not None:
            self.destroy_timer(self._hold_timer)
            self._hold_timer = None

    # -- services ----------------------------------------------------------------------
    def _srv_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        if request.data and self._state_machine.current_state[1] == "finalized":
            response.success = False  # it can never actuate again: "enabled" would be a promise nobody keeps
            response.message = "finalized: shut down, cannot actuate (restart the node)"
            return response
        if request.data:
            self.set_parameters([Parameter("enabled", Parameter.Type.BOOL, True)])
        else:
            self._close_gate("~/enable false")
        response.success = self.enabled == bool(request.data)
        state = self._state_machine.current_state[1]
        response.message = "enabled" if self.enabled else "gated (dry run)"
        if self.enabled and state != "active":  # an executive must not read "enabled" as "acting"
            response.message += f"; the node is {state}: it acts once configured and active"
        return response

    def _srv_halt(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        moving = self.active  # only an active node publishes, and so sends the stop
        self.halt()
        self._close_gate("~/halt")  # keep the parameter in step
        response.success = True
        response.message = ("halted: zero twist sent, actuation gated until ~/enable" if moving else
                            f"gated until ~/enable (the node is {self._state_machine.current_state[1]}: it "
                            "published nothing to stop, no twist sent)")
        return response

    def _srv_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.reset_episode()
        response.success = self.stack is not None
        response.message = "episode reset" if self.stack is not None else "not configured"
        return response

    def halt(self) -> None:
        """Stop actuation now: gate closed, a running step's action dropped, a zero twist sent."""
        self._closing_for("~/halt", self._set_enabled, False, True)

    def reset_episode(self) -> None:
        """Clear the recurrent history before the next step (the worker applies it; a step running now
        belongs to the old episode and publishes no action)."""
        with self._actuation:
            self._last_command = None
            self._episode_gen += 1

    # -- inputs ------------------------------------------------------------------------
    def _on_image(self, msg: Image | CompressedImage, camera: str,
                  check: Callable[[Any], np.ndarray | CompressedFrame] = image_msg_to_rgb) -> None:
        received = time.perf_counter_ns()
        try:
            frame = check(msg)  # a raw frame converted now; a compressed one decoded by the step that takes it
        except ImageConversionError as exc:
            self.stats.rejected_images += 1
            self.stats.refuse(camera, str(exc))
            self.get_logger().error(f"camera '{camera}': image rejected: {exc}", throttle_duration_sec=2.0)
            return
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        arrived = self._moment()
        self.frames[camera] = CameraFrame(frame, stamp or arrived.clock_ns, msg, received, arrived)
        self._step_when_all_new()

    def _step_when_all_new(self) -> None:
        """Event mode: step once every camera (and the proprioception) has delivered since the last step."""
        params, stack = self.params, self.stack
        if params is not None and stack is not None and params.control_mode == "event" and self._all_new(params, stack):
            self.control_step()

    def _all_new(self, params: PolicyParams, stack: PolicyStack) -> bool:
        # (the configuration as the caller read it once: a cleanup on another thread of a multi-threaded executor
        # sets the node's to None at any moment, and an assertion raised here would end the executor's spin)
        if params.proprio_input_topic and self._proprio_ns <= self._used_ns.get("~proprio", -1):
            return False  # proprioception is part of the observation: wait for the one that goes with the images
        frames = self.frames
        return all(c in frames and frames[c].received_ns > self._used_ns.get(c, -1) for c in stack.cameras)

    def _on_instruction_route(self, msg: String, copies: CopyFilter, route: int) -> None:
        if copies.accept(msg.data, route):
            self._on_instruction(msg)

    def _on_instruction(self, msg: String) -> None:
        params = self.params
        if params is None:
            with self._instruction_lock:
                params = self.params
                if params is None:  # judged and taken by the next configure (its limits, its checkpoint's wordings)
                    self._heard_unconfigured = msg.data
                    return
        text = self._checked_instruction(msg.data, params)
        if text is None:
            return
        # judged and taken as one: a run-time change of unfamiliar_instruction or its floor (another thread under
        # a multi-threaded executor) re-judges the instruction in force, and must see this one or judge it itself
        with self._instruction_lock:
            self._take_instruction(text)

    def _checked_instruction(self, data: str, params: PolicyParams) -> str | None:
        """The text as the tokenizer will read it, or None (said) when it is refused or empty."""
        # before anything else touches the text: a huge one would be logged whole to /rosout and tokenized in full
        # by the worker (seconds for megabytes, no action meanwhile) only for the model to read max_text_len tokens
        if len(data) > params.max_instruction_chars:
            self.stats.rejected_instructions += 1
            self.get_logger().error(
                f"instruction refused: {len(data)} characters, over the limit max_instruction_chars "
                f"{params.max_instruction_chars}; {self._kept()}", throttle_duration_sec=2.0)
            return None
        try:  # as the tokenizer will read it: "open  the\tdrawer\n" is "open the drawer", a repeat of it too
            text = clean_instruction(data)
        except ValueError as exc:
            self.stats.rejected_instructions += 1
            self.get_logger().error(f"instruction refused: {exc}; {self._kept()}", throttle_duration_sec=2.0)
            return None
        if not text:  # counted as refused, as an over-long one is (a driver's empty message at startup too)
            self.stats.rejected_instructions += 1
            self.get_logger().error(f"empty instruction ignored; {self._kept()}", throttle_duration_sec=2.0)
            return None
        return text

    def _kept(self) -> str:
        """What a refusal that keeps the instruction in force leaves, said after its reason."""
        return "keeping the previous instruction" if self.instruction is not None else "still no instruction"

    def _take_instruction(self, text: str) -> None:
        """A cleaned, non-empty instruction: judged (repeat, familiarity) and put in force, or refused."""
        params = self.params
        if params is None:  # cleaned up since it arrived: the next configure takes it, as one heard unconfigured
            self._heard_unconfigured = text
            return
        stack = self.stack
        # "don't open the drawer" opened it; "the window is open, please close the window" opened the window
        refused = stack.runner.refusal(text) if stack is not None else refusal(text)
        if refused is not None:
            self._refuse_unclear(text, f"it {refused.why}")
            return
        # the same instruction to the model whatever its case or Unicode form (the tokenizer's normalizer)
        key = stack.runner.instruction_key(text) if stack is not None else text
        read, fixed = stack.runner.read_instruction(text) if stack is not None else (text, [])
        if key == self._instruction_key and params.repeated_instruction == "keep":
            self.stats.repeated_instructions += 1
            return
        changed = key != self._instruction_key
        floor = params.min_instruction_similarity
        verdict = (self._instruction_check.judge(text, params.unfamiliar_instruction, floor)
                   if self._instruction_check is not None else None)
        heard = f"; {verdict.heard(floor)}" if verdict is not None and verdict.match is not None else ""
        if fixed:  # what the model reads instead of a misspelt trained word: said, the text stays as sent
            heard = "; read " + ", ".join(f"{quoted(a)} as {quoted(b)}" for a, b in fixed) + heard
        if verdict is not None and verdict.drops:
            # a text that names nothing ("whoa", "help!", "too fast") may be the robot told to stop, one that takes
            # something back or names a task the policy would not do told to do something else: refused with the
            # instruction in force dropped, as for a stop (keeping it carried on with the last task)
            self._refuse_unclear(text, f"it {verdict.heard(floor)}")
            return
        if verdict is not None and verdict.refused(params.unfamiliar_instruction):
            self.stats.rejected_instructions += 1
            message = (f"instruction {quoted(text)} refused (unfamiliar_instruction: {params.unfamiliar_instruction})"
                       f"{heard}; {self._kept()}")
            if text != self._refused_text:  # each text said, its repeats (a planner re-sending it) every 2 s
                self._refused_text = text
                self.get_logger().error(message)
            else:
                self.get_logger().error(message, throttle_duration_sec=2.0)
            return
        self.instruction, self._instruction_key = text, key
        self._dropped_why = None
        self._instruction_read = read if stack is not None else None
        self.reset_episode()  # a new instruction is a new episode: clear the recurrent history
        # a changed text is always said, a re-sent one (a planner re-publishing its goal) at most every 2 s; one
        # unlike every trained wording at WARN. Each severity has its own call: rclpy keeps one per call site and
        # raises ValueError ("Logger severity cannot be changed between calls") out of the callback otherwise
        said = (f"instruction: {quoted(text)} (episode reset{heard})" if changed else
                f"instruction {quoted(text)} again (episode reset; repeated_instruction: 'keep' carries on "
                f"instead{heard})")
        if verdict is not None and verdict.doubtful:
            if verdict.unfamiliar:
                said += ": the policy may not do what it says (unfamiliar_instruction: refuse keeps such a text out)"
            if changed:
                self.get_logger().warn(said)
            else:
                self.get_logger().warn(said, throttle_duration_sec=2.0)
        elif changed:
            self.get_logger().info(said)
        else:
            self.get_logger().info(said, throttle_duration_sec=2.0)

    def _say_new_reading(self, stack: PolicyStack) -> None:
        """A new configuration's checkpoint may read the instruction in force otherwise than the last one (its
        trained words read a misspelling, or no longer do): say so, the text stays in force."""
        text, before = self.instruction, self._instruction_read
        if text is None:
            return
        now = stack.runner.read_instruction(text)[0]
        self._instruction_read = now
        if before is not None and now != before:
            self.get_logger().warn(f"instruction in force {quoted(text)} is read as {quoted(now)} by this "
                                   f"checkpoint, {quoted(before)} by the last one: send it again, spelt as trained, "
                                   "to be sure what runs")

    def _refuse_unclear(self, text: str, why: str) -> None:
        """A text the policy would not do as meant (one that asks not to do something, or says a state beside a
        request of the opposite task) is refused, and the instruction in force is dropped with it: the robot was
        told something new, maybe to stop doing something, so it steps no more until a new instruction (holding
        the last one would carry on with what it may have just been told not to do)."""
        had = self.instruction is not None
        self._drop_instruction(f"{quoted(text, 60)} was refused")
        self.stats.rejected_instructions += 1
        message = (f"instruction {quoted(text)} refused: {why}; "
                   + ("the previous instruction is dropped: no steps until a new instruction (~/halt stops the "
                      "robot)" if had else "still no instruction"))
        if text != self._refused_text:
            self._refused_text = text
            self.get_logger().error(message)
        else:
            self.get_logger().error(message, throttle_duration_sec=2.0)

    def _drop_instruction(self, why: str) -> None:
        """No instruction in force (``why``: what the no-instruction warning and status say): no steps until a new
        one, a step running now not sent, a zero twist."""
        with self._actuation:
            if self.instruction is not None or self._dropped_why is None:  # (a second refusal in a row: the first)
                self._dropped_why = why
            self.instruction, self._instruction_key = None, None
            self._last_command = None
            self._episode_gen += 1  # a step running now belongs to the dropped instruction: its action is not sent
            self._stop_if_actuating()

    def _judge_instruction_in_force(self) -> None:
        """The instruction in force judged again, by a new configuration's checkpoint or a run-time change of
        unfamiliar_instruction or min_instruction_similarity: under 'refuse' one unlike every trained wording is
        dropped (the node steps no more until a new instruction), as it would have been refused on arrival."""
        with self._instruction_lock:
            self._judge_in_force_locked()

    def _judge_in_force_locked(self) -> None:
        params, check, text = self.params, self._instruction_check, self.instruction
        if params is None or check is None or text is None:
            return
        floor = params.min_instruction_similarity
        verdict = check.judge(text, params.unfamiliar_instruction, floor, count=False)
        refused = verdict.refused(params.unfamiliar_instruction)
        # a text the node would refuse on arrival is dropped (one that came while the mode was 'off', or before this
        # checkpoint's wordings were known): "push-wall" heard as button-press-wall ran on
        if not refused and not verdict.unfamiliar:
            return
        if not refused:
            self.get_logger().warn(f"instruction in force {quoted(text)} is {verdict.heard(floor)}")
            return
        by_mode = not verdict.drops  # refused only by the mode: unfamiliar under 'refuse', doubtful under 'strict'
        why = "it names no task to this checkpoint" if verdict.no_task else (
            ("unfamiliar" if verdict.unfamiliar else "doubtful") if by_mode else "it would be refused now")
        self._drop_instruction(f"{quoted(text, 60)} was dropped ({why})")
        self.stats.rejected_instructions += 1
        rule = f" (unfamiliar_instruction: {params.unfamiliar_instruction})" if by_mode else ""
        self.get_logger().error(f"instruction in force {quoted(text)} dropped{rule}: {verdict.heard(floor)}; no "
                                "steps until a new instruction")

    def _on_proprio(self, msg: Float32MultiArray) -> None:
        values = np.asarray(msg.data, dtype=np.float32)
        stack = self.stack
        spec = stack.proprio_spec if stack is not None else None
        try:
            if spec is None:  # the model takes none: only keep garbage out
                if not np.all(np.isfinite(values)):
                    raise ProprioError("non-finite values")
            else:
                values = spec.check(values)  # length, finite, within the checkpoint's limits
        except ProprioError as exc:
            self._refuse_proprio(str(exc))
            return
        self._accept_proprio(values, None)

    def _on_joint_state(self, msg: JointState) -> None:
        joint_map, params = self._joint_map, self.params
        if joint_map is None or params is None:
            return
        now = self.get_clock().now().nanoseconds
        stamp = (msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec) or now  # unstamped: as images
        limit_s, limit = params.proprio_age
        problem = stamp_problem(stamp, now, limit_s, params.max_image_future_s, limit)
        if problem is not None:
            self._refuse_proprio(f"joint state {problem}")
            return
        try:
            values = joint_map.extract(msg.name, msg.position, msg.velocity, msg.effort)
        except ProprioError as exc:
            self._refuse_proprio(f"joint state: {exc}")
            return
        self._accept_proprio(values, stamp)

    def _refuse_proprio(self, reason: str) -> None:
        """The message is dropped; the last accepted proprioception stays, and no step runs on the refused one."""
        self.stats.rejected_proprio += 1
        self.stats.refuse(PROPRIO_INPUT, reason)
        self._proprio_refused_since = True
        self.get_logger().error(f"proprioception refused (not used for any step): {reason}",
                                throttle_duration_sec=2.0)

    def _accept_proprio(self, values: np.ndarray, stamp_ns: int | None) -> None:
        self.proprio, self._proprio_stamp_ns = values, stamp_ns
        self._proprio_refused_since = False
        # the driver's clock going back (a simulator reset under use_sim_time) drops the poses held: the
        # pairing would otherwise hand the model the old arm pose
        if stamp_ns is not None and self._joint_history.add(stamp_ns, values):
            self.get_logger().warn("joint state stamped before the previous one (a clock reset?): poses held "
                                   "for pairing with images dropped", throttle_duration_sec=2.0)
        self._proprio_ns, self._proprio_arrived = time.perf_counter_ns(), self._moment()
        self._step_when_all_new()

    # -- control loop --------------------------------------------------------------------
    def _on_control_timer(self) -> None:
        self.control_step()

    def _on_event_watchdog(self) -> None:
        """Event mode steps when every input has delivered anew, so an input that stops (a camera, the joint
        states) never reached a staleness check and the last twist stood for as long as it stayed silent. Each
        period: inputs gone stale while an action stands get ``stale_action``, as in timer mode, once per outage
        (the stop then stands; the next action re-arms it). With ``stale_action: none`` it only ends hold mode's
        repeats of the last twist."""
        stack, params = self.stack, self.params  # read once (a cleanup on another thread clears them)
        # with stale_action none nothing is sent, so nothing to watch for (and no skip counted per period) unless
        # hold mode re-sends the last twist
        if (not self.active or stack is None or params is None or self._last_command is None
                or (params.stale_action != "zero" and params.hold_rate_hz <= 0)):
            return
        frames = {c: self.frames[c] for c in stack.cameras if c in self.frames}
        # a set still arriving holds one camera's new frame beside another's previous one: ages only, the skew
        # between the inputs is prepare_step's to judge on a whole set
        stale = self._why_stale(frames, None, params, stack, whole_set=False)
        if stale is None:
            return
        if params.stale_action != "zero":
            self._no_action(None)  # the hold ends; no skip counted per period, nothing said
            return
        self._stale_period(*stale)

    def control_step(self) -> None:
        """Check the newest image set (executor thread) and hand it to the worker; stale -> per stale_action.
        A step still running longer than ``max_image_age_s`` (a hung or starved model) will have its action
        refused as late: the period gets ``stale_action`` now, not the previous velocity for as long as it runs."""
        job = self.prepare_step()
        worker, params = self._worker, self.params  # read once: a cleanup on another thread clears them
        if job is not None and worker is not None:
            if worker.submit(job):
                self.stats.dropped += 1
            running = self._running_job
            # judged on the node clock, as run_step judges it (wall time under use_sim_time sent zeros between
            # on-time actions); a new instruction meanwhile changes nothing here: nothing else drives the arm, and
            # the old velocity must not stand while the step hangs (halt, disable, deactivate send their own stop)
            if (running is not None and params is not None
                    and running.actuation_gen == self._actuation_gen and running.outlived(
                        self.get_clock().now().nanoseconds, params.max_image_age_s,
                        params.max_image_future_s) is not None):
                self._no_action(None)

    def prepare_step(self) -> StepJob | None:
        """The next step's inputs if there is an instruction and fresh images, else None (counted by reason in
        stats.skipped)."""
        stack, params = self.stack, self.params  # read once (a cleanup on another thread clears them)
        if not self.active or stack is None or params is None:
            return None
        if self.instruction is None:
            self.stats.no_instruction += 1
            dropped = self._dropped_why
            waiting = (f"no instruction in force ({dropped}): waiting for a new one" if dropped is not None
                       else "no instruction received yet")
            self.stats.skip("no_instruction", f"{waiting} on '{params.instruction_topic}'")
            self.get_logger().warn(f"{waiting}; not stepping", throttle_duration_sec=5.0)
            return None
        frames = {c: self.frames[c] for c in stack.cameras if c in self.frames}
        used_before = self._used_ns
        self._used_ns = {c: f.received_ns for c, f in self.frames.items()}
        self._used_ns["~proprio"] = self._proprio_ns
        paired = self._paired_joint_state(frames)
        stale = self._why_stale(frames, paired[0] if paired is not None else None, params, stack)
        if stale is not None:
            reason, why = stale
            if params.control_mode == "event":
                self._used_ns = self._consume_stale_frames(frames, used_before, params)
            self._stale_period(reason, why)
            return None
        proprio = paired[1] if paired is not None else self.proprio
        return StepJob(frames, self.instruction, proprio, self._episode_gen, self._actuation_gen)

    def _stale_period(self, reason: str, why: str) -> None:
        """A period whose inputs are stale (``reason``, a health.SKIP_REASONS key; ``why``, the sentence): counted,
        said (throttled), and ``stale_action``."""
        self.stats.stale += 1
        self.stats.skip(reason, why)
        self.get_logger().warn(f"not stepping: {why}", throttle_duration_sec=2.0)
        self._no_action(None)

    def _no_action(self, job: StepJob | None) -> None:
        """A period that produces no action (stale inputs, a failed or refused step, a step outliving its images):
        with ``stale_action: zero`` a zero twist, so a consumer without a command timeout does not keep the last
        velocity; with ``none`` nothing sent, and hold mode's repeats of the last twist end. Only from an active,
        enabled node, and for ``job`` (a step's) only while it is current: a step that fails after deactivate or a
        new episode must not cut into whatever drives the arm now (deactivate has sent its own stop)."""
        params, stack = self.params, self.stack
        if params is None or stack is None:
            return
        with self._actuation:
            current = job is None or (job.actuation_gen == self._actuation_gen and job.episode_gen == self._episode_gen)
            if not current:
                return
            if params.stale_action != "zero":
                # nothing sent, and nothing for hold mode to re-send: a hold_max_s of minutes kept driving the
                # arm with the last twist after the cameras died (64 twists in 3 s of stale images)
                self._last_command = None
            elif self.active and self.enabled and self._pubs and stack is self.stack:
                self._publish_stop(stack)

    def _stop_if_actuating(self) -> None:
        """A zero twist if the node actuates now (active, enabled, its publishers up); the caller holds
        ``_actuation``."""
        if self.active and self.enabled and self.stack is not None and self._pubs:
            self._publish_stop(self.stack)

    def _publish_stop(self, stack: PolicyStack) -> None:
        """A zero twist now, and no last command for hold mode to repeat (the caller holds ``_actuation``)."""
        self._last_command = None
        self._publish_twist(zero_command(stack.action_spec), self.get_clock().now().to_msg())

    def _consume_stale_frames(self, frames: dict[str, CameraFrame], used_before: dict[str, int],
                              params: PolicyParams) -> dict[str, int]:
        """Event mode, after a refused (stale) set: the frames marked used are only the ones that made it stale
        (too old, stamped ahead of the clock, or too far behind the newest camera), so the others step as soon
        as the stale camera's next frame arrives. Marking them all used (as a step does) deadlocked lock-step
        sources (a simulator, a robot that sends one image set per action): a left-over old frame of one camera
        made each new set stale as soon as the other camera's frame arrived; the new set was consumed, its own
        late frame became the next left-over, and no step ever ran again. Problems no camera frame explains
        (the joint state) mark the whole set used, as before."""
        now = self.get_clock().now().nanoseconds
        newest = max((f.stamp_ns for f in frames.values()), default=now)
        stale = [c for c, f in frames.items()
                 if stamp_problem(f.stamp_ns, now, params.max_image_age_s, params.max_image_future_s) is not None
                 or (newest - f.stamp_ns) * 1e-9 > params.max_image_skew_s]
        if not stale:
            return self._used_ns
        return {**used_before, **{c: frames[c].received_ns for c in stale}}

    def _paired_joint_state(self, frames: dict[str, CameraFrame]) -> tuple[int, np.ndarray] | None:
        """(stamp, values) of the buffered joint state stamped nearest the step's images (the smallest worst
        gap to any camera), or None without stamped joint states or images."""
        found = self._joint_history.nearest([f.stamp_ns for f in frames.values()])
        return None if found is None else (found[0], found[1])

    def _why_stale(self, frames: dict[str, CameraFrame], joint_stamp_ns: int | None, params: PolicyParams,
                   stack: PolicyStack, whole_set: bool = True) -> tuple[str, str] | None:
        """Why the observation is not fresh, as (a health.SKIP_REASONS key, a sentence), or None: a camera
        without a recent image (or one stamped ahead of the node clock, or the cameras' stamps far apart), no
        proprioception yet, an old newest joint state, or the paired one (``joint_stamp_ns``, see
        _paired_joint_state) stamped too far from the images. A joint state goes stale like an image: timer mode
        would otherwise reuse it after the arm driver stops. Float-array proprio carries no stamp: it goes stale
        by its arrival, max_proprio_age_s after the last one accepted (a stopped feed, or one sending only refused
        values, left the arm moving on its last pose). ``whole_set`` False (event mode's watch between sets, when
        one camera's new frame may sit beside another's previous one): ages only, no skew between the inputs."""
        now = self.get_clock().now().nanoseconds
        stamps = {c: frames[c].stamp_ns if c in frames else None for c in stack.cameras}
        problem = image_problem(stamps, now, params.max_image_age_s,
                                params.max_image_skew_s if whole_set else math.inf, params.max_image_future_s)
        if problem is not None:
            return problem
        if params.proprio_input_topic and self.proprio is None:  # timer mode stepped, and failed, every period
            return "no_proprio", f"no proprioception accepted yet on '{params.proprio_input_topic}'"
        limit_s, limit = params.proprio_age
        if self._proprio_stamp_ns is None:
            arrived = self._proprio_arrived
            if not params.proprio_input_topic or arrived is None:
                return None
            sim = self._on_sim_time()
            waited = arrived.age_s(self._moment(), sim)
            if waited <= limit_s:
                return None
            refused = (f"; the messages since were refused, the latest: {self.stats.refusals.get(PROPRIO_INPUT)}"
                       if self._proprio_refused_since else "")
            return "stale_proprio", (f"no fresh proprioception: the last accepted on "
                                     f"'{params.proprio_input_topic}' arrived {waited:.2f} s ago (limit "
                                     f"{limit} {limit_s:g} s){refused}")
        joint = stamp_problem(self._proprio_stamp_ns, now, limit_s, params.max_image_future_s, limit)
        if joint is not None:
            refused = (f"; the joint states since were refused, the latest: {self.stats.refusals.get(PROPRIO_INPUT)}"
                       if self._proprio_refused_since else "")
            return "stale_joint_state", f"no fresh joint state: the newest accepted was {joint}{refused}"
        if not whole_set:
            return None
        paired = joint_stamp_ns if joint_stamp_ns is not None else self._proprio_stamp_ns
        skew = skew_problem(paired, {c: f.stamp_ns for c, f in frames.items()}, params.max_joint_state_skew_s)
        if skew is not None:
            return "joint_state_skew", skew
        return None

    def _on_worker_error(self, exc: BaseException) -> None:
        self.stats.model_errors += 1
        self.stats.skip("model_error", f"step worker: {type(exc).__name__}: {exc}")
        self.get_logger().error(f"step worker: {type(exc).__name__}: {exc}", throttle_duration_sec=2.0)

    def run_step(self, job: StepJob) -> None:
        """One control step (worker thread): model, then publishing per the gate and safety rules."""
        self._running_job = job
        try:
            self._run_step(job)
        finally:
            self._running_job = None

    def _decoded_images(self, job: StepJob) -> dict[str, np.ndarray] | None:
        """The step's frames as RGB (compressed ones decoded now, in the worker), or None when one does not
        decode: the step is skipped (its frame counted as rejected once) and the period gets stale_action."""
        images: dict[str, np.ndarray] = {}
        for camera, frame in job.frames.items():
            first_try = not frame.decoded
            try:
                images[camera] = frame.rgb
            except ImageConversionError as exc:
                if first_try:
                    self.stats.rejected_images += 1
                    self.stats.refuse(camera, str(exc))
                self.stats.skip("bad_image", f"camera '{camera}': {exc}")
                self.get_logger().error(f"camera '{camera}': frame not stepped on: {exc}", throttle_duration_sec=2.0)
                self._no_action(job)
                return None
        return images

    def _run_step(self, job: StepJob) -> None:
        stack, params = self.stack, self.params
        if stack is None or params is None:
            return
        # the step's time (its deadline, the record's total_ms) counts from here: a 4K JPEG's decode is its work
        started = stack.controller.clock()
        images = self._decoded_images(job)  # first: the repeat check below compares the decoded frames
        if images is None:
            return
        if params.control_mode == "event" and self._repeats_last_step(job):
            self.stats.repeated_inputs += 1
            return
        if job.episode_gen != self._episode_applied:
            stack.controller.reset_episode()
            self._episode_applied = job.episode_gen
        frames = job.frames
        first = frames[stack.cameras[0]]
        received_ns = max(f.received_ns for f in frames.values())  # the frame that completed the set
        oldest_ns = job.oldest_stamp_ns
        obs = Observation(
            images=images,
            instruction=job.instruction,
            proprio=job.proprio,
            stamp_ns=first.stamp_ns,
        )
        try:
            action, record = stack.controller.step(obs, started_at=started)
            command = to_robot_command(action, stack.action_spec, params.period_s)
        except UnsafeActionError as exc:
            self.stats.unsafe_actions += 1
            self.stats.skip("unsafe_action", f"unsafe action not published: {exc}")
            self.get_logger().error(f"unsafe action not published: {exc}", throttle_duration_sec=2.0)
            self._no_action(job)
            return
        except (Exception, SystemExit) as exc:  # one failed step must not kill the node (nor a library's exit)
            self.stats.model_errors += 1
            self.stats.skip("model_error", f"policy step failed: {type(exc).__name__}: {exc}")
            self.get_logger().error(f"policy step failed: {type(exc).__name__}: {exc}", throttle_duration_sec=2.0)
            self._no_action(job)
            return
        if stack is not self.stack:  # cleaned up (and maybe configured again) while the step ran: not this one's
            return
        self.stats.steps += 1
        self.stats.last_step = self._moment()
        dropped = getattr(stack.runner, "dropped_tokens", 0)
        if dropped and job.instruction != self._cut_said:  # said once per instruction, as it first runs
            self._cut_said = job.instruction
            self.stats.cut_instructions += 1
            self.get_logger().warn(
                f"instruction {quoted(job.instruction)} is {dropped} token(s) longer than the "
                f"{stack.runner.model.config.lm.max_text_len} the model reads: its end is ignored (say the task "
                "first, or shorter)")
        record.stamp_ns = first.stamp_ns
        record.action = [float(v) for v in command.action]
        with self._actuation:  # halt/disable/deactivate cannot interleave with this decision and its publishing
            if not self._pubs or stack is not self.stack:
                # cleaned up while the step ran (a worker given up on at cleanup can finish under the next
                # configuration: its step must not reach that one's records, recording or counters)
                return
            recorder = self._recorder
            current = job.actuation_gen == self._actuation_gen and job.episode_gen == self._episode_gen
            # the images were fresh when the step was handed over; a slow step (or one that waited behind
            # another) can outlive them, and its action would move the robot on what it saw too long ago
            late = job.outlived(self.get_clock().now().nanoseconds, params.max_image_age_s,
                                params.max_image_future_s)
            if late is not None:
                self.stats.skip("late_action", f"action not published, the step ended too late: an image is {late}")
                self.get_logger().warn(f"action not published: an image is {late} (a slow step, or the clock went "
                                       "back)", throttle_duration_sec=2.0)
            record.actuated = bool(self.active and self.enabled and current and late is None)
            if record.actuated:
                # the command's own time, as MoveIt Servo reads it (a camera stamp would make every command
                # of an unstamped camera, and any step slower than Servo's timeout, stale); the images' stamps
                # are in the step record
                now = self.get_clock().now()
                sent = Moment(time.monotonic_ns(), now.nanoseconds)
                self._publish_twist(command, now.to_msg())
                self._publish_gripper(command.gripper, params)
                self._pubs["action"].publish(Float32MultiArray(data=[float(v) for v in command.standard7]))
                self._last_command, self._last_command_at = command, sent
                self.stats.actions_published += 1
                self.stats.last_action = sent
            elif not current:
                self.stats.discarded += 1
            # camera stamp -> action out (or, gated, the moment it would have gone out)
            record.obs_age_ms = (self.get_clock().now().nanoseconds - oldest_ns) * 1e-6
            record_msg = String(data=record.to_json())
            self._pubs["record"].publish(record_msg)
        if late is not None:  # the action refused as late: stale_action for this period, as for any other refusal
            self._no_action(job)
        self.last_record = record
        self._last_stepped = (job, time.perf_counter_ns())
        self.stats.latency_ms.append(((time.perf_counter_ns() - received_ns) * 1e-6, float(record.total_ms)))
        if recorder is not None:  # queued: written on the recorder's thread, never holding up this one
            recorder.write_step({c: f.msg for c, f in frames.items()}, job.instruction, job.proprio,
                                command.standard7, record_msg, first.stamp_ns)

    def _repeats_last_step(self, job: StepJob) -> bool:
        """Event mode: whether ``job`` is the last step's inputs again, byte for byte, newly arrived while that
        step ran (timer mode steps the newest inputs at its rate, new or not, by design).

        A lock-step simulator re-sends an observation whose action is late; stepping the copy too would
        answer twice, and the late second answer would be applied to the next state, one step behind for the
        rest of the episode (and the action head's history would hold the state twice). A camera sending
        identical frames is stepped again once the step on them has ended, so a still scene never stalls."""
        if self._last_stepped is None:
            return False
        last, ended_ns = self._last_stepped
        arrived_ns, last_arrived_ns = (max(f.received_ns for f in j.frames.values()) for j in (job, last))
        if (not last_arrived_ns < arrived_ns < ended_ns or job.episode_gen != last.episode_gen
                or job.actuation_gen != last.actuation_gen or job.instruction != last.instruction
                or job.frames.keys() != last.frames.keys()):
            return False
        if job.proprio is None or last.proprio is None:
            if job.proprio is not last.proprio:
                return False
        elif not np.array_equal(job.proprio, last.proprio):
            return False
        return all(np.array_equal(job.frames[c].rgb, last.frames[c].rgb) for c in job.frames)

    def _publish_twist(self, command: RobotCommand, stamp: Any) -> None:
        assert self.params is not None
        msg = TwistStamped()
        msg.header.stamp = stamp
        msg.header.frame_id = self.params.frame_id
        msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = command.linear
        msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z = command.angular
        self._pubs["twist"].publish(msg)

    def _publish_gripper(self, gripper: float, params: PolicyParams) -> None:
        if params.gripper_output == "unit":
            self._pubs["gripper"].publish(Float64(data=gripper))
        else:
            self._pubs["gripper"].publish(Float64MultiArray(data=gripper_positions(
                gripper, params.gripper_open_positions, params.gripper_closed_positions)))

    def _on_hold_timer(self) -> None:
        """Servo stops when commands stop: repeat the last twist, but only for hold_max_s."""
        with self._actuation:
            if not (self.active and self.enabled and self._last_command is not None and self.params is not None
                    and self._pubs):
                return
            # on the node clock, as the twists are stamped and the control timer runs: under use_sim_time a
            # simulator at 10x real time held a monotonic hold_max_s for ten times its sim seconds. A clock that
            # went back (a simulator reset) ends the hold rather than holding until it caught up.
            age = (self.get_clock().now().nanoseconds - self._last_command_at.clock_ns) * 1e-9
            if not 0.0 <= age <= self.params.hold_max_s:
                return
            # and on wall time without a simulator: a system clock stepped back, then caught up, made a twist of
            # a minute ago young again on the node clock
            wall_age = (time.monotonic_ns() - self._last_command_at.mono_ns) * 1e-9
            if not self._on_sim_time() and wall_age > self.params.hold_max_s:
                return
            self._publish_twist(self._last_command, self.get_clock().now().to_msg())
            self.stats.hold_published += 1

    # -- diagnostics -----------------------------------------------------------------------
    def health_snapshot(self, params: PolicyParams | None = None, stack: PolicyStack | None = None
                        ) -> HealthSnapshot:
        """The node's counters and input ages now, for health.policy_status (configured node; ``params`` and
        ``stack`` as the caller read them, the node's own by default)."""
        params, stack = params or self.params, stack or self.stack
        if params is None or stack is None:
            raise RuntimeError("health_snapshot of a node that is not configured")
        stats = self.stats
        moment = self._moment()
        now, sim = moment.clock_ns, self._on_sim_time()
        age = lambda ns, clock: None if ns is None or ns < 0 else (clock - ns) * 1e-9
        since = lambda then: None if then is None else then.age_s(moment, sim)
        frames = dict(self.frames)  # the input callbacks may replace entries meanwhile
        worker = self._worker
        refused = dict(stats.refused)
        window_s = max(params.diagnostics_period_s, 2 * params.period_s)

        def silent(received_age_s: float | None, topic: str, kind: type) -> str:
            """Who publishes ``topic``, asked of the ROS graph only for an input silent over the window."""
            if received_age_s is not None and received_age_s <= window_s:
                return ""
            return self._publishers_note(topic, kind)

        cameras = {}
        for c, topic in zip(stack.cameras, params.image_topics):
            kind = self._image_type(topic)
            if c in frames:
                received = since(frames[c].arrived)
                cameras[c] = InputAge(self._as_heard(topic), age(frames[c].stamp_ns, now), received,
                                      refused.get(c, 0), stats.refusals.get(c, ""), silent(received, topic, kind))
            else:
                cameras[c] = InputAge(self._as_heard(topic), refused=refused.get(c, 0),
                                      refusal=stats.refusals.get(c, ""), publishers=silent(None, topic, kind))
        proprio, proprio_kind = None, ""
        if params.proprio_input_topic:
            joint = params.proprio_source == "joint_state"
            proprio_kind = "joint state" if joint else "proprio"
            received = since(self._proprio_arrived)
            proprio = InputAge(self._as_heard(params.proprio_input_topic), age(self._proprio_stamp_ns, now),
                               received, refused.get(PROPRIO_INPUT, 0), stats.refusals.get(PROPRIO_INPUT, ""),
                               silent(received, params.proprio_input_topic,
                                      JointState if joint else Float32MultiArray))
        return HealthSnapshot(
            active=self.active, enabled=self.enabled, gated_by=self._gated_by,
            window_s=window_s,
            instruction_topic=self._as_heard(params.instruction_topic), has_instruction=self.instruction is not None,
            instruction_dropped=self._dropped_why,
            steps=stats.steps, actions_published=stats.actions_published,
            skipped=dict(stats.skipped), skip_details=dict(stats.skip_details),
            cameras=cameras, proprio_kind=proprio_kind, proprio=proprio,
            last_step_age_s=since(stats.last_step), last_action_age_s=since(stats.last_action),
            active_for_s=since(self._active_since),
            step_running=worker is not None and worker.busy.is_set(),
            expected_period_steps=(params.diagnostics_period_s / params.period_s
                                   if params.control_mode == "timer" else None),
            info=self._health_info(params, stack),
        )

    def _moment(self) -> Moment:
        return Moment(time.monotonic_ns(), self.get_clock().now().nanoseconds)

    def _publishers_note(self, topic: str, kind: type) -> str:
        """Who publishes ``topic`` on the ROS graph, said when that explains a silence: nobody, or only other
        message types than the ``kind`` read here (DDS never connects them, and says nothing)."""
        try:
            resolved = self.resolve_topic_name(topic)
            infos = self.get_publishers_info_by_topic(resolved)
        except Exception:  # a graph query must not cost the status
            return ""
        if not infos:
            # the name asked about, where the status shows another (a namespaced node's relative topic: a driver
            # started outside the namespace publishes beside it, and `ros2 topic info` finds that one)
            shown = self._as_heard(topic)
            return "no publisher on the ROS graph" + (
                f" for '{resolved}'" if resolved.lstrip("/") != shown.lstrip("/") else "")
        expected = f"{kind.__module__.split('.')[0]}/msg/{kind.__name__}"
        types = sorted({info.topic_type for info in infos})
        if expected in types:
            return ""
        pair = {expected, *types}
        hint = ""
        if pair <= {"sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"}:
            hint = ": a topic whose last name is 'compressed' is read as CompressedImage, any other as Image"
        elif pair <= {"sensor_msgs/msg/JointState", "std_msgs/msg/Float32MultiArray"}:
            hint = (": proprio.source joint_state reads JointState on proprio.joint_state_topic, array reads "
                    "Float32MultiArray on proprio_topic")
        return f"published as {', '.join(types)}, read here as {expected}{hint}"

    def _health_info(self, params: PolicyParams, stack: PolicyStack) -> dict[str, str]:
        """What the node runs (checkpoint, exits, guarantee) and its other counters, for /diagnostics."""
        controller, stats = stack.controller, self.stats
        if controller.fixed_exit is not None:
            mode = f"fixed exit {controller.fixed_exit}"
        elif controller.oracle_tolerance is not None:
            mode = f"oracle (tolerance {controller.oracle_tolerance:g})"
        else:
            mode = f"dynamic ({controller.criterion.kind} criterion)"
        thresholds = controller.thresholds
        record = self.last_record
        info = {
            "checkpoint": str(params.checkpoint),
            "exit mode": mode,
            "exit cap": str(controller.cap),
            "exit thresholds": ", ".join(f"{v:.6g}" for v in thresholds.values) if thresholds is not None else "",
            "threshold scale": f"{record.threshold_scale:.6g}" if record is not None else "",
        }
        if controller.plans_with_time:  # how much longer steps run than configure timed: time budgets keep it
            drift = controller.drift
            info["time drift margin"] = (
                f"{drift.margin_ms:.3g} ms (p99 over the last {drift.steps} steps)" if drift.ready
                else f"0 ms (configure's times until {drift.min_steps} steps)")
        cap_now, peak_ms = controller.time_cap, controller.budget.peak_ms  # each read once: a step may change them
        if cap_now is not None and peak_ms is not None:
            info["exit cap now"] = f"{cap_now} (budget.peak_ms {peak_ms:g} ms with the time drift margin)"
        guarantee = controller.guarantee
        info["fidelity guarantee"] = guarantee.describe() if guarantee is not None else "none in force"
        if guarantee is not None:
            info["guarantee eps"], info["guarantee delta"] = f"{guarantee.eps:.6g}", f"{guarantee.delta:.6g}"
        info.update({"dropped observations": str(stats.dropped), "discarded steps": str(stats.discarded),
                     "rejected images": str(stats.rejected_images), "rejected proprio": str(stats.rejected_proprio),
                     "rejected instructions": str(stats.rejected_instructions),
                     "repeated instructions": str(stats.repeated_instructions),
                     "cut instructions": str(stats.cut_instructions),
                     "repeated inputs": str(stats.repeated_inputs),
                     "hold twists": str(stats.hold_published), "record errors": str(stats.record_errors)})
        return info

    def diagnostics(self, params: PolicyParams | None = None, stack: PolicyStack | None = None) -> DiagnosticArray:
        """This node's status (health.policy_status) as a DiagnosticArray; the next call counts from this one."""
        snapshot = self.health_snapshot(params, stack)
        status = policy_status(snapshot, self._health_before)
        self._health_before = snapshot
        arr = self._status_array(status)
        recorder = self._recorder
        if recorder is not None:  # the record_path recording: a full disk costs it, not control
            deleted = [recorder.log.parts[-1].name] if recorder.log.unlinked() else []
            level, message = self.stats.recording.status(str(recorder.log.path), deleted, recorder.stalled_s)
            arr.status.append(DiagnosticStatus(
                level=bytes([level]), name=self._status_name("recording"), message=message,
                hardware_id=self.get_fully_qualified_name(),
                values=[KeyValue(key="record errors", value=str(self.stats.record_errors))]))
        outputs = self._outputs_status()
        if outputs is not None:
            arr.status.append(outputs)
        check, params = self._instruction_check, params or self.params
        if check is not None and params is not None:
            level, message, values = check.status(self.instruction, params.unfamiliar_instruction,
                                                  params.min_instruction_similarity, self._dropped_why)
            arr.status.append(DiagnosticStatus(
                level=bytes([level]), name=self._status_name("instruction"), message=message,
                hardware_id=self.get_fully_qualified_name(), values=[KeyValue(key=k, value=v) for k, v in values]))
        return arr

    def _outputs_status(self) -> DiagnosticStatus | None:
        """``<node>: outputs``, health.outputs_status of the twist and gripper topics as remapped (None before
        configure); a rise in the publishers on them is logged at WARN once. A failing graph query is an ERROR
        status: this runs on the status timer, whose exception would end the spin and ~/halt with it."""
        pubs = self._pubs  # read once: a cleanup on another thread empties it
        if not pubs:
            return None
        try:
            counts = [(pubs[key].topic_name, self.count_publishers(pubs[key].topic_name)) for key in OUTPUTS]
        except Exception as exc:
            return DiagnosticStatus(level=bytes([ERROR]), name=self._status_name("outputs"),
                                    hardware_id=self.get_fully_qualified_name(),
                                    message=f"outputs not checked: {type(exc).__name__}: {exc}")
        status = outputs_status(counts)
        shared = sum(count > 1 for _, count in counts)
        if shared > self._shared_outputs:
            self.get_logger().warn(f"outputs: {status.message}")
        self._shared_outputs = shared
        return DiagnosticStatus(level=bytes([status.level]), name=self._status_name("outputs"),
                                message=status.message, hardware_id=self.get_fully_qualified_name(),
                                values=[KeyValue(key=k, value=v) for k, v in status.values])

    def _status_name(self, what: str) -> str:
        return status_name(self.get_namespace(), self.get_name(), what)

    def _status_array(self, status: PolicyStatus) -> DiagnosticArray:
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status.append(DiagnosticStatus(
            level=bytes([status.level]), name=self._status_name("policy"), message=status.message,
            hardware_id=self.get_fully_qualified_name(),
            values=[KeyValue(key=k, value=v) for k, v in status.values],
        ))
        return arr

    def unconfigured_diagnostics(self) -> DiagnosticArray:
        """The status while no checkpoint is loaded (health.unconfigured_status)."""
        return self._status_array(unconfigured_status(self._state_machine.current_state[1],
                                                      str(self.get_parameter("checkpoint_dir").value),
                                                      self._configure_error, self._transition_error))

    def publish_diagnostics(self) -> None:
        # read once: a cleanup on another thread (a multi-threaded executor) clears them at any moment, and an
        # error raised out of this timer would end the executor's spin, ~/halt with it
        params, stack = self.params, self.stack
        configured = params is not None and stack is not None
        self._diagnostics_pub.publish(self.diagnostics(params, stack) if configured
                                      else self.unconfigured_diagnostics())

    def _on_clock_watch(self) -> None:
        """Wall-time check of a sim clock (use_sim_time): when /clock has not moved for CLOCK_FROZEN_S, a WARN
        status says so (the node's own status timer runs on that clock and is silent), and an OK one when it
        moves again (per-name consumers keep the last level). A standing twist gets stale_action once per
        freeze, and only if nothing stepped since the clock stood and no step runs: a lock-step simulator holds
        its clock while a step runs, and a paused clock with inputs still arriving still steps."""
        clock = self.get_clock()
        if not self._on_sim_time():
            self._clock_moved, self._clock_frozen, self._clock_stop_sent = None, False, False
            self._clock_watched_at = None
            self._watch_system_clock(clock.now().nanoseconds, time.monotonic_ns())
            return
        self._system_clock_seen = None
        now, mono = clock.now().nanoseconds, time.monotonic_ns()
        watched_at, self._clock_watched_at = self._clock_watched_at, mono
        late_ns = mono - watched_at - int(CLOCK_WATCH_S * 1e9) if watched_at is not None else 0
        if late_ns > CLOCK_WATCH_S * 1e9 and self._clock_moved is not None:
            # the watch itself was held up (a configure loading the model blocks the executor for seconds): the
            # /clock messages of that time wait behind it, so that time is not counted as the clock standing; one
            # period per run is (a watch late on every run, an executor always busy, still finds a frozen clock)
            self._clock_moved = (self._clock_moved[0], self._clock_moved[1] + late_ns)
        if self._clock_moved is not None and now < self._clock_moved[0]:
            self.get_logger().warn(
                f"use_sim_time: the node clock went back {(self._clock_moved[0] - now) * 1e-9:.3f} s (a simulator "
                "reset?): inputs stamped before the jump are refused as ahead of the clock until newer ones come",
                throttle_duration_sec=2.0)
        if self._clock_moved is None or now != self._clock_moved[0]:
            if self._clock_frozen and self._clock_moved is not None:
                stood_s = (mono - self._clock_moved[1]) * 1e-9
                self._publish_clock_status(0, f"use_sim_time: the node clock moves again (it stood {stood_s:.0f} s)",
                                           mono)
            elif (self._clock_said_at is None  # (half a watch of slack: the watch's own timing jitters)
                  or mono - self._clock_said_at >= self._diagnostics_period_ns() - int(CLOCK_WATCH_S * 5e8)):
                # every period, as the other statuses: one said only on a change went stale in diagnostic_aggregator
                # and rqt_robot_monitor while all was well (an interfaces audit)
                self._publish_clock_status(0, "use_sim_time: the node clock moves", mono)
            self._clock_moved, self._clock_frozen, self._clock_stop_sent = (now, mono), False, False
            return
        frozen_s = (mono - self._clock_moved[1]) * 1e-9
        if frozen_s < CLOCK_FROZEN_S:
            return
        self._clock_frozen = True
        said = f"use_sim_time: the node clock has not moved for {frozen_s:.0f} s (no /clock?)"
        self._publish_clock_status(1, f"{said}: ages, timers and this node's other statuses stand still with it",
                                   mono)
        self.get_logger().warn(said, throttle_duration_sec=10.0)
        params, last_step = self.params, self.stats.last_step
        stepped = last_step is not None and last_step.mono_ns > self._clock_moved[1]
        if (not self._clock_stop_sent and params is not None and params.stale_action == "zero"
                and self._last_command is not None and self._running_job is None and not stepped):
            self._clock_stop_sent = True
            self.stats.stale += 1
            self.stats.skip("stale_clock", f"the node clock (use_sim_time) has not moved for {frozen_s:.1f} s")
            self._no_action(None)

    def _watch_system_clock(self, now: int, mono: int) -> None:
        """Without use_sim_time: a step of the system clock (NTP, chrony at boot, by hand) is said, once per
        step: the node's timers run on the steady clock and go on, but inputs stamped before a step back are
        refused as ahead of the clock (and after one forward, as old) until new ones come."""
        seen, self._system_clock_seen = self._system_clock_seen, (now, mono)
        if seen is None:
            return
        step_s = ((now - seen[0]) - (mono - seen[1])) * 1e-9
        if abs(step_s) >= SYSTEM_CLOCK_STEP_S:
            self.get_logger().warn(
                f"the system clock stepped {'back' if step_s < 0 else 'forward'} {abs(step_s):.1f} s (NTP?): "
                f"inputs stamped before the step are refused as {'ahead of the clock' if step_s < 0 else 'old'} "
                "until new ones come; control goes on on the steady clock")

    def _diagnostics_period_ns(self) -> int:
        params = self.params
        period = params.diagnostics_period_s if params is not None else POLICY_DEFAULTS["diagnostics_period_s"]
        return int(float(period) * 1e9)

    def _publish_clock_status(self, level: int, message: str, mono: int) -> None:
        self._clock_said_at = mono
        self._diagnostics_pub.publish(DiagnosticArray(status=[DiagnosticStatus(
            level=bytes([level]), name=self._status_name("clock"), hardware_id=self.get_fully_qualified_name(),
            message=message)]))

    def _start_diagnostics_timer(self, period_s: Any) -> None:
        """(Re)start the status timer; a period that is not a valid number (refused at configure) keeps the
        default until then. On the control group: the status goes out while a model step runs."""
        if not (isinstance(period_s, (int, float)) and not isinstance(period_s, bool)
                and MIN_DIAGNOSTICS_PERIOD_S <= period_s <= MAX_DIAGNOSTICS_PERIOD_S):
            period_s = POLICY_DEFAULTS["diagnostics_period_s"]
        if self._diagnostics_timer is not None:
            self.destroy_timer(self._diagnostics_timer)
        self._diagnostics_timer = self._periodic_timer(float(period_s), self.publish_diagnostics, self._control_group)

    def _on_sim_time(self) -> bool:
        """Whether the node clock is a simulator's /clock (use_sim_time)."""
        return bool(getattr(self.get_clock(), "ros_time_is_active", False))

    def _periodic_timer(self, period_s: float, callback: Any, group: Any) -> Any:
        """A timer on the node clock under use_sim_time (a simulator's /clock, which a lock-step one holds while
        it waits for the action), else on the steady clock: a system clock stepped back (NTP, chrony at boot)
        stopped every timer of the node clock for the length of the step (an audit: 60 s back, 60 s without a
        step, a stale stop, a held twist's end or /diagnostics)."""
        return self.create_timer(period_s, callback, callback_group=group,
                                 clock=None if self._on_sim_time() else self._steady_clock)


def _same_value(a: Any, b: Any) -> bool:
    """One parameter value as another (type included: 1 is not 1.0 for ROS, whose array values are sequences)."""
    arrays = (list, tuple, array.array)  # rclpy hands double and integer arrays over as array.array
    if isinstance(a, arrays) or isinstance(b, arrays):
        return isinstance(a, arrays) and isinstance(b, arrays) and len(a) == len(b) and all(
            _same_value(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def main(argv: list[str] | None = None) -> int:
    # started with autostart: a configure or activate that failed ends the process with status 1 (it ran on, then
    # exited 0, as if it had done its work)
    return run_node(PolicyNode, argv, on_done=lambda node: 1 if node.autostart_failed and not node.active else None)


if __name__ == "__main__":
    sys.exit(main())
