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


def full_node_name(ros_args: list[str], name: str) -> str:
    """The full name rcl gives a node created as ``name`` in the root namespace under ``ros_args``' name and
    namespace remaps: the first ``__node`` rule for every node or for ``name``, then the first ``__ns`` rule for
    every node or for the name that gives (rcl matches a namespace rule against the node's name as remapped:
    ``-r __node:=foo -r foo:__ns:=/r2`` is /r2/foo)."""
    new_name = next((value for node, kind, value, _ in name_remaps(ros_args)
                     if kind == "__node" and node in ("", name)), name)
    namespace = next((value for node, kind, value, _ in name_remaps(ros_args)
                      if kind == "__ns" and node in ("", new_name)), "")
    return f"{namespace.rstrip('/')}/{new_name}"


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


# rcl's words for a parameter file it could not read ("Couldn't parse params file: '--params-file F'. Error: ...")
_PARAMS_FILE_FAILURE = re.compile(r"Couldn't parse params file: '--params-file (?P<file>.*?)'\. Error: (?P<why>.*)",
                                  re.DOTALL)
_RCL_SOURCE = re.compile(r",? at /\S+:\d+")  # rcl's C source locations ("at /project/src/parse.c:782")
# what rcl's own words mean to the one who wrote the file
_PARAMS_FILE_HINTS = (
    ("Error opening YAML file", "cannot be opened (is it there, readable, and a file?)"),
    ("near line 0", "cannot be read as YAML (is it a folder, or empty of text?)"),
    ("Sequence should be of same type", "(a list's items must all be one type: write 0.0, not 0, beside 0.5)"),
    ("aliasing", "(rcl takes no YAML anchors or aliases: write each value out)"),
)


def params_file_error(rcl_text: str) -> str | None:
    """One line naming the parameter file rcl could not read, and why, from rcl's error text; None for other
    errors. rcl's own text said "not ROS arguments after --ros-args", its C source locations and, for an alias,
    a line break."""
    found = _PARAMS_FILE_FAILURE.search(rcl_text)
    if found is None:
        return None
    why = " ".join(_RCL_SOURCE.sub("", found.group("why")).split()).rstrip(".")
    hint = next((h for marker, h in _PARAMS_FILE_HINTS if marker in why), "")
    if hint.startswith("("):
        why = f"{why} {hint}"
    elif hint:
        why = hint
    return f"parameter file {found.group('file')}: {why}"

