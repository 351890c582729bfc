"""Numpy camera images -> model input tensors."""
from __future__ import annotations

import numpy as np
import torch

from deer_vla.core.image_resize import resize_rgb


def images_to_tensor(images: list[np.ndarray], size: int) -> torch.Tensor:
    """HxWx3 uint8 RGB images (any size) -> (B,3,size,size) float32 in [0,1], resized by ``core.image_resize``."""
    if not images:
        raise ValueError("images_to_tensor needs at least one image")
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        try:
            out[i] = resize_rgb(img, size)
        except ValueError as exc:
            raise ValueError(f"image {i}: {exc}") from None
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)
