"""Consistency criterion, oracle and calibration collection."""
from __future__ import annotations

import math

import numpy as np
import pytest

from deer_vla.control import (
    Criterion,
    Thresholds,
    collect_exit_actions,
    consistency_scores,
    exit_errors,
    oracle_cost_at_error,
    oracle_exit,
    oracle_exits,
)
from deer_vla.control.synthetic import SyntheticExitPolicy, synthetic_episodes
from deer_vla.control.thresholds import simulate_exits


def test_rms_ignores_gripper_by_default():
    a = np.array([0.1, 0.2, 0.3, 1.0])
    b = np.array([0.1, 0.2, 0.0, -1.0])
    assert Criterion()(a, b) == pytest.approx(math.sqrt(0.09 / 3))


@pytest.mark.parametrize(
    ("name", "expected"),
    [("mean", (0.3 + 0.4) / 3), ("max", 0.4), ("l2", 0.5), ("rms", math.sqrt(0.25 / 3))],
)
def test_distance_options(name, expected):
    a = np.array([0.0, 0.3, 0.4, -1.0])
    b = np.array([0.0, 0.0, 0.0, -1.0])
    assert Criterion(distance=name)(a, b) == pytest.approx(expected)


def test_cosine_distance():
    crit = Criterion(distance="cosine")
    assert crit(np.array([1.0, 0.0, 0.5]), np.array([2.0, 0.0, -0.5])) == pytest.approx(0.0)
    assert crit(np.array([1.0, 0.0, 0.5]), np.array([0.0, 1.0, 0.5])) == pytest.approx(1.0)
    assert crit(np.array([0.0, 0.0, 0.5]), np.array([0.0, 0.0, 0.5])) == 0.0
    assert crit(np.array([0.0, 0.0, 0.5]), np.array([1.0, 0.0, 0.5])) == 1.0


def test_gripper_flip_can_count_as_infinite():
    a = np.array([0.1, 0.1, 1.0])
    b = np.array([0.1, 0.1, -1.0])
    assert Criterion()(a, b) == 0.0
    assert Criterion(gripper_flip_infinite=True)(a, b) == math.inf
    assert Criterion(gripper_flip_infinite=True)(a, a) == 0.0


def test_criterion_rejects_bad_input():
    crit = Criterion()
    with pytest.raises(ValueError, match="shape"):
        crit(np.zeros(4), np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        crit(np.array([np.nan, 0.0, 1.0]), np.zeros(3))
    with pytest.raises(ValueError, match=">= 2 values"):
        crit(np.zeros(1), np.zeros(1))
    with pytest.raises(ValueError, match="unknown criterion distance"):
        Criterion(distance="manhattan")  # type: ignore[arg-type]


def test_consistency_scores_compare_consecutive_exits():
    x = np.zeros((2, 3, 3))
    x[0, 1, 0] = 0.3  # exit 2 differs from exits 1 and 3 on one axis
    scores = consistency_scores(x)
    assert scores.shape == (2, 2)
    expected = 0.3 / math.sqrt(2)
    np.testing.assert_allclose(scores, [[expected, expected], [0.0, 0.0]])
    with pytest.raises(ValueError, match=r"\(steps, exits, action_dim\)"):
        consistency_scores(np.zeros((3, 4)))
    bad = np.zeros((2, 3, 3))
    bad[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="step 1, exit 3"):
        consistency_scores(bad)


def test_smoothed_score_is_the_mean_of_the_last_distances_in_both_forms():
    d = np.array([[0.4, 0.1, 0.3, np.inf, 0.2], [0.0, 0.2, 0.2, 0.1, 0.5]])
    crit = Criterion(smooth=2)
    expected = [[0.4, 0.25, 0.2, np.inf, np.inf], [0.0, 0.1, 0.2, 0.15, 0.3]]
    np.testing.assert_allclose(crit.scores(d), expected)
    for row in range(2):  # the controller's step-by-step form agrees with the batch form
        assert [crit.score(list(d[row, : j + 1])) for j in range(5)] == pytest.approx(crit.scores(d)[row].tolist())
    np.testing.assert_array_equal(Criterion().scores(d), d)  # smooth=1: the original criterion
    assert Criterion.from_dict(crit.to_dict()) == crit
    assert Criterion.from_dict({"distance": "max"}).smooth == 1  # files written before the option
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="smooth"):
            Criterion(smooth=bad)


def test_oracle_picks_earliest_exit_within_tolerance_of_deepest():
    actions = np.array([[0.5, 0.0, 1.0], [0.11, 0.0, 1.0], [0.3, 0.0, 1.0], [0.1, 0.0, 1.0]])
    crit = Criterion(distance="max")
    assert oracle_exit(actions, 0.02, crit) == 2
    assert oracle_exit(actions, 0.0, crit) == 4
    assert oracle_exit(actions, 1.0, crit) == 1
    np.testing.assert_array_equal(oracle_exits(np.stack([actions, actions[::-1]]), 0.02, crit), [2, 4])
    with pytest.raises(ValueError, match="tolerance"):
        oracle_exit(actions, -0.1)
    with pytest.raises(ValueError, match="tolerance"):
        oracle_exit(actions, float("nan"))



def test_oracle_cost_at_error_is_the_lower_hull_of_cost_vs_mean_error():
    # step A: exit 2 already matches the deepest; step B: only exit 3 does. Costs 1, 2, 4.
    a = [[0.4, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]
    b = [[0.2, 0.0, 1.0], [0.1, 0.0, 1.0], [0.0, 0.0, 1.0]]
    actions = np.array([a, b])
    crit = Criterion(distance="max")
    np.testing.assert_allclose(exit_errors(actions, crit), [[0.4, 0.0, 0.0], [0.2, 0.1, 0.0]])
    costs = np.array([1.0, 2.0, 4.0])
    # hull vertices (mean error, mean cost): (0.3, 1) -> (0.1, 1.5) -> (0.05, 2) -> (0, 3)
    for bound, expected in [(0.5, 1.0), (0.3, 1.0), (0.2, 1.25), (0.1, 1.5), (0.075, 1.75), (0.05, 2.0), (0.0, 3.0)]:
        assert oracle_cost_at_error(actions, costs, bound, crit) == pytest.approx(expected, abs=1e-9), bound
    with pytest.raises(ValueError, match="non-decreasing"):
        oracle_cost_at_error(actions, costs[::-1], 0.1, crit)
    with pytest.raises(ValueError, match="max_mean_error"):
        oracle_cost_at_error(actions, costs, float("nan"), crit)


def test_no_threshold_setting_beats_the_oracle_at_its_own_error():
    policy = SyntheticExitPolicy(num_exits=6, action_dim=7, seed=5)
    actions = collect_exit_actions(policy, synthetic_episodes(4, 40))
    costs = np.cumsum(np.full(6, 0.5)) + 0.2
    rows = np.arange(actions.shape[0])
    errors = exit_errors(actions)
    gaps = []
    for eta in [0.0, 0.005, 0.02, 0.05, 0.2, 1.0]:
        exits = simulate_exits(actions, Thresholds(values=[eta] * 5))
        cost, err = costs[exits - 1].mean(), errors[rows, exits - 1].mean()
        bound = oracle_cost_at_error(actions, costs, err)
        assert bound <= cost + 1e-9
        gaps.append(cost / bound)
    assert max(gaps) > 1.01  # the consecutive criterion is not the oracle on this stream


def test_collect_exit_actions_runs_all_exits_and_commits_deepest():
    policy = SyntheticExitPolicy(num_exits=4, action_dim=3, seed=3)
    x = collect_exit_actions(policy, synthetic_episodes(3, 5))
    assert x.shape == (15, 4, 3)
    assert policy.committed == [4] * 15
    # The deepest exit is the stream's final action: its gripper is exactly +-1.
    assert set(np.unique(x[:, -1, -1])) <= {-1.0, 1.0}
    again = collect_exit_actions(SyntheticExitPolicy(num_exits=4, action_dim=3, seed=3), synthetic_episodes(3, 5))
    np.testing.assert_array_equal(x, again)
    with pytest.raises(ValueError, match="no calibration steps"):
        collect_exit_actions(policy, [[], []])


def test_control_imports_no_torch_ros_or_simulator():
    import subprocess
    import sys

    code = (
        "import sys, deer_vla.control, deer_vla.control.synthetic;"
        "print([m for m in ('torch', 'rclpy', 'mujoco', 'metaworld', 'gymnasium') if m in sys.modules])"
    )
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "[]"


def test_the_oracle_cost_at_an_error_is_finite_when_exit_1_flips_the_gripper():
    """With gripper_flip_infinite, exit 1 everywhere has an infinite mean error; the bisection's low end stayed
    there and the interpolation between it and the high end gave NaN."""
    from deer_vla.control import Criterion, oracle_cost_at_error

    actions = np.array([[[0.0, -1.0], [0.1, 1.0], [0.0, 1.0]],  # step 0: exit 1 flips the gripper against exit 3
                        [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]])
    criterion = Criterion(gripper_flip_infinite=True)
    costs = np.array([1.0, 2.0, 3.0])
    assert oracle_cost_at_error(actions, costs, 0.0, criterion) == pytest.approx(2.0)
    for bound in (0.05, 0.1):
        assert oracle_cost_at_error(actions, costs, bound, criterion) == pytest.approx(1.5)
