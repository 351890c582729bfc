"""Across processes: the bringup CLI and the policy_node executable, driven over real ROS topics."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures import Driver

pytestmark = pytest.mark.ros
ROOT = Path(__file__).resolve().parents[1]


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen, log: Path) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"process did not stop on SIGINT; log:\n{log.read_text()[-3000:]}")


def test_bringup_cli_across_processes(executor, tiny_checkpoint, tmp_path):
    log = tmp_path / "bringup.log"
    proc = _spawn(["-m", "deer_vla.cli", "bringup", "--graph", "robot",
                   "--set", f"policy.checkpoint_dir={tiny_checkpoint}", "--set", "policy.enabled=true",
                   "--set", f"monitor.log_dir={tmp_path}", "--set", "monitor.run_name=proc"], log)
    try:
        drv = Driver(executor, name="proc_driver")
        drv.instruct()
        ok = drv.drive_until(lambda: len(drv.twists) >= 3 and len(drv.actions) >= 3 or proc.poll() is not None,
                             timeout=90.0)
        assert ok and proc.poll() is None, f"no actions from the bringup process; log:\n{log.read_text()[-3000:]}"
    finally:
        rc = _stop(proc, log)
    assert rc == 0, log.read_text()[-3000:]
    summary = json.loads((tmp_path / "proc" / "summary.json").read_text())
    assert summary["steps"] >= 3  # the monitor saw the steps and wrote its summary on shutdown
    assert "[deer_vla monitor]" in log.read_text()


def test_a_sim_bringup_stopped_before_its_episodes_end_exits_130(executor, tiny_checkpoint, tmp_path):
    """`deer-vla bringup --graph sim` stopped by Ctrl-C during its episodes exited 0: a script could not tell a
    run cut short from a finished one (the demo and the sim node exit 130)."""
    import time

    import rclpy
    from std_msgs.msg import Float32MultiArray

    log = tmp_path / "bringup.log"
    proc = _spawn(["-m", "deer_vla.cli", "bringup", "--graph", "sim", f"checkpoint:={tiny_checkpoint}",
                   "--set", "sim.episodes=50", "--set", "sim.max_steps=50", "--set", "sim.image_size=32",
                   "--set", f"monitor.log_dir={tmp_path}", "--set", "monitor.run_name=sim"], log)
    try:
        node = rclpy.create_node("sim_watcher")
        actions: list[Float32MultiArray] = []
        node.create_subscription(Float32MultiArray, "action", actions.append, 10)
        executor.add_node(node)
        end = time.monotonic() + 90.0
        while not actions and proc.poll() is None and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.1)
        assert actions and proc.poll() is None, f"the sim graph did not step; log:\n{log.read_text()[-3000:]}"
        executor.remove_node(node)
        node.destroy_node()
    finally:
        rc = _stop(proc, log)
    assert rc == 130, log.read_text()[-3000:]
    assert "interrupted before the graph was done" in log.read_text()


def test_a_sim_bringup_cut_short_by_its_duration_exits_1(tiny_checkpoint, tmp_path):
    """`--duration` ending the sim graph after 1 of 50 episodes exited 0, as if the run were done (the demo's
    --timeout exits 1)."""
    log = tmp_path / "bringup.log"
    proc = _spawn(["-m", "deer_vla.cli", "bringup", "--graph", "sim", f"checkpoint:={tiny_checkpoint}",
                   "--set", "sim.episodes=50", "--set", "sim.max_steps=50", "--set", "sim.image_size=32",
                   "--set", f"monitor.log_dir={tmp_path}", "--duration", "2"], log)
    try:
        rc = proc.wait(timeout=120)
    finally:
        _stop(proc, log)
    assert rc == 1, log.read_text()[-3000:]
    assert "--duration 2 s ended the graph before it was done" in log.read_text()


@pytest.mark.slow
def test_policy_node_executable_autostart(executor, tiny_checkpoint, tmp_path):
    log = tmp_path / "policy.log"
    proc = _spawn(["-m", "deer_vla.ros.policy_node", "--ros-args", "-p", f"checkpoint_dir:={tiny_checkpoint}",
                   "-p", "autostart:=true", "-p", "enabled:=true", "-r", "cmd_twist:=servo/delta_twist_cmds"], log)
    try:
        from geometry_msgs.msg import TwistStamped

        drv = Driver(executor, name="exe_driver")
        remapped: list[TwistStamped] = []
        drv.node.create_subscription(TwistStamped, "servo/delta_twist_cmds", remapped.append, 10)
        drv.instruct()
        ok = drv.drive_until(lambda: len(remapped) >= 2 or proc.poll() is not None, timeout=90.0)
        assert ok and remapped, f"no remapped twist from policy_node; log:\n{log.read_text()[-3000:]}"
        assert not drv.twists  # the default topic was remapped away
    finally:
        _stop(proc, log)
