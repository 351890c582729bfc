"""Bayesian optimisation of thresholds on a proxy objective, under the average budget."""
from __future__ import annotations

import numpy as np
import pytest

from deer_vla.control import (
    BudgetSpec,
    Criterion,
    Thresholds,
    simulate_exits,
    solve_thresholds_quantile,
    tune_thresholds,
)
from deer_vla.control.synthetic import synthetic_exit_actions, synthetic_profile

N = 6


def proxy_objective(actions: np.ndarray, costs: np.ndarray):
    """Score = -mean RMS error of the taken action vs the deepest exit's (fidelity); plus mean cost."""
    crit = Criterion()

    def objective(th: Thresholds) -> tuple[float, float]:
        exits = simulate_exits(actions, th)
        taken = actions[np.arange(len(actions)), exits - 1]
        err = crit.batch(taken, actions[:, -1])
        return -float(err.mean()), float(costs[exits - 1].mean())

    return objective


def test_bo_improves_or_matches_its_init_within_budget():
    profile = synthetic_profile(N)
    costs = np.asarray(profile.costs())
    budget = BudgetSpec(average_gflops=8.0)
    calib = synthetic_exit_actions(400, N, difficulty=0.5, seed=31)
    tune = synthetic_exit_actions(400, N, difficulty=0.5, seed=32)  # disjoint from calibration
    init = solve_thresholds_quantile(calib, profile, budget)
    objective = proxy_objective(tune, costs)
    init_score, init_cost = objective(init)
    result = tune_thresholds(objective, profile, budget, init, n_trials=14, seed=0)
    score, cost = objective(result)
    assert result.method == "bayes" and result.budget == budget and len(result.values) == N - 1
    assert cost <= budget.average_gflops
    assert result.expected_cost == pytest.approx(cost)
    if init_cost <= budget.average_gflops:
        assert score >= init_score
    # Seeded: the same call gives the same thresholds.
    again = tune_thresholds(objective, profile, budget, init, n_trials=14, seed=0)
    assert again.values == result.values


def test_bo_input_errors():
    profile = synthetic_profile(N)
    init = Thresholds(values=[0.1] * 5)
    obj = lambda th: (0.0, 1.0)
    with pytest.raises(ValueError, match="average_gflops"):
        tune_thresholds(obj, profile, BudgetSpec(peak_gflops=10.0), init)
    with pytest.raises(ValueError, match="n_trials"):
        tune_thresholds(obj, profile, BudgetSpec(average_gflops=8.0), init, n_trials=0)
    with pytest.raises(ValueError, match="need 5 values"):
        tune_thresholds(obj, profile, BudgetSpec(average_gflops=8.0), Thresholds(values=[0.1]))
    with pytest.raises(ValueError, match="non-finite"):
        tune_thresholds(lambda th: (float("nan"), 1.0), profile, BudgetSpec(average_gflops=8.0), init, n_trials=2)
