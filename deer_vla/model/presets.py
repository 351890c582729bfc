"""Named PolicyConfigs: "tiny" (tests), "default" (shipped, CPU-trainable), "1b" / "mpt1b" (GPU cost figures only)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deer_vla.core import ActionSpec
from deer_vla.model.config import PolicyConfig

METAWORLD_ACTION = ActionSpec(axes=("x", "y", "z")).to_dict()


def _llama(hidden: int, layers: int, heads: int, intermediate: int, vocab: int, kv_heads: int | None = None,
           max_pos: int = 128) -> dict[str, Any]:
    return {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads or heads,
        "intermediate_size": intermediate,
        "vocab_size": vocab,
        "max_position_embeddings": max_pos,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
        "pad_token_id": 0,
    }


def _tiny() -> dict[str, Any]:
    return {
        "cameras": ["static", "wrist"],
        "image_size": 32,
        "proprio_dim": 4,
        "action": METAWORLD_ACTION,
        "vision": {"kind": "cnn", "channels": [8, 16]},
        "resampler": {"num_latents": 4, "depth": 1, "heads": 2, "ff_mult": 2},
        "lm": {"family": "llama", "hf_config": _llama(32, 4, 2, 64, 512), "cross_attn_every": 2,
               "cross_attn_heads": 2, "max_text_len": 16},
        "exits": {"layers_per_exit": 1},
        "head": {"hidden": 32, "layers": 1, "proprio_embed": 8, "aux_hidden": 32},
    }


def _default() -> dict[str, Any]:
    return {
        "cameras": ["static", "wrist"],
        "image_size": 64,
        "proprio_dim": 4,
        "action": METAWORLD_ACTION,
        "vision": {"kind": "cnn", "channels": [16, 32, 64]},
        "resampler": {"num_latents": 8, "depth": 1, "heads": 4, "ff_mult": 2},
        "lm": {"family": "llama", "hf_config": _llama(128, 12, 4, 344, 1024), "cross_attn_every": 2,
               "cross_attn_heads": 4, "max_text_len": 24},
        "exits": {"layers_per_exit": 1},
        "head": {"hidden": 128, "layers": 2, "proprio_embed": 16, "aux_hidden": 64},
    }


def _one_b() -> dict[str, Any]:
    # Llama-3.2-1B layout (random weights): 16 layers, hidden 2048, GQA 32/8 heads, MLP 8192; exit every 2 layers.
    return {
        "cameras": ["static", "wrist"],
        "image_size": 224,
        "proprio_dim": 4,
        "action": METAWORLD_ACTION,
        "vision": {"kind": "cnn", "channels": [64, 128, 256, 512, 768]},
        "resampler": {"num_latents": 64, "depth": 2, "heads": 16, "ff_mult": 4},
        "lm": {"family": "llama", "hf_config": _llama(2048, 16, 32, 8192, 32000, kv_heads=8, max_pos=2048),
               "cross_attn_every": 4, "cross_attn_heads": 16, "cross_attn_ff_mult": 4, "max_text_len": 32},
        "exits": {"layers_per_exit": 2},
        "head": {"hidden": 512, "layers": 2, "proprio_embed": 32, "aux_hidden": 256},
    }


def _mpt_one_b() -> dict[str, Any]:
    # The original DeeR's LM layout (OpenFlamingo-3B's MPT-1B, random weights): 24 layers, d_model 2048,
    # 16 heads, ALiBi; gated cross-attention before every layer; an exit every 2 layers (12 exits).
    return {
        **_one_b(),
        "lm": {"family": "mpt",
               "hf_config": {"d_model": 2048, "n_layers": 24, "n_heads": 16, "expansion_ratio": 4,
                             "max_seq_len": 2048, "vocab_size": 50432, "no_bias": True, "pad_token_id": 0},
               "cross_attn_every": 1, "cross_attn_heads": 16, "cross_attn_ff_mult": 4, "max_text_len": 32},
    }


PRESETS = {"tiny": _tiny, "default": _default, "1b": _one_b, "mpt1b": _mpt_one_b}


def preset_config(name: str) -> PolicyConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    return PolicyConfig.model_validate(PRESETS[name]())


def save_random_checkpoint(out_dir: str | Path, preset: str = "tiny",
                           instructions: Sequence[str] = ("open the drawer",), seed: int = 0,
                           **overrides: Any) -> Path:
    """A checkpoint of ``preset`` (top-level config keys in ``overrides`` replaced) with random weights (seeded)
    and a word tokenizer over ``instructions``: for tests and benchmarks, whose costs and plumbing do not
    depend on the weights' values."""
    import torch

    from deer_vla.model.checkpoint import save_checkpoint
    from deer_vla.model.policy import MultiExitPolicy
    from deer_vla.model.tokenizer import build_word_tokenizer

    cfg = PolicyConfig.model_validate({**preset_config(preset).model_dump(), **overrides})
    torch.manual_seed(seed)
    return save_checkpoint(MultiExitPolicy(cfg).eval(), build_word_tokenizer(list(instructions)), out_dir)
