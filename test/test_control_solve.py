"""control.solve: one entry point for the threshold solvers, methods named by a Literal type."""
from __future__ import annotations

import numpy as np
import pytest

from deer_vla.control.budgets import BudgetSpec
from deer_vla.control.descent import solve_thresholds_descent
from deer_vla.control.solve import THRESHOLD_METHODS, check_threshold_method, solve_thresholds
from deer_vla.control.synthetic import synthetic_profile
from deer_vla.control.thresholds import solve_thresholds_quantile


def _actions(seed: int = 0, steps: int = 400, exits: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    final = rng.uniform(-1, 1, (steps, 1, 7))
    noise = rng.normal(0, 1, (steps, exits, 7)) * np.linspace(0.5, 0.0, exits)[None, :, None]
    return final + noise


def test_each_method_dispatches_to_its_solver() -> None:
    actions, profile = _actions(), synthetic_profile(4)
    budget = BudgetSpec(average_gflops=0.5 * profile.costs()[-1])
    assert THRESHOLD_METHODS == ("quantile", "descent")
    quantile = solve_thresholds("quantile", actions, profile, budget)
    descent = solve_thresholds("descent", actions, profile, budget)
    assert quantile.values == solve_thresholds_quantile(actions, profile, budget).values
    assert descent.values == solve_thresholds_descent(actions, profile, budget).values
    assert quantile.values != descent.values  # the two methods really differ on these steps
    assert quantile.method == "quantile"
    for th in (quantile, descent):
        assert th.expected_cost <= budget.average_gflops * (1 + 1e-9)


def test_an_unknown_method_is_refused_with_the_known_ones() -> None:
    assert check_threshold_method("descent") == "descent"
    with pytest.raises(ValueError, match=r"unknown threshold method 'bayes'.*quantile.*descent"):
        solve_thresholds("bayes", _actions(), synthetic_profile(4), BudgetSpec(average_gflops=1.0))
