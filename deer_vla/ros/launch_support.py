"""Build a launch_ros LaunchDescription from the shared node graph (config/graph.yaml).

Used by launch/*.launch.py. launch / launch_ros are imported only here and
only when a launch file runs, so the package works without them (the
one-process bringup reads the same graph).
"""
from __future__ import annotations

from typing import Any

from deer_vla.ros.graph import PACKAGE, load_graph


def launch_description(graph: str) -> Any:
    from launch.actions import EmitEvent, RegisterEventHandler
    from launch.events import matches_action
    from launch_ros.actions import LifecycleNode, Node
    from launch_ros.event_handlers import OnStateTransition
    from launch_ros.events.lifecycle import ChangeState
    from lifecycle_msgs.msg import Transition

    from launch import LaunchDescription

    entities: list[Any] = []
    for spec in load_graph(graph).nodes:
        parameters: list[Any] = [str(f) for f in spec.params_files]
        if spec.parameters:
            parameters.append(dict(spec.parameters))
        common = {
            "package": PACKAGE,
            "executable": spec.executable,
            "name": spec.name,
            "namespace": "",
            "parameters": parameters,
            "remappings": list(spec.remappings),
            "output": "screen",
        }
        if not spec.lifecycle:
            entities.append(Node(**common))
            continue
        node = LifecycleNode(**common)
        # configure at start, activate once inactive: what the bringup does programmatically
        entities.append(node)
        entities.append(
            RegisterEventHandler(
                OnStateTransition(
                    target_lifecycle_node=node,
                    goal_state="inactive",
                    entities=[EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                                          transition_id=Transition.TRANSITION_ACTIVATE))],
                )
            )
        )
        entities.append(EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                                    transition_id=Transition.TRANSITION_CONFIGURE)))
    return LaunchDescription(entities)
