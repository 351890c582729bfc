"""Recorded demonstrations as the Observations the policy sees, step by step.

Used wherever a checkpoint is replayed offline over a dataset: threshold
calibration, evaluation's per-budget thresholds and the benchmarks.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from deer_vla.core import Observation
from deer_vla.data.episodes import DatasetError, Episode, EpisodeDataset


def episode_observations(episode: Episode, cameras: Sequence[str], max_steps: int | None = None) -> list[Observation]:
    """The first ``max_steps`` (default all) steps of ``episode``; ``stamp_ns`` is the step index."""
    missing = [c for c in cameras if c not in episode.images]
    if missing:
        where = episode.path or f"{episode.task} seed {episode.seed}"
        raise DatasetError(f"episode {where} lacks camera(s) {missing} the policy needs; it has "
                           f"{sorted(episode.images)}")
    n = episode.length if max_steps is None else min(max_steps, episode.length)
    proprio = None if episode.proprio is None else np.asarray(episode.proprio, dtype=np.float32)
    return [
        Observation(
            images={c: np.asarray(episode.images[c][t]) for c in cameras},
            instruction=episode.instruction,
            proprio=None if proprio is None else proprio[t],
            stamp_ns=t,
        )
        for t in range(n)
    ]


def dataset_observation_episodes(
    dataset_dir: str | Path, cameras: Sequence[str], episodes: int | None = None, tasks: Sequence[str] | None = None
) -> Iterator[list[Observation]]:
    """Observations of ``episodes`` (default all) demonstrations spread evenly over the dataset, or over
    ``tasks``' episodes only (a task without episodes raises KeyError naming those present)."""
    root = Path(dataset_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset directory not found: {root}")
    ds = EpisodeDataset(root)  # every episode is checksum-verified as it is loaded
    pool = list(range(len(ds))) if tasks is None else sorted(i for t in tasks for i in ds.episodes_for_task(t))
    n = len(pool) if episodes is None else min(episodes, len(pool))
    if n == 0:
        raise ValueError(f"dataset {root} holds no episodes")
    # spread the chosen episodes over the whole pool (datasets are stored task by task)
    for j in np.unique(np.linspace(0, len(pool) - 1, n).round().astype(int)):
        yield episode_observations(ds.load(pool[int(j)]), cameras)
