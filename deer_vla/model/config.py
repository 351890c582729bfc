"""PolicyConfig: everything needed to rebuild a MultiExitPolicy (stored as a checkpoint's config.json).

Unknown keys are rejected everywhere (a typo must not silently fall back to a
default). The language model's architecture is stored as the Hugging Face
config dict of its family, so a checkpoint rebuilds without the original
directory; ``path`` only says where pretrained weights came from.
"""
from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from deer_vla.core import ActionSpec, ProprioSpec
from deer_vla.core.config_io import NoBoolNumbers
from deer_vla.core.control_rate import MAX_CONTROL_RATE_HZ, MIN_CONTROL_RATE_HZ

LMFamily = Literal["llama", "qwen2", "gpt2", "mpt"]
VisionKind = Literal["cnn", "clip", "siglip"]


# HF config key aliases (GPT-2 spells them n_layer / n_embd / n_head, MPT n_layers / d_model / n_heads)
_HF_KEYS = {
    "layers": ("num_hidden_layers", "n_layer", "n_layers"),
    "hidden": ("hidden_size", "n_embd", "d_model"),
    "heads": ("num_attention_heads", "n_head", "n_heads"),
    "vocab": ("vocab_size",),
}
# Upper bounds on the sizes a config may ask for (far beyond any model this package builds): a config.json
# from elsewhere is read before any weight, and a size of 10^5 layers or a negative width would otherwise
# surface as a hang, gigabytes of allocation or a traceback from deep inside torch
_HF_SIZE_LIMITS = {
    "layers": 1024, "hidden": 1 << 16, "heads": 1024, "vocab": 1 << 22,
    "intermediate_size": 1 << 20, "n_inner": 1 << 20, "num_key_value_heads": 1024,
    "max_position_embeddings": 1 << 20, "n_positions": 1 << 20, "max_seq_len": 1 << 20,
}
# lm.hf_config's floats the decoder divides by or takes powers of: NaN, 0 or a negative one makes every output NaN
_HF_POSITIVE_FLOATS = ("rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon", "norm_eps", "rope_theta")
IMAGE_STD_RANGE = (1e-3, 1e3)
IMAGE_MEAN_LIMIT = 1e3
MAX_IMAGE_SIZE = 4096
MAX_TEXT_LEN = 4096


def _positive_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def _check_positive_floats(hf_config: dict[str, Any], where: str) -> None:
    """ValueError for a norm eps or rope theta that is not a finite number > 0, at the top of a backbone's HF
    config or in its ``rope_parameters`` (where transformers 5 writes rope_theta): NaN or a negative one made
    every action NaN, at the first step only."""
    places = [(where, hf_config)]
    if isinstance(hf_config.get("rope_parameters"), dict):
        places.append((f"{where}.rope_parameters", hf_config["rope_parameters"]))
    for place, values in places:
        for name in _HF_POSITIVE_FLOATS:
            if values.get(name) is not None and not _positive_number(values[name]):
                raise ValueError(f"{place} '{name}' must be a finite number > 0, got {str(values[name])[:40]!r}")


def _size_ok(v: Any, limit: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= limit


class _Strict(NoBoolNumbers):  # true is not 1 (a `model:` mapping in a training config, a config.json)
    model_config = ConfigDict(extra="forbid")


class VisionConfig(_Strict):
    kind: VisionKind = "cnn"
    # built-in CNN: output channels of each stride-2 conv stage (the last one is the patch feature size)
    channels: list[int] = Field(default_factory=lambda: [16, 32, 64])
    # HF vision tower (clip / siglip): its config dict (vision part) and where weights were loaded from
    hf_config: dict[str, Any] | None = None
    path: str | None = None
    freeze: bool = True
    image_mean: list[float] = Field(default_factory=lambda: [0.5, 0.5, 0.5])
    image_std: list[float] = Field(default_factory=lambda: [0.5, 0.5, 0.5])

    @model_validator(mode="after")
    def _check(self) -> VisionConfig:
        if self.kind == "cnn":
            if not 1 <= len(self.channels) <= 16 or any(not 1 <= c <= 8192 for c in self.channels):
                raise ValueError(f"vision.channels must be 1 to 16 ints in 1..8192, got {self.channels}")
        elif self.hf_config is None:
            raise ValueError(f"vision.kind={self.kind!r} needs vision.hf_config (use backbones.vision_config_from_dir)")
        else:
            _check_positive_floats(self.hf_config, "vision.hf_config")
        # pixels are read in 0..1: a std of 1e-30 or a mean of 1e300 makes every feature inf or NaN (NaN fails
        # these comparisons too)
        sane_std = all(IMAGE_STD_RANGE[0] <= s <= IMAGE_STD_RANGE[1] for s in self.image_std)
        sane_mean = all(-IMAGE_MEAN_LIMIT <= m <= IMAGE_MEAN_LIMIT for m in self.image_mean)
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or not sane_std or not sane_mean:
            raise ValueError(f"vision.image_mean/std need 3 values each, means in -{IMAGE_MEAN_LIMIT:g}.."
                             f"{IMAGE_MEAN_LIMIT:g} and stds in {IMAGE_STD_RANGE[0]:g}..{IMAGE_STD_RANGE[1]:g} "
                             f"(pixels are 0..1), got {self.image_mean} {self.image_std}")
        return self


class ResamplerConfig(_Strict):
    num_latents: int = Field(8, ge=1, le=4096)
    depth: int = Field(1, ge=1, le=64)
    heads: int = Field(4, ge=1, le=1024)
    ff_mult: int = Field(2, ge=1, le=64)


class LMConfig(_Strict):
    family: LMFamily = "llama"
    hf_config: dict[str, Any]
    path: str | None = None  # local HF directory the decoder weights were initialised from (informational)
    cross_attn_every: int = Field(2, ge=1)  # gated cross-attention before layers 0, n, 2n, ...
    cross_attn_heads: int = Field(4, ge=1, le=1024)
    cross_attn_ff_mult: int = Field(2, ge=1, le=64)
    # instruction tokens (longer ones are truncated); profile length
    max_text_len: int = Field(32, ge=1, le=MAX_TEXT_LEN)

    @field_validator("hf_config")
    @classmethod
    def _has_layers(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key, names in _HF_KEYS.items():
            present = [n for n in names if n in v]
            if not present:
                raise ValueError(f"lm.hf_config lacks '{names[0]}'")
            if not _size_ok(v[present[0]], _HF_SIZE_LIMITS[key]):
                raise ValueError(f"lm.hf_config '{present[0]}' must be an integer in 1..{_HF_SIZE_LIMITS[key]}, "
                                 f"got {str(v[present[0]])[:40]!r}")
        for name, limit in _HF_SIZE_LIMITS.items():
            if name in v and v[name] is not None and not _size_ok(v[name], limit):
                raise ValueError(f"lm.hf_config '{name}' must be an integer in 1..{limit}, got {str(v[name])[:40]!r}")
        _check_positive_floats(v, "lm.hf_config")
        hidden = next(v[n] for n in _HF_KEYS["hidden"] if n in v)
        heads = next(v[n] for n in _HF_KEYS["heads"] if n in v)
        if hidden % heads:
            raise ValueError(f"lm.hf_config's {heads} attention heads must divide its hidden size {hidden}")
        return v

    @model_validator(mode="after")
    def _text_fits_positions(self) -> LMConfig:
        positions = next((self.hf_config[n] for n in ("max_position_embeddings", "n_positions", "max_seq_len")
                          if self.hf_config.get(n) is not None), None)
        if positions is not None and self.max_text_len > positions:
            raise ValueError(f"lm.max_text_len {self.max_text_len} is more than the decoder's {positions} positions")
        return self

    def _get(self, key: str) -> int:
        return int(next(self.hf_config[n] for n in _HF_KEYS[key] if n in self.hf_config))

    @property
    def num_layers(self) -> int:
        return self._get("layers")

    @property
    def hidden_size(self) -> int:
        return self._get("hidden")

    @property
    def vocab_size(self) -> int:
        return self._get("vocab")


class TextConfig(_Strict):
    """Instruction front end: a pretrained subword tokenizer and token-embedding table, projected to the LM width.

    ``source`` is "wordllama" (the tokenizer and 256-d token embeddings shipped
    inside the pinned ``wordllama`` wheel) or a local Hugging Face LM
    directory (its tokenizer and input-embedding matrix). A frozen table is not
    stored in the checkpoint: it is read back from ``source`` and must match
    ``sha256``; a trainable one is stored with the weights. Resolve a source
    into this config with ``deer_vla.model.text.text_config``.
    """

    source: str
    vocab_size: int = Field(ge=1)
    embed_dim: int = Field(ge=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")  # of the source table's raw bytes, as stored there
    trainable: bool = False


class ExitConfig(_Strict):
    # either every k layers, or explicit cumulative layer counts at which exits sit (last = all layers)
    layers_per_exit: int | None = Field(1, ge=1)
    boundaries: list[int] | None = None


class HeadConfig(_Strict):
    hidden: int = Field(128, ge=1)
    layers: int = Field(2, ge=1)
    proprio_embed: int = Field(16, ge=1)
    aux_hidden: int = Field(64, ge=1)
    # Steps of history the head sees at run time. 0: one persistent LSTM state
    # for the whole episode. N: the LSTM re-runs from a zero state over the
    # last N committed features, exactly like a training window of N steps
    # (RoboFlamingo/DeeR keep such a window at inference).
    history: int = Field(0, ge=0)
    # Which exit's feature a committed step leaves in that history (with history N > 0). "committed": the
    # exit the controller stopped at (DeeR). "first_exit": exit 1's, which every step runs, so the history
    # is the same whatever depths were chosen and only the current step's feature depends on the choice
    # (training then builds every window's history from exit 1: train.losses). "proprio": no exit's
    # feature (zeros), so past steps reach the head through their proprioception alone and the scene only
    # through the current step's feature, at the depth the controller chose. "none": no past step at all,
    # the head reads the current step alone (a light head; the past can reach it through the decoder's
    # past_frames).
    history_source: Literal["committed", "first_exit", "proprio", "none"] = "committed"

    @property
    def past_steps(self) -> int:
        """Earlier steps the head reads at run time (history - 1; 0 with one persistent state or no history)."""
        return 0 if self.history_source == "none" else max(self.history - 1, 0)

    @property
    def commit_head_steps(self) -> int:
        """Head steps run once per control step when it is committed (PolicyRunner.commit): with "proprio" and
        one persistent state, that state is advanced over the step's proprio alone."""
        return 1 if self.history_source == "proprio" and self.history == 0 else 0


class PolicyConfig(_Strict):
    cameras: list[str] = Field(default_factory=lambda: ["static", "wrist"])
    image_size: int = Field(64, ge=8, le=MAX_IMAGE_SIZE)
    proprio_dim: int = Field(4, ge=0)
    # names, units, optional limits and standardisation of the proprio values (ProprioSpec dict); None:
    # unnamed values (checkpoints before named spaces)
    proprio: dict[str, Any] | None = None
    action: dict[str, Any] = Field(default_factory=lambda: ActionSpec(axes=("x", "y", "z")).to_dict())
    # steps per second of the demonstrations (per-step action units assume it); None: not recorded
    # its demonstrations' rate: the node's control rate with rate_hz 0 (core.control_rate: 1e300 was a 0 ns timer)
    control_rate_hz: float | None = Field(None, ge=MIN_CONTROL_RATE_HZ, le=MAX_CONTROL_RATE_HZ)
    vision: VisionConfig = Field(default_factory=VisionConfig)
    resampler: ResamplerConfig = Field(default_factory=ResamplerConfig)
    # Earlier steps' visual tokens the decoder cross-attends to beside the current step's (each frame
    # with its own learned embedding): the scene's recent motion reaches every exit at the depth the
    # controller runs, not only through the head's history. The runner keeps each step's tokens, so a
    # step still encodes one set of images. 0: the current step's tokens alone (checkpoints before it).
    past_frames: int = Field(0, ge=0, le=16)
    lm: LMConfig
    # None: instructions are embedded by the decoder's own token table (checkpoints before the
    # pretrained front end, and HF LMs used with their own tokenizer)
    text: TextConfig | None = None
    exits: ExitConfig = Field(default_factory=ExitConfig)
    head: HeadConfig = Field(default_factory=HeadConfig)

    @field_validator("cameras")
    @classmethod
    def _cams(cls, v: list[str]) -> list[str]:
        if not v or len(set(v)) != len(v) or any(not c for c in v):
            raise ValueError(f"cameras must be non-empty unique names, got {v}")
        return v

    @field_validator("action")
    @classmethod
    def _action(cls, v: dict[str, Any]) -> dict[str, Any]:
        return ActionSpec.from_dict(v).to_dict()  # raises ValueError naming the bad field

    @field_validator("proprio")
    @classmethod
    def _proprio(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if v is None else ProprioSpec.from_dict(v).to_dict()

    @model_validator(mode="after")
    def _check(self) -> PolicyConfig:
        self.segment_ends()  # validates the exit layout
        if self.proprio is not None and len(self.proprio["names"]) != self.proprio_dim:
            raise ValueError(f"proprio.names lists {len(self.proprio['names'])} values {self.proprio['names']}, "
                             f"but proprio_dim is {self.proprio_dim}")
        h = self.lm.hidden_size
        head_counts = (("resampler.heads", self.resampler.heads), ("lm.cross_attn_heads", self.lm.cross_attn_heads))
        for name, heads in head_counts:
            if h % heads:
                raise ValueError(f"{name}={heads} must divide the LM hidden size {h}")
        if self.vision.kind != "cnn" and self.vision.hf_config is not None:
            size = self.vision.hf_config.get("image_size")
            if size is not None and int(size) != self.image_size:
                raise ValueError(f"image_size={self.image_size} differs from the vision tower's image_size {size}")
        return self

    @property
    def token_vocab_size(self) -> int:
        """Number of token ids the instruction front end accepts."""
        return self.text.vocab_size if self.text is not None else self.lm.vocab_size

    @property
    def action_spec(self) -> ActionSpec:
        return ActionSpec.from_dict(self.action)

    @property
    def proprio_spec(self) -> ProprioSpec:
        return ProprioSpec.unnamed(self.proprio_dim) if self.proprio is None else ProprioSpec.from_dict(self.proprio)

    def segment_ends(self) -> list[int]:
        """Cumulative number of decoder layers run at each exit (1-based exits -> index k-1)."""
        n = self.lm.num_layers
        if self.exits.boundaries is not None:
            ends = list(self.exits.boundaries)
            if not ends or any(b <= a for a, b in zip([0, *ends], ends)) or ends[-1] != n:
                raise ValueError(f"exits.boundaries must increase strictly from >0 and end at {n} layers, got {ends}")
            return ends
        k = self.exits.layers_per_exit
        if k is None or n % k:
            raise ValueError(f"exits.layers_per_exit={k} must divide the {n} decoder layers (or set exits.boundaries)")
        return list(range(k, n + 1, k))

    @property
    def num_exits(self) -> int:
        return len(self.segment_ends())

    def cross_attn_layers(self) -> list[int]:
        """0-based decoder layer indices preceded by a gated cross-attention block."""
        return list(range(0, self.lm.num_layers, self.lm.cross_attn_every))


def format_validation_error(exc: Exception) -> str:
    """A pydantic ValidationError as one line per problem, naming the key path."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    parts = []
    for err in errors():
        loc = ".".join(str(x) for x in err.get("loc", ())) or "<root>"
        msg = "unknown key (not allowed)" if err.get("type") == "extra_forbidden" else err.get("msg", "")
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)
