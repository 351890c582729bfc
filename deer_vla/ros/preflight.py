"""The policy node's settings checked before ROS starts (`deer-vla bringup`, `deer-vla demo`).

What the policy's configure would refuse (a missing or damaged checkpoint, a bad parameter, a missing
thresholds file, a budget the checkpoint cannot meet) is said in one line with status 2, before the monitor
makes a log folder and the other nodes start. The checks are the node's own (`parse_params`, `load_stack`),
run on the CPU with the parameters the graph gives the node (a model over MAX_PREFLIGHT_WEIGHTS_BYTES is not
loaded for them: its thresholds file is checked, the rest left to configure).
"""
from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import Any

from deer_vla.ros.graph import GraphSpec
from deer_vla.ros.ros_args import PARAMETER_FLAGS, ros_flags

# A time budget is judged with the device's own latencies at configure; the CPU here would refuse a budget the
# robot's accelerator meets, so these are left to the node.
TIMED_BUDGETS = ("peak_ms", "deadline_ms")
# the parameters rclpy declares on every node itself (Jazzy), beside the policy's own
RCLPY_PARAMETERS = frozenset({"use_sim_time", "start_type_description_service"})
# The budgets are checked by loading the model as configure does (0.5 s for the shipped ones); a larger one (a
# real backbone) is not read twice on a robot's start: its thresholds file is checked, its budgets by the node.
MAX_PREFLIGHT_WEIGHTS_BYTES = 256 * 2**20


class PreflightError(ValueError):
    """What the policy node would refuse at configure, found before ROS starts."""


def check_checkpoint_readable(checkpoint_dir: str) -> None:
    """CheckpointError (a ValueError) or OSError naming what is wrong with the checkpoint's files: its folder,
    config and weights header (a truncated or empty weights file too)."""
    from deer_vla.model.checkpoint_dir import CheckpointDir
    from deer_vla.model.lean_load import open_safetensors
    from deer_vla.model.shipped import resolve_checkpoint

    checkpoint = CheckpointDir(resolve_checkpoint(checkpoint_dir))
    checkpoint.check()
    with open_safetensors(checkpoint.weights_path, device="cpu"):
        pass


def _policy_values(graph: GraphSpec) -> dict[str, Any]:
    """The policy node's parameter values as the node will hold them: its declared defaults, then what the
    graph's parameter files and overrides give it."""
    from deer_vla.ros.params import POLICY_DEFAULTS

    given = graph.node("policy").file_parameters()
    return {name: given.get(name, default) for name, default in POLICY_DEFAULTS.items()}


def check_policy_before_ros(graph: GraphSpec, ros_args: Sequence[str] = ()) -> None:
    """Raise (CheckpointError/OSError for the checkpoint's files, PreflightError for the rest) what the
    graph's policy node would fail to configure with. No policy node: nothing to check. Parameters given after
    --ros-args that reach the node (``-p``, ``--params-file`` for ones its files do not set) are not seen
    here: then only the checkpoint's files are checked, and the node judges the rest."""
    if not any(spec.key == "policy" for spec in graph.nodes):
        return
    values = _policy_values(graph)
    check_checkpoint_readable(str(values["checkpoint_dir"]))
    if any(True for _ in ros_flags(list(ros_args), PARAMETER_FLAGS)):
        return
    from deer_vla.model.checkpoint_dir import CheckpointDir
    from deer_vla.model.device import check_device
    from deer_vla.ros.params import POLICY_DEFAULTS, ParameterError, parse_params, unknown_parameters
    from deer_vla.ros.policy_backend import ConfigurationError, load_stack, read_thresholds

    # a misspelt name ("budget.averge_gflops") is refused at configure: here too (a review's: it passed)
    unknown = unknown_parameters(graph.node("policy").file_parameters(), set(POLICY_DEFAULTS) | RCLPY_PARAMETERS)
    if unknown is not None:
        raise PreflightError(f"the policy node would not configure: {unknown}")
    try:
        params = parse_params(values)
    except ParameterError as exc:
        raise PreflightError(str(exc)) from None
    try:  # a GPU this machine lacks (the node's own check at configure)
        check_device(params.device)
    except ValueError as exc:
        raise PreflightError(f"the policy node would not configure: parameter 'device': {exc}") from None
    budget = {k: v for k, v in params.budget_kwargs().items() if k not in TIMED_BUDGETS}
    try:
        if CheckpointDir(params.checkpoint).weights_path.stat().st_size > MAX_PREFLIGHT_WEIGHTS_BYTES:
            read_thresholds(params.thresholds_path, params.fixed_exit)
            return
        stack = load_stack(params.checkpoint, params.thresholds_path, "cpu", budget, params.fixed_exit,
                           track_average=params.budget_track_average, risk_eps=params.risk_eps,
                           risk_delta=params.risk_delta, criterion=params.criterion)
    except ConfigurationError as exc:
        raise PreflightError(f"the policy node would not configure: {exc}") from None
    del stack
    gc.collect()  # the node loads it again at configure: never two models held at once
