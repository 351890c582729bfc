"""Average-budget adherence under a task shift, closed loop in the simulator, with the trained checkpoint.

Thresholds are solved (quantile method) on the demonstrations of one task
subset, then the controller runs on the *other* subset in Meta-World, on
held-out seeds, with and without the online budget tracker. The same-subset
runs (calibrate and run on the same tasks, different seeds) are the
no-shift reference. Prints target vs measured mean LLM GFLOPs per action and
their ratio for every budget, success alongside (counts and 95% Wilson interval), and the worst error
with and without tracking; writes shift.json. bench_budgets.py covers the
same question on synthetic or replayed per-exit streams.

    .venv/bin/python bench/bench_budget_shift.py --quick    # < 3 min on 2 CPU cores
    .venv/bin/python bench/bench_budget_shift.py
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import check_output, checkpoint_option, run_bench  # noqa: E402

from deer_vla.core.config_io import positive_int  # noqa: E402
from deer_vla.evaluation.evaluator import EvalConfig, evaluate, resolve_tasks  # noqa: E402
from deer_vla.evaluation.stats import wilson_interval  # noqa: E402
from deer_vla.model.shipped import checkpoint_help  # noqa: E402

# Pressing/pushing tasks vs. pulling/turning ones: different motions, step counts and exit needs.
SUBSET_A = "button-press-topdown,button-press,coffee-button,handle-press,drawer-close"
SUBSET_B = "drawer-open,window-open,window-close,faucet-open,faucet-close"


def success_fields(prefix: str, overall: dict) -> dict:
    """Success as a rate, its counts and 95% Wilson interval: a few episodes per task give wide intervals."""
    k, n = int(overall["successes"]), int(overall["episodes"])
    return {f"{prefix}_success": overall["success_rate"], f"{prefix}_successes": k, f"{prefix}_episodes": n,
            f"{prefix}_success_ci95": list(wilson_interval(k, n))}


def adherence_rows(payload: dict, calib: str, run: str) -> list[dict]:
    """One row per budget: target, static and tracked measured cost (LLM GFLOPs per action), success (counts
    and Wilson interval)."""
    summary, modes = payload["summary"], payload["modes"]
    rows = []
    for name, spec in modes.items():
        if spec["kind"] != "dynamic" or spec.get("track_budget"):
            continue
        tracked = f"{name}+track"
        if tracked not in summary:
            continue
        target = float(spec["budget_gflops"])
        s, t = summary[name]["overall"], summary[tracked]["overall"]
        rows.append({
            "calibrated_on": calib, "run_on": run, "budget_fraction": spec["budget_fraction"],
            "target_gflops": target,
            "static_gflops": s["mean_llm_gflops"], "tracked_gflops": t["mean_llm_gflops"],
            "static_ratio": s["mean_llm_gflops"] / target, "tracked_ratio": t["mean_llm_gflops"] / target,
            **success_fields("static", s), **success_fields("tracked", t),
            "steps": s["steps"], "tracked_steps": t["steps"],
        })
    return rows


def success_text(r: dict, prefix: str) -> str:
    """"62.5% 5/8 [30.6, 86.3]": rate, counts and Wilson interval in points, as bench_tradeoff prints them."""
    lo, hi = r[f"{prefix}_success_ci95"]
    return (f"{100 * r[f'{prefix}_success']:5.1f}% {r[f'{prefix}_successes']}/{r[f'{prefix}_episodes']} "
            f"[{100 * lo:.1f}, {100 * hi:.1f}]")


def print_rows(rows: list[dict]) -> None:
    print(f"{'calibrated on':>13} {'run on':>6} {'budget':>6} {'target':>7} | {'static':>7} {'/target':>7} "
          f"{'success (95% interval)':>24} | {'tracked':>7} {'/target':>7} {'success (95% interval)':>24}")
    for r in rows:
        print(f"{r['calibrated_on']:>13} {r['run_on']:>6} {r['budget_fraction']:6.2f} {r['target_gflops']:7.4f} | "
              f"{r['static_gflops']:7.4f} {r['static_ratio']:7.3f} {success_text(r, 'static'):>24} | "
              f"{r['tracked_gflops']:7.4f} {r['tracked_ratio']:7.3f} {success_text(r, 'tracked'):>24}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=checkpoint_option, default="", help=checkpoint_help())
    p.add_argument("--dataset", default=str(REPO / "data" / "demos"), help="demonstrations (`deer-vla collect`)")
    p.add_argument("--subset-a", default=SUBSET_A, help="comma list of tasks")
    p.add_argument("--subset-b", default=SUBSET_B, help="comma list of tasks")
    # above exit 2's cost (0.17x for the shipped 12-exit checkpoint): below it only exit 1 is possible, and
    # spending less than the budget is not an adherence error
    p.add_argument("--budgets", default="0.2,0.3,0.5,0.7", help="fractions of the full model's LLM GFLOPs")
    p.add_argument("--episodes-per-task", type=positive_int, default=None)
    p.add_argument("--calibration-episodes", type=positive_int, default=None)
    p.add_argument("--max-steps", type=positive_int, default=None)
    p.add_argument("--no-reference", action="store_true", help="skip the same-subset (no shift) runs")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--quick", action="store_true",
                   help="one task per subset, 2 episodes of <= 60 steps, 2 budgets, shift runs only")
    p.add_argument("--out", default="bench_results/budget_shift")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    if not Path(args.dataset).is_dir():
        print(f"no demonstrations at {args.dataset}: this benchmark calibrates on them "
              "(make them with `deer-vla collect`, see the README)", file=sys.stderr)
        return 2
    try:
        if args.quick:
            # the two shortest expert tasks (35 / 32 steps) keep --quick under 3 minutes on 2 cores
            subsets = {"A": resolve_tasks("coffee-button"), "B": resolve_tasks("handle-press")}
        else:
            subsets = {"A": resolve_tasks(args.subset_a), "B": resolve_tasks(args.subset_b)}
    except (KeyError, ValueError) as exc:  # an unknown task: its message lists the known ones
        raise ValueError(exc.args[0] if exc.args else str(exc)) from None
    if set(subsets["A"]) & set(subsets["B"]):
        p.error(f"the subsets overlap: {sorted(set(subsets['A']) & set(subsets['B']))}")
    out = check_output("--out", Path(args.out) / "shift.json").parent
    runs = [("A", "B"), ("B", "A")]
    if not (args.quick or args.no_reference):
        runs += [("A", "A"), ("B", "B")]
    budgets = [float(b) for b in args.budgets.split(",") if b.strip()]
    if args.quick:
        budgets = budgets[1::2][:2] or budgets[:2]
    for name, tasks in subsets.items():
        print(f"subset {name}: {', '.join(tasks)}")

    t0 = time.perf_counter()
    rows: list[dict] = []
    # None is the default; an explicit count was checked by its type (>= 1)
    episodes = (2 if args.quick else 4) if args.episodes_per_task is None else args.episodes_per_task
    calib_episodes = (2 if args.quick else 20) if args.calibration_episodes is None else args.calibration_episodes
    max_steps = (60 if args.quick else None) if args.max_steps is None else args.max_steps
    for calib, run in runs:
        cfg = EvalConfig(
            checkpoint=args.checkpoint,
            tasks=subsets[run],
            episodes_per_task=episodes,
            budgets=budgets,
            exits=[],
            calibration_dataset=args.dataset,
            calibration_episodes=calib_episodes,
            calibration_tasks=subsets[calib],
            max_steps=max_steps,
            workers=args.workers,
            track_budget=True,
        )
        payload = evaluate(cfg, out / f"calib{calib}_run{run}", show_progress=True, verbose=False)
        rows += adherence_rows(payload, calib, run)

    print("\n== Average budget: target vs measured LLM GFLOPs per action (closed loop, held-out seeds)")
    print_rows(rows)
    shifted = [r for r in rows if r["calibrated_on"] != r["run_on"]]
    for label, sel in (("task shift", shifted), ("no shift", [r for r in rows if r not in shifted])):
        if not sel:
            continue
        st = max(abs(r["static_ratio"] - 1) for r in sel)
        tr = max(abs(r["tracked_ratio"] - 1) for r in sel)
        verdict = "met" if tr <= 0.03 else "not met"
        print(f"{label}: worst average-budget error without tracking {100 * st:.1f}%, "
              f"with online tracking {100 * tr:.1f}% (target <= 3% with tracking: {verdict})")
    (out / "shift.json").write_text(json.dumps({"subsets": subsets, "rows": rows}, indent=2))
    print(f"wall time {time.perf_counter() - t0:.0f} s; results {out / 'shift.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_bench(main))
