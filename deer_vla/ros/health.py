"""Policy node health: why a step is skipped (by reason) and the node's ``/diagnostics`` status.

Pure (no rclpy): the node snapshots its counters and input ages into a
``HealthSnapshot`` once per diagnostics period, ``policy_status`` turns it
(and the previous snapshot, for the counts of the last period) into a level,
a message and key/values; the node wraps them in ``diagnostic_msgs``.

Level rules (window = the longer of the diagnostics period and two control
periods, so a slow control rate is not taken for a stall):

- WARN while inactive, while no instruction has arrived, and while waiting
  for a camera's (or the proprioception's) first message after activation
  (or while every one that arrives is refused: named, with the reason).
- OK when a step finished within the window and none was skipped in the last
  period; WARN when some were skipped (the message names the most frequent
  reason and its latest detail), and in timer mode when the steps of the
  last period are under half of what ``rate_hz`` asks (steps slower than
  the control period, or a starved executor).
- No step within the window: WARN, naming what holds the steps back (a
  silent camera first, then the most frequent skip reason, a silent joint
  state or proprio topic, a model step still running); ERROR, with the same
  reason, once no step has finished for ``ERROR_AFTER_WINDOWS`` windows.
- No checkpoint loaded (``unconfigured_status``): ERROR naming the reason
  when the last configure failed or a transition raised (error processing
  left it unconfigured), else WARN. The node reports from
  construction on, so a node that never configured is not absent from the
  robot's monitor.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from deer_vla.ros.budget_monitor import ERROR, OK, WARN
from deer_vla.ros.joint_state import stamp_problem

# why a step produced no action (NodeStats.skipped keys; a KeyValue each in /diagnostics)
SKIP_REASONS: dict[str, str] = {
    "no_instruction": "no instruction received yet",
    "no_image": "a camera has sent no image yet",
    "no_proprio": "the proprioception topic has sent nothing the node accepted yet",
    "future_image": "an image stamped more than max_image_future_s ahead of the node clock",
    "stale_image": "an image older than max_image_age_s",
    "image_skew": "the cameras' newest images stamped more than max_image_skew_s apart",
    "stale_joint_state": "the joint state older than max_proprio_age_s (0: max_image_age_s), or stamped ahead of "
                         "the node clock",
    "stale_clock": "use_sim_time: the node clock stood still for CLOCK_FROZEN_S of wall time (no /clock)",
    "stale_proprio": "the float-array proprioception last accepted longer ago than max_proprio_age_s (0: "
                     "max_image_age_s; it carries "
                     "no stamp: judged by arrival)",
    "joint_state_skew": "the joint state and an image stamped more than max_joint_state_skew_s apart",
    "late_action": "the step ended after its images had aged past max_image_age_s (a slow step), or the clock "
                   "went back past them",
    "model_error": "the model step raised",
    "unsafe_action": "the action was refused as unsafe (NaN/inf)",
    "bad_image": "a compressed camera frame did not decode (truncated or damaged)",
}
ERROR_AFTER_WINDOWS = 3
BELOW_RATE_FRACTION = 0.5  # timer mode: fewer steps than this share of rate_hz's in a period is WARN
MIN_EXPECTED_STEPS = 4  # a period expecting fewer steps is too short to tell (a 0.05 s period at 10 Hz)


def image_problem(stamps_ns: Mapping[str, int | None], now_ns: int, max_age_s: float, max_skew_s: float,
                  max_future_s: float) -> tuple[str, str] | None:
    """Why the newest image of each camera (header stamp, None = none yet) do not make a fresh set at
    ``now_ns``: (a SKIP_REASONS key, a sentence naming the camera), or None when they do."""
    missing = [c for c, s in stamps_ns.items() if s is None]
    if missing:
        return "no_image", f"no image from camera '{missing[0]}' yet"
    stamps = {c: s for c, s in stamps_ns.items() if s is not None}
    newest, oldest = max(stamps, key=stamps.__getitem__), min(stamps, key=stamps.__getitem__)
    # a wrong camera clock would otherwise make every old frame look fresh forever
    ahead = stamp_problem(stamps[newest], now_ns, math.inf, max_future_s)
    if ahead is not None:
        return "future_image", f"camera '{newest}''s image is {ahead}"
    old = stamp_problem(stamps[oldest], now_ns, max_age_s, math.inf)
    if old is not None:
        return "stale_image", f"camera '{oldest}''s newest image is {old}"
    skew_s = (stamps[newest] - stamps[oldest]) * 1e-9
    if skew_s > max_skew_s:
        return "image_skew", (f"cameras '{oldest}' and '{newest}' have images stamped {skew_s:.3f} s apart "
                              f"(limit max_image_skew_s {max_skew_s:g} s)")
    return None


@dataclass(frozen=True)
class Moment:
    """When something happened, on the monotonic clock and on the node's (ROS) clock at once."""

    mono_ns: int
    clock_ns: int

    def age_s(self, now: Moment, sim_time: bool) -> float:
        """Seconds from this moment to ``now``, on the clock the status windows are in: the node clock under
        use_sim_time (their periods are timers on it; a simulator at 0.1x real time steps every 10 wall seconds,
        and judged on wall time its healthy steps read as missing), else the monotonic clock (immune to a
        system clock step). A sim clock that went back (a reset) gives the monotonic age."""
        # clock_ns 0: the sim clock had not started (no /clock yet), it says nothing of when this was
        if sim_time and 0 < self.clock_ns <= now.clock_ns:
            return (now.clock_ns - self.clock_ns) * 1e-9
        return (now.mono_ns - self.mono_ns) * 1e-9


@dataclass(frozen=True)
class InputAge:
    """The newest message of one input: its topic, and seconds since its header stamp (node clock) and since it
    arrived; None where nothing has arrived (or the message carries no stamp)."""

    topic: str
    stamp_age_s: float | None = None
    received_age_s: float | None = None  # accepted messages only
    refused: int = 0  # messages refused (encoding, size, a joint missing, ...) since configure
    refusal: str = ""  # the latest refusal's reason
    # who publishes the topic, for an input that has gone silent ("" = not asked): "no publisher", or the types
    # published when none is the one read (a raw camera on a topic read as compressed never connects)
    publishers: str = ""

    def silent_because(self) -> str:
        return f" ({self.publishers})" if self.publishers else ""


@dataclass(frozen=True)
class HealthSnapshot:
    """What ``policy_status`` needs, taken by the node at one moment."""

    active: bool
    enabled: bool
    window_s: float
    instruction_topic: str
    has_instruction: bool
    steps: int  # steps that ran the model (in dry run too)
    actions_published: int
    skipped: Mapping[str, int]  # cumulative, by SKIP_REASONS key
    skip_details: Mapping[str, str]  # the latest sentence per reason
    cameras: Mapping[str, InputAge]
    proprio_kind: str = ""  # "joint state" / "proprio" / "" (none used)
    proprio: InputAge | None = None
    last_step_age_s: float | None = None
    last_action_age_s: float | None = None
    active_for_s: float | None = None  # since activation; None while inactive
    step_running: bool = False
    # timer mode: the steps rate_hz makes in one diagnostics period (None: event mode, stepped by its inputs)
    expected_period_steps: float | None = None
    info: Mapping[str, str] = field(default_factory=dict)  # shown as they are (checkpoint, exits, counters)
    gated_by: str = ""  # what last closed the actuation gate (~/halt, deactivate, ...), while it is closed
    instruction_dropped: str | None = None  # why none is in force when one was ("'stop' was refused")


@dataclass(frozen=True)
class PolicyStatus:
    level: int
    message: str
    values: list[tuple[str, str]]


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.3f}"


def _period_counts(now: HealthSnapshot, before: HealthSnapshot | None) -> tuple[int, dict[str, int]]:
    steps = now.steps - (before.steps if before is not None else 0)
    skipped = {r: now.skipped.get(r, 0) - (before.skipped.get(r, 0) if before is not None else 0)
               for r in SKIP_REASONS}
    return steps, skipped


def _most_frequent(skipped: Mapping[str, int]) -> str | None:
    reason = max(SKIP_REASONS, key=lambda r: skipped.get(r, 0))  # ties: the first in SKIP_REASONS order
    return reason if skipped.get(reason, 0) > 0 else None


def _waiting_for(snap: HealthSnapshot) -> str | None:
    """The first input that has never been accepted, as a sentence, or None. One whose messages arrive and
    are refused says so with the latest reason: "waiting for the first" sent the operator to the topic or
    the driver when the encoding or a joint name was wrong."""
    for camera, age in snap.cameras.items():
        if age.received_age_s is None:
            if age.refused:
                return _all_refused(f"image from camera '{camera}'", age, f"({age.refused} so far)")
            return f"waiting for the first image from camera '{camera}' on '{age.topic}'{age.silent_because()}"
    proprio = snap.proprio
    if proprio is not None and proprio.received_age_s is None:
        if proprio.refused:
            return _all_refused(snap.proprio_kind, proprio, f"({proprio.refused} so far)")
        return f"waiting for the first {snap.proprio_kind} on '{proprio.topic}'{proprio.silent_because()}"
    return None


def _all_refused(what: str, age: InputAge, how: str) -> str:
    """An input whose messages arrive and are all refused, as a sentence with the latest reason."""
    return f"every {what} on '{age.topic}' refused {how}, the latest: {age.refusal}"


def _refused_since(now: InputAge | None, before: InputAge | None) -> int:
    return 0 if now is None else now.refused - (before.refused if before is not None else 0)


def _holding_back(snap: HealthSnapshot, skipped: Mapping[str, int], before: HealthSnapshot | None = None) -> str:
    """Why no step finished within the window, as a sentence. An input silent since its last accepted message
    whose messages were refused in the last period is named as refused (a driver restarted with another
    encoding), not as silent."""
    silent = {c: a for c, a in snap.cameras.items()
              if a.received_age_s is not None and a.received_age_s > snap.window_s}
    if silent:
        camera = max(silent, key=lambda c: silent[c].received_age_s or 0.0)
        age = silent[camera]
        refused = _refused_since(age, before.cameras.get(camera) if before is not None else None)
        if refused > 0:
            return _all_refused(f"image from camera '{camera}'", age,
                                f"for {age.received_age_s:.1f} s ({refused} in the last period)")
        return f"no image from camera '{camera}' on '{age.topic}' for {age.received_age_s:.1f} s{age.silent_because()}"
    proprio = snap.proprio
    quiet = proprio is not None and proprio.received_age_s is not None and proprio.received_age_s > snap.window_s
    refused = _refused_since(proprio, before.proprio if before is not None else None) if quiet else 0
    if proprio is not None and refused > 0:  # before the skips it causes: "stale joint state" sent to the driver
        return _all_refused(snap.proprio_kind, proprio,
                            f"for {proprio.received_age_s:.1f} s ({refused} in the last period)")
    reason = _most_frequent(skipped)
    if reason is not None:
        return f"{reason}: {snap.skip_details.get(reason, SKIP_REASONS[reason])}"
    if proprio is not None and quiet:
        return (f"no {snap.proprio_kind} on '{proprio.topic}' for {proprio.received_age_s:.1f} s"
                f"{proprio.silent_because()}")
    if snap.step_running:
        return "a model step is still running"
    return "no new observation completed a step"


def _gated(snap: HealthSnapshot) -> str:
    """The closed gate and what closed it: an executive tells a ~/halt from a node never enabled."""
    return f"gated (dry run, by {snap.gated_by})" if snap.gated_by else "gated (dry run)"


def _values(snap: HealthSnapshot, period_steps: int, period_skipped: Mapping[str, int]) -> list[tuple[str, str]]:
    out = [
        ("state", "active" if snap.active else "inactive"),
        ("actuation", "enabled" if snap.enabled else _gated(snap)),
        ("period s", f"{snap.window_s:g}"),
        ("steps", str(snap.steps)),
        ("steps (last period)", str(period_steps)),
        ("actions published", str(snap.actions_published)),
        ("last step age s", _seconds(snap.last_step_age_s)),
        ("last action age s", _seconds(snap.last_action_age_s)),
    ]
    for reason in SKIP_REASONS:
        out.append((f"skipped {reason}", str(snap.skipped.get(reason, 0))))
        out.append((f"skipped {reason} (last period)", str(period_skipped.get(reason, 0))))
    for camera, age in snap.cameras.items():
        out.append((f"camera {camera}: image age s", _seconds(age.stamp_age_s)))
        out.append((f"camera {camera}: received s ago", _seconds(age.received_age_s)))
        out.append((f"camera {camera}: refused", str(age.refused)))
    if snap.proprio is not None:
        if snap.proprio.stamp_age_s is not None or snap.proprio_kind == "joint state":
            out.append((f"{snap.proprio_kind} age s", _seconds(snap.proprio.stamp_age_s)))
        out.append((f"{snap.proprio_kind} received s ago", _seconds(snap.proprio.received_age_s)))
        out.append((f"{snap.proprio_kind} refused", str(snap.proprio.refused)))
    out.extend(snap.info.items())
    return out


def policy_status(snap: HealthSnapshot, before: HealthSnapshot | None) -> PolicyStatus:
    """The node's status now (module docstring: the rules); ``before`` is the previous period's snapshot
    (None: the first, counts since configure)."""
    period_steps, period_skipped = _period_counts(snap, before)
    values = _values(snap, period_steps, period_skipped)
    if not snap.active:
        return PolicyStatus(WARN, "inactive: configured, not stepping (lifecycle activate to run)", values)
    if not snap.has_instruction:
        dropped = f" (none in force: {snap.instruction_dropped})" if snap.instruction_dropped else ""
        return PolicyStatus(WARN, f"waiting for an instruction on '{snap.instruction_topic}'{dropped}", values)
    window = snap.window_s
    if snap.last_step_age_s is not None and snap.last_step_age_s <= window:
        skipped = sum(period_skipped.values())
        reason = _most_frequent(period_skipped)
        if reason is not None:
            return PolicyStatus(WARN, f"{skipped} of {skipped + period_steps} steps skipped in the last "
                                      f"{window:g} s, mostly {reason}: "
                                      f"{snap.skip_details.get(reason, SKIP_REASONS[reason])}", values)
        gate = "actuation enabled" if snap.enabled else f"{_gated(snap)}: no action published"
        slow = _below_rate(snap, before, period_steps)
        if slow is not None:
            return PolicyStatus(WARN, f"{slow}, {gate}", values)
        return PolicyStatus(OK, f"stepping: {period_steps} step(s) in the last {window:g} s, {gate}", values)
    active_for = snap.active_for_s if snap.active_for_s is not None else math.inf
    stepped_since_active = snap.last_step_age_s is not None and snap.last_step_age_s <= active_for
    since_step = snap.last_step_age_s if stepped_since_active and snap.last_step_age_s is not None else active_for
    waiting = _waiting_for(snap)
    if waiting is not None and not stepped_since_active:
        return PolicyStatus(WARN, f"{waiting} (active for {since_step:.1f} s)", values)
    why = _holding_back(snap, period_skipped, before)
    if since_step > ERROR_AFTER_WINDOWS * window:
        return PolicyStatus(ERROR, f"no step for {since_step:.1f} s: {why}", values)
    return PolicyStatus(WARN, f"no step in the last {window:g} s: {why}", values)


def _below_rate(snap: HealthSnapshot, before: HealthSnapshot | None, period_steps: int) -> str | None:
    """Timer mode stepping at under half its rate over the last period (a model step longer than the control
    period, or a starved executor), as a sentence, else None. Each twist is a per-step delta divided by the
    nominal period, so a consumer that holds it until the next one moves the robot further per step than the
    policy meant. Judged only over a whole period of activity and one long enough to count a few steps."""
    expected = snap.expected_period_steps
    if (expected is None or expected < MIN_EXPECTED_STEPS or before is None or not before.active
            or snap.active_for_s is None or snap.active_for_s < 2 * snap.window_s):
        return None
    if period_steps >= BELOW_RATE_FRACTION * expected:
        return None
    return (f"stepping below the control rate: {period_steps} of {expected:.0f} step(s) in the last period "
            "(a model step longer than the control period, or a busy executor; twists are per-step deltas over "
            "the nominal period)")


def unconfigured_status(state: str, checkpoint: str, configure_error: str | None,
                        transition_error: str | None = None) -> PolicyStatus:
    """The status of a node with no checkpoint loaded (lifecycle ``state``): ERROR naming the reason when its
    last configure failed or a transition raised (``transition_error``: error processing left it unconfigured),
    else WARN (not configured yet, cleaned up); a finalized node says so first, with the last failure."""
    values = [("state", state), ("checkpoint", checkpoint)]
    failed = f"configure failed: {configure_error}" if configure_error is not None else transition_error
    if state == "finalized":  # no transition leaves it: restart the node
        said = "finalized: shut down, no checkpoint loaded (restart the node to run again)"
        return PolicyStatus(WARN, said if failed is None else f"{said}; before it, {failed}", values)
    if configure_error is not None:
        return PolicyStatus(ERROR, f"configure failed: {configure_error}", values)
    if transition_error is not None:
        return PolicyStatus(ERROR, f"{transition_error}; error processing left the node {state} (lifecycle "
                                   "configure to load one again)", values)
    return PolicyStatus(WARN, f"{state}: no checkpoint loaded (lifecycle configure to load one)", values)


def outputs_status(publishers: list[tuple[str, int]]) -> PolicyStatus:
    """The status of the node's command outputs, from (topic, publishers on it) of each: WARN while another
    node publishes on one (two policies, or a policy and a teleop, driving one controller: each command undoes
    the other's; a remap to a controller's topic copied into two robots' processes sent one servo topic 173
    twists of two policies, both of their statuses OK), else OK."""
    values = [(f"publishers on {topic}", str(count)) for topic, count in publishers]
    shared = [f"{count} on {topic}" for topic, count in publishers if count > 1]
    if shared:
        return PolicyStatus(WARN, f"another node publishes on this node's output ({', '.join(shared)}): two nodes "
                                  "drive one controller; give each robot its own namespace or output topics", values)
    return PolicyStatus(OK, "this node alone publishes its commands", values)
