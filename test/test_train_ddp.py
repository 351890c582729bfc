"""Training past one process: `torchrun --nproc_per_node 2` (gloo on CPU) trains exactly like one process
on the same global batch, and a run stopped and resumed from its DDP checkpoint ends where an uninterrupted
one does."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from deer_vla.model.presets import preset_config
from deer_vla.train.config import load_config
from deer_vla.train.synthetic import write_tiny_dataset
from deer_vla.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = preset_config("tiny")
    action = cfg.action if isinstance(cfg.action, dict) else cfg.action.to_dict()
    return write_tiny_dataset(tmp_path_factory.mktemp("demos"), tuple(cfg.cameras), int(cfg.image_size),
                              int(cfg.proprio_dim), action)


def _overrides(data: Path, out: Path, batch_size: int) -> list[str]:
    # 3 joint steps then 2 refine steps: the resumed run crosses the stage switch (a new DDP wrapper)
    base = {
        "model_preset": "tiny", "dataset": str(data), "output_dir": str(out), "window": 4, "batch_size": batch_size,
        "joint.steps": 3, "joint.warmup_steps": 1, "refine.steps": 2, "checkpoint_every": 2, "device": "cpu",
        "num_threads": 1, "log_every": 1, "keep_checkpoints": 5,
    }
    return [f"{k}={v}" for k, v in base.items()]


def _torchrun(data: Path, out: Path, *flags: str) -> None:
    sets = [a for o in _overrides(data, out, batch_size=2) for a in ("--set", o)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "deer_vla.train.trainer", "--no-progress", *flags, *sets]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


def _assert_weights(path: Path, expected: dict[str, torch.Tensor], what: str) -> None:
    saved = load_file(str(path))
    assert expected.keys() <= saved.keys()
    for name, value in expected.items():
        torch.testing.assert_close(saved[name], value, rtol=1e-4, atol=1e-5, msg=f"{name} differs ({what})")


def test_two_processes_train_like_one_with_the_global_batch_and_resume_exactly(dataset: Path, tmp_path: Path) -> None:
    # one process, global batch 4, stopped after step 2 (inside the joint stage) and continued to the end
    single = Trainer(load_config(None, _overrides(dataset, tmp_path / "single", batch_size=4)), show_progress=False)
    single.train(stop_at=2)
    at_stop = {n: p.detach().clone() for n, p in single.model.named_parameters()}
    single.train()
    final = {n: p.detach().clone() for n, p in single.model.named_parameters()}
    # three more steps move the weights by many times the tolerance: the comparisons below can fail
    assert max(float((final[n] - at_stop[n]).abs().max()) for n in final) > 2e-4

    # two processes with batch 2 each: stop after step 2, then resume from that DDP checkpoint
    out = tmp_path / "ddp"
    _torchrun(dataset, out, "--stop-at", "2")
    _assert_weights(out / "checkpoints" / "step_00000002" / "model.safetensors", at_stop, "DDP after 2 steps")
    _torchrun(dataset, out, "--resume")
    _assert_weights(out / "model.safetensors", final, "DDP stopped at 2, resumed to 5")

    # the log holds every step once, with the loss of the global batch (averaged over the two processes)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == [1, 2, 3, 4, 5]
    for row, ref in zip(log, single.history):
        assert row["loss"] == pytest.approx(ref["loss"], rel=1e-4), row["step"]
