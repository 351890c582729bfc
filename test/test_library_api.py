"""deer_vla as a library, from an integrator's own control loop (no ROS node): what a step accepts and what it
does with it. Each case was a silently different action, or an error deep inside numpy or torch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from deer_vla.control.controller import ExitController
from deer_vla.core import Observation, ProprioError
from deer_vla.model.presets import preset_config, save_random_checkpoint
from deer_vla.model.runner import PolicyRunner

torch.set_num_threads(1)
INSTRUCTION = "open the drawer"


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> PolicyRunner:
    out = tmp_path_factory.mktemp("lib") / "ckpt"
    head = {**preset_config("tiny").head.model_dump(), "history": 4}  # a history, as the shipped heads have
    save_random_checkpoint(out, instructions=(INSTRUCTION, "close the window"), proprio_dim=2, head=head,
                           proprio={"names": ["joint1", "joint2"], "units": ["rad", "rad"], "low": [-3.2, -3.2],
                                    "high": [3.2, 3.2]})
    return PolicyRunner.from_checkpoint(out)


def _controller(runner: PolicyRunner) -> ExitController:
    return ExitController(runner, runner.cost_profile, None, fixed_exit=runner.num_exits)


def _images(runner: PolicyRunner) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {c: rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for c in runner.cameras}


def test_a_proprio_buffer_refilled_each_step_gives_the_actions_of_fresh_arrays(runner: PolicyRunner) -> None:
    """The runner kept the caller's array in its history without a copy: a loop refilling one buffer rewrote every
    past step's proprioception, and the action changed (the audit's gripper flipped)."""
    controller, images = _controller(runner), _images(runner)
    readings = [np.array([0.1, -0.2]) + 0.3 * i for i in range(8)]

    def last_action(reuse: bool) -> np.ndarray:
        controller.reset_episode()
        buffer = np.zeros(2, np.float32)
        for reading in readings:
            if reuse:
                buffer[:] = reading
            action, _ = controller.step(Observation(images, INSTRUCTION, buffer if reuse else reading.copy()))
        return action

    np.testing.assert_array_equal(last_action(reuse=True), last_action(reuse=False))


def test_the_step_refuses_what_the_ros_node_refuses_naming_it(runner: PolicyRunner) -> None:
    """Degrees for a radian joint (outside the checkpoint's limits) ran the model; a (2, 2) array was flattened;
    1e300 passed the finite check as float64 and became inf in float32; bytes, None or a list of images ended in
    a numpy TypeError or "empty instruction"."""
    controller, images = _controller(runner), _images(runner)
    with pytest.raises(ProprioError, match="outside the limits: joint1=90.*wrong units or a different robot"):
        controller.step(Observation(images, INSTRUCTION, np.array([90.0, -45.0])))
    with pytest.raises(ValueError, match=r"flat array of 2 values, got shape \(1, 2\)"):
        controller.step(Observation(images, INSTRUCTION, np.array([[0.1, 0.2]])))
    with pytest.raises(ValueError, match="NaN or inf"):
        controller.step(Observation(images, INSTRUCTION, np.array([1e300, 0.0])))
    with pytest.raises(ValueError, match="proprioception must be numbers"):
        controller.step(Observation(images, INSTRUCTION, np.array(["a", "b"], dtype=object)))
    for instruction in (b"open the drawer", None):
        with pytest.raises(ValueError, match="instruction must be a str, got"):
            controller.step(Observation(images, instruction, np.zeros(2)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="images must be a mapping of camera name to image, got list"):
        controller.step(Observation(list(images.values()), INSTRUCTION, np.zeros(2)))  # type: ignore[arg-type]
    controller.step(Observation(images, INSTRUCTION, np.array([3.2, -3.2])))  # at the limits: fine


def test_a_new_instruction_starts_a_new_episode_as_in_the_ros_node(runner: PolicyRunner) -> None:
    """Without reset_episode the head's history of the old task steered the new one (an x command changed sign in
    the audit); the ROS node resets on a changed instruction. The same text differently cased or spaced is the
    same instruction to a lower-casing tokenizer, and keeps the episode."""
    controller, images = _controller(runner), _images(runner)
    proprio = np.array([0.1, 0.2])
    controller.reset_episode()
    for _ in range(5):
        controller.step(Observation(images, INSTRUCTION, proprio))
    switched, record = controller.step(Observation(images, "close the window", proprio))
    assert record.episode == 1
    controller.reset_episode()
    fresh, _ = controller.step(Observation(images, "close the window", proprio))
    np.testing.assert_array_equal(switched, fresh)
    episode = controller.step(Observation(images, "  Close the   WINDOW", proprio))[1].episode
    assert episode == controller.step(Observation(images, "close the window", proprio))[1].episode



def test_shipped_names_thresholds_and_budgets_in_the_library_path(caplog) -> None:
    """From an integrator's loop: a shipped name loads as it does on the command line; another checkpoint's
    thresholds are refused as load_stack refuses them; the smallest feasible budget load_stack names is one it
    accepts (it was checked without the exit gates' cost the controller then charged); an average budget the
    thresholds cannot hold without a tracker, or a time budget on another machine's step times, is said."""
    import logging

    from deer_vla.control.budgets import BudgetSpec
    from deer_vla.control.thresholds import Thresholds
    from deer_vla.model.shipped import resolve_checkpoint
    from deer_vla.ros.policy_backend import ConfigurationError, load_stack

    runner = PolicyRunner.from_checkpoint("default")
    own = Thresholds.load(resolve_checkpoint("default") / "thresholds.json")
    other = Thresholds.load(resolve_checkpoint("mt50") / "thresholds.json")
    with pytest.raises(ValueError, match="was solved on other weights"):
        ExitController(runner, runner.cost_profile, other)
    controller = ExitController(runner, runner.cost_profile, own)
    with pytest.raises(ValueError, match="was solved on other weights"):
        controller.set_thresholds(other)
    with caplog.at_level(logging.WARNING, logger="deer_vla.controller"):
        ExitController(runner, runner.cost_profile, own, BudgetSpec(average_gflops=np.float32(0.02), peak_ms=50.0))
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "average budget 0.02 is not held" in said and "unknown machine" in said
    with pytest.raises(ConfigurationError, match="smallest feasible average budget is") as refused:
        load_stack("default", resolve_checkpoint("default") / "thresholds.json", "cpu", {"average_gflops": 1e-4})
    smallest = float(str(refused.value).rsplit(" ", 1)[-1])
    stack = load_stack("default", resolve_checkpoint("default") / "thresholds.json", "cpu",
                       {"average_gflops": smallest})
    assert stack.controller.tracker is not None  # track_average by default, as the node
    assert BudgetSpec(memory_bytes=np.int64(10**9)).memory_bytes == 10**9


def test_a_refused_step_with_another_instruction_leaves_the_episode_as_it_was(runner: PolicyRunner) -> None:
    """The new-instruction reset ran before the step's inputs were checked: one refused observation (too small an
    image) carrying another instruction wiped the running episode's history and moved its counter on."""
    images, proprio = _images(runner), np.array([0.1, 0.2])

    def run(glitch: bool) -> tuple[np.ndarray, int]:
        controller = _controller(runner)
        controller.reset_episode()
        for t in range(5):
            if glitch and t == 3:
                small = {c: image[:4, :4] for c, image in images.items()}
                with pytest.raises(ValueError, match="too small"):
                    controller.step(Observation(small, "close the window", proprio))
            action, record = controller.step(Observation(images, INSTRUCTION, proprio + 0.1 * t))
        return action, record.episode

    (clean, episode), (glitched, glitched_episode) = run(False), run(True)
    np.testing.assert_array_equal(glitched, clean)
    assert glitched_episode == episode == 0


def _resident_bytes(*modules: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for m in modules for t in [*m.parameters(), *m.buffers()])


def test_a_memory_budget_holds_the_exit_gates_and_refuses_a_bfloat16_profile(tmp_path) -> None:
    """The exit gates (all of them, whatever the cap) stayed loaded outside the memory budget: a budget just
    above exit 4's weights kept 4 exits and held more bytes than it allowed. A profile.json written in
    bfloat16 (`deer-vla profile --dtype bfloat16 --json CKPT/profile.json`) was used for the float32 model:
    a 30 MB budget was accepted with all 12 exits (47.8 MB) loaded."""
    import json
    import shutil

    from deer_vla.model.shipped import resolve_checkpoint
    from deer_vla.ros.policy_backend import ConfigurationError, load_stack

    shipped = resolve_checkpoint("default")
    runner = PolicyRunner.from_checkpoint(shipped)
    gates = runner.exit_gate_bytes
    assert gates > 0 and runner.cost_profile.weight_bytes[-1] == _resident_bytes(runner.model) + gates
    exit4 = runner.model_profile.weight_bytes[3]
    stack = load_stack(shipped, shipped / "thresholds.json", "cpu", {"memory_bytes": exit4 + gates - 1})
    assert stack.cap == 3
    assert _resident_bytes(stack.runner.model, stack.runner._gates) <= exit4 + gates - 1
    assert load_stack(shipped, shipped / "thresholds.json", "cpu", {"memory_bytes": exit4 + gates}).cap == 4

    ckpt = tmp_path / "ckpt"
    shutil.copytree(shipped, ckpt)
    (ckpt / "profile.json").chmod(0o644)
    profile = json.loads((ckpt / "profile.json").read_text())
    profile.update(dtype="bfloat16", weight_bytes=[b // 2 for b in profile["weight_bytes"]])
    (ckpt / "profile.json").write_text(json.dumps(profile))
    measured = PolicyRunner.from_checkpoint(ckpt).cost_profile
    assert measured.dtype == "float32" and measured.weight_bytes[-1] == _resident_bytes(runner.model) + gates
    with pytest.raises(ConfigurationError, match="smallest feasible memory budget"):
        load_stack(ckpt, ckpt / "thresholds.json", "cpu", {"memory_bytes": 30_000_000})
