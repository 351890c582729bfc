"""From a policy action vector to what a robot stack consumes (REP-103 units).

The action is normalised per-step deltas or velocities (see core.ActionSpec
units). MoveIt Servo's delta-twist input wants velocities, so a delta of
``d`` metres per control step of ``period`` seconds becomes ``d / period``
m/s (rad/s for the rotation axes, which go to the twist's angular part);
axes in m/s or rad/s pass through scaled only.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deer_vla.core import STANDARD_AXES, ActionSpec


class UnsafeActionError(ValueError):
    """The action must not be sent to a robot (NaN/inf or wrong length)."""


@dataclass(frozen=True)
class RobotCommand:
    action: np.ndarray  # clipped, spec layout
    standard7: np.ndarray  # [x, y, z, roll, pitch, yaw, gripper], normalised
    linear: tuple[float, float, float]  # m/s
    angular: tuple[float, float, float]  # rad/s
    gripper: float  # -1 open .. +1 closed


def to_robot_command(action: np.ndarray, spec: ActionSpec, period_s: float) -> RobotCommand:
    """Validate (finite, right length), clip to the spec limits and convert."""
    if period_s <= 0 or not np.isfinite(period_s):
        raise ValueError(f"control period must be positive, got {period_s}")
    try:
        clipped = spec.clip(np.asarray(action, dtype=np.float64))
    except ValueError as exc:
        raise UnsafeActionError(str(exc)) from exc
    velocity = np.zeros(6)
    per_axis = spec.to_velocity(clipped, period_s)
    for i, axis in enumerate(spec.axes):
        velocity[STANDARD_AXES.index(axis)] = per_axis[i]
    return RobotCommand(
        action=clipped,
        standard7=spec.to_standard7(clipped),
        linear=(float(velocity[0]), float(velocity[1]), float(velocity[2])),
        angular=(float(velocity[3]), float(velocity[4]), float(velocity[5])),
        gripper=float(clipped[-1]),
    )


def zero_command(spec: ActionSpec) -> RobotCommand:
    """No motion; the gripper value is not meaningful and is not published for it."""
    zero = np.zeros(spec.dim)
    return RobotCommand(zero, spec.to_standard7(zero), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), 0.0)


def gripper_positions(gripper: float, open_positions: Sequence[float], closed_positions: Sequence[float]
                      ) -> list[float]:
    """The gripper value (-1 open .. +1 closed) as each joint's position, linear between its open and closed
    ones: what ros2_controllers' forward_command_controller (a JointGroupPositionController over the gripper's
    joints) takes as std_msgs/Float64MultiArray."""
    closed = (min(max(float(gripper), -1.0), 1.0) + 1.0) / 2.0
    return [float(o + closed * (c - o)) for o, c in zip(open_positions, closed_positions, strict=True)]
