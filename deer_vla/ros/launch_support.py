"""Build a launch_ros LaunchDescription from the shared node graph (config/graph.yaml).

Used by launch/*.launch.py. launch / launch_ros are imported only here and
only when a launch file runs, so the package works without them (the
one-process bringup reads the same graph and takes the same arguments).

    ros2 launch deer_vla sim.launch.py checkpoint:=/path/ckpt enabled:=false namespace:=robot1
    ros2 launch deer_vla deer_vla.launch.py --show-args
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from deer_vla.core.config_io import PACKAGE
from deer_vla.ros.graph import GraphSpec, load_graph
from deer_vla.ros.sim_inputs import given_parameters, sim_graph_for_checkpoint

# launch configurations launch_ros keeps for itself (PushRosNamespace, SetParameter, SetRemap): not arguments
PUSHED_NAMESPACE = "ros_namespace"
LAUNCH_ROS_CONFIGURATIONS = frozenset({PUSHED_NAMESPACE, "global_params", "ros_remaps"})


def launch_description(graph: str) -> Any:
    """One DeclareLaunchArgument per argument of config/graph.yaml, then the nodes, built once the arguments
    are known. A parameter argument defaults to "" (keep the parameter file's value; its description names
    the value the graph's files give), so that a value given explicitly is always applied."""
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    from launch import LaunchDescription

    spec = load_graph(graph)
    defaults = spec.argument_defaults()
    entities: list[Any] = [
        DeclareLaunchArgument(arg.name, default_value=defaults[arg.name], description=arg.description)
        if arg.declared_default is None else
        DeclareLaunchArgument(arg.name, default_value=arg.declared_default,
                              description=f"{arg.description} (empty: the parameter file's value, "
                                          f"'{defaults[arg.name]}' in this graph's files)")
        for arg in spec.arguments
    ]
    # the nodes depend on argument values, which exist only at launch time: an OpaqueFunction reads them
    entities.append(OpaqueFunction(function=_launch_nodes, args=[graph]))
    return LaunchDescription(entities)


def _launch_nodes(context: Any, graph: str) -> list[Any]:
    from launch.logging import get_logger
    from launch.substitutions import LaunchConfiguration

    spec = load_graph(graph)
    names = [arg.name for arg in spec.arguments]
    for warning in misspelt_arguments(context.launch_configurations, names):
        get_logger("deer_vla").warning(warning)
    values = {name: LaunchConfiguration(name).perform(context) for name in names}
    # included under PushRosNamespace: launch_ros puts it in front of each node's namespace (Node's
    # _perform_substitutions), so the parameter files are judged against the name the node will have
    given = spec.with_arguments(values, context.launch_configurations.get(PUSHED_NAMESPACE, ""))
    if graph == "sim":  # the simulator renders what the checkpoint was trained on, as bringup and the demo do
        given = sim_graph_for_checkpoint(given, given_parameters(spec, {}, values))
    return node_actions(given)


def misspelt_arguments(given: Iterable[str], declared: list[str]) -> list[str]:
    """A warning for each launch configuration that looks like a misspelling of one of ours.

    ``ros2 launch`` accepts any ``name:=value`` and ignores one nobody declared, so ``checkpont:=/x`` would
    run the default checkpoint in silence. Names a parent launch file sets for itself share the context,
    so only a near miss of a declared name is reported, and nothing is refused. launch_ros's own
    configurations are not arguments (difflib took ``ros_namespace`` for a misspelt ``namespace``)."""
    warnings = []
    for name in sorted(set(given) - set(declared) - LAUNCH_ROS_CONFIGURATIONS):
        close = difflib.get_close_matches(name.lower(), declared, n=1, cutoff=0.8)
        if close:
            warnings.append(f"launch argument '{name}' is not one of deer_vla's and is ignored; "
                            f"did you mean '{close[0]}'? (see --show-args)")
    return warnings


def node_actions(spec: GraphSpec) -> list[Any]:
    """The launch_ros actions that start ``spec``'s nodes, manage their lifecycles and end the launch."""
    from launch.actions import EmitEvent, RegisterEventHandler, UnregisterEventHandler
    from launch.event_handlers import OnProcessExit
    from launch.events import Shutdown, matches_action
    from launch_ros.actions import LifecycleNode, Node
    from launch_ros.event_handlers import OnStateTransition
    from launch_ros.events.lifecycle import ChangeState
    from lifecycle_msgs.msg import Transition

    entities: list[Any] = []
    for node_spec in spec.nodes:
        parameters: list[Any] = [str(f) for f in node_spec.params_files]
        if node_spec.parameters:
            parameters.append(dict(node_spec.parameters))
        common = {
            "package": PACKAGE,
            "executable": node_spec.executable,
            "name": node_spec.name,
            "namespace": node_spec.launch_namespace,
            "parameters": parameters,
            "remappings": list(node_spec.remappings),
            # a killed `ros2 launch` (SIGKILL, the OOM killer) left its nodes running, the policy actuating
            "arguments": ["--exit-with-parent"],
            "output": "screen",
        }
        node: Any = LifecycleNode(**common) if node_spec.lifecycle else Node(**common)
        entities.append(node)
        if node_spec.ends_graph:
            # the sim exits after its episodes: end the whole launch, as the bringup does
            entities.append(RegisterEventHandler(OnProcessExit(
                target_action=node,
                on_exit=[EmitEvent(event=Shutdown(reason=f"{node_spec.name} finished"))],
            )))
        if not node_spec.lifecycle:
            continue
        # the first configure or activate failing, or raising (errorprocessing), ends the launch, as it ends the
        # bringup: the sim graph's simulator waited for an active policy for ever, and a robot's launch ran on
        # with a node that does nothing
        watches = [OnStateTransition(
            target_lifecycle_node=node, start_state=start, goal_state=goal, handle_once=True,
            entities=[EmitEvent(event=Shutdown(reason=f"{node_spec.name} failed to start: its configure or activate "
                                                      "failed (see its log above)"))],
        ) for start, goal in (("configuring", "unconfigured"), ("activating", "inactive"), ("errorprocessing", None))]
        entities += [RegisterEventHandler(watch) for watch in watches]
        # configure at start; activate once configure has succeeded. start_state matters: a bare
        # goal_state="inactive" also matches deactivating -> inactive and would undo an operator's deactivate.
        # handle_once: only the first successful configure; an operator's later cleanup + configure (to change
        # a parameter) leaves the node inactive until they activate it, as the one-process bringup does
        entities.append(
            RegisterEventHandler(
                OnStateTransition(
                    target_lifecycle_node=node,
                    start_state="configuring",
                    goal_state="inactive",
                    handle_once=True,
                    entities=[EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                                          transition_id=Transition.TRANSITION_ACTIVATE))],
                )
            )
        )
        # the first activation withdraws the watches: an operator's later transitions may fail without ending it
        entities.append(RegisterEventHandler(OnStateTransition(
            target_lifecycle_node=node, start_state="activating", goal_state="active", handle_once=True,
            entities=[UnregisterEventHandler(watch) for watch in watches],
        )))
        entities.append(EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                                    transition_id=Transition.TRANSITION_CONFIGURE)))
    return entities
