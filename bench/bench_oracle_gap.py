"""Controller vs oracle at the same fidelity: the compute gap of the exit criterion, on held-out demonstrations.

The closed-loop trade-off bench compares the controller with a tolerance
oracle whose fidelity differs from the controller's at each budget, so its
ratio mixes "how good is the criterion" with "how much fidelity was bought".
This bench separates them. On recorded per-exit actions of held-out
demonstration steps, each controller (thresholds for several average
budgets solved by the quantile method, by error-minimising coordinate
descent and, optionally, Bayes-tuned; the thresholds of one budget scaled to
the others, as the online tracker does when the budget changes at run time;
and every static exit) is
scored by its mean cost and its mean error (RMS distance over the motion
axes between the action it takes and the full model's). The oracle is the least mean cost any per-step exit
choice can reach at that same mean error (``oracle_cost_at_error``, an exact
lower bound). The ratio controller/oracle is how much compute the criterion
leaves on the table; 1.0 would be a perfect criterion.

Thresholds are solved on calibration episodes and scored on disjoint held-out
episodes of the same tasks. Offline, the head's history holds the full
model's features (as in calibration), not the exits taken.

    python bench/bench_oracle_gap.py --quick      # < 1 min on 2 CPU cores
    python bench/bench_oracle_gap.py               # 10 tasks x (6 calibration + 4 held-out) demonstrations
    python bench/bench_oracle_gap.py --suite mt50 --dataset data/mt50   # the 50-task suite's demonstrations
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from common import DEFAULT_CHECKPOINT, REPO, machine_description, ratio

from deer_vla.control import (
    BudgetSpec,
    Criterion,
    collect_exit_actions,
    exit_errors,
    oracle_cost_at_error,
    solve_thresholds_descent,
    solve_thresholds_quantile,
)
from deer_vla.control.budgets import budget_report
from deer_vla.control.thresholds import Thresholds, simulate_exits


def split_episodes(dataset: Path, tasks: list[str], calib: int, held: int) -> tuple[list[int], list[int]]:
    """Per task, its first ``calib`` episodes for calibration and the next ``held`` for scoring."""
    from deer_vla.data.episodes import EpisodeDataset

    ds = EpisodeDataset(dataset)
    a: list[int] = []
    b: list[int] = []
    for task in tasks:
        idx = ds.episodes_for_task(task)  # KeyError naming the tasks present
        if len(idx) < calib + held:
            raise SystemExit(f"task {task!r} has {len(idx)} episodes in {dataset}; this run needs {calib + held}")
        a += idx[:calib]
        b += idx[calib:calib + held]
    return a, b


def load_episodes(dataset: Path, indices: list[int]) -> list:
    from deer_vla.data.episodes import EpisodeDataset

    ds = EpisodeDataset(dataset)
    return [ds.load(i) for i in indices]


def observations(episodes: list, cameras: tuple[str, ...], max_steps: int | None) -> list:
    from deer_vla.data.observations import episode_observations

    return [episode_observations(ep, cameras)[:max_steps] for ep in episodes]


def expert_actions(episodes: list, max_steps: int | None) -> np.ndarray:
    """The demonstrations' own actions at the recorded steps, (S, A)."""
    return np.concatenate([np.asarray(ep.actions, dtype=np.float64)[:max_steps] for ep in episodes])


def score(exits: np.ndarray, costs: np.ndarray, errors: np.ndarray, actions: np.ndarray,
          expert: np.ndarray) -> dict:
    rows = np.arange(len(exits))
    cost = float(costs[exits - 1].mean())
    err = float(errors[rows, exits - 1].mean())
    oracle = oracle_cost_at_error(actions, costs, err)
    taken = actions[rows, exits - 1, :-1]  # motion axes of the action taken (the gripper is the last value)
    return {"mean_cost": cost, "mean_error": err, "mean_exit": float(exits.mean()),
            "oracle_cost": oracle, "controller_over_oracle": ratio(cost, oracle),
            "expert_rms": float(np.sqrt(np.mean((taken - expert[:, :-1]) ** 2)))}


def tracker_steady_state(actions: np.ndarray, base: Thresholds, costs: np.ndarray, cap: int,
                         target: float) -> np.ndarray:
    """Exits under ``base`` scaled by the one factor that meets ``target`` on these steps: where the
    online tracker settles when the budget is changed at run time without re-solving thresholds."""
    lo, hi = np.log(1 / 256), np.log(256)  # cost falls as the scale (and every eta) grows
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if costs[simulate_exits(actions, base, cap=cap, scale=float(np.exp(mid))) - 1].mean() > target:
            lo = mid
        else:
            hi = mid
    return simulate_exits(actions, base, cap=cap, scale=float(np.exp(hi)))


def bayes_tuned(calib: np.ndarray, profile, budget: BudgetSpec, init: Thresholds, trials: int) -> Thresholds:
    """Thresholds Bayes-tuned on the calibration steps for least mean error at the budget (fidelity proxy)."""
    from deer_vla.control.bayes import fidelity_objective, tune_thresholds

    objective = fidelity_objective(calib, profile, budget.metric, cap=budget_report(profile, budget).cap)
    return tune_thresholds(objective, profile, budget, init, n_trials=trials, seed=0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--dataset", default=str(REPO / "data" / "demos"), help="demonstrations (deer-vla collect)")
    p.add_argument("--tasks", default=None, help="comma list or 'all' (default all; --quick: 2 tasks)")
    p.add_argument("--suite", default=None, help="a named suite instead of --tasks: 'default' or 'mt50'")
    p.add_argument("--calib-episodes", type=int, default=None, help="per task (default 6; --quick 1)")
    p.add_argument("--held-episodes", type=int, default=None,
                   help="per task, after the calibration ones (default 4; --quick 1)")
    p.add_argument("--max-steps", type=int, default=None, help="steps per episode (default all; --quick 40)")
    p.add_argument("--budgets", default="0.15,0.2,0.3,0.5,0.7", help="average budgets, fractions of full LLM GFLOPs")
    p.add_argument("--bayes-trials", type=int, default=None, help="0 = quantile only (default 30; --quick 0)")
    p.add_argument("--scaled-from", type=float, default=0.2, metavar="FRACTION",
                   help="also score the thresholds solved for this budget, scaled to each other budget as the "
                        "online tracker does at run time (0 = off)")
    p.add_argument("--distance", default="rms", choices=("rms", "mean", "max", "l2", "cosine"),
                   help="the run-time criterion's distance between consecutive exits' actions")
    p.add_argument("--smooth", type=int, default=1, metavar="K",
                   help="criterion: mean of the last K consecutive-exit distances (1 = the original)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--actions-cache", default=None, metavar="NPZ",
                   help="reuse the recorded per-exit actions from this file (written on first use)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default="bench_results/oracle_gap.json")
    args = p.parse_args(argv)

    import torch

    from deer_vla.evaluation.evaluator import resolve_tasks
    from deer_vla.model.runner import PolicyRunner

    torch.set_num_threads(args.threads)
    dataset = Path(args.dataset)
    if not dataset.is_dir():
        raise SystemExit(f"no demonstrations at {dataset}: make them with `deer-vla collect` (README)")
    from deer_vla.sim.tasks import tasks_arg

    try:
        tasks = resolve_tasks(tasks_arg(args.suite, args.tasks, "coffee-button,handle-press" if args.quick else "all"))
    except (KeyError, ValueError) as exc:
        raise SystemExit(f"bench_oracle_gap: {exc.args[0] if exc.args else exc}") from None
    n_calib = args.calib_episodes or (1 if args.quick else 6)
    n_held = args.held_episodes or (1 if args.quick else 4)
    max_steps = args.max_steps or (40 if args.quick else None)
    trials = args.bayes_trials if args.bayes_trials is not None else (0 if args.quick else 30)
    fractions = [float(b) for b in args.budgets.split(",") if b.strip()]

    t0 = time.perf_counter()
    runner = PolicyRunner.from_checkpoint(Path(args.checkpoint), device="cpu")
    profile = runner.cost_profile
    costs = np.asarray(profile.costs("llm_gflops"))
    calib_idx, held_idx = split_episodes(dataset, tasks, n_calib, n_held)
    held_eps = load_episodes(dataset, held_idx)  # their observations (unless cached) and expert actions
    cache = Path(args.actions_cache) if args.actions_cache else None
    key = np.array([args.checkpoint, str(dataset), ",".join(tasks), str(calib_idx), str(held_idx), str(max_steps)])
    cached = None
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            if np.array_equal(z["key"], key):  # recorded for this very checkpoint, data and split
                cached = z["calib"], z["held"]
    if cached is not None:
        calib, held = cached
        source = f"loaded from {cache}"
    else:
        cams = tuple(runner.cameras)
        with torch.inference_mode():
            calib = collect_exit_actions(runner, observations(load_episodes(dataset, calib_idx), cams, max_steps))
            held = collect_exit_actions(runner, observations(held_eps, cams, max_steps))
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, key=key, calib=calib, held=held)
        source = f"recorded in {time.perf_counter() - t0:.0f} s"
    errors = exit_errors(held)
    expert = expert_actions(held_eps, max_steps)
    if expert.shape != (held.shape[0], held.shape[2]):
        raise SystemExit(f"demonstration actions {expert.shape} do not line up with the recorded steps {held.shape}")
    print(f"{machine_description('cpu')}; {len(tasks)} task(s), {calib.shape[0]} calibration / "
          f"{held.shape[0]} held-out steps, {profile.num_exits} exits; full model {costs[-1]:.4f} LLM GFLOPs/step "
          f"({source})")

    criterion = Criterion(distance=args.distance, smooth=args.smooth)
    base = None
    if args.scaled_from > 0:
        base = solve_thresholds_quantile(calib, profile, BudgetSpec(average_gflops=args.scaled_from * costs[-1]),
                                         criterion=criterion)
    rows: list[dict] = []
    for k in range(1, profile.num_exits + 1):
        rows.append({"mode": f"static exit {k}", "budget_fraction": None, "method": None,
                     **score(np.full(held.shape[0], k), costs, errors, held, expert)})
    for frac in fractions:
        budget = BudgetSpec(average_gflops=frac * costs[-1])
        cap = budget_report(profile, budget).cap
        quantile = solve_thresholds_quantile(calib, profile, budget, criterion=criterion)
        solved = [("quantile", quantile)]
        if cap > 2:
            solved.append(("descent", solve_thresholds_descent(calib, profile, budget, criterion=criterion)))
        if trials > 0 and cap > 2:
            solved.append(("bayes", bayes_tuned(calib, profile, budget, quantile, trials)))
        for method, th in solved:
            exits = simulate_exits(held, th, cap=cap)
            rows.append({"mode": f"dynamic {frac:g}x ({method})", "budget_fraction": frac, "method": method,
                         **score(exits, costs, errors, held, expert)})
        if base is not None and cap > 2 and frac != args.scaled_from:
            exits = tracker_steady_state(held, base, costs, cap, budget.average_gflops)
            rows.append({"mode": f"dynamic {frac:g}x (scaled)", "budget_fraction": frac, "method": "scaled",
                         **score(exits, costs, errors, held, expert)})

    print(f"{'mode':<28} {'cost/full':>9} {'mean exit':>9} {'mean error':>10} {'oracle/full':>11} "
          f"{'controller/oracle':>17} {'vs expert':>9}")
    for r in rows:
        print(f"{r['mode']:<28} {r['mean_cost'] / costs[-1]:>9.3f} {r['mean_exit']:>9.2f} {r['mean_error']:>10.4f} "
              f"{r['oracle_cost'] / costs[-1]:>11.3f} {r['controller_over_oracle']:>17.2f} {r['expert_rms']:>9.4f}")
    print("(mean error: distance of the action taken from the full model's, RMS over the motion axes; "
          "vs expert: RMS distance of its motion from the demonstration's action)")
    static = [r["controller_over_oracle"] for r in rows if r["budget_fraction"] is None and r["mean_error"] > 0]
    if static:
        print(f"static exits / oracle at the same mean error: {min(static):.2f}-{max(static):.2f}x")
    for method in dict.fromkeys(r["method"] for r in rows if r["method"]):
        gaps = [r["controller_over_oracle"] for r in rows if r["method"] == method]
        print(f"dynamic controller ({method}) / oracle at the same mean error: {min(gaps):.2f}-{max(gaps):.2f}x "
              f"over budgets {[r['budget_fraction'] for r in rows if r['method'] == method]}; target <= 1.3x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"checkpoint": args.checkpoint, "tasks": tasks, "criterion_distance": args.distance,
                               "criterion_smooth": args.smooth,
                               "calibration_steps": int(calib.shape[0]),
                               "held_out_steps": int(held.shape[0]), "full_llm_gflops": float(costs[-1]),
                               "machine": machine_description("cpu"), "rows": rows}, indent=2))
    print(f"wall time {time.perf_counter() - t0:.0f} s; results {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
