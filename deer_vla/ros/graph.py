"""The node graph (config/graph.yaml): which nodes, executables, parameter files and remappings.

Read by the launch files (launch/*.launch.py) and by the one-process bringup,
so both start the same nodes with the same parameters.
"""
from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from deer_vla.core.config_io import GRAPH_FILE, PACKAGE, deep_merge, load_yaml, packaged_config_dir
from deer_vla.ros.ros_args import NAMESPACE_TOKEN, REMAP_TOKEN

EVERY_NODE = "*"  # a launch argument's parameter "*.param": that parameter of every node of the graph
WAITS_FOR = "policy_node"  # the sim's parameter naming the policy node it waits for
# the monitor's parameter naming the policy its statuses are about ("" = <its own namespace>/<the graph's policy name>)
REPORTS_ON = "hardware_id"
RECORD_TOPIC = "record_topic"  # where the policy publishes its step records and the monitor reads them
DEFAULT_RECORD_TOPIC = "step_record"  # the nodes' default of it (params.POLICY_DEFAULTS, the monitor's)


def default_config_dir() -> Path:
    """``packaged_config_dir()``, else the installed package's share/deer_vla/config from the ament index."""
    found = packaged_config_dir()
    if found is not None:
        return found
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE)) / "config"
    except (ImportError, LookupError, ValueError) as exc:
        raise FileNotFoundError(
            f"cannot find the deer_vla config directory (no {GRAPH_FILE} in the source tree or {sys.prefix}, "
            f"package share not found: {exc}); set DEER_VLA_CONFIG_DIR"
        ) from exc


@dataclass(frozen=True)
class NodeSpec:
    key: str  # "policy" | "monitor" | "sim"
    name: str  # ROS node name
    executable: str  # console script (ros2 run deer_vla <executable>)
    module: str  # deer_vla.ros.<module>
    class_name: str  # node class in that module
    lifecycle: bool
    params_files: tuple[Path, ...]
    parameters: dict[str, Any] = field(default_factory=dict)  # overrides on top of the files
    remappings: tuple[tuple[str, str], ...] = ()
    namespace: str = ""  # "" = the root namespace
    # a namespace the launch file was included under (launch_ros's PushRosNamespace): launch_ros puts it in
    # front of ``namespace`` itself, so it is in the full name only (which parameter files reach the node)
    outer_namespace: str = ""
    renamed_from: str = ""  # the graph's name for a node renamed by `-r <that>:__node:=<name>` (bringup)
    # moved by `-r <name>:__ns:=/X` (bringup): rcl's remap beats the namespace the node is created in
    namespace_remapped: bool = False
    # given absolute (namespace:=/arm1): launch_ros puts no pushed namespace in front of an absolute one
    namespace_absolute: bool = False
    ends_graph: bool = False  # the graph ends when this node exits (the sim, after its episodes)

    def ros_args(self) -> list[str]:
        """Node-level command-line arguments equivalent to the launch description."""
        args = ["--ros-args"]
        for f in self.params_files:
            args += ["--params-file", str(f)]
        for src, dst in self.remappings:
            args += ["-r", f"{src}:={dst}"]
        return args

    def parameter(self, name: str, default: Any = None) -> Any:
        """The value this node is given for parameter ``name``: an override, else its files', else ``default``."""
        return self.parameters[name] if name in self.parameters else self.file_parameters().get(name, default)

    @property
    def running_namespace(self) -> str:
        """The namespace the node runs in, without the leading '/' ("" = the root): the pushed one in front of
        its own unless that was given absolute."""
        outer = "" if self.namespace_absolute else self.outer_namespace
        return "/".join(part for part in (outer, self.namespace) if part)

    @property
    def full_name(self) -> str:
        return "/" + "/".join(part for part in (self.running_namespace, self.name) if part)

    @property
    def launch_namespace(self) -> str:
        """The namespace to give launch_ros's Node: absolute as given, so that a PushRosNamespace the launch
        file is included under goes in front of a relative one only."""
        return "/" + self.namespace if self.namespace_absolute else self.namespace

    def applies(self, key: Any) -> bool:
        """Whether rcl applies a parameter file's section ``key`` to this node (``section_applies``)."""
        return section_applies(key, self.full_name)

    def unmatched_files(self) -> list[Path]:
        """This node's parameter files that hold no section rcl applies to it (in its namespace)."""
        return [f for f in self.params_files if not any(self.applies(k) for k in _parameter_file(f))]

    def file_parameters(self) -> dict[str, Any]:
        """The parameters the files give this node (later files, and later sections of a file, win, as rcl
        applies them), overrides applied."""
        merged: dict[str, Any] = {}
        for f in self.params_files:
            for node_key, section in _parameter_file(f).items():
                if self.applies(node_key) and isinstance(section, dict):
                    merged.update(_flatten(section.get("ros__parameters") or {}))
        merged.update(self.parameters)
        return merged


@dataclass(frozen=True)
class LaunchArgument:
    """A launch argument (``ros2 launch deer_vla <file> NAME:=VALUE``; ``deer-vla bringup NAME:=VALUE``).

    It sets exactly one of: a node parameter (``parameter`` = "node.param"; "*.param": that parameter of every
    node, one rclpy declares itself such as use_sim_time, a bool), the parameter file of a node
    (``params_file`` = node key; replaces the graph's files), or every node's namespace."""

    name: str
    description: str
    parameter: str = ""
    params_file: str = ""
    namespace: bool = False
    graphs: tuple[str, ...] = ()  # the graphs that offer it (none named: every graph)

    @property
    def node(self) -> str:
        return self.parameter.partition(".")[0] if self.parameter else self.params_file

    @property
    def every_node(self) -> bool:
        return self.node == EVERY_NODE

    @property
    def declared_default(self) -> str | None:
        """The default a launch file declares, when it is not the graph's value: a parameter argument
        defaults to "" (the parameter file's value), so that a value given on the command line, even the
        stock one, can be told from one left out (launch resolves both to text)."""
        return "" if self.parameter else None


@dataclass(frozen=True)
class GraphSpec:
    name: str
    nodes: tuple[NodeSpec, ...]
    config_dir: Path
    arguments: tuple[LaunchArgument, ...] = ()

    def node(self, key: str) -> NodeSpec:
        for spec in self.nodes:
            if spec.key == key:
                return spec
        raise KeyError(f"graph '{self.name}' has no node '{key}'; it has {[n.key for n in self.nodes]}")

    def argument_defaults(self) -> dict[str, str]:
        """Launch argument name -> default, as the text ``ros2 launch`` shows: what the graph gives now."""
        out: dict[str, str] = {}
        for arg in self.arguments:
            if arg.namespace:
                out[arg.name] = self.nodes[0].namespace if self.nodes else ""
            elif arg.params_file:
                out[arg.name] = ",".join(str(f) for f in self.node(arg.params_file).params_files)
            elif arg.every_node:  # rclpy's own bool parameter (use_sim_time): off unless a file sets it
                param = arg.parameter.partition(".")[2]
                out[arg.name] = _to_text(any(n.file_parameters().get(param, False) is True for n in self.nodes))
            else:
                node, _, param = arg.parameter.partition(".")
                values = self.node(node).file_parameters()
                if param not in values and self.node(node).renamed_from:  # the graph's files reach it no more:
                    out[arg.name] = ""  # with_arguments says so
                    continue
                if param not in values:
                    raise KeyError(f"launch argument '{arg.name}': no parameter '{param}' for node '{node}' "
                                   f"in {[str(f) for f in self.node(node).params_files]}")
                out[arg.name] = _to_text(values[param])
        return out

    def given_arguments(self, values: Mapping[str, str]) -> dict[str, str]:
        """The launch arguments of ``values`` given a value other than their declared default (``launch``
        resolves an argument left out to that default: it changes nothing). Names not declared are left out."""
        defaults = self.argument_defaults()
        return {arg.name: values[arg.name] for arg in self.arguments if arg.name in values
                and values[arg.name] != (defaults[arg.name] if arg.declared_default is None else arg.declared_default)}

    def with_arguments(self, values: Mapping[str, str], outer_namespace: str = "",
                       records_remapped: bool = False) -> GraphSpec:
        """This graph with launch argument values applied. A parameter argument left empty (its declared
        default) keeps the parameter file's value, so a custom ``params_file`` is not overridden by the
        other arguments; any value given is applied, the stock one included (``enabled:=false`` gates the
        node whatever the file says). ``namespace`` and ``params_file`` at their defaults change nothing.
        ``outer_namespace``: the one the launch file is included under (PushRosNamespace), in front of
        ``namespace`` in the names parameter files are matched against. ``records_remapped``: a remap rule of the
        process moves the step-record topic, so the monitor's is left to it (``_reporting_on``)."""
        known = {a.name: a for a in self.arguments}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise KeyError(f"unknown launch argument(s) {unknown}; graph '{self.name}' takes {sorted(known)}")
        outer = outer_namespace.strip("/")
        nodes = {spec.key: replace(spec, outer_namespace=outer) for spec in self.nodes}
        # parameter files and the namespace first: the other arguments' types come from the files in force
        # (which may key the node by its namespace)
        for name, text in sorted(self.given_arguments(values).items(),
                                 key=lambda item: (not known[item[0]].params_file, not known[item[0]].namespace)):
            arg = known[name]
            if arg.namespace:
                namespace = text.strip("/")
                if namespace and not all(NAMESPACE_TOKEN.fullmatch(t) for t in namespace.split("/")):
                    # rcl would refuse it at node creation, with a traceback (bringup) or dead nodes (launch)
                    raise ValueError(f"launch argument '{name}' = '{text}' is not a ROS namespace: names of letters, "
                                     "digits and '_' (not starting with a digit) joined by single '/'")
                nodes = {k: s if s.namespace_remapped else replace(s, namespace=namespace,
                                                                     namespace_absolute=text.startswith("/"))
                         for k, s in nodes.items()}
            elif arg.params_file:
                files = tuple(Path(f).expanduser() for f in text.split(",") if f)
                for f in files:
                    if not f.is_file():
                        raise FileNotFoundError(f"launch argument '{name}': parameter file not found: {f}")
                nodes[arg.params_file] = replace(nodes[arg.params_file], params_files=files)
            elif arg.every_node:
                param = arg.parameter.partition(".")[2]
                value = _from_text(name, text, False)
                nodes = {k: replace(s, parameters={**s.parameters, param: value}) for k, s in nodes.items()}
            else:
                key, _, param = arg.parameter.partition(".")
                spec = nodes[key]
                # the type: the files in force, else the graph's own files (a custom file may leave it out)
                like = spec.file_parameters().get(param, self.node(key).file_parameters().get(param))
                value = _from_text(name, text, like)
                nodes[key] = replace(spec, parameters={**spec.parameters, param: value})
        for arg in self.arguments:  # a file given for a node that reaches it not (a dump keyed /name, in a namespace)
            if arg.params_file and arg.name in values:
                spec = nodes[arg.params_file]
                unmatched = spec.unmatched_files()
                if unmatched:
                    raise ValueError(
                        f"launch argument '{arg.name}': {', '.join(str(f) for f in unmatched)} holds no parameters for "
                        f"node {spec.full_name} (rcl matches a file's keys against the node's full name; `ros2 param "
                        f"dump` writes the absolute one, which another namespace or node name does not match): key it "
                        f"/**/{spec.name}")
        for spec in nodes.values():  # a renamed node: rcl matches parameter files by name, and drops the others
            unmatched = spec.unmatched_files() if spec.renamed_from else []
            if unmatched:
                # the demo takes no launch arguments, only --config-dir: both ways are said where both exist
                advice = next((f"give params_file:= (launch, bringup) or --config-dir (bringup, demo) a file keyed "
                               f"/**/{spec.name}" for a in self.arguments if a.params_file == spec.key),
                              f"key a copy of it /**/{spec.name} (--config-dir)")
                raise ValueError(f"-r {spec.renamed_from}:__node:={spec.name}: {', '.join(str(f) for f in unmatched)} "
                                 f"holds no parameters for node {spec.full_name} (rcl matches parameter files by "
                                 f"node name, and would drop it in silence): {advice}")
        return replace(self, nodes=tuple(_reporting_on(nodes.get("policy"), s, records_remapped) for s in
                                         (nodes[s.key] for s in self.nodes)))

    def with_node_renamed(self, old: str, new: str) -> GraphSpec:
        """This graph with the node named ``old`` named ``new`` (``-r old:__node:=new``), and a parameter naming
        it as the node to wait for (the sim's ``policy_node``) following; unchanged when no node has that name.
        ValueError for a name rcl refuses."""
        if not REMAP_TOKEN.fullmatch(new):
            raise ValueError(f"-r {old}:__node:={new}: '{new}' is not a node name rcl takes (letters, digits and "
                             "single '_', not starting with a digit)")
        if not any(s.name == old for s in self.nodes):
            return self
        nodes = tuple(replace(s, name=new, renamed_from=s.renamed_from or old) if s.name == old else
                      replace(s, parameters={**s.parameters, WAITS_FOR: new})
                      if s.file_parameters().get(WAITS_FOR) == old else s for s in self.nodes)
        return replace(self, nodes=nodes)

    def with_node_namespace(self, node: str, namespace: str) -> GraphSpec:
        """This graph with the node named ``node`` (after any rename, as rcl matches it) in ``namespace``
        (``-r node:__ns:=/namespace``, absolute), whatever namespace argument comes after; unchanged when no node
        has that name."""
        ns = namespace.strip("/")
        return replace(self, nodes=tuple(replace(s, namespace=ns, namespace_remapped=True) if s.name == node else s
                                         for s in self.nodes))

    def with_parameters(self, per_node: Mapping[str, Mapping[str, Any]]) -> GraphSpec:
        """This graph with ``{node key: {parameter: value}}`` set on top of its overrides."""
        nodes = {spec.key: spec for spec in self.nodes}
        for key, values in per_node.items():
            spec = self.node(key)
            nodes[key] = replace(spec, parameters={**spec.parameters, **values})
        return replace(self, nodes=tuple(nodes[s.key] for s in self.nodes))


def _reporting_on(policy: NodeSpec | None, spec: NodeSpec, records_remapped: bool = False) -> NodeSpec:
    """``spec`` with ``REPORTS_ON`` naming ``policy`` where its default ("": the graph's policy name in spec's own
    namespace) would name another node: the policy renamed or moved by a remap (bringup, demo), whose statuses
    the monitor would otherwise give under a name no node has. A policy moved to another namespace publishes
    its step records there: a RECORD_TOPIC both name alike and relative follows it (the monitor heard none),
    unless a remap rule moves that topic (``records_remapped``: `-r step_record:=/records` applies to both
    nodes' relative name, not to an absolute one)."""
    if policy is None or spec is policy or spec.file_parameters().get(REPORTS_ON) != "":
        return spec
    default = "/" + "/".join(p for p in (spec.running_namespace, policy.renamed_from or policy.name) if p)
    if policy.full_name == default:
        return spec
    changes: dict[str, Any] = {REPORTS_ON: policy.full_name}
    theirs, mine = (s.parameter(RECORD_TOPIC, DEFAULT_RECORD_TOPIC) for s in (policy, spec))
    namespace = policy.running_namespace
    if (not records_remapped and isinstance(theirs, str) and theirs == mine and not theirs.startswith(("/", "~"))
            and namespace != spec.running_namespace):
        changes[RECORD_TOPIC] = "/" + "/".join(p for p in (namespace, theirs) if p)
    return replace(spec, parameters={**spec.parameters, **changes})


def section_applies(key: Any, full_name: str) -> bool:
    """Whether rcl applies a parameter file's section ``key`` to the node named ``full_name``: the key made absolute
    (a relative one is under the root), "*" one name token, "**" any number of them, matched against the node's
    full name (`ros2 param dump` writes the absolute name: such a file reaches the node only in its namespace)."""
    return isinstance(key, str) and _tokens_match(key.strip("/").split("/"), full_name.strip("/").split("/"))


def parameter_file_keys(path: Path) -> list[Any]:
    """The node sections of a ROS parameter file (ValueError when it is not one, OSError when it cannot be read)."""
    return list(_parameter_file(path))


def _tokens_match(key: list[str], name: list[str]) -> bool:
    if not key:
        return not name
    if key[0] == "**":
        return any(_tokens_match(key[1:], name[i:]) for i in range(len(name) + 1))
    return bool(name) and key[0] in ("*", name[0]) and _tokens_match(key[1:], name[1:])


class _RosParameterLoader(yaml.SafeLoader):
    """A ROS parameter file as rcl reads it: a node section (or a mapping in it) given twice is merged, a
    parameter given twice keeps its last value. Not the settings files' loader, which refuses a repeated key:
    these files are rcl's, and rcl takes them."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)  # merge keys (<<) first, as the safe loader does
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            value = self.construct_object(value_node, deep=True)
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = deep_merge(out[key], value)
            else:
                out[key] = value
        return out


def _parameter_file(path: Path) -> dict[Any, Any]:
    """A ROS parameter file's node sections; ValueError naming the file when it is not YAML or not a mapping."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_RosParameterLoader) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not a ROS parameter file: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a ROS parameter file (node names mapped to ros__parameters), "
                         f"but a YAML {type(data).__name__}")
    return data


def _to_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _from_text(name: str, text: str, like: Any) -> Any:
    """A launch argument's text as the type of the parameter's current value (lists: comma-separated)."""
    if isinstance(like, bool):
        lowered = text.strip().lower()
        if lowered not in ("true", "false"):
            raise ValueError(f"launch argument '{name}' must be true or false, got '{text}'")
        return lowered == "true"
    if isinstance(like, (list, tuple)):
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:  # a ROS parameter cannot be an empty list (launch_ros and rclpy fail on it, obscurely)
            raise ValueError(f"launch argument '{name}' needs at least one comma-separated item, got '{text}'")
        return items
    if isinstance(like, (int, float)):
        try:
            return type(like)(text)
        except ValueError:
            raise ValueError(f"launch argument '{name}' must be a {type(like).__name__}, got '{text}'") from None
    return text


def _flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in params.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def load_graph(
    graph: str, config_dir: str | Path | None = None, overrides: dict[str, dict[str, Any]] | None = None
) -> GraphSpec:
    """The graph ``graph`` from ``config_dir``/graph.yaml; ``overrides``: node key -> {param: value}."""
    cfg = Path(config_dir) if config_dir else default_config_dir()
    path = cfg / GRAPH_FILE
    if not path.is_file():
        raise FileNotFoundError(f"node graph file not found: {path}")
    data = load_yaml(path.read_text(encoding="utf-8")) or {}
    nodes, graphs = data.get("nodes") or {}, data.get("graphs") or {}
    if graph not in graphs:
        raise KeyError(f"unknown graph '{graph}' in {path}; choose from {sorted(graphs)}")
    entry = graphs[graph] or {}
    per_node = {k: dict(v or {}) for k, v in (entry.get("parameters") or {}).items()}
    for key, values in (overrides or {}).items():
        per_node.setdefault(key, {}).update(values)
    unknown = set(per_node) - set(entry.get("nodes") or [])
    if unknown:
        raise KeyError(f"parameters given for node(s) {sorted(unknown)} that graph '{graph}' does not run")
    arguments = tuple(_parse_argument(name, a or {}, path) for name, a in (data.get("arguments") or {}).items())
    specs = []
    for key in entry.get("nodes") or []:
        if key not in nodes:
            raise KeyError(f"graph '{graph}' names node '{key}', not defined under 'nodes' in {path}")
        n = nodes[key]
        missing = {"name", "executable", "module", "class"} - set(n)
        if missing:
            raise KeyError(f"node '{key}' in {path} lacks {sorted(missing)}")
        files = tuple(cfg / f for f in n.get("params") or [])
        for f in files:
            if not f.is_file():
                raise FileNotFoundError(f"parameter file for node '{key}' not found: {f}")
        specs.append(
            NodeSpec(
                key=key,
                name=n["name"],
                executable=n["executable"],
                module=n["module"],
                class_name=n["class"],
                lifecycle=bool(n.get("lifecycle", False)),
                params_files=files,
                parameters=per_node.get(key, {}),
                remappings=tuple((str(a), str(b)) for a, b in (n.get("remappings") or {}).items()),
                ends_graph=bool(n.get("ends_graph", False)),
            )
        )
    keys = {s.key for s in specs}
    # arguments for nodes this graph does not run (the sim's, in "robot") are not offered
    arguments = tuple(a for a in arguments if (not a.graphs or graph in a.graphs)
                      and (a.namespace or a.every_node or a.node in keys))
    return GraphSpec(graph, tuple(specs), cfg, arguments)


def _parse_argument(name: str, entry: dict[str, Any], path: Path) -> LaunchArgument:
    arg = LaunchArgument(name=name, description=str(entry.get("description", "")),
                         parameter=str(entry.get("parameter", "")), params_file=str(entry.get("params_file", "")),
                         namespace=bool(entry.get("namespace", False)),
                         graphs=tuple(str(g) for g in entry.get("graphs") or ()))
    if (bool(arg.parameter), bool(arg.params_file), arg.namespace).count(True) != 1:
        raise KeyError(f"launch argument '{name}' in {path} needs exactly one of parameter, params_file, namespace")
    if arg.parameter and "." not in arg.parameter:
        raise KeyError(f"launch argument '{name}' in {path}: parameter must be NODE.PARAM, got '{arg.parameter}'")
    return arg
