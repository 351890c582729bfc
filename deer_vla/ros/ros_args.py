"""What a command line's ROS arguments (after --ros-args) say about node names and namespaces, read before rcl
is: rcl refuses a namespace it cannot take with a traceback at node creation ("Expected lexeme type 19")."""
from __future__ import annotations

import re
from collections.abc import Iterator

# one token of a ROS namespace: letters, digits and '_', not starting with a digit
NAMESPACE_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# one token of a name in a remap rule: rcl's rule lexer also refuses '__' in it ("-r __ns:=/a__b": "Expected lexeme
# type 1"), which a node created with that namespace takes
REMAP_TOKEN = re.compile(r"(?!.*__)[A-Za-z_][A-Za-z0-9_]*")


REMAP_FLAGS = ("-r", "--remap")
PARAMETER_FLAGS = ("-p", "--param", "--params-file")


def ros_flags(ros_args: list[str], flags: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    """(flag, its value) of each of ``flags`` inside --ros-args ... (-- ends them) among ``ros_args``, in order."""
    in_ros = False
    for i, arg in enumerate(ros_args[:-1]):
        if arg in ("--ros-args", "--"):
            in_ros = arg == "--ros-args"
        elif in_ros and arg in flags:
            yield arg, ros_args[i + 1]


def name_remaps(ros_args: list[str]) -> list[tuple[str, str, str, str]]:
    """The node-name and namespace remaps among ``ros_args`` (after --ros-args), in order, as (the node they
    name, "" for every node of the process; "__node" or "__ns"; the value; the rule as given): ``-r __node:=X``,
    ``-r __ns:=/X``, ``-r deer_vla_policy:__node:=X`` (``__name`` is rcl's other spelling of ``__node``)."""
    found: list[tuple[str, str, str, str]] = []
    for _, given in ros_flags(ros_args, REMAP_FLAGS):
        rule, _, value = given.partition(":=")
        node, _, name = rule.rpartition(":")
        if name in ("__node", "__name", "__ns"):
            found.append((node, "__ns" if name == "__ns" else "__node", value, given))
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
