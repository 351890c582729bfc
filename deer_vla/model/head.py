"""Action heads: the shared recurrent (LSTM) head and per-exit auxiliary heads (training only)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deer_vla.model.config import HeadConfig

LSTMState = tuple[torch.Tensor, torch.Tensor]


@dataclass
class HeadOutput:
    motion: torch.Tensor  # (B,T,C) in [-1, 1]
    gripper_logit: torch.Tensor  # (B,T); > 0 means "closed"
    hidden: LSTMState | None  # recurrent state after the last step (None for aux heads)


class _ProprioInput(nn.Module):
    """features (B,T,D) [+ projected proprio (B,T,P)] -> head input; missing proprio counts as zeros.

    ``norm`` = (mean, std) per value standardises proprio first (ProprioSpec); plain floats, not
    buffers, so they come from the config and never from (or into) the weights file.
    """

    def __init__(self, feature_dim: int, proprio_dim: int, embed: int,
                 norm: tuple[tuple[float, ...], tuple[float, ...]] | None = None) -> None:
        super().__init__()
        self.proprio_dim = proprio_dim
        self.feature_dim = feature_dim
        self.proprio = nn.Linear(proprio_dim, embed) if proprio_dim > 0 else None
        self.out_dim = feature_dim + (embed if proprio_dim > 0 else 0)
        self.norm = norm if norm and norm[0] else None

    def forward(self, features: torch.Tensor, proprio: torch.Tensor | None) -> torch.Tensor:
        if features.dim() != 3:
            raise ValueError(f"head features must be (B,T,D), got shape {tuple(features.shape)}")
        if self.proprio is None:
            return features
        if proprio is None:
            proprio = features.new_zeros(*features.shape[:2], self.proprio_dim)
        if proprio.shape != (*features.shape[:2], self.proprio_dim):
            raise ValueError(f"proprio must be (B,T,{self.proprio_dim}) = {(*features.shape[:2], self.proprio_dim)}, "
                             f"got {tuple(proprio.shape)}")
        proprio = proprio.to(features.dtype)
        if self.norm is not None:
            mean, std = (torch.tensor(v, dtype=proprio.dtype, device=proprio.device) for v in self.norm)
            proprio = (proprio - mean) / std
        return torch.cat([features, self.proprio(proprio)], dim=-1)


class ActionHead(nn.Module):
    """LSTM over per-step exit features; shared by all exits."""

    def __init__(self, feature_dim: int, proprio_dim: int, num_continuous: int, cfg: HeadConfig,
                 proprio_norm: tuple[tuple[float, ...], tuple[float, ...]] | None = None) -> None:
        super().__init__()
        self.inputs = _ProprioInput(feature_dim, proprio_dim, cfg.proprio_embed, proprio_norm)
        self.lstm = nn.LSTM(self.inputs.out_dim, cfg.hidden, num_layers=cfg.layers, batch_first=True)
        self.norm = nn.LayerNorm(cfg.hidden)
        self.motion = nn.Linear(cfg.hidden, num_continuous)
        self.gripper = nn.Linear(cfg.hidden, 1)

    def forward(self, features: torch.Tensor, proprio: torch.Tensor | None = None,
                hidden: LSTMState | None = None) -> HeadOutput:
        out, new_hidden = self.lstm(self.inputs(features, proprio), hidden)
        return self._outputs(out, new_hidden)

    def _outputs(self, out: torch.Tensor, hidden: LSTMState | None) -> HeadOutput:
        """LSTM outputs (B,T,H) -> actions."""
        out = self.norm(out)
        return HeadOutput(torch.tanh(self.motion(out)), self.gripper(out).squeeze(-1), hidden)

    def history_starts(self, history: torch.Tensor, proprio: torch.Tensor | None = None) -> LSTMState:
        """history (B,T,D) -> the LSTM state before every step t of it, run from zero over history[:, :t]
        ((layers, B*T, H) each; zero at t = 0): what ``forward_over_history`` continues from."""
        b, t, _ = history.shape
        past = self.inputs(history, proprio)
        shape = (self.lstm.num_layers, b, self.lstm.hidden_size)
        h, c = past.new_zeros(shape), past.new_zeros(shape)
        starts_h, starts_c = [h], [c]
        for step in range(t - 1):
            _, (h, c) = self.lstm(past[:, step : step + 1], (h, c))
            starts_h.append(h)
            starts_c.append(c)
        return (torch.stack(starts_h, dim=2).reshape(shape[0], b * t, shape[2]),
                torch.stack(starts_c, dim=2).reshape(shape[0], b * t, shape[2]))

    def forward_over_history(self, history: torch.Tensor, current: torch.Tensor,
                             proprio: torch.Tensor | None = None, starts: LSTMState | None = None) -> HeadOutput:
        """history, current (B,T,D) -> the output at every t of the LSTM run from zero over history[:, :t] and
        then current[:, t]: what the runner computes at step t when the history keeps one exit's features
        (``HeadConfig.history_source``) and step t ran another. ``starts``: ``history_starts(history, proprio)``
        computed once for several ``current``. ``hidden`` is None."""
        if history.shape != current.shape:
            raise ValueError(f"history {tuple(history.shape)} and current {tuple(current.shape)} features differ")
        b, t, _ = current.shape
        now = self.inputs(current, proprio)
        h0, c0 = self.history_starts(history, proprio) if starts is None else starts
        out, _ = self.lstm(now.reshape(b * t, 1, now.shape[-1]), (h0, c0))
        return self._outputs(out.reshape(b, t, self.lstm.hidden_size), None)

    def forward_per_step(self, current: torch.Tensor, proprio: torch.Tensor | None = None) -> HeadOutput:
        """current (B,T,D) -> the output at every t of the LSTM run from zero over current[:, t] alone: what the
        runner computes with ``HeadConfig.history_source = "none"``. ``hidden`` is None."""
        b, t, _ = current.shape
        now = self.inputs(current, proprio)
        out, _ = self.lstm(now.reshape(b * t, 1, now.shape[-1]))
        return self._outputs(out.reshape(b, t, self.lstm.hidden_size), None)

    def history_state(self, features: torch.Tensor, proprio: torch.Tensor | None = None) -> LSTMState:
        """The LSTM state after a window of past steps, from zero (no action outputs): continuing from it
        over one more step equals running forward() over the whole window."""
        _, hidden = self.lstm(self.inputs(features, proprio))
        return hidden


class AuxHead(nn.Module):
    """Per-exit MLP head (no history): an extra training signal at every exit."""

    def __init__(self, feature_dim: int, proprio_dim: int, num_continuous: int, cfg: HeadConfig,
                 proprio_norm: tuple[tuple[float, ...], tuple[float, ...]] | None = None) -> None:
        super().__init__()
        self.inputs = _ProprioInput(feature_dim, proprio_dim, cfg.proprio_embed, proprio_norm)
        self.mlp = nn.Sequential(nn.LayerNorm(self.inputs.out_dim), nn.Linear(self.inputs.out_dim, cfg.aux_hidden),
                                 nn.GELU(), nn.Linear(cfg.aux_hidden, num_continuous + 1))

    def forward(self, features: torch.Tensor, proprio: torch.Tensor | None = None,
                hidden: LSTMState | None = None) -> HeadOutput:
        out = self.mlp(self.inputs(features, proprio))
        return HeadOutput(torch.tanh(out[..., :-1]), out[..., -1], None)


def gripper_value(logit: torch.Tensor) -> torch.Tensor:
    """Gripper logit -> action value in [-1, 1] (+1 closed): 2*sigmoid(logit) - 1."""
    return torch.tanh(logit / 2)
