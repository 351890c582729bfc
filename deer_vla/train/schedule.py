"""Learning-rate schedules and optimizer parameter groups."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from deer_vla.train.config import StageConfig


def lr_lambda(stage: StageConfig) -> Callable[[int], float]:
    """Multiplier of the stage's lr at stage-local step s: linear warm-up, then cosine/linear decay."""

    def f(s: int) -> float:
        if stage.warmup_steps and s < stage.warmup_steps:
            return (s + 1) / stage.warmup_steps
        if stage.schedule == "constant":
            return 1.0
        span = max(1, stage.steps - stage.warmup_steps)
        frac = min(1.0, (s - stage.warmup_steps) / span)
        decay = 0.5 * (1 + math.cos(math.pi * frac)) if stage.schedule == "cosine" else 1.0 - frac
        return stage.min_lr_ratio + (1 - stage.min_lr_ratio) * decay

    return f


def param_groups(
    modules: Iterable[tuple[nn.Module, float]], weight_decay: float
) -> list[dict]:
    """AdamW groups per (module, lr): matrices decay, biases/norm scales/embeddings' 1-D params do not."""
    groups: list[dict] = []
    seen: set[int] = set()
    for module, lr in modules:
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for p in module.parameters():
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            (decay if p.ndim >= 2 else no_decay).append(p)
        if decay:
            groups.append({"params": decay, "lr": lr, "weight_decay": weight_decay})
        if no_decay:
            groups.append({"params": no_decay, "lr": lr, "weight_decay": 0.0})
    return groups


def make_optimizer(groups: list[dict], fused_ok: bool) -> torch.optim.AdamW:
    if not groups:
        raise ValueError("no trainable parameters for this stage")
    return torch.optim.AdamW(groups, betas=(0.9, 0.999), eps=1e-8, foreach=fused_ok or None)
