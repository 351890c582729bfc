"""Load recorded demonstrations into training arrays, checked against the model config."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from deer_vla.train.windows import EpisodeArrays, resize_frames

log = logging.getLogger(__name__)


def task_paraphrases(task: str, recorded: str) -> list[str]:
    """Training paraphrases of ``task`` (from the task suite) with the recorded instruction first.

    Held-out paraphrases are never trained on, so evaluation can test them.
    """
    texts = [recorded]
    try:
        from deer_vla.sim.tasks import get_task

        spec = get_task(task)
    except (ImportError, KeyError, ValueError):
        return texts
    texts.extend(t for t in spec.train_instructions if t not in texts)
    return texts


def heldout_paraphrases(tasks: set[str]) -> list[str]:
    """Held-out paraphrases of ``tasks`` (their words go into the vocabulary; they are never trained on)."""
    out: list[str] = []
    try:
        from deer_vla.sim.tasks import get_task
    except ImportError:
        return out
    for task in sorted(tasks):
        try:
            out.extend(get_task(task).heldout_instructions)
        except (KeyError, ValueError):
            continue
    return out


def load_episodes(
    root: str | Path,
    cameras: tuple[str, ...],
    image_size: int,
    action_dim: int,
    proprio_dim: int,
    max_episodes: int | None = None,
) -> list[EpisodeArrays]:
    """Read (and verify) an EpisodeDataset into memory at the model's image size."""
    from deer_vla.data.episodes import EpisodeDataset

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset directory not found: {root} (record one with `deer-vla collect`)")
    dataset = EpisodeDataset(root)
    meta = dataset.meta
    missing_cams = [c for c in cameras if c not in meta.cameras]
    if missing_cams:
        raise ValueError(f"dataset {root} has cameras {list(meta.cameras)}; the model needs {missing_cams} too")
    if meta.action_dim != action_dim:
        raise ValueError(
            f"dataset {root} records {meta.action_dim}-D actions ({meta.action_spec}); the model's action spec "
            f"has {action_dim} values"
        )
    if len(dataset) == 0:
        raise ValueError(f"dataset {root} holds no episodes")
    n = len(dataset) if max_episodes is None else min(max_episodes, len(dataset))
    # Spread a subset over the whole dataset (it is stored task by task); every file is checksum-verified on load.
    chosen = np.unique(np.linspace(0, len(dataset) - 1, n).round().astype(int))
    out: list[EpisodeArrays] = []
    for i in (int(j) for j in chosen):
        ep = dataset.load(i)
        missing = [c for c in cameras if c not in ep.images]
        if missing:
            raise ValueError(
                f"episode {i} of {root} lacks camera(s) {missing} the model needs; it has {sorted(ep.images)}"
            )
        actions = np.asarray(ep.actions, dtype=np.float32)
        if actions.ndim != 2 or actions.shape[1] != action_dim:
            raise ValueError(
                f"episode {i} of {root}: actions have shape {actions.shape}, the model's action spec needs "
                f"(T, {action_dim})"
            )
        proprio = None
        if proprio_dim > 0:
            if ep.proprio is None:
                raise ValueError(f"episode {i} of {root} has no proprioception; the model needs {proprio_dim} values")
            proprio = np.asarray(ep.proprio, dtype=np.float32)
            if proprio.shape != (actions.shape[0], proprio_dim):
                raise ValueError(
                    f"episode {i} of {root}: proprio shape {proprio.shape}, "
                    f"expected ({actions.shape[0]}, {proprio_dim})"
                )
        out.append(
            EpisodeArrays(
                images={c: resize_frames(np.asarray(ep.images[c]), image_size) for c in cameras},
                proprio=proprio,
                actions=actions,
                instructions=task_paraphrases(ep.task, ep.instruction),
                task=ep.task,
            )
        )
    mb = sum(sum(v.numel() for v in e.images.values()) for e in out) / 2**20
    steps = sum(len(e.actions) for e in out)
    log.info("loaded %d episodes (%d steps, %.0f MiB of frames) from %s", len(out), steps, mb, root)
    return out
