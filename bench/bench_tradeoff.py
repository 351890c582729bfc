"""Success vs LLM compute, side by side in one run: full model, every static exit, DeeR at >= 4 budgets, oracle.

Prints the compute-reduction ratio of the dynamic controller at matched
success (the cheapest budget whose success is within 1 point of the full
model's, with its counts, interval and paired test: a match within noise is
said to be one) and the controller's compute relative to the oracle's, and writes
the trade-off PNG. Ratios only: absolute numbers depend on the machine.

    python bench/bench_tradeoff.py --quick            # < 3 min on 2 CPU cores
    python bench/bench_tradeoff.py --episodes-per-task 20 --tasks all --workers 2
    python bench/bench_tradeoff.py --suite mt50 --episodes-per-task 10   # also success per difficulty group
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import checkpoint_option, run_bench  # noqa: E402

from deer_vla.evaluation.evaluator import EvalConfig, evaluate, resolve_tasks  # noqa: E402
from deer_vla.model.shipped import checkpoint_help  # noqa: E402


def _gap_pts(full: dict, mode: dict) -> float:
    """Points of success the mode is behind the full model, from the integer counts (no float rounding: 90/100
    against 89/100 is exactly 1 point)."""
    return 100 * (full["successes"] * mode["episodes"] - mode["successes"] * full["episodes"]) / (
        full["episodes"] * mode["episodes"])


def _evidence(name: str, mode: dict, paired: dict | None) -> str:
    """The counts, the Wilson interval and, on shared episodes, the paired split against the full model."""
    text = (f"{mode['successes']}/{mode['episodes']} [{100 * mode['ci95_low']:.1f}, {100 * mode['ci95_high']:.1f}]")
    pair = (paired or {}).get(name)
    if pair:
        text += (f"; paired with full on {pair['pairs']} episodes: only full {pair['only_reference']}, only "
                 f"{name} {pair['only_mode']}, McNemar p = {pair['p_mcnemar']:.2g}")
    return text


def matched_success_report(summary: dict, modes: dict, tolerance_pts: float = 1.0,
                           paired: dict | None = None) -> list[str]:
    """The cheapest dynamic budget (and static exit) whose success is within ``tolerance_pts`` of the full
    model's, by point estimate, printed with its counts, interval and paired test: with a few dozen episodes a
    "match" is within noise, and the line says so rather than stand as a measured equality."""
    full = summary["full"]["overall"]
    lines = [f"full model: success {100 * full['success_rate']:.1f}% ({_evidence('full', full, None)}), "
             f"{full['mean_llm_gflops']:.4f} LLM GFLOPs/step"]
    dyn = [(m, summary[m]["overall"]) for m in summary if modes[m]["kind"] == "dynamic"]
    matched = [(m, s) for m, s in dyn if _gap_pts(full, s) <= tolerance_pts]
    if matched:
        name, best = min(matched, key=lambda ms: ms[1]["mean_llm_gflops"])
        ratio = full["mean_llm_gflops"] / max(best["mean_llm_gflops"], 1e-12)
        lines.append(
            f"matched success (within {tolerance_pts:g} pt of full, point estimates): {name} at "
            f"{best['mean_llm_gflops']:.4f} LLM GFLOPs/step -> {ratio:.2f}x less LLM compute than full "
            f"({_evidence(name, best, paired)})"
        )
        half_width = 100 * max(full["ci95_high"] - full["ci95_low"], best["ci95_high"] - best["ci95_low"]) / 2
        if half_width > tolerance_pts:
            lines.append(f"  note: intervals of +-{half_width:.0f} points on these episodes: the match is within "
                         f"noise (chosen as the cheapest of {len(dyn)} budgets), not a measured equality")
    else:
        lines.append(f"no dynamic budget kept success within {tolerance_pts:g} pt of the full model")
    static = [(m, summary[m]["overall"]) for m in summary if modes[m]["kind"] == "fixed" and m != "full"]
    s_matched = [(m, s) for m, s in static if _gap_pts(full, s) <= tolerance_pts]
    if s_matched:
        name, best = min(s_matched, key=lambda ms: ms[1]["mean_llm_gflops"])
        lines.append(f"cheapest static exit at matched success: {name} "
                     f"({full['mean_llm_gflops'] / max(best['mean_llm_gflops'], 1e-12):.2f}x less than full; "
                     f"{_evidence(name, best, paired)})")
    oracle = [(m, summary[m]["overall"]) for m in summary if modes[m]["kind"] == "oracle"]
    for oname, o in oracle:
        for m, s in dyn:
            lines.append(
                f"{m}: controller compute / {oname} compute = "
                f"{s['mean_llm_gflops'] / max(o['mean_llm_gflops'], 1e-12):.2f} "
                f"(success {100 * s['success_rate']:.1f}% vs oracle {100 * o['success_rate']:.1f}%)"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=checkpoint_option, default="", help=checkpoint_help())
    p.add_argument("--dataset", default=str(REPO / "data" / "demos"), help="calibration demonstrations")
    p.add_argument("--quick", action="store_true",
                   help="2 short tasks x 2 episodes, <= 60 steps each (a smoke run: intervals are wide)")
    p.add_argument("--tasks", default=None, help="task names and groups, comma list (default all; --quick: 2 tasks)")
    p.add_argument("--suite", default=None, help="a named suite instead of --tasks: 'default' or 'mt50'")
    p.add_argument("--episodes-per-task", type=int, default=None)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--budgets", default="0.15,0.2,0.3,0.5")
    p.add_argument("--oracle", type=float, default=0.05, help="oracle tolerance (criterion distance)")
    p.add_argument("--calibration-episodes", type=int, default=None)
    p.add_argument("--threshold-method", choices=("quantile", "descent"), default="quantile")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default="bench_results/tradeoff")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from deer_vla.model.checkpoint_dir import CheckpointDir

    config = CheckpointDir(args.checkpoint).read_config()
    n = int(config.num_exits)
    # the two shortest expert tasks (35 / 32 steps) keep --quick under 3 minutes on 2 cores
    from deer_vla.sim.tasks import tasks_arg

    try:
        tasks = resolve_tasks(tasks_arg(args.suite, args.tasks, "coffee-button,handle-press" if args.quick else "all"))
    except (KeyError, ValueError) as exc:
        raise ValueError(exc.args[0] if exc.args else str(exc)) from None  # one line, rc 2 (run_bench)
    dataset: str | None = args.dataset
    if not Path(args.dataset).is_dir():
        # A fresh clone has no demonstrations: the dynamic point is then the
        # checkpoint's own thresholds.json (solved for its default budget).
        print(f"no calibration demonstrations at {args.dataset} (make them with `deer-vla collect`); "
              "dynamic mode = the checkpoint's thresholds.json only")
        dataset = None
    cfg = EvalConfig(
        checkpoint=args.checkpoint,
        tasks=tasks,
        episodes_per_task=(2 if args.quick else 20) if args.episodes_per_task is None else args.episodes_per_task,
        budgets=[float(b) for b in args.budgets.split(",") if b.strip()],
        exits=list(range(1, n)),
        oracle_tolerance=args.oracle,
        calibration_dataset=dataset,
        calibration_episodes=(4 if args.quick else 30) if args.calibration_episodes is None
        else args.calibration_episodes,
        threshold_method=args.threshold_method,
        max_steps=(60 if args.quick else None) if args.max_steps is None else args.max_steps,
        workers=args.workers,
    )
    t0 = time.perf_counter()
    payload = evaluate(cfg, args.out, show_progress=True)
    for line in matched_success_report(payload["summary"], payload["modes"], paired=payload.get("paired")):
        print(line)
    print(f"wall time {time.perf_counter() - t0:.0f} s; plot {Path(args.out) / 'tradeoff.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_bench(main))
