"""Numpy camera images -> model input tensors."""
from __future__ import annotations

import numpy as np
import torch

from deer_vla.core.image_resize import resize_rgb_frames


def images_to_tensor(images: list[np.ndarray], size: int) -> torch.Tensor:
    """HxWx3 uint8 RGB images (any size) -> (B,3,size,size) float32 in [0,1], resized by ``core.image_resize``."""
    if not images:
        raise ValueError("images_to_tensor needs at least one image")
    out = resize_rgb_frames(images, size, what="image")
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)
