"""Bayesian optimisation of thresholds on a proxy objective, under the average budget."""
from __future__ import annotations

import pytest

from deer_vla.control import (
    BudgetSpec,
    Thresholds,
    solve_thresholds_quantile,
    tune_thresholds,
)
from deer_vla.control.bayes import fidelity_objective
from deer_vla.control.synthetic import synthetic_exit_actions, synthetic_profile

N = 6


def test_bo_improves_or_matches_its_init_within_budget():
    profile = synthetic_profile(N)
    budget = BudgetSpec(average_gflops=8.0)
    calib = synthetic_exit_actions(400, N, difficulty=0.5, seed=31)
    tune = synthetic_exit_actions(400, N, difficulty=0.5, seed=32)  # disjoint from calibration
    init = solve_thresholds_quantile(calib, profile, budget)
    objective = fidelity_objective(tune, profile)
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


def test_fidelity_objective_trades_error_for_cost():
    profile = synthetic_profile(N)
    actions = synthetic_exit_actions(300, N, seed=4)
    objective = fidelity_objective(actions, profile)
    score_deep, cost_deep = objective(Thresholds(values=[0.0] * 5))  # always the deepest exit
    score_shallow, cost_shallow = objective(Thresholds(values=[10.0] * 5))  # always exit 2
    assert score_deep == 0.0 and cost_deep == pytest.approx(profile.llm_gflops[-1])
    assert cost_shallow == pytest.approx(profile.llm_gflops[1]) and score_shallow < 0.0
    with pytest.raises(ValueError, match="4 exits but the cost profile has 6"):
        fidelity_objective(actions[:, :4], profile)


def test_a_budget_equal_to_an_exits_cost_is_met_not_refused_an_ulp_over():
    """The smallest feasible budget an infeasible one's message suggests is often an exit's cost exactly; the mean
    of 200 equal costs is an ulp above it, and the tuner refused it ("the lowest mean cost seen was 2.6")."""
    from deer_vla.control import budget_report

    profile = synthetic_profile(4)
    calib = synthetic_exit_actions(200, 4, seed=1)
    for cost in profile.costs()[:2]:
        budget = BudgetSpec(average_gflops=cost)
        init = solve_thresholds_quantile(calib, profile, budget)
        cap = budget_report(profile, budget).cap
        tuned = tune_thresholds(fidelity_objective(calib, profile, cap=cap), profile, budget, init, n_trials=3,
                                n_startup_trials=2)
        assert tuned.expected_cost == pytest.approx(cost, rel=1e-9)
