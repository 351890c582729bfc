"""Proprioception from ``sensor_msgs/JointState``: the checkpoint's named values, picked by joint name.

Pure (no rclpy): the policy node hands over the message's fields, tests use
plain lists. Arm drivers publish every joint they have (often more than the
policy uses, in their own order), so values are found by name, put in the
order of the checkpoint's ``ProprioSpec`` and the other joints ignored.

How a ``ProprioSpec`` name reads a JointState (the suffix after the last dot):

    joint3, joint3.pos, joint3.position  -> position of joint "joint3"
    joint3.vel, joint3.velocity          -> its velocity
    joint3.effort                        -> its effort

Any other name is a joint name as a whole (dots included), read as a
position. ``.pos`` is LeRobot's naming (``shoulder_pan.pos``), so a model
trained on a LeRobot dataset reads its arm's ``/joint_states`` as it is; the
MCAP importer names JointState proprio after the joints, which reads back
the same way.

Units: JointState carries ROS units (REP-103: rad or m, rad/s or m/s, N m
or N) and they are passed on as they are, except for a value whose spec
unit is ``deg`` (position) or ``deg/s`` (velocity): a model trained on
degrees gets degrees.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from deer_vla.core import ProprioError, ProprioSpec
from deer_vla.core.log_text import quoted

JOINT_FIELDS = ("position", "velocity", "effort")
# a robot's joint states list tens of joints: a message listing more is refused before its names are read (one
# of 100 000 names took the node 40 ms to index, and a flood of them delayed ~/halt by 0.65 s)
MAX_JOINT_NAMES = 4096
FIELD_SUFFIXES = {"pos": "position", "position": "position", "vel": "velocity", "velocity": "velocity",
                  "effort": "effort"}
_UNNAMED_RE = re.compile(r"^proprio_\d+$")
# (field, spec unit) -> factor from the JointState's SI value; every other unit is taken as it comes
_TO_SPEC_UNIT = {("position", "deg"): 180.0 / np.pi, ("velocity", "deg/s"): 180.0 / np.pi}


class JointStateError(ProprioError):
    """A JointState that cannot give the model's values (a joint missing, malformed, non-finite, stale)."""


@dataclass(frozen=True)
class JointValue:
    """One proprio value: a field (position, velocity or effort) of a named joint."""

    joint: str
    field: str

    @classmethod
    def parse(cls, name: str) -> JointValue:
        joint, dot, suffix = name.rpartition(".")
        if dot and joint and suffix in FIELD_SUFFIXES:
            return cls(joint, FIELD_SUFFIXES[suffix])
        return cls(name, "position")

    def __str__(self) -> str:
        return f"{self.joint} {self.field}"


@dataclass(frozen=True)
class JointStateProprio:
    """Maps a JointState to the values ``spec`` names, in its order (``from_spec`` builds it)."""

    spec: ProprioSpec
    values: tuple[JointValue, ...]
    factors: tuple[float, ...]  # per value: JointState (SI) -> the spec's unit

    @classmethod
    def from_spec(cls, spec: ProprioSpec) -> JointStateProprio:
        """ValueError when the names cannot be read from a JointState (unnamed, or two names for one value)."""
        if spec.dim and all(_UNNAMED_RE.match(n) for n in spec.names):
            raise ValueError(
                f"the checkpoint's proprioception is unnamed ({spec.names[0]}..{spec.names[-1]}), so no joint can "
                "be matched: list the joint names in its config.json under proprio.names, or use proprio.source: "
                "array")
        values = tuple(JointValue.parse(n) for n in spec.names)
        seen: dict[JointValue, str] = {}
        for name, value in zip(spec.names, values):
            if value in seen:
                raise ValueError(f"proprio names '{seen[value]}' and '{name}' both read the {value} of the JointState")
            seen[value] = name
        factors = tuple(_TO_SPEC_UNIT.get((v.field, u), 1.0) for v, u in zip(values, spec.units))
        return cls(spec, values, factors)

    @property
    def fields(self) -> tuple[str, ...]:
        """The JointState fields the model reads, in JOINT_FIELDS order."""
        used = {v.field for v in self.values}
        return tuple(f for f in JOINT_FIELDS if f in used)

    def describe(self) -> str:
        return ", ".join(f"{v} in {u}" if f != 1.0 else str(v)
                         for v, u, f in zip(self.values, self.spec.units, self.factors))

    def extract(self, names: Sequence[str], position: Sequence[float], velocity: Sequence[float] = (),
                effort: Sequence[float] = ()) -> np.ndarray:
        """The model's proprio vector (float32, spec order) from one JointState's fields; JointStateError (or
        the spec's ProprioError for a value beyond its limits) saying what is wrong."""
        if len(names) > MAX_JOINT_NAMES:
            raise JointStateError(f"the message lists {len(names)} joints, more than {MAX_JOINT_NAMES}: not read "
                                  f"(the model reads {self.describe()})")
        names = [str(n) for n in names]
        index: dict[str, int] = {}
        for i, name in enumerate(names):
            if name in index:
                raise JointStateError(f"joint {quoted(name, 40)} appears twice in the message")
            index[name] = i
        missing = list(dict.fromkeys(v.joint for v in self.values if v.joint not in index))
        if missing:
            raise JointStateError(f"no joint {', '.join(missing)} in the message (it has {_listing(names)}); "
                                  f"the model reads {self.describe()}")
        given = {"position": position, "velocity": velocity, "effort": effort}
        arrays: dict[str, np.ndarray] = {}
        for field in self.fields:
            arr = np.asarray(given[field], dtype=np.float64).reshape(-1)
            if arr.size != len(names):
                if arr.size == 0:
                    raise JointStateError(f"the message has no {field} values; the model reads {self.describe()}")
                raise JointStateError(f"{len(names)} joint names but {arr.size} {field} values: a malformed "
                                      "JointState (every filled array has one value per name)")
            arrays[field] = arr
        values = np.array([arrays[v.field][index[v.joint]] for v in self.values], dtype=np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            raise JointStateError("non-finite values " + ", ".join(
                f"{self.values[i]}={values[i]:g}" for i in np.flatnonzero(bad)))
        values *= np.asarray(self.factors)
        return self.spec.check(values)  # float32 in spec order; refuses values beyond the checkpoint's limits


def stamp_problem(stamp_ns: int, now_ns: int, max_age_s: float, max_future_s: float,
                  age_limit: str = "max_image_age_s") -> str | None:
    """Why a message stamped ``stamp_ns`` is not fresh at ``now_ns``, or None: the rule the node applies to
    camera images (older than ``max_age_s``, or ahead of the node clock by more than ``max_future_s``).
    ``age_limit`` names the parameter ``max_age_s`` came from, for the message."""
    ahead_s = (stamp_ns - now_ns) * 1e-9
    if ahead_s > max_future_s:
        return (f"stamped {ahead_s:.3f} s ahead of the node clock (tolerance max_image_future_s "
                f"{max_future_s:g} s); check the publisher's clock, or whether the node's went back (a simulator "
                "reset under use_sim_time)")
    if -ahead_s > max_age_s:
        return f"stamped {-ahead_s:.3f} s ago (limit {age_limit} {max_age_s:g} s)"
    return None


def worst_skew(joint_stamp_ns: int, frame_stamps_ns: Mapping[str, int]) -> tuple[str, float]:
    """The camera whose frame is stamped furthest from the joint state, and the signed gap in seconds (> 0: the
    joint state was taken before that image). The step's observation pairs one arm pose with these images."""
    if not frame_stamps_ns:
        raise ValueError("no camera frames to compare the joint state with")
    camera = max(frame_stamps_ns, key=lambda c: abs(frame_stamps_ns[c] - joint_stamp_ns))
    return camera, (frame_stamps_ns[camera] - joint_stamp_ns) * 1e-9


def skew_problem(joint_stamp_ns: int, frame_stamps_ns: Mapping[str, int], max_skew_s: float) -> str | None:
    """Why the joint state and the step's images are not from about the same moment (a stamp gap beyond
    ``max_skew_s`` to any camera), or None. Each may be fresh by itself and still show the arm elsewhere."""
    camera, skew_s = worst_skew(joint_stamp_ns, frame_stamps_ns)
    if abs(skew_s) <= max_skew_s:
        return None
    first = min(frame_stamps_ns, key=frame_stamps_ns.__getitem__)
    last = max(frame_stamps_ns, key=frame_stamps_ns.__getitem__)
    spread_s = (frame_stamps_ns[last] - frame_stamps_ns[first]) * 1e-9
    if spread_s > 2 * max_skew_s:  # no arm pose is near both pictures: the cameras, not the joint states
        return (f"cameras '{first}' and '{last}' are stamped {spread_s * 1e3:.0f} ms apart, more than twice "
                f"max_joint_state_skew_s ({max_skew_s * 1e3:.0f} ms): no joint state is that near both images "
                f"(bring the cameras' stamps closer, or raise max_joint_state_skew_s to {spread_s / 2:.3g} s)")
    return (f"joint state stamped {abs(skew_s) * 1e3:.0f} ms {'before' if skew_s > 0 else 'after'} camera "
            f"'{camera}''s image (limit max_joint_state_skew_s {max_skew_s * 1e3:.0f} ms): the arm pose and the "
            "picture are from different moments")


def _listing(names: Sequence[str], limit: int = 12) -> str:
    if not names:
        return "no joints"
    # names come from the message: escaped and cut, so a hostile one cannot fill or forge the log
    shown = ", ".join(n if n.isprintable() and len(n) <= 40 else quoted(n, 40) for n in names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names)} joints)"
