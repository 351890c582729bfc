"""The launch files and the one-process bringup start the same nodes with the same parameters.

launch / launch_ros are not installable here, so the launch files are
executed against minimal stand-in modules (injected into sys.modules for
this test only) that record what the launch file asks for.
"""
from __future__ import annotations

import runpy
import sys
import types
from pathlib import Path

import pytest

from deer_vla.ros.graph import load_graph

pytestmark = pytest.mark.ros
ROOT = Path(__file__).resolve().parents[1]


class _Recorded:
    kind = "?"

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def _fake_launch_modules() -> dict[str, types.ModuleType]:
    def mod(name: str, **attrs) -> types.ModuleType:
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        return m

    def cls(kind: str) -> type:
        return type(kind, (_Recorded,), {"kind": kind})

    return {
        "launch": mod("launch", LaunchDescription=cls("LaunchDescription")),
        "launch.actions": mod(
            "launch.actions", EmitEvent=cls("EmitEvent"), RegisterEventHandler=cls("RegisterEventHandler")
        ),
        "launch.events": mod("launch.events", matches_action=lambda action: ("matches", action)),
        "launch_ros": mod("launch_ros"),
        "launch_ros.actions": mod("launch_ros.actions", Node=cls("Node"), LifecycleNode=cls("LifecycleNode")),
        "launch_ros.event_handlers": mod("launch_ros.event_handlers", OnStateTransition=cls("OnStateTransition")),
        "launch_ros.events": mod("launch_ros.events"),
        "launch_ros.events.lifecycle": mod("launch_ros.events.lifecycle", ChangeState=cls("ChangeState")),
    }


def _run_launch_file(name: str, monkeypatch) -> list[_Recorded]:
    for key, module in _fake_launch_modules().items():
        monkeypatch.setitem(sys.modules, key, module)
    description = runpy.run_path(str(ROOT / "launch" / name))["generate_launch_description"]()
    assert description.kind == "LaunchDescription"
    return list(description.args[0])


def _lifecycle_transitions(entities: list[_Recorded], node: _Recorded) -> list[int]:
    """Transition ids the launch file emits for ``node``, directly or from a state-transition handler."""
    ids = []
    for e in entities:
        events = [e] if e.kind == "EmitEvent" else []
        if e.kind == "RegisterEventHandler":
            handler = e.args[0]
            assert handler.kwargs["target_lifecycle_node"] is node
            events = handler.kwargs["entities"]
        for ev in events:
            change = ev.kwargs["event"]
            assert change.kwargs["lifecycle_node_matcher"] == ("matches", node)
            ids.append(change.kwargs["transition_id"])
    return ids


@pytest.mark.parametrize(("launch_file", "graph"), [("deer_vla.launch.py", "robot"), ("sim.launch.py", "sim")])
def test_launch_files_describe_the_graph(launch_file, graph, monkeypatch):
    from lifecycle_msgs.msg import Transition

    entities = _run_launch_file(launch_file, monkeypatch)
    nodes = [e for e in entities if e.kind in ("Node", "LifecycleNode")]
    spec = load_graph(graph)
    assert [n.kwargs["name"] for n in nodes] == [s.name for s in spec.nodes]
    for node, s in zip(nodes, spec.nodes):
        kw = node.kwargs
        assert kw["package"] == "deer_vla" and kw["executable"] == s.executable
        assert (node.kind == "LifecycleNode") == s.lifecycle
        files = [Path(p) for p in kw["parameters"] if isinstance(p, str)]
        overrides = {k: v for p in kw["parameters"] if isinstance(p, dict) for k, v in p.items()}
        assert files == list(s.params_files) and all(f.is_file() for f in files)
        assert overrides == s.parameters
        assert list(kw["remappings"]) == list(s.remappings)
    lifecycle = [n for n in nodes if n.kind == "LifecycleNode"]
    assert lifecycle, "the policy node must be a managed node"
    for node in lifecycle:
        others = [e for e in entities if e.kind in ("EmitEvent", "RegisterEventHandler")]
        assert sorted(_lifecycle_transitions(others, node)) == sorted(
            [Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE]
        )
    if graph == "sim":
        assert load_graph("sim").node("policy").parameters["enabled"] is True


@pytest.mark.parametrize("graph", ["robot", "sim"])
def test_bringup_nodes_get_the_launch_parameters(graph, ros_context, tmp_path, monkeypatch):
    """create_node (used by the bringup) yields nodes with the names and parameter values of the graph."""
    from rclpy.lifecycle import LifecycleNode

    from deer_vla.ros.bringup import create_node

    monkeypatch.chdir(tmp_path)  # the monitor's relative log_dir lands here
    spec = load_graph(graph)
    created = []
    try:
        for s in spec.nodes:
            node = create_node(s)
            created.append(node)
            assert node.get_name() == s.name
            assert isinstance(node, LifecycleNode) == s.lifecycle
            expected = s.file_parameters()
            assert expected, f"no parameters found for {s.name} in {s.params_files}"
            for name, value in expected.items():
                got = node.get_parameter(name).value
                assert (list(got) if isinstance(got, (list, tuple)) or hasattr(got, "tolist") else got) == value, name
    finally:
        for node in created:
            node.destroy_node()


def test_graph_errors_are_clear(tmp_path):
    with pytest.raises(KeyError, match="unknown graph 'moon'"):
        load_graph("moon")
    with pytest.raises(KeyError, match="does not run"):
        load_graph("robot", overrides={"sim": {"episodes": 1}})
    with pytest.raises(FileNotFoundError, match="graph.yaml"):
        load_graph("robot", config_dir=tmp_path)
