"""Hugging Face backbones: decoder layers of a causal LM (Llama / Qwen2 / GPT-2 / MPT) and CLIP / SigLIP vision.

The decoder is rebuilt from its HF config dict with only the layers that are
loaded (partial loading builds fewer layers, so memory really shrinks). Each
family differs only in how positions enter: rotary embeddings from the model's
own ``rotary_emb`` (Llama, Qwen2), learned absolute positions (GPT-2), or an
ALiBi bias added to every layer's attention scores (MPT, the original DeeR's
LM). The attention mask is an additive (B,1,L,L) causal+padding bias, the same
thing HF's eager attention adds to its scores (MPT takes it as a boolean
"blocked" mask instead).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deer_vla.model.config import LMConfig, TextConfig, VisionConfig

_FAMILY_CLASSES = {
    "llama": ("LlamaConfig", "LlamaModel"),
    "qwen2": ("Qwen2Config", "Qwen2Model"),
    "gpt2": ("GPT2Config", "GPT2Model"),
    "mpt": ("MptConfig", "MptModel"),
}
_MODEL_TYPE_TO_FAMILY = {"llama": "llama", "qwen2": "qwen2", "gpt2": "gpt2", "mpt": "mpt"}
# the config field holding the number of decoder layers, where it is not num_hidden_layers
_LAYER_COUNT_KEY = {"gpt2": "n_layer", "mpt": "n_layers"}


def hf_lm_config(lm: LMConfig, num_layers: int | None = None) -> Any:
    import transformers

    cfg_cls = getattr(transformers, _FAMILY_CLASSES[lm.family][0])
    data = {k: v for k, v in lm.hf_config.items() if k not in ("model_type", "architectures", "transformers_version")}
    try:
        cfg = cfg_cls(**data)
    except Exception as exc:  # transformers' strict config fields raise huggingface_hub's own errors
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ValueError(f"lm.hf_config is not a valid {cfg_cls.__name__}: {type(exc).__name__}: {first}") from exc
    if num_layers is not None:
        if lm.family in _LAYER_COUNT_KEY:
            setattr(cfg, _LAYER_COUNT_KEY[lm.family], num_layers)
        else:
            cfg.num_hidden_layers = num_layers
            if getattr(cfg, "layer_types", None) is not None:
                cfg.layer_types = list(cfg.layer_types)[:num_layers]
    if lm.family == "qwen2" and getattr(cfg, "use_sliding_window", False):
        raise ValueError("lm.hf_config: Qwen2 sliding-window attention is not supported (set use_sliding_window=false)")
    cfg._attn_implementation = "eager"  # plain matmuls: countable FLOPs, same maths as HF's eager path
    return cfg


@dataclass
class TextContext:
    """Per-forward tensors every decoder layer needs (positions and mask)."""

    bias: torch.Tensor  # (B,1,L,L) additive
    position_ids: torch.Tensor  # (1,L)
    position_embeddings: tuple[torch.Tensor, torch.Tensor] | None  # rotary (cos, sin)
    alibi: torch.Tensor | None = None  # (heads,1,L) MPT's position bias
    blocked: torch.Tensor | None = None  # (B,1,L,L) bool, True = not attended (MPT's mask form)


class DecoderStack(nn.Module):
    """Token embeddings + the first ``num_layers`` decoder layers of an HF causal LM family.

    With a ``text`` front end the LM's own token table is replaced by the
    pretrained table + projection (``text.TokenEmbedder``). ``empty`` builds the
    HF layers' parameters on the meta device, for ``load_pretrained_lm`` to fill.
    """

    def __init__(self, lm: LMConfig, num_layers: int, text: TextConfig | None = None, empty: bool = False) -> None:
        super().__init__()
        import transformers

        from deer_vla.model.lean_load import parameters_on_meta

        self.family = lm.family
        self.hf_config = hf_lm_config(lm, num_layers)
        with parameters_on_meta() if empty else nullcontext():
            base = getattr(transformers, _FAMILY_CLASSES[lm.family][1])(self.hf_config)
        if lm.family == "gpt2":
            self.embed_tokens, self.embed_positions, self.layers = base.wte, base.wpe, base.h
            self.rotary_emb = None
        elif lm.family == "mpt":
            self.embed_tokens, self.embed_positions, self.layers = base.wte, None, base.blocks
            self.rotary_emb = None
            self._alibi_bias_max = float(self.hf_config.attn_config.alibi_bias_max)
        else:
            self.embed_tokens, self.embed_positions, self.layers = base.embed_tokens, None, base.layers
            self.rotary_emb = base.rotary_emb
        del base  # final norm / other parts are not used: exits pool intermediate states
        self._hidden = lm.hidden_size
        self.vocab_size = lm.vocab_size
        if text is not None:
            from deer_vla.model.text import TokenEmbedder

            self.embed_tokens = TokenEmbedder(text, lm.hidden_size)
            self.vocab_size = text.vocab_size

    @property
    def hidden_size(self) -> int:
        return self._hidden

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, TextContext]:
        vocab = self.vocab_size
        if int(input_ids.max()) >= vocab or int(input_ids.min()) < 0:
            raise ValueError(f"token id out of range for the LM vocabulary of {vocab} (tokenizer/model mismatch)")
        b, n = input_ids.shape
        h = self.embed_tokens(input_ids)
        pos = torch.arange(n, device=input_ids.device).unsqueeze(0)
        rope = None
        if self.embed_positions is not None:
            h = h + self.embed_positions(pos)
        if self.rotary_emb is not None:
            rope = self.rotary_emb(h, pos)
        keep = torch.ones(n, n, dtype=torch.bool, device=h.device).tril() & attention_mask.bool()[:, None, None, :]
        bias = torch.zeros(keep.shape, dtype=h.dtype, device=h.device).masked_fill(~keep, torch.finfo(h.dtype).min)
        ctx = TextContext(bias=bias, position_ids=pos, position_embeddings=rope)
        if self.family == "mpt":
            from transformers.models.mpt.modeling_mpt import build_mpt_alibi_tensor

            ctx.alibi = build_mpt_alibi_tensor(int(self.hf_config.n_heads), n, self._alibi_bias_max, device=h.device)
            ctx.blocked = ~keep
        return h, ctx

    def layer(self, i: int, hidden: torch.Tensor, ctx: TextContext) -> torch.Tensor:
        block = self.layers[i]
        if self.family == "gpt2":
            out = block(hidden, attention_mask=ctx.bias)
        elif self.family == "mpt":
            out = block(hidden, position_bias=ctx.alibi, attention_mask=ctx.blocked)
        else:
            out = block(hidden, attention_mask=ctx.bias, position_ids=ctx.position_ids,
                        position_embeddings=ctx.position_embeddings)
        return out[0] if isinstance(out, tuple) else out


class HFVisionTower(nn.Module):
    """CLIP / SigLIP vision transformer -> patch features (B, N, D); ``empty``: parameters on the meta
    device, for ``load_pretrained_vision`` to fill."""

    def __init__(self, vision: VisionConfig, empty: bool = False) -> None:
        super().__init__()
        import transformers

        from deer_vla.model.lean_load import parameters_on_meta

        assert vision.hf_config is not None
        names = {"clip": ("CLIPVisionConfig", "CLIPVisionModel"), "siglip": ("SiglipVisionConfig", "SiglipVisionModel")}
        cfg_name, model_name = names[vision.kind]
        data = {k: v for k, v in vision.hf_config.items() if k not in ("model_type", "architectures",
                                                                       "transformers_version")}
        cfg = getattr(transformers, cfg_name)(**data)
        cfg._attn_implementation = "eager"
        with parameters_on_meta() if empty else nullcontext():
            self.model = getattr(transformers, model_name)(cfg)
        self.kind = vision.kind
        self.out_dim = int(cfg.hidden_size)
        self._patches = (int(cfg.image_size) // int(cfg.patch_size)) ** 2 + (1 if vision.kind == "clip" else 0)

    def num_patches(self, image_size: int) -> int:
        return self._patches

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=images).last_hidden_state


# --- loading real backbones from local directories ----------------------------------------


def _require_dir(path: str | Path, what: str) -> Path:
    from transformers.utils import CONFIG_NAME  # a Hugging Face model directory's config file

    p = Path(path)
    if not p.is_dir() or not (p / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{what} directory {p} not found or has no {CONFIG_NAME} (local HF directories only)")
    return p


def lm_config_from_dir(path: str | Path, **overrides: Any) -> LMConfig:
    """LMConfig for the causal LM saved (save_pretrained) in a local directory."""
    import transformers

    p = _require_dir(path, "language model")
    hf = transformers.AutoConfig.from_pretrained(p, local_files_only=True, trust_remote_code=False)
    family = _MODEL_TYPE_TO_FAMILY.get(hf.model_type)
    if family is None:
        raise ValueError(f"unsupported LM family '{hf.model_type}' in {p}; supported: {sorted(_FAMILY_CLASSES)}")
    data = hf.to_dict()
    return LMConfig(family=family, hf_config=data, path=str(p), **overrides)


def vision_config_from_dir(path: str | Path, **overrides: Any) -> VisionConfig:
    """VisionConfig for a CLIP / SigLIP model (full or vision-only) saved in a local directory."""
    import transformers

    p = _require_dir(path, "vision model")
    hf = transformers.AutoConfig.from_pretrained(p, local_files_only=True, trust_remote_code=False)
    vis = getattr(hf, "vision_config", hf)
    kind = {"clip_vision_model": "clip", "siglip_vision_model": "siglip"}.get(vis.model_type)
    if kind is None:
        raise ValueError(f"unsupported vision model '{hf.model_type}' in {p}; supported: CLIP, SigLIP")
    mean_std: dict[str, Any] = {}
    if kind == "clip":
        mean_std = {"image_mean": [0.4815, 0.4578, 0.4082], "image_std": [0.2686, 0.2613, 0.2758]}
    return VisionConfig(kind=kind, hf_config=vis.to_dict(), path=str(p), **{**mean_std, **overrides})


def hf_weight_files(path: str | Path) -> dict[str, Path]:
    """tensor name -> safetensors file, for a local HF directory (one file or a sharded index)."""
    from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

    from deer_vla.core.json_text import JsonTextError, read_json_file
    from deer_vla.model.lean_load import open_safetensors

    p = Path(path)
    index = p / SAFE_WEIGHTS_INDEX_NAME
    if index.is_file():
        try:
            data = read_json_file(index)
        except JsonTextError as exc:
            raise ValueError(f"{index}: {exc}") from exc
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        # shards are files beside the index: a name with a folder in it would read weights from elsewhere
        if not (isinstance(weight_map, dict) and weight_map and all(
                isinstance(k, str) and isinstance(v, str) and v and Path(v).name == v and v not in (".", "..")
                for k, v in weight_map.items())):
            raise ValueError(f"{index}: 'weight_map' must map tensor names to shard file names beside it")
        return {key: p / name for key, name in weight_map.items()}
    if (p / SAFE_WEIGHTS_NAME).is_file():
        with open_safetensors(p / SAFE_WEIGHTS_NAME) as f:
            return dict.fromkeys(f.keys(), p / SAFE_WEIGHTS_NAME)
    raise FileNotFoundError(f"{p} has no {SAFE_WEIGHTS_NAME} or {SAFE_WEIGHTS_INDEX_NAME}: only safetensors weights "
                            "are read (re-save the model with save_pretrained(..., safe_serialization=True))")


def _refs_into(files: dict[str, Path], wanted: dict[str, str], prefixes: tuple[str, ...], where: Path
               ) -> dict[str, Any]:
    """{our name: TensorRef} for ``wanted`` = {our name: name in the HF model}, stored under one of ``prefixes``
    (a causal-LM save prefixes its base model's names, e.g. "model." or "transformer.")."""
    from deer_vla.model.lean_load import TensorRef

    if not wanted:
        return {}
    probe = next(iter(wanted.values()))
    prefix = next((pre for pre in prefixes if pre + probe in files), None)
    if prefix is None:
        raise KeyError(f"{where}: no tensor '{probe}' (tried prefixes {list(prefixes)}); is this the right model?")
    missing = sorted(name for name in wanted.values() if prefix + name not in files)
    if missing:
        raise KeyError(f"{where} lacks tensor(s) {[prefix + m for m in missing[:5]]}"
                       f"{'...' if len(missing) > 5 else ''}")
    return {ours: TensorRef(files[prefix + name], prefix + name) for ours, name in wanted.items()}


# our DecoderStack's parts -> the HF base model's attributes, per family
_STACK_PARTS = {
    "gpt2": {"embed_tokens": "wte", "embed_positions": "wpe", "layers": "h"},
    "mpt": {"embed_tokens": "wte", "layers": "blocks"},
    "llama": {"embed_tokens": "embed_tokens", "layers": "layers"},
    "qwen2": {"embed_tokens": "embed_tokens", "layers": "layers"},
}


def load_pretrained_lm(stack: DecoderStack, path: str | Path) -> None:
    """Fill the LM's embeddings and (loaded) decoder layers from a local directory's safetensors, read straight
    into the stack (lean_load: no second copy, and layers past the stack's depth are never read)."""
    import transformers

    from deer_vla.model.lean_load import materialize
    from deer_vla.model.text import TokenEmbedder

    p = _require_dir(path, "language model")
    parts = _STACK_PARTS[stack.family]
    if isinstance(stack.embed_tokens, TokenEmbedder):  # a pretrained text front end replaces the LM's table
        parts = {k: v for k, v in parts.items() if k != "embed_tokens"}
    wanted = {}
    for name in stack.state_dict():
        head, _, rest = name.partition(".")
        if head in parts:
            wanted[name] = f"{parts[head]}.{rest}"
    base_prefix = getattr(transformers, _FAMILY_CLASSES[stack.family][1]).base_model_prefix
    materialize(stack, _refs_into(hf_weight_files(p), wanted, ("", f"{base_prefix}."), p))


def load_pretrained_vision(tower: HFVisionTower, path: str | Path) -> None:
    """Fill a CLIP / SigLIP tower from a local directory (a vision-only or a full CLIP / SigLIP save)."""
    from deer_vla.model.lean_load import materialize

    p = _require_dir(path, "vision model")
    wanted = {f"model.{name}": name for name in tower.model.state_dict()}
    # a full CLIP / SigLIP save (and a vision-only one from transformers 4) prefixes the tower's names
    materialize(tower, _refs_into(hf_weight_files(p), wanted, ("", "vision_model."), p))


def tokenizer_from_dir(path: str | Path) -> Any:
    """The LM's own tokenizer from its local directory (see tokenizer.load_tokenizer)."""
    from deer_vla.model.tokenizer import load_tokenizer

    return load_tokenizer(_require_dir(path, "tokenizer"))
