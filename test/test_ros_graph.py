"""The launch files and the one-process bringup start the same nodes with the same parameters.

launch / launch_ros are not installable here, so the launch files are
executed against minimal stand-in modules (injected into sys.modules for
this test only) that record what the launch file asks for.
"""
from __future__ import annotations

import inspect
import json
import logging
import re
import runpy
import shutil
import sys
import types
from pathlib import Path

import pytest

from deer_vla.model.shipped import resolve_checkpoint
from deer_vla.ros.graph import load_graph
from deer_vla.ros.sim_inputs import sim_graph_for_checkpoint

pytestmark = pytest.mark.ros
ROOT = Path(__file__).resolve().parents[1]


# Constructor signatures of the real classes (ROS 2 Jazzy), so that a misspelt or missing keyword fails
# here as it would under `ros2 launch`. Sources: ros2/launch launch/launch/{launch_description.py,
# actions/declare_launch_argument.py, actions/opaque_function.py, actions/emit_event.py,
# actions/register_event_handler.py, actions/unregister_event_handler.py, event_handlers/on_process_exit.py,
# events/shutdown.py,
# substitutions/launch_configuration.py}; ros2/launch_ros launch_ros/launch_ros/{actions/node.py,
# actions/lifecycle_node.py, event_handlers/on_state_transition.py, events/lifecycle/change_state.py}.
# Where the real class forwards **kwargs, only the keywords its bases accept are listed.
def _launch_description(initial_entities=None, *, deprecated_reason=None): ...
def _declare_launch_argument(name, *, default_value=None, description=None, choices=None): ...
def _opaque_function(*, function, args=None, kwargs=None): ...
def _emit_event(*, event): ...
def _register_event_handler(event_handler): ...
def _unregister_event_handler(event_handler): ...
def _on_process_exit(*, target_action=None, on_exit): ...
def _shutdown(*, reason="reason not given", due_to_sigint=False): ...
def _launch_configuration(variable_name, *, default=None): ...
def _node(*, executable, package=None, name=None, namespace=None, exec_name=None, parameters=None,
          remappings=None, ros_arguments=None, arguments=None, output="log", respawn=False, respawn_delay=None): ...
def _lifecycle_node(*, name, namespace, executable, package=None, exec_name=None, parameters=None,
                    remappings=None, ros_arguments=None, arguments=None, output="log"): ...
def _on_state_transition(*, entities, target_lifecycle_node=None, transition=None, start_state=None,
                         goal_state=None, matcher=None, handle_once=False): ...
def _change_state(*, lifecycle_node_matcher, transition_id): ...


class _Recorded:
    kind = "?"
    signature: inspect.Signature

    def __init__(self, *args, **kwargs):
        bound = self.signature.bind(*args, **kwargs)  # TypeError on an unknown or missing argument
        bound.apply_defaults()
        self.kwargs = dict(bound.arguments)


class _LaunchConfiguration(_Recorded):
    def perform(self, context):
        return context.launch_configurations[self.kwargs["variable_name"]]


class _Context:
    def __init__(self, launch_configurations: dict[str, str]) -> None:
        self.launch_configurations = launch_configurations


def _fake_launch_modules() -> dict[str, types.ModuleType]:
    def mod(name: str, **attrs) -> types.ModuleType:
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        return m

    def cls(kind: str, ref, base: type = _Recorded) -> type:
        return type(kind, (base,), {"kind": kind, "signature": inspect.signature(ref)})

    return {
        "launch": mod("launch", LaunchDescription=cls("LaunchDescription", _launch_description)),
        # launch/launch/logging/__init__.py: get_logger(name=None) returns a standard logging.Logger
        "launch.logging": mod("launch.logging", get_logger=lambda name=None: logging.getLogger(name)),
        "launch.actions": mod(
            "launch.actions", EmitEvent=cls("EmitEvent", _emit_event),
            RegisterEventHandler=cls("RegisterEventHandler", _register_event_handler),
            UnregisterEventHandler=cls("UnregisterEventHandler", _unregister_event_handler),
            DeclareLaunchArgument=cls("DeclareLaunchArgument", _declare_launch_argument),
            OpaqueFunction=cls("OpaqueFunction", _opaque_function),
        ),
        "launch.event_handlers": mod("launch.event_handlers", OnProcessExit=cls("OnProcessExit", _on_process_exit)),
        "launch.events": mod("launch.events", matches_action=lambda action: ("matches", action),
                             Shutdown=cls("Shutdown", _shutdown)),
        "launch.substitutions": mod("launch.substitutions", LaunchConfiguration=cls(
            "LaunchConfiguration", _launch_configuration, _LaunchConfiguration)),
        "launch_ros": mod("launch_ros"),
        "launch_ros.actions": mod("launch_ros.actions", Node=cls("Node", _node),
                                  LifecycleNode=cls("LifecycleNode", _lifecycle_node)),
        "launch_ros.event_handlers": mod("launch_ros.event_handlers",
                                         OnStateTransition=cls("OnStateTransition", _on_state_transition)),
        "launch_ros.events": mod("launch_ros.events"),
        "launch_ros.events.lifecycle": mod("launch_ros.events.lifecycle",
                                           ChangeState=cls("ChangeState", _change_state)),
    }


def _run_launch_file(name: str, monkeypatch, undeclared: dict[str, str] | None = None,
                     **arguments: str) -> tuple[list[_Recorded], list[_Recorded]]:
    """-> (declared launch arguments, the entities launch would run), as ``ros2 launch <name> k:=v ...``;
    ``undeclared``: names the launch file does not declare, which launch still puts in the context."""
    for key, module in _fake_launch_modules().items():
        monkeypatch.setitem(sys.modules, key, module)
    description = runpy.run_path(str(ROOT / "launch" / name))["generate_launch_description"]()
    assert description.kind == "LaunchDescription"
    top = list(description.kwargs["initial_entities"])
    declared = [e for e in top if e.kind == "DeclareLaunchArgument"]
    unknown = set(arguments) - {d.kwargs["name"] for d in declared}
    assert not unknown, f"{name} declares no launch argument(s) {unknown}"
    # what DeclareLaunchArgument.execute does: the default unless the user gave a value
    configs = {d.kwargs["name"]: d.kwargs["default_value"] for d in declared}
    configs.update(arguments)
    configs.update(undeclared or {})
    entities: list[_Recorded] = []
    for e in top:
        if e.kind == "OpaqueFunction":
            entities += e.kwargs["function"](_Context(configs), *(e.kwargs["args"] or []), **(e.kwargs["kwargs"] or {}))
        elif e.kind != "DeclareLaunchArgument":
            entities.append(e)
    return declared, entities


def _lifecycle_transitions(entities: list[_Recorded], node: _Recorded) -> list[int]:
    """Transition ids the launch file emits for ``node``, directly or from a state-transition handler."""
    ids = []
    for e in entities:
        events = [e] if e.kind == "EmitEvent" else []
        if e.kind == "RegisterEventHandler" and e.kwargs["event_handler"].kind == "OnStateTransition":
            handler = e.kwargs["event_handler"]
            assert handler.kwargs["target_lifecycle_node"] is node
            events = handler.kwargs["entities"]
        for ev in events:
            if ev.kind != "EmitEvent":  # (an UnregisterEventHandler beside the activate)
                continue
            change = ev.kwargs["event"]
            if change.kind != "ChangeState":
                continue
            assert change.kwargs["lifecycle_node_matcher"] == ("matches", node)
            ids.append(change.kwargs["transition_id"])
    return ids


@pytest.mark.parametrize(("launch_file", "graph"), [("deer_vla.launch.py", "robot"), ("sim.launch.py", "sim")])
def test_launch_files_describe_the_graph(launch_file, graph, monkeypatch):
    from lifecycle_msgs.msg import Transition

    _, entities = _run_launch_file(launch_file, monkeypatch)
    nodes = [e for e in entities if e.kind in ("Node", "LifecycleNode")]
    spec = load_graph(graph)
    if graph == "sim":  # the simulator renders the (default) checkpoint's cameras
        spec = sim_graph_for_checkpoint(spec, set())
    assert [n.kwargs["name"] for n in nodes] == [s.name for s in spec.nodes]
    for node, s in zip(nodes, spec.nodes):
        kw = node.kwargs
        assert kw["package"] == "deer_vla" and kw["executable"] == s.executable and kw["namespace"] == ""
        assert (node.kind == "LifecycleNode") == s.lifecycle
        files = [Path(p) for p in kw["parameters"] if isinstance(p, str)]
        overrides = {k: v for p in kw["parameters"] if isinstance(p, dict) for k, v in p.items()}
        assert files == list(s.params_files) and all(f.is_file() for f in files)
        assert overrides == s.parameters  # launch arguments at their defaults add nothing
        assert list(kw["remappings"]) == list(s.remappings)
        # a SIGKILLed `ros2 launch` left its nodes running, the policy actuating (node_main --exit-with-parent)
        assert list(kw["arguments"]) == ["--exit-with-parent"]
    lifecycle = [n for n in nodes if n.kind == "LifecycleNode"]
    assert lifecycle, "the policy node must be a managed node"
    for node in lifecycle:
        others = [e for e in entities if e.kind in ("EmitEvent", "RegisterEventHandler")]
        assert sorted(_lifecycle_transitions(others, node)) == sorted(
            [Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE]
        )
    if graph == "sim":
        assert load_graph("sim").node("policy").parameters["enabled"] is True


def test_a_misspelt_launch_argument_is_named_with_the_one_meant(monkeypatch, caplog):
    """`ros2 launch` takes any name:=value and ignores one nobody declared: `checkpont:=/x` ran the default
    checkpoint without a word. A near miss of one of ours is warned about; a parent launch file's own
    arguments (also in the context) are not, and nothing is refused."""
    with caplog.at_level(logging.WARNING, logger="deer_vla"):
        _, entities = _run_launch_file("sim.launch.py", monkeypatch,
                                       undeclared={"checkpont": "/x", "Enabled": "false", "robot_model": "ur5"})
    warnings = [r.getMessage() for r in caplog.records if r.name == "deer_vla"]
    assert len(warnings) == 2, warnings
    assert "'Enabled'" in warnings[0] and "did you mean 'enabled'" in warnings[0]
    assert "'checkpont'" in warnings[1] and "did you mean 'checkpoint'" in warnings[1]
    assert [e.kwargs["name"] for e in entities if e.kind in ("Node", "LifecycleNode")] == \
        [s.name for s in load_graph("sim").nodes]  # the launch goes on


def test_a_launch_included_under_a_pushed_namespace_judges_the_parameter_files_by_the_full_name(
        monkeypatch, caplog, tmp_path):
    """Under launch_ros's PushRosNamespace('arm1') the nodes run as /arm1/<name> (launch_ros puts the pushed
    namespace, context 'ros_namespace', in front of each node's): a dump keyed /deer_vla_policy was accepted
    as params_file and reached no node (it ran the shipped default), one keyed /arm1/deer_vla_policy (what
    `ros2 param dump /arm1/deer_vla_policy` writes) was refused; and 'ros_namespace' was warned about as a
    misspelt 'namespace'."""
    root_dump, pushed_dump = tmp_path / "root.yaml", tmp_path / "pushed.yaml"
    root_dump.write_text("/deer_vla_policy:\n  ros__parameters:\n    checkpoint_dir: mt50\n")
    pushed_dump.write_text("/arm1/deer_vla_policy:\n  ros__parameters:\n    checkpoint_dir: mt50\n")
    pushed = {"ros_namespace": "/arm1"}
    with caplog.at_level(logging.WARNING, logger="deer_vla"):
        _, entities = _run_launch_file("deer_vla.launch.py", monkeypatch, undeclared=pushed,
                                       params_file=str(pushed_dump))
    assert not [r.getMessage() for r in caplog.records if r.name == "deer_vla"]
    policy = next(e for e in entities if e.kind == "LifecycleNode")
    assert policy.kwargs["namespace"] == "" and policy.kwargs["parameters"][0] == str(pushed_dump)  # launch_ros
    with pytest.raises(ValueError, match=r"holds no parameters for node /arm1/deer_vla_policy"):
        _run_launch_file("deer_vla.launch.py", monkeypatch, undeclared=pushed, params_file=str(root_dump))
    with pytest.raises(ValueError, match=r"holds no parameters for node /arm1/robot1/deer_vla_policy"):
        _run_launch_file("deer_vla.launch.py", monkeypatch, undeclared=pushed, params_file=str(pushed_dump),
                         namespace="robot1")
    # an absolute namespace stays absolute under the push (launch_ros's prefix_namespace prefixes relative ones
    # only): the node runs as /robot1/deer_vla_policy, and its dump applies; it was given 'robot1' (run under
    # /arm1/robot1) and the dump refused
    absolute_dump = tmp_path / "absolute.yaml"
    absolute_dump.write_text("/robot1/deer_vla_policy:\n  ros__parameters:\n    checkpoint_dir: mt50\n")
    _, entities = _run_launch_file("deer_vla.launch.py", monkeypatch, undeclared=pushed, namespace="/robot1",
                                   params_file=str(absolute_dump))
    nodes = [e for e in entities if e.kind in ("Node", "LifecycleNode")]
    assert {n.kwargs["namespace"] for n in nodes} == {"/robot1"}
    # at the root (the context's '/' there) the root dump is the one that applies, as before
    _run_launch_file("deer_vla.launch.py", monkeypatch, undeclared={"ros_namespace": "/"},
                     params_file=str(root_dump))


def _edges_matched(handler: _Recorded, graph: list[tuple]) -> set[tuple[str, str, str]]:
    """The lifecycle edges (transition, start, goal labels) launch_ros's OnStateTransition matcher accepts
    (None = any, as in on_state_transition.py), among the real rcl_lifecycle transition graph."""
    kw = handler.kwargs
    return {
        (t, s, g) for _, t, _, s, _, g in graph
        if (kw["transition"] is None or kw["transition"] == t) and (kw["start_state"] is None or kw["start_state"] == s)
        and (kw["goal_state"] is None or kw["goal_state"] == g)
    }


@pytest.mark.parametrize("launch_file", ["deer_vla.launch.py", "sim.launch.py"])
def test_activate_follows_configure_only_so_a_manual_deactivate_stays(launch_file, monkeypatch, ros_context):
    """Issue 15, defect 2: `ros2 lifecycle set /deer_vla_policy deactivate` must not be undone by launch."""
    from lifecycle_msgs.msg import Transition
    from rclpy.lifecycle import LifecycleNode

    _, entities = _run_launch_file(launch_file, monkeypatch)
    handlers = [e.kwargs["event_handler"] for e in entities if e.kind == "RegisterEventHandler"
                and e.kwargs["event_handler"].kind == "OnStateTransition"]
    probe = LifecycleNode("transition_graph_probe")  # the real rcl_lifecycle labels the events carry
    try:
        graph = list(probe._state_machine.transition_graph)
    finally:
        probe.destroy_node()
    assert ("deactivating", "inactive") in {(s, g) for _, _, _, s, _, g in graph}
    activating = [h for h in handlers if any(
        ev.kind == "EmitEvent" and ev.kwargs["event"].kind == "ChangeState"
        and ev.kwargs["event"].kwargs["transition_id"] == Transition.TRANSITION_ACTIVATE
        for ev in h.kwargs["entities"])]
    assert len(activating) == 1
    matched = _edges_matched(activating[0], graph)
    assert {(s, g) for _, s, g in matched} == {("configuring", "inactive")}, matched
    # a later cleanup + configure by the operator must not re-activate the node either
    assert activating[0].kwargs["handle_once"] is True


@pytest.mark.parametrize("launch_file", ["deer_vla.launch.py", "sim.launch.py"])
def test_a_failed_start_ends_the_launch_and_a_later_failure_does_not(launch_file, monkeypatch, ros_context):
    """sim.launch.py with a missing thresholds file: the policy's configure failed, and the simulator said
    "waiting for policy to become active" every 5 s for ever (a real launch_ros run); the bringup ends with an
    error. The first configure or activate failing (configuring -> unconfigured, activating -> inactive), or
    raising (errorprocessing -> unconfigured or finalized: the real rcl_lifecycle edges), ends the launch; the
    first activation withdraws the watches, so an operator's later cleanup + failed configure ends nothing."""
    from rclpy.lifecycle import LifecycleNode

    _, entities = _run_launch_file(launch_file, monkeypatch)
    policy = next(e for e in entities if e.kind == "LifecycleNode")
    registered = [e.kwargs["event_handler"] for e in entities if e.kind == "RegisterEventHandler"
                  and e.kwargs["event_handler"].kind == "OnStateTransition"]
    probe = LifecycleNode("transition_graph_probe_failure")
    try:
        graph = list(probe._state_machine.transition_graph)
    finally:
        probe.destroy_node()

    def edges(handler: _Recorded) -> set[tuple[str, str]]:
        return {(s, g) for _, s, g in _edges_matched(handler, graph)}

    watches = [h for h in registered if any(e.kind == "EmitEvent" and e.kwargs["event"].kind == "Shutdown"
                                            for e in h.kwargs["entities"])]
    assert set().union(*(edges(w) for w in watches)) == {
        ("configuring", "unconfigured"), ("activating", "inactive"), ("errorprocessing", "unconfigured"),
        ("errorprocessing", "finalized")}
    for watch in watches:
        assert watch.kwargs["target_lifecycle_node"] is policy and watch.kwargs["handle_once"] is True
        (shutdown,) = watch.kwargs["entities"]
        assert "failed to start" in shutdown.kwargs["event"].kwargs["reason"]
    # registered before the configure request is emitted (an event handled before its handler is lost)
    order = [e for e in entities if e.kind in ("RegisterEventHandler", "EmitEvent")]
    configure = next(i for i, e in enumerate(order) if e.kind == "EmitEvent")
    assert {id(e.kwargs["event_handler"]) for e in order[:configure]} >= {id(w) for w in watches}
    (activated,) = [h for h in registered if edges(h) == {("activating", "active")}]
    withdrawn = [e.kwargs["event_handler"] for e in activated.kwargs["entities"] if e.kind == "UnregisterEventHandler"]
    assert activated.kwargs["handle_once"] is True and withdrawn == watches


@pytest.mark.parametrize(("launch_file", "ends"), [("deer_vla.launch.py", False), ("sim.launch.py", True)])
def test_sim_launch_ends_when_the_sim_exits(launch_file, ends, monkeypatch):
    """Issue 15, defect 8: after its episodes the sim exits and the whole launch shuts down (as the bringup)."""
    _, entities = _run_launch_file(launch_file, monkeypatch)
    exits = [e.kwargs["event_handler"] for e in entities if e.kind == "RegisterEventHandler"
             and e.kwargs["event_handler"].kind == "OnProcessExit"]
    if not ends:
        assert not exits  # the robot graph runs until Ctrl-C
        return
    sim = next(e for e in entities if e.kind == "Node" and e.kwargs["name"] == load_graph("sim").node("sim").name)
    assert len(exits) == 1 and exits[0].kwargs["target_action"] is sim
    (emit,) = exits[0].kwargs["on_exit"]
    assert emit.kind == "EmitEvent" and emit.kwargs["event"].kind == "Shutdown"


EXPECTED_ARGUMENTS = {"checkpoint", "thresholds", "camera_topics", "enabled", "use_sim_time", "params_file",
                      "namespace"}


@pytest.mark.parametrize(("launch_file", "graph", "enabled"),
                         [("deer_vla.launch.py", "robot", "false"), ("sim.launch.py", "sim", "true")])
def test_launch_arguments_default_to_the_graph(launch_file, graph, enabled, monkeypatch):
    declared, _ = _run_launch_file(launch_file, monkeypatch)
    by_name = {d.kwargs["name"]: d.kwargs for d in declared}
    assert set(by_name) == EXPECTED_ARGUMENTS - ({"use_sim_time"} if graph == "sim" else set())
    assert all(kw["description"] for kw in by_name.values())
    assert all(isinstance(kw["default_value"], str) for kw in by_name.values())
    # a parameter's argument defaults to "" (the file's value), so that one given, even the stock value, can be
    # told from one left out; its description names what the graph's files give
    for name in ("checkpoint", "thresholds", "camera_topics", "enabled"):
        assert by_name[name]["default_value"] == "", name
    assert by_name["enabled"]["description"].endswith(f"(empty: the parameter file's value, '{enabled}' in this "
                                                      "graph's files)")
    assert "'camera/static/image_raw,camera/wrist/image_raw' in" in by_name["camera_topics"]["description"]
    assert by_name["namespace"]["default_value"] == ""
    assert Path(by_name["params_file"]["default_value"]) == load_graph(graph).node("policy").params_files[0]


def test_launch_arguments_reach_the_nodes(monkeypatch, tmp_path):
    custom = tmp_path / "robot_policy.yaml"
    custom.write_text("/**/deer_vla_policy:\n  ros__parameters:\n    checkpoint_dir: /from/file\n")
    ckpt = str(resolve_checkpoint("default"))
    _, entities = _run_launch_file("sim.launch.py", monkeypatch, checkpoint=ckpt, thresholds="/t.json",
                                   camera_topics="front/image, hand/image", enabled="false", namespace="robot1")
    nodes = {e.kwargs["name"]: e for e in entities if e.kind in ("Node", "LifecycleNode")}
    assert {n.kwargs["namespace"] for n in nodes.values()} == {"robot1"}
    policy = nodes["deer_vla_policy"].kwargs["parameters"]
    overrides = {k: v for p in policy if isinstance(p, dict) for k, v in p.items()}
    assert overrides["checkpoint_dir"] == ckpt and overrides["thresholds_file"] == "/t.json"
    assert overrides["image_topics"] == ["front/image", "hand/image"] and overrides["enabled"] is False
    # a custom parameter file replaces policy.yaml, and arguments left at their defaults do not override it
    _, entities = _run_launch_file("deer_vla.launch.py", monkeypatch, params_file=str(custom))
    policy = next(e for e in entities if e.kind == "LifecycleNode").kwargs["parameters"]
    assert policy == [str(custom)]
    with pytest.raises(ValueError, match="enabled.*true or false"):
        _run_launch_file("deer_vla.launch.py", monkeypatch, enabled="maybe")
    for bad in ("bad ns", "robot//1", "1robot", "robot-1"):
        with pytest.raises(ValueError, match="namespace.*not a ROS namespace"):
            _run_launch_file("deer_vla.launch.py", monkeypatch, namespace=bad)
    _, entities = _run_launch_file("deer_vla.launch.py", monkeypatch, namespace="/fleet/robot_1/")
    assert {e.kwargs["namespace"] for e in entities if e.kind in ("Node", "LifecycleNode")} == {"/fleet/robot_1"}
    with pytest.raises(ValueError, match="camera_topics.*at least one"):  # no ROS parameter holds an empty list
        _run_launch_file("deer_vla.launch.py", monkeypatch, camera_topics=" , ")
    with pytest.raises(FileNotFoundError, match="params_file"):
        _run_launch_file("deer_vla.launch.py", monkeypatch, params_file=str(tmp_path / "missing.yaml"))


def test_sim_launch_renders_the_checkpoints_cameras_unless_told(monkeypatch, tmp_path):
    """sim.launch.py rendered config/sim.yaml's [static, wrist] at 64 px whatever the checkpoint: a [wrist, static]
    one at 96 px was refused at configure (crossed topics) where the demo and `bringup --graph sim` adapted the
    simulator. It reads the checkpoint as they do; a camera_topics or params_file argument keeps the user's."""
    ckpt = tmp_path / "ws"
    shutil.copytree(resolve_checkpoint("default"), ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    config.update(cameras=["wrist", "static"], image_size=96)
    (ckpt / "config.json").write_text(json.dumps(config))

    def overrides(**arguments: str) -> dict[str, dict]:
        _, entities = _run_launch_file("sim.launch.py", monkeypatch, checkpoint=str(ckpt), **arguments)
        return {e.kwargs["name"]: {k: v for p in e.kwargs["parameters"] if isinstance(p, dict) for k, v in p.items()}
                for e in entities if e.kind in ("Node", "LifecycleNode")}

    nodes = overrides()
    assert nodes["deer_vla_sim"]["cameras"] == ["wrist", "static"] and nodes["deer_vla_sim"]["image_size"] == 96
    assert nodes["deer_vla_policy"]["image_topics"] == ["camera/wrist/image_raw", "camera/static/image_raw"]
    nodes = overrides(camera_topics="a/wrist/image,a/static/image", namespace="arm1")
    assert nodes["deer_vla_policy"]["image_topics"] == ["a/wrist/image", "a/static/image"]
    assert nodes["deer_vla_sim"]["cameras"] == ["wrist", "static"]  # the sim still renders what the model reads
    custom = tmp_path / "policy.yaml"
    custom.write_text("/**/deer_vla_policy:\n  ros__parameters:\n    image_topics: [x/image, y/image]\n")
    assert "image_topics" not in overrides(params_file=str(custom))["deer_vla_policy"]  # the file's word stands
    (ckpt / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json"):  # the launch stops with the reason, before any node
        overrides()


@pytest.mark.parametrize("launch_file", ["deer_vla.launch.py", "sim.launch.py"])
def test_an_argument_given_with_the_stock_value_overrides_a_custom_parameter_file(launch_file, monkeypatch,
                                                                                   tmp_path):
    """With a custom params_file that enables actuation, `enabled:=false` was dropped because it equalled the
    stock default (the robot graph's), and the node started actuating: launch resolves an argument left out
    and one given to the same text, so only an empty default tells them apart."""
    custom = tmp_path / "arm.yaml"
    custom.write_text("/**/deer_vla_policy:\n  ros__parameters:\n    enabled: true\n"
                      "    image_topics: [a/image, b/image]\n")

    def overrides(**arguments: str) -> dict:
        """What the policy node gets beyond the custom file (the sim graph sets enabled: true itself)."""
        _, entities = _run_launch_file(launch_file, monkeypatch, params_file=str(custom), **arguments)
        policy = next(e for e in entities if e.kind in ("Node", "LifecycleNode")
                      and e.kwargs["name"] == "deer_vla_policy").kwargs["parameters"]
        assert policy[0] == str(custom)
        return {k: v for p in policy[1:] for k, v in p.items()}

    assert overrides().get("enabled", True) is True and "image_topics" not in overrides()  # left out: the file's
    assert overrides(enabled="false")["enabled"] is False
    stock = "camera/static/image_raw,camera/wrist/image_raw"
    assert overrides(camera_topics=stock)["image_topics"] == stock.split(",")
    # a file keyed by the node's namespace applies there, and a value it leaves out still gets its type
    keyed = tmp_path / "arm1.yaml"
    keyed.write_text("/arm1/deer_vla_policy:\n  ros__parameters:\n    enabled: true\n")
    spec = load_graph("robot").with_arguments({"params_file": str(keyed), "namespace": "arm1"})
    assert spec.node("policy").file_parameters()["enabled"] is True
    spec = load_graph("robot").with_arguments({"params_file": str(keyed), "namespace": "arm1", "enabled": "false",
                                               "camera_topics": "a,b"})
    assert spec.node("policy").parameters == {"enabled": False, "image_topics": ["a", "b"]}
    empty = tmp_path / "empty.yaml"
    empty.write_text("/**/deer_vla_policy:\n  ros__parameters:\n    rate_hz: 10.0\n")
    spec = load_graph("robot").with_arguments({"params_file": str(empty), "enabled": "true"})
    assert spec.node("policy").parameters == {"enabled": True}  # a bool, not the text 'true'
    # the one-process bringup means the same by the same words
    spec = load_graph("robot").with_arguments({"params_file": str(custom), "enabled": "false"})
    assert spec.node("policy").parameters == {"enabled": False}
    assert load_graph("robot").with_arguments({"params_file": str(custom)}).node("policy").parameters == {}


def test_bringup_takes_the_launch_arguments(ros_context, tmp_path, monkeypatch):
    """`deer-vla bringup NAME:=VALUE` means what `ros2 launch ... NAME:=VALUE` means (real rclpy nodes)."""
    from deer_vla.ros.bringup import _parse_launch_arguments, _parse_set, _split_args, create_node

    monkeypatch.chdir(tmp_path)
    args = _parse_launch_arguments(["checkpoint:=/ckpt", "enabled:=true", "namespace:=robot1",
                                    "camera_topics:=front/image"])
    spec = load_graph("robot").with_arguments(args)
    policy = create_node(spec.node("policy"))
    try:
        assert policy.get_namespace() == "/robot1"
        assert policy.get_parameter("checkpoint_dir").value == "/ckpt"
        assert policy.get_parameter("enabled").value is True
        assert list(policy.get_parameter("image_topics").value) == ["front/image"]
        # the parameter file still applies in a namespace (its keys are /**/<node name>)
        assert policy.get_parameter("max_image_age_s").value == spec.node("policy").file_parameters()["max_image_age_s"]
    finally:
        policy.destroy_node()
    with pytest.raises(KeyError, match="unknown launch argument.*'checkpoint'"):
        load_graph("robot").with_arguments({"checkpoint_path": "/x"})
    with pytest.raises(ValueError, match="NAME:=VALUE"):
        _parse_launch_arguments(["checkpoint=/x"])
    assert _parse_set(["policy.rate_hz=5", "policy.image_topics=[a, b]"]) == {
        "policy": {"rate_hz": 5, "image_topics": ["a", "b"]}}
    for bad in ("{a: 1}", "[1, a]", "2024-01-01"):  # no ROS parameter type: refused, not an rclpy traceback
        with pytest.raises(ValueError, match="policy.rate_hz.*not a ROS parameter value"):
            _parse_set([f"policy.rate_hz={bad}"])
    # on the command line they are ours, not rcl's remapping rules
    ros, own = _split_args(["--graph", "sim", "checkpoint:=/x", "--ros-args", "-r", "a:=b"])
    assert ros == ["--graph", "sim", "--ros-args", "-r", "a:=b"] and own == ["checkpoint:=/x", "--graph", "sim"]


def test_the_bringup_judges_parameter_files_by_the_names_rcl_will_give_the_nodes(tmp_path):
    """rcl applies a remap that names no node to every node of the process: a global `-r __node:=arm_policy`
    gave the bringup's policy and monitor one name, both lost their parameter files (keyed by node name) and
    the bringup said both were running; a global `-r __ns:=/arm1` moved the nodes where the parameter files
    were not judged; `-r deer_vla_policy:__node:=arm_policy` (the advice) refused a file keyed /**/arm_policy,
    as docs/ros.md says to write it, and passed one keyed /**/deer_vla_policy that rcl then dropped; and a
    namespace rcl refuses was a traceback at node creation."""
    from deer_vla.ros.bringup import _split_args_or_say, _with_name_remaps

    robot = load_graph("robot")
    for rule in ("__node:=arm_policy", "__name:=arm_policy"):
        with pytest.raises(ValueError, match=rf"-r {rule} without a node name renames every node.*-r "
                                             r"deer_vla_policy:__node:=arm_policy"):
            _with_name_remaps(["--ros-args", "-r", rule], {}, robot)
    assert _with_name_remaps(["-r", "__node:=x"], {}, robot) == ({}, robot)  # before --ros-args: not rcl's
    assert _with_name_remaps(["--ros-args", "--remap", "__ns:=/arm1"], {}, robot)[0] == {"namespace": "/arm1"}
    with pytest.raises(ValueError, match="two namespaces: namespace:=robot1 and -r __ns:=/arm1"):
        _with_name_remaps(["--ros-args", "-r", "__ns:=/arm1"], {"namespace": "robot1"}, robot)
    for bad in ("/arm1/", "arm1", "/1arm", "/a//b", "/a__b", "/__a"):
        with pytest.raises(ValueError, match=f"-r __ns:={bad} is not a namespace rcl takes"):
            _with_name_remaps(["--ros-args", "-r", f"__ns:={bad}"], {}, robot)
    dump = tmp_path / "dump.yaml"
    dump.write_text("/deer_vla_policy:\n  ros__parameters:\n    max_instruction_chars: 500\n")
    arguments, graph = _with_name_remaps(["--ros-args", "-r", "__ns:=/arm1"], {"params_file": str(dump)}, robot)
    with pytest.raises(ValueError, match=r"holds no parameters for node /arm1/deer_vla_policy"):
        graph.with_arguments(arguments)
    # one node renamed: its files are judged by the new name
    renamed_file, old_file = tmp_path / "renamed.yaml", tmp_path / "old.yaml"
    renamed_file.write_text("/**/arm_policy:\n  ros__parameters:\n    max_instruction_chars: 500\n")
    old_file.write_text("/**/deer_vla_policy:\n  ros__parameters:\n    max_instruction_chars: 500\n")
    rename = ["--ros-args", "-r", "deer_vla_policy:__node:=arm_policy"]
    arguments, graph = _with_name_remaps(rename, {"params_file": str(renamed_file)}, robot)
    policy = graph.with_arguments(arguments).node("policy")
    assert policy.name == "arm_policy" and policy.file_parameters()["max_instruction_chars"] == 500
    assert graph.node("monitor").name == "deer_vla_monitor"
    with pytest.raises(ValueError, match=r"holds no parameters for node /arm_policy"):
        graph.with_arguments({"params_file": str(old_file)})
    with pytest.raises(ValueError, match=r"-r deer_vla_policy:__node:=arm_policy: .*policy\.yaml holds no parameters "
                                         r"for node /arm_policy .*give params_file:= \(launch, bringup\) or "
                                         r"--config-dir \(bringup, demo\) a file keyed /\*\*/arm_policy"):
        graph.with_arguments({})  # the graph's own config/policy.yaml, keyed by the old name
    for bad in ("1x", "p__1"):  # (rcl's rule lexer refuses '__' in a name)
        with pytest.raises(ValueError, match=f"'{bad}' is not a node name rcl takes"):
            _with_name_remaps(["--ros-args", "-r", f"deer_vla_policy:__node:={bad}"], {}, robot)
    # the sim waits for the policy by name: it follows the rename
    sim = _with_name_remaps(rename, {}, load_graph("sim"))[1]
    assert sim.node("sim").parameters["policy_node"] == "arm_policy"
    assert _split_args_or_say("deer-vla bringup", ["--ros-args", "-r", "__ns:=arm1"]) is None  # said before rcl
    # one node moved: its files are judged where it will be (a dump keyed /deer_vla_policy reached nothing)
    moved = ["--ros-args", "-r", "deer_vla_policy:__ns:=/arm1"]
    arguments, graph = _with_name_remaps(moved, {"params_file": str(dump)}, robot)
    assert graph.node("policy").full_name == "/arm1/deer_vla_policy" and graph.node("monitor").full_name == \
        "/deer_vla_monitor"
    with pytest.raises(ValueError, match=r"holds no parameters for node /arm1/deer_vla_policy"):
        graph.with_arguments(arguments)
    with pytest.raises(ValueError, match=r"two namespaces: -r __ns:=/a and -r __ns:=/b; give one"):
        _with_name_remaps(["--ros-args", "-r", "__ns:=/a", "-r", "__ns:=/b"], {}, robot)


def test_the_bringup_places_each_node_by_the_first_namespace_rule_that_matches_it_as_rcl_does(tmp_path):
    """rcl applies to each node the first __ns rule that matches it (measured with rclpy: `-r a:__ns:=/b -r
    __ns:=/c` puts a in /b and the others in /c; `-r __ns:=/c -r a:__ns:=/b` all in /c; after `-r a:__node:=p1`
    only a rule naming p1 moves it). `-r deer_vla_policy:__ns:=/b -r __ns:=/a` ran the policy in /b while the
    bringup judged its parameter file for /a/deer_vla_policy (accepting one rcl then dropped, refusing the one
    that applied) and the monitor named /a/deer_vla_policy; `namespace:=a` beside a rule moving the policy was
    refused, though rcl takes it."""
    from deer_vla.ros.bringup import _with_name_remaps

    robot = load_graph("robot")
    keyed_b = tmp_path / "b.yaml"
    keyed_b.write_text("/b/deer_vla_policy:\n  ros__parameters:\n    max_instruction_chars: 500\n")
    for args, given in ((["-r", "deer_vla_policy:__ns:=/b", "-r", "__ns:=/a"], {}),
                        (["-r", "deer_vla_policy:__ns:=/b"], {"namespace": "a"})):
        arguments, graph = _with_name_remaps(["--ros-args", *args], {**given, "params_file": str(keyed_b)}, robot)
        placed = graph.with_arguments(arguments)
        assert placed.node("policy").full_name == "/b/deer_vla_policy", args
        assert placed.node("monitor").full_name == "/a/deer_vla_monitor", args
        assert placed.node("policy").file_parameters()["max_instruction_chars"] == 500
        assert placed.node("monitor").parameters["hardware_id"] == "/b/deer_vla_policy"
        assert placed.node("monitor").parameters["record_topic"] == "/b/step_record"  # where the policy writes
    # a remap of the record topic applies to both nodes' relative name: the monitor's is left to it (it was made
    # /b/step_record, which the rule does not reach, and the monitor heard nothing)
    from deer_vla.ros.bringup import _records_remapped

    remapped = ["--ros-args", "-r", "deer_vla_policy:__ns:=/b", "-r", "__ns:=/a", "-r", "step_record:=/records"]
    arguments, graph = _with_name_remaps(remapped, {}, robot)
    assert _records_remapped(remapped, graph) and not _records_remapped(remapped[:5], graph)
    placed = graph.with_arguments(arguments, records_remapped=True)
    assert "record_topic" not in placed.node("monitor").parameters
    # a policy file that leaves record_topic to the node's default is remapped alike (the default was not counted)
    assert _records_remapped(remapped, graph.with_arguments({"params_file": str(keyed_b)}))
    assert placed.node("monitor").parameters["hardware_id"] == "/b/deer_vla_policy"
    with pytest.raises(ValueError, match=r"-r deer_vla_policy:__ns:=/b comes after -r __ns:=/a, which rcl applies to "
                                         r"that node first: it would never apply"):
        _with_name_remaps(["--ros-args", "-r", "__ns:=/a", "-r", "deer_vla_policy:__ns:=/b"], {}, robot)
    with pytest.raises(ValueError, match=r"-r deer_vla_policy:__ns:=/c comes after -r deer_vla_policy:__ns:=/b"):
        _with_name_remaps(["--ros-args", "-r", "deer_vla_policy:__ns:=/b", "-r", "deer_vla_policy:__ns:=/c"], {},
                          robot)
    from deer_vla.ros.graph import DEFAULT_RECORD_TOPIC
    from deer_vla.ros.monitor_node import MONITOR_DEFAULTS
    from deer_vla.ros.params import POLICY_DEFAULTS

    assert POLICY_DEFAULTS["record_topic"] == MONITOR_DEFAULTS["record_topic"] == DEFAULT_RECORD_TOPIC
    # in the sim graph the simulator feeds the policy on topics in its own namespace: one node moved is refused
    sim_graph = load_graph("sim")
    with pytest.raises(ValueError, match=r"-r deer_vla_policy:__ns:=/b puts the simulator and the policy in two "
                                         r"namespaces \('/', '/b'\)"):
        _with_name_remaps(["--ros-args", "-r", "deer_vla_policy:__ns:=/b"], {}, sim_graph)
    # rules that leave the two together pass (a review found each refused): no such node, where it is already,
    # the graph's own namespace, the monitor alone, both moved alike
    for rules, given in ((["-r", "some_driver:__ns:=/cam"], {}), (["-r", "deer_vla_policy:__ns:=/"], {}),
                         (["-r", "deer_vla_policy:__ns:=/a"], {"namespace": "a"}),
                         (["-r", "deer_vla_monitor:__ns:=/m"], {}),
                         (["-r", "deer_vla_policy:__ns:=/a", "-r", "deer_vla_sim:__ns:=/a"], {})):
        _with_name_remaps(["--ros-args", *rules], given, sim_graph)
    # renamed: a rule naming the old name moves nothing (rcl matches the new one), one naming the new name does
    renamed = tmp_path / "p1.yaml"
    renamed.write_text("/**/p1:\n  ros__parameters:\n    max_instruction_chars: 500\n")
    for rule, where in (("deer_vla_policy:__ns:=/b", "/p1"), ("p1:__ns:=/b", "/b/p1")):
        arguments, graph = _with_name_remaps(["--ros-args", "-r", "deer_vla_policy:__node:=p1", "-r", rule],
                                             {"params_file": str(renamed)}, robot)
        assert graph.with_arguments(arguments).node("policy").full_name == where, rule


def test_the_monitor_reports_on_the_policy_a_remap_renamed_or_moved(tmp_path):
    """The monitor's hardware_id "" means <its namespace>/deer_vla_policy: with `-r deer_vla_policy:__node:=
    arm_policy` (or the policy alone moved by `-r deer_vla_policy:__ns:=/arm1`) its statuses named a node that
    did not exist, beside the policy's own under its real name."""
    from deer_vla.ros.bringup import _with_name_remaps

    robot = load_graph("robot")
    assert "hardware_id" not in robot.with_arguments({"namespace": "robot1"}).node("monitor").parameters
    renamed_file = tmp_path / "renamed.yaml"
    renamed_file.write_text("/**/arm_policy:\n  ros__parameters:\n    max_instruction_chars: 500\n")
    arguments, graph = _with_name_remaps(["--ros-args", "-r", "deer_vla_policy:__node:=arm_policy"],
                                         {"params_file": str(renamed_file), "namespace": "robot1"}, robot)
    assert graph.with_arguments(arguments).node("monitor").parameters["hardware_id"] == "/robot1/arm_policy"
    arguments, graph = _with_name_remaps(["--ros-args", "-r", "deer_vla_policy:__ns:=/arm1"], {}, robot)
    assert graph.with_arguments(arguments).node("monitor").parameters["hardware_id"] == "/arm1/deer_vla_policy"
    own = robot.with_parameters({"monitor": {"hardware_id": "arm-7"}})  # a hardware_id the user set is theirs
    arguments, graph = _with_name_remaps(["--ros-args", "-r", "deer_vla_policy:__ns:=/arm1"], {}, own)
    assert graph.with_arguments(arguments).node("monitor").parameters["hardware_id"] == "arm-7"



def test_a_parameter_file_that_does_not_reach_the_node_in_its_namespace_is_refused(tmp_path):
    """`ros2 param dump` keys its file by the node's absolute name (/deer_vla_policy); given as params_file with
    namespace:=arm1 rcl applied none of it, the node ran every default without a word, and the graph's own
    reading of the file said it applied."""
    from dataclasses import replace

    dump = tmp_path / "dump.yaml"
    dump.write_text("/deer_vla_policy:\n  ros__parameters:\n    max_instruction_chars: 500\n")
    root = load_graph("robot").with_arguments({"params_file": str(dump)})
    assert root.node("policy").file_parameters()["max_instruction_chars"] == 500  # the root namespace: it applies
    with pytest.raises(ValueError, match=r"holds no parameters for node /arm1/deer_vla_policy.*key it "
                                         r"/\*\*/deer_vla_policy"):
        load_graph("robot").with_arguments({"params_file": str(dump), "namespace": "arm1"})
    wildcard = tmp_path / "any.yaml"
    wildcard.write_text("/**/deer_vla_policy:\n  ros__parameters:\n    max_instruction_chars: 500\n")
    spec = load_graph("robot").with_arguments({"params_file": str(wildcard), "namespace": "arm1"})
    assert spec.node("policy").file_parameters()["max_instruction_chars"] == 500
    # rcl's matching (what Jazzy's rclpy applied, key by key, in an audit): relative keys, "*", "**"
    node = spec.node("policy")
    for key in ("/**", "/**/deer_vla_policy", "/arm1/deer_vla_policy", "arm1/deer_vla_policy", "/arm1/*",
                "/*/deer_vla_policy", "/*/**/deer_vla_policy", "/**/*"):
        assert node.applies(key), key
    for key in ("/deer_vla_policy", "deer_vla_policy", "/*", "/arm2/deer_vla_policy", "/arm1/other"):
        assert not node.applies(key), key
    root = load_graph("robot").node("policy")
    assert all(root.applies(k) for k in ("/*", "deer_vla_policy", "/deer_vla_policy", "/**/*"))
    two = replace(root, namespace="a/b")
    assert all(two.applies(k) for k in ("a/b/deer_vla_policy", "/*/*/deer_vla_policy", "/a/*/deer_vla_policy",
                                        "/**/b/deer_vla_policy", "/a/**", "/*/**/deer_vla_policy"))
    assert not two.applies("/*/deer_vla_policy")
    # a node section, or a parameter, given twice: rcl merges the sections and keeps a parameter's last value
    # (a duplicate-key refusal meant for settings files refused these; the reading before kept the last section)
    twice = tmp_path / "twice.yaml"
    twice.write_text("/**/deer_vla_policy:\n  ros__parameters:\n    device: cpu\n    max_instruction_chars: 400\n"
                     "/**/deer_vla_policy:\n  ros__parameters:\n    enabled: false\n    max_instruction_chars: 500\n")
    given = load_graph("robot").with_arguments({"params_file": str(twice)}).node("policy").file_parameters()
    assert (given["device"], given["enabled"], given["max_instruction_chars"]) == ("cpu", False, 500)
    for text, problem in (("- a\n- b\n", "a YAML list"), ("a: [\n", "not a ROS parameter file")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ValueError, match=problem):
            load_graph("robot").with_arguments({"params_file": str(bad)})


def test_use_sim_time_reaches_every_node_by_launch_and_by_bringup(ros_context, tmp_path, monkeypatch):
    """`use_sim_time:=true` (a simulator's /clock) was no launch argument: `ros2 launch` ignored it without a word
    and the bringup refused it. It sets rclpy's own use_sim_time on every node of the graph."""
    from deer_vla.ros.bringup import create_node

    _, entities = _run_launch_file("deer_vla.launch.py", monkeypatch, use_sim_time="true")
    nodes = {e.kwargs["name"]: e for e in entities if e.kind in ("Node", "LifecycleNode")}
    assert set(nodes) == {"deer_vla_policy", "deer_vla_monitor"}
    for node in nodes.values():
        overrides = {k: v for p in node.kwargs["parameters"] if isinstance(p, dict) for k, v in p.items()}
        assert overrides["use_sim_time"] is True, node.kwargs["name"]
    # the sim graph's simulator publishes no /clock: not offered there (its nodes would wait for ever)
    with pytest.raises(KeyError, match="unknown launch argument.*use_sim_time"):
        load_graph("sim").with_arguments({"use_sim_time": "true"})
    _, entities = _run_launch_file("deer_vla.launch.py", monkeypatch)  # left out: not set, the wall clock
    assert not any("use_sim_time" in p for e in entities if e.kind in ("Node", "LifecycleNode")
                   for p in e.kwargs["parameters"] if isinstance(p, dict))
    assert load_graph("robot").argument_defaults()["use_sim_time"] == "false"
    with pytest.raises(ValueError, match="'use_sim_time' must be true or false"):
        load_graph("robot").with_arguments({"use_sim_time": "yes please"})
    monkeypatch.chdir(tmp_path)
    spec = load_graph("robot").with_arguments({"use_sim_time": "true"})
    for key in ("policy", "monitor"):
        node = create_node(spec.node(key))
        try:
            assert node.get_parameter("use_sim_time").value is True and node.get_clock().ros_time_is_active
        finally:
            node.destroy_node()


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


def _file_parameters(name: str) -> dict:
    import yaml

    (section,) = yaml.safe_load((ROOT / "config" / name).read_text()).values()
    return section["ros__parameters"]


@pytest.mark.parametrize("file, defaults_of", [
    ("policy.yaml", "deer_vla.ros.params:POLICY_DEFAULTS"),
    ("monitor.yaml", "deer_vla.ros.monitor_node:MONITOR_DEFAULTS"),
    ("sim.yaml", "deer_vla.ros.sim_node:SIM_DEFAULTS"),
])
def test_parameter_files_list_every_node_parameter(file, defaults_of):
    # docs/ros.md and the unknown-parameter message send users to these files for every parameter
    import importlib

    module, name = defaults_of.split(":")
    defaults = getattr(importlib.import_module(module), name)
    given = _file_parameters(file)
    assert sorted(set(defaults) - set(given)) == []
    assert sorted(set(given) - set(defaults)) == []
    # the sim file sets the demo's tasks and episodes on purpose; the others document the defaults
    demo = {"tasks", "episodes"} if file == "sim.yaml" else set()
    assert {k: v for k, v in given.items() if v != defaults[k] and k not in demo} == {}


def test_bringup_stops_every_node_when_one_fails_to_stop():
    """The monitor, stopped first, raised on a full disk (its summary write) and the loop ended there: the
    policy node was never deactivated (no zero twist) nor destroyed, and a second stop() did nothing."""
    from deer_vla.ros.bringup import Bringup

    calls: list[str] = []

    class Node:
        def __init__(self, key: str, fails: bool = False) -> None:
            self.key, self.fails, self.active = key, fails, True

        def trigger_deactivate(self) -> None:
            calls.append(f"deactivate {self.key}")

        def destroy_node(self) -> None:
            calls.append(f"destroy {self.key}")
            if self.fails:
                raise OSError(28, "No space left on device")

    class Executor:
        def remove_node(self, node) -> None:
            calls.append(f"remove {node.key}")

    graph = load_graph("robot")
    bringup = Bringup(graph, executor=Executor())
    bringup.nodes = {spec.key: Node(spec.key, fails=spec.key == "monitor") for spec in graph.nodes}
    with pytest.raises(OSError, match="No space left"):
        bringup.stop()
    assert "deactivate policy" in calls and "destroy policy" in calls and "destroy monitor" in calls
    assert not bringup.nodes
    # actuation stops before anything closes: the monitor's close (summary, plot, a stalled disk) delayed the
    # policy's zero twist by 1.1 s, or lost it when a supervisor killed the process meanwhile
    assert calls.index("deactivate policy") < calls.index("destroy monitor")


def test_the_demo_refuses_a_global_node_rename_before_it_starts(capsys, tmp_path):
    """`deer-vla demo --ros-args -r __node:=x` named all three nodes x: the sim waited for 'deer_vla_policy'
    until the timeout (540 s by default), then said 0 episodes, timed out."""
    from deer_vla.ros.bringup import demo_main

    assert demo_main(["--episodes", "1", "--output-dir", str(tmp_path), "--ros-args", "-r", "__node:=x"]) == 2
    assert "-r __node:=x without a node name renames every node" in capsys.readouterr().err
    assert demo_main(["--episodes", "1", "--output-dir", str(tmp_path), "--ros-args", "-r", "__ns:=/a/"]) == 2
    assert "-r __ns:=/a/ is not a namespace rcl takes" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # no run folder for a run that never started
    # a renamed policy: the graph's own config/policy.yaml would not reach it (the demo ran without it)
    assert demo_main(["--episodes", "1", "--output-dir", str(tmp_path), "--ros-args", "-r",
                      "deer_vla_policy:__node:=arm_policy"]) == 2
    assert "holds no parameters for node /arm_policy" in capsys.readouterr().err


def test_the_bringup_refuses_parameters_after_ros_args_that_its_nodes_files_override(tmp_path, capsys):
    """`deer-vla bringup --ros-args -p checkpoint_dir:=mt50 -p enabled:=true` ran the default checkpoint, gated,
    without a word: the nodes' own parameter files are node-level arguments and win over the process's. Such a
    parameter is one line naming the ways that reach the node; one no file sets (use_sim_time) reaches it, and
    passes (a first version refused every -p)."""
    from deer_vla.ros.bringup import _overridden_ros_parameters, cli_main

    robot = load_graph("robot").with_arguments({})
    wild = tmp_path / "wild.yaml"
    wild.write_text("/**/deer_vla_policy:\n  ros__parameters:\n    checkpoint_dir: mt50\n")
    sim_time = tmp_path / "sim_time.yaml"
    sim_time.write_text("/**:\n  ros__parameters:\n    use_sim_time: true\n")
    for given, node, param in ((["-p", "checkpoint_dir:=mt50"], "deer_vla_policy", "checkpoint_dir"),
                               (["--param", "deer_vla_policy:enabled:=true"], "deer_vla_policy", "enabled"),
                               (["-p", "deer_vla_monitor:log_dir:=/tmp/x"], "deer_vla_monitor", "log_dir"),
                               (["--params-file", str(wild)], "deer_vla_policy", "checkpoint_dir")):
        with pytest.raises(ValueError, match=rf"{given[0]} {re.escape(given[1])} after --ros-args would not reach "
                                             rf"{node}: its own parameter files set {param} .*--set \w+\.{param}="):
            _overridden_ros_parameters(["--ros-args", *given], robot)
    for given in (["-p", "use_sim_time:=true"], ["-p", "other_node:enabled:=true"], ["--params-file", str(sim_time)],
                  ["--params-file", str(tmp_path / "missing.yaml")]):  # (rcl says what is wrong with a file)
        _overridden_ros_parameters(["--ros-args", *given], robot)
    _overridden_ros_parameters(["-p", "enabled:=true"], robot)  # not after --ros-args: no ROS argument
    assert cli_main(["--duration", "1", "--ros-args", "-p", "enabled:=true"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deer-vla bringup: -p enabled:=true after --ros-args would not reach deer_vla_policy")
