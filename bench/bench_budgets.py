"""Budget adherence of the exit controller: average (offline and online), peak, deadline.

On recorded per-exit actions (``--exit-actions file.npy`` of shape (S, N, A)
from deer_vla.control.calibration.collect_exit_actions, with ``--profile``
profile.json) or on seeded synthetic streams (default). Prints, for several
average budgets, the target vs the measured mean cost with and without online
tracking, on held-out steps of the calibration distribution and under a
distribution shift (calibrate on easy streams, run on harder ones); peak
adherence under a peak cap; deadline overruns on a replayed latency trace, and
on one that runs slower after the guard's times were measured.

    .venv/bin/python bench/bench_budgets.py --quick
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable

import numpy as np
from common import check_counts, run_bench

from deer_vla.control import (
    BudgetSpec,
    DeadlineGuard,
    ExitController,
    LatencyTrace,
    ManualClock,
    OnlineBudgetTracker,
    Thresholds,
    fidelity_objective,
    solve_thresholds_quantile,
    tune_thresholds,
)
from deer_vla.control.budgets import step_worst_ms
from deer_vla.control.deadline import DriftMargin
from deer_vla.control.synthetic import (
    ReplayExitPolicy,
    SyntheticExitPolicy,
    synthetic_episodes,
    synthetic_exit_actions,
    synthetic_latency_trace,
    synthetic_profile,
)
from deer_vla.core import CostMetric, CostProfile, SegmentedPolicy
from deer_vla.core.writable import path_argument


def run(ctl: ExitController, steps: int, episode_len: int) -> np.ndarray:
    """Per-step cost (budget metric) and exit of ``steps`` controller steps, as an (steps, 2) array."""
    out: list[tuple[float, int]] = []
    for episode in synthetic_episodes(-(-steps // episode_len), episode_len):
        ctl.reset_episode()
        for obs in episode:
            if len(out) == steps:
                break
            _, rec = ctl.step(obs)
            cost = rec.llm_gflops if ctl.budget.metric == "llm_gflops" else rec.total_gflops
            out.append((cost, rec.exit_used))
    return np.array(out)


def average_table(
    title: str,
    calib: np.ndarray,
    make_policy: Callable[[], SegmentedPolicy],
    profile: CostProfile,
    fractions: list[float],
    steps: int,
    episode_len: int,
    metric: CostMetric,
) -> None:
    costs = profile.costs(metric)
    print(f"\n== {title}")
    print(f"{'target':>8} {'calib':>8} {'static':>8} {'tracked':>8} | {'calib/t':>7} {'static/t':>8} {'track/t':>7}"
          f" | {'scale':>5}  exit distribution (static run, exits 1..N)")
    for f in fractions:
        t = costs[1] + f * (costs[-1] - costs[1])
        budget = BudgetSpec(average_gflops=t, metric=metric)
        th = solve_thresholds_quantile(calib, profile, budget)
        static = run(ExitController(make_policy(), profile, th, budget), steps, episode_len)
        tracker = OnlineBudgetTracker(t)
        tracked = run(ExitController(make_policy(), profile, th, budget, tracker=tracker), steps, episode_len)
        assert th.expected_cost is not None
        dist = np.bincount(static[:, 1].astype(int), minlength=profile.num_exits + 1)[1:] / len(static)
        print(f"{t:8.3f} {th.expected_cost:8.3f} {static[:, 0].mean():8.3f} {tracked[:, 0].mean():8.3f} | "
              f"{th.expected_cost / t:7.3f} {static[:, 0].mean() / t:8.3f} {tracked[:, 0].mean() / t:7.3f} | "
              f"{tracker.scale:5.2f}  " + " ".join(f"{p:.2f}" for p in dist))


def peak_table(calib: np.ndarray, make_policy: Callable[[], SegmentedPolicy], profile: CostProfile,
               steps: int, episode_len: int, metric: CostMetric) -> None:
    costs = profile.costs(metric)
    print("\n== Peak cap (average budget = midpoint of exits 2..cap, online tracking on)")
    print(f"{'peak':>8} {'cap':>3} {'avg target':>10} {'measured':>8} {'max step':>8} {'steps > peak':>12}")
    for cap in range(2, profile.num_exits + 1):
        peak = costs[cap - 1]
        avg = 0.5 * (costs[1] + costs[cap - 1])
        budget = BudgetSpec(average_gflops=avg, peak_gflops=peak, metric=metric)
        th = solve_thresholds_quantile(calib, profile, budget)
        res = run(ExitController(make_policy(), profile, th, budget, tracker=OnlineBudgetTracker(avg)),
                  steps, episode_len)
        over = int((res[:, 0] > peak + 1e-12).sum())
        print(f"{peak:8.3f} {cap:3d} {avg:10.3f} {res[:, 0].mean():8.3f} {res[:, 0].max():8.3f} {over:12d}")


def bo_table(calib: np.ndarray, tune: np.ndarray, profile: CostProfile, fractions: list[float],
             n_trials: int, seed: int, metric: CostMetric) -> None:
    costs = profile.costs(metric)
    objective = fidelity_objective(tune, profile, metric)
    print(f"\n== Bayesian optimisation ({n_trials} GP trials, seed {seed}) from the quantile thresholds; "
          "proxy score = -mean RMS action error vs the deepest exit, on steps disjoint from calibration")
    print(f"{'target':>8} | {'init score':>10} {'init cost':>9} | {'BO score':>9} {'BO cost':>8} | {'s':>5}")
    for f in fractions:
        t = costs[1] + f * (costs[-1] - costs[1])
        budget = BudgetSpec(average_gflops=t, metric=metric)
        init = solve_thresholds_quantile(calib, profile, budget)
        t0 = time.perf_counter()
        best = tune_thresholds(objective, profile, budget, init, n_trials=n_trials, seed=seed)
        s0, c0 = objective(init)
        s1, c1 = objective(best)
        print(f"{t:8.3f} | {s0:10.4f} {c0:9.3f} | {s1:9.4f} {c1:8.3f} | {time.perf_counter() - t0:5.1f}")


def deadline_table(num_exits: int, steps: int, seed: int) -> None:
    trace = synthetic_latency_trace(steps, num_exits, seed=seed)
    profile = synthetic_profile(num_exits, trace=trace)
    th = Thresholds(values=[0.0] * (num_exits - 1))  # never stops on the criterion: isolates the deadline

    def go(deadline: float | None, guard: str) -> np.ndarray:
        clock = ManualClock()
        policy = SyntheticExitPolicy(num_exits, seed=seed, clock=clock, latency=trace)
        ctl = ExitController(policy, profile, th, BudgetSpec(deadline_ms=deadline), clock=clock,
                             latency_trace=trace if guard == "trace-max" else None)
        out: list[tuple[float, int]] = []
        for obs in synthetic_episodes(1, steps)[0]:
            _, rec = ctl.step(obs)
            out.append((rec.total_ms, rec.exit_used))
        return np.array(out)

    free = go(None, "none")
    worst1 = DeadlineGuard.from_trace(trace, 1.0).worst_case_ms(1)
    print(f"\n== Deadline on a replayed latency trace ({steps} steps, {num_exits} exits; "
          f"full-depth step median {np.median(free[:, 0]):.1f} ms, max {free[:, 0].max():.1f} ms)")
    print(f"{'deadline':>8} | {'overruns: none':>14} {'profile p99':>11} {'trace max':>9} | "
          f"{'mean exit: none':>15} {'p99':>5} {'max':>5}")
    for q in (10, 50, 90):
        deadline = max(float(np.percentile(free[:, 0], q)), worst1)
        p99 = go(deadline, "profile-p99")
        tmax = go(deadline, "trace-max")
        n_over = [int((r[:, 0] > deadline + 1e-9).sum()) for r in (free, p99, tmax)]
        print(f"{deadline:8.2f} | {n_over[0]:14d} {n_over[1]:11d} {n_over[2]:9d} | "
              f"{free[:, 1].mean():15.2f} {p99[:, 1].mean():5.2f} {tmax[:, 1].mean():5.2f}")


def slowdown_table(num_exits: int, steps: int, seed: int) -> None:
    """A machine that slows down after configure timed it: the first third of the steps at the timed speed,
    the rest ``factor`` times slower (every part). Overruns of the slow steps (from the fifth on) with the guard
    planning on configure's times alone ("blind") and adding the drift margin it measures (the controller's own,
    "following")."""
    fast = steps // 3
    base = synthetic_latency_trace(steps, num_exits, seed=seed)
    observations = synthetic_episodes(1, steps)[0]
    th = Thresholds(values=[0.0] * (num_exits - 1))  # never stops on the criterion: isolates the deadline

    def run_slow(trace: LatencyTrace, profile: CostProfile, deadline: float,
                 follow: bool) -> tuple[float, float, float]:
        """-> (share of slow steps over the deadline, their mean exit, the drift margin at the end, ms)."""
        clock = ManualClock()
        policy = SyntheticExitPolicy(num_exits, seed=seed, clock=clock, latency=trace)
        ctl = ExitController(policy, profile, th, BudgetSpec(deadline_ms=deadline), clock=clock)
        if not follow:
            ctl.drift = DriftMargin(window=10**9, min_steps=10**9)  # never ready: no margin
        recs = [ctl.step(obs)[1] for obs in observations][fast + 5:]
        return (float(np.mean([r.total_ms > deadline + 1e-9 for r in recs])),
                float(np.mean([r.exit_used for r in recs])), ctl.drift.margin_ms)

    print(f"\n== Deadline when the machine slows down after configure ({fast} steps at the timed speed, "
          f"{steps - fast} slower; deadline = a multiple of the full model's worst case at configure)")
    print(f"{'slower':>6} {'deadline':>8} | {'overruns: blind':>15} {'following':>9} | "
          f"{'mean exit: blind':>16} {'following':>9} | {'margin ms':>9}")
    quiet = logging.getLogger("deer_vla.controller")  # its notices would repeat the table's last column
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        for factor in (1.5, 2.0):
            scale = np.where(np.arange(steps) < fast, 1.0, factor)
            trace = LatencyTrace(encode_ms=base.encode_ms * scale, segment_ms=base.segment_ms * scale[:, None],
                                 head_ms=base.head_ms * scale)
            profile = synthetic_profile(num_exits, trace=LatencyTrace(
                encode_ms=trace.encode_ms[:fast], segment_ms=trace.segment_ms[:fast], head_ms=trace.head_ms[:fast]))
            for multiple in (0.8, 1.0, 1.2):
                deadline = step_worst_ms(profile, num_exits) * multiple
                blind_over, blind_exit, _ = run_slow(trace, profile, deadline, follow=False)
                over, mean_exit, learned = run_slow(trace, profile, deadline, follow=True)
                print(f"{factor:5.1f}x {deadline:8.2f} | {blind_over:15.1%} {over:9.1%} | "
                      f"{blind_exit:16.2f} {mean_exit:9.2f} | {learned:9.2f}")
    finally:
        quiet.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (< 1 minute on 2 cores)")
    parser.add_argument("--exit-actions", type=path_argument, help="recorded (S, N, A) per-exit actions, .npy")
    parser.add_argument("--profile", type=path_argument, help="cost profile JSON for --exit-actions")
    parser.add_argument("--exits", type=int, default=6, help="synthetic: number of exits")
    parser.add_argument("--calib-steps", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=4000, help="controller steps per run")
    parser.add_argument("--episode-len", type=int, default=50)
    parser.add_argument("--easy", type=float, default=0.4, help="synthetic difficulty of the calibration streams")
    parser.add_argument("--hard", type=float, default=0.7, help="synthetic difficulty after the shift")
    parser.add_argument("--metric", choices=["llm_gflops", "total_gflops"], default="llm_gflops")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.3, 0.5, 0.7, 0.9],
                        help="average budgets as fractions of the way from exit 2's to exit N's cost")
    parser.add_argument("--bo-trials", type=int, default=20, help="Bayesian optimisation trials (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.calib_steps, args.steps = min(args.calib_steps, 800), min(args.steps, 1500)
        args.bo_trials = min(args.bo_trials, 12)
    # bounded: the streams are made up front (10^9 steps filled the memory at 200 MB/s)
    check_counts(exits=(args.exits, 2, 64), calib_steps=(args.calib_steps, 2, 1_000_000),
                 steps=(args.steps, 1, 1_000_000), episode_len=(args.episode_len, 1, 1_000_000),
                 easy=(args.easy, 0, 0.999), hard=(args.hard, 0, 0.999), bo_trials=(args.bo_trials, 0, 1000))
    for f in args.fractions:
        check_counts(fractions=(f, 0, 1))
    if args.exit_actions is not None and not args.exit_actions.is_file():
        parser.error(f"--exit-actions {args.exit_actions}: no such file")
    t0 = time.perf_counter()
    n, ep = args.exits, args.episode_len
    if args.exit_actions is not None:
        if args.profile is None:
            parser.error("--exit-actions needs --profile")
        try:
            data = np.load(args.exit_actions, allow_pickle=False)  # never unpickle an outside file
        except (OSError, ValueError, EOFError) as exc:  # empty (EOFError) or not an .npy array
            raise ValueError(f"--exit-actions {args.exit_actions}: not a readable .npy array "
                             f"({type(exc).__name__}: {exc})") from None
        if not isinstance(data, np.ndarray) or data.ndim != 3 or data.shape[0] < 2:  # an .npz is a mapping
            parser.error(f"--exit-actions {args.exit_actions}: expected (steps, exits, action) per-exit actions, "
                         f"got {f'shape {data.shape}' if isinstance(data, np.ndarray) else 'an .npz archive'}")
        profile = CostProfile.load(args.profile)
        half = data.shape[0] // 2
        calib, held = data[:half], data[half:]
        print(f"recorded data {args.exit_actions}: {data.shape}; calibrate on the first {half} steps, run on the rest")
        average_table("Average budget, held-out recorded steps", calib, lambda: ReplayExitPolicy(held), profile,
                      args.fractions, len(held), ep, args.metric)
        peak_table(calib, lambda: ReplayExitPolicy(held), profile, len(held), ep, args.metric)
        if args.bo_trials > 0:
            bo_table(calib, held, profile, args.fractions[::2], args.bo_trials, args.seed, args.metric)
    else:
        profile = synthetic_profile(n)
        print(f"synthetic streams: {n} exits, LLM GFLOPs per exit {profile.costs()}, "
              f"{args.calib_steps} calibration steps, {args.steps} steps per run, seed {args.seed}")
        easy = synthetic_exit_actions(args.calib_steps, n, difficulty=args.easy, seed=args.seed)
        average_table(f"Average budget, same distribution (difficulty {args.easy})", easy,
                      lambda: SyntheticExitPolicy(n, difficulty=args.easy, seed=args.seed + 1), profile,
                      args.fractions, args.steps, ep, args.metric)
        average_table(f"Average budget under shift: calibrated at difficulty {args.easy}, run at {args.hard}", easy,
                      lambda: SyntheticExitPolicy(n, difficulty=args.hard, seed=args.seed + 2), profile,
                      args.fractions, args.steps, ep, args.metric)
        hard = synthetic_exit_actions(args.calib_steps, n, difficulty=args.hard, seed=args.seed + 3)
        average_table(f"Average budget under shift: calibrated at difficulty {args.hard}, run at {args.easy}", hard,
                      lambda: SyntheticExitPolicy(n, difficulty=args.easy, seed=args.seed + 4), profile,
                      args.fractions, args.steps, ep, args.metric)
        peak_table(easy, lambda: SyntheticExitPolicy(n, difficulty=args.easy, seed=args.seed + 5), profile,
                   args.steps, ep, args.metric)
        if args.bo_trials > 0:
            tune = synthetic_exit_actions(args.calib_steps, n, difficulty=args.easy, seed=args.seed + 6)
            bo_table(easy, tune, profile, args.fractions[::2], args.bo_trials, args.seed, args.metric)
    deadline_table(profile.num_exits, min(args.steps, 2000), args.seed)
    slowdown_table(profile.num_exits, min(args.steps, 1200), args.seed)
    print(f"\n(costs in {args.metric}; '/t' = measured / target; 'static' = offline thresholds only, "
          f"'tracked' = with OnlineBudgetTracker; {time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(run_bench(main))
