"""The interface the exit controller drives: a policy run one exit at a time.

Implemented by the real model runner (deer_vla.model) and by synthetic
per-exit action streams in tests and benchmarks, so the controller needs
neither torch nor ROS to be tested.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from deer_vla.core.observation import Observation


class NonFiniteActionError(FloatingPointError, ValueError):
    """An exit produced a NaN or infinite action (bad weights or inputs). Also a ValueError, so every command
    that reports bad input in one line (calibrate, train-gate, replay, ...) reports this too."""


class SegmentedPolicy(Protocol):
    @property
    def num_exits(self) -> int:
        """Exits available (loaded) in this policy."""
        ...

    def reset(self) -> None:
        """Start a new episode: clear the recurrent action-head history."""
        ...

    def begin_step(self, observation: Observation) -> None:
        """Run the shared prefix (vision, resampler, embeddings) for one step."""
        ...

    def run_next_exit(self) -> np.ndarray:
        """Run the next segment, continuing from the previous exit's hidden
        states, and return that exit's candidate action computed from the
        committed (previous-step) head state. First call gives exit 1."""
        ...

    def commit(self, exit_index: int) -> np.ndarray:
        """Advance the head's recurrent state with the feature of exit
        ``exit_index`` (1-based, already run this step); return its action."""
        ...


@runtime_checkable
class ScoredPolicy(SegmentedPolicy, Protocol):
    """A SegmentedPolicy with learned exit gates: the score of the learned exit criterion."""

    @property
    def has_exit_gates(self) -> bool:
        """Whether gates are loaded (a policy without them cannot run the learned criterion)."""
        ...

    @property
    def exit_gate_gflops(self) -> float:
        """GFLOPs of one gate evaluation (charged at every exit the criterion scores:
        ``CostProfile.with_exit_gates``)."""
        ...

    @property
    def first_gated_exit(self) -> int:
        """The first exit the gates score: 1, or 2 for gates trained without an exit-1 gate."""
        ...

    def exit_score(self) -> float:
        """For the exit run last this step (k >= ``first_gated_exit``): the gate's predicted distance of its
        action from the full model's (RMS over the motion axes; 0 at the deepest exit)."""
        ...


def has_exit_gates(policy: object) -> bool:
    """Whether ``policy`` can score exits with learned gates."""
    return isinstance(policy, ScoredPolicy) and bool(policy.has_exit_gates)
