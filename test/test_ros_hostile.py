"""Nodes against hostile callers and a real terminal: invalid lifecycle requests, double Ctrl-C, ordering.

Issue 15, defects 3, 4 and 8 (the sim side), with real rclpy.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros
ROOT = Path(__file__).resolve().parents[1]


def _call(executor, client, request, spin_until):
    future = client.call_async(request)
    assert spin_until(executor, future.done, 5.0), f"no answer from {client.srv_name}"
    return future.result()


def test_an_rclpy_without_the_events_executor_spins_the_single_threaded_one(ros_context, monkeypatch, capfd):
    """The EventsExecutor reached Jazzy in rclpy 7.1.4: on an older robot install every node died at start on
    the import (the node default is 'events'). It falls back, says so, and still refuses an unknown kind."""
    import types

    from rclpy.executors import SingleThreadedExecutor

    from deer_vla.ros.executors import make_executor

    monkeypatch.setitem(sys.modules, "rclpy.experimental", types.ModuleType("rclpy.experimental"))
    executor = make_executor("events")
    try:
        assert type(executor) is SingleThreadedExecutor
    finally:
        executor.shutdown()
    assert "EventsExecutor is not available" in capfd.readouterr().err
    with pytest.raises(ValueError, match="unknown executor 'multi'"):
        make_executor("multi")


@pytest.mark.parametrize("kind", ["single", "events"])
def test_invalid_lifecycle_transitions_are_refused_and_the_node_lives(kind, ros_context, tiny_checkpoint, spin_until,
                                                                     capfd):
    """`ros2 service call /deer_vla_policy/change_state` with a transition the state does not have; a label is
    the caller's text, logged escaped and cut (a newline in it forged an ERROR line, an ANSI code cleared the
    terminal, a 100 000-character label was logged whole)."""
    import rclpy
    from lifecycle_msgs.msg import State, Transition
    from lifecycle_msgs.srv import ChangeState, GetState
    from rclpy.parameter import Parameter

    from deer_vla.ros.executors import make_executor
    from deer_vla.ros.policy_node import PolicyNode

    executor = make_executor(kind)
    node = PolicyNode(parameter_overrides=[Parameter("checkpoint_dir", value=str(tiny_checkpoint)),
                                          Parameter("control_mode", value="event")])
    caller = rclpy.create_node("hostile_caller")
    executor.add_node(node)
    executor.add_node(caller)
    try:
        change = caller.create_client(ChangeState, "/deer_vla_policy/change_state")
        get = caller.create_client(GetState, "/deer_vla_policy/get_state")
        assert spin_until(executor, lambda: change.service_is_ready() and get.service_is_ready(), 5.0)

        def change_state(tid: int = 0, label: str = "") -> bool:
            return _call(executor, change, ChangeState.Request(transition=Transition(id=tid, label=label)),
                         spin_until).success

        def state() -> int:
            return _call(executor, get, GetState.Request(), spin_until).current_state.id

        assert not change_state(99)  # no such transition at all
        assert not change_state(Transition.TRANSITION_ACTIVATE)  # unconfigured: cannot activate
        assert state() == State.PRIMARY_STATE_UNCONFIGURED
        assert change_state(Transition.TRANSITION_CONFIGURE)
        assert change_state(label="activate")
        assert state() == State.PRIMARY_STATE_ACTIVE and node.active
        assert not change_state(Transition.TRANSITION_CONFIGURE)  # configure while active
        assert not change_state(Transition.TRANSITION_CLEANUP)  # cleanup while active
        assert not change_state(label="configure")
        forged = "x\x1b[2J\n[ERROR] [1.0] FORGED" + "y" * 5000
        assert not change_state(label=forged)
        assert state() == State.PRIMARY_STATE_ACTIVE and node.active  # refused, alive, unchanged
        err = capfd.readouterr().err
        assert "change_state refused: transition 'x\\x1b[2J\\n[ERROR] [1.0] FORGEDyy" in err
        assert f"yyy'... ({len(forged)} characters) is not valid in state 'active'" in err
        assert "\n[ERROR] [1.0]" not in err and "\x1b" not in err and "y" * 100 not in err
        assert change_state(Transition.TRANSITION_DEACTIVATE)
        assert state() == State.PRIMARY_STATE_INACTIVE
    finally:
        for n in (caller, node):
            executor.remove_node(n)
            n.destroy_node()
        executor.shutdown(timeout_sec=1.0)


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)


def _record(step: int) -> str:
    from deer_vla.core import StepRecord

    return StepRecord(step=step, episode=0, exit_used=1 + step % 3, max_exit=4, stop_reason="threshold",
                      llm_gflops=0.01 * (1 + step % 3), total_gflops=0.02, total_ms=3.0).to_json()


def test_double_ctrl_c_lets_the_monitor_executable_finish_its_cleanup(executor, tmp_path, spin_until):
    """A terminal's SIGINT plus launch's SIGINT: the second lands during cleanup and must not cut it."""
    from std_msgs.msg import String

    log = tmp_path / "monitor.log"
    proc = _spawn(["-m", "deer_vla.ros.monitor_node", "--ros-args", "-p", f"log_dir:={tmp_path}",
                   "-p", "run_name:=sig", "-r", "__node:=sig_monitor", "-r", "step_record:=sig_records"], log)
    try:
        import rclpy

        node = rclpy.create_node("sig_driver")
        executor.add_node(node)
        pub = node.create_publisher(String, "sig_records", 100)
        assert spin_until(executor, lambda: pub.get_subscription_count() > 0 or proc.poll() is not None, 60.0)
        assert proc.poll() is None, log.read_text()
        # Discovery is two-way: the publisher may see the subscription before the subscription sees it, and
        # records sent in between are lost (volatile QoS). Settle, publish, then wait for the monitor's log.
        spin_until(executor, lambda: False, 1.0)
        for step in range(5):
            pub.publish(String(data=_record(step)))
        jsonl = tmp_path / "sig" / "steps.jsonl"
        arrived = lambda: jsonl.is_file() and len(jsonl.read_text().splitlines()) >= 5
        assert spin_until(executor, arrived, 30.0), log.read_text()
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)  # the monitor is now closing its logs and rendering the plot
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = log.read_text()
    assert rc == 0, out[-3000:]
    summary = json.loads((tmp_path / "sig" / "summary.json").read_text())
    assert summary["steps"] == 5, out[-3000:]
    assert (tmp_path / "sig" / "steps.png").is_file() and "[deer_vla monitor]" in out
    assert "Traceback" not in out, out[-3000:]


def test_sim_starts_episode_0_only_once_the_policy_is_active(executor, tiny_checkpoint, tmp_path, spin_until,
                                                            monkeypatch):
    """The sim of the "sim" graph must not send episode 0 to a policy that is still unconfigured or inactive."""
    import rclpy
    from std_msgs.msg import String

    from deer_vla.ros.bringup import create_node
    from deer_vla.ros.graph import load_graph
    from deer_vla.ros.policy_node import INSTRUCTION_QOS

    monkeypatch.chdir(tmp_path)
    graph = load_graph("sim", overrides={"sim": {"episodes": 1, "max_steps": 2, "rate_hz": 50.0},
                                         "policy": {"checkpoint_dir": str(tiny_checkpoint)}})
    sim, policy = create_node(graph.node("sim")), create_node(graph.node("policy"))
    watcher = rclpy.create_node("episode_watcher")
    instructions: list[String] = []
    watcher.create_subscription(String, "instruction", instructions.append, INSTRUCTION_QOS)
    for node in (policy, sim, watcher):
        executor.add_node(node)
    spin_until(executor, lambda: bool(instructions), 1.0)
    assert not instructions, "episode 0 started before the policy was even configured"
    assert policy.trigger_configure().name == "SUCCESS"
    spin_until(executor, lambda: bool(instructions), 1.0)
    assert not instructions, "episode 0 started while the policy was inactive"
    assert policy.trigger_activate().name == "SUCCESS"
    # episode 0 builds the simulator and its renderer first: 6 s measured beside two busy processes
    assert spin_until(executor, lambda: bool(instructions), 30.0), "episode 0 never started after activation"
