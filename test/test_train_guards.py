"""Training objective, optimizer, windows, data subsets and gate training: rules no other test pinned down (a
mutation audit broke each and every test passed, or no test looked). Broken, each would train the gripper
backwards, leave an exit or a loss term untrained, repeat one exit pattern or one crop for the whole run, train
the heads at the wrong rate, decay what should not decay, subset the data to one task, or train the exit gates on
inputs the runner never builds and judge them on steps they were trained on."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import tiny_demos, tiny_train_overrides

from deer_vla.core import Observation
from deer_vla.model.gate import ExitGates, GateConfig
from deer_vla.model.policy import MultiExitPolicy
from deer_vla.model.presets import preset_config
from deer_vla.model.runner import PolicyRunner
from deer_vla.model.tokenizer import build_word_tokenizer
from deer_vla.train.config import LossWeights, load_config
from deer_vla.train.data import load_episodes
from deer_vla.train.gate import collect_gate_data, gate_tensors, split_episodes
from deer_vla.train.losses import DeerObjective, action_loss
from deer_vla.train.schedule import param_groups
from deer_vla.train.trainer import Trainer, _action_dim
from deer_vla.train.windows import WindowDataset, make_collate

torch.set_num_threads(1)
TASKS = ("drawer-open", "drawer-close", "door-open")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One episode per task in TASKS, stored task by task."""
    return tiny_demos(tmp_path_factory.mktemp("demos"), TASKS)


def _episodes(dataset: Path, tiny_cfg, max_episodes: int | None = None) -> list:
    return load_episodes(dataset, tuple(tiny_cfg.cameras), int(tiny_cfg.image_size), _action_dim(tiny_cfg),
                         int(tiny_cfg.proprio_dim), max_episodes=max_episodes)


def _overrides(data: Path, out: Path, **extra: object) -> list[str]:
    return tiny_train_overrides(data, out, **{"refine.steps": 0, "checkpoint_every": 10, **extra})


# --- the loss -----------------------------------------------------------------------------------


def test_a_closed_gripper_target_trains_the_logit_up_and_the_gripper_weight_scales_it() -> None:
    """The runner reads gripper logit > 0 as closed: a BCE target read the other way trained every exit to open
    where the demonstration closed; a dropped gripper weight left the gripper term at weight 1."""
    target = torch.tensor([[[0.0, 0.0, 0.0, 1.0]]])  # no motion, gripper closed
    motion = torch.zeros(1, 1, 3)
    closed, opened = torch.tensor([[8.0]]), torch.tensor([[-8.0]])
    good = float(action_loss(motion, closed, target, LossWeights(gripper=1.0)))
    bad = float(action_loss(motion, opened, target, LossWeights(gripper=1.0)))
    assert good < 0.01 < 1.0 < bad
    assert float(action_loss(motion, opened, target, LossWeights(gripper=2.5))) == pytest.approx(2.5 * bad)


def test_the_loss_is_the_weighted_sum_of_its_terms_and_aux_sums_every_exit(dataset: Path, tiny_cfg) -> None:
    """The auxiliary term left out exit 1's head (or averaged the exits instead of summing), or a term's weight was
    dropped: that exit's head, or that term, trained at another strength than the config says."""
    torch.manual_seed(0)
    eps = _episodes(dataset, tiny_cfg)
    model = MultiExitPolicy(tiny_cfg).eval()
    tokenizer = build_word_tokenizer([t for e in eps for t in e.instructions])
    windows = WindowDataset(eps, window=4, shift_pad=2, seed=0)
    batch = make_collate(tokenizer)([windows[i] for i in (0, 3, len(windows) - 1)])
    w = LossWeights(aux=0.3, final=0.7, random_exit=1.3, split_exit=0.5)
    objective = DeerObjective(model, w)
    objective.generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        loss, terms = objective(batch)
        feats = objective.window_features(batch)
        per_exit = [action_loss(o.motion, o.gripper_logit, batch.actions, w)
                    for o in (head(feats[:, :, k], batch.proprio) for k, head in enumerate(model.aux_heads))]
    assert len(per_exit) == feats.shape[2] == tiny_cfg.num_exits
    torch.testing.assert_close(terms["loss_aux"], torch.stack(per_exit).sum())
    expected = (0.3 * terms["loss_aux"] + 0.7 * terms["loss_final"] + 1.3 * terms["loss_random_exit"]
                + 0.5 * terms["loss_split_exit"])
    torch.testing.assert_close(loss, expected)


def test_each_training_step_draws_its_own_random_exits(dataset: Path, tmp_path: Path, monkeypatch) -> None:
    """The exit generator was seeded the same at every step: every step drew the same exits for the same
    positions, and the shared head trained one fixed exit pattern for the whole run."""
    drawn: list[torch.Tensor] = []
    draw = DeerObjective._draw_exits

    def recorded(self, n, shape, device):
        out = draw(self, n, shape, device)
        drawn.append(out.clone())
        return out

    monkeypatch.setattr(DeerObjective, "_draw_exits", recorded)
    Trainer(load_config(None, _overrides(dataset, tmp_path / "run")), show_progress=False).train()
    assert len(drawn) == 3
    assert not any(torch.equal(drawn[i], drawn[j]) for i in range(3) for j in range(i + 1, 3))


# --- the optimizer ------------------------------------------------------------------------------


def test_the_heads_train_at_head_lr_scale_times_the_joint_rate(dataset: Path, tmp_path: Path) -> None:
    """head_lr_scale was ignored: the action heads trained at the backbone's rate in the joint stage."""
    cfg = load_config(None, _overrides(dataset, tmp_path / "run", head_lr_scale=0.25, **{"joint.lr": 1e-3}))
    trainer = Trainer(cfg, show_progress=False)
    trainer._setup_stage("joint")
    heads = {id(p) for h in (trainer.model.head, trainer.model.aux_heads) for p in h.parameters()}
    head_rates = {g["initial_lr"] for g in trainer.optimizer.param_groups if any(id(p) in heads for p in g["params"])}
    other_rates = {g["initial_lr"] for g in trainer.optimizer.param_groups
                   if not any(id(p) in heads for p in g["params"])}
    assert sorted(head_rates) == pytest.approx([2.5e-4]) and sorted(other_rates) == pytest.approx([1e-3])


def test_weight_decay_applies_to_matrices_only() -> None:
    """Biases and norm scales were decayed toward 0 (or nothing was decayed): AdamW's weight_decay is meant for
    the weight matrices alone."""
    module = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    decay = {id(p): g["weight_decay"] for g in param_groups([(module, 1e-3)], 0.1) for p in g["params"]}
    assert decay == {id(module[0].weight): 0.1, id(module[0].bias): 0.0, id(module[1].weight): 0.0,
                     id(module[1].bias): 0.0}


# --- windows and data ---------------------------------------------------------------------------


def test_windows_redraw_their_shift_each_epoch_and_train_every_paraphrase(dataset: Path, tiny_cfg) -> None:
    """The window randomness ignored the epoch (every epoch saw the same crops), or paraphrase=True trained on the
    recorded wording only: the paraphrases the policy is meant to follow were never seen."""
    eps = _episodes(dataset, tiny_cfg)
    windows = WindowDataset(eps, window=4, shift_pad=4, seed=0)
    first = [windows[i]["images"] for i in range(len(windows))]
    assert all(torch.equal(a[c], windows[i]["images"][c]) for i, a in enumerate(first) for c in a)  # same epoch
    windows.set_epoch(1)
    second = [windows[i]["images"] for i in range(len(windows))]
    assert any(not torch.equal(a[c], b[c]) for a, b in zip(first, second, strict=True) for c in a)
    drawn: dict[str, set[str]] = {e.task: set() for e in eps}
    for epoch in range(6):
        windows.set_epoch(epoch)
        for i, (e, _) in enumerate(windows.index):
            drawn[eps[e].task].add(windows[i]["instruction"])
    assert all(len(e.instructions) >= 2 for e in eps)
    assert drawn == {e.task: set(e.instructions) for e in eps}


def test_max_episodes_spreads_the_subset_over_the_tasks(dataset: Path, tiny_cfg) -> None:
    """max_episodes took the first episodes stored: the data set is stored task by task, so a subset held the
    first tasks only."""
    assert [e.task for e in _episodes(dataset, tiny_cfg, max_episodes=2)] == ["drawer-open", "door-open"]


# --- exit gates ---------------------------------------------------------------------------------


def _gate_observations(episodes: int, steps: int) -> list[list[Observation]]:
    rng = np.random.default_rng(0)
    return [[Observation(images={c: rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for c in ("static", "wrist")},
                         instruction="open the drawer", proprio=rng.uniform(-1, 1, 4).astype(np.float32))
             for _ in range(steps)] for _ in range(episodes)]


def test_gates_are_trained_on_the_inputs_the_runner_scores_them_on() -> None:
    """Gate k's training row must be gate_inputs(feature_k, action_k, action_{k-1}), exit 1 taking its own action
    as the previous one, as PolicyRunner.exit_score builds it: rows built from another exit's action trained the
    gates on inputs they never see at run time, and their scores meant nothing."""
    torch.manual_seed(0)
    model = MultiExitPolicy(preset_config("tiny")).eval()
    with torch.no_grad():  # open the cross-attention gates: the images change every exit's action
        for block in model.xattn.values():
            block.attn_gate.fill_(0.7)
            block.ff_gate.fill_(-0.4)
    tokenizer = build_word_tokenizer(["open the drawer"])
    observations = _gate_observations(2, 3)
    n = model.config.num_exits
    with torch.inference_mode():
        data = collect_gate_data(PolicyRunner(model, tokenizer), observations)
    assert n >= 3 and not np.allclose(data.actions[:, 1], data.actions[:, 2])  # exits 2 and 3 act differently
    floor = 1e-4
    trained, _ = gate_tensors(data, floor)
    gates = ExitGates(GateConfig(feature_dim=data.features.shape[2], action_dim=data.actions.shape[2],
                                 num_exits=n, floor=floor))
    scored: list[torch.Tensor] = []
    forward = gates.forward

    def recorded(inputs: torch.Tensor, exit_index: int) -> torch.Tensor:
        scored.append(inputs[0].clone())
        return forward(inputs, exit_index)

    gates.forward = recorded
    runner = PolicyRunner(model, tokenizer, gates=gates)
    with torch.inference_mode():
        for episode in observations:
            runner.reset()
            for obs in episode:
                runner.begin_step(obs)
                for _ in range(n - 1):
                    runner.run_next_exit()
                    runner.exit_score()
                runner.run_next_exit()
                runner.commit(n)  # the deepest, as collect_gate_data commits
    at_run_time = torch.stack(scored).reshape(len(data.episode), n - 1, -1)
    torch.testing.assert_close(trained, at_run_time, rtol=1e-5, atol=1e-5)


def test_gate_validation_holds_out_whole_episodes() -> None:
    """Steps were held out one by one: the other steps of a validation episode were trained on, so the validation
    loss (and the epoch it keeps) judged the gates on episodes they had seen."""
    episode = np.repeat(np.arange(10), 7)
    train, val = split_episodes(episode, 0.3, seed=0)
    assert not (train & val).any() and (train | val).all()
    held = np.unique(episode[val])
    assert held.size == 3 and set(np.unique(episode[train])) == set(range(10)) - set(held.tolist())
    # by episode id, not by position: steps of one episode spread over the data still land on one side
    mixed = np.random.default_rng(1).permutation(episode)
    _, val = split_episodes(mixed, 0.3, seed=1)
    assert all(len(set(val[mixed == e].tolist())) == 1 for e in range(10)) and val.sum() == 3 * 7


def test_a_train_config_the_disk_cannot_take_is_said_naming_it_and_leaves_no_empty_file(
        dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A nearly full disk: train_config.json was written in place (an empty file was left beside the checkpoints)
    and the error was a bare "[Errno 28]"."""
    import errno

    from deer_vla.train import trainer as trainer_module

    real = trainer_module.atomic_write_text

    def full_for_the_config(path: Path, text: str) -> None:
        if Path(path).name == "train_config.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, text)

    monkeypatch.setattr(trainer_module, "atomic_write_text", full_for_the_config)
    out = tmp_path / "run"
    argv = ["--no-progress", *sum((["--set", o] for o in _overrides(dataset, out)), [])]
    assert trainer_module.cli_main(argv) == 1
    err = capsys.readouterr().err
    assert f"cannot write {out / 'train_config.json'}: No space left on device" in err, err
    assert not (out / "train_config.json").exists()


def test_an_output_dir_the_disk_cannot_take_is_named(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A full disk at the lock file's pid: the error was a bare "[Errno 28] No space left on device"."""
    import errno

    from deer_vla.train import trainer as trainer_module

    def full(folder: Path, what: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(trainer_module, "lock_folder", full)
    out = tmp_path / "run"
    argv = ["--no-progress", *sum((["--set", o] for o in _overrides(dataset, out)), [])]
    assert trainer_module.cli_main(argv) == 2
    assert f"cannot write to output_dir {out}: No space left on device" in capsys.readouterr().err


def test_a_training_that_cannot_start_leaves_no_output_dir_behind(dataset: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A missing dataset is found after the output folder was made and locked: it was left holding only its
    lock file. One that was there before stays, with nothing added."""
    from deer_vla.train import trainer as trainer_module

    out = tmp_path / "runs" / "mine"
    argv = ["--no-progress", *sum((["--set", o] for o in _overrides(tmp_path / "no_such_data", out)), [])]
    assert trainer_module.cli_main(argv) == 2
    assert "no_such_data" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    out.mkdir(parents=True)
    assert trainer_module.cli_main(argv) == 2
    assert out.is_dir() and list(out.iterdir()) == []  # not even the lock file


def test_the_recorded_gripper_is_read_only_from_an_imported_datasets_numbers(tmp_path: Path) -> None:
    """training.gripper comes from meta.json's collection.action_mapping.gripper (an importer's raw values); a
    simulator's dataset, a damaged mapping or no dataset records none, and never fails the training."""
    import json

    from deer_vla.train.trainer import recorded_gripper

    data = tiny_demos(tmp_path / "demos")
    assert recorded_gripper(data) is None  # a simulator's demonstrations: no mapping
    assert recorded_gripper(tmp_path / "nothing") is None
    meta_path = data / "meta.json"
    meta = json.loads(meta_path.read_text())
    for gripper, expected in (
        ({"column": "action.gripper", "raw_open": 0.04, "raw_closed": 0}, {"raw_open": 0.04, "raw_closed": 0.0,
                                                                           "column": "action.gripper"}),
        ({"raw_open": "0.04", "raw_closed": 0}, None), ({"raw_open": True, "raw_closed": 0}, None), ("x", None),
    ):
        meta["collection"] = {"action_mapping": {"gripper": gripper}}
        meta_path.write_text(json.dumps(meta))
        assert recorded_gripper(data) == expected


def test_recorded_gripper_values_are_two_finite_numbers() -> None:
    """The one predicate the trainer (a dataset's mapping) and the policy node (a checkpoint's training.gripper)
    take a recorded gripper by: a NaN or infinite position would reach the node's positions advice as 'nan'."""
    from deer_vla.core.action_spec import recorded_gripper_values

    assert recorded_gripper_values({"raw_open": 0.04, "raw_closed": 0}) == (0.04, 0.0)
    assert recorded_gripper_values({"raw_open": 100, "raw_closed": -5.5, "column": "x"}) == (100.0, -5.5)
    # a JSON integer past int64 is still a number (np.isfinite raised TypeError on it: train and configure failed)
    assert recorded_gripper_values({"raw_open": 10**20, "raw_closed": 0}) == (1e20, 0.0)
    for bad in ({"raw_open": float("nan"), "raw_closed": 0}, {"raw_open": 0, "raw_closed": float("inf")},
                {"raw_open": False, "raw_closed": 1}, {"raw_open": "0", "raw_closed": 1}, {"raw_open": 0},
                {"raw_open": 0, "raw_closed": -(10**400)},
                [0, 1], None, "x"):
        assert recorded_gripper_values(bad) is None, bad


def test_a_checkpoint_the_disk_cannot_take_is_named_and_leaves_no_half_folder(
        dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A full disk while saving: the half-written .tmp_step_ folder held its space until a --resume, the final
    model's staging folder likewise, and the message said "writing a checkpoint failed" naming none (also for
    the final model)."""
    import errno

    from deer_vla.train import trainer as trainer_module

    real = trainer_module.save_train_state
    writes: list[Path] = []

    def full_at_the_second(folder: Path, *args: object, **kwargs: object) -> None:
        writes.append(Path(folder))
        if len(writes) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(folder, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "save_train_state", full_at_the_second)
    out = tmp_path / "run"
    argv = ["--no-progress", *sum((["--set", o] for o in _overrides(dataset, out, checkpoint_every=1)), [])]
    assert trainer_module.cli_main(argv) == 1
    err = capsys.readouterr().err
    assert (f"writing the step checkpoint {out / 'checkpoints' / 'step_00000002'} failed: [Errno 28] No space "
            f"left on device (at step 2); --resume continues from step_00000001") in err, err
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000001"]  # no .tmp_step_00000002

    monkeypatch.setattr(trainer_module, "save_train_state", real)
    from deer_vla.model import checkpoint as checkpoint_module

    real_save = checkpoint_module.save_checkpoint

    def full_for_the_final(model: object, tokenizer: object, folder: Path, **kwargs: object) -> None:
        if Path(folder).name == ".final.tmp":
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(model, tokenizer, folder, **kwargs)

    monkeypatch.setattr(checkpoint_module, "save_checkpoint", full_for_the_final)
    assert trainer_module.cli_main([*argv, "--resume"]) == 1
    err = capsys.readouterr().err
    assert f"writing the final model in {out} failed: [Errno 28] No space left on device" in err, err
    assert not (out / ".final.tmp").exists() and not (out / "config.json").exists()


def test_weights_that_diverged_are_never_saved(dataset: Path, tmp_path: Path, capsys) -> None:
    """`joint.lr=1e30` for one step (or `weight_decay=1e30`) trained, said "model written" with status 0 and saved
    weights of 1e30 that no load takes: the loss sees a diverged update only one step later, and the stage's last
    step (or a checkpoint's) has none. Checked before every save; a weight decay of 1e30 is refused outright."""
    from deer_vla.train.trainer import cli_main

    out = tmp_path / "diverged"
    argv = ["--no-progress", *sum((["--set", o] for o in _overrides(dataset, out, **{
        "joint.steps": 1, "joint.warmup_steps": 0, "joint.lr": 1e30})), [])]
    assert cli_main(argv) == 1
    err = capsys.readouterr().err
    assert "deer-vla train: the weights diverged by step 1 (" in err and "lower the learning rate" in err, err
    assert "no step checkpoint was written before it" in err and "Traceback" not in err
    assert not (out / "model.safetensors").exists() and not list(out.glob("checkpoints/step_*"))


@pytest.mark.parametrize(("setting", "said"), [
    ("weight_decay=1e30", "weight_decay"), ("num_threads=100000", "num_threads"),  # a segfault
    ("head_lr_scale=1e300", "head_lr_scale"), ("shift_pad=100000", "shift_pad"),  # tracebacks
    ("seed=99999999999999999999999", "seed"),  # "Overflow when unpacking long long", naming nothing
])
def test_settings_no_run_can_use_are_refused_naming_them(dataset: Path, tmp_path: Path, capsys, setting: str,
                                                         said: str) -> None:
    from deer_vla.train.trainer import cli_main

    argv = ["--no-progress", *sum((["--set", o] for o in _overrides(dataset, tmp_path / "out")), []), "--set", setting]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err and len(err.strip().splitlines()) <= 3, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("lr", [1e300, float("inf"), 0.0])
def test_a_gate_learning_rate_no_optimiser_takes_is_refused(lr: float) -> None:
    """`train-gate --lr 1e300` loaded the model and replayed the data, then failed in the optimiser's float
    conversion with a traceback."""
    from deer_vla.train.gate import GateTrainConfig

    with pytest.raises(ValueError, match=r"gate training lr must be a number in \(0, 1e38\]"):
        GateTrainConfig(lr=lr)
