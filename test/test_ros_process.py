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
    # a hang-up the test runner ignores (started under nohup) is inherited, and a node keeps it ignored: the child
    # gets the default, as a process started from a terminal has it
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))


def _stop(proc: subprocess.Popen, log: Path, signum: int = signal.SIGINT) -> int:
    if proc.poll() is None:
        proc.send_signal(signum)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"process did not stop on SIGINT; log:\n{log.read_text()[-3000:]}")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP], ids=["SIGINT", "SIGHUP"])
def test_bringup_cli_across_processes(executor, tiny_checkpoint, tmp_path, signum):
    """Stopped by Ctrl-C, or by SIGHUP (a closed terminal or ssh session: it killed the process outright, the last
    nonzero twist standing and no summary), it stops cleanly and exits 0."""
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
        rc = _stop(proc, log, signum)
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


def test_a_node_started_with_exit_with_parent_stops_when_its_launcher_is_killed(executor, tiny_checkpoint, tmp_path):
    """A SIGKILLed `ros2 launch` left the policy node running as an orphan, actuating with nobody to stop it (an
    audit's: 27 more nonzero twists in 2 s). With --exit-with-parent (the launch files pass it) it stops as on
    SIGTERM: a zero twist last, then it exits."""
    import time

    from geometry_msgs.msg import TwistStamped

    node_cmd = [sys.executable, "-m", "deer_vla.ros.policy_node", "--exit-with-parent", "--ros-args",
                "-p", f"checkpoint_dir:={tiny_checkpoint}", "-p", "autostart:=true", "-p", "enabled:=true",
                "-r", "cmd_twist:=orphan/cmd_twist"]
    launcher = ("import subprocess, sys, time; "
                f"child = subprocess.Popen({node_cmd!r}, stdout=sys.stdout, stderr=subprocess.STDOUT); "
                "print('child', child.pid, flush=True); time.sleep(600)")
    log = tmp_path / "launcher.log"
    proc = _spawn(["-c", launcher], log)
    child = None
    try:
        drv = Driver(executor, name="orphan_driver")
        twists: list[TwistStamped] = []
        drv.node.create_subscription(TwistStamped, "orphan/cmd_twist", twists.append, 10)
        drv.instruct()
        ok = drv.drive_until(lambda: len(twists) >= 2 or proc.poll() is not None, timeout=90.0)
        assert ok and twists, f"no twist from the node; log:\n{log.read_text()[-3000:]}"
        child = int(next(line.split()[1] for line in log.read_text().splitlines() if line.startswith("child ")))
        proc.kill()  # the launcher dies without a word to its node
        proc.wait(timeout=10)
        end = time.monotonic() + 20
        while Path(f"/proc/{child}").exists() and time.monotonic() < end:
            drv.drive_until(lambda: False, timeout=0.2)
        assert not Path(f"/proc/{child}").exists() or "State:\tZ" in Path(f"/proc/{child}/status").read_text(), \
            f"the orphaned node still runs; log:\n{log.read_text()[-3000:]}"
        drv.drive_until(lambda: False, timeout=0.5)
        last = twists[-1].twist
        assert (last.linear.x, last.linear.y, last.linear.z) == (0.0, 0.0, 0.0)  # its stop's zero twist
        assert "the process that started it exited: stopping (--exit-with-parent)" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        if child is not None and Path(f"/proc/{child}").exists():
            os.kill(child, signal.SIGKILL)
