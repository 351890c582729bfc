"""The policy, the controller and training on a CUDA GPU: the same behaviour as on the CPU.

CI has no GPU, so these are skipped there; they run wherever torch sees CUDA (`bash bench/gpu_check.sh`;
docs/RESULTS.md, "The policy on a GPU": all 7 passed on an H200 in the second lease). On the
GPU, cuDNN convolutions use TF32 by default, so actions are compared with a tolerance, not bit for bit.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deer_vla.core import Observation

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")

SHIPPED = Path(__file__).resolve().parents[1] / "deer_vla" / "assets" / "default_checkpoint"


def _observations(cameras: tuple[str, ...], proprio_dim: int, n: int, seed: int = 0) -> list[Observation]:
    rng = np.random.default_rng(seed)
    texts = ["open the drawer", "press the button", "close the window"]
    return [Observation(images={c: rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for c in cameras},
                        instruction=texts[i % len(texts)], proprio=rng.uniform(-1, 1, proprio_dim))
            for i in range(n)]


def _every_tensor_on(model: torch.nn.Module, device_type: str) -> bool:
    return all(t.device.type == device_type for t in [*model.parameters(), *model.buffers()])


def test_the_shipped_checkpoint_gives_the_cpu_actions_at_every_exit_on_the_gpu() -> None:
    from deer_vla.model.runner import PolicyRunner

    cpu = PolicyRunner.from_checkpoint(SHIPPED, device="cpu")
    gpu = PolicyRunner.from_checkpoint(SHIPPED, device="cuda")
    assert _every_tensor_on(gpu.model, "cuda")
    n = cpu.num_exits
    worst, spread = 0.0, 0.0
    for t, obs in enumerate(_observations(cpu.cameras, cpu.model.config.proprio_dim, 12)):
        cpu.begin_step(obs)
        gpu.begin_step(obs)
        a_cpu = np.stack([cpu.run_next_exit() for _ in range(n)])
        a_gpu = np.stack([gpu.run_next_exit() for _ in range(n)])
        worst = max(worst, float(np.abs(a_cpu - a_gpu).max()))
        spread = max(spread, float(np.abs(a_cpu - a_cpu[-1]).max()))
        k = 1 + (5 * t) % n  # commit varying exits: the head's history must follow on both devices alike
        np.testing.assert_allclose(cpu.commit(k), gpu.commit(k), atol=5e-3)
    assert worst < 5e-3, worst
    assert spread > 0.05  # the exits really differ, so agreeing exit by exit means something


def test_weights_are_read_straight_onto_the_gpu_once() -> None:
    from deer_vla.model.checkpoint import load_checkpoint

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    model, _ = load_checkpoint(SHIPPED, device="cuda")
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert _every_tensor_on(model, "cuda")
    peak = torch.cuda.max_memory_allocated() - before
    assert peak < 1.1 * weights + 8 * 2**20, (peak, weights)  # one copy, no second one while loading
    del model
    partial, _ = load_checkpoint(SHIPPED, max_exit=2, device="cuda")
    assert _every_tensor_on(partial, "cuda") and partial.num_exits == 2


def test_the_dynamic_controller_runs_on_the_gpu_with_a_profile_measured_there() -> None:
    from deer_vla.control import ExitController
    from deer_vla.control.thresholds import Thresholds
    from deer_vla.model.runner import PolicyRunner

    runner = PolicyRunner.from_checkpoint(SHIPPED, device="cuda")
    profile = runner.cost_profile  # the shipped profile is the CPU's: measured again on this device
    assert profile.device == "cuda" and profile.num_exits == runner.num_exits
    thresholds = Thresholds.load(SHIPPED / "thresholds.json")
    controller = ExitController(runner, profile, thresholds)
    exits = []
    for obs in _observations(runner.cameras, runner.model.config.proprio_dim, 30, seed=1):
        action, record = controller.step(obs)
        assert action.shape == (runner.action_spec.dim,) and np.all(np.isfinite(action))
        exits.append(record.exit_used)
    assert all(1 <= k <= runner.num_exits for k in exits)


def test_training_on_the_gpu_with_bf16_autocast_writes_a_checkpoint_the_cpu_loads(tmp_path: Path) -> None:
    from deer_vla.model.checkpoint import load_checkpoint
    from deer_vla.model.presets import preset_config
    from deer_vla.model.runner import PolicyRunner
    from deer_vla.train.config import load_config
    from deer_vla.train.synthetic import write_tiny_dataset
    from deer_vla.train.trainer import Trainer

    cfg = preset_config("tiny")
    action = cfg.action if isinstance(cfg.action, dict) else cfg.action.to_dict()
    data = write_tiny_dataset(tmp_path / "demos", tuple(cfg.cameras), int(cfg.image_size), int(cfg.proprio_dim),
                              action)
    overrides = {"model_preset": "tiny", "dataset": data, "output_dir": tmp_path / "run", "window": 4,
                 "batch_size": 4, "joint.steps": 20, "joint.warmup_steps": 1, "refine.steps": 5,
                 "checkpoint_every": 10, "device": "cuda", "amp": "true", "log_every": 1}
    trainer = Trainer(load_config(None, [f"{k}={v}" for k, v in overrides.items()]), show_progress=False)
    assert trainer.device.type == "cuda" and _every_tensor_on(trainer.model, "cuda")
    history = trainer.train()
    losses = [row["loss"] for row in history if row["stage"] == "joint"]
    assert all(np.isfinite(losses)) and np.mean(losses[-5:]) < np.mean(losses[:5])
    final = tmp_path / "run"  # the finished run's checkpoint is the output folder itself
    model, _ = load_checkpoint(final, device="cpu")
    assert _every_tensor_on(model, "cpu")
    cpu, gpu = PolicyRunner.from_checkpoint(final, device="cpu"), PolicyRunner.from_checkpoint(final, device="cuda")
    for obs in _observations(cpu.cameras, cpu.model.config.proprio_dim, 3, seed=2):
        obs = Observation(images={c: im[:32, :32] for c, im in obs.images.items()}, instruction=obs.instruction,
                          proprio=obs.proprio)
        cpu.begin_step(obs)
        gpu.begin_step(obs)
        for _ in range(cpu.num_exits):
            np.testing.assert_allclose(cpu.run_next_exit(), gpu.run_next_exit(), atol=5e-3)
        cpu.commit(cpu.num_exits)
        gpu.commit(gpu.num_exits)


def test_a_gpu_this_machine_lacks_is_named() -> None:
    from deer_vla.model.device import check_device

    count = torch.cuda.device_count()
    assert check_device("cuda:0") == "cuda:0" and check_device("cuda") == "cuda"
    with pytest.raises(ValueError, match=rf"has {count} GPU"):
        check_device(f"cuda:{count}")


def test_training_takes_cuda_auto_and_an_index_and_names_a_missing_gpu() -> None:
    from deer_vla.core.config_io import ConfigError
    from deer_vla.train.config import TrainConfig
    from deer_vla.train.trainer import DistInfo, resolve_device

    single = DistInfo(rank=0, world=1, local_rank=0)
    for name in ("auto", "cuda", "cuda:0"):  # torch.cuda.set_device refuses "cuda" without an index
        assert resolve_device(TrainConfig(dataset="d", device=name), single) == torch.device("cuda:0")
    with pytest.raises(ConfigError, match=r"has \d+ GPU"):
        resolve_device(TrainConfig(dataset="d", device=f"cuda:{torch.cuda.device_count()}"), single)


def test_profile_exit_gates_and_calibration_run_on_the_gpu_and_their_thresholds_run_there(tmp_path: Path) -> None:
    """The commands that prepare a checkpoint for a robot, each with --device cuda, in the order a user runs
    them; then the learned criterion's thresholds drive the controller on the GPU."""
    import json

    from fixtures import build_tiny_checkpoint

    from deer_vla.commands.calibrate import cli_main as calibrate_main
    from deer_vla.control import ExitController
    from deer_vla.control.thresholds import Thresholds
    from deer_vla.model.checkpoint_dir import CheckpointDir
    from deer_vla.model.profiling import cli_main as profile_main
    from deer_vla.model.runner import PolicyRunner
    from deer_vla.train.gate import cli_main as gate_main
    from deer_vla.train.synthetic import write_tiny_dataset

    texts = ["drawer open now", "drawer close now", "window open now", "window close now"]
    ckpt = build_tiny_checkpoint(tmp_path / "ckpt", texts=texts, eta=None)
    cfg = CheckpointDir(ckpt).read_config()
    data = write_tiny_dataset(tmp_path / "demos", tuple(cfg.cameras), int(cfg.image_size), int(cfg.proprio_dim),
                              cfg.action_spec.to_dict(),
                              tasks=("drawer-open", "drawer-close", "window-open", "window-close"), length=10)
    assert profile_main(["--checkpoint", str(ckpt), "--device", "cuda", "--iters", "3",
                         "--json", str(tmp_path / "profile.json")]) == 0
    assert json.loads((tmp_path / "profile.json").read_text())["device"] == "cuda"
    assert gate_main([str(ckpt), "--data", str(data), "--device", "cuda", "--epochs", "3",
                      "--val-fraction", "0.25"]) == 0
    assert calibrate_main(["--checkpoint", str(ckpt), "--dataset", str(data), "--episodes", "4", "--device", "cuda",
                           "--criterion", "learned", "--average-budget-fraction", "0.5",
                           "--out", str(tmp_path / "cal")]) == 0
    thresholds = Thresholds.load(CheckpointDir(tmp_path / "cal").thresholds_path)
    assert thresholds.criterion.kind == "learned"
    runner = PolicyRunner.from_checkpoint(ckpt, device="cuda")
    assert runner.has_exit_gates
    controller = ExitController(runner, runner.cost_profile_for("learned"), thresholds)
    exits = []
    for obs in _observations(runner.cameras, cfg.proprio_dim, 20, seed=3):
        obs = Observation(images={c: im[:32, :32] for c, im in obs.images.items()}, instruction=texts[len(exits) % 4],
                          proprio=obs.proprio)
        action, record = controller.step(obs)
        assert np.all(np.isfinite(action))
        exits.append(record.exit_used)
    assert all(1 <= k <= runner.num_exits for k in exits)
