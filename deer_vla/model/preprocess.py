"""Numpy camera images -> model input tensors."""
from __future__ import annotations

import cv2
import numpy as np
import torch


def images_to_tensor(images: list[np.ndarray], size: int) -> torch.Tensor:
    """HxWx3 uint8 RGB images (any size) -> (B,3,size,size) float32 in [0,1] (area/linear resize with cv2)."""
    if not images:
        raise ValueError("images_to_tensor needs at least one image")
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"image {i}: expected HxWx3 uint8 RGB, got shape {getattr(img, 'shape', None)} "
                             f"dtype {getattr(img, 'dtype', None)}")
        if img.shape[:2] == (size, size):
            out[i] = img
        else:
            shrink = img.shape[0] > size or img.shape[1] > size
            out[i] = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)
