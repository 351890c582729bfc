"""Names, units, limits and standardisation of a policy's proprioception vector.

A robot's proprioception (joint angles, end-effector pose, gripper opening,
...) is any number of values per step. The spec names each one so that a
message with the values in another order or of another robot is refused
with a message that says what the model expects, instead of being fed to
the model. ``low``/``high`` (optional) are physical limits: a value outside
them means wrong units or a wrong source. ``mean``/``std`` (optional)
standardise the values inside the model, so that joint angles in degrees
and positions in metres reach the network on the same scale.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deer_vla.core.spec_lists import real_numbers, spec_from_lists

_NAME_RE = re.compile(r"^[A-Za-z0-9_.:/\-]+$")


class ProprioError(ValueError):
    """Proprioception values that do not match the spec (length, NaN/inf, outside the limits)."""


@dataclass(frozen=True)
class ProprioSpec:
    names: tuple[str, ...]
    units: tuple[str, ...] = field(default=())  # free text per value ("m", "rad", "deg", "" = unknown)
    low: tuple[float, ...] = field(default=())  # () = no limits
    high: tuple[float, ...] = field(default=())
    mean: tuple[float, ...] = field(default=())  # () = no standardisation
    std: tuple[float, ...] = field(default=())

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.names)
        bad = [n for n in names if not _NAME_RE.match(n)]
        if bad or len(set(names)) != len(names):
            raise ValueError(f"ProprioSpec.names must be unique identifiers (letters, digits, _ . : / -), got {names}")
        object.__setattr__(self, "names", names)
        n = len(names)
        units = tuple(str(u) for u in self.units) or ("",) * n
        if len(units) != n:
            raise ValueError(f"ProprioSpec.units has {len(units)} values for {n} names")
        object.__setattr__(self, "units", units)
        for pair in (("low", "high"), ("mean", "std")):
            values = [real_numbers(getattr(self, k), f"ProprioSpec.{k}") for k in pair]
            if bool(values[0]) != bool(values[1]):
                raise ValueError(f"ProprioSpec.{pair[0]} and .{pair[1]} go together: give both or neither")
            for key, vals in zip(pair, values):
                if vals and len(vals) != n:
                    raise ValueError(f"ProprioSpec.{key} has {len(vals)} values for {n} names {names}")
                if not all(np.isfinite(vals)):
                    raise ValueError(f"ProprioSpec.{key} must be finite, got {vals}")
                object.__setattr__(self, key, vals)
        if any(lo > hi for lo, hi in zip(self.low, self.high)):
            raise ValueError(f"ProprioSpec.low must not exceed high, got low={self.low} high={self.high}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"ProprioSpec.std must be positive, got {self.std}")

    @classmethod
    def unnamed(cls, dim: int) -> ProprioSpec:
        """The spec of a model that only knows how many values it takes (checkpoints before names)."""
        return cls(names=tuple(f"proprio_{i}" for i in range(dim)))

    @property
    def dim(self) -> int:
        return len(self.names)

    def model_input(self) -> dict[str, Any]:
        """What the model computes with: how many values, and their standardisation. The names, units and limits
        say how the node finds, converts and checks a robot's values (docs/own_robot.md has them written into
        config.json by hand: joint names, ``deg``, limits), not what the weights compute from the values."""
        return {"dim": self.dim, "mean": list(self.mean), "std": list(self.std)}

    def fits(self, data: ProprioSpec) -> bool:
        """Whether a trained model of this spec may be calibrated or fine-tuned on a dataset whose proprio is
        ``data``: the same model input, and no unit that both name differently ("" = not said: the importers
        cannot know units, so a model told ``deg`` afterwards still fits its own dataset)."""
        return self.model_input() == data.model_input() and all(
            a == b or not a or not b for a, b in zip(self.units, data.units))

    def check(self, values: np.ndarray) -> np.ndarray:
        """-> the values as float32; ProprioError naming what is wrong (length, non-finite, beyond a limit)."""
        values = np.asarray(values, dtype=np.float32).reshape(-1)
        if values.size != self.dim:
            raise ProprioError(f"{values.size} values, the model takes {self.dim}: {', '.join(self._labels())}")
        if not np.all(np.isfinite(values)):
            raise ProprioError(f"non-finite values {self._named(~np.isfinite(values), values)}")
        if self.low:
            # the limits as float32 too: 3.2 read as float32 is 3.2000000477, above a float64 limit of 3.2
            outside = (values < np.asarray(self.low, dtype=np.float32)) | (values > np.asarray(self.high,
                                                                                               dtype=np.float32))
            if outside.any():
                limits = ", ".join(f"{self.names[i]} in [{self.low[i]:g}, {self.high[i]:g}]"
                                   for i in np.flatnonzero(outside))
                raise ProprioError(f"values outside the limits: {self._named(outside, values)} (limits: {limits}); "
                                   "wrong units or a different robot?")
        return values

    def _labels(self) -> list[str]:
        return [f"{n} [{u}]" if u else n for n, u in zip(self.names, self.units)]

    def _named(self, mask: np.ndarray, values: np.ndarray) -> str:
        return ", ".join(f"{self.names[i]}={values[i]:g}" for i in np.flatnonzero(mask))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"names": list(self.names), "units": list(self.units)}
        for key in ("low", "high", "mean", "std"):
            if getattr(self, key):
                out[key] = list(getattr(self, key))
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProprioSpec:
        unknown = set(data) - {"names", "units", "low", "high", "mean", "std"}
        if unknown:
            raise ValueError(f"unknown ProprioSpec keys {sorted(unknown)}")
        if "names" not in data:
            raise ValueError("ProprioSpec needs 'names'")
        return spec_from_lists(cls, data, dict.fromkeys(("names", "units", "low", "high", "mean", "std"), ()),
                               "ProprioSpec")
