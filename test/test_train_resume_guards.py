"""Resume, schedule and window rules of training that no other test pinned down (a mutation audit broke each and
every test passed). Broken, each would pair a window's frames with the proprioception of other steps, show the
windows in one order every epoch, never train the first batch, let a resume change the seed, skip the final model
of a run stopped at its last step, leave the gradients unclipped, run a frozen backbone in training mode in the
refine stage, train the split-exit term on one exit throughout, or keep the last epoch's gates, not the best."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import tiny_demos, tiny_train_overrides
from torch.utils.data import Dataset

from deer_vla.model.policy import MultiExitPolicy
from deer_vla.model.tokenizer import build_word_tokenizer
from deer_vla.train import losses
from deer_vla.train.config import LossWeights, load_config
from deer_vla.train.data import load_episodes
from deer_vla.train.gate import GateData, GateTrainConfig, gate_tensors, split_episodes, train_gates
from deer_vla.train.losses import DeerObjective
from deer_vla.train.trainer import DistInfo, Trainer, _action_dim, batches, epoch_batches, heads_of
from deer_vla.train.windows import WindowDataset, make_collate

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_demos(tmp_path_factory.mktemp("demos"))


def _overrides(data: Path, out: Path, **extra: object) -> list[str]:
    return tiny_train_overrides(data, out, **{"refine.steps": 0, **extra})


# --- windows and batches ------------------------------------------------------------------------


def test_a_window_holds_the_proprio_and_actions_of_the_steps_its_frames_show(dataset: Path, tiny_cfg) -> None:
    """A window's proprioception taken one step early was the state before each frame, not at it: the policy
    trained on a lagged robot state it never gets at run time (every window but an episode's first)."""
    eps = load_episodes(dataset, tuple(tiny_cfg.cameras), int(tiny_cfg.image_size), _action_dim(tiny_cfg),
                        int(tiny_cfg.proprio_dim))
    windows = WindowDataset(eps, window=4, shift_pad=0, seed=0)
    assert all(e.proprio is not None for e in eps)
    assert any(s > 0 for _, s in windows.index)
    for i, (e, s) in enumerate(windows.index):
        item, ep = windows[i], eps[e]
        for cam, frames in ep.images.items():
            assert torch.equal(item["images"][cam], frames[s:s + 4]), (i, cam)
        assert torch.equal(item["proprio"], torch.from_numpy(ep.proprio[s:s + 4])), i
        assert torch.equal(item["actions"], torch.from_numpy(ep.actions[s:s + 4])), i


def test_each_epoch_shows_the_windows_in_its_own_order_and_the_same_one_again_on_resume() -> None:
    """The shuffle was seeded without the epoch: every epoch showed the windows in the same order, in the same
    batches, for the whole run."""
    info = DistInfo()
    first, again, second = (epoch_batches(40, 4, info, seed=3, epoch=e) for e in (0, 0, 1))
    assert first == again  # a resumed run rebuilds the epoch it stopped in
    assert first != second
    for epoch in (first, second):
        assert len(epoch) == 10 and sorted(i for b in epoch for i in b) == list(range(40))


class _Numbered(Dataset):
    """Window i is the number i: a batch says which windows it holds."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i

    def set_epoch(self, epoch: int) -> None:
        pass


def test_global_step_s_trains_batch_s_mod_e_of_epoch_s_div_e_from_a_fresh_start_or_a_resume() -> None:
    """A stream that started one batch into its epoch never trained the first batch of the first epoch (and, from a
    resume, not the batch the uninterrupted run took at that step): each step's batch is fixed by the step alone."""
    cfg = load_config(None, ["batch_size=3", "seed=5", "num_workers=0"])
    data, info = _Numbered(12), DistInfo()
    per_epoch = 4
    expected = [epoch_batches(12, 3, info, 5, epoch) for epoch in range(3)]
    for start in (0, 1, per_epoch - 1, per_epoch, per_epoch + 2):
        stream = batches(data, cfg, info, list, start)
        for step in range(start, 2 * per_epoch + 2):
            assert next(stream) == expected[step // per_epoch][step % per_epoch], (start, step)


# --- resume and the end of a run ----------------------------------------------------------------


def test_a_resume_with_another_seed_is_refused(dataset: Path, tmp_path: Path) -> None:
    """The seed orders the batches and draws the exits: a resume that took another seed silently trained on other
    batches than the run it continued, and the saved config described neither run."""
    out = tmp_path / "run"
    Trainer(load_config(None, _overrides(dataset, out)), show_progress=False).train(stop_at=2)
    with pytest.raises(ValueError, match=r"other settings \(seed: 0 -> 1\)"):
        Trainer(load_config(None, _overrides(dataset, out, seed=1)), resume=True, show_progress=False)


def test_a_run_saved_before_a_setting_existed_resumes_with_its_default_and_not_with_another_value(
        dataset: Path, tmp_path: Path) -> None:
    """A run written before a key was added to a config section (loss.wording_consistency, loss.random_exit_weights
    came later) trained with that key's default: its own config was refused as 'other settings'. So was one whose
    section held a key since removed (loss.exit_consistency), which no config can set any more, and one whose
    section defaults to None (instruction_noise) lacked a key added later."""
    import json

    out = tmp_path / "run"
    noise = {"instruction_noise.wrap": 0.3}
    Trainer(load_config(None, _overrides(dataset, out, **noise)), show_progress=False).train(stop_at=2)
    for extra in out.rglob("extra.json"):  # as an older version wrote it
        data = json.loads(extra.read_text())
        loss = data["training"]["config"]["loss"]
        for key in ("wording_consistency", "random_exit_weights"):
            del loss[key]
        loss["exit_consistency"] = 0.0
        del data["training"]["config"]["instruction_noise"]["swap"]
        extra.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"other settings \(loss: "):
        Trainer(load_config(None, _overrides(dataset, out, **noise, **{"loss.wording_consistency": 0.5})),
                resume=True, show_progress=False)
    with pytest.raises(ValueError, match=r"other settings \(instruction_noise: "):
        Trainer(load_config(None, _overrides(dataset, out, **noise, **{"instruction_noise.swap": 0.5})),
                resume=True, show_progress=False)
    Trainer(load_config(None, _overrides(dataset, out, **noise)), resume=True, show_progress=False).train()


def test_a_run_stopped_at_its_last_step_writes_the_final_model(dataset: Path, tmp_path: Path) -> None:
    """--stop-at equal to the run's total steps is the end of the run: without the final model written then, the
    CLI said "model written to" a folder that held none (until a --resume wrote it)."""
    from deer_vla.model.checkpoint import load_checkpoint

    out = tmp_path / "run"
    trainer = Trainer(load_config(None, _overrides(dataset, out)), show_progress=False)
    trainer.train(stop_at=trainer.cfg.total_steps)
    model, _ = load_checkpoint(out)
    trained = dict(trainer.model.named_parameters())
    for name, p in model.named_parameters():
        torch.testing.assert_close(p, trained[name], msg=name)
    assert (out / "train_history.json").is_file()


# --- the optimizer step and the stages -----------------------------------------------------------


def test_grad_clip_bounds_the_gradients_an_optimizer_step_uses(dataset: Path, tmp_path: Path) -> None:
    """The gradients went to the optimizer unclipped, whatever grad_clip said. AdamW's first step moves a parameter
    by lr * g / (|g| + eps): clipped to a norm far below eps (1e-8) it moves by a small fraction of lr, unclipped by
    about lr."""
    lr = 1e-2
    cfg = load_config(None, _overrides(dataset, tmp_path / "run", grad_clip=1e-10, weight_decay=0.0, **{
        "joint.steps": 1, "joint.warmup_steps": 0, "joint.lr": lr, "joint.schedule": "constant",
        "checkpoint_every": 10}))
    trainer = Trainer(cfg, show_progress=False)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    rows = trainer.train()
    assert rows[-1]["grad_norm"] > 1e-6  # the clip was needed (grad_norm is the norm before clipping)
    moved = max(float((p.detach() - before[n]).abs().max()) for n, p in trainer.model.named_parameters())
    assert moved < 0.02 * lr


def test_the_refine_stage_runs_the_frozen_backbone_in_eval_mode(dataset: Path, tmp_path: Path) -> None:
    """The refine stage froze the backbone's weights but left it in training mode: any dropout in it stayed on, so
    the heads trained on noisier features than the runner ever gives them."""
    trainer = Trainer(load_config(None, _overrides(dataset, tmp_path / "run", **{"refine.steps": 2})),
                      show_progress=False)
    trainer._setup_stage("refine")
    head_modules = {id(m) for h in heads_of(trainer.model) for m in h.modules()}
    backbone = [m for m in trainer.model.modules() if id(m) not in head_modules]
    assert len(backbone) > 1 and not any(m.training for m in backbone)
    assert all(m.training for m in trainer.model.modules() if id(m) in head_modules)


def test_the_split_exit_term_switches_to_a_second_drawn_exit_within_the_window(dataset: Path, tiny_cfg,
                                                                               monkeypatch) -> None:
    """The split-exit term drew its second exit and then used the first on both sides of the split: every window
    ran one exit throughout, and the shared head never trained on a history that changes exit mid-window, as the
    runner's does whenever the exit it stops at changes."""
    torch.manual_seed(0)
    eps = load_episodes(dataset, tuple(tiny_cfg.cameras), int(tiny_cfg.image_size), _action_dim(tiny_cfg),
                        int(tiny_cfg.proprio_dim))
    model = MultiExitPolicy(tiny_cfg).eval()
    windows = WindowDataset(eps, window=4, shift_pad=0, seed=0)
    batch = make_collate(build_word_tokenizer([t for e in eps for t in e.instructions]))(
        [windows[i] for i in range(0, len(windows), 2)])
    objective = DeerObjective(model, LossWeights(aux=0.0, random_exit=0.0, split_exit=1.0))
    seen: list[torch.Tensor] = []
    gather = losses.gather_exits

    def recorded(feats: torch.Tensor, exit_idx: torch.Tensor) -> torch.Tensor:
        seen.append(exit_idx.clone())
        return gather(feats, exit_idx)

    monkeypatch.setattr(losses, "gather_exits", recorded)
    with torch.no_grad():
        for seed in range(3):
            objective.generator = torch.Generator().manual_seed(seed)
            objective(batch)
    assert len(seen) == 3
    rows = torch.cat(seen)
    changes = (rows[:, 1:] != rows[:, :-1]).sum(dim=1)
    assert bool((changes <= 1).all())  # one split per window: the first exit, then the second
    assert int((changes == 1).sum()) >= rows.shape[0] // 4


def test_gate_training_keeps_the_epoch_with_the_lowest_validation_loss() -> None:
    """The gates of the last epoch were kept whatever the held-out episodes said: on data they overfit (here noise:
    nothing to learn but the mean) the saved gates were the most overfitted ones, and the report's best epoch,
    validation loss and train loss described the gates of another epoch."""
    rng = np.random.default_rng(0)
    steps, exits = 240, 3
    data = GateData(rng.normal(size=(steps, exits, 8)).astype(np.float32), rng.normal(size=(steps, exits, 4)),
                    np.repeat(np.arange(12), steps // 12))
    cfg = GateTrainConfig(hidden=64, epochs=30, batch_size=16, lr=3e-2, weight_decay=0.0, val_fraction=0.25)
    gates, report = train_gates(data, cfg)
    assert report.val_loss is not None and report.best_epoch < report.epochs
    x, y = gate_tensors(data, cfg.floor, gates.config.first_exit)
    _, val = split_episodes(data.episode, cfg.val_fraction, cfg.seed)
    with torch.no_grad():
        kept = float(((gates.forward_all(x[torch.from_numpy(val)]) - y[torch.from_numpy(val)]) ** 2).mean())
    assert kept == pytest.approx(report.val_loss, rel=1e-5)
