"""A tiny synthetic demonstration dataset (tests and pipeline smoke runs without the simulator)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from deer_vla.data.episodes import DatasetMeta, Episode, EpisodeWriter


def write_tiny_dataset(
    root: Path,
    cameras: tuple[str, ...],
    image_size: int,
    proprio_dim: int,
    action_spec: dict,
    tasks: tuple[str, ...] = ("drawer-open", "drawer-close"),
    length: int = 14,
    seed: int = 0,
) -> Path:
    """One episode per task through the data package's writer.

    The images carry the signal (a bright square whose position encodes the
    step), actions are smooth functions of time, so a model can fit them.
    """
    rng = np.random.default_rng(seed)
    a_dim = len(action_spec["axes"]) + 1
    meta = DatasetMeta(
        cameras=cameras, image_size=image_size, action_spec=action_spec, proprio_dim=proprio_dim, tasks=list(tasks)
    )
    writer = EpisodeWriter(root, meta, compression="lzf")
    for e, task in enumerate(tasks):
        t = np.arange(length, dtype=np.float32)
        imgs = {}
        for c in cameras:
            frames = rng.integers(0, 40, size=(length, image_size, image_size, 3), dtype=np.uint8)
            for i in range(length):
                y = (i * 3) % (image_size - 6)
                frames[i, y : y + 6, 4 + 6 * e : 10 + 6 * e] = 230
            imgs[c] = frames
        actions = np.zeros((length, a_dim), dtype=np.float32)
        for k in range(a_dim - 1):
            actions[:, k] = 0.8 * np.sin(0.4 * t + k + e)
        actions[:, -1] = np.where(t > length / 2, 1.0, -1.0) * (1 if e == 0 else -1)
        proprio = rng.normal(0, 0.1, size=(length, proprio_dim)).astype(np.float32) if proprio_dim else None
        writer.write(
            Episode(task=task, instruction=f"{task.replace('-', ' ')} now", seed=e, success=True, images=imgs,
                    proprio=proprio, actions=actions)
        )
    return root
