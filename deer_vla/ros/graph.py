"""The node graph (config/graph.yaml): which nodes, executables, parameter files and remappings.

Read by the launch files (launch/*.launch.py) and by the one-process bringup,
so both start the same nodes with the same parameters.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PACKAGE = "deer_vla"
GRAPH_FILE = "graph.yaml"


def default_config_dir() -> Path:
    """$DEER_VLA_CONFIG_DIR, else the source tree's config/, else the installed share/deer_vla/config."""
    env = os.environ.get("DEER_VLA_CONFIG_DIR")
    if env:
        return Path(env)
    source = Path(__file__).resolve().parents[2] / "config"
    if (source / GRAPH_FILE).is_file():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE)) / "config"
    except (ImportError, LookupError, ValueError) as exc:
        raise FileNotFoundError(
            f"cannot find the deer_vla config directory (no {source / GRAPH_FILE}, package share not found: {exc}); "
            "set DEER_VLA_CONFIG_DIR"
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

    def ros_args(self) -> list[str]:
        """Node-level command-line arguments equivalent to the launch description."""
        args = ["--ros-args"]
        for f in self.params_files:
            args += ["--params-file", str(f)]
        for src, dst in self.remappings:
            args += ["-r", f"{src}:={dst}"]
        return args

    def file_parameters(self) -> dict[str, Any]:
        """The parameters the files give this node (later files win), overrides applied."""
        merged: dict[str, Any] = {}
        for f in self.params_files:
            data = yaml.safe_load(f.read_text()) or {}
            for node_key in ("/**", self.name, f"/{self.name}"):
                merged.update(_flatten((data.get(node_key) or {}).get("ros__parameters", {})))
        merged.update(self.parameters)
        return merged


@dataclass(frozen=True)
class GraphSpec:
    name: str
    nodes: tuple[NodeSpec, ...]
    config_dir: Path

    def node(self, key: str) -> NodeSpec:
        for spec in self.nodes:
            if spec.key == key:
                return spec
        raise KeyError(f"graph '{self.name}' has no node '{key}'; it has {[n.key for n in self.nodes]}")


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
    data = yaml.safe_load(path.read_text()) or {}
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
            )
        )
    return GraphSpec(graph, tuple(specs), cfg)
