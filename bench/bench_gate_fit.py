"""Exit gates against the data they are trained on: held-out fit and controller/oracle compute per setting.

The learned exit criterion is only as good as its gates: with scores equal
to the true distances, the same stopping rule comes within 1.03-1.15x of the
oracle's compute (bench_oracle_gap, "perfect gate"). This bench records a
checkpoint's per-exit features and actions once, over training
demonstrations (--train, one or more directories, each task's episodes in
the order the directories are given) and over held-out ones (--held: per
task, the first --calib-episodes solve the thresholds, the next
--held-episodes score them). Then, for every setting of (training episodes
per task, hidden units, weight decay), it trains gates as
`deer-vla train-gate` does (``train.gate.train_gates``) and reports:

- fit: MSE of the predicted log(distance + floor) on the held-out steps,
  beside the MSE of a per-exit constant (the training mean);
- controller / oracle: thresholds solved by descent on the calibration
  steps for each average budget, scored on the held-out steps by their
  cost over the oracle's at the same mean error (as bench_oracle_gap).

    python bench/bench_gate_fit.py --quick          # < 1 min on 2 CPU cores
    python bench/bench_gate_fit.py --checkpoint mt50 --train data/mt50_gate data/mt50_train3 \
        --held data/mt50_val --per-task 3,6,9 --hidden 16,64 --weight-decay 0.01,0.1 \
        --cache bench_results/gate_fit_mt50
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
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
    task_episodes,
)

from deer_vla.control import (
    BudgetSpec,
    exit_errors,
    learned_criterion,
    oracle_cost_at_error,
    solve_thresholds_descent,
)
from deer_vla.control.budgets import budget_report
from deer_vla.control.thresholds import simulate_exits
from deer_vla.core.config_io import positive_int, thread_count
from deer_vla.model.shipped import checkpoint_help


def record(runner, dataset: Path, digest: str, cache: Path | None, tasks: list[str] | None = None,
           per_task: int | None = None, max_steps: int | None = None) -> dict[str, np.ndarray]:
    """Per step of the episodes of ``dataset`` (``tasks``' first ``per_task`` each, None: all): each exit's
    feature and action, the episode and its task (``train.gate.collect_gate_data``); read from
    ``cache``/<name>.npz when recorded there for the same weights, dataset and selection."""
    import torch

    from deer_vla.data.episodes import EpisodeDataset
    from deer_vla.data.observations import episode_observations
    from deer_vla.train.gate import collect_gate_data

    ds = EpisodeDataset(dataset)
    wanted = ds.tasks if tasks is None else tasks
    indices = sorted(i for t in wanted for i in task_episodes(ds, t)[:per_task])
    key = np.array([digest, str(dataset.resolve()), str(indices), str(max_steps)])
    path = cache / f"{dataset.name}.npz" if cache is not None else None
    cached = load_cache(path, key)
    if cached is not None:
        return {k: cached[k] for k in ("features", "actions", "episode", "ep_task")}
    episodes, names = [], []
    for i in indices:
        ep = ds.load(i)
        episodes.append(episode_observations(ep, tuple(runner.cameras))[:max_steps])
        names.append(ep.task)
    with torch.inference_mode():
        data = collect_gate_data(runner, episodes)
    out = {"features": data.features, "actions": data.actions, "episode": data.episode, "ep_task": np.array(names)}
    save_cache(path, key=key, **out)
    return out


def rank_in_task(rec: dict[str, np.ndarray]) -> np.ndarray:
    """Per step: the rank of its episode among its task's episodes (0 = the task's first)."""
    seen: dict[str, int] = {}
    ranks = []
    for task in rec["ep_task"]:
        ranks.append(seen.get(task, 0))
        seen[task] = ranks[-1] + 1
    return np.asarray(ranks)[rec["episode"]]


def training_set(recs: list[dict[str, np.ndarray]], per_task: int):
    """The first ``per_task`` episodes of every task, over the directories in order, as GateData."""
    from deer_vla.train.gate import GateData

    taken: dict[str, int] = {}
    feats, acts, owner, offset = [], [], [], 0
    for rec in recs:
        ranks = rank_in_task(rec)
        ep_rank = np.array([taken.get(t, 0) for t in rec["ep_task"]])  # episodes of the task already taken
        keep = ranks + ep_rank[rec["episode"]] < per_task
        feats.append(rec["features"][keep])
        acts.append(rec["actions"][keep])
        owner.append(rec["episode"][keep] + offset)
        offset += len(rec["ep_task"])
        for t in rec["ep_task"]:
            taken[t] = taken.get(t, 0) + 1
    return GateData(np.concatenate(feats), np.concatenate(acts), np.concatenate(owner))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=checkpoint_option, default="", help=checkpoint_help())
    p.add_argument("--train", nargs="+", default=None, metavar="DIR", help="training demonstrations (directories, "
                   "taken in this order; default data/demos)")
    p.add_argument("--held", default=None, metavar="DIR", help="held-out demonstrations (default data/val)")
    p.add_argument("--calib-episodes", type=positive_int, default=1,
                   help="per task, from --held, to solve thresholds on")
    p.add_argument("--held-episodes", type=positive_int, default=1, help="per task, from --held, after those: scored")
    p.add_argument("--per-task", default="3,6", help="training episodes per task (comma list)")
    p.add_argument("--hidden", default="16,64", help="hidden units per gate (comma list)")
    p.add_argument("--weight-decay", default="0.01,0.1", help="AdamW weight decay (comma list)")
    p.add_argument("--epochs", type=positive_int, default=None, help="gate training epochs (default train-gate's)")
    p.add_argument("--gates", nargs="*", default=[], metavar="FILE", help="gates files to score beside the trained "
                   "settings, e.g. a checkpoint's gates.safetensors")
    p.add_argument("--budgets", default="0.2,0.3,0.5,0.7", help="average budgets, fractions of full LLM GFLOPs")
    p.add_argument("--threads", type=thread_count, default=1, help="torch threads")
    p.add_argument("--cache", default=None, metavar="DIR", help="keep the recorded features here, one npz per "
                   "dataset (reused for the same weights and dataset)")
    p.add_argument("--quick", action="store_true", help="the shipped checkpoint, 2 tasks of data/demos + data/val")
    p.add_argument("--out", default="bench_results/gate_fit.json")
    args = p.parse_args(argv)

    import torch

    from deer_vla.model.checkpoint_dir import CheckpointDir
    from deer_vla.model.runner import PolicyRunner
    from deer_vla.train.gate import GateData, GateTrainConfig, gate_tensors, train_gates

    torch.set_num_threads(args.threads)
    train_dirs = [Path(d) for d in (args.train or [REPO / "data" / "demos"])]
    held_dir = Path(args.held or REPO / "data" / "val")
    per_task = [int(x) for x in args.per_task.split(",") if x.strip()]
    hiddens = [int(x) for x in args.hidden.split(",") if x.strip()]
    decays = [float(x) for x in args.weight_decay.split(",") if x.strip()]
    fractions = [float(b) for b in args.budgets.split(",") if b.strip()]
    if args.quick:
        per_task, hiddens, decays, fractions = [1, 2], [16], [0.1], [0.3, 0.5]
    if not (per_task and hiddens and decays and fractions) or min(per_task) < 1 or min(hiddens) < 1:
        raise ValueError("--per-task, --hidden, --weight-decay and --budgets each need at least one value "
                         "(episodes per task and hidden units >= 1)")
    out = check_output("--out", Path(args.out))
    for d in [*train_dirs, held_dir]:
        if not d.is_dir():
            raise ValueError(f"dataset directory not found: {d} (deer-vla collect writes one)")
    tasks, limit, max_steps = None, None, None
    if args.quick:  # two tasks, two episodes each, 40 steps: the whole path in seconds
        from deer_vla.data.episodes import EpisodeDataset

        tasks, limit, max_steps = EpisodeDataset(held_dir).tasks[:2], 2, 40
        for d in train_dirs:  # before the model: a task missing from the data is bad input
            ds = EpisodeDataset(d)
            for t in tasks:
                task_episodes(ds, t)
    t0 = time.perf_counter()
    runner = PolicyRunner.from_checkpoint(Path(args.checkpoint), device="cpu")
    digest = CheckpointDir(args.checkpoint).weights_digest()
    cache = Path(args.cache) if args.cache else None
    recs = [record(runner, d, digest, cache, tasks, limit, max_steps) for d in train_dirs]
    held = record(runner, held_dir, digest, cache, tasks, args.calib_episodes + args.held_episodes, max_steps)
    recorded = time.perf_counter() - t0
    ranks = rank_in_task(held)
    calib = ranks < args.calib_episodes
    scored = (ranks >= args.calib_episodes) & (ranks < args.calib_episodes + args.held_episodes)
    if not calib.any() or not scored.any():
        raise ValueError(f"{held_dir}: needs {args.calib_episodes + args.held_episodes} episodes per task")
    held_data = GateData(held["features"], held["actions"], held["episode"])
    costs = np.asarray(runner.cost_profile.costs("llm_gflops"))
    errors = exit_errors(held["actions"][scored])
    print(f"{machine_description('cpu')}; {args.checkpoint}: {costs.size} exits, full model {costs[-1]:.4f} LLM "
          f"GFLOPs/step; held-out {held_dir}: {int(calib.sum())} calibration / {int(scored.sum())} scored steps; "
          f"features recorded or loaded in {recorded:.0f} s")
    def judge(gates, data) -> dict:
        """Held-out fit (beside a constant: the mean of ``data``'s targets) and controller/oracle per budget."""
        x, y = gate_tensors(held_data, gates.config.floor, gates.config.first_exit)
        with torch.no_grad():
            pred = gates.forward_all(x)
        _, ytrain = gate_tensors(data, gates.config.floor, gates.config.first_exit)
        scores = np.concatenate([torch.exp(pred).numpy(), np.zeros((len(pred), 1))], axis=1)
        gated = PolicyRunner(runner.model, runner.tokenizer, profile=runner.cost_profile, gates=gates)
        prof = gated.cost_profile_for("learned")
        charged = np.asarray(prof.costs("llm_gflops"))
        criterion = learned_criterion(gated)
        out = {"fit_mse": float(((pred - y) ** 2).mean()), "constant_mse": float(((y - ytrain.mean(0)) ** 2).mean()),
               "budgets": {}}
        for frac in fractions:
            budget = BudgetSpec(average_gflops=frac * costs[-1])
            cap = budget_report(prof, budget, first_exit=criterion.first_exit).cap
            th = solve_thresholds_descent(held["actions"][calib], prof, budget, criterion=criterion,
                                          scores=scores[calib])
            exits = simulate_exits(held["actions"][scored], th, cap=cap, scores=scores[scored])
            cost = float(charged[exits - 1].mean())
            err = float(errors[np.arange(len(exits)), exits - 1].mean())
            oracle = oracle_cost_at_error(held["actions"][scored], costs, err)
            out["budgets"][f"{frac:g}"] = {"cost_fraction": cost / costs[-1], "mean_error": err,
                                           "controller_over_oracle": ratio(cost, oracle)}
        return out

    def show(label: str, row: dict) -> None:
        print(f"{label} {row['fit_mse']:>8.4f} {row['constant_mse']:>8.4f}  " + "  ".join(
            f"{b['controller_over_oracle']:>10.2f}" for b in row["budgets"].values()), flush=True)

    base_cfg = GateTrainConfig() if args.epochs is None else GateTrainConfig(epochs=args.epochs)
    rows = []
    print(f"{'per task':>8} {'steps':>7} {'hidden':>6} {'decay':>6} {'fit MSE':>8} {'constant':>8}  "
          + "  ".join(f"{f:g}x: ratio" for f in fractions))
    for n in per_task:
        data = training_set(recs, n)
        for hidden in hiddens:
            for decay in decays:
                cfg = GateTrainConfig(**{**asdict(base_cfg), "hidden": hidden, "weight_decay": decay})
                gates, report = train_gates(data, cfg)
                row = {"per_task": n, "steps": int(len(data.episode)), "hidden": hidden, "weight_decay": decay,
                       "best_epoch": report.best_epoch, **judge(gates, data)}
                rows.append(row)
                show(f"{n:>8} {row['steps']:>7} {hidden:>6} {decay:>6g}", row)
    from deer_vla.model.gate import ExitGates

    reference = training_set(recs, max(per_task))  # the constant of a given file: the largest training set's mean
    for path in args.gates:
        row = {"gates": str(path), **judge(ExitGates.load(path), reference)}
        rows.append(row)
        show(f"{'file':>8} {Path(path).parent.name[:22]:>22}", row)
    best = min((r for r in rows if "gates" not in r), key=lambda r: r["fit_mse"])
    print(f"best held-out fit: {best['per_task']} episodes per task, {best['hidden']} hidden, decay "
          f"{best['weight_decay']:g}: MSE {best['fit_mse']:.4f} (constant {best['constant_mse']:.4f})")
    out.write_text(json.dumps({"checkpoint": str(args.checkpoint), "train": [str(d) for d in train_dirs],
                               "held": str(held_dir), "rows": rows}, indent=2))
    print(f"wall time {time.perf_counter() - t0:.0f} s; results {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_bench(main))
