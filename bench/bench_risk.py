"""Risk-controlled thresholds on held-out steps: does the guarantee hold, and what does it cost?

Records every exit's action at every step of held-out episodes (data/val by
default) with the checkpoint, once. Then, over many random splits of those
steps into a calibration half and a test half, it certifies thresholds on the
calibration half with Learn-then-Test (deer_vla.control.risk: the base
thresholds scaled along a fixed grid, fixed-sequence testing at level delta)
and measures the test half's risk. The fraction of splits whose test risk
exceeds eps must be <= delta. Beside it: a plain empirical choice (the
cheapest scale whose calibration risk is <= eps, no test), and the compute
each split spent (mean cost of the test half / the full model's cost).

The base thresholds (default: the checkpoint's thresholds.json) are not
fitted on these held-out steps, as LTT requires. Base thresholds of the
learned criterion are scaled the same way; their exit gates' scores are
recorded with the actions and the gates' compute is charged to each step.
--unit episode splits whole episodes instead of steps (steps of an episode
are correlated).

    python bench/bench_risk.py --quick                # 8 episodes x 40 steps, 200 splits
    python bench/bench_risk.py                        # data/val, 500 splits
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from common import REPO, check_output, checkpoint_option, load_cache, machine_description, run_bench, save_cache

from deer_vla.commands.calibrate import calibration_steps
from deer_vla.control.risk import DEFAULT_BOUND, RiskSpec, certified_count, episode_means, family_matrices
from deer_vla.control.thresholds import Thresholds
from deer_vla.core.config_io import positive_int, thread_count
from deer_vla.evaluation.stats import wilson_interval
from deer_vla.model.checkpoint_dir import CheckpointDir, CheckpointError
from deer_vla.model.shipped import checkpoint_help

DEFAULT_PAIRS = ("mean,0.01,0.1", "mean,0.015,0.05", "exceed:0.05,0.1,0.1", "exceed:0.02,0.2,0.05")


def parse_pair(text: str, bound: float, test: str) -> tuple[RiskSpec, float, float]:
    """"METRIC,EPS,DELTA" with METRIC "mean" or "exceed:TAU", a finite EPS > 0 and 0 < DELTA < 1."""
    try:
        metric, eps_text, delta_text = text.split(",")
        spec, eps, delta = RiskSpec.parse(metric, bound, test), float(eps_text), float(delta_text)
    except ValueError as exc:
        raise ValueError(f"--pair {text!r}: expected METRIC,EPS,DELTA (METRIC mean or exceed:TAU): {exc}") from None
    if not (0 < eps < np.inf and 0 < delta < 1):  # NaN fails both: it was tested as a limit before
        raise ValueError(f"--pair {text!r}: EPS must be a finite number > 0 and DELTA in (0, 1)")
    return spec, eps, delta


def episode_picks(total: int, episodes: int | None) -> np.ndarray:
    """Indices of the episodes used: ``episodes`` of the ``total`` spread evenly (None: all)."""
    n = total if episodes is None else min(episodes, total)
    return np.unique(np.linspace(0, total - 1, n).round().astype(int))


def calib_units(n_units: int, fraction: float, unit: str) -> int:
    """Units on the calibration side; ValueError unless both sides get at least one (an empty test side
    has no risk to measure: NaN, which no comparison with eps counts as a violation)."""
    n_cal = max(1, int(round(fraction * n_units)))
    if n_cal >= n_units:
        raise ValueError(f"--calib-fraction {fraction:g} of {n_units} {unit}(s) leaves none for the test side; "
                         f"each side needs at least one {unit}")
    return n_cal


def record_actions(checkpoint: Path, dataset: Path, episodes: int | None, max_steps: int | None,
                   threads: int, base: Thresholds) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, object]:
    """-> (S, N, A) per-exit actions, (S,) episode of each step, the steps' exit-gate scores (base thresholds of
    the learned criterion; else None) and the cost profile a step is charged by (exit gates included then)."""
    import torch

    from deer_vla.data.episodes import EpisodeDataset
    from deer_vla.data.observations import episode_observations
    from deer_vla.model.runner import PolicyRunner

    torch.set_num_threads(threads)
    runner = PolicyRunner.from_checkpoint(checkpoint, device="cpu")
    learned = base.criterion.learned
    if learned and not runner.has_exit_gates:
        raise ValueError(f"the base thresholds are the learned criterion's and {checkpoint} has no exit gates: "
                         "train them with `deer-vla train-gate`")
    ds = EpisodeDataset(dataset)
    picks = episode_picks(len(ds), episodes)
    parts, scores, owner = [], [], []
    with torch.inference_mode():
        for j, i in enumerate(picks):
            obs = episode_observations(ds.load(int(i)), tuple(runner.cameras))[:max_steps]
            acts, sc = calibration_steps(runner, [obs], None, learned)
            parts.append(acts)
            scores.append(sc)
            owner.append(np.full(len(parts[-1]), j))
    # what the controller charges a step with these thresholds (its exit gates too, with the learned criterion)
    profile = runner.cost_profile_for("learned" if learned else "consecutive", first_exit=base.first_exit)
    return np.concatenate(parts), np.concatenate(owner), np.concatenate(scores) if learned else None, profile


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=checkpoint_option, default="", help=checkpoint_help())
    p.add_argument("--dataset", default=str(REPO / "data" / "val"), help="held-out episodes")
    p.add_argument("--episodes", type=positive_int, default=None,
                   help="held-out episodes to use (default all; --quick 8)")
    p.add_argument("--max-steps", type=positive_int, default=None, help="steps per episode (default all; --quick 40)")
    p.add_argument("--base-thresholds", default=None,
                   help="thresholds scaled by the family (default <checkpoint>/thresholds.json); must not be "
                        "fitted on these held-out episodes")
    p.add_argument("--pair", action="append", default=None, metavar="METRIC,EPS,DELTA",
                   help=f"risk limit to test, repeatable (default {' '.join(DEFAULT_PAIRS)})")
    p.add_argument("--bound", type=float, default=DEFAULT_BOUND,
                   help="metric mean: per-step distance clip B (2 clips nothing for actions in [-1, 1])")
    p.add_argument("--test", choices=("wsr", "hb"), default="wsr", help="metric mean: p-value")
    p.add_argument("--splits", type=positive_int, default=None,
                   help="random calibration/test splits (default 500; quick 200)")
    p.add_argument("--calib-fraction", type=float, default=0.5)
    p.add_argument("--unit", choices=("step", "episode"), default="step", help="what a split draws")
    p.add_argument("--risk-unit", choices=("step", "episode"), default=None,
                   help="what the test treats as i.i.d. (default: the split unit); episode: per-episode mean losses")
    p.add_argument("--threads", type=thread_count, default=1)
    p.add_argument("--actions-cache", default=None, metavar="NPZ",
                   help="reuse the recorded per-exit actions from this file (written on first use)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench_results/risk.json")
    args = p.parse_args(argv)

    # None is the default; an explicit count was checked by its type (>= 1)
    episodes = (8 if args.quick else None) if args.episodes is None else args.episodes
    max_steps = (40 if args.quick else None) if args.max_steps is None else args.max_steps
    n_splits = (200 if args.quick else 500) if args.splits is None else args.splits
    if not 0 < args.calib_fraction < 1:
        raise ValueError(f"--calib-fraction must be in (0, 1), got {args.calib_fraction}")
    risk_unit = args.risk_unit or args.unit
    if risk_unit == "episode" and args.unit == "step":
        raise ValueError("--risk-unit episode needs --unit episode (whole episodes on each side)")
    pairs = [parse_pair(t, args.bound, args.test) for t in (args.pair or DEFAULT_PAIRS)]
    out = check_output("--out", Path(args.out))
    ckpt, dataset = CheckpointDir(args.checkpoint), Path(args.dataset)
    try:
        ckpt.check()
    except CheckpointError as exc:
        raise ValueError(str(exc)) from None
    if not dataset.is_dir():
        raise ValueError(f"no held-out episodes at {dataset}: make them with `deer-vla collect` (README)")
    if args.unit == "episode":  # known before recording; steps are counted after
        from deer_vla.data.episodes import EpisodeDataset

        calib_units(len(episode_picks(len(EpisodeDataset(dataset)), episodes)), args.calib_fraction, "episode")
    base_path = Path(args.base_thresholds) if args.base_thresholds else ckpt.thresholds_path
    base = Thresholds.load(base_path)

    t0 = time.perf_counter()
    weights = ckpt.weights_path
    key = np.array([str(ckpt.root.resolve()), str(weights.stat().st_size), str(weights.stat().st_mtime_ns),
                    str(dataset.resolve()), str(episodes), str(max_steps), str(base.criterion.learned),
                    str(base.first_exit)])
    cache = Path(args.actions_cache) if args.actions_cache else None
    cached = load_cache(cache, key)  # recorded for this very checkpoint, data and criterion
    if cached is None:
        actions, owner, scores, profile = record_actions(ckpt.root, dataset, episodes, max_steps, args.threads, base)
        costs = np.asarray(profile.costs(base.metric))  # type: ignore[attr-defined]
        extra = {} if scores is None else {"scores": scores}
        save_cache(cache, key=key, actions=actions, owner=owner, costs=costs, **extra)
        source = f"recorded in {time.perf_counter() - t0:.0f} s"
    else:
        actions, owner, costs, scores = cached["actions"], cached["owner"], cached["costs"], cached.get("scores")
        source = f"loaded from {cache}"
    s, n_exits, _ = actions.shape
    full = float(costs[-1])
    print(f"{machine_description('cpu')}; checkpoint {ckpt.root}; {s} held-out steps of {len(np.unique(owner))} "
          f"episodes ({source}), {n_exits} exits, full model {full:.4g} {base.metric}/step; base thresholds "
          f"{base_path} ({base.method}, {base.criterion.kind} criterion); {n_splits} splits by {args.unit}, "
          f"{args.calib_fraction:g} calibration")

    rng = np.random.default_rng(args.seed)
    units = np.unique(owner) if args.unit == "episode" else np.arange(s)
    n_cal_units = calib_units(len(units), args.calib_fraction, args.unit)
    splits = []
    for _ in range(n_splits):
        perm = rng.permutation(len(units))
        cal_u, test_u = units[perm[:n_cal_units]], units[perm[n_cal_units:]]
        if args.unit == "episode":
            splits.append((np.flatnonzero(np.isin(owner, cal_u)), np.flatnonzero(np.isin(owner, test_u))))
        else:
            splits.append((cal_u, test_u))

    results = []
    header = (f"{'metric':<12} {'eps':>6} {'delta':>6} | {'LTT viol.':>9} {'refused':>7} {'test risk':>9} "
              f"{'cost/full mean [p5, p95]':>25} | {'plain viol.':>11} {'plain cost/full':>15}")
    print(f"p-value for metric mean: {args.test}, distances clipped at {args.bound:g}; test unit: {risk_unit}")
    print(header)
    for spec, eps, delta in pairs:
        losses, step_costs = family_matrices(actions, base, costs, n_exits, spec, scores=scores)
        viol = plain_viol = refused = 0
        test_risks, test_costs, plain_costs, per_split = [], [], [], []
        for cal, test in splits:
            risks, mean_costs = losses[cal].mean(axis=0), step_costs[cal].mean(axis=0)
            units_loss = episode_means(losses[cal], owner[cal]) if risk_unit == "episode" else losses[cal]
            certified = certified_count(units_loss, eps, delta, spec)
            if certified:
                j = int(np.argmin(mean_costs[:certified]))  # the cheapest certified member
            else:
                j = 0  # refused: the strictest member (the full model under no cap) is what a user falls back to
                refused += 1
            t_risk, t_cost = float(losses[test, j].mean()), float(step_costs[test, j].mean())
            viol += t_risk > eps
            test_risks.append(t_risk)
            test_costs.append(t_cost / full)
            ok = np.flatnonzero(risks <= eps)  # plain: cheapest member whose calibration risk is within eps
            jp = int(ok[np.argmin(mean_costs[ok])]) if ok.size else 0
            plain_viol += float(losses[test, jp].mean()) > eps
            plain_costs.append(float(step_costs[test, jp].mean()) / full)
            per_split.append({"scale_index": j, "test_risk": t_risk, "test_cost_over_full": t_cost / full})
        tc = np.asarray(test_costs)
        row = {"metric": spec.metric, "tau": spec.tau, "bound": spec.bound, "eps": eps, "delta": delta,
               "ltt_violation_rate": viol / n_splits, "refused": refused,
               "mean_test_risk": float(np.mean(test_risks)),
               "cost_over_full_mean": float(tc.mean()), "cost_over_full_p5": float(np.percentile(tc, 5)),
               "cost_over_full_p95": float(np.percentile(tc, 95)),
               "plain_violation_rate": plain_viol / n_splits, "plain_cost_over_full_mean": float(np.mean(plain_costs)),
               "splits": per_split}
        results.append(row)
        name = "mean" if spec.metric == "mean" else f"exceed:{spec.tau:g}"
        lo, hi = wilson_interval(viol, n_splits)
        row["ltt_violation_ci95"] = [lo, hi]
        verdict = ("ok" if row["ltt_violation_rate"] <= delta
                   else f"OVER delta (95% interval [{lo:.3f}, {hi:.3f}])")
        print(f"{name:<12} {eps:>6g} {delta:>6g} | {row['ltt_violation_rate']:>9.3f} {refused:>7d} "
              f"{row['mean_test_risk']:>9.4f} {tc.mean():>9.3f} [{row['cost_over_full_p5']:.3f}, "
              f"{row['cost_over_full_p95']:.3f}] | {row['plain_violation_rate']:>11.3f} "
              f"{row['plain_cost_over_full_mean']:>15.3f}  {verdict}")
    print("(LTT viol.: fraction of splits whose test risk exceeds eps, must be <= delta (the test half's own sampling "
          "noise counts against it too); refused: splits where "
          "nothing was certified, counted at the strictest member; cost/full: mean cost of the test half under "
          "the certified thresholds over the full model's; plain: cheapest scale with calibration risk <= eps)")
    out.write_text(json.dumps({"checkpoint": str(ckpt.root), "dataset": str(dataset), "steps": int(s),
                               "base_thresholds": str(base_path), "unit": args.unit, "risk_unit": risk_unit,
                               "splits": n_splits,
                               "calib_fraction": args.calib_fraction, "full_cost": full,
                               "machine": machine_description("cpu"), "pairs": results}, indent=1))
    print(f"wall time {time.perf_counter() - t0:.0f} s; results {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_bench(main))
