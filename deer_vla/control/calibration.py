"""Record every exit's action at every step of some episodes (the calibration set).

Pure: any SegmentedPolicy (the model runner or a synthetic stream) and any
iterable of episodes (lists of Observations). Each step runs all exits and
commits the deepest, so the recurrent head sees the full model's history, as
when the demonstrations were made.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from deer_vla.core import Observation, SegmentedPolicy


def collect_exit_actions(
    policy: SegmentedPolicy, episodes: Iterable[Sequence[Observation]], max_steps: int | None = None
) -> np.ndarray:
    """-> (S, N, A) float64 actions of exits 1..N at each of the S steps (all episodes concatenated)."""
    if max_steps is not None and max_steps <= 0:
        raise ValueError(f"max_steps must be positive, got {max_steps}")
    n = int(policy.num_exits)
    if n < 1:
        raise ValueError(f"policy reports {n} exits")
    rows: list[np.ndarray] = []
    for episode in episodes:
        policy.reset()
        for obs in episode:
            if max_steps is not None and len(rows) >= max_steps:
                break
            policy.begin_step(obs)
            step = np.stack([np.asarray(policy.run_next_exit(), dtype=np.float64) for _ in range(n)])
            if rows and step.shape != rows[0].shape:
                raise ValueError(f"policy returned actions of shape {step.shape[1:]}, earlier {rows[0].shape[1:]}")
            if not np.all(np.isfinite(step)):
                raise ValueError(f"policy returned NaN or inf actions at calibration step {len(rows)}")
            policy.commit(n)
            rows.append(step)
        if max_steps is not None and len(rows) >= max_steps:
            break
    if not rows:
        raise ValueError("no calibration steps: the episodes were empty")
    return np.stack(rows)
