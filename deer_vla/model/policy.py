"""MultiExitPolicy: vision -> resampler -> decoder segments with gated cross-attention -> exits -> action head.

Exit k (1-based) pools the hidden states after the first ``segment_ends[k-1]``
decoder layers. ``run_segment`` continues from the previous exit's hidden
states, so going one exit deeper never recomputes earlier layers.
``max_exit`` builds only the layers, cross-attention blocks, exit norms and
aux heads up to that exit.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from deer_vla.model.backbones import DecoderStack, HFVisionTower, TextContext
from deer_vla.model.config import PolicyConfig
from deer_vla.model.head import ActionHead, AuxHead
from deer_vla.model.layers import ConvEncoder, GatedCrossAttention, PerceiverResampler


@dataclass
class SegmentState:
    hidden: torch.Tensor  # (B,L,H) text hidden states after the exits run so far
    visual: torch.Tensor  # (B,V,H) visual tokens (all cameras)
    text_mask: torch.Tensor  # (B,L) bool, True = real token
    context: TextContext
    proprio: torch.Tensor | None = None
    exit_index: int = 0  # exits run so far (0 = only encode)
    feature: torch.Tensor | None = None  # (B,D) feature of exit ``exit_index``


def masked_max_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over the instruction's real tokens (padding excluded)."""
    neg = torch.finfo(hidden.dtype).min
    return hidden.masked_fill(~mask.unsqueeze(-1), neg).amax(dim=1)


class MultiExitPolicy(nn.Module):
    def __init__(self, config: PolicyConfig, max_exit: int | None = None, empty_lm: bool = False,
                 empty_vision: bool = False) -> None:
        """``empty_lm`` / ``empty_vision``: the HF decoder layers / vision tower get parameters on the meta
        device, to be filled from pretrained files (pretrained.policy_from_pretrained) without a second copy."""
        super().__init__()
        self.config = config
        ends = config.segment_ends()
        if max_exit is None:
            max_exit = len(ends)
        if not 1 <= max_exit <= len(ends):
            raise ValueError(f"max_exit={max_exit} outside 1..{len(ends)} (exits of this config)")
        self.segment_ends = ends[:max_exit]
        n_layers = self.segment_ends[-1]
        lm = config.lm
        hidden = lm.hidden_size
        spec = config.action_spec

        self.vision: nn.Module
        self.image_mean: torch.Tensor  # buffers: typed here, registered below
        self.image_std: torch.Tensor
        if config.vision.kind == "cnn":
            self.vision = ConvEncoder(config.vision.channels)
        else:
            self.vision = HFVisionTower(config.vision, empty=empty_vision)
        self.register_buffer("image_mean", torch.tensor(config.vision.image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(config.vision.image_std).view(1, 3, 1, 1), persistent=False)
        r = config.resampler
        self.resampler = PerceiverResampler(self.vision.out_dim, self.vision.num_patches(config.image_size), hidden,
                                            r.num_latents, r.depth, r.heads, r.ff_mult)
        self.camera_embed = nn.Parameter(torch.randn(len(config.cameras), hidden) * 0.02)
        self.lm = DecoderStack(lm, n_layers, config.text, empty=empty_lm)
        self.xattn = nn.ModuleDict({
            str(i): GatedCrossAttention(hidden, lm.cross_attn_heads, lm.cross_attn_ff_mult)
            for i in config.cross_attn_layers() if i < n_layers
        })
        self.exit_norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in self.segment_ends)
        pspec = config.proprio_spec
        norm = (pspec.mean, pspec.std)
        self.head = ActionHead(hidden, config.proprio_dim, spec.num_continuous, config.head, norm)
        self.aux_heads = nn.ModuleList(
            AuxHead(hidden, config.proprio_dim, spec.num_continuous, config.head, norm) for _ in self.segment_ends
        )

    @property
    def num_exits(self) -> int:
        return len(self.segment_ends)

    @property
    def feature_dim(self) -> int:
        return self.lm.hidden_size

    # -- shared prefix
    def frozen_vision(self) -> bool:
        """A pretrained HF vision tower kept fixed (the built-in CNN always trains)."""
        return self.config.vision.kind != "cnn" and self.config.vision.freeze

    def encode_images(self, images: dict[str, torch.Tensor]) -> torch.Tensor:
        cams = self.config.cameras
        missing = [c for c in cams if c not in images]
        if missing:
            raise ValueError(f"missing camera image(s) {missing}; model cameras are {cams}")
        x = torch.stack([images[c] for c in cams], dim=1)  # (B,C,3,S,S)
        b, c = x.shape[:2]
        s = self.config.image_size
        if x.shape[2:] != (3, s, s):
            raise ValueError(f"images must be (B,3,{s},{s}) in [0,1], got {tuple(x.shape[2:])} per camera")
        dtype = self.camera_embed.dtype
        x = ((x.reshape(b * c, 3, s, s).to(dtype) - self.image_mean.to(dtype)) / self.image_std.to(dtype))
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen_vision()):
            feats = self.vision(x)
        tokens = self.resampler(feats).view(b, c, -1, self.feature_dim) + self.camera_embed[None, :, None]
        return tokens.reshape(b, -1, self.feature_dim)

    def encode(self, images: dict[str, torch.Tensor], input_ids: torch.Tensor, attention_mask: torch.Tensor,
               proprio: torch.Tensor | None = None) -> SegmentState:
        if input_ids.dim() != 2 or attention_mask.shape != input_ids.shape:
            raise ValueError(f"input_ids / attention_mask must both be (B,L), got {tuple(input_ids.shape)} "
                             f"and {tuple(attention_mask.shape)}")
        mask = attention_mask.bool()
        if not bool(mask.any(dim=1).all()):
            raise ValueError("every instruction needs at least one token (attention_mask row is all zero)")
        visual = self.encode_images(images)
        hidden, ctx = self.lm.embed(input_ids, attention_mask)
        return SegmentState(hidden=hidden, visual=visual, text_mask=mask, context=ctx, proprio=proprio)

    # -- segments
    def _layer(self, i: int, hidden: torch.Tensor, state: SegmentState) -> torch.Tensor:
        xattn = self.xattn[str(i)] if str(i) in self.xattn else None
        if xattn is not None:
            hidden = xattn(hidden, state.visual)
        return self.lm.layer(i, hidden, state.context)

    def _exit_feature(self, k: int, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.exit_norms[k](masked_max_pool(hidden, mask))

    def run_segment(self, state: SegmentState) -> SegmentState:
        """Run the next segment from ``state`` (exit k -> exit k+1)."""
        k = state.exit_index
        if k >= self.num_exits:
            raise IndexError(f"all {self.num_exits} loaded exits already ran (exit {k}); call encode for a new step")
        start = self.segment_ends[k - 1] if k > 0 else 0
        hidden = state.hidden
        for i in range(start, self.segment_ends[k]):
            hidden = self._layer(i, hidden, state)
        return replace(state, hidden=hidden, exit_index=k + 1, feature=self._exit_feature(k, hidden, state.text_mask))

    def exit_features(self, images: dict[str, torch.Tensor], input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      proprio: torch.Tensor | None = None, max_exit: int | None = None) -> torch.Tensor:
        """One-shot forward through all layers up to ``max_exit``: (B, N, D) features of exits 1..N."""
        n = self.num_exits if max_exit is None else max_exit
        if not 1 <= n <= self.num_exits:
            raise ValueError(f"max_exit={max_exit} outside 1..{self.num_exits}")
        state = self.encode(images, input_ids, attention_mask, proprio)
        hidden = state.hidden
        feats: list[torch.Tensor] = []
        for i in range(self.segment_ends[n - 1]):
            hidden = self._layer(i, hidden, state)
            if i + 1 in self.segment_ends:
                feats.append(self._exit_feature(len(feats), hidden, state.text_mask))
        return torch.stack(feats, dim=1)
