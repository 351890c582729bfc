"""Record every exit's action at every step of some episodes (the calibration set).

Pure: any SegmentedPolicy (the model runner or a synthetic stream) and any
iterable of episodes (lists of Observations). Each step runs all exits and
commits the deepest, so the recurrent head sees the full model's history, as
when the demonstrations were made. For the learned criterion the same pass
records each exit's gate score.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from deer_vla.control.criterion import Criterion
from deer_vla.core import Observation, SegmentedPolicy, has_exit_gates


def collect_exit_actions(
    policy: SegmentedPolicy, episodes: Iterable[Sequence[Observation]], max_steps: int | None = None
) -> np.ndarray:
    """-> (S, N, A) float64 actions of exits 1..N at each of the S steps (all episodes concatenated)."""
    return _collect(policy, episodes, max_steps)[0]


def _check_gated(policy: SegmentedPolicy) -> int:
    """-> the policy's first gated exit; ValueError naming the command that trains gates if it has none."""
    if not has_exit_gates(policy):
        raise ValueError("the learned criterion needs exit gates, and this policy has none: train them with "
                         "`deer-vla train-gate CHECKPOINT --data DIR`")
    first = int(policy.first_gated_exit)  # type: ignore[attr-defined]
    if first not in (1, 2):
        raise ValueError(f"policy reports first gated exit {first}; expected 1 or 2")
    return first


def learned_criterion(policy: SegmentedPolicy) -> Criterion:
    """The learned criterion ``policy``'s exit gates run: from exit 1 when they have an exit-1 gate, else from
    exit 2 (gates trained before exit 1 had one)."""
    return Criterion(kind="learned", first_exit=_check_gated(policy))


def collect_exit_actions_and_scores(
    policy: SegmentedPolicy, episodes: Iterable[Sequence[Observation]], max_steps: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """-> the (S, N, A) actions and the (S, N + 1 - first) exit-gate scores of exits first..N at each step,
    first = the policy's ``first_gated_exit`` (1, or 2 for gates without an exit-1 gate): the calibration set
    of ``learned_criterion(policy)`` (the policy must have exit gates: core.ScoredPolicy)."""
    first = _check_gated(policy)
    actions, scores = _collect(policy, episodes, max_steps, scored_from=first)
    assert scores is not None
    return actions, scores


def _collect(policy: SegmentedPolicy, episodes: Iterable[Sequence[Observation]], max_steps: int | None,
             scored_from: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    if max_steps is not None and max_steps <= 0:
        raise ValueError(f"max_steps must be positive, got {max_steps}")
    n = int(policy.num_exits)
    if n < 1:
        raise ValueError(f"policy reports {n} exits")
    rows: list[np.ndarray] = []
    score_rows: list[list[float]] = []
    for episode in episodes:
        policy.reset()
        for obs in episode:
            if max_steps is not None and len(rows) >= max_steps:
                break
            policy.begin_step(obs)
            actions, scores = [], []
            for k in range(1, n + 1):
                actions.append(np.asarray(policy.run_next_exit(), dtype=np.float64))
                if scored_from is not None and k >= scored_from:
                    scores.append(float(policy.exit_score()))  # type: ignore[attr-defined]
            step = np.stack(actions)
            if rows and step.shape != rows[0].shape:
                raise ValueError(f"policy returned actions of shape {step.shape[1:]}, earlier {rows[0].shape[1:]}")
            if not np.all(np.isfinite(step)):
                raise ValueError(f"policy returned NaN or inf actions at calibration step {len(rows)}")
            if not all(np.isfinite(v) and v >= 0 for v in scores):
                raise ValueError(f"policy returned an exit score that is not a finite distance at calibration "
                                 f"step {len(rows)}: {scores}")
            policy.commit(n)
            rows.append(step)
            score_rows.append(scores)
        if max_steps is not None and len(rows) >= max_steps:
            break
    if not rows:
        raise ValueError("no calibration steps: the episodes were empty")
    if scored_from is None:
        return np.stack(rows), None
    return np.stack(rows), np.asarray(score_rows, dtype=np.float64).reshape(len(rows), n + 1 - scored_from)
