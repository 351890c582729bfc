"""Bayesian optimisation of the thresholds against a black-box objective, under the average budget.

The search box is a multiplicative neighbourhood of an initial solution
(normally the quantile one), searched in log space with optuna's Gaussian-
process sampler. The objective returns (score to maximise, mean cost); mean
cost <= budget is an optuna constraint, so the sampler models feasibility
too. The initial solution is evaluated first, so the result is never worse
than it on the objective as evaluated (when the initial one is feasible).
The objective should be evaluated on seeds disjoint from final evaluation.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from deer_vla.control.budgets import BudgetSpec, InfeasibleBudgetError, budget_report
from deer_vla.control.criterion import Criterion, check_exit_actions
from deer_vla.control.thresholds import Thresholds, simulate_exits
from deer_vla.core import CostMetric, CostProfile

Objective = Callable[[Thresholds], tuple[float, float]]


def fidelity_objective(
    exit_actions: np.ndarray,
    profile: CostProfile,
    metric: CostMetric = "llm_gflops",
    error: Criterion | None = None,
    cap: int | None = None,
    scores: np.ndarray | None = None,
) -> Objective:
    """A proxy objective without rollouts, on recorded per-exit actions (S, N, A) (and, for thresholds of the
    learned criterion, the steps' exit-gate ``scores``, ``criterion.criterion_scores``).

    score = -(mean distance between the action taken and the deepest exit's
    action), by ``error`` (default RMS over the motion part plus nothing for
    the gripper; pass Criterion(gripper_flip_infinite=...) variants as
    needed); cost = mean cost of the exits taken. Use steps disjoint from the
    calibration set of the initial thresholds.
    """
    arr = check_exit_actions(exit_actions)
    if arr.shape[1] != profile.num_exits:
        raise ValueError(f"exit actions have {arr.shape[1]} exits but the cost profile has {profile.num_exits}")
    costs = np.asarray(profile.costs(metric))
    crit = error or Criterion()
    rows = np.arange(arr.shape[0])

    def objective(th: Thresholds) -> tuple[float, float]:
        exits = simulate_exits(arr, th, cap=cap, scores=scores if th.criterion.learned else None)
        err = crit.batch(arr[rows, exits - 1], arr[:, -1])
        return -float(np.mean(err)), float(costs[exits - 1].mean())

    return objective


def tune_thresholds(
    objective: Objective,
    profile: CostProfile,
    budget: BudgetSpec,
    init: Thresholds,
    n_trials: int = 20,
    seed: int = 0,
    box: tuple[float, float] = (0.25, 4.0),
    n_startup_trials: int = 5,
) -> Thresholds:
    """Best feasible thresholds found; method="bayes", expected_cost = its mean cost from the objective.

    box: each eta_k is searched in [box[0] * init_k, box[1] * init_k] (log
    scale); a zero initial eta is searched in [0, box[1] * max(init)] (linear).
    """
    import optuna  # optional heavy import, only needed here

    if budget.average_gflops is None:
        raise ValueError("tune_thresholds needs a budget with average_gflops set")
    report = budget_report(profile, budget, first_exit=init.first_exit)
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if not (0 < box[0] < 1 < box[1] and math.isfinite(box[1])):
        raise ValueError(f"box must satisfy 0 < low < 1 < high, got {box}")
    init.check_covers(min(report.cap, profile.num_exits))
    target = float(budget.average_gflops)
    top = max(init.values) if init.values and max(init.values) > 0 else 1.0
    # Only exits the cap lets run matter; the rest are kept as in init.
    first = init.first_exit
    tuned = list(range(first, report.cap))

    def make(values: dict[int, float]) -> Thresholds:
        vals = list(init.values)
        for k, v in values.items():
            vals[k - first] = v
        return Thresholds(values=vals, budget=budget, metric=budget.metric, method="bayes", criterion=init.criterion)

    def run(trial: optuna.Trial) -> float:
        values: dict[int, float] = {}
        for k in tuned:
            v0 = init.eta(k)
            if v0 > 0:
                values[k] = trial.suggest_float(f"eta_{k}", v0 * box[0], v0 * box[1], log=True)
            else:
                values[k] = trial.suggest_float(f"eta_{k}", 0.0, top * box[1])
        score, cost = objective(make(values))
        if not (math.isfinite(score) and math.isfinite(cost)):
            raise ValueError(f"objective returned a non-finite (score, cost) = ({score}, {cost})")
        trial.set_user_attr("mean_cost", float(cost))
        trial.set_constraint("mean_cost_over_budget", float(cost) - target * (1 + 1e-9))
        return float(score)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup_trials, warn_independent_sampling=False)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    if tuned:
        study.enqueue_trial({f"eta_{k}": init.eta(k) for k in tuned})
    study.optimize(run, n_trials=n_trials if tuned else 1)
    # the relative tolerance check_reachable allows: a budget set to an exit's cost (what an infeasible budget's
    # message suggests) is a mean of equal costs, which float summation can put an ulp above it
    allowed = target * (1 + 1e-9)
    feasible = [t for t in study.trials if t.value is not None and t.user_attrs["mean_cost"] <= allowed]
    if not feasible:
        costs = sorted(t.user_attrs["mean_cost"] for t in study.trials if "mean_cost" in t.user_attrs)
        raise InfeasibleBudgetError(
            f"no thresholds tried met the average budget {target:.10g} GFLOPs; "
            f"the lowest mean cost seen was {costs[0] if costs else float('nan'):.10g}"
        )
    best = max(feasible, key=lambda t: (t.value, -t.number))
    result = make({k: best.params[f"eta_{k}"] for k in tuned})
    result.expected_cost = float(best.user_attrs["mean_cost"])
    return result
