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
episodes of the same tasks (or on another dataset's, --held-dataset). Offline,
the head's history holds the full model's features (as in calibration), not
the exits taken.

``--criterion consecutive,learned`` compares DeeR's consecutive-distance
criterion with the learned one (the checkpoint's exit gates, or --gates FILE;
``deer-vla train-gate``) on the same steps: same solvers, same oracle. The
learned controller's cost charges its gate evaluations; the oracle's does not.
The learned criterion can stop from exit 1 on when the gates have an exit-1
gate (DeeR's consecutive one from exit 2: it needs two exits to compare).
Rows "perfect gate" give the ceiling of any gate under this stopping rule:
scores equal to the true distances from the full model, from the same first exit.
Rows "learned from 2" run the same gates from exit 2 on (the exit-1 gate unused).

    python bench/bench_oracle_gap.py --quick      # < 1 min on 2 CPU cores
    python bench/bench_oracle_gap.py               # 10 tasks x (6 calibration + 4 held-out) demonstrations
    python bench/bench_oracle_gap.py --suite mt50 --dataset data/mt50   # the 50-task suite's demonstrations
    python bench/bench_oracle_gap.py --criterion consecutive,learned --held-dataset data/val --held-episodes 3
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from common import (
    REPO,
    check_output,
    checkpoint_option,
    load_cache,
    machine_description,
    ratio,
    run_bench,
    save_cache,
    split_episodes,
)

from deer_vla.control import (
    BudgetSpec,
    Criterion,
    collect_exit_actions,
    collect_exit_actions_and_scores,
    exit_errors,
    learned_criterion,
    oracle_cost_at_error,
    solve_thresholds_descent,
    solve_thresholds_quantile,
)
from deer_vla.control.budgets import budget_report
from deer_vla.control.criterion import CRITERION_KINDS
from deer_vla.control.thresholds import Thresholds, simulate_exits
from deer_vla.core.config_io import non_negative_int, positive_int, thread_count
from deer_vla.model.shipped import checkpoint_help


def file_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


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


def score(exits: np.ndarray, charged: np.ndarray, costs: np.ndarray, errors: np.ndarray, actions: np.ndarray,
          expert: np.ndarray) -> dict:
    """``charged``: what the controller pays per exit (with the learned criterion, its gates too);
    ``costs``: the model's own, what the oracle pays."""
    rows = np.arange(len(exits))
    cost = float(charged[exits - 1].mean())
    err = float(errors[rows, exits - 1].mean())
    oracle = oracle_cost_at_error(actions, costs, err)
    taken = actions[rows, exits - 1, :-1]  # motion axes of the action taken (the gripper is the last value)
    return {"mean_cost": cost, "mean_error": err, "mean_exit": float(exits.mean()),
            "exit1_fraction": float(np.mean(exits == 1)),
            "oracle_cost": oracle, "controller_over_oracle": ratio(cost, oracle),
            "expert_rms": float(np.sqrt(np.mean((taken - expert[:, :-1]) ** 2)))}


def tracker_steady_state(actions: np.ndarray, base: Thresholds, costs: np.ndarray, cap: int,
                         target: float, scores: np.ndarray | None = None) -> np.ndarray:
    """Exits under ``base`` scaled by the one factor that meets ``target`` on these steps: where the
    online tracker settles when the budget is changed at run time without re-solving thresholds."""
    lo, hi = np.log(1 / 256), np.log(256)  # cost falls as the scale (and every eta) grows
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if costs[simulate_exits(actions, base, cap=cap, scale=float(np.exp(mid)), scores=scores) - 1].mean() > target:
            lo = mid
        else:
            hi = mid
    return simulate_exits(actions, base, cap=cap, scale=float(np.exp(hi)), scores=scores)


def bayes_tuned(calib: np.ndarray, profile, budget: BudgetSpec, init: Thresholds, trials: int,
                scores: np.ndarray | None = None) -> Thresholds:
    """Thresholds Bayes-tuned on the calibration steps for least mean error at the budget (fidelity proxy)."""
    from deer_vla.control.bayes import fidelity_objective, tune_thresholds

    cap = budget_report(profile, budget, first_exit=init.first_exit).cap
    objective = fidelity_objective(calib, profile, budget.metric, cap=cap, scores=scores)
    return tune_thresholds(objective, profile, budget, init, n_trials=trials, seed=0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=checkpoint_option, default="", help=checkpoint_help())
    p.add_argument("--dataset", default=str(REPO / "data" / "demos"), help="demonstrations (deer-vla collect)")
    p.add_argument("--tasks", default=None, help="comma list or 'all' (default all; --quick: 2 tasks)")
    p.add_argument("--suite", default=None, help="a named suite instead of --tasks: 'default' or 'mt50'")
    p.add_argument("--calib-episodes", type=positive_int, default=None, help="per task (default 6; --quick 1)")
    p.add_argument("--held-episodes", type=positive_int, default=None,
                   help="per task, after the calibration ones (default 4; --quick 1)")
    p.add_argument("--held-dataset", default=None, metavar="DIR",
                   help="score on this dataset's episodes (its first --held-episodes per task) instead of the "
                        "calibration dataset's next ones, e.g. data/val")
    p.add_argument("--criterion", default="consecutive", metavar="consecutive,learned",
                   help="exit criteria to compare on the same steps (comma list)")
    p.add_argument("--gates", default=None, metavar="FILE",
                   help="exit gates for the learned criterion (default: the checkpoint's own)")
    p.add_argument("--max-steps", type=positive_int, default=None, help="steps per episode (default all; --quick 40)")
    p.add_argument("--budgets", default="0.15,0.2,0.3,0.5,0.7", help="average budgets, fractions of full LLM GFLOPs")
    p.add_argument("--bayes-trials", type=non_negative_int, default=None,
                   help="0 = quantile only (default 30; --quick 0)")
    p.add_argument("--scaled-from", type=float, default=0.2, metavar="FRACTION",
                   help="also score the thresholds solved for this budget, scaled to each other budget as the "
                        "online tracker does at run time (0 = off)")
    p.add_argument("--distance", default="rms", choices=("rms", "mean", "max", "l2", "cosine"),
                   help="the run-time criterion's distance between consecutive exits' actions")
    p.add_argument("--smooth", type=int, default=1, metavar="K",
                   help="criterion: mean of the last K consecutive-exit distances (1 = the original)")
    p.add_argument("--threads", type=thread_count, default=1,
                   help="torch CPU threads (default 1: beside one busy process, 2 threads took 112 s to record the "
                        "--quick steps, 1 thread 6 s)")
    p.add_argument("--actions-cache", default=None, metavar="NPZ",
                   help="reuse the recorded per-exit actions from this file (written on first use)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default="bench_results/oracle_gap.json")
    args = p.parse_args(argv)

    import torch

    from deer_vla.evaluation.evaluator import resolve_tasks
    from deer_vla.model.checkpoint_dir import CheckpointDir
    from deer_vla.model.gate import ExitGates
    from deer_vla.model.runner import PolicyRunner

    torch.set_num_threads(args.threads)
    out = check_output("--out", Path(args.out))
    dataset = Path(args.dataset)
    if not dataset.is_dir():
        raise ValueError(f"no demonstrations at {dataset}: make them with `deer-vla collect` (README)")
    from deer_vla.sim.tasks import tasks_arg

    try:
        tasks = resolve_tasks(tasks_arg(args.suite, args.tasks, "coffee-button,handle-press" if args.quick else "all"))
    except (KeyError, ValueError) as exc:
        raise ValueError(exc.args[0] if exc.args else str(exc)) from None
    # None is the default; an explicit count was checked by its type
    n_calib = (1 if args.quick else 6) if args.calib_episodes is None else args.calib_episodes
    n_held = (1 if args.quick else 4) if args.held_episodes is None else args.held_episodes
    max_steps = (40 if args.quick else None) if args.max_steps is None else args.max_steps
    trials = args.bayes_trials if args.bayes_trials is not None else (0 if args.quick else 30)
    fractions = [float(b) for b in args.budgets.split(",") if b.strip()]

    criteria = [c.strip() for c in args.criterion.split(",") if c.strip()]
    bad = [c for c in criteria if c not in CRITERION_KINDS]
    if bad or not criteria:
        raise ValueError(f"--criterion: choose from {CRITERION_KINDS}, got {args.criterion!r}")
    want_learned = "learned" in criteria
    held_dataset = Path(args.held_dataset) if args.held_dataset else None
    if held_dataset is None:  # before the model: a task missing from the data is bad input
        calib_idx, held_idx = split_episodes(dataset, tasks, n_calib, n_held)
    else:
        calib_idx, _ = split_episodes(dataset, tasks, n_calib, 0)
        _, held_idx = split_episodes(held_dataset, tasks, 0, n_held)

    t0 = time.perf_counter()
    runner = PolicyRunner.from_checkpoint(Path(args.checkpoint), device="cpu")
    gates_file = Path(args.gates) if args.gates else CheckpointDir(args.checkpoint).gates_path
    if args.gates:
        runner = PolicyRunner(runner.model, runner.tokenizer, profile=runner.cost_profile,
                              gates=ExitGates.load(gates_file))
    if want_learned and not runner.has_exit_gates:
        raise ValueError(f"--criterion learned: {args.checkpoint} has no exit gates; train them with "
                         "`deer-vla train-gate CHECKPOINT --data DIR` or pass --gates FILE")
    profile = runner.cost_profile
    costs = np.asarray(profile.costs("llm_gflops"))
    held_eps = load_episodes(held_dataset or dataset, held_idx)  # observations (unless cached), expert actions
    cache = Path(args.actions_cache) if args.actions_cache else None
    # the weights' digest: a model retrained into the same folder must not be scored with the old one's actions
    key = np.array([args.checkpoint, CheckpointDir(args.checkpoint).weights_digest(), str(dataset),
                    str(held_dataset), ",".join(tasks), str(calib_idx), str(held_idx), str(max_steps),
                    file_digest(gates_file) if want_learned else ""])
    cached = load_cache(cache, key)  # recorded for this very checkpoint, gates, data and split
    if cached is not None:
        calib, held, calib_scores, held_scores = (cached[k] for k in ("calib", "held", "calib_scores", "held_scores"))
        source = f"loaded from {cache}"
    else:
        cams = tuple(runner.cameras)
        with torch.inference_mode():
            calib_obs = observations(load_episodes(dataset, calib_idx), cams, max_steps)
            held_obs = observations(held_eps, cams, max_steps)
            if want_learned:  # one pass records the actions and the gate scores
                calib, calib_scores = collect_exit_actions_and_scores(runner, calib_obs)
                held, held_scores = collect_exit_actions_and_scores(runner, held_obs)
            else:
                calib, held = collect_exit_actions(runner, calib_obs), collect_exit_actions(runner, held_obs)
                calib_scores, held_scores = np.zeros((0,)), np.zeros((0,))
        save_cache(cache, key=key, calib=calib, held=held, calib_scores=calib_scores, held_scores=held_scores)
        source = f"recorded in {time.perf_counter() - t0:.0f} s"
    errors = exit_errors(held)
    expert = expert_actions(held_eps, max_steps)
    if expert.shape != (held.shape[0], held.shape[2]):
        raise ValueError(f"demonstration actions {expert.shape} do not line up with the recorded steps {held.shape}")
    print(f"{machine_description('cpu')}; {len(tasks)} task(s), {calib.shape[0]} calibration / "
          f"{held.shape[0]} held-out steps{f' (from {held_dataset})' if held_dataset else ''}, "
          f"{profile.num_exits} exits; full model {costs[-1]:.4f} LLM GFLOPs/step ({source})")
    if want_learned:
        gate = runner.exit_gate_gflops
        print(f"exit gates {gates_file} ({gates_file.stat().st_size / 1024:.0f} KiB): {gate * 1e9:.0f} FLOPs per "
              f"evaluation, {gate / (costs[1] - costs[0]):.2e} of one decoder segment, one at each exit from "
              f"{runner.first_gated_exit} on; charged to the learned rows")

    rows: list[dict] = []
    for k in range(1, profile.num_exits + 1):
        rows.append({"mode": f"static exit {k}", "budget_fraction": None, "method": None, "criterion": None,
                     **score(np.full(held.shape[0], k), costs, costs, errors, held, expert)})
    for crit_name in criteria:
        learned = crit_name == "learned"
        criterion = learned_criterion(runner) if learned else Criterion(distance=args.distance, smooth=args.smooth)
        first = criterion.first_exit
        prof = runner.cost_profile_for("learned") if learned else profile
        charged = np.asarray(prof.costs("llm_gflops"))
        cs, hs = (calib_scores, held_scores) if learned else (None, None)
        suffix = ", learned" if learned else ""
        base = None
        if args.scaled_from > 0:
            base = solve_thresholds_quantile(calib, prof, BudgetSpec(average_gflops=args.scaled_from * costs[-1]),
                                             criterion=criterion, scores=cs)
        for frac in fractions:
            budget = BudgetSpec(average_gflops=frac * costs[-1])
            cap = budget_report(prof, budget, first_exit=first).cap
            quantile = solve_thresholds_quantile(calib, prof, budget, criterion=criterion, scores=cs)
            solved = [("quantile", quantile)]
            if cap > first:
                solved.append(("descent", solve_thresholds_descent(calib, prof, budget, criterion=criterion,
                                                                   scores=cs)))
            if trials > 0 and cap > first:
                solved.append(("bayes", bayes_tuned(calib, prof, budget, quantile, trials, cs)))
            for method, th in solved:
                exits = simulate_exits(held, th, cap=cap, scores=hs)
                rows.append({"mode": f"dynamic {frac:g}x ({method}{suffix})", "budget_fraction": frac,
                             "method": method, "criterion": crit_name,
                             **score(exits, charged, costs, errors, held, expert)})
            if base is not None and cap > first and frac != args.scaled_from:
                exits = tracker_steady_state(held, base, charged, cap, budget.average_gflops, hs)
                rows.append({"mode": f"dynamic {frac:g}x (scaled{suffix})", "budget_fraction": frac,
                             "method": "scaled", "criterion": crit_name,
                             **score(exits, charged, costs, errors, held, expert)})

    if want_learned:
        # The ceiling of any gate under this rule (the first exit, from the learned criterion's first one on,
        # whose score is under its threshold): scores equal to the true distances from the full model,
        # thresholds by descent, gates charged.
        prof = runner.cost_profile_for("learned")
        charged = np.asarray(prof.costs("llm_gflops"))
        perfect = learned_criterion(runner)
        first = perfect.first_exit
        perfect_calib, perfect_held = exit_errors(calib)[:, first - 1:], errors[:, first - 1:]
        for frac in fractions:
            budget = BudgetSpec(average_gflops=frac * costs[-1])
            cap = budget_report(prof, budget, first_exit=first).cap
            if cap <= first:
                continue
            th = solve_thresholds_descent(calib, prof, budget, criterion=perfect, scores=perfect_calib)
            exits = simulate_exits(held, th, cap=cap, scores=perfect_held)
            rows.append({"mode": f"dynamic {frac:g}x (descent, perfect gate)", "budget_fraction": frac,
                         "method": "descent", "criterion": "perfect gate",
                         **score(exits, charged, costs, errors, held, expert)})
        criteria = [*criteria, "perfect gate"]
        if first == 1:
            # The same gates with the exit-1 gate unused (from exit 2 on, as DeeR's rule): what stopping at
            # exit 1 adds, apart from the gates themselves.
            from_two = Criterion(kind="learned", first_exit=2)
            prof = runner.cost_profile_for("learned", first_exit=2)
            charged = np.asarray(prof.costs("llm_gflops"))
            for frac in fractions:
                budget = BudgetSpec(average_gflops=frac * costs[-1])
                cap = budget_report(prof, budget).cap
                if cap <= 2:
                    continue
                th = solve_thresholds_descent(calib, prof, budget, criterion=from_two, scores=calib_scores[:, 1:])
                exits = simulate_exits(held, th, cap=cap, scores=held_scores[:, 1:])
                rows.append({"mode": f"dynamic {frac:g}x (descent, learned from 2)", "budget_fraction": frac,
                             "method": "descent", "criterion": "learned from 2",
                             **score(exits, charged, costs, errors, held, expert)})
            criteria = [*criteria, "learned from 2"]

    print(f"{'mode':<40} {'cost/full':>9} {'mean exit':>9} {'mean error':>10} {'oracle/full':>11} "
          f"{'controller/oracle':>17} {'vs expert':>9}")
    for r in rows:
        print(f"{r['mode']:<40} {r['mean_cost'] / costs[-1]:>9.3f} {r['mean_exit']:>9.2f} {r['mean_error']:>10.4f} "
              f"{r['oracle_cost'] / costs[-1]:>11.3f} {r['controller_over_oracle']:>17.2f} {r['expert_rms']:>9.4f}")
    print("(mean error: distance of the action taken from the full model's, RMS over the motion axes; "
          "vs expert: RMS distance of its motion from the demonstration's action)")
    static = [r["controller_over_oracle"] for r in rows if r["budget_fraction"] is None and r["mean_error"] > 0]
    if static:
        print(f"static exits / oracle at the same mean error: {min(static):.2f}-{max(static):.2f}x")
    for crit_name in criteria:
        for method in dict.fromkeys(r["method"] for r in rows if r["criterion"] == crit_name):
            mine = [r for r in rows if r["method"] == method and r["criterion"] == crit_name]
            gaps = [r["controller_over_oracle"] for r in mine]
            band = [r["controller_over_oracle"] for r in mine if 0.2 <= r["budget_fraction"] <= 0.7]
            worst = f"; worst over budgets 0.2-0.7: {max(band):.2f}x" if band else ""
            print(f"dynamic controller ({method}, {crit_name}) / oracle at the same mean error: "
                  f"{min(gaps):.2f}-{max(gaps):.2f}x over budgets {[r['budget_fraction'] for r in mine]}{worst}")
    gate_summary = ExitGates.training_summary(gates_file) if want_learned and gates_file.is_file() else None
    out.write_text(json.dumps({"checkpoint": args.checkpoint, "tasks": tasks, "criterion_distance": args.distance,
                               "criterion_smooth": args.smooth, "criteria": criteria,
                               "gates": str(gates_file) if want_learned else None, "gate_training": gate_summary,
                               "held_dataset": str(held_dataset) if held_dataset else None,
                               "calibration_steps": int(calib.shape[0]),
                               "held_out_steps": int(held.shape[0]), "full_llm_gflops": float(costs[-1]),
                               "machine": machine_description("cpu"), "rows": rows}, indent=2))
    print(f"wall time {time.perf_counter() - t0:.0f} s; results {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_bench(main))
