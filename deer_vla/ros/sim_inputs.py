"""What the simulated robot renders for a checkpoint: its cameras, at its image size, on the topics its slots read.

Shared by the launch file (sim.launch.py), `deer-vla bringup --graph sim` and `deer-vla demo`, so that the three
start the same graph. No rclpy here: launch_support imports it while a launch file is being read.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deer_vla.model.shipped import resolve_checkpoint
from deer_vla.ros.graph import GraphSpec

# what the derivation sets, and so what a user's own value for it keeps
DERIVED = {"policy": ("image_topics",), "sim": ("cameras", "image_size")}


def sim_model_inputs(model: Any, image_topic_prefix: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(policy, sim) parameters that give the policy the simulator's pictures as its checkpoint was trained on
    them: the sim renders the model's cameras at its image size (config/sim.yaml's fixed [static, wrist] at
    64 px fed a [wrist, static] checkpoint each other's camera, and a 128 px one upscaled 64 px frames), and the
    policy's camera slots read their own camera's topic."""
    from deer_vla.sim.tasks import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, PROPRIO_DIM

    if model.proprio_dim not in (0, PROPRIO_DIM):  # every observation would be refused, the sim waiting on actions
        # until a timeout (a newcomer's demo of the own-robot checkpoint ran 9 minutes for 0 episodes)
        raise ValueError(f"the checkpoint takes {model.proprio_dim} proprio values and the Meta-World simulator "
                         f"sends {PROPRIO_DIM} (hand x, y, z, gripper): it cannot run in the simulator (a checkpoint "
                         "trained on Meta-World can: default, mt50)")
    sim = {"cameras": list(model.cameras),
           "image_size": min(max(int(model.image_size), MIN_IMAGE_SIZE), MAX_IMAGE_SIZE)}
    return {"image_topics": [f"{image_topic_prefix}/{camera}/image_raw" for camera in model.cameras]}, sim


def given_parameters(graph: GraphSpec, sets: Mapping[str, Mapping[str, Any]],
                     launch_arguments: Mapping[str, str]) -> set[str]:
    """The "node.param" keys the user set: by ``--set`` (``sets``), by a launch argument given a value other
    than its declared default, and every derived parameter of a node given its own parameter file (the file's
    word stands). ``graph``: before ``with_arguments``, whose defaults tell a value given from one left out
    (``GraphSpec.given_arguments``, the rule with_arguments applies)."""
    given = {f"{node}.{param}" for node, params in sets.items() for param in params}
    applied = graph.given_arguments(launch_arguments)
    for arg in graph.arguments:
        if arg.name not in applied:
            continue
        if arg.parameter:
            given.add(arg.parameter)
        elif arg.params_file:
            given |= {f"{arg.params_file}.{param}" for param in DERIVED.get(arg.params_file, ())}
    return given


def sim_graph_for_checkpoint(graph: GraphSpec, given: set[str]) -> GraphSpec:
    """The sim graph with ``sim_model_inputs`` for the policy's checkpoint, except the parameters the user gave
    (``given``: "node.param" keys, see ``given_parameters``)."""
    from deer_vla.model.checkpoint_dir import CheckpointDir

    checkpoint = resolve_checkpoint(str(graph.node("policy").file_parameters().get("checkpoint_dir", "")))
    prefix = graph.node("sim").file_parameters().get("image_topic_prefix", "camera")
    policy, sim = sim_model_inputs(CheckpointDir(checkpoint).read_config(), prefix)
    return graph.with_parameters({"policy": {k: v for k, v in policy.items() if f"policy.{k}" not in given},
                                  "sim": {k: v for k, v in sim.items() if f"sim.{k}" not in given}})
