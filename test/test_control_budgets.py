"""Budget validation, caps (peak GFLOPs, peak ms, memory) and infeasible-budget errors."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from deer_vla.control import BudgetSpec, InfeasibleBudgetError, budget_report, exit_cap
from deer_vla.control.budgets import step_worst_ms
from deer_vla.control.synthetic import synthetic_latency_trace, synthetic_profile
from deer_vla.core import CostProfile


@pytest.fixture
def profile() -> CostProfile:
    return synthetic_profile(6, trace=synthetic_latency_trace(200, 6, seed=1))


@pytest.mark.parametrize("field", ["average_gflops", "peak_gflops", "peak_ms", "memory_bytes", "deadline_ms"])
@pytest.mark.parametrize("value", [-1.0, 0.0, float("nan"), float("inf")])
def test_bad_budget_values_are_rejected_with_the_field_named(field, value):
    if field == "memory_bytes" and value == value and abs(value) != float("inf"):
        value = int(value)
    with pytest.raises(ValueError, match=field):
        BudgetSpec(**{field: value})


def test_other_bad_budgets():
    with pytest.raises(ValueError, match="metric"):
        BudgetSpec(average_gflops=1.0, metric="flops")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="whole number"):
        BudgetSpec(memory_bytes=10.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be a number"):
        BudgetSpec(peak_gflops="3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown budget keys"):
        BudgetSpec.from_dict({"average": 3.0})


def test_budget_dict_round_trip():
    b = BudgetSpec(average_gflops=5.0, peak_gflops=9.0, memory_bytes=10**9, deadline_ms=50.0, metric="total_gflops")
    assert BudgetSpec.from_dict(b.to_dict()) == b


def test_cap_respects_peak_gflops_exactly(profile):
    costs = profile.costs("llm_gflops")
    for peak in sorted(set(costs + [c + d for c in costs for d in (-1e-9, 1e-9)] + [100.0])):
        if peak < costs[0]:
            continue
        cap = exit_cap(profile, BudgetSpec(peak_gflops=peak))
        assert costs[cap - 1] <= peak
        assert cap == len(costs) or costs[cap] > peak  # the next exit would break it: cap is the deepest


def test_cap_respects_memory_exactly_and_reports_binding(profile):
    for k, nbytes in enumerate(profile.weight_bytes, start=1):
        assert exit_cap(profile, BudgetSpec(memory_bytes=nbytes)) == k
        if k > 1:
            assert exit_cap(profile, BudgetSpec(memory_bytes=nbytes - 1)) == k - 1
    report = budget_report(profile, BudgetSpec(memory_bytes=profile.weight_bytes[2], peak_gflops=100.0))
    assert (report.cap, report.cap_binding) == (3, "memory_bytes")
    assert report.caps == {"peak_gflops": 6, "memory_bytes": 3}
    report = budget_report(profile, BudgetSpec(memory_bytes=profile.weight_bytes[4], peak_gflops=profile.llm_gflops[1]))
    assert (report.cap, report.cap_binding) == (2, "peak_gflops")
    assert budget_report(profile, BudgetSpec()).cap_binding == "num_exits"


def test_cap_respects_peak_ms_of_measured_p99(profile):
    worst = [step_worst_ms(profile, k) for k in range(1, 7)]
    assert all(np.diff(worst) > 0)
    for k in range(1, 7):
        report = budget_report(profile, BudgetSpec(peak_ms=worst[k - 1]))
        assert report.cap == k
        assert report.cap_binding == ("peak_ms" if k < 6 else "num_exits")


def test_total_metric_uses_total_column(profile):
    b = BudgetSpec(peak_gflops=profile.total_gflops[2], metric="total_gflops")
    assert exit_cap(profile, b) == 3
    # The llm column is smaller, so the same number allows a deeper exit.
    assert exit_cap(profile, BudgetSpec(peak_gflops=profile.total_gflops[2])) == 4


def test_infeasible_budgets_state_the_smallest_feasible_value(profile):
    c1 = profile.llm_gflops[0]
    with pytest.raises(InfeasibleBudgetError, match=f"smallest feasible average budget is {c1:g}"):
        exit_cap(profile, BudgetSpec(average_gflops=c1 / 2))
    with pytest.raises(InfeasibleBudgetError, match=f"smallest feasible peak budget is {c1:g}"):
        exit_cap(profile, BudgetSpec(peak_gflops=c1 * 0.99))
    with pytest.raises(InfeasibleBudgetError, match=f"smallest feasible memory budget is {profile.weight_bytes[0]}"):
        exit_cap(profile, BudgetSpec(memory_bytes=profile.weight_bytes[0] - 1))
    # what the node checks holds the exit gates too: the number is not the weights `deer-vla profile` lists
    with pytest.raises(InfeasibleBudgetError, match="below what running exit 1 holds, .* the exit gates"):
        exit_cap(profile, BudgetSpec(memory_bytes=1000))
    w1 = step_worst_ms(profile, 1)
    with pytest.raises(InfeasibleBudgetError, match=f"smallest feasible peak_ms is {w1:g}"):
        exit_cap(profile, BudgetSpec(peak_ms=w1 * 0.9))
    with pytest.raises(InfeasibleBudgetError, match=f"smallest feasible deadline_ms is {w1:g}"):
        exit_cap(profile, BudgetSpec(deadline_ms=w1 * 0.9))
    assert issubclass(InfeasibleBudgetError, ValueError)


def test_the_smallest_feasible_value_an_error_names_is_accepted():
    """The value was printed with :g, which rounds 0.015745024 (the shipped model's exit 1) down to 0.015745:
    the budget the error told the user to set was refused again."""
    import re

    from deer_vla.control.budgets import rounded_up

    profile = CostProfile.load("deer_vla/assets/default_checkpoint/profile.json")
    assert profile.llm_gflops[0] > float(f"{profile.llm_gflops[0]:g}")  # the case that rounded down
    for field in ("peak_gflops", "average_gflops"):
        with pytest.raises(InfeasibleBudgetError) as err:
            exit_cap(profile, BudgetSpec(**{field: 0.01}))
        suggested = float(re.search(r"smallest feasible \w+ budget is (\S+)$", str(err.value)).group(1))
        assert exit_cap(profile, BudgetSpec(**{field: suggested})) >= 1
    rng = np.random.default_rng(0)
    for value in rng.uniform(0, 1, 2000) * 10.0 ** rng.integers(-8, 8, 2000):
        assert value <= float(rounded_up(value)) <= value * (1 + 1e-5) and float(rounded_up(value, 4)) >= value


def test_average_binding_and_the_exit_one_only_band(profile):
    c = profile.llm_gflops
    assert budget_report(profile, BudgetSpec(average_gflops=c[-1])).average_binding is False
    assert budget_report(profile, BudgetSpec(average_gflops=c[3])).average_binding is True
    # Between exit 1's and exit 2's cost only "always exit 1" fits: the average sets the cap.
    report = budget_report(profile, BudgetSpec(average_gflops=(c[0] + c[1]) / 2))
    assert (report.cap, report.cap_binding) == (1, "average_gflops")
    assert "average budget binds" in budget_report(profile, BudgetSpec(average_gflops=c[3])).describe()


def test_peak_ms_without_latency_warns_and_is_reported_unenforced():
    flops_only = synthetic_profile(4)
    with pytest.warns(UserWarning, match="no measured latency"):
        report = budget_report(flops_only, BudgetSpec(peak_ms=1.0))
    assert report.unenforced == ("peak_ms",)
    assert report.cap == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        budget_report(flops_only, BudgetSpec(peak_gflops=100.0))
