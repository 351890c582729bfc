"""Error-minimising thresholds (exact coordinate descent): budget met, less error than quantile, same run-time rule."""
from __future__ import annotations

import numpy as np
import pytest

from deer_vla.control import (
    BudgetSpec,
    Thresholds,
    exit_errors,
    oracle_cost_at_error,
    simulate_exits,
    solve_thresholds_quantile,
)
from deer_vla.control.descent import solve_thresholds_descent
from deer_vla.control.synthetic import synthetic_exit_actions, synthetic_profile


@pytest.fixture(scope="module")
def calib() -> np.ndarray:
    return synthetic_exit_actions(3000, 6, difficulty=0.5, seed=11)


@pytest.fixture(scope="module")
def profile():
    return synthetic_profile(6)


def cost_and_error(actions, thresholds, profile, cap=None):
    exits = simulate_exits(actions, thresholds, cap=cap)
    err = exit_errors(actions)[np.arange(len(exits)), exits - 1]
    return float(np.asarray(profile.costs())[exits - 1].mean()), float(err.mean())


@pytest.mark.parametrize("fraction", [0.4, 0.6, 0.8])
def test_descent_meets_the_budget_with_less_error_than_quantile(calib, profile, fraction):
    costs = profile.costs()
    budget = BudgetSpec(average_gflops=costs[1] + fraction * (costs[-1] - costs[1]))
    th = solve_thresholds_descent(calib, profile, budget)
    quantile = solve_thresholds_quantile(calib, profile, budget)
    cost, err = cost_and_error(calib, th, profile)  # re-simulated with the run-time rule
    assert cost <= budget.average_gflops * (1 + 1e-12) and cost == pytest.approx(th.expected_cost)
    assert err < 0.95 * cost_and_error(calib, quantile, profile)[1]  # it optimises what quantile ignores
    assert th.method == "descent" and all(v >= 0 for v in th.values)
    # and it carries over to unseen steps: closer to the oracle at the error it reaches there
    held = synthetic_exit_actions(3000, 6, difficulty=0.5, seed=12)

    def gap(t):
        c, e = cost_and_error(held, t, profile)
        return c / oracle_cost_at_error(held, np.asarray(costs), e)

    assert gap(th) < gap(quantile)


def test_descent_edge_budgets_and_round_trip(calib, profile, tmp_path):
    costs = profile.costs()
    slack = solve_thresholds_descent(calib, profile, BudgetSpec(average_gflops=10 * costs[-1]))
    assert slack.exit_distribution[-1] == 1.0  # budget not binding: every step to the deepest exit
    assert slack.method == "quantile"  # nothing to choose: the quantile solution as is
    capped = BudgetSpec(average_gflops=costs[2], peak_gflops=costs[3])
    th = solve_thresholds_descent(calib, profile, capped)
    assert sum(th.exit_distribution[4:]) == 0 and cost_and_error(calib, th, profile, cap=4)[0] <= costs[2]
    assert solve_thresholds_descent(calib, profile, BudgetSpec(average_gflops=1.5 * costs[0])).exit_distribution[0] == 1
    th.save(tmp_path / "t.json")
    assert Thresholds.load(tmp_path / "t.json").values == th.values
    with pytest.raises(ValueError, match="average_gflops"):
        solve_thresholds_descent(calib, profile, BudgetSpec(peak_gflops=costs[-1]))
    with pytest.raises(ValueError, match="exits"):
        solve_thresholds_descent(calib[:, :4], profile, BudgetSpec(average_gflops=costs[2]))


def test_descent_saves_finite_thresholds_when_stopping_at_exit_2_is_already_exact(profile):
    """Exits 2..N all agree with the deepest: every step should stop at exit 2, with finite saved values."""
    rng = np.random.default_rng(0)
    final = rng.uniform(-1, 1, (200, 1, 4))
    actions = np.concatenate([final + 0.3, np.repeat(final, 5, axis=1)], axis=1)  # exit 1 off, exits 2-6 exact
    costs = profile.costs()
    th = solve_thresholds_descent(actions, profile, BudgetSpec(average_gflops=0.5 * (costs[1] + costs[-1])))
    assert all(np.isfinite(v) for v in th.values)
    assert th.exit_distribution[1] == 1.0 and cost_and_error(actions, th, profile)[1] == 0.0


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.7])
def test_descent_reports_the_cost_and_exit_mix_of_the_thresholds_it_saves(profile, fraction):
    """On discrete actions exits agree exactly on many steps: the saved eta 0 stops them where the search's
    internal "never" did not, so the expected cost and exit distribution reported were not those of the file
    (always too high: 2.8 reported, 2.75 run)."""
    rng = np.random.default_rng(3)
    actions = rng.normal(size=(400, 6, 3)).round(0)
    costs = profile.costs()
    budget = BudgetSpec(average_gflops=costs[1] + fraction * (costs[-1] - costs[1]))
    th = solve_thresholds_descent(actions, profile, budget)
    exits = simulate_exits(actions, th)
    assert th.expected_cost == pytest.approx(float(np.asarray(costs)[exits - 1].mean()))
    assert th.exit_distribution == pytest.approx((np.bincount(exits, minlength=7)[1:] / len(exits)).tolist())
