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
    close = exit_errors(exit_actions, criterion) <= tolerance  # exit N always qualifies (distance 0)
    return np.argmax(close, axis=1).astype(np.int64) + 1


def oracle_exit(actions: np.ndarray, tolerance: float, criterion: Criterion | None = None) -> int:
    """(N, A) actions of exits 1..N for one step -> earliest exit within ``tolerance`` of exit N."""
    arr = np.asarray(actions, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"oracle_exit expects (exits, action_dim) actions, got shape {arr.shape}")
    return int(oracle_exits(arr[None], tolerance, criterion)[0])


def exit_errors(exit_actions: np.ndarray, criterion: Criterion | None = None) -> np.ndarray:
    """(S, N, A) -> (S, N) distance of each exit's action from the deepest exit's, per step."""
    arr = check_exit_actions(exit_actions)
    crit = criterion or Criterion()
    return crit.batch(arr, np.broadcast_to(arr[:, -1:, :], arr.shape))


def oracle_cost_at_error(
    exit_actions: np.ndarray, costs: np.ndarray, max_mean_error: float, criterion: Criterion | None = None
) -> float:
    """Least mean cost any per-step exit choice can reach with mean error <= ``max_mean_error``.

    The error of a step is the distance of the taken exit's action from the
    deepest exit's (``exit_errors``). Compares a controller with the oracle at
    the *same fidelity*: give it the controller's own mean error on these
    steps. Solved exactly for the LP relaxation (choices mixed within a step
    allowed), so it is a lower bound on every criterion's cost: each step
    takes argmin_k cost_k + lam * error_k, with lam bisected until the mean
    error meets the bound, and the two bracketing solutions interpolated.
    """
    err = exit_errors(exit_actions, criterion)
    c = np.asarray(costs, dtype=np.float64)
    if c.shape != (err.shape[1],) or not np.all(np.isfinite(c)) or np.any(np.diff(c) < 0):
        raise ValueError(f"costs must be {err.shape[1]} finite, non-decreasing values, got {c.tolist()}")
    if not (math.isfinite(max_mean_error) and max_mean_error >= 0):
        raise ValueError(f"max_mean_error must be finite and >= 0, got {max_mean_error!r}")

    rows = np.arange(err.shape[0])

    def at(lam: float) -> tuple[float, float]:
        pick = np.argmin(c[None, :] + lam * err, axis=1) if lam > 0 else np.zeros(len(rows), dtype=np.int64)
        return float(err[rows, pick].mean()), float(c[pick].mean())

    e0, c0 = at(0.0)  # exit 1 everywhere
    if e0 <= max_mean_error:
        return c0
    lo, hi = 0.0, 1.0
    while at(hi)[0] > max_mean_error:  # the deepest exit has error 0, so a large enough lam meets any bound
        lo, hi = hi, hi * 10.0
        if hi > 1e300:
            return float(c[-1])
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if at(mid)[0] > max_mean_error:
            lo = mid
        else:
            hi = mid
    (e_lo, c_lo), (e_hi, c_hi) = at(lo), at(hi)  # e_lo > bound >= e_hi, c_lo <= c_hi
    if not math.isfinite(e_lo) or e_lo - e_hi <= 1e-15:
        # lo = 0 (exit 1 everywhere) with an infinite error (a gripper flip under gripper_flip_infinite): no
        # mixture with it has a finite error, so hi's cost is the least
        return c_hi
    w = (e_lo - max_mean_error) / (e_lo - e_hi)
    return c_lo + w * (c_hi - c_lo)
