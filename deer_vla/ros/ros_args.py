"""What a command line's ROS arguments (after --ros-args) say about node names and namespaces, read before rcl
is: rcl refuses a namespace it cannot take with a traceback at node creation ("Expected lexeme type 19")."""
from __future__ import annotations

import re

# one token of a ROS namespace: letters, digits and '_', not starting with a digit
NAMESPACE_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# one token of a name in a remap rule: rcl's rule lexer also refuses '__' in it ("-r __ns:=/a__b": "Expected lexeme
# type 1"), which a node created with that namespace takes
REMAP_TOKEN = re.compile(r"(?!.*__)[A-Za-z_][A-Za-z0-9_]*")


def name_remaps(ros_args: list[str]) -> list[tuple[str, str, str, str]]:
    """The node-name and namespace remaps among ``ros_args`` (after --ros-args), in order, as (the node they
    name, "" for every node of the process; "__node" or "__ns"; the value; the rule as given): ``-r __node:=X``,
    ``-r __ns:=/X``, ``-r deer_vla_policy:__node:=X`` (``__name`` is rcl's other spelling of ``__node``)."""
    found: list[tuple[str, str, str, str]] = []
    in_ros = False
    for i, arg in enumerate(ros_args):
        if arg in ("--ros-args", "--"):
            in_ros = arg == "--ros-args"
        elif in_ros and arg in ("-r", "--remap") and i + 1 < len(ros_args):
            rule, _, value = ros_args[i + 1].partition(":=")
            node, _, name = rule.rpartition(":")
            if name in ("__node", "__name", "__ns"):
                found.append((node, "__ns" if name == "__ns" else "__node", value, ros_args[i + 1]))
    return found


def check_namespace_remap(value: str) -> None:
    """ValueError unless rcl takes ``value`` as an ``__ns`` remap (absolute, no trailing '/', valid names)."""
    tokens = value[1:].split("/") if value.startswith("/") else []
    if value != "/" and (not tokens or not all(REMAP_TOKEN.fullmatch(t) for t in tokens)):
        raise ValueError(f"-r __ns:={value} is not a namespace rcl takes: an absolute name such as /arm1 (letters, "
                         "digits and single '_', not starting with a digit, joined by single '/', none at the end)")


def check_namespace_remaps(ros_args: list[str]) -> None:
    """``check_namespace_remap`` of every ``__ns`` remap among ``ros_args``."""
    for _, kind, value, _ in name_remaps(ros_args):
        if kind == "__ns":
            check_namespace_remap(value)
