"""Controller, budgets, thresholds and tracker: rules no other test pinned down (a mutation audit broke each and
every test passed). Broken, each would run a step deeper or shallower than the budget allows, charge the wrong
cost, or accept a bad input without a word."""
from __future__ import annotations

import numpy as np
import pytest

from deer_vla.control import (
    BudgetSpec,
    Criterion,
    ExitController,
    ManualClock,
    OnlineBudgetTracker,
    Thresholds,
    simulate_exits,
    solve_thresholds_quantile,
)
from deer_vla.control.budgets import budget_report
from deer_vla.control.deadline import DeadlineGuard
from deer_vla.control.synthetic import (
    ReplayExitPolicy,
    SyntheticExitPolicy,
    synthetic_episodes,
    synthetic_latency_trace,
    synthetic_profile,
)
from deer_vla.core import CostProfile, Observation

N = 6
OBS = synthetic_episodes(1, 1)[0][0]


def small_profile(n: int = 3) -> CostProfile:
    llm = [float(k) for k in range(1, n + 1)]
    return CostProfile(llm_gflops=llm, total_gflops=[c + 0.5 for c in llm], params=[1] * n, weight_bytes=[4] * n)


class GatedPolicy:
    """Three exits proposing one action; every exit gate scores ``score``."""

    num_exits = 3
    has_exit_gates = True
    exit_gate_gflops = 0.01
    first_gated_exit = 1

    def __init__(self, score: float) -> None:
        self.score = score

    def reset(self) -> None:
        pass

    def begin_step(self, observation: Observation) -> None:
        pass

    def run_next_exit(self) -> np.ndarray:
        return np.array([0.1, 0.2])

    def exit_score(self) -> float:
        return self.score

    def commit(self, exit_index: int) -> np.ndarray:
        return np.array([0.1, 0.2])


# --- controller -------------------------------------------------------------------------------


def test_a_deadline_with_room_for_exit_one_only_never_starts_exit_two() -> None:
    """A deadline that left room for exit 1 only still ran exit 2: the guard was consulted from exit 3 on, and the
    step overran the deadline."""
    trace = synthetic_latency_trace(200, N, seed=3)
    clock = ManualClock()
    deadline = DeadlineGuard.from_trace(trace, 1000.0).worst_case_ms(1) + 1e-6
    ctl = ExitController(SyntheticExitPolicy(N, clock=clock, latency=trace), synthetic_profile(N, trace=trace),
                         Thresholds(values=[0.0] * (N - 1)), BudgetSpec(deadline_ms=deadline), clock=clock,
                         latency_trace=trace)
    records = [ctl.step(OBS)[1] for _ in range(50)]
    assert any((r.exit_used, r.stop_reason) == (1, "deadline") for r in records)
    assert max(r.total_ms for r in records) <= deadline


def test_a_distance_equal_to_eta_stops_at_that_exit() -> None:
    """The rule is distance <= eta: exits that agree exactly (distance 0) with eta 0 ran on to the cap, and the
    offline rule (simulate_exits) and the controller disagreed."""
    actions = np.tile(np.array([0.1, 0.2]), (4, 3, 1))  # every exit proposes the same action: distance 0
    thresholds = Thresholds(values=[0.0, 0.0])
    ctl = ExitController(ReplayExitPolicy(actions), small_profile(), thresholds)
    _, rec = ctl.step(OBS)
    assert (rec.exit_used, rec.stop_reason) == (2, "threshold")
    assert list(simulate_exits(actions, thresholds)) == [2] * 4


@pytest.mark.parametrize("score", [float("nan"), -0.1])
def test_an_exit_score_that_is_nan_or_negative_is_refused(score: float) -> None:
    """A NaN gate score compared false with every eta, so a broken gate silently ran every step to the cap."""
    ctl = ExitController(GatedPolicy(score), small_profile(),
                         Thresholds(values=[0.05] * 3, criterion=Criterion(kind="learned", first_exit=1)))
    with pytest.raises(ValueError, match="exit score .* at exit 1; expected a finite distance >= 0"):
        ctl.step(OBS)


def test_the_oracle_charges_the_exit_it_commits() -> None:
    """Oracle mode runs every exit to find the floor but reports the floor's cost; it was charged every exit it
    ran, so the oracle baseline cost as much as the full model."""
    profile = synthetic_profile(N)
    ctl = ExitController(SyntheticExitPolicy(N, difficulty=0.1), profile, None, oracle_tolerance=1.0)
    records = [ctl.step(OBS)[1] for _ in range(20)]
    assert any(r.exit_used < N for r in records)
    for r in records:
        assert r.llm_gflops == pytest.approx(profile.cost(r.exit_used, "llm_gflops"))
        assert r.total_gflops == pytest.approx(profile.cost(r.exit_used, "total_gflops"))
    assert records[-1].running_mean_gflops == pytest.approx(np.mean([r.llm_gflops for r in records]))


def test_the_running_mean_restarts_when_the_budget_metric_changes() -> None:
    """After a switch from LLM to total GFLOPs, the running mean mixed the old metric's costs with the new ones,
    a number in neither unit."""
    ctl = ExitController(SyntheticExitPolicy(N), synthetic_profile(N), None, BudgetSpec(metric="llm_gflops"),
                         fixed_exit=3)
    for _ in range(3):
        ctl.step(OBS)
    ctl.set_budget(BudgetSpec(metric="total_gflops"))
    _, rec = ctl.step(OBS)
    assert rec.running_mean_gflops == pytest.approx(rec.total_gflops)
    assert rec.running_mean_gflops != pytest.approx(rec.llm_gflops)


def test_reset_episode_restarts_a_per_episode_tracker() -> None:
    """A tracker built with reset_per_episode kept the last episode's scale and mean across
    ExitController.reset_episode: the new episode started tightened by the old one's overspend."""
    profile = synthetic_profile(N)
    tracker = OnlineBudgetTracker(profile.costs()[2], reset_per_episode=True)
    ctl = ExitController(SyntheticExitPolicy(N), profile, Thresholds(values=[0.0] * (N - 1)),
                         BudgetSpec(average_gflops=profile.costs()[2]), tracker=tracker)
    for _ in range(5):
        ctl.step(OBS)
    assert tracker.steps == 5 and tracker.scale != 1.0
    ctl.reset_episode()
    assert tracker.steps == 0 and tracker.scale == 1.0
    assert ctl.step(OBS)[1].threshold_scale == 1.0


# --- thresholds ---------------------------------------------------------------------------------


def test_thresholds_one_value_short_of_the_cap_are_refused_at_configure() -> None:
    """Thresholds covering exits 2..N-1 of an N-exit policy were accepted and the step failed at exit N (or read
    a value that is not there)."""
    with pytest.raises(ValueError, match=f"may run up to exit {N}: need {N - 1} values"):
        ExitController(SyntheticExitPolicy(N), synthetic_profile(N), Thresholds(values=[0.1] * (N - 2)))
    ExitController(SyntheticExitPolicy(N), synthetic_profile(N), Thresholds(values=[0.1] * (N - 1)))


def test_simulate_exits_applies_the_threshold_scale() -> None:
    """simulate_exits ignored ``scale``: the offline replay of a tracker-scaled controller took the unscaled
    exits."""
    actions = np.zeros((4, 3, 2))
    actions[:, 1, 0] = 0.5  # exit 2 moves away from exit 1; exit 3 agrees with exit 2
    thresholds = Thresholds(values=[0.2, 0.2])
    assert list(simulate_exits(actions, thresholds)) == [3] * 4
    assert list(simulate_exits(actions, thresholds, scale=100.0)) == [2] * 4


def test_the_quantile_cut_lies_midway_between_the_scores_it_separates() -> None:
    """The solver put eta on the last score that stops, so run-time noise of any size flipped that step to the
    next exit; the cut is the midpoint between it and the first score that goes on."""
    distances = [0.1, 0.2, 0.3, 0.4]  # exit 2 vs exit 1 of each step (one axis + gripper: RMS = |difference|)
    actions = np.zeros((4, 3, 2))
    actions[:, 1, 0] = distances
    actions[:, 2, 0] = distances
    profile = small_profile()
    half_at_exit_2 = 0.5 * (profile.costs()[1] + profile.costs()[2])
    th = solve_thresholds_quantile(actions, profile, BudgetSpec(average_gflops=half_at_exit_2))
    assert th.values[0] == pytest.approx(0.25)
    assert list(simulate_exits(actions, th)) == [2, 2, 3, 3]


# --- budgets ------------------------------------------------------------------------------------


def test_a_peak_ms_budget_counts_the_commit_head_step() -> None:
    """The step-time cap left out the head step that commits the action: a limit half a head step above exit 3's
    segments allowed exit 3, whose steps then overran it."""
    trace = synthetic_latency_trace(200, N, head_ms=5.0, seed=1)
    profile = synthetic_profile(N, trace=trace)
    assert profile.head_latency is not None
    limit = profile.worst_case_ms(3, "p99") + 0.5 * profile.head_latency.p99_ms
    assert budget_report(profile, BudgetSpec(peak_ms=limit)).cap == 2
    limit = profile.worst_case_ms(3, "p99") + profile.head_latency.p99_ms
    assert budget_report(profile, BudgetSpec(peak_ms=limit)).cap == 3


def test_the_budget_report_costs_the_cap_exit() -> None:
    """The report's cap_cost was the exit below the cap's, so the log understated what a capped step costs."""
    profile = synthetic_profile(N)
    report = budget_report(profile, BudgetSpec(peak_gflops=profile.costs()[3]))
    assert report.cap == 4 and report.cap_cost == profile.costs()[3]
