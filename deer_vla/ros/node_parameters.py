"""Declare a plain node's parameters from a dict of defaults, typed the way people write them.

rclpy types a parameter by its default, so ``-p rate_hz:=20`` (an integer) for a float
default raised InvalidParameterTypeException out of the constructor, and a misspelt name
was dropped without a word. Here a number is accepted for a float, every other type is
checked with a message naming the parameter, and unknown names are warned about.

These nodes read their parameters once, at start-up, so they are declared read-only: a later
``ros2 param set`` is refused with "Trying to set a read-only parameter" instead of being
accepted and then ignored. (The policy node, whose parameters change at run time, has its own.)
"""
from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node

from deer_vla.ros.params import unknown_names


def _type_problem(default: Any, value: Any) -> str | None:
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "a boolean"
    if isinstance(default, float):
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number"
    if isinstance(default, int):
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if isinstance(default, str):
        return None if isinstance(value, str) else "a string"
    if isinstance(default, list):
        # an empty list has no element type: "-p tasks:=[]" arrives as None, a YAML [] as an empty array
        return None if value is None or isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value) \
            else "a list of strings"
    raise TypeError(f"no rule for a {type(default).__name__} parameter default")


def declare_parameters(node: Node, defaults: dict[str, Any]) -> dict[str, Any]:
    """Declare ``defaults`` on ``node`` and return their values (ints given for floats become floats).

    Raises ValueError naming every parameter of the wrong type; logs a warning for an override the node does
    not declare (rclpy would ignore it silently). Overrides (files, launch, -p) still apply; later changes are
    refused."""
    for key, default in defaults.items():
        node.declare_parameter(key, default, ParameterDescriptor(
            dynamic_typing=True, read_only=True, description="read at start-up: restart the node to change it"))
    values = {key: node.get_parameter(key).value for key in defaults}
    problems = []
    for key, default in defaults.items():
        expected = _type_problem(default, values[key])
        if expected is not None:
            problems.append(f"parameter '{key}' = {values[key]!r}: expected {expected}")
        elif isinstance(default, float):
            values[key] = float(values[key])
        elif isinstance(default, list):
            values[key] = list(values[key] or [])
    if problems:
        raise ValueError(f"invalid {node.get_name()} parameters: " + "; ".join(problems))
    for warning in unknown_overrides(node):
        node.get_logger().warning(warning)
    return values


def topic_name_problem(node: Node, parameter: str, topic: str) -> str | None:
    """Why ``topic`` (parameter ``parameter``) is not a topic name rcl takes on ``node`` (namespace, ~ and
    remapping resolved), or None. Asked before anything is created with it."""
    try:
        node.resolve_topic_name(topic)
    except Exception as exc:  # rclpy's RCLError, with rcl's reason
        return f"parameter '{parameter}' = '{topic}' is not a valid topic name: {exc}"
    return None


def unknown_overrides(node: Node, fate: str = "ignored") -> list[str]:
    """One line per override given to ``node`` that it does not declare, naming the closest declared one and what
    becomes of it (``fate``); and one for the ``qos_overrides.*`` given, which no endpoint of these nodes takes
    (rclpy's QoSOverridingOptions): a robot-wide file may set them for other nodes, so they are only said."""
    given = getattr(node, "_parameter_overrides", {})  # what rclpy matched to this node (files, launch, -p)
    lines = [f"unknown parameter '{name}' {fate}" + (f" (did you mean '{close}'?)" if close else "")
             for name, close in unknown_names(given, node.list_parameters([], 0).names)]
    qos = sorted(name for name in given if name.startswith("qos_overrides."))
    if qos:
        lines.append(f"{len(qos)} qos_overrides parameter(s) ignored ('{qos[0]}'{', ...' if len(qos) > 1 else ''}): "
                     "no endpoint of this node takes QoS overrides; its QoS is fixed (docs/ros.md)")
    return lines
