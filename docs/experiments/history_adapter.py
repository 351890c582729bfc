"""Experiment (2026-12-03, not kept; docs/experiments/README.md): linear per-exit history adapters.

Ridge maps fitted on recorded features take exit k's pooled feature to the deepest exit's; the head's history
keeps the adapted feature of the exit a step took (the current step still reads the raw one). Scored by
own-history replay, as bench/bench_history.py does, with and without the adapters. From the repository root:

    PYTHONPATH=.:bench .venv/bin/python docs/experiments/history_adapter.py 2   # needs data/mt50_train8, data/mt50_val
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import split_episodes

from deer_vla.control.criterion import Criterion
from deer_vla.control.oracle import oracle_exit
from deer_vla.data.episodes import EpisodeDataset
from deer_vla.data.observations import episode_observations
from deer_vla.evaluation.evaluator import resolve_tasks
from deer_vla.model.runner import PolicyRunner


def main() -> None:
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    tasks = resolve_tasks("mt50")
    base = PolicyRunner.from_checkpoint(Path("deer_vla/assets/mt50_checkpoint"), device="cpu")
    n = base.num_exits
    costs = np.asarray(base.cost_profile.costs("llm_gflops"))
    cams = tuple(base.cameras)
    motion_distance = Criterion()  # RMS over the motion axes
    t0 = time.time()
    # 1. every exit's feature, the full model committed, on 2 training demonstrations per task
    train = EpisodeDataset(Path("data/mt50_train8"))
    rows = []
    r = base.fork()
    with torch.inference_mode():
        for i in split_episodes(Path("data/mt50_train8"), tasks, 2, 0)[0]:
            r.reset()
            for o in episode_observations(train.load(i), cams):
                r.begin_step(o)
                for _ in range(n):
                    r.run_next_exit()
                rows.append(np.stack([r.exit_feature(k) for k in range(1, n + 1)]))
                r.commit(n)
    feats = np.stack(rows)  # (S, N, D)
    print(f"features {feats.shape} in {time.time() - t0:.0f} s")
    # 2. ridge per exit: [f_k, 1] -> f_N
    maps = []
    for k in range(n - 1):
        x = np.hstack([feats[:, k], np.ones((len(feats), 1))])
        y = feats[:, -1]
        w = np.linalg.solve(x.T @ x + 1e-2 * np.eye(x.shape[1]), x.T @ y)
        maps.append(w)
        raw, fit = np.sqrt(((feats[:, k] - y) ** 2).mean()), np.sqrt(((x @ w - y) ** 2).mean())
        print(f"exit {k + 1}: feature error raw {raw:.4f}, adapted {fit:.4f} (deepest feature RMS "
              f"{np.sqrt((y ** 2).mean()):.4f})")

    def adapt(k: int, feature: torch.Tensor) -> torch.Tensor:
        if k == n:
            return feature
        out = np.append(feature.reshape(-1).float().numpy(), 1.0) @ maps[k - 1]
        return torch.from_numpy(out.astype(np.float32)).view(1, 1, -1)

    # 3. own-history replay of data/mt50_val's second episode per task, each mode with and without adapters
    val = EpisodeDataset(Path("data/mt50_val"))
    modes = {"exit1": (1, lambda a: 1), "exit2": (2, lambda a: 2), "exit3": (3, lambda a: 3),
             "oracle0.024": (n, lambda a: oracle_exit(a, 0.024))}
    names = [f"{m}{s}" for m in modes for s in ("", "+adapter")]
    runners = {name: base.fork() for name in names}
    tally: dict[str, dict[str, list[float]]] = {name: {"full": [], "expert": [], "exit": []} for name in names}
    ref = base.fork()
    with torch.inference_mode():
        for i in split_episodes(Path("data/mt50_val"), tasks, 1, 1)[1]:
            episode = val.load(i)
            expert = np.asarray(episode.actions, dtype=np.float64)
            ref.reset()
            for runner in runners.values():
                runner.reset()
            for t, obs in enumerate(episode_observations(episode, cams)):
                ref.begin_step(obs)
                for _ in range(n):
                    full = np.asarray(ref.run_next_exit(), dtype=np.float64)
                ref.commit(n)
                for name, runner in runners.items():
                    depth, choose = modes[name.removesuffix("+adapter")]
                    runner.begin_step(obs)
                    actions = np.stack([np.asarray(runner.run_next_exit(), dtype=np.float64) for _ in range(depth)])
                    k = choose(actions)
                    feature = runner._candidates[k][2]  # the experiment reaches into the runner's history
                    action = runner.commit(k)
                    if name.endswith("+adapter") and runner._past:
                        runner._past[-1] = (adapt(k, feature), runner._past[-1][1])
                    tally[name]["full"].append(motion_distance(action, full))
                    tally[name]["expert"].append(motion_distance(action, expert[t]))
                    tally[name]["exit"].append(k)
    print(f"{len(tally['exit1']['full'])} steps, {time.time() - t0:.0f} s")
    for name, d in tally.items():
        used = np.asarray(d["exit"], dtype=np.int64)
        print(f"{name:22s} cost {costs[used - 1].mean() / costs[-1]:.3f}  from full (own history) "
              f"{np.mean(d['full']):.4f}  vs expert {np.mean(d['expert']):.4f}")


if __name__ == "__main__":
    main()
