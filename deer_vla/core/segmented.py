"""The interface the exit controller drives: a policy run one exit at a time.

Implemented by the real model runner (deer_vla.model) and by synthetic
per-exit action streams in tests and benchmarks, so the controller needs
neither torch nor ROS to be tested.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from deer_vla.core.observation import Observation


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
