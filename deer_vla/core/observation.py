"""What the policy sees at one control step."""
from __future__ import annotations

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
        if not isinstance(self.instruction, str) or not self.instruction.strip():
            raise ValueError("observation has an empty instruction")
        if self.proprio is not None and not np.all(np.isfinite(self.proprio)):
            raise ValueError("observation proprioception contains NaN or inf")
