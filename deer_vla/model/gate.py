"""Learned exit gates: per exit, a small MLP that predicts how far that exit's action is from the full model's.

DeeR stops when two consecutive exits agree, which predicts the distance to
the full model only loosely. A gate (JEI-DNN / CALM style) reads what the exit
itself knows and regresses that distance directly. Inputs at exit k:

- the exit's pooled feature f_k (the one the action head reads),
- log(d_k + floor), d_k the RMS distance over the motion axes between the
  actions of exits k and k-1 (DeeR's own signal),
- the exit's action a_k and its change a_k - a_{k-1}.

Exit 1 has no previous exit: its gate is given a_1 as the previous action (a
zero change, the floor's distance), constant inputs that the standardisation
zeroes, so it predicts from f_1 and a_1 alone. Unlike DeeR's criterion, which
needs two exits to compare, the learned one can thus stop at exit 1.

One 2-layer MLP per exit (the exit index picks the weights) outputs
log(distance + floor) of a_k from a_N; the score is exp(output), a distance,
so thresholds on it are >= 0 like DeeR's and the same solvers apply. Exit N
needs no gate (its distance is 0); exits 1..N-1 have one each (2..N-1 in
gates files written before exit-1 gates: ``GateConfig.first_exit`` 2, read as
such and still usable from exit 2 on). Inputs are standardised with the
training set's mean and std, stored with the weights, and clipped to
+-INPUT_CLIP standard deviations: an input that barely varied in training (a
gripper change whose std was 1e-4) otherwise turned an unusual step into a
prediction of ~1e4 and a score of exp(...) = inf, which stopped the step.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deer_vla.core.atomic_file import atomic_write_bytes
from deer_vla.core.json_text import parse_json
from deer_vla.model.checkpoint_dir import CheckpointDir
from deer_vla.model.lean_load import magnitude_problem

GATES_FORMAT = "deer_vla.exit_gates"
GATES_VERSION = 1
INPUT_CLIP = 10.0  # standardised inputs are clipped to +-this: far outside training, the gate says "far", finitely


class GateError(ValueError):
    """Exit gates that cannot be built or loaded, or that do not fit the model; the message says why."""


@dataclass(frozen=True)
class GateConfig:
    feature_dim: int  # the model's exit feature width (lm.hidden_size)
    action_dim: int  # motion axes + gripper
    num_exits: int  # the model's exits N; gates cover exits first_exit..N-1
    hidden: int = 16
    floor: float = 1e-4  # distances are regressed as log(d + floor)
    first_exit: int = 1  # the first gated exit: 1; 2 in files written before exit-1 gates (from_dict's default)

    def __post_init__(self) -> None:
        for name in ("feature_dim", "hidden"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise GateError(f"gate {name} must be a positive int, got {v!r}")
        if isinstance(self.action_dim, bool) or not isinstance(self.action_dim, int) or self.action_dim < 2:
            raise GateError(f"gate action_dim must be an int >= 2 (motion axes + gripper), got {self.action_dim!r}")
        if isinstance(self.first_exit, bool) or self.first_exit not in (1, 2):
            raise GateError(f"gate first_exit must be 1 or 2, got {self.first_exit!r}")
        if (isinstance(self.num_exits, bool) or not isinstance(self.num_exits, int)
                or self.num_exits < self.first_exit + 1):
            raise GateError(f"exit gates from exit {self.first_exit} need a model with >= {self.first_exit + 1} "
                            f"exits (a decision at exits {self.first_exit}..N-1), got {self.num_exits!r}")
        if not (isinstance(self.floor, (int, float)) and math.isfinite(self.floor) and self.floor > 0):
            raise GateError(f"gate floor must be finite and > 0, got {self.floor!r}")

    @property
    def num_gates(self) -> int:
        return self.num_exits - self.first_exit

    @property
    def input_dim(self) -> int:
        return self.feature_dim + 1 + 2 * self.action_dim

    @classmethod
    def from_dict(cls, data: dict) -> GateConfig:
        known = {"feature_dim", "action_dim", "num_exits", "hidden", "floor", "first_exit"}
        required = {"feature_dim", "action_dim", "num_exits"}
        if not isinstance(data, dict) or set(data) - known or not required <= set(data):
            raise GateError(f"gate config must have keys {sorted(known)}, got {data!r}")
        # gates saved without first_exit were trained before exit-1 gates existed: they cover exits 2..N-1
        return cls(**{"first_exit": 2, **data})


def motion_rms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """RMS distance over the motion axes (all but the last value, the gripper): (..., A) -> (...)."""
    return ((a[..., :-1] - b[..., :-1]) ** 2).mean(dim=-1).sqrt()


def gate_inputs(features: torch.Tensor, actions: torch.Tensor, previous: torch.Tensor, floor: float) -> torch.Tensor:
    """(B, D) features, (B, A) actions of exit k and (B, A) of exit k-1 -> (B, D + 1 + 2A) raw gate inputs.
    At exit 1 ``previous`` is the exit's own action (module docstring)."""
    consecutive = torch.log(motion_rms(actions, previous) + floor).unsqueeze(-1)
    return torch.cat([features, consecutive, actions, actions - previous], dim=-1)


def _standardised(inputs: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Inputs in the training set's standard deviations, clipped to +-INPUT_CLIP (module docstring)."""
    return ((inputs - mean) / std).clamp(-INPUT_CLIP, INPUT_CLIP)


class ExitGates(nn.Module):
    """The gates of exits first_exit..N-1, their weights stacked (gate g is exit g + first_exit)."""

    input_mean: torch.Tensor  # (G, input_dim) buffers: the training inputs' statistics
    input_std: torch.Tensor

    def __init__(self, config: GateConfig) -> None:
        super().__init__()
        self.config = config
        g, d, h = config.num_gates, config.input_dim, config.hidden
        self.w1 = nn.Parameter(torch.randn(g, d, h) / math.sqrt(d))
        self.b1 = nn.Parameter(torch.zeros(g, h))
        self.w2 = nn.Parameter(torch.randn(g, h) / math.sqrt(h))
        self.b2 = nn.Parameter(torch.zeros(g))
        self.register_buffer("input_mean", torch.zeros(g, d))
        self.register_buffer("input_std", torch.ones(g, d))

    def _gate(self, exit_index: int) -> int:
        first = self.config.first_exit
        if not first <= exit_index < self.config.num_exits:
            raise GateError(f"exit gates cover exits {first}..{self.config.num_exits - 1}, asked for exit "
                            f"{exit_index}" + (" (these were trained without an exit-1 gate: retrain them with "
                                               "`deer-vla train-gate`)" if exit_index == 1 else ""))
        return exit_index - first

    def forward(self, inputs: torch.Tensor, exit_index: int) -> torch.Tensor:
        """(B, input_dim) raw inputs at ``exit_index`` -> (B,) predicted log(distance + floor)."""
        g = self._gate(exit_index)
        x = _standardised(inputs, self.input_mean[g], self.input_std[g])
        hidden = torch.relu(x @ self.w1[g] + self.b1[g])
        return (hidden @ self.w2[g].unsqueeze(-1)).squeeze(-1) + self.b2[g]

    def forward_all(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, G, input_dim) inputs of every gated exit -> (B, G) predictions (training's batched form)."""
        x = _standardised(inputs, self.input_mean, self.input_std)
        hidden = torch.relu(torch.einsum("bgd,gdh->bgh", x, self.w1) + self.b1)
        return (hidden * self.w2).sum(-1) + self.b2

    @torch.inference_mode()
    def score(self, feature: torch.Tensor, action: np.ndarray, previous: np.ndarray | None, exit_index: int) -> float:
        """The predicted distance of ``action`` (exit ``exit_index``) from the full model's, for one step;
        ``previous`` is exit k-1's action (None at exit 1, which has none)."""
        dtype = self.w1.dtype
        f = feature.reshape(1, -1).to(device=self.w1.device, dtype=dtype)
        a = torch.as_tensor(np.asarray(action), dtype=dtype, device=f.device).reshape(1, -1)
        if exit_index == 1:
            p = a  # no previous exit: the same inputs as in training (module docstring)
        elif previous is None:
            raise GateError(f"the gate of exit {exit_index} needs exit {exit_index - 1}'s action")
        else:
            p = torch.as_tensor(np.asarray(previous), dtype=dtype, device=f.device).reshape(1, -1)
        return float(torch.exp(self(gate_inputs(f, a, p, self.config.floor), exit_index))[0])

    def flops_per_exit(self) -> float:
        """FLOPs of one gate evaluation (2 per multiply-add, FlopCounterMode's convention; elementwise ops
        such as the standardisation and ReLU are not counted there either)."""
        d, h = self.config.input_dim, self.config.hidden
        return float(2 * d * h + 2 * h)

    # -- files
    def save(self, path: str | Path, training: dict | None = None, weights_digest: str | None = None,
             config_digest: str | None = None) -> Path:
        """safetensors with the config (optionally a training summary, and the digests of the model weights
        and config they were trained on: ``read_gates`` refuses them beside other ones) in its metadata."""
        from safetensors.torch import save

        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": GATES_FORMAT, "version": str(GATES_VERSION), "config": json.dumps(asdict(self.config)),
                "input_clip": repr(INPUT_CLIP)}
        if weights_digest is not None:
            meta["weights_sha256"] = weights_digest
        if config_digest is not None:
            meta["config_sha256"] = config_digest
        if training is not None:
            meta["training"] = json.dumps(training)
        state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in self.state_dict().items()}
        atomic_write_bytes(out, save(state, metadata=meta))  # a crash mid-write keeps the previous gates
        return out

    @classmethod
    def load(cls, path: str | Path) -> ExitGates:
        from safetensors import safe_open

        p = Path(path)
        if not p.is_file():
            raise GateError(f"exit gates file not found: {p}")
        try:
            with safe_open(str(p), framework="pt", device="cpu") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:  # safetensors raises its own error types for malformed files
            raise GateError(f"{p}: not a readable safetensors file ({exc})") from exc
        if meta.get("format") != GATES_FORMAT:
            raise GateError(f"{p}: not an exit gates file (metadata format {meta.get('format')!r})")
        if meta.get("version") != str(GATES_VERSION):
            raise GateError(f"{p}: exit gates version {meta.get('version')!r}; this deer_vla reads {GATES_VERSION}")
        # the arithmetic the gates (and the thresholds solved on their scores) were made with; files from before
        # it was recorded (2026-12-06) are read with this clip, which files from before 2026-12-02 did not have
        raw_clip = meta.get("input_clip", repr(INPUT_CLIP))
        try:
            clip = float(raw_clip)
        except ValueError:
            raise GateError(f"{p}: input_clip {raw_clip!r} in its metadata is not a number") from None
        if clip != INPUT_CLIP:
            raise GateError(f"{p}: exit gates trained with inputs clipped to +-{clip:g} std; this deer_vla clips to "
                            f"+-{INPUT_CLIP:g}, so their scores would differ from those their thresholds were solved "
                            "on: run deer-vla train-gate, then deer-vla calibrate --criterion learned, again")
        try:
            config = GateConfig.from_dict(parse_json(meta.get("config", "")))
            with torch.device("meta"):  # shapes only: a config asking for huge layers allocates nothing here
                want = {k: tuple(v.shape) for k, v in cls(config).state_dict().items()}
        except (ValueError, TypeError, RuntimeError, ArithmeticError) as exc:  # JsonTextError too
            raise GateError(f"{p}: unreadable gate config in the metadata ({type(exc).__name__}: {exc})") from exc
        got = {k: tuple(v.shape) for k, v in tensors.items()}
        if want != got:
            raise GateError(f"{p}: tensors {got} do not match its config, which needs {want}")
        # NaN or inf, and a huge finite value (a -1e30 bias scored every step 0, exiting at exit 1 always)
        bad = {k: problem for k, v in tensors.items() if v.is_floating_point()
               and (problem := magnitude_problem(v)) is not None}
        if bad:
            name, problem = next(iter(bad.items()))
            raise GateError(f"{p}: tensor '{name}' {problem}" + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))
        gates = cls(config)
        gates.load_state_dict(tensors)
        return gates.eval()

    @staticmethod
    def metadata(path: str | Path) -> dict[str, str]:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as f:
            return dict(f.metadata() or {})

    @classmethod
    def training_summary(cls, path: str | Path) -> dict | None:
        """The training summary saved with the gates (None if absent)."""
        text = cls.metadata(path).get("training")
        return parse_json(text) if text else None

    def check_fits(self, feature_dim: int, action_dim: int, num_exits: int, where: str = "exit gates") -> None:
        """Raise GateError unless these gates were trained for a model of this shape."""
        c = self.config
        if (c.feature_dim, c.action_dim, c.num_exits) != (feature_dim, action_dim, num_exits):
            raise GateError(f"{where} were trained for features of {c.feature_dim}, actions of {c.action_dim} and "
                            f"{c.num_exits} exits; this model has {feature_dim}, {action_dim} and {num_exits}: "
                            "retrain them with `deer-vla train-gate`")


def read_gates(checkpoint: str | Path, feature_dim: int, action_dim: int, num_exits: int) -> ExitGates | None:
    """The checkpoint's exit gates (None when it has none), checked against the model's shape and, when they
    record it, the digest of the weights they were trained on (retrained weights make their scores wrong)."""
    ckpt = CheckpointDir(checkpoint)
    path = ckpt.gates_path
    if not path.is_file():
        return None
    gates = ExitGates.load(path)
    gates.check_fits(feature_dim, action_dim, num_exits, where=str(path))
    meta = ExitGates.metadata(path)
    trained_on = meta.get("weights_sha256")
    if trained_on is not None and trained_on != ckpt.weights_digest():
        raise GateError(f"{path} was trained on other weights than {ckpt.weights_path} (sha256 {trained_on[:12]}...): "
                        "retrain the gates with `deer-vla train-gate`, or remove the file")
    config = meta.get("config_sha256")  # gates trained before 2026-12-07 record none
    if config is not None and config not in ckpt.config_digests():
        raise GateError(f"{path} was trained on these weights under another config than {ckpt.config_path} (sha256 "
                        f"{config[:12]}...): an edited config makes the weights compute other features; undo the "
                        "edit, or retrain the gates with `deer-vla train-gate`")
    return gates
