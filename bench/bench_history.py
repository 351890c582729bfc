"""Own-history replay: how far each mode strays from the full model when its own exits fill the head's history.

The offline benches (bench_oracle_gap, calibration, the exit gates' training
data) replay demonstrations the way calibration does: every exit runs, the
deepest is committed, so the head's history always holds the full model's
features. In closed loop it holds the features of the exits the controller
took. This bench replays the same held-out demonstration steps both ways, in
one run, through the controller the evaluator uses (``make_controller``):

* a reference runner plays the full model (its history: the full model's);
  it also gives every exit's action under that history, the usual offline
  figure ("full-history replay");
* one runner per mode (static exits, the oracle, thresholds files) commits
  that mode's own exit at every step, so its history is its own, as on the
  robot ("own-history replay").

``--reference-oracle TOL`` adds a mode no controller can run: at every step it
goes deeper until its action (own history) is within TOL of the reference
full model's (full history), the distance that own-history drift adds to. It
is the ceiling of per-step criteria that would judge that distance instead of
the distance from their own exit N.

Per mode it reports the LLM compute, the distance of the committed action
from the reference full model's (RMS over the motion axes) under both
replays, the distance from the demonstration's action, and how often the
gripper's sign disagrees with the full model's. The observations are the
demonstration's (no simulator): this isolates the history's share of the
drift from the states the policy would visit itself.

    python bench/bench_history.py --checkpoint mt50 --suite mt50 --dataset data/mt50_val --exits 1,2,3 \\
        --oracle 0.024 --thresholds deer_vla/assets/mt50_checkpoint/thresholds.json --threads 2
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from common import REPO, check_output, checkpoint_option, machine_description, run_bench, split_episodes

from deer_vla.core.config_io import non_negative_int, positive_int, thread_count


@dataclass
class ModeTally:
    """Per-step figures of one mode over the replayed steps."""

    llm: list[float] = field(default_factory=list)
    exit_used: list[int] = field(default_factory=list)
    own: list[float] = field(default_factory=list)  # committed action vs the reference full model, own history
    replayed: list[float] = field(default_factory=list)  # same exit vs the full model, both under its history
    expert: list[float] = field(default_factory=list)  # committed action vs the demonstration's
    gripper_flip: list[bool] = field(default_factory=list)  # gripper sign differs from the full model's

    def row(self, full_llm: float) -> dict:
        return {"cost_over_full": float(np.mean(self.llm)) / full_llm, "mean_exit": float(np.mean(self.exit_used)),
                "from_full_own_history": float(np.mean(self.own)),
                "from_full_full_history": float(np.mean(self.replayed)),
                "from_expert_own_history": float(np.mean(self.expert)),
                "gripper_disagrees": float(np.mean(self.gripper_flip)), "steps": len(self.own)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=checkpoint_option, default="default", help="checkpoint dir or shipped name")
    p.add_argument("--dataset", default=str(REPO / "data" / "demos"), help="demonstrations (deer-vla collect)")
    p.add_argument("--tasks", default=None, help="comma list or a group (default all)")
    p.add_argument("--suite", default=None, help="a named suite instead of --tasks: 'default' or 'mt50'")
    p.add_argument("--episodes-per-task", type=positive_int, default=1)
    p.add_argument("--skip-episodes", type=non_negative_int, default=None,
                   help="per task, episodes before the replayed ones (default 1, 0 with --quick; skip what "
                        "bench_oracle_gap calibrated on, e.g. 1 against its --quick run, to score its held-out "
                        "steps)")
    p.add_argument("--exits", default="1,2,3", help="static exits (comma list; the full model always runs)")
    p.add_argument("--oracle", default="", metavar="TOL[,TOL]", help="oracle modes at these tolerances")
    p.add_argument("--reference-oracle", default="", metavar="TOL[,TOL]",
                   help="modes that stop at the first exit within TOL of the reference full model's action")
    p.add_argument("--thresholds", default="", metavar="FILE[,FILE]",
                   help="thresholds files, one dynamic mode each, run as written (e.g. a checkpoint's own)")
    p.add_argument("--max-steps", type=positive_int, default=None, help="steps per episode (default all)")
    p.add_argument("--threads", type=thread_count, default=1, help="torch CPU threads")
    p.add_argument("--quick", action="store_true", help="two tasks, 40 steps each (the smoke test)")
    p.add_argument("--out", default="bench_results/history.json")
    args = p.parse_args(argv)
    if args.quick:
        args.tasks = args.tasks or "coffee-button,handle-press"
        args.max_steps = 40 if args.max_steps is None else args.max_steps
        args.skip_episodes = 0 if args.skip_episodes is None else args.skip_episodes
    elif args.skip_episodes is None:
        args.skip_episodes = 1

    import torch

    from deer_vla.control.criterion import Criterion
    from deer_vla.data.observations import episode_observations
    from deer_vla.evaluation.evaluator import file_modes, resolve_tasks
    from deer_vla.evaluation.rollout import ModeSpec, make_controller
    from deer_vla.model.runner import PolicyRunner
    from deer_vla.sim.tasks import tasks_arg

    torch.set_num_threads(args.threads)
    out = check_output("--out", Path(args.out))
    dataset = Path(args.dataset)
    if not dataset.is_dir():
        raise ValueError(f"no demonstrations at {dataset}: make them with `deer-vla collect` (README)")
    try:
        tasks = resolve_tasks(tasks_arg(args.suite, args.tasks, "all"))
    except (KeyError, ValueError) as exc:
        raise ValueError(exc.args[0] if exc.args else str(exc)) from None
    _, indices = split_episodes(dataset, tasks, args.skip_episodes, args.episodes_per_task)  # before the model
    base = PolicyRunner.from_checkpoint(Path(args.checkpoint), device="cpu")
    n = base.num_exits
    costs = base.cost_profile.costs("llm_gflops")
    full_llm = float(costs[-1])
    motion_distance = Criterion()  # RMS over the motion axes, the gripper left out, as the exit criteria measure

    def numbers(flag: str, text: str, kind: type) -> list:
        try:
            values = [kind(t) for t in (s.strip() for s in text.split(",")) if t]
        except ValueError:
            raise ValueError(f"{flag}: expected a comma list of {kind.__name__}s, got {text!r}") from None
        if len(set(values)) != len(values) or any(not np.isfinite(v) or v < 0 for v in values):
            raise ValueError(f"{flag}: values must be distinct, finite and >= 0, got {text!r}")
        return values

    modes: list[ModeSpec] = []
    for k in numbers("--exits", args.exits, int):
        if not 1 <= k < n:
            raise ValueError(f"--exits: {k} is not an exit below the full model's {n}")
        modes.append(ModeSpec(name=f"exit{k}", kind="fixed", exit=k))
    for tol in numbers("--oracle", args.oracle, float):
        modes.append(ModeSpec(name=f"oracle{tol:g}", kind="oracle", oracle_tolerance=tol))
    files = [s.strip() for s in args.thresholds.split(",") if s.strip()]
    try:
        modes += file_modes(files, n, base.cost_profile.costs, args.checkpoint)
    except (OSError, ValueError) as exc:
        raise ValueError(f"--thresholds: {exc}") from None

    reference = base.fork()  # one model, a history per mode
    controllers = {m.name: make_controller(base.fork(), base.cost_profile, m) for m in modes}
    ref_oracles = {f"reference-oracle{t:g}": (t, base.fork())
                   for t in numbers("--reference-oracle", args.reference_oracle, float)}
    tallies = {name: ModeTally() for name in ["full", *controllers, *ref_oracles]}
    from deer_vla.data.episodes import EpisodeDataset

    ds = EpisodeDataset(dataset)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in indices:
            episode = ds.load(i)
            observations = episode_observations(episode, tuple(base.cameras))[:args.max_steps]
            expert = np.asarray(episode.actions, dtype=np.float64)
            reference.reset()
            for c in controllers.values():
                c.reset_episode()
            for _, r in ref_oracles.values():
                r.reset()
            for t, obs in enumerate(observations):
                reference.begin_step(obs)
                exit_actions = [np.asarray(reference.run_next_exit(), dtype=np.float64) for _ in range(n)]
                full = np.asarray(reference.commit(n), dtype=np.float64)
                rows = {"full": (full, n, full_llm)}
                for name, c in controllers.items():
                    action, record = c.step(obs)
                    rows[name] = (np.asarray(action, dtype=np.float64), record.exit_used, record.llm_gflops)
                for name, (tol, r) in ref_oracles.items():
                    r.begin_step(obs)
                    k = 0
                    while k < n:  # exit n (the own-history full model) is taken when nothing earlier is close
                        k += 1
                        if motion_distance(np.asarray(r.run_next_exit(), dtype=np.float64), full) <= tol:
                            break
                    rows[name] = (np.asarray(r.commit(k), dtype=np.float64), k, float(costs[k - 1]))
                for name, (action, k, llm) in rows.items():
                    tally = tallies[name]
                    tally.llm.append(llm)
                    tally.exit_used.append(k)
                    tally.own.append(motion_distance(action, full))
                    tally.replayed.append(motion_distance(exit_actions[k - 1], full))
                    tally.expert.append(motion_distance(action, expert[t]))
                    tally.gripper_flip.append(bool((action[-1] > 0) != (full[-1] > 0)))
    wall = time.perf_counter() - t0
    steps = len(tallies["full"].own)
    print(f"{machine_description('cpu')}; {len(tasks)} task(s), {len(indices)} episodes, {steps} steps of "
          f"{dataset}; {n} exits, full model {full_llm:.4f} LLM GFLOPs/step; {wall:.0f} s")
    head = (f"{'mode':<28}{'cost/full':>10}{'mean exit':>10}{'from full, full history':>25}"
            f"{'from full, own history':>24}{'own/full hist.':>15}{'vs expert':>11}{'gripper flips':>15}")
    print(head)
    results = {}
    for name, tally in tallies.items():
        r = tally.row(full_llm)
        results[name] = r
        ratio = r["from_full_own_history"] / r["from_full_full_history"] if r["from_full_full_history"] > 0 else 1.0
        print(f"{name:<28}{r['cost_over_full']:>10.3f}{r['mean_exit']:>10.2f}{r['from_full_full_history']:>25.4f}"
              f"{r['from_full_own_history']:>24.4f}{ratio:>15.2f}{r['from_expert_own_history']:>11.4f}"
              f"{r['gripper_disagrees']:>15.4f}")
    print("(distances: RMS over the motion axes; 'full history': the exit the mode took, replayed with the full "
          "model's history as calibration does; 'own history': the mode's action with its own exits in the "
          "head's history, as in closed loop; 'vs expert': own history, from the demonstration's action)")
    out.write_text(json.dumps({"checkpoint": args.checkpoint, "dataset": str(dataset), "tasks": tasks,
                               "episodes": indices, "steps": steps, "wall_s": wall, "modes": results}, indent=2))
    print(f"results {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_bench(main))
