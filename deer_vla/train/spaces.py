"""The dataset decides the action and proprio spaces a fresh model is built with.

A preset describes an architecture, not a robot: training a preset on an
imported 7-D arm must give a 7-D action head, a proprio input of the
robot's length (named, standardised) and the robot's cameras. So the
spaces recorded in the dataset's meta.json go into the model's
PolicyConfig and from there into the checkpoint's config.json, which the
policy node reads. What a training config states explicitly (keys of its
``model`` dict) or an ``init_checkpoint`` already fixes is checked against
the dataset instead, with a message naming the difference.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from deer_vla.core.action_spec import same_link
from deer_vla.core.proprio_spec import ProprioSpec
from deer_vla.data.episodes import DatasetMeta

log = logging.getLogger(__name__)


class SpaceMismatchError(ValueError):
    """The model's fixed spaces contradict the dataset's."""


def spaces_from_dataset(pcfg: Any, dataset: str | Path, explicit: set[str], fixed: bool,
                        remedy: str | None = None) -> Any:
    """``pcfg`` (a PolicyConfig) with the dataset's spaces; ``explicit``: keys the user set in ``model``;
    ``fixed``: the weights exist already (init_checkpoint, or a trained checkpoint being calibrated): nothing may
    change but the action's frame where the model's spec never said one, only be checked, and a mismatch says
    ``remedy``."""
    root = Path(dataset)
    if not (root / "meta.json").is_file():
        return pcfg  # load_episodes reports the missing dataset with its own message
    meta = DatasetMeta.load(root)
    data_spec = meta.action
    problems: list[str] = []
    updates: dict[str, Any] = {}

    def settle(key: str, model_value: Any, data_value: Any, same: bool) -> None:
        if same:
            return
        if fixed or key in explicit:
            problems.append(f"{key}: model {model_value} != dataset {data_value}")
        else:
            updates[key] = data_value

    model_spec = pcfg.action_spec
    if replace(model_spec, frame="") != replace(data_spec, frame=""):
        settle("action", pcfg.action, data_spec.to_dict(), False)
    elif model_spec.frame and data_spec.frame and not same_link(model_spec.frame, data_spec.frame):
        if fixed or "action" in explicit:  # named alone: two long dicts that differ in one word hide it
            problems.append(f"action frame: model '{model_spec.frame}' != dataset '{data_spec.frame}'")
        else:
            updates["action"] = data_spec.to_dict()
    elif data_spec.frame and not model_spec.frame:
        # a spec that never said its frame (weights trained before frames were kept, a `model.action` written
        # without one) trained on from here in the dataset's frame: a name the weights do not hold. A dataset
        # that does not say its frame (an array import without --action-frame) keeps the model's.
        updates["action"] = data_spec.to_dict()
    settle("proprio_dim", pcfg.proprio_dim, meta.proprio_dim, pcfg.proprio_dim == meta.proprio_dim)
    if meta.proprio_spec is not None:
        # trained weights fit a dataset of their own model input: names, units and limits written into the
        # checkpoint by hand since (docs/own_robot.md) made calibrating it on its own dataset impossible
        settle("proprio", pcfg.proprio, meta.proprio_spec, pcfg.proprio == meta.proprio_spec
               or (fixed and (pcfg.proprio is None or pcfg.proprio_spec.fits(ProprioSpec.from_dict(
                   meta.proprio_spec)))))
    elif "proprio_dim" in updates:
        updates["proprio"] = None  # the preset's names (if any) describe another robot
    if meta.control_rate_hz is not None:
        settle("control_rate_hz", pcfg.control_rate_hz, meta.control_rate_hz,
               pcfg.control_rate_hz == meta.control_rate_hz or (fixed and pcfg.control_rate_hz is None))
    if fixed or "cameras" in explicit:  # a model that reads some of the dataset's cameras is fine
        if not set(pcfg.cameras) <= set(meta.cameras):
            problems.append(f"cameras: model {list(pcfg.cameras)} not among the dataset's {list(meta.cameras)}")
    elif tuple(pcfg.cameras) != tuple(meta.cameras):
        # a fresh model takes the robot's cameras, all of them and in its order (a preset's two of three
        # dropped the third without a word)
        updates["cameras"] = list(meta.cameras)
    if problems:
        raise SpaceMismatchError(
            f"the model does not fit dataset {root}: {'; '.join(problems)}. "
            + ((remedy or "init_checkpoint fixes these; train a fresh model (model_preset) on this dataset")
               if fixed else "remove these keys from `model` to take them from the dataset"))
    if meta.image_size != pcfg.image_size:  # said, not changed: the image size is the architecture's
        log.info("dataset images of %d px are resized to the model's %d px (set model.image_size to change it)",
                 meta.image_size, pcfg.image_size)
    if not updates:
        return pcfg
    return type(pcfg).model_validate({**pcfg.model_dump(), **updates})
