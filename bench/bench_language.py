"""Language generalisation offline: the policy's motion error against the expert under other instructions.

Each held-out demonstration episode is replayed through the model (teacher
forcing: the recorded frames, whatever the model would have done) three ways,
side by side in one run:

- canonical: the task's first training instruction;
- held-out: one of the task's never-trained paraphrases (cycled over episodes);
- swapped (same-scene pairs only): the *other* task's canonical instruction,
  e.g. "close the drawer" on a drawer-open episode.

For every way it reports the RMS distance between the executed exit's motion
(full model, and exit 1) and the expert's recorded action, and exit 1's RMS
distance from the full model's motion. A front end that generalises keeps
held-out close to canonical; an instruction that matters makes swapped
clearly worse. Exit 1 carries unfamiliar wording less well than the full
model (closed loop: 0.86 of its canonical success on held-out wording
against the full model's 0.94, docs/RESULTS.md), which the exit-1 columns
show offline. Cheap (minutes on 2 cores), so it also compares
training recipes before the closed-loop evaluation
(`deer-vla evaluate --instructions both`), which is the measure that counts.

    python bench/bench_language.py --checkpoint runs/x --dataset data/val --episodes-per-task 3
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from common import checkpoint_option, run_bench  # also puts this checkout first on sys.path

from deer_vla.core.config_io import positive_int, thread_count
from deer_vla.model.shipped import checkpoint_help

PAIRS = {"drawer-open": "drawer-close", "window-open": "window-close", "faucet-open": "faucet-close"}
PAIRS |= {v: k for k, v in PAIRS.items()}


def _replay(runner, observations: list, instruction: str, exits: tuple[int, ...]) -> dict[int, np.ndarray]:
    """Motion actions of ``exits`` at every step, the deepest committed (the head's history is the full model's)."""
    from dataclasses import replace

    from deer_vla.control.calibration import collect_exit_actions

    actions = collect_exit_actions(runner, [[replace(obs, instruction=instruction) for obs in observations]])
    return {k: actions[:, k - 1] for k in exits}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=checkpoint_option, default="", help=checkpoint_help())
    p.add_argument("--dataset", required=True, help="demonstrations NOT trained on (e.g. collected with other seeds)")
    p.add_argument("--episodes-per-task", type=positive_int, default=3)
    p.add_argument("--max-steps", type=positive_int, default=60, help="first steps of each episode")
    p.add_argument("--threads", type=thread_count, default=1)
    p.add_argument("--quick", action="store_true", help="smoke test: 1 episode of 10 steps per task")
    args = p.parse_args(argv)
    if args.quick:
        args.episodes_per_task, args.max_steps = 1, 10

    import torch

    torch.set_num_threads(args.threads)
    from deer_vla.data.episodes import EpisodeDataset
    from deer_vla.data.observations import episode_observations
    from deer_vla.model.runner import PolicyRunner
    from deer_vla.sim.tasks import get_task

    ds = EpisodeDataset(Path(args.dataset))
    specs = {}
    for task in ds.tasks:
        try:
            specs[task] = get_task(task)
        except KeyError:  # not a suite task: it has no paraphrases to compare
            continue
    if not specs:  # else a table of NaN
        raise ValueError(f"no task of {args.dataset} ({', '.join(ds.tasks) or 'none'}) is a suite task")
    runner = PolicyRunner.from_checkpoint(args.checkpoint)
    exits = (1, runner.num_exits)
    t0 = time.perf_counter()
    rows: dict[str, dict[str, list[float]]] = {}
    for task, spec in specs.items():
        ways = {"canonical": lambda i, s=spec: s.instruction,
                "heldout": lambda i, s=spec: s.heldout_instructions[i % len(s.heldout_instructions)]}
        if task in PAIRS:
            ways["swapped"] = lambda i, t=task: get_task(PAIRS[t]).instruction
        errs: dict[str, list[float]] = {f"{w}@{k}": [] for w in ways for k in exits}
        errs |= {f"{w}@1-full": [] for w in ways}  # exit 1's distance from the full model
        for i, idx in enumerate(ds.episodes_for_task(task)[: args.episodes_per_task]):
            ep = ds.load(idx)
            obs = episode_observations(ep, runner.cameras)[: args.max_steps]
            expert = np.asarray(ep.actions[: len(obs)], dtype=np.float64)[:, :-1]
            for way, instruction in ways.items():
                actions = _replay(runner, obs, instruction(i), exits)
                for k, a in actions.items():
                    errs[f"{way}@{k}"].append(float(np.mean((a[:, : expert.shape[1]] - expert) ** 2)))
                motion = expert.shape[1]  # the expert's motion axes (its gripper left out, as above)
                errs[f"{way}@1-full"].append(
                    float(np.mean((actions[1][:, :motion] - actions[runner.num_exits][:, :motion]) ** 2)))
        rows[task] = errs
    wall = time.perf_counter() - t0

    def rms(values: list[float]) -> float:
        return float(np.sqrt(np.mean(values))) if values else float("nan")

    full = runner.num_exits
    print(f"checkpoint {args.checkpoint}; {args.episodes_per_task} held-out demonstrations per task, "
          f"first {args.max_steps} steps; RMS motion error against the expert (lower is better); {wall:.0f} s")
    header = f"{'task':<22}" + "".join(f"{h:>13}" for h in (
        "canonical", "held-out", "held/canon", "swapped", "swap/canon", "exit1 canon", "exit1 held", "e1 held/can",
        "e1-full can", "e1-full held"))
    print(header)

    def row(name: str, errs: dict[str, list[float]]) -> str:
        c, h, s = rms(errs[f"canonical@{full}"]), rms(errs[f"heldout@{full}"]), rms(errs.get(f"swapped@{full}", []))
        c1, h1 = rms(errs["canonical@1"]), rms(errs["heldout@1"])
        return (f"{name:<22}{c:>13.4f}{h:>13.4f}{h / c:>13.2f}{s:>13.4f}{s / c:>13.2f}{c1:>13.4f}{h1:>13.4f}"
                f"{h1 / c1:>13.2f}{rms(errs['canonical@1-full']):>13.4f}{rms(errs['heldout@1-full']):>13.4f}")

    pooled: dict[str, list[float]] = {}
    for task, errs in rows.items():
        for key, vals in errs.items():
            pooled.setdefault(key, []).extend(vals)
        print(row(task, errs))
    print(row("all", pooled))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(run_bench(main))
