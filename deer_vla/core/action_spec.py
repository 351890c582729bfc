"""Layout, limits and units of a policy's action vector.

Every action in deer_vla is a vector of continuous end-effector commands
followed by one gripper value in [-1, 1] (-1 open, +1 closed). Continuous
values are normalised to [-1, 1]; ``scale`` converts one normalised unit to
the axis' ``units`` (REP-103): "m" / "rad" for a displacement per control
step (the default, and Meta-World's), "m/s" / "rad/s" for a velocity.
A 4-D xyz+gripper simulator and a 7-D arm are both described by this class.
``frame`` is the coordinate frame the axes point along (a TF frame id such as
``tool0``): a twist recorded in the tool frame and sent in ``base_link`` moves
the arm along rotated axes, so the frame travels with the spec from the
recording into the checkpoint; "" where the source does not say.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from deer_vla.core.spec_lists import real_numbers, spec_from_lists

STANDARD_AXES: tuple[str, ...] = ("x", "y", "z", "roll", "pitch", "yaw")
ROTATION_AXES: tuple[str, ...] = ("roll", "pitch", "yaw")
GRIPPER = "gripper"
# per axis kind: the units an axis may have; the first is the default (a displacement per step)
AXIS_UNITS: dict[str, tuple[str, ...]] = {"translation": ("m", "m/s"), "rotation": ("rad", "rad/s")}
# the most any arm moves, per step or per second (by whether the unit is per second): an action, scale or limit
# beyond it is a damaged record or another unit (millimetres, degrees)
PLAUSIBLE_MOTION = {"translation": {False: 1.0, True: 10.0}, "rotation": {False: 2 * math.pi, True: 4 * math.pi}}
MAX_FRAME_CHARS = 256
_FRAME_RE = re.compile(r"[^\s/][^\s]*")  # printable, no whitespace, no leading '/' (tf2 refuses those)


def recorded_gripper_values(record: object) -> tuple[float, float] | None:
    """(raw_open, raw_closed) of a record of the gripper command as demonstrations sent it (an imported
    dataset's action_mapping.gripper, a checkpoint's training.gripper): the raw values mapped to -1 open and
    +1 closed. None unless both are finite numbers (a bool, text or NaN is no gripper position)."""
    if not isinstance(record, dict):
        return None
    values = []
    for v in (record.get("raw_open"), record.get("raw_closed")):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return None
        try:
            number = float(v)  # a JSON integer past a float's range raises here (np.isfinite raised TypeError)
        except OverflowError:
            return None
        if not math.isfinite(number):
            return None
        values.append(number)
    return values[0], values[1]


def check_frame_id(frame: object, what: str) -> str:
    """A TF frame id, or ValueError naming ``what``; "" is allowed (= not said)."""
    if not isinstance(frame, str):
        raise ValueError(f"{what} must be a frame id (text), got {type(frame).__name__}")
    if frame and (len(frame) > MAX_FRAME_CHARS or not frame.isprintable() or not _FRAME_RE.fullmatch(frame)):
        shown = frame if len(frame) <= 80 else frame[:77] + "..."
        raise ValueError(f"{what} must be a TF frame id (no spaces, not starting with '/', at most "
                         f"{MAX_FRAME_CHARS} characters), got {shown!r}")
    return frame


def same_link(a: str, b: str) -> bool:
    """Two frame ids naming one link: the same once a robot's prefix is set aside on either side
    ("robot1/tool0", "tool0" and "robot2/tool0": one arm's tool frame, recorded on one robot, run on another)."""
    return a.rsplit("/", 1)[-1] == b.rsplit("/", 1)[-1]


def axis_kind(axis: str) -> str:
    return "rotation" if axis in ROTATION_AXES else "translation"


@dataclass(frozen=True)
class ActionSpec:
    axes: tuple[str, ...] = STANDARD_AXES
    low: tuple[float, ...] = field(default=())
    high: tuple[float, ...] = field(default=())
    scale: tuple[float, ...] = field(default=())
    units: tuple[str, ...] = field(default=())
    frame: str = ""  # the TF frame the axes are in; "" = not recorded

    def __post_init__(self) -> None:
        check_frame_id(self.frame, "ActionSpec.frame")
        axes = tuple(self.axes)
        unknown = [a for a in axes if a not in STANDARD_AXES]
        if unknown or len(set(axes)) != len(axes) or not axes:
            raise ValueError(
                f"ActionSpec.axes must be a non-empty subset of {STANDARD_AXES} without repeats, got {axes}"
            )
        n = len(axes)
        object.__setattr__(self, "axes", axes)
        for name, default in (("low", -1.0), ("high", 1.0), ("scale", 0.01)):
            value = real_numbers(getattr(self, name) or (default,) * n, f"ActionSpec.{name}")
            if len(value) != n:
                raise ValueError(f"ActionSpec.{name} has {len(value)} values for {n} axes {axes}")
            if not all(np.isfinite(value)):
                raise ValueError(f"ActionSpec.{name} must be finite, got {value}")
            object.__setattr__(self, name, value)
        if any(lo >= hi for lo, hi in zip(self.low, self.high)):
            raise ValueError(f"ActionSpec.low must be below high per axis, got low={self.low} high={self.high}")
        if any(s <= 0 for s in self.scale):
            raise ValueError(f"ActionSpec.scale must be positive, got {self.scale}")
        units = tuple(str(u) for u in self.units) or tuple(AXIS_UNITS[axis_kind(a)][0] for a in axes)
        if len(units) != n:
            raise ValueError(f"ActionSpec.units has {len(units)} values for {n} axes {axes}")
        for axis, unit in zip(axes, units):
            allowed = AXIS_UNITS[axis_kind(axis)]
            if unit not in allowed:
                raise ValueError(f"ActionSpec.units: axis '{axis}' is a {axis_kind(axis)}, its unit must be one of "
                                 f"{list(allowed)} (per step, or per second), got {unit!r}")
        object.__setattr__(self, "units", units)
        for axis, lo, hi, scale, unit in zip(axes, self.low, self.high, self.scale, units):
            kind = axis_kind(axis)
            per_second = unit == AXIS_UNITS[kind][1]
            reach, limit = max(abs(lo), abs(hi)) * scale, PLAUSIBLE_MOTION[kind][per_second]
            per = "" if per_second else " per step"
            if reach > limit:  # a scale of 1e9 published a 5e9 m/s twist: clipping is in normalised units only
                raise ValueError(f"ActionSpec: axis '{axis}' reaches {reach:g} {unit}{per} (max(|low|, |high|) x "
                                 f"scale), beyond any arm's motion ({limit:g} {unit}{per}): a damaged spec, or not "
                                 "metres and radians")

    @property
    def num_continuous(self) -> int:
        return len(self.axes)

    @property
    def dim(self) -> int:
        """Length of the action vector: continuous axes + gripper."""
        return len(self.axes) + 1

    def clip(self, action: np.ndarray) -> np.ndarray:
        """Clip to the configured limits; raises on NaN/inf or a wrong length."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape[-1] != self.dim:
            raise ValueError(f"action has {action.shape[-1]} values, spec {self.axes}+gripper needs {self.dim}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action contains NaN or inf: {action}")
        out = action.copy()
        out[..., : self.num_continuous] = np.clip(out[..., : self.num_continuous], self.low, self.high)
        out[..., -1] = np.clip(out[..., -1], -1.0, 1.0)
        return out

    def to_standard7(self, action: np.ndarray) -> np.ndarray:
        """Normalised action -> [x, y, z, roll, pitch, yaw, gripper]; absent axes are 0."""
        action = np.asarray(action, dtype=np.float64)
        out = np.zeros(action.shape[:-1] + (7,), dtype=np.float64)
        for i, axis in enumerate(self.axes):
            out[..., STANDARD_AXES.index(axis)] = action[..., i]
        out[..., 6] = action[..., -1]
        return out

    def from_standard7(self, action7: np.ndarray) -> np.ndarray:
        """[x, y, z, roll, pitch, yaw, gripper] -> this spec's layout (extra axes dropped)."""
        action7 = np.asarray(action7, dtype=np.float64)
        if action7.shape[-1] != 7:
            raise ValueError(f"expected a 7-D action, got {action7.shape[-1]} values")
        idx = [STANDARD_AXES.index(a) for a in self.axes] + [6]
        return action7[..., idx]

    def to_metric(self, action: np.ndarray) -> np.ndarray:
        """Continuous part in each axis' units (m or rad per step, or m/s, rad/s); gripper excluded."""
        action = np.asarray(action, dtype=np.float64)
        return action[..., : self.num_continuous] * np.asarray(self.scale)

    def to_velocity(self, action: np.ndarray, period_s: float) -> np.ndarray:
        """Continuous part as velocities (m/s, rad/s): a per-step displacement is divided by the period."""
        if period_s <= 0 or not np.isfinite(period_s):
            raise ValueError(f"control period must be positive, got {period_s}")
        per_step = np.array([not u.endswith("/s") for u in self.units])
        metric = self.to_metric(action)
        return np.where(per_step, metric / period_s, metric)

    def to_dict(self) -> dict:
        """The frame only when known: a spec without one is written as before it existed."""
        out = {"axes": list(self.axes), "low": list(self.low), "high": list(self.high), "scale": list(self.scale),
               "units": list(self.units)}
        return {**out, "frame": self.frame} if self.frame else out

    @classmethod
    def from_dict(cls, data: dict) -> ActionSpec:
        """Also reads specs written before ``units`` or ``frame`` existed (every axis then a displacement per
        step; the frame not said)."""
        unknown = set(data) - {"axes", "low", "high", "scale", "units", "frame"}
        if unknown:
            raise ValueError(f"unknown ActionSpec keys {sorted(unknown)}")
        frame = check_frame_id(data.get("frame", ""), "ActionSpec.frame")
        defaults = {"axes": STANDARD_AXES, "low": (), "high": (), "scale": (), "units": ()}
        return spec_from_lists(lambda **lists: cls(**lists, frame=frame), data, defaults, "ActionSpec")
