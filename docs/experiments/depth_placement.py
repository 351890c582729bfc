"""Experiment (2026-12-04, not kept; docs/experiments/README.md): where a controller could place depth.

Own-history replays of held-out MT50 demonstrations (each task's second episode, as bench/bench_history.py
scores), distance from the expert's action (RMS over the motion axes). Three checks, one per argument:

  schedule    exit e at every step and a deeper exit every k-th step (deep features always in the history)
  hysteresis  the own-history oracle whose exit may fall by at most D exits from one step to the next
  aux         each exit's auxiliary head (an MLP on that exit's feature, no history) against the shared head
  reuse       the full model every k-th step, and between no decoder layer: the head reads the last full
              step's feature again (2026-12-05, session 47)

From the repository root (docs/mt50.md, "Three offline checks of where depth's value goes"):

    PYTHONPATH=.:bench .venv/bin/python docs/experiments/depth_placement.py schedule    # needs data/mt50_val
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from common import split_episodes

from deer_vla.control.criterion import Criterion
from deer_vla.control.oracle import oracle_exit
from deer_vla.core import Observation
from deer_vla.data.episodes import EpisodeDataset
from deer_vla.data.observations import episode_observations
from deer_vla.evaluation.evaluator import resolve_tasks
from deer_vla.model.head import gripper_value
from deer_vla.model.runner import PolicyRunner

CHECKPOINT = Path("deer_vla/assets/mt50_checkpoint")
DATASET = Path("data/mt50_val")
DISTANCE = Criterion()  # RMS over the motion axes, the gripper left out


def episodes(base: PolicyRunner) -> list[tuple[list[Observation], np.ndarray]]:
    ds = EpisodeDataset(DATASET)
    _, indices = split_episodes(DATASET, resolve_tasks("mt50"), 1, 1)
    out = []
    for i in indices:
        episode = ds.load(i)
        out.append((episode_observations(episode, tuple(base.cameras)), np.asarray(episode.actions, np.float64)))
    return out


def run_exits(runner: PolicyRunner, depth: int) -> np.ndarray:
    return np.stack([np.asarray(runner.run_next_exit(), dtype=np.float64) for _ in range(depth)])


def replay(base: PolicyRunner, choose: dict[str, Callable[[PolicyRunner, int, int | None], int]]) -> None:
    """Per mode, ``choose(runner, t, previous exit)`` runs exits on the runner's step and returns the one to
    commit; every mode keeps its own history. Prints cost, distances from the expert and from the full model,
    and how often the committed exit changes from one step to the next."""
    n = base.num_exits
    costs = base.cost_profile.costs("llm_gflops")
    reference = base.fork()
    runners = {name: base.fork() for name in choose}
    tally: dict[str, list[tuple[float, float, float, bool]]] = {name: [] for name in ["full", *choose]}
    t0 = time.perf_counter()
    with torch.inference_mode():
        for observations, expert in episodes(base):
            reference.reset()
            previous: dict[str, int | None] = {name: None for name in choose}
            for r in runners.values():
                r.reset()
            for t, obs in enumerate(observations):
                reference.begin_step(obs)
                run_exits(reference, n)
                full = np.asarray(reference.commit(n), dtype=np.float64)
                tally["full"].append((float(costs[-1]), DISTANCE(full, expert[t]), 0.0, False))
                for name, pick in choose.items():
                    r = runners[name]
                    r.begin_step(obs)
                    k = pick(r, t, previous[name])
                    action = np.asarray(r.commit(k), dtype=np.float64)
                    changed = previous[name] is not None and previous[name] != k
                    previous[name] = k
                    tally[name].append((float(costs[k - 1]) if k else 0.0,  # exit 0: no layer ran
                                         DISTANCE(action, expert[t]), DISTANCE(action, full),
                                        changed))
    print(f"{len(tally['full'])} steps, {time.perf_counter() - t0:.0f} s")
    for name, rows in tally.items():
        cost, expert_d, full_d, changes = np.mean(np.asarray(rows, dtype=np.float64), axis=0)
        print(f"{name:<28} cost/full {cost / costs[-1]:.3f}  from the expert {expert_d:.4f}  from full {full_d:.4f}"
              f"  exit changes per step {changes:.3f}")


def schedule(base: PolicyRunner) -> None:
    n = base.num_exits

    def every(shallow: int, period: int, deep: int) -> Callable[[PolicyRunner, int, int | None], int]:
        def pick(r: PolicyRunner, t: int, _: int | None) -> int:
            depth = deep if period and t % period == 0 else shallow
            run_exits(r, depth)
            return depth
        return pick

    modes = {f"exit{e}": every(e, 0, n) for e in (1, 2, 3)}
    modes |= {f"exit1, full every {k}": every(1, k, n) for k in (2, 3, 5, 9)}
    modes |= {f"exit1, exit6 every {k}": every(1, k, 6) for k in (3, 5)}
    modes |= {f"exit2, full every {k}": every(2, k, n) for k in (3, 5)}
    replay(base, modes)


def hysteresis(base: PolicyRunner) -> None:
    n = base.num_exits

    def oracle(tolerance: float, max_drop: int) -> Callable[[PolicyRunner, int, int | None], int]:
        def pick(r: PolicyRunner, _: int, previous: int | None) -> int:
            k = oracle_exit(run_exits(r, n), tolerance, DISTANCE)
            return max(k, previous - max_drop) if max_drop and previous is not None else k
        return pick

    replay(base, {f"oracle{t:g}, falls <= {d}" if d else f"oracle{t:g}, free": oracle(t, d)
                  for t, d in ((0.024, 0), (0.03, 1), (0.04, 1), (0.05, 1), (0.04, 2), (0.06, 2))})


def aux(base: PolicyRunner) -> None:
    n = base.num_exits
    aux_d: list[list[float]] = [[] for _ in range(n)]
    shared_d: list[list[float]] = [[] for _ in range(n)]
    with torch.inference_mode():
        for observations, expert in episodes(base):
            base.reset()
            for t, obs in enumerate(observations):
                base.begin_step(obs)
                proprio = None if obs.proprio is None else torch.tensor(obs.proprio, dtype=torch.float32).view(1, 1, -1)
                for k, action in enumerate(run_exits(base, n), start=1):  # the full model's history: commit(n)
                    shared_d[k - 1].append(DISTANCE(action, expert[t]))
                    out = base.model.aux_heads[k - 1](torch.from_numpy(base.exit_feature(k)).view(1, 1, -1), proprio)
                    raw = torch.cat([out.motion[0, -1], gripper_value(out.gripper_logit[0, -1:])]).numpy()
                    aux_d[k - 1].append(DISTANCE(base.action_spec.clip(raw).astype(np.float64), expert[t]))
                base.commit(n)
    for k in range(n):
        print(f"exit {k + 1:>2}: auxiliary head (no history) {np.mean(aux_d[k]):.4f}, "
              f"shared head with the full model's history {np.mean(shared_d[k]):.4f}")


def reuse(base: PolicyRunner) -> None:
    """The full model every k-th step; between, no decoder layer runs and the head reads the last full
    step's feature again (with this step's proprioception), so the history holds only deep features."""
    n = base.num_exits
    last: dict[int, torch.Tensor] = {}

    def stale(period: int, fresh_exit: int) -> Callable[[PolicyRunner, int, int | None], int]:
        key = len(last) + 1000 * period + fresh_exit  # one slot per mode
        last[key] = torch.zeros(0)

        def pick(r: PolicyRunner, t: int, _: int | None) -> int:
            if t % period == 0:
                run_exits(r, n)
                last[key] = r._candidates[n][2]
                return n
            if fresh_exit:
                run_exits(r, fresh_exit)
                return fresh_exit
            feature = last[key]
            past = r._past_state if r.model.config.head.history > 0 else r._committed
            out = r.model.head(feature, r._proprio, past)
            raw = torch.cat([out.motion[0, -1], gripper_value(out.gripper_logit[0, -1:])]).float().numpy()
            r._candidates[0] = (r.action_spec.clip(raw), out.hidden, feature)
            return 0
        return pick

    modes = {f"full every {k}, reuse between": stale(k, 0) for k in (2, 3, 5, 9)}
    modes |= {f"full every {k}, exit1 between": stale(k, 1) for k in (5,)}
    replay(base, modes)


def main() -> None:
    checks = {"schedule": schedule, "hysteresis": hysteresis, "aux": aux, "reuse": reuse}
    if len(sys.argv) != 2 or sys.argv[1] not in checks:
        raise SystemExit(f"usage: depth_placement.py {'|'.join(checks)}")
    torch.set_num_threads(1)
    checks[sys.argv[1]](PolicyRunner.from_checkpoint(CHECKPOINT, device="cpu"))


if __name__ == "__main__":
    main()
