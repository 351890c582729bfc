"""`deer-vla train`: the DeeR two-stage recipe (joint, then exit refinement) with resume and DDP.

Stage "joint" trains everything on the DeeR objective (deer_vla.train.losses);
stage "refine" freezes the backbone and trains the shared and auxiliary heads
only. Checkpoints (save_checkpoint format + a safetensors/JSON resume state)
go to <output_dir>/checkpoints/step_N every `checkpoint_every` steps; the
final model is written to <output_dir> itself, ready for calibrate/evaluate.
Multi-GPU / multi-node: launch with `torchrun --nproc_per_node G -m deer_vla.train.trainer ...`;
the process group is initialised from torchrun's environment. `batch_size` is per
process; G processes train exactly as one process would with batch_size × G
(same batches, same random exit draws; see docs/model.md).
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import shutil
import sys
import time
import typing
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from pydantic import BaseModel
from safetensors import SafetensorError
from torch.utils.data import DataLoader, Sampler

from deer_vla.core.action_spec import recorded_gripper_values
from deer_vla.core.atomic_file import atomic_write_text
from deer_vla.core.config_io import ConfigError, add_config_arguments, load_layered
from deer_vla.core.json_text import parse_json
from deer_vla.core.log_text import error_text
from deer_vla.core.run_lock import LOCK_NAME, FolderInUseError, lock_folder
from deer_vla.core.writable import fresh_start_problem, missing_dirs, remove_empty_dirs
from deer_vla.model.device import check_device
from deer_vla.model.shipped import resolve_checkpoint, shipped_name_of
from deer_vla.train.config import TrainConfig
from deer_vla.train.data import heldout_paraphrases
from deer_vla.train.losses import DeerObjective, WindowBatch
from deer_vla.train.schedule import lr_lambda, make_optimizer, param_groups
from deer_vla.train.state import (
    commit_dir,
    latest_checkpoint,
    load_train_state,
    optimizer_from_flat,
    prune_checkpoints,
    restore_rng,
    save_train_state,
    step_dir,
)
from deer_vla.train.windows import EpisodeArrays, WindowDataset, make_collate

if TYPE_CHECKING:
    from deer_vla.model.policy import MultiExitPolicy

log = logging.getLogger("deer_vla.train")


class SaveError(Exception):
    """Writing a checkpoint failed (``what``: which one, where), for ``cause`` (a full disk, a deleted folder)."""

    def __init__(self, what: str, cause: BaseException) -> None:
        super().__init__(f"writing {what} failed: {error_text(cause)}")
        self.what, self.cause = what, cause


# --- distributed ------------------------------------------------------------------------


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    """Join the torchrun process group when WORLD_SIZE > 1 (env:// rendezvous)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistInfo(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", 0)))


def resolve_device(cfg: TrainConfig, info: DistInfo) -> torch.device:
    name = cfg.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if info.world > 1:
            name = f"cuda:{info.local_rank}"
        try:  # CUDA present, and the GPU asked for among this machine's
            check_device(name)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        if name == "cuda":  # torch.cuda.set_device refuses a device without an index
            name = f"cuda:{torch.cuda.current_device()}"
        torch.cuda.set_device(torch.device(name))
    return torch.device(name)


# --- data ---------------------------------------------------------------------------------


class ListSampler(Sampler[int]):
    """Yields a fixed list of indices (the rest of an epoch after resume)."""

    def __init__(self, indices: list[int]) -> None:
        self.indices = indices

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def epoch_batches(num_windows: int, batch_size: int, info: DistInfo, seed: int, epoch: int) -> list[list[int]]:
    """This process's batches of one epoch (window indices).

    The epoch's shuffled order is cut into global batches of ``batch_size * world`` windows and
    rank r takes rows r*batch_size .. (r+1)*batch_size - 1 of each: the processes together see
    exactly the batches one process sees with ``batch_size * world``, and per-sample random draws
    made for the global batch (DeerObjective.shard) slice the same way.
    """
    order = torch.randperm(num_windows, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
    b, world = batch_size, info.world
    start = info.rank * b
    return [order[s * b * world + start : s * b * world + start + b] for s in range(num_windows // (b * world))]


def check_batch_fits(num_windows: int, batch_size: int, world: int) -> int:
    """Global batches per epoch; ConfigError when one batch needs more windows than the data set has."""
    per_epoch = num_windows // (batch_size * world)
    if per_epoch == 0:
        raise ConfigError(
            f"batch_size {batch_size} x {world} process(es) exceeds the {num_windows} windows of this "
            "dataset; lower batch_size or window, or record more episodes"
        )
    return per_epoch


def batches(
    dataset: WindowDataset, cfg: TrainConfig, info: DistInfo, collate: Any, start_step: int
) -> Iterator[WindowBatch]:
    """Endless batches; global step s is batch (s mod E) of epoch (s div E), E = global batches per epoch."""
    per_epoch = check_batch_fits(len(dataset), cfg.batch_size, info.world)
    epoch, skip = divmod(start_step, per_epoch)
    while True:
        dataset.set_epoch(epoch)
        indices = [i for batch in epoch_batches(len(dataset), cfg.batch_size, info, cfg.seed, epoch)[skip:]
                   for i in batch]
        loader = DataLoader(
            dataset,
            batch_size=cfg.batch_size,
            sampler=ListSampler(indices),
            collate_fn=collate,
            num_workers=cfg.num_workers,
            drop_last=True,
            persistent_workers=False,
            # its own generator: creating an iterator must not consume the global RNG (dropout), or a
            # resumed run (which starts an iterator mid-epoch) would diverge from an uninterrupted one
            generator=torch.Generator().manual_seed(cfg.seed + epoch),
        )
        yield from loader
        epoch, skip = epoch + 1, 0


# --- model ---------------------------------------------------------------------------------


def build_policy_config(cfg: TrainConfig) -> Any:
    from deer_vla.model.config import PolicyConfig, format_validation_error
    from deer_vla.model.presets import preset_config

    if cfg.init_checkpoint is not None:
        from deer_vla.model.checkpoint_dir import CheckpointDir, CheckpointError

        init = CheckpointDir(resolve_checkpoint(cfg.init_checkpoint))
        if not init.exists():
            raise FileNotFoundError(f"init_checkpoint: {init.root} is not a deer_vla checkpoint directory "
                                    f"(no {init.CONFIG})")
        try:
            pcfg = init.read_config()
        except CheckpointError as exc:
            raise CheckpointError(f"init_checkpoint: {exc}") from exc
        if cfg.init_overrides:
            from pydantic import ValidationError

            from deer_vla.core.config_io import deep_merge

            try:
                pcfg = PolicyConfig.model_validate(deep_merge(pcfg.model_dump(), cfg.init_overrides))
            except ValidationError as exc:
                raise ValueError(f"init_overrides: not a valid change of {init.config_path}: "
                                 f"{format_validation_error(exc)}") from exc
    elif cfg.model is not None:
        pcfg = PolicyConfig.model_validate(cfg.model)
    else:
        assert cfg.model_preset is not None
        pcfg = preset_config(cfg.model_preset)
    if cfg.text is not None:
        from deer_vla.model.text import text_config

        pcfg.text = text_config(cfg.text.source, trainable=cfg.text.trainable)
    # Run the head at inference over the same history length it was trained on.
    pcfg.head.history = cfg.window
    from deer_vla.train.spaces import spaces_from_dataset

    # the dataset's action / proprio spaces and cameras (a preset describes an architecture, not a robot)
    return spaces_from_dataset(pcfg, cfg.dataset, set(cfg.model or {}), fixed=cfg.init_checkpoint is not None)


def adopt_action_frame(model_config: Any, pcfg: Any) -> None:
    """Give weights loaded from a checkpoint (init_checkpoint, or a run resumed from before specs kept their
    frame) the dataset's action frame where theirs was never said: build_policy_config settles it, but the
    loaded model keeps its own config, and a checkpoint without the frame makes the policy node send tool-frame
    actions in base_link."""
    mine, data = model_config.action_spec, pcfg.action_spec
    if not mine.frame and data.frame and replace(data, frame="") == mine:
        model_config.action = data.to_dict()
        log.info("action frame '%s' (the dataset's) recorded in the checkpoint", data.frame)


def heads_of(model: MultiExitPolicy) -> list[torch.nn.Module]:
    return [model.head, model.aux_heads]


def trained_instructions(episodes: list[EpisodeArrays], paraphrase: bool, inherited: Any = None
                         ) -> dict[str, list[str]]:
    """Task -> every instruction the weights have been trained on: this run's draws (all paraphrases, or the
    recorded instruction only) joined with the record of the checkpoint it started from. Saved in extra.json
    so evaluation can say when held-out wording was trained on (instruction noise is not listed)."""
    seen: dict[str, set[str]] = {}
    if isinstance(inherited, dict):
        for task, texts in inherited.items():
            if isinstance(texts, list):
                seen.setdefault(str(task), set()).update(str(t) for t in texts)
    for ep in episodes:
        seen.setdefault(ep.task, set()).update(ep.instructions if paraphrase else ep.instructions[:1])
    return {task: sorted(texts) for task, texts in sorted(seen.items())}


def recorded_gripper(dataset: str | Path) -> dict[str, Any] | None:
    """The gripper command as the demonstrations recorded it, from an imported dataset's meta.json
    (collection.action_mapping.gripper: the raw values the importer mapped to -1 open and +1 closed), or None.
    Kept in the checkpoint so the policy node can say what its -1..+1 was on the robot."""
    from deer_vla.data.episodes import DatasetMeta

    root = Path(dataset)
    try:
        mapping = DatasetMeta.load(root).collection.get("action_mapping") if (root / "meta.json").is_file() else None
    except (OSError, ValueError, TypeError, KeyError):  # load_episodes reports an unreadable dataset itself
        return None
    gripper = mapping.get("gripper") if isinstance(mapping, dict) else None
    values = recorded_gripper_values(gripper)
    if values is None:
        return None
    assert isinstance(gripper, dict)  # recorded_gripper_values took it
    return {"raw_open": values[0], "raw_closed": values[1], "column": str(gripper.get("column", ""))}


def inherited_instructions(init_checkpoint: str | None) -> Any:
    """The instruction record of the checkpoint a run starts from (None: a fresh model, or no record)."""
    if init_checkpoint is None:
        return None
    from deer_vla.model.checkpoint_dir import CheckpointDir

    try:
        return CheckpointDir(resolve_checkpoint(init_checkpoint)).read_training().get("instructions")
    except (OSError, ValueError):  # build_policy_config already failed clearly on a missing checkpoint
        return None


def instruction_texts(episodes: list[EpisodeArrays]) -> list[str]:
    texts = sorted({t for ep in episodes for t in ep.instructions})
    return texts + heldout_paraphrases({ep.task for ep in episodes})


# --- the loop ----------------------------------------------------------------------------


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False, show_progress: bool = True) -> None:
        self.cfg = cfg
        backend_device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        self.info = init_distributed(backend_device)
        self.device = resolve_device(cfg, self.info)
        if self.device.type == "cpu":
            torch.set_num_threads(cfg.num_threads)
        self.out = Path(cfg.output_dir)
        steps_dir = self.out / "checkpoints"
        if steps_dir.exists() and not steps_dir.is_dir():  # the first step checkpoint failed on "File exists"
            raise ConfigError(f"{steps_dir} is not a folder: the step checkpoints go there; move it away")
        if self.info.main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.show_progress = show_progress and self.info.main
        torch.manual_seed(cfg.seed)
        self.start_step = 0  # where this process began (0, or the resumed checkpoint's step)
        self.resume_state: tuple[dict, dict] | None = None
        self.history: list[dict] = []

        from deer_vla.model.checkpoint import load_checkpoint
        from deer_vla.model.policy import MultiExitPolicy
        from deer_vla.model.tokenizer import build_word_tokenizer
        from deer_vla.train.data import load_episodes

        pcfg = build_policy_config(cfg)
        self.episodes = load_episodes(
            cfg.dataset,
            tuple(pcfg.cameras),
            int(pcfg.image_size),
            _action_dim(pcfg),
            int(pcfg.proprio_dim),
            cfg.max_episodes,
        )
        self.trained_instructions = trained_instructions(self.episodes, cfg.paraphrase,
                                                         inherited_instructions(cfg.init_checkpoint))
        self.recorded_gripper = recorded_gripper(cfg.dataset)
        ckpt = latest_checkpoint(self.out) if resume else None
        if resume and ckpt is None:
            log.warning("--resume: no checkpoint under %s/checkpoints; starting from scratch", self.out)
        if ckpt is not None:
            check_resumable(cfg, ckpt)
            self.model, self.tokenizer = load_checkpoint(ckpt, device="cpu")
            self.resume_state = load_train_state(ckpt)
            self.start_step = int(self.resume_state[1]["step"])
            log.info("resuming from %s (step %d)", ckpt, self.start_step)
            if self.info.main:  # rows logged after this checkpoint by the run that stopped are done again
                trim_log(self.out / "train_log.jsonl", self.start_step)
        else:
            if cfg.init_checkpoint is not None:
                self.model, self.tokenizer = load_checkpoint(resolve_checkpoint(cfg.init_checkpoint), device="cpu")
                self.model.config.head.history = pcfg.head.history
                if cfg.init_overrides:
                    self.model = self._changed_architecture(self.model, pcfg)
            else:
                self.model = MultiExitPolicy(pcfg)
                if pcfg.text is not None:
                    from deer_vla.model.text import source_tokenizer

                    self.tokenizer = source_tokenizer(pcfg.text.source)
                    if pcfg.text.trainable:
                        self.model.lm.embed_tokens.init_from_source(pcfg.text)
                else:
                    self.tokenizer = build_word_tokenizer(instruction_texts(self.episodes))
        adopt_action_frame(self.model.config, pcfg)
        self.model.to(self.device)
        self.dataset = WindowDataset(
            self.episodes, cfg.window, cfg.shift_pad, cfg.paraphrase, cfg.seed, cfg.instruction_noise,
            heldout=heldout_paraphrases({ep.task for ep in self.episodes}),
        )
        check_batch_fits(len(self.dataset), cfg.batch_size, self.info.world)
        if ckpt is None and self.info.main:
            # a fresh run: stale logs/checkpoints of an earlier run must not mix in (only now that it can run:
            # a setting refused above must not cost the earlier run's checkpoints), nor may its final model
            # stay loadable, with its thresholds and gates, until this run ends (or for good if it is stopped)
            remove_final_model(self.out)
            (self.out / "train_log.jsonl").unlink(missing_ok=True)
            shutil.rmtree(self.out / "checkpoints", ignore_errors=True)
        self.objective = DeerObjective(self.model, cfg.loss)
        self.objective.shard = (self.info.rank, self.info.world)
        self.stage: str | None = None
        self.step = self.start_step  # global optimizer steps done

    def _changed_architecture(self, source: MultiExitPolicy, pcfg: Any) -> MultiExitPolicy:
        from deer_vla.model.checkpoint import transfer_weights
        from deer_vla.model.policy import MultiExitPolicy

        model = MultiExitPolicy(pcfg)
        report = transfer_weights(source, model, torch.Generator().manual_seed(self.cfg.seed))
        log.info("init_overrides: %d tensors copied, resized %s, grown %s, new %s, dropped %s",
                 len(report["copied"]), report["resized"], report["grown"], report["new"], report["dropped"])
        return model

    # -- stage setup
    def _setup_stage(self, stage: str) -> None:
        """Trainable set, optimizer and schedule of a stage (a resumed run then restores their state)."""
        cfg = self.cfg
        model = self.model
        heads = heads_of(model)
        if stage == "joint":
            for p in model.parameters():
                p.requires_grad_(True)
            fixed = []  # parts that keep their (pretrained) weights: no gradients, no optimizer state
            if model.frozen_vision():
                fixed.append(model.vision)
            if cfg.freeze_lm_layers:
                fixed.append(model.lm.layers)
            for part in fixed:
                for p in part.parameters():
                    p.requires_grad_(False)
            model.train()
            head_ids = {id(p) for h in heads for p in h.parameters()}
            backbone = _ParamView([p for p in model.parameters() if id(p) not in head_ids and p.requires_grad])
            groups = param_groups(
                [(h, cfg.joint.lr * cfg.head_lr_scale) for h in heads] + [(backbone, cfg.joint.lr)], cfg.weight_decay
            )
            scfg = cfg.joint
        else:
            for p in model.parameters():
                p.requires_grad_(False)
            model.eval()  # frozen backbone: no dropout, fixed norms
            for h in heads:
                h.train()
                for p in h.parameters():
                    p.requires_grad_(True)
            groups = param_groups([(h, cfg.refine.lr) for h in heads], cfg.weight_decay)
            scfg = cfg.refine
        self.objective.freeze_backbone = stage == "refine"
        self.optimizer = make_optimizer(groups, fused_ok=True)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(scfg))
        # a new stage's DDP wrapper replaces the old one (its trainable set changed); drop the old first so
        # its gradient hooks cannot all-reduce alongside the new ones
        self.unit: torch.nn.Module = self.objective
        gc.collect()
        if self.info.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            unused = min(cfg.loss.aux, cfg.loss.random_exit, cfg.loss.split_exit) == 0
            self.unit = DDP(self.objective, device_ids=ids, find_unused_parameters=unused)
        self.stage = stage

    def _restore(self) -> None:
        assert self.resume_state is not None
        tensors, meta = self.resume_state
        # A run stopped exactly at the end of the joint stage resumes into a fresh refine optimizer.
        if meta.get("stage") == self.stage:
            optimizer_from_flat(self.optimizer, tensors, meta["optimizer"])
            sched = {k: v for k, v in (meta.get("scheduler") or {}).items() if k != "lr_lambdas"}
            self.scheduler.load_state_dict({**self.scheduler.state_dict(), **sched})
        restore_rng(tensors, meta.get("rng", {}))
        self.history = list(meta.get("history", []))
        self.resume_state = None

    # -- checkpoints
    def _save(self, step: int, final: bool = False, log_partial: dict | None = None) -> None:
        if not self.info.main:
            return
        from deer_vla.model.checkpoint import save_checkpoint

        self._check_weights(step)
        extra = self._extra(step, self.stage)
        target = step_dir(self.out, step)
        tmp = target.with_name(f".tmp_{target.name}")
        try:
            tmp.parent.mkdir(parents=True, exist_ok=True)
            save_checkpoint(self.model, self.tokenizer, tmp, extra=extra)
            save_train_state(tmp, step, self.stage or "joint", self.optimizer, self.scheduler,
                             {"history": self.history, "log_partial": log_partial or {}})
            commit_dir(tmp, target)
        except (OSError, SafetensorError) as exc:  # a full disk: its half folder held the space until a --resume
            shutil.rmtree(tmp, ignore_errors=True)
            raise SaveError(f"the step checkpoint {target}", exc) from exc
        prune_checkpoints(self.out, self.cfg.keep_checkpoints)
        if final:
            self._write_final(extra)

    def _check_weights(self, step: int) -> None:
        """FloatingPointError when a weight is NaN, infinite or beyond what any load takes (lean_load's rule): an
        update that diverged on the stage's last step, or a checkpoint's, was saved as a finished model that no
        load would take (lr 1e30: exit 0, weights of 1e30); the loss sees it only a step later."""
        from deer_vla.model.lean_load import magnitude_problem

        for name, tensor in self.model.state_dict().items():
            problem = magnitude_problem(tensor) if tensor.is_floating_point() else None
            if problem is not None:
                raise FloatingPointError(f"the weights diverged by step {step} ({name} {problem.split(':')[0]}); "
                                         "lower the learning rate (or the weight decay); nothing was saved at it")

    def _extra(self, step: int, stage: str | None) -> dict:
        """What a checkpoint records of its training (extra.json): step, stage, config, instructions, and the
        gripper's recorded values (an imported dataset's)."""
        training = {"step": step, "stage": stage, "config": self.cfg.model_dump(mode="json"),
                    "instructions": self.trained_instructions}
        if self.recorded_gripper is not None:
            training["gripper"] = self.recorded_gripper
        return {"training": training}

    def _write_final(self, extra: dict) -> None:
        """The model in ``output_dir``, file by file through a staging folder (each file whole or absent after a
        SIGKILL; a resume that finds training done writes them again). A cost profile measured on other weights
        goes (thresholds and gates carry their weights' digest and are refused by the runner on their own)."""
        from deer_vla.model.checkpoint import CheckpointDir, save_checkpoint

        staging = self.out / ".final.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            save_checkpoint(self.model, self.tokenizer, staging, extra=extra)
            old, new = CheckpointDir(self.out), CheckpointDir(staging)
            if old.weights_path.is_file() and old.weights_digest() != new.weights_digest():
                (self.out / CheckpointDir.PROFILE).unlink(missing_ok=True)
            for f in sorted(staging.iterdir(), key=lambda f: f.name == "config.json"):  # the config last
                os.replace(f, self.out / f.name)
            staging.rmdir()
            atomic_write_text(self.out / "train_history.json", json.dumps(self.history, indent=1))
        except (OSError, SafetensorError) as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise SaveError(f"the final model in {self.out}", exc) from exc

    # -- main loop
    def batch_stream(self, start_step: int) -> Iterator[WindowBatch]:
        """This run's batches from global step ``start_step`` on (windows, augmentation, tokens, collation)."""
        collate = make_collate(self.tokenizer, int(self.model.config.lm.max_text_len),
                               anchor=self.cfg.loss.wording_consistency > 0)
        return batches(self.dataset, self.cfg, self.info, collate, start_step)

    def train(self, stop_at: int | None = None) -> list[dict]:
        """Train to the end (or stop after global step ``stop_at``, checkpointing there, e.g. for a
        time-sliced run that is later resumed); returns the logged history."""
        from tqdm import tqdm

        cfg = self.cfg
        total = cfg.total_steps
        end = total if stop_at is None else min(stop_at, total)
        step = self.step
        if step >= total:  # the final model may be missing or torn (a kill during the final save): write it again
            log.info("already trained %d/%d steps; writing the final model again from the last checkpoint",
                     step, total)
            meta = self.resume_state[1] if self.resume_state is not None else {}
            self.history = list(meta.get("history", self.history))
            if self.info.main:
                self._write_final(self._extra(step, meta.get("stage", "joint")))
            return self.history
        data = self.batch_stream(step)
        gen = torch.Generator()
        amp = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if cfg.amp and self.device.type == "cuda"
            else nullcontext()
        )
        bar = tqdm(total=total, initial=step, desc="train", disable=not self.show_progress, dynamic_ncols=True)
        t_last, n_last = time.perf_counter(), step
        running: dict[str, float] = {}  # sums of the steps since the last row, all of stage running_stage
        running_stage: str | None = None
        # a resumed run goes on with the sums its checkpoint held: its rows are the uninterrupted run's
        partial = (self.resume_state[1].get("log_partial") if self.resume_state is not None else None) or {}
        n_timed = step  # it_per_s counts the steps run in this process, over this process's time
        if partial.get("sums"):
            running, running_stage = dict(partial["sums"]), partial["stage"]
            n_last = int(partial["since"])
        lr_used = partial.get("lr", 0.0)

        def pending() -> dict:
            """The sums not logged yet, for a checkpoint (train_state.json)."""
            return {"sums": running, "stage": running_stage, "since": n_last, "lr": lr_used}

        def log_row(stage: str) -> None:  # the steps since the last row, all of one stage
            nonlocal running, t_last, n_last, n_timed
            n = step - n_last
            now = time.perf_counter()
            row = {"step": step, "stage": stage, "lr": lr_used}
            row.update({k: v / max(n, 1) for k, v in running.items()})
            # None: no step of this row ran in this process (a resumed run's first row, at a stage boundary)
            row["it_per_s"] = (step - n_timed) / max(now - t_last, 1e-9) if step > n_timed else None
            self.history.append(row)
            running, t_last, n_last, n_timed = {}, now, step, step
            if self.info.main:
                with (self.out / "train_log.jsonl").open("a") as f:
                    f.write(json.dumps(row) + "\n")

        while True:
            stage = "joint" if step < cfg.joint.steps else "refine"
            if stage != self.stage:
                if running and running_stage != stage:  # a row never averages steps of two stages
                    log_row(running_stage or stage)
                self._setup_stage(stage)
                if self.resume_state is not None:
                    self._restore()
            if step >= end:
                break
            # the same seed on every rank: draws are made for the global batch and sliced (DeerObjective.shard)
            gen.manual_seed(cfg.seed * 1_000_003 * 10_000_019 + step)
            self.objective.generator = gen
            batch = next(data).to(self.device)
            with amp:
                loss, metrics = self.unit(batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower the learning rate (or a "
                                         "loss weight)")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            self.optimizer.step()
            # the stage's rate as scheduled for this step (groups scale it, e.g. the heads' head_lr_scale); read
            # before the scheduler moves on to the next step's
            group = self.optimizer.param_groups[0]
            lr_used = float(getattr(cfg, stage).lr * group["lr"] / group["initial_lr"])
            self.scheduler.step()
            step += 1
            self.step = step
            vals = _global_mean({"loss": loss.detach(), **metrics}, self.info)
            vals["grad_norm"] = float(gnorm)  # of the all-reduced gradients: the same on every rank
            for k, v in vals.items():
                running[k] = running.get(k, 0.0) + v
            running_stage = stage
            bar.update(1)
            bar.set_postfix(stage=stage, loss=f"{vals['loss']:.4f}")
            # not at a --stop-at step: its sums go into the checkpoint, and the resumed run logs the rows an
            # uninterrupted one does
            if step % cfg.log_every == 0 or step == total:
                log_row(stage)
            if step % cfg.checkpoint_every == 0 and step < end:
                self._save(step, log_partial=pending())
        bar.close()
        self._save(step, final=step == total, log_partial=pending())
        if self.info.world > 1:
            dist.barrier()
        return self.history


# TrainConfig keys that say how a run runs, not what it learns: a resume may change them
RESUME_MAY_CHANGE = frozenset({"output_dir", "device", "amp", "num_threads", "num_workers", "checkpoint_every",
                               "keep_checkpoints", "log_every"})


def check_resumable(cfg: TrainConfig, ckpt: Path) -> None:
    """ValueError when ``cfg`` would train something else than the run that wrote ``ckpt`` (other data, model,
    steps, learning rates, seed...): a resume took the new values silently, and the saved model's config
    described neither run."""
    from deer_vla.model.checkpoint_dir import CheckpointDir

    saved = CheckpointDir(ckpt).read_training().get("config")  # {} for a damaged record ("training": 5)
    if not isinstance(saved, dict):
        return  # a checkpoint from before the config was stored: nothing to compare
    now = cfg.model_dump(mode="json")
    defaults = _section_defaults(type(cfg))
    # a section (loss, joint, ...) saved before a key was added to it lacks that key: the run trained with its
    # default, so it is filled in, not counted as a change; a key since removed from the section (a loss term
    # dropped) cannot be set any more, so it is not compared either (as a removed top-level key is not)
    saved = {k: _with_defaults(v, defaults.get(k)) for k, v in saved.items()}
    changed = sorted(k for k in saved.keys() & now.keys() if k not in RESUME_MAY_CHANGE and saved[k] != now[k])
    if changed:
        shown = "; ".join(f"{k}: {saved[k]!r} -> {now[k]!r}" for k in changed[:4])
        raise ValueError(f"cannot resume from {ckpt}: it was trained with other settings ({shown}"
                         f"{'; ...' if len(changed) > 4 else ''}); resume with the run's own config, or start "
                         "afresh with --overwrite")


def _section_defaults(config_class: Any) -> dict[str, dict[str, Any]]:
    """The defaults of a config class's sections (fields that are config classes themselves) as JSON dicts,
    also where the field defaults to None (``instruction_noise: InstructionNoise | None = None``: a saved
    section is filled from InstructionNoise's own defaults). Free-form dict fields are not sections."""
    out = {}
    for name, info in config_class.model_fields.items():
        section = _section_class(info.annotation)
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            out[name] = default.model_dump(mode="json")
        elif section is not None:
            try:
                out[name] = section().model_dump(mode="json")
            except ValueError:  # a section without defaults for all its fields: nothing to fill from
                continue
    return out


def _section_class(annotation: Any) -> type[BaseModel] | None:
    """The config class (pydantic model) in a field's annotation (``X``, ``X | None``), or None."""
    for t in (annotation, *typing.get_args(annotation)):
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
    return None


def _with_defaults(saved: Any, default: Any) -> Any:
    """``saved`` with the keys of ``default`` it lacks taken from it, and without the keys ``default`` no longer
    has, at every level of nested dicts."""
    if not (isinstance(saved, dict) and isinstance(default, dict)):
        return saved
    return {**default, **{k: _with_defaults(v, default[k]) for k, v in saved.items() if k in default}}


def trim_log(path: Path, step: int) -> None:
    """Drop the log rows after ``step``: the resumed run logs those steps again."""
    if not path.is_file():
        return
    rows = path.read_text().splitlines()
    kept = [r for r in rows if _row_step(r) <= step]
    if len(kept) != len(rows):
        atomic_write_text(path, "".join(r + "\n" for r in kept))


def _row_step(row: str) -> float:
    try:
        return float(parse_json(row).get("step", 0))
    except (ValueError, AttributeError, TypeError):  # JsonTextError is a ValueError
        return float("inf")  # a torn last line (the kill): dropped


class _ParamView(torch.nn.Module):
    """A module-like holder so param_groups can treat the backbone's parameters as one unit."""

    def __init__(self, params: list[torch.nn.Parameter]) -> None:
        super().__init__()
        self._params = params

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]:
        return iter(self._params)


def _global_mean(values: dict[str, torch.Tensor], info: DistInfo) -> dict[str, float]:
    """Per-batch metrics averaged over the processes (the global batch's values: ranks hold equal shares)."""
    stacked = torch.stack([v.detach().float().reshape(()) for v in values.values()])
    if info.world > 1:
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        stacked /= info.world
    return dict(zip(values, stacked.tolist()))


def _action_dim(pcfg: Any) -> int:
    from deer_vla.core import ActionSpec

    action = pcfg.action
    spec = action if isinstance(action, ActionSpec) else ActionSpec.from_dict(dict(action))
    return spec.dim


# --- CLI ------------------------------------------------------------------------------------


# flags that steer this run and are not TrainConfig keys (not written to train_config.json)
RUN_FLAGS = ("resume", "no_progress", "stop_at", "overwrite")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deer-vla train", description="Train a multi-exit policy (DeeR recipe).")
    add_config_arguments(p, "the training config (default: built-in defaults)",
                         keys="keys: TrainConfig's fields; --set joint.steps=3 sets a nested one",
                         example="joint.steps=200")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in output_dir")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in an output_dir that holds an earlier run, whose weights and step "
                        "checkpoints are then deleted (without it, and without --resume, such a folder is refused)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                   help="stop after global step STEP with a checkpoint there (continue later with --resume)")
    return p


def remove_final_model(out: Path) -> None:
    """Delete a finished run's model files from ``out`` (its config first: without it no loader takes the
    folder for a checkpoint, whatever else a kill leaves)."""
    from deer_vla.model.checkpoint_dir import CheckpointDir

    for name in (CheckpointDir.CONFIG, CheckpointDir.WEIGHTS, CheckpointDir.EXTRA, CheckpointDir.PROFILE,
                 CheckpointDir.THRESHOLDS, CheckpointDir.GATES, "train_history.json"):
        (out / name).unlink(missing_ok=True)


def resume_problem(out: Path) -> str | None:
    """Why ``--resume`` may not run in ``out``: it holds a trained model but no step checkpoint to continue
    from, so the run would start from scratch and replace that model (None: there is one, or nothing to lose)."""
    if latest_checkpoint(out) is not None or not (out / "model.safetensors").is_file():
        return None
    return (f"--resume: {out} holds a trained model (model.safetensors) but no step checkpoint under "
            f"{out / 'checkpoints'} to continue from; --overwrite starts afresh and loses that model, or choose "
            "another output_dir")


def earlier_run(out: Path) -> str | None:
    """What a fresh run in ``out`` would delete or overwrite, in words (``None``: nothing)."""
    found = []
    if (out / "model.safetensors").is_file():
        found.append("model.safetensors")
    steps = sorted((out / "checkpoints").glob("step_*")) if (out / "checkpoints").is_dir() else []
    if steps:
        found.append(f"{len(steps)} step checkpoints, the last {steps[-1].name}")
    return ", ".join(found) or None


def load_settings(argv: list[str] | None = None) -> tuple[TrainConfig, argparse.Namespace]:
    """Defaults < --config < --set through the shared loader (ConfigError naming the key), and the run flags."""
    args = build_parser().parse_args(argv)
    return load_layered(TrainConfig, args, "training config", run_flags=RUN_FLAGS), args


def cli_main(argv: list[str] | None = None) -> int:
    try:
        cfg, args = load_settings(argv)
    except ConfigError as exc:
        print(f"deer-vla train: {exc}", file=sys.stderr)
        return 2
    if args.stop_at is not None and args.stop_at < 1:
        print(f"deer-vla train: --stop-at must be a step >= 1, got {args.stop_at}", file=sys.stderr)
        return 2
    out = Path(cfg.output_dir)
    # a fresh run deletes the step checkpoints and overwrites the weights
    problem = fresh_start_problem(args.resume, args.overwrite, lambda: earlier_run(out), out, "output_dir")
    if problem is None and args.resume:
        problem = resume_problem(out)
    if problem is None and shipped_name_of(out) is not None:
        problem = (f"output_dir {out} is the shipped checkpoint '{shipped_name_of(out)}' (the package's own "
                   "files): train into another folder")
    if problem:
        print(f"deer-vla train: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # created here (or empty before): left as found if the run cannot start
    fresh = missing_dirs(out)
    was_empty = out.is_dir() and not any(out.iterdir())
    lock = None

    def leave_as_found() -> None:
        if lock is not None:
            lock.close()
        if fresh or was_empty:  # nothing was trained: no folder holding only a lock file is left behind
            (out / LOCK_NAME).unlink(missing_ok=True)
            remove_empty_dirs(fresh)

    try:
        out.mkdir(parents=True, exist_ok=True)
        # one training per output_dir (torchrun: rank 0 holds the lock for all)
        lock = lock_folder(out, "training") if os.environ.get("RANK", "0") == "0" else None
    except FolderInUseError as exc:  # another training writes there
        print(f"deer-vla train: {error_text(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # an unwritable or full disk: refused before any work, as calibrate's --out
        print(f"deer-vla train: cannot write to output_dir {out}: {exc.strerror or exc}", file=sys.stderr)
        leave_as_found()
        return 2
    try:
        trainer = Trainer(cfg, resume=args.resume, show_progress=not args.no_progress)
    except (OSError, ValueError, KeyError) as exc:  # a missing or broken dataset, checkpoint or folder
        print(f"deer-vla train: {error_text(exc)}", file=sys.stderr)
        leave_as_found()
        return 2
    if trainer.info.main:
        config_file = out / "train_config.json"
        try:  # whole or not at all: a full disk left an empty train_config.json beside the checkpoints
            atomic_write_text(config_file, json.dumps(cfg.model_dump(mode="json"), indent=2))
        except OSError as exc:
            print(f"deer-vla train: cannot write {config_file}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    try:
        history = trainer.train(stop_at=args.stop_at)
    except FloatingPointError as exc:  # the loss or the weights diverged: say so in one line, and what is kept
        kept = latest_checkpoint(out)
        print(f"deer-vla train: {exc}; "
              + (f"the step checkpoints written before it are kept (the last: {kept})"
                 if kept is not None else "no step checkpoint was written before it"), file=sys.stderr)
        return 1
    except (SaveError, OSError, SafetensorError) as exc:  # a full disk while saving, or the log: what, what is kept
        kept = latest_checkpoint(out)
        print(f"deer-vla train: {error_text(exc)} (at step {trainer.step}); "
              + (f"--resume continues from {kept.name}" if kept is not None else "no step checkpoint was kept"),
              file=sys.stderr)
        return 1
    if trainer.info.main and history:
        last = history[-1]
        where = (f"model written to {out}" if trainer.step >= cfg.total_steps else
                 f"checkpoint written to {step_dir(out, trainer.step)} (continue with --resume)")
        print(f"trained {last['step']} steps; last loss {last['loss']:.4f}; {where}")
    if trainer.info.world > 1:
        dist.destroy_process_group()
    if lock is not None:
        lock.close()
    return 0


if __name__ == "__main__":
    sys.exit(cli_main())
