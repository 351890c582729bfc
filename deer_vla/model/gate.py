"""Learned exit gates: per exit, a small MLP that predicts how far that exit's action is from the full model's.

DeeR stops when two consecutive exits agree, which predicts the distance to
the full model only loosely. A gate (JEI-DNN / CALM style) reads what the exit
itself knows and regresses that distance directly. Inputs at exit k (k >= 2):

- the exit's pooled feature f_k (the one the action head reads),
- log(d_k + floor), d_k the RMS distance over the motion axes between the
  actions of exits k and k-1 (DeeR's own signal),
- the exit's action a_k and its change a_k - a_{k-1}.

One 2-layer MLP per exit (the exit index picks the weights) outputs
log(distance + floor) of a_k from a_N; the score is exp(output), a distance,
so thresholds on it are >= 0 like DeeR's and the same solvers apply. Exit N
needs no gate (its distance is 0), exits 2..N-1 have one each. Inputs are
standardised with the training set's mean and std, stored with the weights.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deer_vla.model.checkpoint_dir import CheckpointDir

GATES_FORMAT = "deer_vla.exit_gates"
GATES_VERSION = 1


class GateError(ValueError):
    """Exit gates that cannot be built or loaded, or that do not fit the model; the message says why."""


@dataclass(frozen=True)
class GateConfig:
    feature_dim: int  # the model's exit feature width (lm.hidden_size)
    action_dim: int  # motion axes + gripper
    num_exits: int  # the model's exits N; gates cover exits 2..N-1
    hidden: int = 16
    floor: float = 1e-4  # distances are regressed as log(d + floor)

    def __post_init__(self) -> None:
        for name in ("feature_dim", "hidden"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise GateError(f"gate {name} must be a positive int, got {v!r}")
        if isinstance(self.action_dim, bool) or not isinstance(self.action_dim, int) or self.action_dim < 2:
            raise GateError(f"gate action_dim must be an int >= 2 (motion axes + gripper), got {self.action_dim!r}")
        if isinstance(self.num_exits, bool) or not isinstance(self.num_exits, int) or self.num_exits < 3:
            raise GateError(f"exit gates need a model with >= 3 exits (a decision at exits 2..N-1), "
                            f"got {self.num_exits!r}")
        if not (isinstance(self.floor, (int, float)) and math.isfinite(self.floor) and self.floor > 0):
            raise GateError(f"gate floor must be finite and > 0, got {self.floor!r}")

    @property
    def num_gates(self) -> int:
        return self.num_exits - 2

    @property
    def input_dim(self) -> int:
        return self.feature_dim + 1 + 2 * self.action_dim

    @classmethod
    def from_dict(cls, data: dict) -> GateConfig:
        known = {"feature_dim", "action_dim", "num_exits", "hidden", "floor"}
        required = {"feature_dim", "action_dim", "num_exits"}
        if not isinstance(data, dict) or set(data) - known or not required <= set(data):
            raise GateError(f"gate config must have keys {sorted(known)}, got {data!r}")
        return cls(**data)


def motion_rms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """RMS distance over the motion axes (all but the last value, the gripper): (..., A) -> (...)."""
    return ((a[..., :-1] - b[..., :-1]) ** 2).mean(dim=-1).sqrt()


def gate_inputs(features: torch.Tensor, actions: torch.Tensor, previous: torch.Tensor, floor: float) -> torch.Tensor:
    """(B, D) features, (B, A) actions of exit k and (B, A) of exit k-1 -> (B, D + 1 + 2A) raw gate inputs."""
    consecutive = torch.log(motion_rms(actions, previous) + floor).unsqueeze(-1)
    return torch.cat([features, consecutive, actions, actions - previous], dim=-1)


class ExitGates(nn.Module):
    """The gates of exits 2..N-1, their weights stacked (gate g is exit g + 2)."""

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
        if not 2 <= exit_index < self.config.num_exits:
            raise GateError(f"exit gates cover exits 2..{self.config.num_exits - 1}, asked for exit {exit_index}")
        return exit_index - 2

    def forward(self, inputs: torch.Tensor, exit_index: int) -> torch.Tensor:
        """(B, input_dim) raw inputs at ``exit_index`` -> (B,) predicted log(distance + floor)."""
        g = self._gate(exit_index)
        x = (inputs - self.input_mean[g]) / self.input_std[g]
        hidden = torch.relu(x @ self.w1[g] + self.b1[g])
        return (hidden @ self.w2[g].unsqueeze(-1)).squeeze(-1) + self.b2[g]

    def forward_all(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, G, input_dim) inputs of every gated exit -> (B, G) predictions (training's batched form)."""
        x = (inputs - self.input_mean) / self.input_std
        hidden = torch.relu(torch.einsum("bgd,gdh->bgh", x, self.w1) + self.b1)
        return (hidden * self.w2).sum(-1) + self.b2

    @torch.inference_mode()
    def score(self, feature: torch.Tensor, action: np.ndarray, previous: np.ndarray, exit_index: int) -> float:
        """The predicted distance of ``action`` (exit ``exit_index``) from the full model's, for one step."""
        dtype = self.w1.dtype
        f = feature.reshape(1, -1).to(device=self.w1.device, dtype=dtype)
        a = torch.as_tensor(np.asarray(action), dtype=dtype, device=f.device).reshape(1, -1)
        p = torch.as_tensor(np.asarray(previous), dtype=dtype, device=f.device).reshape(1, -1)
        return float(torch.exp(self(gate_inputs(f, a, p, self.config.floor), exit_index))[0])

    def flops_per_exit(self) -> float:
        """FLOPs of one gate evaluation (2 per multiply-add, FlopCounterMode's convention; elementwise ops
        such as the standardisation and ReLU are not counted there either)."""
        d, h = self.config.input_dim, self.config.hidden
        return float(2 * d * h + 2 * h)

    # -- files
    def save(self, path: str | Path, training: dict | None = None, weights_digest: str | None = None) -> Path:
        """safetensors with the config (optionally a training summary, and the digest of the model weights
        they were trained on: ``read_gates`` refuses them beside other weights) in its metadata."""
        from safetensors.torch import save_file

        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": GATES_FORMAT, "version": str(GATES_VERSION), "config": json.dumps(asdict(self.config))}
        if weights_digest is not None:
            meta["weights_sha256"] = weights_digest
        if training is not None:
            meta["training"] = json.dumps(training)
        state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(out), metadata=meta)
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
        try:
            config = GateConfig.from_dict(json.loads(meta.get("config", "")))
        except (json.JSONDecodeError, TypeError) as exc:
            raise GateError(f"{p}: unreadable gate config in the metadata ({exc})") from exc
        gates = cls(config)
        want = {k: tuple(v.shape) for k, v in gates.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in tensors.items()}
        if want != got:
            raise GateError(f"{p}: tensors {got} do not match its config, which needs {want}")
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
        return json.loads(text) if text else None

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
    trained_on = ExitGates.metadata(path).get("weights_sha256")
    if trained_on is not None and trained_on != ckpt.weights_digest():
        raise GateError(f"{path} was trained on other weights than {ckpt.weights_path} (sha256 {trained_on[:12]}...): "
                        "retrain the gates with `deer-vla train-gate`, or remove the file")
    return gates
