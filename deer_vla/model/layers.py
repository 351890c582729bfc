"""Building blocks: explicit-matmul attention, perceiver resampler, Flamingo gated cross-attention.

Attention is written with plain matmuls (not SDPA) so torch's FlopCounterMode
counts it on every device and the analytic FLOP count in profiling.py matches.
"""
from __future__ import annotations

import torch
from torch import nn


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head attention without masking: q (B,Lq,H), k/v (B,Lk,H) -> (B,Lq,H)."""
    b, lq, h = q.shape
    d = h // heads
    q = q.view(b, lq, heads, d).transpose(1, 2)
    k = k.view(b, k.shape[1], heads, d).transpose(1, 2)
    v = v.view(b, v.shape[1], heads, d).transpose(1, 2)
    w = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * d**-0.5, dim=-1)
    return torch.matmul(w, v).transpose(1, 2).reshape(b, lq, h)


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, mult: int) -> None:
        super().__init__(nn.LayerNorm(dim), nn.Linear(dim, dim * mult), nn.GELU(), nn.Linear(dim * mult, dim))


class PerceiverLayer(nn.Module):
    """Latents attend to [inputs; latents] (Flamingo's perceiver resampler block)."""

    def __init__(self, dim: int, heads: int, ff_mult: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm_x = nn.LayerNorm(dim)
        self.norm_lat = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, 2 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.ff = FeedForward(dim, ff_mult)

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        lat = self.norm_lat(latents)
        k, v = self.kv(torch.cat([self.norm_x(x), lat], dim=1)).chunk(2, dim=-1)
        latents = latents + self.out(attend(self.q(lat), k, v, self.heads))
        return latents + self.ff(latents)


class PerceiverResampler(nn.Module):
    """(B, N, Din) patch features -> (B, num_latents, dim) visual tokens."""

    def __init__(self, in_dim: int, num_patches: int, dim: int, num_latents: int, depth: int, heads: int,
                 ff_mult: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, dim)
        self.pos = nn.Parameter(torch.randn(num_patches, dim) * 0.02)
        self.latents = nn.Parameter(torch.randn(num_latents, dim) * 0.02)
        self.layers = nn.ModuleList(PerceiverLayer(dim, heads, ff_mult) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if feats.shape[1] != self.pos.shape[0]:
            raise ValueError(f"resampler expects {self.pos.shape[0]} patches, got {feats.shape[1]}")
        x = self.proj(feats) + self.pos
        lat = self.latents.unsqueeze(0).expand(feats.shape[0], -1, -1)
        for layer in self.layers:
            lat = layer(x, lat)
        return self.norm(lat)


class GatedCrossAttention(nn.Module):
    """Flamingo block: text attends to visual tokens; tanh gates start at 0 so the LM starts unchanged."""

    def __init__(self, dim: int, heads: int, ff_mult: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, 2 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.attn_gate = nn.Parameter(torch.zeros(1))
        self.ff = FeedForward(dim, ff_mult)
        self.ff_gate = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        k, v = self.kv(visual).chunk(2, dim=-1)
        x = x + torch.tanh(self.attn_gate) * self.out(attend(self.q(self.norm(x)), k, v, self.heads))
        return x + torch.tanh(self.ff_gate) * self.ff(x)


class ConvEncoder(nn.Module):
    """Small built-in CNN: stride-2 conv stages -> (B, (S/2^n)^2, C_last) patch features."""

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        cin = 3
        for c in channels:
            stages += [nn.Conv2d(cin, c, 3, stride=2, padding=1), nn.GroupNorm(1, c), nn.GELU()]
            cin = c
        self.net = nn.Sequential(*stages)
        self.num_stages = len(channels)
        self.out_dim = channels[-1]

    def num_patches(self, image_size: int) -> int:
        s = image_size
        for _ in range(self.num_stages):
            s = (s + 1) // 2
        return s * s

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).flatten(2).transpose(1, 2)
