"""Sim node (Meta-World) in lock-step with a policy: episodes, results, and the whole sim graph in one process."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros
ROOT = Path(__file__).resolve().parents[1]


def test_sim_node_steps_on_actions_and_reports_episodes(executor, spin_until):
    import rclpy
    from rclpy.parameter import Parameter
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import Bool, Float32MultiArray, String

    from deer_vla.data.image_msg import image_msg_to_rgb
    from deer_vla.ros.policy_node import INSTRUCTION_QOS
    from deer_vla.ros.sim_node import SimNode

    sim = SimNode(parameter_overrides=[Parameter("episodes", value=2), Parameter("max_steps", value=4),
                                       Parameter("rate_hz", value=100.0), Parameter("image_size", value=32)])
    arm = rclpy.create_node("zero_arm")  # stands in for the policy: answers every image pair with a zero action
    executor.add_node(sim)
    executor.add_node(arm)
    images, instructions, successes, results = [], [], [], []
    act = arm.create_publisher(Float32MultiArray, "action", 10)

    def on_image(msg: Image) -> None:
        images.append(image_msg_to_rgb(msg))
        act.publish(Float32MultiArray(data=[0.0] * 7))

    arm.create_subscription(Image, "camera/static/image_raw", on_image, qos_profile_sensor_data)
    arm.create_subscription(String, "instruction", instructions.append, INSTRUCTION_QOS)
    arm.create_subscription(Bool, "episode_success", successes.append, 10)
    arm.create_subscription(String, "episode_result", results.append, 10)
    assert spin_until(executor, lambda: sim.finished and len(results) == 2, timeout=60.0)
    assert [r.steps for r in sim.results] == [4, 4] or any(r.success for r in sim.results)
    assert [json.loads(r.data)["episode"] for r in results] == [0, 1]
    assert len(successes) == 2 and len(instructions) >= 1 and instructions[0].data.strip()
    assert images[0].shape == (32, 32, 3)
    assert sim.results[1].seed == sim.results[0].seed + 1
    assert all(r.shared_topics == [] for r in sim.results)  # one policy: nothing shared
    with pytest.raises(KeyError, match="known tasks"):
        SimNode("bad_sim", parameter_overrides=[Parameter("tasks", value=["fly-to-moon"])])


def test_sim_graph_in_one_process(executor, tiny_checkpoint, tmp_path):
    """sim + policy (real tiny checkpoint) + monitor from config/graph.yaml through the bringup."""
    from deer_vla.ros.bringup import Bringup
    from deer_vla.ros.graph import load_graph

    overrides = {
        "policy": {"checkpoint_dir": str(tiny_checkpoint)},
        "sim": {"episodes": 2, "max_steps": 5, "rate_hz": 100.0, "image_size": 32},
        "monitor": {"log_dir": str(tmp_path), "run_name": "sim"},
    }
    bringup = Bringup(load_graph("sim", overrides=overrides), executor=executor).start()
    try:
        sim, policy, monitor = bringup.nodes["sim"], bringup.nodes["policy"], bringup.nodes["monitor"]
        assert bringup.spin_until(lambda: sim.finished, timeout_s=90.0), "sim did not finish its episodes"
        bringup.spin_until(lambda: monitor.stats.count >= policy.stats.steps, 2.0)
        applied = sum(r.steps for r in sim.results)
        assert len(sim.results) == 2 and applied >= 2
        assert policy.stats.actions_published >= applied
        assert monitor.stats.count == policy.stats.steps
        assert {r.episode for r in monitor.records} == {0, 1}  # each new instruction started a new episode
    finally:
        bringup.stop()
    assert (tmp_path / "sim" / "summary.json").is_file()


def test_a_stalled_monitor_disk_does_not_hold_up_the_policy_in_one_process(executor, tiny_checkpoint, tmp_path,
                                                                          monkeypatch):
    """One executor spun every node of the bringup: a monitor write stalled on its disk (1.5 s per record in the
    audit) stopped the policy's steps, its stale-action zero twists and ~/halt for as long. The monitor spins on
    its own thread now: the policy goes on stepping while the write hangs."""
    import threading

    from deer_vla.ros.bringup import Bringup
    from deer_vla.ros.graph import load_graph
    from deer_vla.ros.monitor_node import MonitorNode

    entered, release = threading.Event(), threading.Event()
    steps_at_stall: list[int] = []
    nodes: dict = {}
    write = MonitorNode._write_logs

    def stalled_write(self, record) -> None:
        if not entered.is_set():
            steps_at_stall.append(nodes["policy"].stats.steps)
            entered.set()
            release.wait(10.0)
        write(self, record)

    monkeypatch.setattr(MonitorNode, "_write_logs", stalled_write)
    overrides = {
        "policy": {"checkpoint_dir": str(tiny_checkpoint)},
        "sim": {"episodes": 3, "max_steps": 10, "rate_hz": 100.0, "image_size": 32},
        "monitor": {"log_dir": str(tmp_path), "run_name": "sim", "write_plot": False},
    }
    bringup = Bringup(load_graph("sim", overrides=overrides), executor=executor)
    nodes.update(policy=None)
    try:
        bringup.start()
        nodes.update(bringup.nodes)
        stepped = bringup.spin_until(lambda: entered.is_set() and nodes["policy"].stats.steps >= steps_at_stall[0] + 3,
                                     timeout_s=5.0)
        during_stall = not release.is_set()
        release.set()
        assert stepped and during_stall, "the policy did not step while the monitor's write hung"
    finally:
        release.set()
        bringup.stop()


@pytest.mark.slow
def test_demo_main_job_end_to_end(tiny_checkpoint, tmp_path):
    """`deer-vla demo` in a fresh process: episodes run, the report names the log, MCAP and plot."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-m", "deer_vla.cli", "demo", "--checkpoint", str(tiny_checkpoint), "--episodes", "2",
         "--max-steps", "5", "--output-dir", str(tmp_path), "--timeout", "120"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "success rate" in out and "average exit" in out and "saved" in out
    summary = json.loads(next(tmp_path.glob("demo_*/demo_summary.json")).read_text())
    assert summary["episodes"] == 2 and summary["steps"] >= 2
    for key in ("log", "mcap", "plot", "policy_io_mcap"):
        assert Path(summary[key]).is_file(), key
    # the figures agree with the episodes and the step log they summarise (a mutation audit inverted each one and
    # this test still passed)
    assert summary["success_rate"] == sum(r["success"] for r in summary["results"]) / 2
    steps = [json.loads(line) for line in Path(summary["log"]).read_text().splitlines()]
    assert len(steps) == summary["steps"]
    assert summary["mean_exit"] == pytest.approx(sum(r["exit_used"] for r in steps) / len(steps))
    assert summary["mean_llm_gflops"] == pytest.approx(sum(r["llm_gflops"] for r in steps) / len(steps))
    assert summary["compute_saved"] == pytest.approx(1 - summary["mean_llm_gflops"] / summary["full_model_llm_gflops"])
    assert f"-> {100 * summary['compute_saved'] + 0.0:.1f}% saved" in out
    assert summary["checkpoint"] == str(tiny_checkpoint.resolve())
    assert summary["shared_topics"] == [] and "WARNING" not in out  # its own ROS domain (conftest): alone
    # the replay command it prints reproduces the run: same checkpoint (not the shipped default), same exits
    replay = next(line for line in out.splitlines() if line.startswith("policy I/O")).split("  (", 1)[1].rstrip(")")
    assert replay.startswith("deer-vla replay ") and replay == summary["replay"]
    replayed = subprocess.run([sys.executable, "-m", "deer_vla.cli", *shlex.split(replay)[1:]], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
    assert replayed.returncode == 0, replayed.stderr[-2000:]
    assert "same exit as recorded  100.0% of steps" in replayed.stdout
    # its folder too: it holds the monitor's steps.mcap beside the recording (replay refused such a folder)
    folder = [str(Path(a).parent) if a.endswith(".mcap") else a for a in shlex.split(replay)[1:]]
    assert folder != shlex.split(replay)[1:]
    replayed = subprocess.run([sys.executable, "-m", "deer_vla.cli", *folder], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
    assert replayed.returncode == 0 and "same exit as recorded  100.0% of steps" in replayed.stdout, replayed.stderr
    missing = subprocess.run([sys.executable, "-m", "deer_vla.cli", "demo", "--checkpoint", str(tmp_path / "none")],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "no policy checkpoint" in missing.stderr
    assert "a shipped name: default, mt50" in missing.stderr and "pass --checkpoint" not in missing.stderr


def test_sim_episodes_name_the_topics_a_second_policy_or_simulator_shares(executor, spin_until):
    """Two demos in one ROS domain: both policies' actions step each simulator and each policy reads both
    simulators' images, silently. The sim names the shared topics in every episode's result."""
    import rclpy
    from rclpy.parameter import Parameter
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import Float32MultiArray, String

    from deer_vla.ros.policy_node import INSTRUCTION_QOS
    from deer_vla.ros.sim_node import SimNode

    sim = SimNode(parameter_overrides=[Parameter("episodes", value=1), Parameter("max_steps", value=3),
                                       Parameter("rate_hz", value=100.0), Parameter("image_size", value=32)])
    executor.add_node(sim)
    assert sim.shared_topics() == {}
    arms = []
    for name in ("arm_a", "arm_b"):  # two "policies", each answering every image with an action
        arm = rclpy.create_node(name)
        pub = arm.create_publisher(Float32MultiArray, "action", 10)
        arm.create_subscription(Image, "camera/static/image_raw",
                                lambda _msg, pub=pub: pub.publish(Float32MultiArray(data=[0.0] * 7)),
                                qos_profile_sensor_data)
        executor.add_node(arm)
        arms.append(arm)
    other_sim = arms[1].create_publisher(String, "instruction", INSTRUCTION_QOS)  # and a second instruction source
    assert spin_until(executor, lambda: sim.shared_topics() == {"action": 2, "instruction": 2}, timeout=10.0)
    results: list[String] = []
    arms[0].create_subscription(String, "episode_result", results.append, 10)
    assert spin_until(executor, lambda: sim.finished and results, timeout=60.0)
    assert sim.results[0].shared_topics == ["action", "instruction"]
    assert json.loads(results[0].data)["shared_topics"] == ["action", "instruction"]
    arms[1].destroy_publisher(other_sim)


def test_a_remapped_sim_counts_publishers_on_the_topics_it_uses(executor, spin_until):
    """count_publishers applies no remap: with its step_record and action topics remapped, the sim counted the old
    names, stopped pairing actions with step records (a late answer then shifts the rest of the episode by one
    step) and missed a second policy on the remapped action topic."""
    import rclpy
    from rclpy.qos import QoSProfile
    from std_msgs.msg import Float32MultiArray, String

    from deer_vla.ros.sim_node import SimNode

    sim = SimNode(namespace="robot1", cli_args=["--ros-args", "-p", "episodes:=1", "-p", "image_size:=32",
                                                "-p", "record_topic:=step_record",
                                                "-r", "step_record:=/robot1/policy/step_record",
                                                "-r", "action:=/robot1/policy/action"])
    executor.add_node(sim)
    policies = [rclpy.create_node(f"policy_{i}", namespace="robot1") for i in range(2)]
    records = policies[0].create_publisher(String, "/robot1/policy/step_record", QoSProfile(depth=100))
    for policy in policies:
        policy.create_publisher(Float32MultiArray, "/robot1/policy/action", 10)
        executor.add_node(policy)
    assert spin_until(executor, lambda: sim.count_publishers("/robot1/policy/action") == 2
                      and sim.count_publishers("/robot1/policy/step_record") == 1, timeout=10.0)
    sim._start_episode()
    assert sim._pairing, "the policy's step records on the remapped topic were not seen"
    assert sim.shared_topics() == {"action": 2}
    policies[0].destroy_publisher(records)
    for policy in policies:
        executor.remove_node(policy)
        policy.destroy_node()


def test_sim_node_releases_the_previous_tasks_simulator(ros_context, monkeypatch):
    """Memory: cycling tasks must not keep one MuJoCo model + renderer per task alive."""
    from rclpy.parameter import Parameter

    import deer_vla.sim.metaworld_env as mw
    from deer_vla.ros.sim_node import SimNode
    from deer_vla.sim.tasks import get_task

    made, closed = [], []

    class FakeAdapter:
        def __init__(self, task, **kwargs):
            self.task = task
            made.append(self)

        def close(self):
            closed.append(self)

    monkeypatch.setattr(mw, "MetaWorldAdapter", FakeAdapter)
    sim = SimNode(parameter_overrides=[Parameter("episodes", value=1)])
    try:
        from rclpy.clock import ClockType

        # (the steady clock: on the node clock a system clock stepped back stopped the simulator for the step)
        assert sim._timer.clock.clock_type == ClockType.STEADY_TIME
        a = sim._adapter_for(get_task("drawer-open"))
        assert sim._adapter_for(get_task("drawer-open")) is a  # same task: reused, not rebuilt
        b = sim._adapter_for(get_task("window-close"))
        assert closed == [a] and len(sim._adapters) == 1 and b is not a
        sim._adapter_for(get_task("drawer-open"))
        assert closed == [a, b] and len(made) == 3
    finally:
        sim.destroy_node()


def test_sim_node_ignores_actions_it_cannot_apply(ros_context):
    """A wrong-length action used to reach the adapter's step() in the timer callback and end the node."""
    import numpy as np
    from rclpy.parameter import Parameter
    from std_msgs.msg import Float32MultiArray

    from deer_vla.ros.sim_node import SimNode

    sim = SimNode(parameter_overrides=[Parameter("episodes", value=1), Parameter("max_steps", value=5),
                                       Parameter("image_size", value=16)])
    try:
        while sim._phase != "running":
            sim._tick()
        for bad in ([0.0] * 3, [0.0] * 6, [0.0] * 100, [np.nan] * 7, [np.inf] * 4, []):
            sim._on_action(Float32MultiArray(data=bad))
            sim._tick()  # must not raise
            assert sim._action is None and sim._steps == 0
        sim._on_action(Float32MultiArray(data=[0.0] * 7))
        sim._tick()
        assert sim._steps == 1
        sim._on_action(Float32MultiArray(data=[0.0] * 4))  # the task's own 4-D layout is fine too
        sim._tick()
        assert sim._steps == 2
    finally:
        sim.destroy_node()


@pytest.mark.parametrize(("name", "value", "match"), [
    ("rate_hz", float("inf"), r"'rate_hz' must be in \(0, 1000\] Hz, got inf"),
    ("rate_hz", float("nan"), r"'rate_hz' must be in"),
    ("rate_hz", 1e9, r"'rate_hz' must be in"),
    ("image_size", 100_000, r"'image_size' must be in 16\.\.480"),
    # the simulator's own limits: each passed here and ended the sim at its first episode, the policy loaded
    ("image_size", 8, r"'image_size' must be in 16\.\.480"),
    ("image_size", 481, r"'image_size' must be in 16\.\.480 \(the renderer's offscreen buffer\)"),
    ("max_steps", 501, r"'max_steps' must be in 0\.\.500"),
    ("cameras", ["static", "static"], r"'cameras' repeats a camera"),
    ("seed", -1, r"'seed' must be >= 0"),
    ("action_timeout_s", float("inf"), r"'action_timeout_s' must be a finite number > 0"),
])
def test_sim_refuses_a_busy_timer_a_huge_renderer_and_an_endless_wait(ros_context, name, value, match):
    """inf or 1e9 Hz was a 0 ns timer (a core spinning), 100 000 px a renderer that takes the memory first."""
    from rclpy.parameter import Parameter

    from deer_vla.ros.sim_node import SimNode

    with pytest.raises(ValueError, match=match):
        SimNode(parameter_overrides=[Parameter(name, value=value)])


def test_a_simulator_that_cannot_render_ends_the_graph_with_one_line(executor, spin_until, monkeypatch):
    """MUJOCO_GL=glfw on a machine without a display: building the renderer raised inside the sim's timer, and the
    exception ended the executor's spin with a traceback (the demo wrote no summary). The sim says why, in one
    line, and finishes; the demo reports it."""
    from rclpy.parameter import Parameter

    from deer_vla.ros.sim_node import SimNode
    from deer_vla.sim import metaworld_env

    def no_display(*args, **kwargs):
        raise RuntimeError("an OpenGL platform library has not been loaded into this process")

    monkeypatch.setattr(metaworld_env, "MetaWorldAdapter", no_display)
    monkeypatch.setenv("MUJOCO_GL", "glfw")
    sim = SimNode(parameter_overrides=[Parameter("episodes", value=2), Parameter("rate_hz", value=100.0)])
    executor.add_node(sim)
    try:
        assert spin_until(executor, lambda: sim.finished, timeout=20.0)
        assert sim.results == [] and sim.error is not None
        assert "OpenGL platform" in sim.error and "MUJOCO_GL=glfw: a headless machine needs egl" in sim.error
        executor.spin_once(timeout_sec=0.05)  # the timer goes on firing harmlessly
    finally:
        executor.remove_node(sim)
        sim.destroy_node()


def test_demo_runs_started_in_one_second_get_their_own_folders(tmp_path):
    from deer_vla.ros.bringup import _new_run_dir

    first, second = _new_run_dir(tmp_path, "demo_x"), _new_run_dir(tmp_path, "demo_x")
    assert first == tmp_path / "demo_x" and second == tmp_path / "demo_x.1" and second.is_dir()


@pytest.mark.slow
def test_a_demo_stopped_by_ctrl_c_says_interrupted_and_keeps_its_summary(tiny_checkpoint, tmp_path):
    """Ctrl-C (or SIGTERM) on the demo was reported as a timeout with exit code 1."""
    import signal
    import time

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    log = tmp_path / "demo.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "deer_vla.cli", "demo", "--checkpoint", str(tiny_checkpoint), "--episodes", "50",
             "--max-steps", "5", "--output-dir", str(tmp_path / "logs"), "--timeout", "240"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while "episode 1" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, log.read_text()[-3000:]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 130, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "(interrupted)" in text and "Traceback" not in text, text[-3000:]
    summary = json.loads(next((tmp_path / "logs").glob("demo_*/demo_summary.json")).read_text())
    assert summary["interrupted"] is True and summary["finished"] is False and summary["steps"] >= 1


def test_sim_tasks_take_groups_and_start_on_held_out_seeds(ros_context):
    """Groups ('mt50-hard') were refused by a message that listed them as accepted; the default seed was 0, a
    demonstration seed (config/sim.yaml held it out, a node started without it did not)."""
    from rclpy.parameter import Parameter

    from deer_vla.ros.sim_node import SimNode
    from deer_vla.sim.tasks import EVAL_SEED_OFFSET, TASK_GROUPS

    sim = SimNode(parameter_overrides=[Parameter("tasks", value=["mt50-hard", "reach", "reach"])])
    try:
        assert [t.name for t in sim.tasks] == [*TASK_GROUPS["mt50-hard"], "reach", "reach"]
        assert sim.p["seed"] == EVAL_SEED_OFFSET
    finally:
        sim.destroy_node()


def test_the_sim_executable_fails_with_status_1_when_its_simulator_fails_or_a_name_is_refused(tmp_path):
    """A sim whose simulator failed printed its error and exited 0 (launch and CI saw success); a topic name ROS
    refuses ended in a traceback."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    run = [sys.executable, "-c", "import sys; from deer_vla.ros.sim_node import main; sys.exit(main())",
           "--ros-args", "-p", "episodes:=1"]
    proc = subprocess.run([*run, "-p", "cameras:=[top]"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert '"error": "ValueError: unknown camera' in proc.stdout, proc.stdout[-2000:]
    for param in ("image_topic_prefix:=cam era", "policy_node:=my-policy"):
        proc = subprocess.run([*run, "-p", param], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=180)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert proc.stderr.startswith("sim_node: "), proc.stderr[-2000:]


def test_the_sim_executable_stopped_before_its_episodes_end_exits_130_and_says_unfinished(tmp_path,
                                                                                           spare_ros_domain):
    """Stopped by SIGINT (Ctrl-C, launch shutting the graph down) before its episodes ended, the sim printed
    `"episodes": []` and exited 0: a CI or launch caller could not tell an aborted run from a finished one."""
    import signal
    import time

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), ROS_DOMAIN_ID=str(spare_ros_domain))
    run = [sys.executable, "-c", "import sys; from deer_vla.ros.sim_node import main; sys.exit(main())",
           "--ros-args", "-p", "episodes:=3"]
    proc = subprocess.Popen(run, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(8.0)  # started, waiting for a policy that never answers
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert '"finished": false' in out and '"error": null' in out, out[-2000:]


def test_an_answer_to_an_earlier_observation_is_dropped_not_applied_to_the_next_state(executor, spin_until):
    """A re-sent observation answered twice (the copy reached the policy after its step ended) put every later
    action of the episode one observation late: the sim took the first action after each send. With the
    policy's step records it applies an action only if its record's stamp is the observation's."""
    import rclpy
    from rclpy.parameter import Parameter
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import Float32MultiArray, String

    from deer_vla.core import StepRecord
    from deer_vla.ros.sim_node import SimNode

    sim = SimNode(parameter_overrides=[Parameter("episodes", value=1), Parameter("max_steps", value=6),
                                       Parameter("rate_hz", value=100.0), Parameter("image_size", value=16),
                                       Parameter("record_topic", value="step_record")])
    arm = rclpy.create_node("twice_arm")  # a policy that answers its first observation twice
    executor.add_node(arm)
    act = arm.create_publisher(Float32MultiArray, "action", 10)
    rec = arm.create_publisher(String, "step_record", 100)
    answered: list[int] = []

    def answer(stamp_ns: int, actuated: bool = True) -> None:
        if actuated:
            act.publish(Float32MultiArray(data=[0.0] * 7))
        rec.publish(String(data=StepRecord(step=len(answered), episode=0, exit_used=1, max_exit=1,
                                           stop_reason="fixed", llm_gflops=1.0, total_gflops=1.0,
                                           stamp_ns=stamp_ns, actuated=actuated).to_json()))
        answered.append(stamp_ns)

    def on_image(msg: Image) -> None:
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        if not answered:  # the first one: a gated step (no action), then the answer, then a second answer
            answer(stamp, actuated=False)
            answer(stamp)
            answer(stamp)
        else:
            answer(stamp)

    arm.create_subscription(Image, "camera/static/image_raw", on_image, qos_profile_sensor_data)
    executor.add_node(sim)  # after the arm: its record publisher is there when the episode starts
    try:
        assert spin_until(executor, lambda: sim.finished, timeout=60.0)
        (result,) = sim.results
        assert result.steps == 6 or result.success
        assert result.stale_answers == 1  # the second answer to the first observation, never applied
        assert result.resends == 0
    finally:
        executor.remove_node(arm)
        arm.destroy_node()
        executor.remove_node(sim)
        sim.destroy_node()
