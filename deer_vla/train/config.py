"""Training configuration, validated by pydantic; loaded like every command's (core.config_io: defaults <
YAML file < `--set key=value`).

Every field is checked at load time, so an impossible config (a window longer
than any usable episode is checked later, against the data) fails before any
model is built, with a message naming the bad key and value.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from deer_vla.core.config_io import MAX_THREADS, ConfigError, NoBoolNumbers, load_layers, validate
from deer_vla.core.writable import nonblank_path
from deer_vla.model.device import is_device_name
from deer_vla.train.instruction_noise import InstructionNoise

__all__ = ["ConfigError", "TrainConfig", "load_config", "validate_config"]


class LossWeights(NoBoolNumbers):
    """Weights of the DeeR loss terms (all 1 in the original) and of the gripper BCE inside each."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    aux: float = Field(1.0, ge=0, description="per-exit auxiliary heads")
    final: float = Field(1.0, ge=0, description="shared head on the deepest exit")
    random_exit: float = Field(1.0, ge=0, description="shared head, exit drawn per (sample, time step)")
    split_exit: float = Field(1.0, ge=0, description="shared head, window split into two exits")
    # The original uses 0.01 (CALVIN). Meta-World success hinges on grasp timing and the
    # Huber motion loss of normalised deltas is ~1e-2, so 0.01 * BCE (~0.7 -> ~0.05) would
    # be 10-100x below it; 0.1 keeps the two terms within an order of magnitude.
    gripper: float = Field(0.1, ge=0)
    huber_delta: float = Field(1.0, gt=0)
    # The exits random_exit draws, one weight per exit 1..N (normalised). None: uniform, as the original. At
    # run time under a small budget most steps stop at the first exits; weights like the controller's exit
    # distribution there train the shared head on the mix it will see (split_exit stays uniform).
    random_exit_weights: list[float] | None = Field(None, min_length=1)
    # Wording consistency (not in the original): the shared head at the random_exit draw, reading the window's
    # drawn (paraphrased, noised) instruction, is also pulled toward the deepest exit's output on the episode's
    # recorded instruction (detached, from a second forward pass without gradients). Shallow exits are where
    # unfamiliar wording costs most (docs/RESULTS.md); this asks every exit to act on a paraphrase as the full
    # model acts on the canonical wording. 0 leaves the objective and its random draws exactly as before.
    wording_consistency: float = Field(
        0.0, ge=0, description="drawn exits on the drawn wording vs the deepest exit on the recorded instruction")

    @model_validator(mode="after")
    def _some_term(self) -> LossWeights:
        if self.aux + self.final + self.random_exit + self.split_exit + self.wording_consistency <= 0:
            raise ValueError("loss weights aux, final, random_exit, split_exit and wording_consistency are all 0: "
                             "nothing to train")
        w = self.random_exit_weights
        if w is not None and not (all(math.isfinite(v) and v >= 0 for v in w) and sum(w) > 0):
            raise ValueError(f"loss.random_exit_weights must be finite, >= 0 and not all 0, got {w}")
        return self


class StageConfig(NoBoolNumbers):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # an infinite lr passes gt=0
    steps: int = Field(ge=0)
    lr: float = Field(gt=0, le=1e38)  # a float32 (1e300 passed, then AdamW failed converting it)
    warmup_steps: int = Field(0, ge=0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="final lr as a fraction of lr")


class TextSpec(BaseModel):
    """Pretrained instruction front end of a fresh model (see deer_vla.model.text)."""

    model_config = ConfigDict(extra="forbid")
    source: str = Field("wordllama", description="'wordllama' (files in the pinned wheel) or a local HF LM dir")
    trainable: bool = Field(False, description="fine-tune the token table (stored in the checkpoint) or keep it frozen")


class TrainConfig(NoBoolNumbers):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    # model: a preset name ("tiny", "default"), an explicit PolicyConfig dict (both: random weights), or
    # a deer_vla checkpoint directory whose weights and tokenizer start the run (e.g. one built from local
    # Hugging Face backbones with model.pretrained.policy_from_pretrained + save_checkpoint)
    model_preset: str | None = "default"
    model: dict[str, Any] | None = None
    init_checkpoint: str | None = None  # a checkpoint directory or a shipped name ("default", "mt50")
    # architecture changes to init_checkpoint's config, as a nested PolicyConfig mapping (e.g.
    # {resampler: {num_latents: 32}}): weights carry over where they fit (model.checkpoint.transfer_weights)
    init_overrides: dict[str, Any] | None = None
    # keep the decoder's own layers fixed in the joint stage (OpenFlamingo / DeeR with a pretrained LM:
    # cross-attention, resampler, token embeddings and heads are trained)
    freeze_lm_layers: bool = False
    # instruction front end of a fresh model: pretrained subword tokenizer + token table (null: a word
    # vocabulary built from the demonstrations' instructions, the decoder's own token table)
    text: TextSpec | None = None
    dataset: str = "data/demos"
    output_dir: str = "runs/default"
    window: int = Field(10, ge=2, le=64)
    batch_size: int = Field(8, ge=1)
    # images are padded by this many pixels and randomly cropped back (DrQ random shift)
    shift_pad: int = Field(4, ge=0, le=512)  # pixels (100000 tried to allocate 480 GB)
    paraphrase: bool = True  # draw the instruction among the task's training paraphrases
    # random wrappers, word dropout and swaps on the drawn instruction (null: none); see train.instruction_noise
    instruction_noise: InstructionNoise | None = None
    joint: StageConfig = StageConfig(steps=2000, lr=5e-4, warmup_steps=100)
    refine: StageConfig = StageConfig(steps=500, lr=2e-4, warmup_steps=0)
    # bounded so that joint.lr times it stays a float32 (1e300 was a traceback from the optimiser)
    head_lr_scale: float = Field(1.0, gt=0, le=1e6, description="lr multiplier of action heads in the joint stage")
    weight_decay: float = Field(0.01, ge=0, le=1e3)  # AdamW's decoupled decay: 1e30 saved weights of 5e26
    grad_clip: float = Field(1.0, gt=0)
    loss: LossWeights = LossWeights()
    seed: int = Field(0, ge=0, le=2**32 - 1)  # numpy's seeds (10**23 was "Overflow when unpacking long long")
    device: str = "auto"  # "auto" = cuda when available, else cpu
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    num_threads: int = Field(2, ge=1, le=MAX_THREADS, description="torch intra-op threads on CPU")
    num_workers: int = Field(0, ge=0, le=64, description="DataLoader worker processes (each a process)")
    checkpoint_every: int = Field(500, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    log_every: int = Field(10, ge=1)
    max_episodes: int | None = Field(None, ge=1, description="use only the first N episodes (smoke runs)")

    @model_validator(mode="before")
    @classmethod
    def _a_given_source_replaces_the_preset(cls, data: Any) -> Any:
        # `--set init_checkpoint=DIR` (or model=...) alone means "not the default preset"
        if isinstance(data, dict) and ("model" in data or "init_checkpoint" in data) and "model_preset" not in data:
            return {**data, "model_preset": None}
        return data

    @field_validator("output_dir", "dataset")
    @classmethod
    def _path_not_blank(cls, value: str, info: ValidationInfo) -> str:
        nonblank_path(value, str(info.field_name))
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v != "auto" and not is_device_name(v):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {v!r}")
        return v  # whether this machine has it: the trainer checks (trainer.resolve_device)

    @model_validator(mode="after")
    def _model_source(self) -> TrainConfig:
        sources = [self.model_preset, self.model, self.init_checkpoint]
        if sum(x is not None for x in sources) != 1:
            raise ValueError(
                "set exactly one of model_preset (a preset name), model (a PolicyConfig dict) and "
                "init_checkpoint (a checkpoint directory); set the others to null"
            )
        if self.init_overrides is not None and self.init_checkpoint is None:
            raise ValueError("init_overrides changes init_checkpoint's architecture: set init_checkpoint too")
        if self.freeze_lm_layers and self.init_checkpoint is None:
            raise ValueError("freeze_lm_layers keeps the decoder's layers as init_checkpoint loads them; a fresh "
                             "model's are random and would stay random: set init_checkpoint, or freeze_lm_layers: "
                             "false")
        if self.freeze_lm_layers and (self.init_overrides or {}).get("lm"):
            raise ValueError("freeze_lm_layers with init_overrides.lm: a changed decoder has layers init_checkpoint "
                             "does not hold, which would stay random; drop one of them")
        if self.text is not None and self.init_checkpoint is not None:
            raise ValueError("text applies to a fresh model; init_checkpoint brings its own front end (set text: null)")
        if self.joint.steps + self.refine.steps == 0:
            raise ValueError("joint.steps + refine.steps is 0: nothing to train")
        for name in ("joint", "refine"):
            stage: StageConfig = getattr(self, name)
            if stage.steps and stage.warmup_steps >= stage.steps:
                raise ValueError(
                    f"{name}.warmup_steps ({stage.warmup_steps}) must be below {name}.steps ({stage.steps})"
                )
        return self

    @property
    def total_steps(self) -> int:
        return self.joint.steps + self.refine.steps


def validate_config(data: dict[str, Any], source: str = "dict") -> TrainConfig:
    return validate(TrainConfig, data, "training config", source)


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """A YAML training config (or the defaults when ``path`` is None) with ``--set``-style overrides."""
    return load_layers(TrainConfig, "training config", path, overrides)
