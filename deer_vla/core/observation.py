"""What the policy sees at one control step."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Observation:
    """Camera images (name -> HxWx3 uint8 RGB), the instruction, optional proprioception.

    Camera names are the model's camera slots, e.g. "static" and "wrist".
    Images may be any size: the model resizes them.
    """

    images: dict[str, np.ndarray]
    instruction: str
    proprio: np.ndarray | None = None
    stamp_ns: int = 0
    extras: dict = field(default_factory=dict)

    def validate(self, cameras: tuple[str, ...]) -> None:
        if not isinstance(self.images, Mapping):
            raise ValueError(f"observation images must be a mapping of camera name to image, got "
                             f"{type(self.images).__name__}")
        missing = [c for c in cameras if c not in self.images]
        if missing:
            raise ValueError(f"observation lacks camera image(s) {missing}; has {sorted(self.images)}")
        for name in cameras:
            img = self.images[name]
            if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                shape = getattr(img, "shape", None)
                dtype = getattr(img, "dtype", None)
                raise ValueError(f"camera '{name}': expected HxWx3 uint8 RGB, got shape {shape} dtype {dtype}")
            if img.shape[0] < 8 or img.shape[1] < 8:
                raise ValueError(f"camera '{name}': image {img.shape[:2]} is too small (min 8x8)")
        if not isinstance(self.instruction, str):
            raise ValueError(f"observation instruction must be a str, got {type(self.instruction).__name__}")
        if not self.instruction.strip():
            raise ValueError("observation has an empty instruction")
        if self.proprio is not None:
            try:
                with np.errstate(over="ignore"):  # an overflow is reported below, as inf
                    values = np.asarray(self.proprio, dtype=np.float32)
            except (TypeError, ValueError):
                raise ValueError(f"observation proprioception must be numbers, got {self.proprio!r:.80}") from None
            if not np.all(np.isfinite(values)):  # as float32, as the model reads it: 1e300 is inf there
                raise ValueError("observation proprioception contains NaN or inf (as float32)")
