"""Build a MultiExitPolicy around real HF backbones stored in local directories.

The LM's embeddings and decoder layers (and optionally a CLIP/SigLIP vision
tower) are read from the directory's safetensors straight into parameters built
on the meta device (lean_load: no second copy of the weights, and layers past
the policy's depth are never read); the tokenizer comes from the same directory.
Everything else (resampler, gated cross-attention, exits, heads) starts freshly
initialised.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from deer_vla.model.backbones import (
    HFVisionTower,
    lm_config_from_dir,
    load_pretrained_lm,
    load_pretrained_vision,
    tokenizer_from_dir,
    vision_config_from_dir,
)
from deer_vla.model.config import ExitConfig, PolicyConfig
from deer_vla.model.policy import MultiExitPolicy
from deer_vla.model.presets import preset_config


def policy_from_pretrained(lm_dir: str | Path, vision_dir: str | Path | None = None,
                           base: PolicyConfig | None = None, exits: ExitConfig | None = None,
                           cross_attn_every: int | None = None, max_text_len: int | None = None,
                           ) -> tuple[MultiExitPolicy, Any]:
    """-> (policy with pretrained LM [+ vision] weights, the LM's tokenizer)."""
    base = base or preset_config("default")
    if base.text is not None:  # its table would be read through the LM's tokenizer ids: unrelated rows, or zeros
        raise ValueError(f"the base config has a text front end ({base.text.source}), but a pretrained LM reads "
                         f"instructions through its own tokenizer and embeddings ({lm_dir}): set the base's text "
                         "to null")
    lm_over: dict[str, Any] = {
        "cross_attn_heads": base.lm.cross_attn_heads,
        "cross_attn_ff_mult": base.lm.cross_attn_ff_mult,
        "cross_attn_every": cross_attn_every or base.lm.cross_attn_every,
        "max_text_len": max_text_len or base.lm.max_text_len,
    }
    lm = lm_config_from_dir(lm_dir, **lm_over)
    data = base.model_dump()
    data["lm"] = lm.model_dump()
    data["exits"] = (exits or ExitConfig(layers_per_exit=1)).model_dump()
    if vision_dir is not None:
        vision = vision_config_from_dir(vision_dir, freeze=base.vision.freeze)
        data["vision"] = vision.model_dump()
        data["image_size"] = int(vision.hf_config["image_size"])  # type: ignore[index]
    cfg = PolicyConfig.model_validate(data)
    # the tokenizer before any weight is read: a missing or oversized one failed only after a multi-GB load
    tokenizer = tokenizer_from_dir(lm_dir)
    if len(tokenizer) > cfg.lm.vocab_size:
        raise ValueError(f"tokenizer in {lm_dir} has {len(tokenizer)} tokens, more than the LM's {cfg.lm.vocab_size}")
    model = MultiExitPolicy(cfg, empty_lm=True, empty_vision=vision_dir is not None)
    load_pretrained_lm(model.lm, lm_dir)
    if vision_dir is not None:
        assert isinstance(model.vision, HFVisionTower)
        load_pretrained_vision(model.vision, vision_dir)
    return model, tokenizer
