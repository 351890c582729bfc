"""Experiment (2026-12-04, session 43; docs/mt50.md, "Past frames in the decoder"): does a checkpoint with
``past_frames`` read them?

Own-history replays of held-out MT50 demonstrations (each task's second episode, as bench/bench_history.py
scores): per static exit, the distance of the action from the expert's (RMS over the motion axes) when the
decoder reads the real earlier frames, and when it reads the current frame in their place at every step (as
at an episode's start: a scene that has not moved). Equal distances mean the model does not use them.

From the repository root:

    PYTHONPATH=.:bench .venv/bin/python docs/experiments/past_frames_use.py runs/s43/ft_frames   # needs data/mt50_val
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import split_episodes

from deer_vla.control.criterion import Criterion
from deer_vla.core import Observation
from deer_vla.data.episodes import EpisodeDataset
from deer_vla.data.observations import episode_observations
from deer_vla.evaluation.evaluator import resolve_tasks
from deer_vla.model.runner import PolicyRunner

DATASET = Path("data/mt50_val")
DISTANCE = Criterion()  # RMS over the motion axes, the gripper left out


def held_out(cameras: tuple[str, ...]) -> list[tuple[list[Observation], np.ndarray]]:
    """Each task's second episode of DATASET: its observations and the expert's actions."""
    ds = EpisodeDataset(DATASET)
    _, indices = split_episodes(DATASET, resolve_tasks("mt50"), 1, 1)
    episodes = [ds.load(i) for i in indices]
    return [(episode_observations(e, cameras), np.asarray(e.actions, np.float64)) for e in episodes]


def replay(runner: PolicyRunner, episodes: list[tuple[list[Observation], np.ndarray]], exit_index: int,
           blind: bool) -> float:
    """Mean over steps of the distance from the expert, exit ``exit_index`` at every step (its own history);
    ``blind``: the runner forgets the earlier frames before every step."""
    distances = []
    for observations, actions in episodes:
        runner.reset()
        for obs, expert in zip(observations, actions, strict=True):
            if blind:
                runner._frames.clear()  # the step's context repeats its own frame, as at an episode's start
            runner.begin_step(obs)
            for _ in range(exit_index):
                action = runner.run_next_exit()
            runner.commit(exit_index)
            distances.append(DISTANCE(np.asarray(action, np.float64), expert))
    return float(np.mean(distances))


def main(checkpoint: str) -> int:
    torch.set_num_threads(2)
    runner = PolicyRunner.from_checkpoint(checkpoint)
    if not runner.model.config.past_frames:
        raise SystemExit(f"{checkpoint} reads no past frames (past_frames: 0)")
    start = time.perf_counter()
    print(f"{checkpoint}: past_frames {runner.model.config.past_frames}, {runner.num_exits} exits")
    print(f"{'exit':>5} {'real frames':>12} {'current repeated':>17} {'change':>8}")
    episodes = held_out(tuple(runner.cameras))
    for k in (1, 2, 3, runner.num_exits):
        real, blind = replay(runner, episodes, k, False), replay(runner, episodes, k, True)
        print(f"{k:>5} {real:>12.4f} {blind:>17.4f} {100 * (blind - real) / real:>7.1f}%")
    print(f"{time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
