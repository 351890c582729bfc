"""One entry point for the offline threshold solvers: ``solve_thresholds(method, ...)``.

"quantile" is DeeR's method (meets the average budget with a fixed shape of
the exit distribution, ``thresholds.solve_thresholds_quantile``); "descent"
finds the least action error vs the full model within the budget
(``descent.solve_thresholds_descent``). Both take the (S, N, A) per-exit
actions of a calibration set (``calibration.collect_exit_actions``).
"""
from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from deer_vla.control.budgets import BudgetSpec
from deer_vla.control.criterion import Criterion
from deer_vla.control.descent import solve_thresholds_descent
from deer_vla.control.thresholds import Thresholds, solve_thresholds_quantile
from deer_vla.core import CostProfile

ThresholdMethod = Literal["quantile", "descent"]
THRESHOLD_METHODS: tuple[ThresholdMethod, ...] = get_args(ThresholdMethod)


def check_threshold_method(method: str) -> ThresholdMethod:
    """``method`` as a ThresholdMethod; ValueError naming the known ones otherwise."""
    for known in THRESHOLD_METHODS:
        if method == known:
            return known
    raise ValueError(f"unknown threshold method {method!r}; choose one of {THRESHOLD_METHODS}")


def solve_thresholds(
    method: ThresholdMethod | str,
    exit_actions: np.ndarray,
    profile: CostProfile,
    budget: BudgetSpec,
    criterion: Criterion | None = None,
    scores: np.ndarray | None = None,
) -> Thresholds:
    """Thresholds for ``budget`` by ``method``; ``criterion`` (default: the original RMS one) is saved with them
    and used by the controller at run time (``scores``: the steps' exit-gate scores, for the learned
    criterion). Raises InfeasibleBudgetError when the budget cannot be met on these steps."""
    kind = check_threshold_method(method)
    if kind == "quantile":
        return solve_thresholds_quantile(exit_actions, profile, budget, criterion=criterion, scores=scores)
    return solve_thresholds_descent(exit_actions, profile, budget, criterion=criterion, scores=scores)
