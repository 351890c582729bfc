"""Seeded synthetic multi-exit policies: per-exit action streams without a model.

Implements deer_vla.core.SegmentedPolicy, so the controller, the benchmarks
and the tests run the same code path as with the real model runner. Each step
draws a final (deepest-exit) action from a smooth random walk and a per-step
hardness h (log-normal); exit k's action is the final one plus noise of size
h * difficulty^(k-1): with difficulty near 0 the exits agree after exit 1,
near 1 they converge slowly (a harder input distribution). Shallow exits may
also get the gripper wrong, more often on hard steps.
"""
from __future__ import annotations

import numpy as np

from deer_vla.control.criterion import check_exit_actions
from deer_vla.control.deadline import LatencyTrace, ManualClock
from deer_vla.core import CostProfile, LatencyStats, Observation


class SyntheticExitPolicy:
    """A SegmentedPolicy whose exits converge to the final action at a rate set by ``difficulty``."""

    def __init__(
        self,
        num_exits: int = 6,
        action_dim: int = 4,
        difficulty: float = 0.5,
        seed: int = 0,
        noise: float = 0.3,
        hardness_sigma: float = 0.6,
        clock: ManualClock | None = None,
        latency: LatencyTrace | None = None,
    ) -> None:
        if num_exits < 1:
            raise ValueError(f"num_exits must be >= 1, got {num_exits}")
        if action_dim < 2:
            raise ValueError(f"action_dim must be >= 2 (continuous axes + gripper), got {action_dim}")
        if not 0.0 <= difficulty < 1.0:
            raise ValueError(f"difficulty must be in [0, 1), got {difficulty}")
        if noise < 0 or hardness_sigma < 0:
            raise ValueError(f"noise and hardness_sigma must be >= 0, got {noise}, {hardness_sigma}")
        if (latency is None) != (clock is None):
            raise ValueError("a latency trace and a ManualClock go together: pass both or neither")
        if latency is not None and latency.num_segments < num_exits:
            raise ValueError(f"latency trace has {latency.num_segments} segments for {num_exits} exits")
        self._n = num_exits
        self.action_dim = action_dim
        self.difficulty = float(difficulty)
        self.noise = float(noise)
        self.hardness_sigma = float(hardness_sigma)
        self._rng = np.random.default_rng(seed)
        self._clock = clock
        self._latency = latency
        self._t = 0  # global step counter (indexes the latency trace)
        self._step_actions: np.ndarray | None = None
        self._next = 0
        self.committed: list[int] = []  # exit committed at each step (for tests)
        self.reset()

    @property
    def num_exits(self) -> int:
        return self._n

    def reset(self) -> None:
        c = self.action_dim - 1
        self._motion = self._rng.uniform(-0.5, 0.5, size=c)
        self._gripper = float(self._rng.choice([-1.0, 1.0]))

    def _draw_step(self) -> np.ndarray:
        c = self.action_dim - 1
        self._motion = np.clip(0.9 * self._motion + 0.15 * self._rng.standard_normal(c), -1.0, 1.0)
        if self._rng.random() < 0.05:
            self._gripper = -self._gripper
        hardness = self.noise * float(np.exp(self.hardness_sigma * self._rng.standard_normal()))
        out = np.empty((self._n, self.action_dim))
        for k in range(1, self._n + 1):
            size = 0.0 if k == self._n else hardness * self.difficulty ** (k - 1)
            out[k - 1, :c] = np.clip(self._motion + size * self._rng.standard_normal(c), -1.0, 1.0)
            wrong = self._rng.random() < 0.5 * min(1.0, size)
            out[k - 1, c] = -self._gripper if wrong else self._gripper
        return out

    def _spend(self, ms: float) -> None:
        if self._clock is not None:
            self._clock.advance_ms(ms)

    def begin_step(self, observation: Observation) -> None:
        self._step_actions = self._draw_step()
        self._next = 0
        if self._latency is not None:
            enc, _, _ = self._latency.step(self._t)
            self._spend(enc)
        self._t += 1

    def run_next_exit(self) -> np.ndarray:
        if self._step_actions is None:
            raise RuntimeError("run_next_exit called before begin_step")
        if self._next >= self._n:
            raise RuntimeError(f"all {self._n} exits already ran this step")
        if self._latency is not None:
            _, seg, head = self._latency.step(self._t - 1)
            self._spend(float(seg[self._next]) + head)
        self._next += 1
        return self._step_actions[self._next - 1].copy()

    def commit(self, exit_index: int) -> np.ndarray:
        if self._step_actions is None:
            raise RuntimeError("commit called before begin_step")
        if not 1 <= exit_index <= self._next:
            raise ValueError(f"cannot commit exit {exit_index}: exits 1..{self._next} ran this step")
        if self._latency is not None:
            _, _, head = self._latency.step(self._t - 1)
            self._spend(head)
        self.committed.append(exit_index)
        action = self._step_actions[exit_index - 1].copy()
        self._step_actions = None
        return action


class ReplayExitPolicy:
    """A SegmentedPolicy that replays recorded per-exit actions (S, N, A), one row per step, cycling."""

    def __init__(self, exit_actions: np.ndarray) -> None:
        self._actions = check_exit_actions(exit_actions)
        self._t = 0
        self._next = 0
        self._row: np.ndarray | None = None
        self.committed: list[int] = []

    @property
    def num_exits(self) -> int:
        return int(self._actions.shape[1])

    def reset(self) -> None:
        """Recorded actions carry no head state; the replay position continues."""

    def begin_step(self, observation: Observation) -> None:
        self._row = self._actions[self._t % self._actions.shape[0]]
        self._t += 1
        self._next = 0

    def run_next_exit(self) -> np.ndarray:
        if self._row is None or self._next >= self.num_exits:
            raise RuntimeError("run_next_exit called before begin_step or past the last exit")
        self._next += 1
        return self._row[self._next - 1].copy()

    def commit(self, exit_index: int) -> np.ndarray:
        if self._row is None or not 1 <= exit_index <= self._next:
            raise ValueError(f"cannot commit exit {exit_index}: exits 1..{self._next} ran this step")
        self.committed.append(exit_index)
        row, self._row = self._row, None
        return row[exit_index - 1].copy()


def synthetic_episodes(num_episodes: int, steps: int, instruction: str = "synthetic task") -> list[list[Observation]]:
    """Placeholder observations (tiny black images) for driving a synthetic policy."""
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    return [
        [Observation(images={"static": image}, instruction=instruction, stamp_ns=t) for t in range(steps)]
        for _ in range(num_episodes)
    ]


def synthetic_exit_actions(
    steps: int, num_exits: int = 6, action_dim: int = 4, difficulty: float = 0.5, seed: int = 0,
    episode_len: int = 50, noise: float = 0.3, hardness_sigma: float = 0.6,
) -> np.ndarray:
    """(steps, num_exits, action_dim) per-exit actions from a SyntheticExitPolicy."""
    from deer_vla.control.calibration import collect_exit_actions

    policy = SyntheticExitPolicy(num_exits, action_dim, difficulty, seed, noise=noise, hardness_sigma=hardness_sigma)
    n_eps = -(-steps // episode_len)
    return collect_exit_actions(policy, synthetic_episodes(n_eps, episode_len), max_steps=steps)


def synthetic_latency_trace(
    steps: int, num_exits: int = 6, segment_ms: float = 4.0, encode_ms: float = 6.0, head_ms: float = 0.5,
    jitter: float = 0.15, seed: int = 0,
) -> LatencyTrace:
    """A replayable latency trace with log-normal jitter and rare 2x stalls (like a busy CPU)."""
    rng = np.random.default_rng(seed)
    seg = segment_ms * np.exp(jitter * rng.standard_normal((steps, num_exits)))
    seg *= np.where(rng.random((steps, num_exits)) < 0.02, 2.0, 1.0)
    enc = encode_ms * np.exp(jitter * rng.standard_normal(steps))
    head = head_ms * np.exp(jitter * rng.standard_normal(steps))
    return LatencyTrace(encode_ms=enc, segment_ms=seg, head_ms=head)


def _stats(samples: np.ndarray) -> LatencyStats:
    q = np.percentile(samples, [50, 95, 99])
    return LatencyStats(median_ms=float(q[0]), p95_ms=float(q[1]), p99_ms=float(q[2]), samples=int(samples.size))


def synthetic_profile(
    num_exits: int = 6, gflops_per_segment: float = 2.6, prefix_gflops: float = 4.0,
    bytes_per_segment: int = 50_000_000, prefix_bytes: int = 400_000_000, trace: LatencyTrace | None = None,
) -> CostProfile:
    """A cost profile with equal segments (like 2 decoder layers each), latency from ``trace`` if given."""
    llm = [gflops_per_segment * k for k in range(1, num_exits + 1)]
    return CostProfile(
        llm_gflops=llm,
        total_gflops=[prefix_gflops + v for v in llm],
        params=[(prefix_bytes + bytes_per_segment * k) // 4 for k in range(1, num_exits + 1)],
        weight_bytes=[prefix_bytes + bytes_per_segment * k for k in range(1, num_exits + 1)],
        segment_latency=[_stats(trace.segment_ms[:, k]) for k in range(num_exits)] if trace is not None else [],
        encode_latency=_stats(trace.encode_ms) if trace is not None else None,
        head_latency=_stats(trace.head_ms) if trace is not None else None,
        device="synthetic",
    )
