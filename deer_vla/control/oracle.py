"""Oracle exit: the least compute any criterion could spend at a given fidelity.

Given every exit's action for one step, the oracle takes the earliest exit
whose action is within ``tolerance`` of the deepest exit's action.
"""
from __future__ import annotations

import math

import numpy as np

from deer_vla.control.criterion import Criterion, check_exit_actions


def _check_tolerance(tolerance: float) -> None:
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"oracle tolerance must be finite and >= 0, got {tolerance!r}")


def oracle_exits(exit_actions: np.ndarray, tolerance: float, criterion: Criterion | None = None) -> np.ndarray:
    """(S, N, A) -> (S,) earliest 1-based exit within ``tolerance`` of exit N, per step."""
    _check_tolerance(tolerance)
    arr = check_exit_actions(exit_actions)
    crit = criterion or Criterion()
    final = np.broadcast_to(arr[:, -1:, :], arr.shape)
    close = crit.batch(arr, final) <= tolerance  # exit N always qualifies (distance 0)
    return np.argmax(close, axis=1).astype(np.int64) + 1


def oracle_exit(actions: np.ndarray, tolerance: float, criterion: Criterion | None = None) -> int:
    """(N, A) actions of exits 1..N for one step -> earliest exit within ``tolerance`` of exit N."""
    arr = np.asarray(actions, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"oracle_exit expects (exits, action_dim) actions, got shape {arr.shape}")
    return int(oracle_exits(arr[None], tolerance, criterion)[0])
