"""data.observations: recorded demonstrations replayed as the Observations the policy saw."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deer_vla.data.episodes import DatasetError, EpisodeDataset
from deer_vla.data.observations import dataset_observation_episodes, episode_observations
from deer_vla.train.synthetic import write_tiny_dataset

TASKS = ("drawer-open", "drawer-close", "coffee-button")
ACTIONS = {"axes": ["x", "y", "z"], "low": [-1.0] * 3, "high": [1.0] * 3}


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("demos"), ("static",), 16, 4, ACTIONS, tasks=TASKS, length=5)


def test_an_episode_becomes_one_observation_per_step(demos: Path) -> None:
    ep = EpisodeDataset(demos).load(0)
    obs = episode_observations(ep, ("static",))
    assert len(obs) == ep.length == 5
    assert [o.stamp_ns for o in obs] == list(range(5))
    assert all(o.instruction == ep.instruction for o in obs)
    np.testing.assert_array_equal(obs[3].images["static"], ep.images["static"][3])
    np.testing.assert_array_equal(obs[3].proprio, ep.proprio[3])
    assert len(episode_observations(ep, ("static",), max_steps=2)) == 2


def test_a_camera_the_policy_needs_but_the_episode_lacks_is_named(demos: Path) -> None:
    with pytest.raises(DatasetError, match=r"lacks camera\(s\) \['wrist'\]"):
        episode_observations(EpisodeDataset(demos).load(0), ("static", "wrist"))


def test_calibration_on_a_task_subset_uses_only_those_tasks(demos: Path) -> None:
    """Calibrating for a task shift: only the named tasks' demonstrations are read; unknown ones raise."""
    instr = {t: ep[0].instruction for t, ep in zip(TASKS, dataset_observation_episodes(demos, ("static",)))}
    assert len(set(instr.values())) == 3
    subset = list(dataset_observation_episodes(demos, ("static",), tasks=["coffee-button", "drawer-open"]))
    assert sorted(ep[0].instruction for ep in subset) == sorted([instr["coffee-button"], instr["drawer-open"]])
    assert [ep[0].instruction for ep in dataset_observation_episodes(demos, ("static",), 5, tasks=["drawer-close"])] \
        == [instr["drawer-close"]]
    with pytest.raises(KeyError, match="window-open"):
        list(dataset_observation_episodes(demos, ("static",), tasks=["window-open"]))


def test_fewer_episodes_than_the_dataset_holds_are_spread_over_it(demos: Path) -> None:
    """Datasets are stored task by task: two episodes of three tasks are the first and the last task's."""
    order = [ep.instruction for ep in EpisodeDataset(demos)]
    picked = [ep[0].instruction for ep in dataset_observation_episodes(demos, ("static",), episodes=2)]
    assert picked == [order[0], order[-1]]


def test_a_missing_dataset_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="absent"):
        next(dataset_observation_episodes(tmp_path / "absent", ("static",)))
