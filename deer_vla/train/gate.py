"""`deer-vla train-gate`: train the learned exit criterion's gates (``model.gate``) on a checkpoint's own outputs.

The checkpoint runs over demonstration episodes, every exit at every step,
committing the deepest (as calibration does, so the head's history holds the
full model's features). Each step gives, per exit k = 1..N-1, the gate's
inputs (the exit's pooled feature, its action and the previous exit's; exit
1's own at exit 1) and its target: the RMS distance over the motion axes of
a_k from a_N, times the step's task weight when ``--task-weights`` gives one
(how much depth pays in that task's episodes, measured in closed loop:
``deer-vla eval-report --depth-weights``), so a gate learns to ask for more
depth in the tasks whose outcome needs it, which the distance alone misses.
The gates regress
log(target + floor) with MSE; whole episodes are held out for validation
(their loss and a constant predictor's are reported) and the epoch with the
least validation loss is kept. The model itself is not changed.
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deer_vla.core import Observation
from deer_vla.core.config_io import non_negative_int, positive_int, thread_count
from deer_vla.core.json_text import JsonTextError, read_json_file
from deer_vla.core.log_text import error_text
from deer_vla.core.writable import clobbers_input, path_argument, unwritable_dir
from deer_vla.model.device import device_arg
from deer_vla.model.gate import ExitGates, GateConfig, gate_inputs, motion_rms
from deer_vla.model.shipped import CHECKPOINT_HELP, checkpoint_argument, shipped_name_of
from deer_vla.train.instruction_noise import InstructionNoise, avoid_by_task

log = logging.getLogger("deer_vla.train_gate")


@dataclass(frozen=True)
class GateTrainConfig:
    # 64 hidden units with weight decay 0.1: on MT50's held-out demonstrations, gates from 300 episodes fit
    # log distance with MSE 0.215 against 0.249 for 16 units at 0.01. The steps recorded matter more: 150 ->
    # 300 -> 450 episodes 0.311 -> 0.249 -> 0.211 (16 units, 0.01) (bench/bench_gate_fit.py, docs/mt50.md)
    hidden: int = 64
    epochs: int = 60
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 0.1
    val_fraction: float = 0.1  # share of the episodes held out (at least one, when there are two or more)
    floor: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("hidden", "epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"gate training {name} must be a positive int, got {v!r}")
        for name in ("lr", "floor"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0 < v <= 1e38):  # a float32 (1e300: the optimiser's traceback)
                raise ValueError(f"gate training {name} must be a number in (0, 1e38], got {v!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"gate training weight_decay must be finite and >= 0, got {self.weight_decay!r}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"gate training val_fraction must be in [0, 1), got {self.val_fraction!r}")


@dataclass
class GateData:
    """Per step: every exit's pooled feature (S, N, D), action (S, N, A), the step's episode (S,) and, optionally,
    the weight of its distances (S,) (its task's ``--task-weights``; None: all 1)."""

    features: np.ndarray
    actions: np.ndarray
    episode: np.ndarray
    weight: np.ndarray | None = None

    def __post_init__(self) -> None:
        s = self.features.shape[0]
        if self.features.ndim != 3 or self.actions.ndim != 3 or self.features.shape[:2] != self.actions.shape[:2]:
            raise ValueError(f"gate data: features {self.features.shape} and actions {self.actions.shape} must be "
                             "(steps, exits, D) and (steps, exits, A)")
        if self.episode.shape != (s,):
            raise ValueError(f"gate data: one episode id per step needed, got {self.episode.shape} for {s} steps")
        if s == 0:
            raise ValueError("gate data holds no steps")
        if not (np.all(np.isfinite(self.features)) and np.all(np.isfinite(self.actions))):
            raise ValueError("gate data contains NaN or inf")
        if self.weight is not None and (self.weight.shape != (s,) or not np.all(np.isfinite(self.weight))
                                        or not np.all(self.weight > 0)):
            raise ValueError(f"gate data: one finite weight > 0 per step needed, got shape {self.weight.shape}")


@dataclass
class GateTrainReport:
    train_steps: int
    val_steps: int
    epochs: int
    best_epoch: int
    first_train_loss: float  # MSE on log(distance + floor), the first epoch's mean
    train_loss: float  # at the kept epoch
    val_loss: float | None  # at the kept epoch (None without held-out episodes)
    constant_val_loss: float | None  # a per-exit constant (the training mean) on the held-out steps
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def collect_gate_data(runner: Any, episodes: Iterable[Sequence[Observation]], max_steps: int | None = None) -> GateData:
    """Run every exit at every step (committing the deepest) and record features and actions."""
    n = int(runner.num_exits)
    feats: list[np.ndarray] = []
    acts: list[np.ndarray] = []
    owner: list[int] = []
    for e, episode in enumerate(episodes):
        runner.reset()
        for obs in episode:
            if max_steps is not None and len(acts) >= max_steps:
                break
            runner.begin_step(obs)
            acts.append(np.stack([np.asarray(runner.run_next_exit(), dtype=np.float64) for _ in range(n)]))
            feats.append(np.stack([runner.exit_feature(k) for k in range(1, n + 1)]))
            runner.commit(n)
            owner.append(e)
        if max_steps is not None and len(acts) >= max_steps:
            break
    if not acts:
        raise ValueError("no steps to train the gates on: the episodes were empty")
    return GateData(np.stack(feats).astype(np.float32), np.stack(acts), np.asarray(owner))


def gate_tensors(data: GateData, floor: float, first_exit: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """-> inputs (S, G, input_dim) and targets log(weight * distance + floor) (S, G) for exits first_exit..N-1
    (exit 1's gate gets exit 1's own action as the previous one: ``model.gate``)."""
    f = torch.from_numpy(data.features).float()
    a = torch.from_numpy(data.actions).float()
    n = a.shape[1]
    inputs = torch.stack([gate_inputs(f[:, k - 1], a[:, k - 1], a[:, max(k - 2, 0)], floor)
                          for k in range(first_exit, n)], dim=1)
    distance = motion_rms(a[:, first_exit - 1:n - 1], a[:, -1:])
    if data.weight is not None:
        distance = distance * torch.from_numpy(data.weight).float().unsqueeze(1)
    return inputs, torch.log(distance + floor)


def split_episodes(episode: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, val) over steps, whole episodes to one side."""
    ids = np.unique(episode)
    n_val = int(round(val_fraction * ids.size))
    if val_fraction > 0 and ids.size >= 2:
        n_val = min(max(n_val, 1), ids.size - 1)
    else:
        n_val = 0
    val_ids = np.random.default_rng(seed).permutation(ids)[:n_val]
    val = np.isin(episode, val_ids)
    return ~val, val


def train_gates(data: GateData, cfg: GateTrainConfig | None = None) -> tuple[ExitGates, GateTrainReport]:
    """Gates trained on ``data`` (module docstring); the report carries the losses to judge them by."""
    cfg = cfg or GateTrainConfig()
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    s, n, d = data.features.shape
    gates = ExitGates(GateConfig(feature_dim=d, action_dim=data.actions.shape[2], num_exits=n, hidden=cfg.hidden,
                                 floor=cfg.floor))
    x, y = gate_tensors(data, cfg.floor, gates.config.first_exit)
    train, val = split_episodes(data.episode, cfg.val_fraction, cfg.seed)
    xt, yt = x[torch.from_numpy(train)], y[torch.from_numpy(train)]
    xv, yv = x[torch.from_numpy(val)], y[torch.from_numpy(val)]
    with torch.no_grad():
        gates.input_mean.copy_(xt.mean(0))
        std = xt.std(0)
        # constant inputs (exit 1's change and consecutive distance) are left unscaled: (x - mean) is ~0 there
        gates.input_std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))
        gates.b2.copy_(yt.mean(0))  # start from the constant predictor
    constant = float(((yv - yt.mean(0)) ** 2).mean()) if len(yv) else None
    opt = torch.optim.AdamW(gates.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    best: tuple[float, int, float, dict] | None = None
    first = math.nan
    for epoch in range(cfg.epochs):
        gates.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(xt), cfg.batch_size):
            b = perm[i:i + cfg.batch_size]
            loss = ((gates.forward_all(xt[b]) - yt[b]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        train_loss = total / len(xt)
        if epoch == 0:
            first = train_loss
        gates.eval()
        with torch.no_grad():
            judge = float(((gates.forward_all(xv) - yv) ** 2).mean()) if len(xv) else train_loss
        if best is None or judge < best[0]:
            best = (judge, epoch, train_loss, {k: v.clone() for k, v in gates.state_dict().items()})
    assert best is not None
    gates.load_state_dict(best[3])
    gates.eval()
    report = GateTrainReport(train_steps=int(train.sum()), val_steps=int(val.sum()), epochs=cfg.epochs,
                             best_epoch=best[1] + 1, first_train_loss=first, train_loss=best[2],
                             val_loss=best[0] if len(xv) else None, constant_val_loss=constant,
                             seconds=time.perf_counter() - t0)
    return gates, report


# Rewording for the gates: strong enough that many replays read unlike any training instruction (the wrappers
# still avoid the held-out wording: train.instruction_noise).
REWORD_NOISE = InstructionNoise(wrap=0.7, word_dropout=0.1, swap=0.2)


def reworded(episode: list[Observation], task: str, rng: np.random.Generator) -> list[Observation]:
    """``episode`` under another instruction: one of the task's training paraphrases with instruction noise
    (never one that reads as a held-out instruction or another task's: ``suite_avoid``)."""
    from deer_vla.sim.tasks import get_task

    try:
        texts = get_task(task).train_instructions
    except KeyError:  # a task outside the suite (e.g. imported robot data): its own instruction, noised
        texts = (episode[0].instruction,)
    avoid = suite_avoid().get(task, frozenset())
    text = REWORD_NOISE.apply(texts[int(rng.integers(len(texts)))], rng, avoid)
    return [replace(obs, instruction=text) for obs in episode]


@functools.cache
def suite_avoid() -> dict[str, frozenset[str]]:
    """train.instruction_noise.avoid_by_task over every task the simulator knows."""
    from deer_vla.sim.tasks import ALL_TASKS

    return avoid_by_task({t.name: t.train_instructions for t in ALL_TASKS.values()},
                         [h for t in ALL_TASKS.values() for h in t.heldout_instructions])


def training_demos(datasets: str | Path | Sequence[str | Path], cameras: Sequence[str], episodes: int,
                   tasks: Sequence[str] | None, skip_per_task: int = 0, reword: int = 0,
                   seed: int = 0) -> Iterator[tuple[str, list[Observation]]]:
    """(task, observations) of ``episodes`` demonstrations spread evenly over the pool: in each of ``datasets``
    (one directory or several, e.g. the training set and demonstrations collected for the gates), every task's (or
    ``tasks``') episodes but the task's first ``skip_per_task``. Each is followed by ``reword`` replays of it under
    reworded instructions (``reworded``): the early exits are least like the full model on unfamiliar wording, and
    demonstrations alone show the gates only the recorded one."""
    from deer_vla.data.episodes import EpisodeDataset
    from deer_vla.data.observations import episode_observations

    if skip_per_task < 0:
        raise ValueError(f"--skip-per-task must be >= 0, got {skip_per_task}")
    if reword < 0:
        raise ValueError(f"--reword must be >= 0, got {reword}")
    rng = np.random.default_rng(seed)
    roots = [Path(datasets)] if isinstance(datasets, (str, Path)) else [Path(d) for d in datasets]
    if not roots:
        raise ValueError("no dataset directory given to train the gates on")
    pool: list[tuple[EpisodeDataset, int]] = []
    present: set[str] = set()  # every task some dataset holds
    for root in roots:
        if not root.is_dir():
            raise FileNotFoundError(f"dataset directory not found: {root}")
        ds = EpisodeDataset(root)
        present.update(ds.tasks)
        wanted = ds.tasks if tasks is None else [t for t in tasks if t in ds.tasks]
        pool += [(ds, i) for i in sorted(i for t in wanted for i in ds.episodes_for_task(t)[skip_per_task:])]
    missing = sorted(set(tasks or ()) - present)
    if missing:  # a task no dataset holds is a typo, not an empty share
        raise KeyError(f"task(s) {missing} are in none of {', '.join(str(r) for r in roots)}")
    if not pool:
        raise ValueError(f"{', '.join(str(r) for r in roots)}: no episodes left to train the gates on "
                         f"(--skip-per-task {skip_per_task})")
    for j in np.unique(np.linspace(0, len(pool) - 1, min(episodes, len(pool))).round().astype(int)):
        ds, index = pool[int(j)]
        demo = ds.load(index)
        observations = episode_observations(demo, cameras)
        yield demo.task, observations
        for _ in range(reword):
            yield demo.task, reworded(observations, demo.task, rng)


def read_task_weights(path: str | Path) -> dict[str, float]:
    """A ``--task-weights`` file: a JSON object of task names to finite weights > 0."""
    try:
        data = read_json_file(path)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"--task-weights file not found: {path}") from exc
    except (OSError, JsonTextError) as exc:
        raise ValueError(f"--task-weights {path}: not a readable JSON file ({exc})") from exc
    if not isinstance(data, dict) or not data:
        raise ValueError(f"--task-weights {path}: expected a JSON object of task names to weights")
    bad = {k: v for k, v in data.items()
           if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0)}
    if bad:
        raise ValueError(f"--task-weights {path}: weights must be finite numbers > 0, got {bad}")
    return {str(k): float(v) for k, v in data.items()}


# --- CLI --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deer-vla train-gate", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=checkpoint_argument, help=CHECKPOINT_HELP + " (the gates are written into it; "
                   "into a shipped one only with --out)")
    p.add_argument("--data", required=True, nargs="+", metavar="DIR",
                   help="demonstration dataset directories: the checkpoint's training data and/or demonstrations "
                        "collected for the gates (the gates fit the model's own outputs, so any demonstrations of "
                        "its tasks serve; more steps give better gates)")
    p.add_argument("--episodes", type=int, default=400,
                   help="episodes, spread over the datasets (default 400: gates fit better the more steps they see)")
    p.add_argument("--tasks", default=None, help="these tasks' episodes only (comma list; default every task)")
    p.add_argument("--skip-per-task", type=int, default=0, metavar="K",
                   help="leave out each task's first K episodes (e.g. the ones kept to calibrate thresholds on)")
    p.add_argument("--reword", type=int, default=0, metavar="R",
                   help="also replay each episode R times under reworded instructions (a training paraphrase with "
                        "wrappers, dropped and swapped words), so the gates see how far the early exits stray on "
                        "unfamiliar wording (default 0)")
    p.add_argument("--task-weights", type=path_argument, default=None, metavar="JSON",
                   help="{task: weight} multiplying the distances the gates learn in that task's episodes (tasks "
                        "not named: 1): how much depth pays there in closed loop, as `deer-vla eval-report "
                        "--depth-weights` writes it")
    p.add_argument("--max-steps", type=positive_int, default=None, help="cap on the steps recorded")
    p.add_argument("--hidden", type=int, default=GateTrainConfig.hidden, help="hidden units per gate")
    p.add_argument("--epochs", type=int, default=GateTrainConfig.epochs)
    p.add_argument("--lr", type=float, default=GateTrainConfig.lr)
    p.add_argument("--weight-decay", type=float, default=GateTrainConfig.weight_decay, help="AdamW weight decay")
    p.add_argument("--val-fraction", type=float, default=GateTrainConfig.val_fraction,
                   help="share of the episodes held out to pick the epoch and report the loss")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--threads", type=thread_count, default=1, help="torch threads")
    p.add_argument("--device", default="cpu", type=device_arg, help="cpu, cuda or cuda:N")
    p.add_argument("--out", type=path_argument, default=None, metavar="PATH",
                   help="the gates file to write instead of CHECKPOINT/gates.safetensors (an existing directory: "
                        "its gates.safetensors)")
    return p


def _is_safetensors(path: Path) -> bool:
    """Whether ``path`` reads as a safetensors file (what --out may replace: earlier gates)."""
    from deer_vla.model.lean_load import open_safetensors

    try:
        with open_safetensors(path):
            return True
    except (ValueError, OSError):  # not one (open_safetensors names safetensors' own error as a ValueError)
        return False


def cli_main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from deer_vla.model.checkpoint import CheckpointDir, CheckpointError
    from deer_vla.model.runner import PolicyRunner

    ckpt = CheckpointDir(args.checkpoint)
    shipped = shipped_name_of(args.checkpoint) if args.out is None else None
    if shipped:  # its gates are the package's: replaced only when --out says so
        print(f"deer-vla train-gate: {args.checkpoint} is the shipped checkpoint '{shipped}', whose "
              f"{CheckpointDir.GATES} is part of the package: write yours with --out FILE, or give its path as "
              "--out to replace it", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else ckpt.gates_path
    if out.is_dir():  # a folder (another checkpoint, as calibrate's --out): saving onto it failed after the work
        out = CheckpointDir(out).gates_path
    problem = unwritable_dir(out.parent, create=args.out is not None) \
        or clobbers_input(out, [args.checkpoint, *args.data], allowed=[ckpt.gates_path])
    if problem is None and out.is_file() and not _is_safetensors(out):
        problem = f"{out} exists and is not a safetensors file (not earlier gates): choose another --out"
    if problem:  # found now, not after minutes of recording and training that would then be lost
        print(f"deer-vla train-gate: {problem}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    try:
        cfg = GateTrainConfig(hidden=args.hidden, epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay,
                              val_fraction=args.val_fraction, seed=args.seed)
        if args.episodes < 1:
            raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
        task_weights = read_task_weights(args.task_weights) if args.task_weights else None
        runner = PolicyRunner.from_checkpoint(args.checkpoint, device=args.device)
        if runner.num_exits < 2:
            raise ValueError(f"{args.checkpoint} has {runner.num_exits} exit; exit gates need >= 2 "
                             "(a decision at exits 1..N-1)")
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
        t0 = time.perf_counter()
        played: list[str] = []  # each recorded episode's task, in order

        def episodes() -> Iterator[list[Observation]]:
            for task, observations in training_demos(args.data, tuple(runner.cameras), args.episodes, tasks,
                                                     args.skip_per_task, args.reword, args.seed):
                played.append(task)
                yield observations

        with torch.inference_mode():
            data = collect_gate_data(runner, episodes(), args.max_steps)
        if task_weights is not None:  # replace: GateData checks the weights as it checks the rest
            data = replace(data, weight=np.asarray([task_weights.get(played[e], 1.0) for e in data.episode]))
            unused = sorted(set(task_weights) - set(played))
            if unused:  # most likely a misspelt task name: say so rather than train as if unweighted
                log.warning("--task-weights names task(s) none of the recorded episodes is of: %s", unused)
        # a demonstration and its reworded replays are one episode to the validation split (same frames)
        data.episode = data.episode // (1 + args.reword)
        recorded = time.perf_counter() - t0
        gates, report = train_gates(data, cfg)
    except (KeyError, FileNotFoundError, ValueError, CheckpointError) as exc:
        print(f"deer-vla train-gate: {error_text(exc)}", file=sys.stderr)
        return 2
    summary = {"dataset": ",".join(str(d) for d in args.data), "episodes": int(np.unique(data.episode).size),
               "reword": args.reword, "task_weights": task_weights,
               "steps": int(len(data.episode)), "record_seconds": round(recorded, 1), "config": asdict(cfg),
               **report.to_dict()}
    gates.save(out, training=summary, weights_digest=ckpt.weights_digest(), config_digest=ckpt.config_digest())
    log.info("%d steps recorded in %.0f s; gates trained in %.0f s (epoch %d of %d kept)", summary["steps"],
             recorded, report.seconds, report.best_epoch, report.epochs)
    print(json.dumps({"gates": str(out), "bytes": out.stat().st_size, **summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(cli_main())
