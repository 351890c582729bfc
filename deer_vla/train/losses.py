"""The DeeR training objective over a window of T steps.

One forward pass computes every exit's feature for every frame of the
window; the loss then sums (weights from LossWeights):
  aux         each exit's auxiliary head on that exit's features,
  final       the shared head on the deepest exit,
  random_exit the shared head on features whose exit is drawn per (sample, time
              step), uniformly or with random_exit_weights - at run time the
              head's history mixes exits,
  split_exit  the shared head on a window split at a random point into an
              earlier part at one exit and a later part at another,
  wording_consistency  (optional, not in the original) the random_exit draw's
              output on the drawn wording against the deepest exit's output on
              the episode's recorded instruction (detached, no gradient).
With ``HeadConfig.history_source = "first_exit"`` the shared head's history at
every step is exit 1's feature and only the step itself reads the term's exit
(ActionHead.forward_over_history), as the runner does then; with ``"proprio"``
the history holds zero features (past steps' proprioception only); with
``"none"`` the head reads every step alone (``ActionHead.forward_per_step``). With
``PolicyConfig.past_frames`` each step's decoder also reads the frames before
it in its window (the window's first step stands in for earlier ones).
Each term = Huber(motion) + gripper_weight * BCE(gripper logit, closed?); in
wording_consistency the targets are the teacher's motion and gripper probability.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from deer_vla.core.config_io import ConfigError
from deer_vla.train.config import LossWeights

if TYPE_CHECKING:
    from deer_vla.model.head import HeadOutput, LSTMState
    from deer_vla.model.policy import MultiExitPolicy


@dataclass
class WindowBatch:
    """images: cam -> (B, T, 3, S, S) float in [0, 1]; actions (B, T, A) in [-1, 1], gripper last."""

    images: dict[str, torch.Tensor]
    input_ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (B, L)
    proprio: torch.Tensor | None  # (B, T, P)
    actions: torch.Tensor  # (B, T, A)
    # the episode's recorded instruction, tokenized like input_ids (only when wording_consistency needs it)
    anchor_ids: torch.Tensor | None = None  # (B, L')
    anchor_mask: torch.Tensor | None = None  # (B, L')

    def to(self, device: torch.device | str) -> WindowBatch:
        return WindowBatch(
            images={k: v.to(device, non_blocking=True) for k, v in self.images.items()},
            input_ids=self.input_ids.to(device),
            attention_mask=self.attention_mask.to(device),
            proprio=None if self.proprio is None else self.proprio.to(device),
            actions=self.actions.to(device),
            anchor_ids=None if self.anchor_ids is None else self.anchor_ids.to(device),
            anchor_mask=None if self.anchor_mask is None else self.anchor_mask.to(device),
        )

    @property
    def shape(self) -> tuple[int, int]:
        b, t = self.actions.shape[:2]
        return int(b), int(t)


def action_loss(
    motion: torch.Tensor, gripper_logit: torch.Tensor, target: torch.Tensor, w: LossWeights
) -> torch.Tensor:
    """Huber on the continuous axes + weighted BCE on the gripper (target > 0 means closed)."""
    c = motion.shape[-1]
    pose = F.huber_loss(motion.float(), target[..., :c].float(), delta=w.huber_delta)
    closed = (target[..., -1] > 0).float()
    grip = F.binary_cross_entropy_with_logits(gripper_logit.float(), closed)
    return pose + w.gripper * grip


def teacher_loss(motion: torch.Tensor, gripper_logit: torch.Tensor, teacher: HeadOutput,
                 w: LossWeights) -> torch.Tensor:
    """action_loss with a teacher's (detached) motion and gripper probability as targets."""
    pose = F.huber_loss(motion.float(), teacher.motion.detach().float(), delta=w.huber_delta)
    closed = torch.sigmoid(teacher.gripper_logit.detach().float())
    grip = F.binary_cross_entropy_with_logits(gripper_logit.float(), closed)
    return pose + w.gripper * grip


def gather_exits(feats: torch.Tensor, exit_idx: torch.Tensor) -> torch.Tensor:
    """feats (B, T, N, D), exit_idx (B, T) 0-based -> (B, T, D)."""
    b, t, _, d = feats.shape
    return feats.gather(2, exit_idx.view(b, t, 1, 1).expand(b, t, 1, d)).squeeze(2)


class DeerObjective(nn.Module):
    """Wraps a MultiExitPolicy so one forward() returns the loss (the unit DDP wraps)."""

    def __init__(self, model: MultiExitPolicy, weights: LossWeights) -> None:
        super().__init__()
        self.model = model
        self.weights = weights
        n, exit_weights = model.config.num_exits, weights.random_exit_weights
        if exit_weights is not None and len(exit_weights) != n:  # found before any step, not at the first batch
            raise ConfigError(f"loss.random_exit_weights has {len(exit_weights)} weights; the model has {n} exits")
        self.freeze_backbone = False
        # exit draws come from this generator (reseeded per step by the trainer): reproducible on resume
        self.generator: torch.Generator | None = None
        # (rank, world) under DDP: draws are made for the global batch (world equal shares, rank r's rows
        # r*B..(r+1)*B-1) and sliced, so N processes draw exactly what one process with N times the batch does
        self.shard: tuple[int, int] = (0, 1)

    def _rank_share(self, draw: Callable[[tuple[int, ...]], torch.Tensor], shape: tuple[int, ...],
                    device: torch.device) -> torch.Tensor:
        """This rank's ``shape`` rows of ``draw``'s draws for the global batch (see ``shard``)."""
        rank, world = self.shard
        rows = shape[0]
        return draw((rows * world, *shape[1:]))[rank * rows : (rank + 1) * rows].to(device)

    def _randint(self, low: int, high: int, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        return self._rank_share(lambda s: torch.randint(low, high, s, generator=self.generator), shape, device)

    def _draw_exits(self, n: int, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """0-based exits of ``shape``: uniform over the n exits, or from ``weights.random_exit_weights``."""
        weights = self.weights.random_exit_weights
        if weights is None:
            return self._randint(0, n, shape, device)
        probs = torch.tensor(weights, dtype=torch.float64)
        return self._rank_share(lambda s: torch.multinomial(probs, math.prod(s), replacement=True,
                                                            generator=self.generator).view(s), shape, device)

    def window_features(self, batch: WindowBatch, anchor: bool = False) -> torch.Tensor:
        """(B, T, N, D): every exit's feature at every frame, from one backbone pass over B*T frames
        (``anchor``: reading the recorded instruction instead of the drawn one)."""
        b, t = batch.shape
        images = {k: v.reshape(b * t, *v.shape[2:]) for k, v in batch.images.items()}
        if anchor:
            if batch.anchor_ids is None or batch.anchor_mask is None:
                raise ValueError(
                    "wording_consistency needs the batch's recorded instructions (make_collate(anchor=True))"
                )
            ids, mask = batch.anchor_ids, batch.anchor_mask
        else:
            ids, mask = batch.input_ids, batch.attention_mask
        ids = ids.repeat_interleave(t, dim=0)
        mask = mask.repeat_interleave(t, dim=0)
        proprio = None if batch.proprio is None else batch.proprio.reshape(b * t, -1)
        feats = self.model.exit_features(images, ids, mask, proprio, window=t)  # past frames from the window
        return feats.reshape(b, t, feats.shape[1], feats.shape[2])

    def _history(self, feats: torch.Tensor, proprio: torch.Tensor | None) -> LSTMState | None:
        """The head's state before every step of the window when its history is exit 1's or proprioception
        alone (None when it is the committed exits'): computed once per window, shared by every term that
        reads ``feats``."""
        source = self.model.config.head.history_source
        if source == "first_exit":
            return self.model.head.history_starts(feats[:, :, 0], proprio)
        if source == "proprio":
            return self.model.head.history_starts(torch.zeros_like(feats[:, :, 0]), proprio)
        return None

    def _shared_head(self, current: torch.Tensor, feats: torch.Tensor, proprio: torch.Tensor | None,
                     starts: LSTMState | None) -> HeadOutput:
        """The shared head over a window whose step t ran ``current[:, t]`` (B, T, D), with the history the runner
        keeps (``HeadConfig.history_source``): those same features, or exit 1's of ``feats`` (B, T, N), whose
        states ``starts`` (``_history``) holds."""
        if starts is not None:
            return self.model.head.forward_over_history(feats[:, :, 0], current, proprio, starts)
        if self.model.config.head.history_source == "none":
            return self.model.head.forward_per_step(current, proprio)
        return self.model.head(current, proprio)

    def forward(self, batch: WindowBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        w = self.weights
        if self.freeze_backbone:
            with torch.no_grad():
                feats = self.window_features(batch)
        else:
            feats = self.window_features(batch)
        b, t, n, _ = feats.shape
        target, proprio = batch.actions, batch.proprio
        terms: dict[str, torch.Tensor] = {}
        if w.aux > 0:
            aux = [
                action_loss(*_out(aux_head(feats[:, :, k], proprio)), target, w)
                for k, aux_head in enumerate(self.model.aux_heads)
            ]
            terms["aux"] = torch.stack(aux).sum()  # summed over exits, as in the original
        starts = self._history(feats, proprio)
        final_out = self._shared_head(feats[:, :, n - 1], feats, proprio, starts)
        terms["final"] = action_loss(*_out(final_out), target, w)
        if w.random_exit > 0 or w.wording_consistency > 0:  # one draw serves both terms
            idx = self._draw_exits(n, (b, t), feats.device)
            drawn = _out(self._shared_head(gather_exits(feats, idx), feats, proprio, starts))
            if w.random_exit > 0:
                terms["random_exit"] = action_loss(*drawn, target, w)
            if w.wording_consistency > 0:
                with torch.no_grad():
                    anchored = self.window_features(batch, anchor=True)
                    teacher = self._shared_head(anchored[:, :, n - 1], anchored, proprio,
                                                self._history(anchored, proprio))
                terms["wording_consistency"] = teacher_loss(*drawn, teacher, w)
        if w.split_exit > 0 and t >= 2:
            split = self._randint(1, t, (b, 1), feats.device)
            first = self._randint(0, n, (b, 1), feats.device)
            second = self._randint(0, n, (b, 1), feats.device)
            steps = torch.arange(t, device=feats.device).unsqueeze(0)
            idx = torch.where(steps < split, first, second)
            split_out = self._shared_head(gather_exits(feats, idx), feats, proprio, starts)
            terms["split_exit"] = action_loss(*_out(split_out), target, w)
        weight = {"aux": w.aux, "final": w.final, "random_exit": w.random_exit, "split_exit": w.split_exit,
                  "wording_consistency": w.wording_consistency}
        loss = sum((weight[k] * v for k, v in terms.items()), torch.zeros((), device=feats.device))
        with torch.no_grad():
            motion, grip = _out(final_out)
            c = motion.shape[-1]
            metrics = {f"loss_{k}": v.detach() for k, v in terms.items()}
            metrics["final_motion_mae"] = (motion.float() - target[..., :c]).abs().mean()
            metrics["final_gripper_acc"] = ((grip > 0) == (target[..., -1] > 0)).float().mean()
        return loss, metrics


def _out(output: HeadOutput) -> tuple[torch.Tensor, torch.Tensor]:
    """HeadOutput -> (motion, gripper_logit)."""
    return output.motion, output.gripper_logit
