"""Consistency criterion: how far apart two consecutive exits' actions are.

After exit k (k >= 2) the controller compares the action from exit k with the
one from exit k-1; a small distance means going deeper is unlikely to change
the decision, so it stops. As in the original, only the continuous (motion)
part is compared by default and the gripper is ignored; optionally a gripper
flip (open <-> closed) counts as an infinite distance, so a step whose exits
disagree on the gripper never stops on the threshold.

Beyond the paper, ``kind="learned"`` replaces the consecutive distance by a
learned gate's prediction of the exit's distance from the full model (model.gate).
The policy computes that score (``core.ScoredPolicy.exit_score``); this layer
only compares scores with thresholds, so it stays free of torch. Needing no
second exit, the learned criterion can already stop at exit 1 (``first_exit``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

DistanceName = Literal["rms", "mean", "max", "l2", "cosine"]
DISTANCES: tuple[str, ...] = ("rms", "mean", "max", "l2", "cosine")
CriterionKind = Literal["consecutive", "learned"]
CRITERION_KINDS: tuple[str, ...] = ("consecutive", "learned")


@dataclass(frozen=True)
class Criterion:
    """Distance between two action vectors laid out as continuous axes + gripper (last).

    distance: "rms" (default, as the original), "mean" (mean |diff|), "max"
    (max |diff|), "l2" (Euclidean norm) or "cosine" (1 - cosine similarity).
    gripper_flip_infinite: a change of gripper sign between the two actions
    gives +inf (never stop on it).
    smooth: the score at exit k is the mean of the last ``smooth`` consecutive
    distances (k vs k-1, k-1 vs k-2, ...; fewer where fewer exist). 1 is the
    original criterion; 2 damps a single lucky agreement between two exits
    (beyond the paper: `bench/bench_oracle_gap.py --smooth 2` measures it).
    kind: "consecutive" (DeeR's, the fields above) or "learned": the score at
    exit k is the policy's exit-gate prediction of the RMS distance of exit k's
    action from the full model's (the other fields keep their defaults).
    first_exit: the first exit the criterion can stop at, where its scores and
    thresholds begin. The consecutive criterion compares two exits, so 2. The
    learned one: 1 (its gate reads exit 1's own features), or 2 for exit gates
    trained without an exit-1 gate (``core.ScoredPolicy.first_gated_exit``).
    0 (default) takes the kind's default: 2, or 1 for "learned".
    """

    distance: DistanceName = "rms"
    gripper_flip_infinite: bool = False
    smooth: int = 1
    kind: CriterionKind = "consecutive"
    first_exit: int = 0

    def __post_init__(self) -> None:
        if self.distance not in DISTANCES:
            raise ValueError(f"unknown criterion distance {self.distance!r}; choose one of {DISTANCES}")
        if isinstance(self.smooth, bool) or not isinstance(self.smooth, int) or self.smooth < 1:
            raise ValueError(f"criterion smooth must be an int >= 1, got {self.smooth!r}")
        if self.kind not in CRITERION_KINDS:
            raise ValueError(f"unknown criterion kind {self.kind!r}; choose one of {CRITERION_KINDS}")
        if self.learned and (self.distance, self.gripper_flip_infinite, self.smooth) != ("rms", False, 1):
            raise ValueError("the learned criterion predicts the RMS distance from the full model: distance, "
                             "gripper_flip_infinite and smooth apply to the consecutive criterion only")
        first = self.first_exit
        if isinstance(first, bool) or not isinstance(first, int) or first not in (0, 1, 2):
            raise ValueError(f"criterion first_exit must be 1 or 2 (0: the kind's default), got {first!r}")
        if first == 0:  # frozen: resolve the default once, so equal criteria compare equal
            object.__setattr__(self, "first_exit", 1 if self.learned else 2)
        elif first == 1 and not self.learned:
            raise ValueError("the consecutive criterion compares two exits: it can first stop at exit 2, not 1")

    @property
    def learned(self) -> bool:
        return self.kind == "learned"

    def score(self, distances: list[float]) -> float:
        """The score compared with eta_k, from the consecutive distances so far (exit 2..k)."""
        recent = distances[-self.smooth:]
        return float(np.mean(recent))

    def scores(self, distances: np.ndarray) -> np.ndarray:
        """(S, N-1) consecutive distances -> (S, N-1) scores, the batch form of ``score``."""
        if self.smooth == 1:
            return distances
        cols = [distances[:, max(0, j + 1 - self.smooth): j + 1].mean(axis=1) for j in range(distances.shape[1])]
        return np.stack(cols, axis=1) if cols else distances

    def batch(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Distances between ``a`` and ``b`` of shape (..., A), A >= 2 (>= 1 axis + gripper)."""
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        if a.shape != b.shape:
            raise ValueError(f"criterion inputs differ in shape: {a.shape} vs {b.shape}")
        if a.ndim == 0 or a.shape[-1] < 2:
            raise ValueError(
                f"criterion needs actions of >= 2 values (continuous axes + gripper), got shape {a.shape}"
            )
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
            raise ValueError("criterion inputs contain NaN or inf")
        ma, mb = a[..., :-1], b[..., :-1]
        diff = ma - mb
        if self.distance == "rms":
            out = np.sqrt(np.mean(diff**2, axis=-1))
        elif self.distance == "mean":
            out = np.mean(np.abs(diff), axis=-1)
        elif self.distance == "max":
            out = np.max(np.abs(diff), axis=-1)
        elif self.distance == "l2":
            out = np.linalg.norm(diff, axis=-1)
        else:  # cosine
            na = np.linalg.norm(ma, axis=-1)
            nb = np.linalg.norm(mb, axis=-1)
            denom = na * nb
            cos = np.where(denom > 0, np.sum(ma * mb, axis=-1) / np.where(denom > 0, denom, 1.0), 0.0)
            # Two zero motions agree perfectly; one zero and one non-zero do not.
            both_zero = (na == 0) & (nb == 0)
            out = np.where(both_zero, 0.0, 1.0 - np.clip(cos, -1.0, 1.0))
        out = np.asarray(out, dtype=np.float64)
        if self.gripper_flip_infinite:
            flip = (a[..., -1] > 0) != (b[..., -1] > 0)
            out = np.where(flip, np.inf, out)
        return out

    def __call__(self, a: np.ndarray, b: np.ndarray) -> float:
        a = np.asarray(a)
        if a.ndim != 1:
            raise ValueError(f"criterion expects one action vector per argument, got shape {a.shape}")
        return float(self.batch(a, b))

    def to_dict(self) -> dict:
        out: dict = {"distance": self.distance, "gripper_flip_infinite": self.gripper_flip_infinite,
                     "smooth": self.smooth}
        if self.learned:  # absent for the consecutive criterion, so files written before stay as they were
            out["kind"] = self.kind
            out["first_exit"] = self.first_exit
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Criterion:
        unknown = set(data) - {"distance", "gripper_flip_infinite", "smooth", "kind", "first_exit"}
        if unknown:
            raise ValueError(f"unknown criterion keys {sorted(unknown)}")
        flip = data.get("gripper_flip_infinite", False)
        if not isinstance(flip, bool):  # bool("false") is True: a hand-edited file would change which steps stop
            raise ValueError(f"criterion gripper_flip_infinite must be true or false, got {flip!r}")
        # a learned criterion saved without first_exit predates exit-1 gates: its thresholds begin at exit 2
        return cls(distance=data.get("distance", "rms"), gripper_flip_infinite=flip, smooth=data.get("smooth", 1),
                   kind=data.get("kind", "consecutive"), first_exit=data.get("first_exit", 2))


def check_exit_actions(exit_actions: np.ndarray) -> np.ndarray:
    """Validate a calibration array of per-exit actions, shape (S steps, N exits, A)."""
    arr = np.asarray(exit_actions, dtype=np.float64)
    if arr.ndim != 3:
        raise ValueError(f"exit actions must have shape (steps, exits, action_dim), got {arr.shape}")
    s, n, a = arr.shape
    if s == 0 or n == 0:
        raise ValueError(f"exit actions are empty: shape {arr.shape}")
    if a < 2:
        raise ValueError(f"actions need >= 2 values (continuous axes + gripper), got action_dim {a}")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"exit actions contain NaN or inf (first at step {bad[0]}, exit {bad[1] + 1})")
    return arr


def consistency_scores(exit_actions: np.ndarray, criterion: Criterion | None = None) -> np.ndarray:
    """(S, N, A) per-exit actions -> (S, N-1) scores; column j is exit j+2 vs exit j+1 (see Criterion.smooth)."""
    arr = check_exit_actions(exit_actions)
    crit = criterion or Criterion()
    if crit.learned:
        raise ValueError("the learned criterion's scores come from the policy's exit gates, not from the actions: "
                         "record them with collect_exit_actions_and_scores and pass them as scores")
    if arr.shape[1] < 2:
        return np.zeros((arr.shape[0], 0))
    return crit.scores(crit.batch(arr[:, 1:, :], arr[:, :-1, :]))


def criterion_scores(exit_actions: np.ndarray, criterion: Criterion | None = None,
                     scores: np.ndarray | None = None) -> np.ndarray:
    """The (S, N + 1 - first_exit) scores compared with eta_first..eta_N on a calibration set (column j is
    exit j + first_exit): the consecutive distances (``consistency_scores``, exits 2..N) or, for the
    learned criterion, the gate scores recorded with the actions (exits ``criterion.first_exit``..N)."""
    arr = check_exit_actions(exit_actions)
    crit = criterion or Criterion()
    if not crit.learned:
        if scores is not None:
            raise ValueError("scores are given for the learned criterion only; the consecutive criterion "
                             "computes its own from the actions")
        return consistency_scores(arr, crit)
    if scores is None:
        raise ValueError("the learned criterion needs the exit gates' scores of these steps (record them with "
                         "collect_exit_actions_and_scores); none were given")
    sc = np.asarray(scores, dtype=np.float64)
    first = crit.first_exit
    want = (arr.shape[0], arr.shape[1] + 1 - first)
    if sc.shape != want:
        hint = ""
        if sc.ndim == 2 and sc.shape[0] == want[0] and sc.shape[1] in (arr.shape[1], arr.shape[1] - 1):
            other = arr.shape[1] + 1 - sc.shape[1]  # the scores' own first exit
            hint = f": these are scores of exits {other}..N, for a learned criterion with first_exit={other}"
        raise ValueError(f"learned scores must have shape {want} (steps, exits {first}..N), got {sc.shape}{hint}")
    if np.any(np.isnan(sc)) or np.any(sc < 0):
        raise ValueError("learned scores must be >= 0 and not NaN")
    return sc
