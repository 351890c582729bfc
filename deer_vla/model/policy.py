"""MultiExitPolicy: vision -> resampler -> decoder segments with gated cross-attention -> exits -> action head.

Exit k (1-based) pools the hidden states after the first ``segment_ends[k-1]``
decoder layers. ``run_segment`` continues from the previous exit's hidden
states, so going one exit deeper never recomputes earlier layers.
``max_exit`` builds only the layers, cross-attention blocks, exit norms and
aux heads up to that exit. With ``config.past_frames = K`` the cross-attention
reads the visual tokens of the current step and the K before it, each frame
with its own embedding (``frame_embed``); the caller keeps the earlier steps'
tokens (``SegmentState.frame_tokens``), or passes training windows whole.
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
    visual: torch.Tensor  # (B,V,H) visual tokens the cross-attention reads (all cameras, past frames too)
    text_mask: torch.Tensor  # (B,L) bool, True = real token
    context: TextContext
    proprio: torch.Tensor | None = None
    exit_index: int = 0  # exits run so far (0 = only encode)
    feature: torch.Tensor | None = None  # (B,D) feature of exit ``exit_index``
    frame_tokens: torch.Tensor | None = None  # (B,V,H) this step's own visual tokens (a later step's past frame)


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
        # one embedding per frame of the cross-attention's context, oldest first, the current step last
        self.frame_embed = (nn.Parameter(torch.randn(config.past_frames + 1, hidden) * 0.02)
                            if config.past_frames else None)
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

    @property
    def weights_dtype(self) -> str:
        """The weights' dtype as a cost profile names it ("float32")."""
        return str(self.camera_embed.dtype).removeprefix("torch.")

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

    def with_past_frames(self, current: torch.Tensor, past: torch.Tensor | None = None) -> torch.Tensor:
        """current (B,V,H) this step's visual tokens, past (B,P,V,H) those of the P <= K steps before it, oldest
        first -> (B,(K+1)*V,H) the cross-attention's context. Frames before the first one given repeat it (the
        current step's at an episode's start), as ``window_visual`` pads a training window's first steps."""
        k = self.config.past_frames
        given = 0 if past is None else past.shape[1]
        if given > k:
            raise ValueError(f"{given} past frames given; the model reads {k}")
        if self.frame_embed is None:
            return current
        frames = current.unsqueeze(1)
        if past is not None and given:
            if past.shape[0] != current.shape[0] or past.shape[2:] != current.shape[1:]:
                raise ValueError(f"past frames must be (B,P,V,H) = (B,P,{', '.join(map(str, current.shape[1:]))}) "
                                 f"like the current step's tokens, got {tuple(past.shape)}")
            frames = torch.cat([past.to(current.dtype), frames], dim=1)
        if frames.shape[1] < k + 1:
            frames = torch.cat([frames[:, :1].expand(-1, k + 1 - frames.shape[1], -1, -1), frames], dim=1)
        return self._embed_frames(frames)

    def window_visual(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B,T,V,H) of B windows of T consecutive steps -> (B*T,(K+1)*V,H): each step's context holds
        the K steps before it in its window, the window's first step standing in for earlier ones."""
        b, t, v, h = tokens.shape
        if self.frame_embed is None:
            return tokens.reshape(b * t, v, h)
        k = self.config.past_frames
        steps = torch.arange(t, device=tokens.device)
        index = (steps[:, None] + torch.arange(-k, 1, device=tokens.device)[None, :]).clamp(min=0)  # (T,K+1)
        return self._embed_frames(tokens[:, index].reshape(b * t, k + 1, v, h))

    def _embed_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """(B,K+1,V,H) frames, oldest first -> (B,(K+1)*V,H) with each frame's embedding added."""
        assert self.frame_embed is not None
        b, f, v, h = frames.shape
        return (frames + self.frame_embed[None, :, None]).reshape(b, f * v, h)

    def encode(self, images: dict[str, torch.Tensor], input_ids: torch.Tensor, attention_mask: torch.Tensor,
               proprio: torch.Tensor | None = None, past_frames: torch.Tensor | None = None,
               window: int | None = None) -> SegmentState:
        """Images and instruction -> the state exits run from. ``past_frames`` (B,P,V,H): the earlier steps'
        ``frame_tokens`` (``with_past_frames``); or ``window`` = T: the B*T rows are B windows of T consecutive
        steps, each step's past frames taken from its window (training, ``window_visual``)."""
        if input_ids.dim() != 2 or attention_mask.shape != input_ids.shape:
            raise ValueError(f"input_ids / attention_mask must both be (B,L), got {tuple(input_ids.shape)} "
                             f"and {tuple(attention_mask.shape)}")
        mask = attention_mask.bool()
        if not bool(mask.any(dim=1).all()):
            raise ValueError("every instruction needs at least one token (attention_mask row is all zero)")
        tokens = self.encode_images(images)
        if window is not None:
            if past_frames is not None:
                raise ValueError("encode: give past_frames or window, not both")
            if window < 1 or tokens.shape[0] % window:
                raise ValueError(f"window={window} does not divide the batch of {tokens.shape[0]} frames")
            visual = self.window_visual(tokens.view(tokens.shape[0] // window, window, *tokens.shape[1:]))
        else:
            visual = self.with_past_frames(tokens, past_frames)
        hidden, ctx = self.lm.embed(input_ids, attention_mask)
        return SegmentState(hidden=hidden, visual=visual, text_mask=mask, context=ctx, proprio=proprio,
                            frame_tokens=tokens)

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
                      proprio: torch.Tensor | None = None, max_exit: int | None = None,
                      window: int | None = None) -> torch.Tensor:
        """One-shot forward through all layers up to ``max_exit``: (B, N, D) features of exits 1..N
        (``window``: as in ``encode``)."""
        n = self.num_exits if max_exit is None else max_exit
        if not 1 <= n <= self.num_exits:
            raise ValueError(f"max_exit={max_exit} outside 1..{self.num_exits}")
        state = self.encode(images, input_ids, attention_mask, proprio, window=window)
        hidden = state.hidden
        feats: list[torch.Tensor] = []
        for i in range(self.segment_ends[n - 1]):
            hidden = self._layer(i, hidden, state)
            if i + 1 in self.segment_ends:
                feats.append(self._exit_feature(len(feats), hidden, state.text_mask))
        return torch.stack(feats, dim=1)
