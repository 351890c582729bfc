"""A remapping in config/graph.yaml reaches the launch file's node actions (launch run against test_ros_graph's
stand-in launch modules, as there)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from test_ros_graph import _run_launch_file

pytestmark = pytest.mark.ros
ROOT = Path(__file__).resolve().parents[1]


def test_a_remapping_in_the_graph_reaches_the_launched_node(monkeypatch, tmp_path):
    """graph.yaml's remappings (e.g. the twist onto MoveIt Servo's topic) are given to the launched node: dropped
    by the launch description, `ros2 launch` published on cmd_twist, which nothing read, while the one-process
    bringup (the same graph) remapped it."""
    from deer_vla.ros.graph import load_graph

    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    graph = yaml.safe_load((config / "graph.yaml").read_text())
    graph["nodes"]["policy"]["remappings"] = {"cmd_twist": "/servo_node/delta_twist_cmds"}
    (config / "graph.yaml").write_text(yaml.safe_dump(graph))
    monkeypatch.setenv("DEER_VLA_CONFIG_DIR", str(config))
    spec = load_graph("robot")
    assert spec.node("policy").remappings == (("cmd_twist", "/servo_node/delta_twist_cmds"),)
    _, entities = _run_launch_file("deer_vla.launch.py", monkeypatch)
    nodes = {e.kwargs["name"]: e for e in entities if e.kind in ("Node", "LifecycleNode")}
    assert [tuple(r) for r in nodes["deer_vla_policy"].kwargs["remappings"]] == [
        ("cmd_twist", "/servo_node/delta_twist_cmds")]
    assert list(nodes["deer_vla_monitor"].kwargs["remappings"]) == []  # only the node that names one
    assert "cmd_twist:=/servo_node/delta_twist_cmds" in spec.node("policy").ros_args()  # as the bringup passes it
