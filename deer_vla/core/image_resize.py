"""One camera-image resize for every path a frame takes into the model.

Training (dataset frames of another size than the model's), imports (LeRobot, mcap) and the running
policy all resize here, so a model is trained on exactly the pixels it sees at run time: torch's
area/bilinear and cv2's differ by up to 55/255 on odd aspect ratios.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def resize_rgb(img: np.ndarray, size: int) -> np.ndarray:
    """An HxWx3 uint8 RGB image -> (size, size, 3) uint8: cv2 area when shrinking, bilinear otherwise.

    Raises ValueError on anything else than a non-empty HxWx3 uint8 array, or a size below 1."""
    if size < 1:
        raise ValueError(f"image size must be >= 1, got {size}")
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected HxWx3 uint8 RGB, got shape {getattr(img, 'shape', None)} "
                         f"dtype {getattr(img, 'dtype', None)}")
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"expected a non-empty image, got shape {img.shape}")
    if img.shape[:2] == (size, size):
        return img
    shrink = img.shape[0] > size or img.shape[1] > size
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def resize_rgb_frames(frames: Sequence[np.ndarray] | np.ndarray, size: int, what: str = "frame") -> np.ndarray:
    """RGB frames of any sizes -> (T, size, size, 3) uint8, each resized by ``resize_rgb``.

    Raises ValueError naming the first bad one ("{what} {i}: ...")."""
    out = np.empty((len(frames), size, size, 3), dtype=np.uint8)
    for i, img in enumerate(frames):
        try:
            out[i] = resize_rgb(img, size)
        except ValueError as exc:
            raise ValueError(f"{what} {i}: {exc}") from None
    return out
