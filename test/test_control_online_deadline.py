"""Online budget tracking under distribution shift, and deadline mode on a replayed latency trace."""
from __future__ import annotations

import math

import numpy as np
import pytest

from deer_vla.control import (
    BudgetSpec,
    DeadlineGuard,
    ExitController,
    InfeasibleBudgetError,
    ManualClock,
    OnlineBudgetTracker,
    Thresholds,
    solve_thresholds_quantile,
)
from deer_vla.control.budgets import step_worst_ms
from deer_vla.control.synthetic import (
    SyntheticExitPolicy,
    synthetic_episodes,
    synthetic_exit_actions,
    synthetic_latency_trace,
    synthetic_profile,
)
from deer_vla.core import StepRecord

N = 6


def run_costs(ctl: ExitController, episodes: int, steps: int) -> np.ndarray:
    costs = []
    for episode in synthetic_episodes(episodes, steps):
        ctl.reset_episode()
        for obs in episode:
            costs.append(ctl.step(obs)[1].llm_gflops)
    return np.array(costs)


@pytest.mark.parametrize("fraction", [0.3, 0.6])
def test_distribution_shift_overshoots_without_tracking_and_converges_with_it(fraction):
    profile = synthetic_profile(N)
    costs = profile.costs()
    budget = BudgetSpec(average_gflops=costs[1] + fraction * (costs[-1] - costs[1]))
    easy = synthetic_exit_actions(800, N, difficulty=0.4, seed=21)
    th = solve_thresholds_quantile(easy, profile, budget)
    assert th.expected_cost == pytest.approx(budget.average_gflops, rel=0.02)
    hard = dict(difficulty=0.7, seed=22)
    static = run_costs(ExitController(SyntheticExitPolicy(N, **hard), profile, th, budget), 30, 50)
    assert static.mean() > 1.1 * budget.average_gflops  # harder inputs: the offline thresholds overspend
    tracker = OnlineBudgetTracker(budget.average_gflops)
    tracked = run_costs(ExitController(SyntheticExitPolicy(N, **hard), profile, th, budget, tracker=tracker), 30, 50)
    assert abs(tracked.mean() - budget.average_gflops) <= 0.03 * budget.average_gflops
    assert tracker.running_mean == pytest.approx(tracked.mean())
    assert tracker.scale > 1.0  # it loosened the thresholds to stop earlier


def test_tracker_is_quiet_on_the_calibration_distribution():
    profile = synthetic_profile(N)
    budget = BudgetSpec(average_gflops=9.0)
    th = solve_thresholds_quantile(synthetic_exit_actions(800, N, difficulty=0.5, seed=3), profile, budget)
    tracker = OnlineBudgetTracker(9.0)
    scales = []
    ctl = ExitController(SyntheticExitPolicy(N, difficulty=0.5, seed=4), profile, th, budget, tracker=tracker)
    for obs in synthetic_episodes(1, 1500)[0]:
        scales.append(ctl.step(obs)[1].threshold_scale)
    assert tracker.running_mean == pytest.approx(9.0, rel=0.03)
    log_s = np.log(scales)
    assert np.abs(log_s).max() < math.log(2.0)
    assert log_s[750:].std() <= log_s[:750].std() * 1.5 + 0.05  # no growing oscillation


def test_tracker_is_bounded_and_resets_per_episode_when_asked():
    tracker = OnlineBudgetTracker(1.0, gain=0.5, min_scale=0.5, max_scale=4.0)
    for _ in range(200):
        tracker.update(10.0)  # an unreachable budget: the scale saturates, never blows up
    assert tracker.scale == pytest.approx(4.0)
    for _ in range(400):
        tracker.update(0.0)
    assert tracker.scale == pytest.approx(0.5)
    tracker.reset_episode()
    assert tracker.steps == 600  # carried over by default
    per_ep = OnlineBudgetTracker(1.0, reset_per_episode=True)
    per_ep.update(3.0)
    per_ep.reset_episode()
    assert (per_ep.steps, per_ep.scale, per_ep.running_mean) == (0, 1.0, 0.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target_gflops": -1.0}, "target_gflops must be positive"),
        ({"target_gflops": float("nan")}, "target_gflops must be a finite"),
        ({"target_gflops": 1.0, "gain": 0.0}, "gain must be positive"),
        ({"target_gflops": 1.0, "min_scale": 2.0}, "bracket 1"),
    ],
)
def test_tracker_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OnlineBudgetTracker(**kwargs)


def test_tracker_idles_without_an_average_budget_and_steers_once_one_is_set():
    policy = SyntheticExitPolicy(N, seed=3)
    profile = synthetic_profile(N)
    tracker = OnlineBudgetTracker(5.0)
    ctl = ExitController(policy, profile, Thresholds(values=[0.01] * (N - 1)), BudgetSpec(peak_gflops=100.0),
                         tracker=tracker)
    for obs in synthetic_episodes(1, 50)[0]:
        ctl.step(obs)
    assert tracker.scale == 1.0 and tracker.running_mean == 0.0  # idle: no average budget to hold
    idle_mean = ctl.running_mean  # the controller still reports the mean cost itself
    costs = profile.costs()
    target = 0.5 * (costs[0] + costs[-1])
    ctl.set_budget(BudgetSpec(average_gflops=target, peak_gflops=100.0))
    for episode in synthetic_episodes(8, 50):
        for obs in episode:
            ctl.step(obs)
    assert tracker.target_gflops == target and tracker.scale != 1.0
    # far off at first (thresholds this low run almost every exit); steered most of the way within 400 steps
    assert abs(idle_mean / target - 1) > 0.5
    assert abs(tracker.running_mean / target - 1) < 0.2



def test_tracker_holds_the_thresholds_own_average_when_no_budget_is_set():
    """Thresholds solved for an average keep it under shift even when the user sets no average budget."""
    policy = SyntheticExitPolicy(N, seed=3)
    profile = synthetic_profile(N)
    costs = profile.costs()
    solved_for = 0.5 * (costs[0] + costs[-1])
    thresholds = Thresholds(values=[0.01] * (N - 1), budget=BudgetSpec(average_gflops=solved_for))
    tracker = OnlineBudgetTracker(costs[-1])
    ctl = ExitController(policy, profile, thresholds, BudgetSpec(peak_gflops=100.0), tracker=tracker)
    for episode in synthetic_episodes(8, 50):
        for obs in episode:
            ctl.step(obs)
    assert tracker.target_gflops == solved_for and tracker.steps == 400
    assert abs(tracker.running_mean / solved_for - 1) < 0.2  # open loop these thresholds are far over (see above)
    # an explicit average budget takes over from the thresholds' own
    ctl.set_budget(BudgetSpec(average_gflops=costs[1], peak_gflops=100.0))
    ctl.step(synthetic_episodes(1, 1)[0][0])
    assert tracker.target_gflops == costs[1]
    # fixed-exit mode has no average to hold
    fixed = ExitController(policy, profile, thresholds, BudgetSpec(), tracker=OnlineBudgetTracker(1.0),
                           fixed_exit=2)
    fixed.step(synthetic_episodes(1, 1)[0][0])
    assert fixed.tracker.steps == 0 and fixed.tracker.target_gflops == 1.0


STEPS = 400


def deadline_run(deadline_ms: float | None, from_trace: bool, steps: int = STEPS):
    trace = synthetic_latency_trace(STEPS, N, seed=8)
    profile = synthetic_profile(N, trace=trace)
    clock = ManualClock()
    policy = SyntheticExitPolicy(N, seed=8, clock=clock, latency=trace)
    budget = BudgetSpec(deadline_ms=deadline_ms)
    th = Thresholds(values=[0.0] * 5)  # never stops on the criterion: only the deadline can stop it early
    ctl = ExitController(policy, profile, th, budget, clock=clock, latency_trace=trace if from_trace else None)
    records = []
    for obs in synthetic_episodes(1, steps)[0]:
        records.append(ctl.step(obs)[1])
    return profile, trace, records


@pytest.mark.parametrize("quantile", [10, 50, 90])
def test_deadline_mode_never_overruns_a_replayed_trace(quantile):
    _, trace, free = deadline_run(None, from_trace=True)
    free_ms = np.array([r.total_ms for r in free])
    guard = DeadlineGuard.from_trace(trace, 1.0)
    deadline = max(float(np.percentile(free_ms, quantile)), guard.worst_case_ms(1))
    assert free_ms.max() > deadline  # without the guard this trace overruns the deadline
    _, _, records = deadline_run(deadline, from_trace=True)
    total = np.array([r.total_ms for r in records])
    assert total.max() <= deadline + 1e-9
    reasons = [r.stop_reason for r in records]
    assert set(reasons) <= {"deadline", "cap"} and reasons.count("deadline") >= 0.05 * len(records)
    # It never stops shallower than the deepest exit whose worst case fits.
    fits = max(k for k in range(1, N + 1) if guard.worst_case_ms(k) <= deadline)
    assert min(r.exit_used for r in records) >= fits


def test_deadline_from_profile_p99_mostly_meets_it():
    profile, _, _ = deadline_run(None, False, steps=10)
    deadline = step_worst_ms(profile, 3) + 1.0
    _, _, records = deadline_run(deadline, from_trace=False)
    overruns = sum(r.total_ms > deadline + 1e-9 for r in records)
    assert overruns <= 0.05 * len(records)
    assert any(r.exit_used > 3 for r in records)


def test_infeasible_deadline_is_rejected():
    profile, _, _ = deadline_run(None, False, steps=10)
    with pytest.raises(InfeasibleBudgetError, match="smallest feasible deadline_ms"):
        deadline_run(step_worst_ms(profile, 1) * 0.5, from_trace=False)
    with pytest.raises(ValueError, match="deadline_ms must be positive"):
        DeadlineGuard(-1.0, [1.0], 0.1)


@pytest.mark.parametrize("start_s", [0.0, 1000.0])
def test_a_deadline_equal_to_an_exits_worst_case_reaches_that_exit(start_s):
    """budget_report accepts deadline_ms = step_worst_ms(profile, k); the guard, summing the same times in another
    order on a clock read in seconds, refused exit k by a few ulps in most steps: one exit more cautious than
    the deadline asks, never later."""
    from deer_vla.control import LatencyTrace

    n = 6
    observation = synthetic_episodes(1, 1)[0][0]
    trace = LatencyTrace(encode_ms=np.full(5, 1.1), segment_ms=np.full((5, n), 3.3), head_ms=np.full(5, 0.37))
    profile = synthetic_profile(n, trace=trace)
    for k in range(2, n + 1):
        deadline = step_worst_ms(profile, k)
        clock = ManualClock(start_s)
        policy = SyntheticExitPolicy(n, clock=clock, latency=trace, seed=1)
        ctl = ExitController(policy, profile, Thresholds(values=[0.0] * (n - 1)),
                             budget=BudgetSpec(deadline_ms=deadline), clock=clock)
        for _ in range(5):
            _, record = ctl.step(observation)
            assert record.exit_used == k and record.total_ms <= deadline + 1e-9


def test_work_before_the_step_counts_against_its_deadline():
    """A robot's compressed frames are decoded before the model runs (~60 ms for a 4K JPEG). That time was left
    out of the step's clock: the guard started exits the deadline had no room for, and total_ms hid the overrun.
    ``started_at`` counts the step from when its work began."""
    from deer_vla.control import LatencyTrace

    n = 6
    observation = synthetic_episodes(1, 1)[0][0]
    trace = LatencyTrace(encode_ms=np.full(5, 1.0), segment_ms=np.full((5, n), 3.0), head_ms=np.full(5, 0.5))
    profile = synthetic_profile(n, trace=trace)
    deadline = step_worst_ms(profile, 5)
    decode_ms = 7.0  # a little over two segments and their head steps

    def one_step(before_ms: float | None) -> tuple[StepRecord, float]:
        clock = ManualClock(100.0)
        policy = SyntheticExitPolicy(n, clock=clock, latency=trace, seed=1)
        ctl = ExitController(policy, profile, Thresholds(values=[0.0] * (n - 1)),
                             budget=BudgetSpec(deadline_ms=deadline), clock=clock)
        started = clock()
        clock.advance_ms(decode_ms)  # the frames' decode, before the controller is called
        record = ctl.step(observation, started_at=started if before_ms is not None else None)[1]
        return record, (clock() - started) * 1e3

    untimed, untimed_wall = one_step(None)
    assert untimed.exit_used == 5 and untimed_wall > deadline  # the decode's time went past the deadline unseen
    timed, timed_wall = one_step(decode_ms)
    assert timed.stop_reason == "deadline" and timed.exit_used < 5
    assert timed_wall <= deadline + 1e-9 and timed.total_ms == pytest.approx(timed_wall)
    assert timed.encode_ms == pytest.approx(decode_ms + 1.0)


def test_started_at_must_be_a_past_reading_of_the_controllers_clock():
    clock = ManualClock(5.0)
    policy = SyntheticExitPolicy(N, seed=1)
    ctl = ExitController(policy, synthetic_profile(N), None, fixed_exit=2, clock=clock)
    observation = synthetic_episodes(1, 1)[0][0]
    for bad in (6.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="started_at must be a past reading"):
            ctl.step(observation, started_at=bad)
    assert ctl.step(observation, started_at=4.0)[1].total_ms >= 1000.0


def test_drift_margin_is_the_p99_excess_of_recent_steps_and_says_so():
    from deer_vla.control.deadline import DriftMargin

    drift = DriftMargin(window=200, min_steps=100)
    notices = [drift.observe(15.0, 10.0) for _ in range(99)]
    assert drift.margin_ms == 0.0 and not drift.ready and notices == [None] * 99  # configure's times stand
    notice = drift.observe(15.0, 10.0)
    assert drift.ready and drift.margin_ms == pytest.approx(5.0)
    assert notice is not None and "5 ms more" in notice and "a deadline or peak_ms keeps that margin" in notice
    assert drift.observe(15.0, 10.0) is None  # said once, not at every step
    # a machine faster than at configure keeps the times it was timed with; "back within" is said once
    said = [n for n in (drift.observe(7.0, 10.0) for _ in range(200)) if n is not None]
    assert drift.margin_ms == 0.0 and drift.steps == 200
    assert len(said) == 1 and "back within" in said[0]
    for bad in ((math.nan, 10.0), (-1.0, 10.0), (5.0, 0.0), (5.0, math.inf)):
        assert drift.observe(*bad) is None
    assert drift.steps == 200 and drift.margin_ms == 0.0
    # one stall in the window is what a p99 leaves out; three are not
    drift.observe(40.0, 10.0)
    assert drift.margin_ms == 0.0
    drift.observe(40.0, 10.0)
    drift.observe(40.0, 10.0)
    assert drift.margin_ms > 10.0
    with pytest.raises(ValueError, match="min_steps"):
        DriftMargin(window=10, min_steps=20)


def test_one_early_stall_is_not_a_drift():
    """From its 50th step a p99 of under 101 samples weighed the largest by half: one step stalled 8x early on
    set the guard's plan for the next 50 steps."""
    from deer_vla.control.deadline import DriftMargin

    drift = DriftMargin()
    drift.observe(80.0, 10.0)
    for _ in range(150):
        drift.observe(7.0, 10.0)
    assert drift.margin_ms == 0.0


def test_an_unchanged_machine_plans_with_configures_times():
    """Steps whose times are the ones configure measured (the same trace, from the same start) leave the margin
    at 0: the comparison is of whole steps with the guard's worst cases, which are their p99, not of single
    segments with their shares of it."""
    trace = synthetic_latency_trace(600, N, seed=5)
    profile = synthetic_profile(N, trace=trace)
    clock = ManualClock()
    policy = SyntheticExitPolicy(N, seed=5, clock=clock, latency=trace)
    ctl = ExitController(policy, profile, Thresholds(values=[0.0] * (N - 1)),
                         BudgetSpec(deadline_ms=step_worst_ms(profile, N) * 0.8), clock=clock)
    for obs in synthetic_episodes(1, 600)[0]:
        ctl.step(obs)
    assert ctl.drift.ready and ctl.drift.margin_ms < 0.05 * step_worst_ms(profile, 1)


def test_deadline_guard_follows_a_machine_that_slows_down_after_configure():
    """The profile is timed at configure; the machine then runs every step 2x slower (a throttling board,
    a busy neighbour). A guard planning with the configure times alone overran the deadline in a fifth of the
    slow steps (the last segment it let start took twice its time); adding the measured drift margin it
    keeps the deadline once a few slow steps are seen, and still runs deep exits."""
    fast, slow_steps = 200, 400
    base = synthetic_latency_trace(fast + slow_steps, N, seed=3)
    seg, enc, head = base.segment_ms.copy(), base.encode_ms.copy(), base.head_ms.copy()
    seg[fast:] *= 2.0
    enc[fast:] *= 2.0
    head[fast:] *= 2.0
    from deer_vla.control import LatencyTrace

    trace = LatencyTrace(encode_ms=enc, segment_ms=seg, head_ms=head)
    configured = LatencyTrace(encode_ms=enc[:fast], segment_ms=seg[:fast], head_ms=head[:fast])
    profile = synthetic_profile(N, trace=configured)
    deadline = step_worst_ms(profile, N)  # every exit fits at configure's speed; about half of them at 2x
    observations = synthetic_episodes(1, fast + slow_steps)[0]

    def controller() -> ExitController:
        clock = ManualClock()
        policy = SyntheticExitPolicy(N, seed=3, clock=clock, latency=trace)
        return ExitController(policy, profile, Thresholds(values=[0.0] * (N - 1)), BudgetSpec(deadline_ms=deadline),
                              clock=clock)

    from deer_vla.control.deadline import DriftMargin

    blind = controller()
    blind.drift = DriftMargin(window=10**6, min_steps=10**6)  # configure's times, whatever happens
    blind_records = [blind.step(obs)[1] for obs in observations][fast + 5:]
    assert sum(r.total_ms > deadline + 1e-9 for r in blind_records) > 0.1 * len(blind_records)  # 20.8% measured
    ctl = controller()
    records = [ctl.step(obs)[1] for obs in observations[:fast]]
    assert ctl.drift.margin_ms == 0.0 and all(r.exit_used == N for r in records)  # the times held
    records = [ctl.step(obs)[1] for obs in observations[fast:]]
    settled = records[5:]
    overruns = sum(r.total_ms > deadline + 1e-9 for r in settled)
    assert overruns <= 0.03 * len(settled), overruns  # 1.0% measured: exit 1 and a stall can still pass it
    # the steps run up to about twice their worst case at configure: the margin is about one such step
    slowed = ctl.drift.margin_ms
    assert 0.5 * step_worst_ms(profile, 2) < slowed < 1.5 * step_worst_ms(profile, N), slowed
    assert np.mean([r.exit_used for r in settled]) >= 2.0 and "deadline" in {r.stop_reason for r in settled}
    # a budget change builds a new guard; the machine's drift stays measured
    ctl.set_budget(BudgetSpec(deadline_ms=deadline * 1.01))
    ctl.step(observations[-1])
    assert ctl.drift.margin_ms == pytest.approx(slowed, rel=0.05)


def _slowed_trace(fast: int, slow: int, factor: float, seed: int, recovered: int = 0):
    """A latency trace whose steps ``fast`` to ``fast + slow`` take ``factor`` times as long (then ``recovered``
    steps at the first speed again), and the part configure timed."""
    from deer_vla.control import LatencyTrace

    base = synthetic_latency_trace(fast + slow + recovered, N, seed=seed)
    seg, enc, head = base.segment_ms.copy(), base.encode_ms.copy(), base.head_ms.copy()
    for arr in (seg, enc, head):
        arr[fast:fast + slow] *= factor
    return (LatencyTrace(encode_ms=enc, segment_ms=seg, head_ms=head),
            LatencyTrace(encode_ms=enc[:fast], segment_ms=seg[:fast], head_ms=head[:fast]))


def test_peak_time_budget_follows_a_machine_that_slows_down_after_configure():
    """peak_ms caps the exits at the deepest whose p99 step time at configure fits it. On a machine that then
    runs 2x slower, that cap let the slow steps' p99 pass the budget by a third; the cap now follows the
    drift margin (exit 1 always runs), so the p99 keeps the budget while deep exits still run, and comes back
    up once the machine does."""
    fast, slow = 200, 400
    trace, configured = _slowed_trace(fast, slow, 2.0, seed=4, recovered=fast)
    profile = synthetic_profile(N, trace=configured)
    peak = step_worst_ms(profile, N)  # every exit fits at configure's speed
    observations = synthetic_episodes(1, fast + slow + fast)[0]

    def controller(clock: ManualClock, latency) -> ExitController:
        policy = SyntheticExitPolicy(N, seed=4, clock=clock, latency=latency)
        return ExitController(policy, profile, Thresholds(values=[0.0] * (N - 1)), BudgetSpec(peak_ms=peak),
                              clock=clock)

    from deer_vla.control.deadline import DriftMargin

    blind = controller(ManualClock(), trace)
    blind.drift = DriftMargin(window=10**6, min_steps=10**6)  # configure's times, whatever happens
    slow_blind = [blind.step(obs)[1] for obs in observations[:fast + slow]][fast + 50:]
    assert all(r.exit_used == N for r in slow_blind)
    assert np.percentile([r.total_ms for r in slow_blind], 99) > 1.3 * peak  # 1.37x measured
    ctl = controller(ManualClock(), trace)
    records = [ctl.step(obs)[1] for obs in observations[:fast]]
    assert ctl.time_cap == N and all(r.exit_used == N and r.max_exit == N for r in records)  # the times held
    records = [ctl.step(obs)[1] for obs in observations[fast:fast + slow]]
    settled = records[DRIFT_SETTLE:]
    assert np.percentile([r.total_ms for r in settled], 99) <= peak * 1.001
    assert sum(r.total_ms > peak + 1e-9 for r in settled) <= 0.02 * len(settled)
    lowered = [r for r in settled if r.max_exit < N]
    assert lowered and all(r.stop_reason == "cap" and r.exit_used == r.max_exit for r in lowered)
    assert 2.0 <= np.mean([r.exit_used for r in settled]) < N  # deep exits still run, not the full model
    assert ctl.time_cap < N
    # the machine is back at configure's speed (the trace's last part): once the slow steps leave the window the
    # full cap is back
    after = [ctl.step(obs)[1] for obs in observations[fast + slow:]]
    assert ctl.drift.margin_ms == 0.0 and ctl.time_cap == N and after[-1].max_exit == N


DRIFT_SETTLE = 150  # slow steps until the margin's p99 window holds enough of them


def test_peak_time_cap_suspends_a_guarantee_and_is_not_used_without_peak_ms():
    """A cap below the one a fidelity guarantee was certified with stops steps before the thresholds decide:
    while peak_ms lowers it the guarantee is not reported as in force (nor written into the step records); with
    no time budget (a GFLOPs peak only) nothing follows time and the cap stays the budget's."""
    from deer_vla.control.guarantee import Guarantee

    guarantee = Guarantee(eps=0.1, delta=0.1, metric="mean", n_calibration=10, bound=2.0)
    trace, configured = _slowed_trace(10, 290, 3.0, seed=6)
    profile = synthetic_profile(N, trace=configured)

    def run(budget: BudgetSpec) -> tuple[ExitController, list[StepRecord]]:
        clock = ManualClock()
        policy = SyntheticExitPolicy(N, seed=6, clock=clock, latency=trace)
        ctl = ExitController(policy, profile, Thresholds(values=[0.0] * (N - 1), guarantee=guarantee), budget,
                             clock=clock)
        return ctl, [ctl.step(obs)[1] for obs in synthetic_episodes(1, 300)[0]]

    ctl, records = run(BudgetSpec(peak_gflops=float(profile.costs("llm_gflops")[-1])))
    assert not ctl.plans_with_time and ctl.time_cap is None and ctl.drift.steps == 200  # measured all the same
    assert all(r.max_exit == N and r.risk_eps == 0.1 for r in records) and ctl.guarantee == guarantee
    ctl, records = run(BudgetSpec(peak_ms=step_worst_ms(profile, N)))
    assert ctl.plans_with_time and ctl.time_cap is not None and ctl.time_cap < N and ctl.guarantee is None
    assert records[0].risk_eps == 0.1 and records[-1].risk_eps is None and records[-1].max_exit < N


def test_the_guard_keeps_the_whole_drift_margin_free():
    guard = DeadlineGuard(10.0, [2.0, 3.0], 0.5)
    assert guard.allows(2, 5.0)  # 5 + 3 + 2 * 0.5 = 9 ms
    assert guard.allows(2, 5.0, margin_ms=1.0)  # 10 ms: ends at the deadline
    assert not guard.allows(2, 5.0, margin_ms=1.5)  # 10.5 ms: the margin says it would pass it


def test_the_default_drift_margin_waits_100_steps_and_remembers_200():
    from deer_vla.control.deadline import DriftMargin

    drift = DriftMargin()
    for _ in range(99):
        drift.observe(15.0, 10.0)
    assert not drift.ready and drift.margin_ms == 0.0
    drift.observe(15.0, 10.0)
    assert drift.ready and drift.margin_ms == pytest.approx(5.0)
    for _ in range(100):
        drift.observe(15.0, 10.0)
    for _ in range(197):
        drift.observe(7.0, 10.0)
    assert drift.margin_ms == pytest.approx(5.0)  # three slow steps still among the last 200
    for _ in range(3):
        drift.observe(7.0, 10.0)
    assert drift.margin_ms == 0.0 and drift.steps == 200


def test_a_guard_of_zero_times_is_not_measured():
    from deer_vla.control.deadline import DriftMargin

    drift = DriftMargin(window=10, min_steps=1)
    assert drift.observe(5.0, 0.0) is None and drift.steps == 0 and drift.margin_ms == 0.0


def test_the_drift_notice_clears_only_under_a_fifth_of_the_plan():
    from deer_vla.control.deadline import DriftMargin

    drift = DriftMargin(window=100, min_steps=100)
    said = [drift.observe(15.0, 10.0) for _ in range(100)]
    assert said[-1] is not None and "5 ms more" in said[-1]
    said = [n for n in (drift.observe(13.0, 10.0) for _ in range(100)) if n]
    assert said == [] and drift.margin_ms == pytest.approx(3.0)  # between DRIFT_CLEAR and DRIFT_WARN: quiet
    said = [n for n in (drift.observe(11.0, 10.0) for _ in range(100)) if n]
    assert len(said) == 1 and "back within" in said[0]


def test_the_drift_notice_names_the_plan_of_the_recent_steps():
    from deer_vla.control.deadline import DriftMargin

    drift = DriftMargin(window=10, min_steps=10)
    for _ in range(20):
        drift.observe(10.0, 10.0)
    for _ in range(10):
        drift.observe(100.0, 100.0)  # a new budget: deeper steps planned
    notice = drift.observe(200.0, 100.0)
    assert notice is not None and "they plan 100 ms" in notice


def test_a_budget_that_voids_a_guarantee_is_refused_while_a_slow_machine_suspends_it():
    """While peak_ms's cap is lowered the guarantee is not reported in force; set_budget judged a new budget
    against that, so a deadline (which voids the guarantee for good) was accepted only on a slow machine."""
    from deer_vla.control.guarantee import Guarantee

    guarantee = Guarantee(eps=0.1, delta=0.1, metric="mean", n_calibration=10, bound=2.0)
    trace, configured = _slowed_trace(10, 290, 3.0, seed=6)
    profile = synthetic_profile(N, trace=configured)
    clock = ManualClock()
    ctl = ExitController(SyntheticExitPolicy(N, seed=6, clock=clock, latency=trace), profile,
                         Thresholds(values=[0.0] * (N - 1), guarantee=guarantee),
                         BudgetSpec(peak_ms=step_worst_ms(profile, N)), clock=clock)
    for obs in synthetic_episodes(1, 300)[0]:
        ctl.step(obs)
    assert ctl.guarantee is None and ctl.time_cap < N  # suspended
    with pytest.raises(ValueError, match="fidelity guarantee would not hold"):
        ctl.set_budget(BudgetSpec(peak_ms=step_worst_ms(profile, N), deadline_ms=step_worst_ms(profile, N)))


def test_the_drift_margin_follows_the_machine_while_no_time_budget_is_set():
    """The margin was fed only while a time budget planned with it: set again after steps without one, it used
    a slowdown long over (198 steps at exit 1 on a machine back at full speed); a first mend restarted it
    instead, and one step without a time budget then erased a slowdown still going on (100 of 100 steps over
    peak_ms). It is fed at every step of a profile with latencies now."""
    trace, configured = _slowed_trace(10, 290, 3.0, seed=7, recovered=300)
    profile = synthetic_profile(N, trace=configured)
    clock = ManualClock()
    policy = SyntheticExitPolicy(N, seed=7, clock=clock, latency=trace)
    peak = BudgetSpec(peak_ms=step_worst_ms(profile, N))
    ctl = ExitController(policy, profile, Thresholds(values=[0.0] * (N - 1)), peak, clock=clock)
    observations = synthetic_episodes(1, 600)[0]
    for obs in observations[:298]:
        ctl.step(obs)
    slow_margin = ctl.drift.margin_ms
    assert slow_margin > 0 and ctl.time_cap < N
    ctl.set_budget(BudgetSpec())  # one step without a time budget, the machine still slow
    ctl.step(observations[298])
    ctl.set_budget(peak)
    record = ctl.step(observations[299])[1]
    assert ctl.drift.margin_ms == pytest.approx(slow_margin, rel=0.2) and record.max_exit < N
    ctl.set_budget(BudgetSpec())
    for obs in observations[300:550]:  # the machine is back at configure's speed, measured without a time budget
        ctl.step(obs)
    ctl.set_budget(peak)
    record = ctl.step(observations[550])[1]
    assert ctl.drift.margin_ms == 0.0 and record.max_exit == N and ctl.time_cap == N

def test_the_tracker_leaves_certified_thresholds_alone_while_a_slow_machine_suspends_the_guarantee():
    """While peak_ms's cap suspends the guarantee the online tracker took it for thresholds without one and
    scaled them to its floor (1/16 in 400 steps); it idles as long as a guarantee is certified."""
    from deer_vla.control.guarantee import Guarantee

    guarantee = Guarantee(eps=0.1, delta=0.1, metric="mean", n_calibration=10, bound=2.0)
    trace, configured = _slowed_trace(10, 390, 3.0, seed=8)
    profile = synthetic_profile(N, trace=configured)
    clock = ManualClock()
    costs = profile.costs("llm_gflops")
    ctl = ExitController(SyntheticExitPolicy(N, seed=8, clock=clock, latency=trace), profile,
                         Thresholds(values=[0.5] * (N - 1), guarantee=guarantee, expected_cost=float(costs[2])),
                         BudgetSpec(peak_ms=step_worst_ms(profile, N), average_gflops=float(costs[3])),
                         tracker=OnlineBudgetTracker(float(costs[3])), clock=clock)
    records = [ctl.step(obs)[1] for obs in synthetic_episodes(1, 400)[0]]
    assert ctl.guarantee is None and ctl.time_cap < N  # suspended
    assert all(r.threshold_scale == 1.0 for r in records)
