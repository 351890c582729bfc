"""Learned exit gates on a real tiny checkpoint: training reduces the loss and beats a constant, the runner
scores exits with them (exit 1 included) and the controller exits where they say, their FLOPs are charged,
gates files from before exit-1 gates still load and run from exit 2, and asking for the learned criterion
without gates fails with a clear message."""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from deer_vla.control import ExitController, Thresholds
from deer_vla.control.criterion import Criterion
from deer_vla.core import Observation
from deer_vla.model.checkpoint import save_checkpoint
from deer_vla.model.checkpoint_dir import CheckpointDir
from deer_vla.model.gate import GATES_FORMAT, ExitGates, GateConfig, GateError, gate_inputs
from deer_vla.model.policy import MultiExitPolicy
from deer_vla.model.presets import preset_config
from deer_vla.model.runner import PolicyRunner
from deer_vla.model.tokenizer import build_word_tokenizer
from deer_vla.train.gate import GateTrainConfig, collect_gate_data, train_gates

TEXTS = ["open the drawer", "press the button", "close the window"]
LEARNED = Criterion(kind="learned")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = MultiExitPolicy(preset_config("tiny")).eval()
    with torch.no_grad():  # open the cross-attention gates so the images change every exit's action
        for block in model.xattn.values():
            block.attn_gate.fill_(0.7)
            block.ff_gate.fill_(-0.4)
    return save_checkpoint(model, build_word_tokenizer(TEXTS), tmp_path_factory.mktemp("gate") / "tiny")


def episodes(count: int, steps: int, seed: int = 0) -> list[list[Observation]]:
    rng = np.random.default_rng(seed)
    out = []
    for e in range(count):
        out.append([Observation(images={c: rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                                        for c in ("static", "wrist")},
                                instruction=TEXTS[e % len(TEXTS)], proprio=rng.uniform(-1, 1, 4).astype(np.float32))
                    for _ in range(steps)])
    return out


@pytest.fixture(scope="module")
def trained(ckpt: Path) -> tuple[ExitGates, object]:
    runner = PolicyRunner.from_checkpoint(ckpt)
    with torch.inference_mode():
        data = collect_gate_data(runner, episodes(24, 10))  # enough for the exit-1 gate too
    return train_gates(data, GateTrainConfig(epochs=40, batch_size=32, val_fraction=0.25))


@pytest.fixture(scope="module")
def gated(ckpt: Path, trained, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gated") / "tiny"
    shutil.copytree(ckpt, out)
    trained[0].save(out / CheckpointDir.GATES, training=trained[1].to_dict())
    return out


def test_gate_training_reduces_its_loss_and_predicts_better_than_a_constant(trained) -> None:
    _, report = trained
    assert report.val_steps > 0 and report.train_steps > report.val_steps
    assert report.train_loss < 0.7 * report.first_train_loss
    assert report.val_loss < 0.8 * report.constant_val_loss


def test_the_runner_scores_exits_with_its_gates_and_the_controller_exits_where_they_say(gated: Path) -> None:
    runner = PolicyRunner.from_checkpoint(gated)
    assert runner.has_exit_gates
    steps = [ep[0] for ep in episodes(8, 1, seed=3)]
    # each step starts an episode, so the head state (and every score) is the same in both passes
    scores = []
    for obs in steps:
        runner.reset()
        runner.begin_step(obs)
        row = []
        for _ in range(runner.num_exits):
            runner.run_next_exit()
            row.append(runner.exit_score())  # exit 1 included: it has a gate
        runner.commit(runner.num_exits)
        scores.append(row)
    scores_arr = np.asarray(scores)
    assert runner.first_gated_exit == 1
    assert np.all(scores_arr[:, :-1] > 0) and np.all(scores_arr[:, -1] == 0)  # exit N is the full model itself
    eta1 = float(np.median(scores_arr[:, 0]))
    ctl = ExitController(runner, runner.cost_profile_for("learned"), Thresholds(values=[eta1, 0.0, 0.0, 0.0],
                                                                                   criterion=LEARNED))
    taken = []
    for obs in steps:
        ctl.reset_episode()
        _, rec = ctl.step(obs)
        taken.append(rec.exit_used)
        assert rec.distances[0] == pytest.approx(scores_arr[len(taken) - 1, 0]) and rec.distances_from_exit == 1
    assert taken == [1 if s <= eta1 else 4 for s in scores_arr[:, 0]]
    assert 1 in taken and 4 in taken


def test_the_score_is_the_gate_applied_to_the_exit_feature_and_actions(gated: Path, trained) -> None:
    gates = trained[0]
    runner = PolicyRunner.from_checkpoint(gated)
    runner.begin_step(episodes(1, 1, seed=5)[0][0])
    a1, a2 = runner.run_next_exit(), runner.run_next_exit()
    f2 = torch.from_numpy(runner.exit_feature(2))[None]
    x = gate_inputs(f2, torch.tensor(a2, dtype=torch.float32)[None], torch.tensor(a1, dtype=torch.float32)[None],
                    gates.config.floor)
    with torch.no_grad():
        want = float(torch.exp(gates(x, 2))[0])
    assert runner.exit_score() == pytest.approx(want, rel=1e-5)
    # exit 1 has no previous exit: its gate sees exit 1's own action in that place, as in training
    runner.reset()
    runner.begin_step(episodes(1, 1, seed=5)[0][0])
    a1 = torch.tensor(runner.run_next_exit(), dtype=torch.float32)[None]
    x1 = gate_inputs(torch.from_numpy(runner.exit_feature(1))[None], a1, a1, gates.config.floor)
    with torch.no_grad():
        assert runner.exit_score() == pytest.approx(float(torch.exp(gates(x1, 1))[0]), rel=1e-5)


def test_the_gates_cost_is_counted_in_the_profile_the_learned_criterion_runs_on(gated: Path, trained) -> None:
    gates = trained[0]
    x = torch.zeros(1, gates.config.input_dim)
    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        gates(x, 2)
    assert gates.flops_per_exit() == counter.get_total_flops()
    runner = PolicyRunner.from_checkpoint(gated)
    plain, learned = runner.cost_profile_for("consecutive"), runner.cost_profile_for("learned")
    per_gate = gates.flops_per_exit() / 1e9
    for k in range(1, runner.num_exits + 1):  # one gate at each of exits 1..k
        assert learned.cost(k) - plain.cost(k) == pytest.approx(k * per_gate, rel=1e-9, abs=1e-15)
        assert learned.cost(k, "total_gflops") - plain.cost(k, "total_gflops") == pytest.approx(
            k * per_gate, rel=1e-9, abs=1e-15)
    from_two = runner.cost_profile_for("learned", first_exit=2)  # thresholds from exit 2 on run no exit-1 gate
    for k in range(1, runner.num_exits + 1):
        assert from_two.cost(k) - plain.cost(k) == pytest.approx(max(k - 1, 0) * per_gate, rel=1e-9, abs=1e-15)


def test_asking_for_the_learned_criterion_without_gates_fails_with_a_clear_message(ckpt: Path) -> None:
    runner = PolicyRunner.from_checkpoint(ckpt)
    assert not runner.has_exit_gates
    with pytest.raises(GateError, match="no.*train-gate"):
        runner.cost_profile_for("learned")
    with pytest.raises(ValueError, match="needs exit gates.*train-gate"):
        ExitController(runner, runner.cost_profile, Thresholds(values=[0.1] * 4, criterion=LEARNED))


@pytest.mark.parametrize(("value", "said"), [(float("nan"), "holds NaN or infinite values"),
                                             (-1e30, "holds a value of magnitude 1e+30")])
def test_gates_holding_values_no_training_gives_are_refused(tmp_path: Path, value: float, said: str) -> None:
    """A gates bias of -1e30 loaded (only NaN and inf were refused) and scored every step 0: the policy exited at
    exit 1 whatever the threshold."""
    gates = ExitGates(GateConfig(feature_dim=64, action_dim=4, num_exits=4))
    name, tensor = next((k, v) for k, v in gates.state_dict().items() if v.is_floating_point())
    with torch.no_grad():
        tensor.view(-1)[0] = value
    path = gates.save(tmp_path / "gates.safetensors")
    with pytest.raises(GateError, match=re.escape(f"tensor '{name}' {said}")):
        ExitGates.load(path)


def test_gates_of_another_model_are_refused_at_load(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny"
    shutil.copytree(ckpt, out)
    ExitGates(GateConfig(feature_dim=64, action_dim=4, num_exits=4)).save(out / CheckpointDir.GATES)
    with pytest.raises(GateError, match="trained for features of 64"):
        PolicyRunner.from_checkpoint(out)
    (out / CheckpointDir.GATES).write_bytes(b"not safetensors")
    with pytest.raises(GateError, match="not a readable safetensors"):
        PolicyRunner.from_checkpoint(out)


def test_gates_survive_save_and_load(trained, tmp_path: Path) -> None:
    gates, report = trained
    gates.save(tmp_path / CheckpointDir.GATES, training=report.to_dict())
    back = ExitGates.load(tmp_path / CheckpointDir.GATES)
    x = torch.randn(5, gates.config.input_dim)
    torch.testing.assert_close(back(x, 3), gates(x, 3))
    assert ExitGates.training_summary(tmp_path / CheckpointDir.GATES)["best_epoch"] == report.best_epoch


def test_gates_record_their_input_clip_and_another_clip_is_refused_at_load(trained, tmp_path: Path) -> None:
    """The clip changed the gates' arithmetic without a version change (2026-12-02): thresholds solved on the
    scores of unclipped gates ran on clipped ones unsaid (mean exit 1 became 3 in an upgrade audit). Files now
    say which clip they were made with, and another one is refused with what to run."""
    from safetensors.torch import load_file, save_file

    from deer_vla.model.gate import INPUT_CLIP

    gates, _ = trained
    path = gates.save(tmp_path / CheckpointDir.GATES)
    meta = ExitGates.metadata(path)
    assert float(meta["input_clip"]) == INPUT_CLIP
    save_file(load_file(str(path)), str(path), metadata={**meta, "input_clip": "5.0"})
    with pytest.raises(GateError, match=r"clipped to \+-5 std.*train-gate, then deer-vla calibrate"):
        ExitGates.load(path)
    save_file(load_file(str(path)), str(path), metadata={**meta, "input_clip": "1e1"})  # the same clip, written so
    ExitGates.load(path)
    save_file(load_file(str(path)), str(path), metadata={**meta, "input_clip": "ten"})
    with pytest.raises(GateError, match="input_clip 'ten' in its metadata is not a number"):
        ExitGates.load(path)
    del meta["input_clip"]  # a file from before the clip was recorded: read with this one, as before
    save_file(load_file(str(path)), str(path), metadata=meta)
    ExitGates.load(path)


def test_saving_gates_over_older_ones_is_all_or_nothing(trained, tmp_path: Path, monkeypatch) -> None:
    """train-gate writes into the checkpoint, which every runner reads whole: a crash mid-write used to leave
    a torn gates.safetensors, so the checkpoint refused to load and the previous gates were gone."""
    import os

    gates, report = trained
    path = tmp_path / CheckpointDir.GATES
    gates.save(path, training={"run": 1})
    other = ExitGates(gates.config)  # fresh weights: different scores

    def killed(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        other.save(path, training={"run": 2})
    monkeypatch.undo()
    assert ExitGates.training_summary(path) == {"run": 1}
    x = torch.randn(5, gates.config.input_dim)
    torch.testing.assert_close(ExitGates.load(path)(x, 3), gates(x, 3))
    assert [p.name for p in tmp_path.iterdir()] == [CheckpointDir.GATES]


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from deer_vla.train.synthetic import write_tiny_dataset

    tasks = ("drawer-open", "drawer-close", "coffee-button", "window-open")
    return write_tiny_dataset(tmp_path_factory.mktemp("demos"), ("static", "wrist"), 32, 4,
                              {"axes": ["x", "y", "z"], "low": [-1.0] * 3, "high": [1.0] * 3}, tasks=tasks, length=8)


def test_train_gate_command_writes_gates_the_runner_then_loads(ckpt: Path, demos: Path, tmp_path: Path,
                                                               capsys) -> None:
    from deer_vla.train.gate import cli_main

    data = demos
    out = tmp_path / "tiny"
    shutil.copytree(ckpt, out)
    assert cli_main([str(out), "--data", str(data), "--epochs", "3", "--val-fraction", "0.25"]) == 0
    assert PolicyRunner.from_checkpoint(out).has_exit_gates
    assert ExitGates.training_summary(out / CheckpointDir.GATES)["steps"] == 4 * 8
    assert cli_main([str(out), "--data", str(data), "--skip-per-task", "1"]) == 2  # one episode per task: none left
    assert "no episodes left" in capsys.readouterr().err


def test_train_gate_on_a_model_whose_actions_are_nan_is_a_one_line_error(ckpt: Path, demos: Path, tmp_path: Path,
                                                                         capsys) -> None:
    """A non-finite action (bad weights) ended train-gate, calibrate and replay in a FloatingPointError
    traceback: their bad-input handlers catch ValueError, which the runner's error now also is. Weights that
    are not finite are now refused at load, naming the file and tensor, before any action."""
    from deer_vla.train.gate import cli_main

    runner = PolicyRunner.from_checkpoint(ckpt)
    with torch.no_grad():
        runner.model.head.motion.bias.fill_(float("nan"))
    broken = save_checkpoint(runner.model, build_word_tokenizer(TEXTS), tmp_path / "nan")
    assert cli_main([str(broken), "--data", str(demos), "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tensor 'head.motion.bias' holds NaN or infinite values" in err[0], err


def test_task_weights_raise_the_gate_scores_of_the_weighted_task_and_only_there(ckpt: Path, demos: Path,
                                                                                tmp_path: Path, capsys,
                                                                                caplog) -> None:
    """A task weight w multiplies the distances the gates learn on that task's steps (targets log(w d + floor)),
    and the gates learn from the features which steps those are; train-gate reads the weights from a file,
    records them with the gates and refuses a bad file by name."""
    from deer_vla.model.gate import motion_rms
    from deer_vla.train.gate import cli_main, gate_tensors

    runner = PolicyRunner.from_checkpoint(ckpt)
    eps = episodes(12, 8, seed=1)
    with torch.inference_mode():
        data = collect_gate_data(runner, eps)
    pressed = np.asarray([eps[e][0].instruction == "press the button" for e in data.episode])
    plain_x, plain_y = gate_tensors(data, 1e-4)
    cfg = GateTrainConfig(epochs=40, batch_size=32, val_fraction=0.25)
    plain, _ = train_gates(data, cfg)
    data = replace(data, weight=np.where(pressed, 20.0, 1.0))
    x, y = gate_tensors(data, 1e-4)
    actions = torch.from_numpy(data.actions).float()
    distance = motion_rms(actions[:, :-1], actions[:, -1:])
    assert torch.equal(x, plain_x)
    assert torch.allclose(y, torch.log(distance * torch.from_numpy(data.weight).float().unsqueeze(1) + 1e-4))
    weighted, _ = train_gates(data, cfg)
    with torch.no_grad():
        shift = weighted.forward_all(x) - plain.forward_all(x)  # log-score change per step and gate
    # log 20 = 3.0 higher where the weight is, about unchanged elsewhere
    assert float(shift[torch.from_numpy(pressed)].mean()) > 2.0
    assert abs(float(shift[torch.from_numpy(~pressed)].mean())) < 0.5
    # the command: weights from a file, recorded with the gates; tasks it does not name keep weight 1
    out = tmp_path / "tiny"
    shutil.copytree(ckpt, out)
    weights = tmp_path / "weights.json"
    weights.write_text(json.dumps({"window-open": 4.0}))
    assert cli_main([str(out), "--data", str(demos), "--epochs", "2", "--task-weights", str(weights)]) == 0
    assert ExitGates.training_summary(out / CheckpointDir.GATES)["task_weights"] == {"window-open": 4.0}
    weights.write_text(json.dumps({"window-opne": 4.0}))  # a misspelt task is named, not silently ignored
    with caplog.at_level("WARNING", logger="deer_vla.train_gate"):
        assert cli_main([str(out), "--data", str(demos), "--epochs", "1", "--task-weights", str(weights)]) == 0
    assert "none of the recorded episodes is of: ['window-opne']" in caplog.text
    for bad, message in (({"window-open": 0}, "finite numbers > 0"), ([4.0], "JSON object"), ("{", "not a readable")):
        weights.write_text(bad if isinstance(bad, str) else json.dumps(bad))
        assert cli_main([str(out), "--data", str(demos), "--task-weights", str(weights)]) == 2
        assert message in capsys.readouterr().err
    assert cli_main([str(out), "--data", str(demos), "--task-weights", str(tmp_path / "absent.json")]) == 2
    assert "--task-weights file not found" in capsys.readouterr().err


def test_train_gate_takes_several_dataset_directories(ckpt: Path, demos: Path, tmp_path: Path, capsys) -> None:
    """--data DIR DIR: the episodes are spread over both (the training set and demonstrations collected for the
    gates); --tasks picks in each, and a task none holds is refused by name."""
    from deer_vla.train.gate import cli_main, training_demos
    from deer_vla.train.synthetic import write_tiny_dataset

    other = write_tiny_dataset(tmp_path / "more", ("static", "wrist"), 32, 4,
                               {"axes": ["x", "y", "z"], "low": [-1.0] * 3, "high": [1.0] * 3},
                               tasks=("drawer-open", "faucet-open"), length=5)
    both = [obs for _, obs in training_demos([demos, other], ("static", "wrist"), 100, None)]
    assert sorted(len(e) for e in both) == [5, 5, 8, 8, 8, 8]  # every episode of both, each once
    picked = [obs for _, obs in training_demos([demos, other], ("static", "wrist"), 100,
                                               ["faucet-open", "drawer-open"])]
    assert sorted(len(e) for e in picked) == [5, 5, 8]  # drawer-open from both, faucet-open from the second
    with pytest.raises(KeyError, match="window-close"):
        [obs for _, obs in training_demos([demos, other], ("static", "wrist"), 10, ["window-close"])]
    out = tmp_path / "two"
    shutil.copytree(ckpt, out)
    assert cli_main([str(out), "--data", str(demos), str(other), "--epochs", "1", "--weight-decay", "0.1"]) == 0
    summary = ExitGates.training_summary(out / CheckpointDir.GATES)
    assert summary["steps"] == 4 * 8 + 2 * 5 and summary["episodes"] == 6
    assert summary["dataset"] == f"{demos},{other}" and summary["config"]["weight_decay"] == 0.1
    assert cli_main([str(out), "--data", str(demos), str(tmp_path / "absent")]) == 2
    assert "absent" in capsys.readouterr().err


def test_reworded_replays_keep_the_frames_and_change_only_the_wording(ckpt: Path, demos: Path, tmp_path: Path,
                                                                     ) -> None:
    """--reword R: each demonstration is followed by R replays under other wording, never held-out wording, and
    a demonstration with its replays stays one episode to the validation split."""
    from deer_vla.sim.tasks import get_task
    from deer_vla.train.gate import cli_main, training_demos

    plain = [obs for _, obs in training_demos(demos, ("static", "wrist"), 4, None)]
    replayed = [obs for _, obs in training_demos(demos, ("static", "wrist"), 4, None, reword=2, seed=3)]
    assert len(plain) == 4 and len(replayed) == 12
    for i, source in enumerate(plain):
        group = replayed[3 * i:3 * i + 3]
        assert group[0][0].instruction == source[0].instruction
        task = next(t for t in ("drawer-open", "drawer-close", "coffee-button", "window-open")
                    if source[0].instruction == f"{t.replace('-', ' ')} now")
        for replay in group[1:]:
            assert len(replay) == len(source) and len({o.instruction for o in replay}) == 1
            assert all(np.array_equal(o.images["static"], s.images["static"]) for o, s in zip(replay, source))
            assert replay[0].instruction not in get_task(task).heldout_instructions
    assert len({r[0].instruction for r in replayed}) > len({p[0].instruction for p in plain})

    out = tmp_path / "reworded"
    shutil.copytree(ckpt, out)
    assert cli_main([str(out), "--data", str(demos), "--epochs", "1", "--reword", "1"]) == 0
    summary = ExitGates.training_summary(out / CheckpointDir.GATES)
    assert summary["steps"] == 2 * 4 * 8 and summary["episodes"] == 4 and summary["reword"] == 1
    assert cli_main([str(out), "--data", str(demos), "--reword", "-1"]) == 2


def test_train_gate_out_may_name_a_folder_and_writes_its_gates_file(ckpt: Path, demos: Path, tmp_path: Path) -> None:
    from deer_vla.train.gate import cli_main

    folder = tmp_path / "elsewhere"
    folder.mkdir()
    assert cli_main([str(ckpt), "--data", str(demos), "--epochs", "1", "--out", str(folder)]) == 0
    assert ExitGates.training_summary(folder / CheckpointDir.GATES)["steps"] == 4 * 8
    assert not (ckpt / CheckpointDir.GATES).exists()


def test_calibrate_solves_learned_thresholds_from_the_gate_scores(gated: Path, ckpt: Path, demos: Path,
                                                                  tmp_path: Path, capsys) -> None:
    from deer_vla.commands.calibrate import cli_main

    out = tmp_path / "out"
    assert cli_main(["--checkpoint", str(gated), "--dataset", str(demos), "--average-budget-fraction", "0.6",
                     "--criterion", "learned", "--method", "descent", "--out", str(out)]) == 0
    th = Thresholds.load(out / "thresholds.json")
    assert th.criterion == LEARNED and th.method == "descent"
    runner = PolicyRunner.from_checkpoint(gated)
    # solved on costs that charge the gates, within the budget on the calibration steps
    assert th.expected_cost <= 0.6 * runner.cost_profile.cost(runner.num_exits) + 1e-12
    ctl = ExitController(runner, runner.cost_profile, th)
    assert ctl.learned and ctl.profile.gate_gflops > 0
    # the profile.json written beside is the model's own: the gates' bytes are added once, as it is loaded
    saved = CheckpointDir(out).read_profile()
    assert saved is not None and saved.weight_bytes == runner.model_profile.weight_bytes
    assert runner.exit_gate_bytes > 0
    assert runner.cost_profile.weight_bytes[-1] == saved.weight_bytes[-1] + runner.exit_gate_bytes
    assert th.gates_sha256 == CheckpointDir(gated).gates_digest() is not None  # retrained gates refuse them:
    assert cli_main(["--checkpoint", str(ckpt), "--dataset", str(demos), "--average-budget-fraction", "0.6",
                     "--criterion", "learned", "--out", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "needs exit gates, and this checkpoint has none" in err and "deer-vla train-gate" in err


def test_evaluate_solves_its_dynamic_modes_for_the_learned_criterion(gated: Path, ckpt: Path, demos: Path,
                                                                     capsys) -> None:
    from deer_vla.evaluation.evaluator import EvalConfig, build_modes, cli_main

    cfg = EvalConfig(checkpoint=str(gated), tasks=["drawer-open"], budgets=[0.6], calibration_dataset=str(demos),
                     criterion="learned")
    modes, skipped = build_modes(cfg, PolicyRunner.from_checkpoint(gated))
    dynamic = [m for m in modes if m.kind == "dynamic"]
    assert len(dynamic) == 1 and not skipped
    assert Thresholds.from_dict(dynamic[0].thresholds).criterion == LEARNED
    assert dynamic[0].name == "dyn0.6-learned"  # not DeeR's "dyn0.6": eval-report must not pool the two
    assert cli_main(["--checkpoint", str(ckpt), "--criterion", "learned", "--budgets", "0.5",
                     "--calibration-dataset", str(demos),
                     "--tasks", "drawer-open", "--episodes-per-task", "1"]) == 2
    assert "needs exit gates" in capsys.readouterr().err


def test_policy_node_stack_runs_the_thresholds_files_criterion_and_refuses_a_mismatch(gated: Path, ckpt: Path,
                                                                                       tmp_path: Path) -> None:
    """By default the node runs the criterion its thresholds were solved for (thresholds of one criterion mean
    nothing under the other); an explicit 'criterion' must match the file; the learned one needs gates."""
    from deer_vla.ros.params import POLICY_DEFAULTS, parse_params
    from deer_vla.ros.policy_backend import ConfigurationError, load_stack

    assert parse_params({**POLICY_DEFAULTS, "criterion": "learned"}).criterion == "learned"
    with pytest.raises(ValueError, match="criterion"):
        parse_params({**POLICY_DEFAULTS, "criterion": "oracle"})
    learned = tmp_path / "learned.json"
    Thresholds(values=[0.01, 0.01, 0.01, 0.0], criterion=LEARNED).save(learned)
    assert POLICY_DEFAULTS["criterion"] == "" and parse_params(POLICY_DEFAULTS).criterion == ""
    for asked in ("learned", ""):
        stack = load_stack(gated, learned, "cpu", {}, criterion=asked)
        assert stack.controller.learned and stack.controller.profile.gate_gflops > 0
    deer = tmp_path / "deer.json"
    Thresholds(values=[0.01] * 3).save(deer)
    assert not load_stack(gated, deer, "cpu", {}).controller.learned
    with pytest.raises(ConfigurationError, match="learned exit criterion but parameter 'criterion' is 'consecutive'"):
        load_stack(gated, learned, "cpu", {}, criterion="consecutive")
    with pytest.raises(ConfigurationError, match="consecutive exit criterion but parameter 'criterion' is 'learned'"):
        load_stack(gated, deer, "cpu", {}, criterion="learned")
    for asked in ("learned", ""):
        with pytest.raises(ConfigurationError, match="needs exit gates.*train-gate"):
            load_stack(ckpt, learned, "cpu", {}, criterion=asked)


def test_gates_trained_on_other_weights_are_refused(ckpt: Path, trained, tmp_path: Path) -> None:
    out = tmp_path / "tiny"
    shutil.copytree(ckpt, out)
    trained[0].save(CheckpointDir(out).gates_path, weights_digest="0" * 64)
    with pytest.raises(GateError, match="trained on other weights.*retrain"):
        PolicyRunner.from_checkpoint(out)
    trained[0].save(CheckpointDir(out).gates_path, weights_digest=CheckpointDir(out).weights_digest())
    assert PolicyRunner.from_checkpoint(out).has_exit_gates
    # the same weights under an edited config (every tensor's shape kept) compute other features: refused too
    trained[0].save(CheckpointDir(out).gates_path, weights_digest=CheckpointDir(out).weights_digest(),
                    config_digest=CheckpointDir(out).config_digest())
    assert PolicyRunner.from_checkpoint(out).has_exit_gates
    config = json.loads(CheckpointDir(out).config_path.read_text())
    config["head"]["history"] += 1
    CheckpointDir(out).config_path.write_text(json.dumps(config))
    with pytest.raises(GateError, match="under another config.*retrain the gates"):
        PolicyRunner.from_checkpoint(out)


def write_legacy_gates(trained, path: Path) -> ExitGates:
    """A gates file as written before exit-1 gates: exits 2..N-1 only and no first_exit in its config (the
    trained gates' own weights for those exits)."""
    from safetensors.torch import save_file

    new = trained[0]
    c = new.config
    old = ExitGates(GateConfig(c.feature_dim, c.action_dim, c.num_exits, c.hidden, c.floor, first_exit=2))
    old.load_state_dict({k: v[1:] for k, v in new.state_dict().items()})  # every tensor is stacked per gate
    config = {k: v for k, v in asdict(c).items() if k != "first_exit"}
    save_file({k: v.contiguous() for k, v in old.state_dict().items()}, str(path),
              metadata={"format": GATES_FORMAT, "version": "1", "config": json.dumps(config)})
    return old


def test_gates_from_before_exit_one_gates_still_run_from_exit_two(ckpt: Path, trained, tmp_path: Path) -> None:
    from deer_vla.control import collect_exit_actions_and_scores, learned_criterion
    from deer_vla.ros.policy_backend import ConfigurationError, load_stack

    out = tmp_path / "tiny"
    shutil.copytree(ckpt, out)
    write_legacy_gates(trained, CheckpointDir(out).gates_path)
    legacy, plain = PolicyRunner.from_checkpoint(out), PolicyRunner.from_checkpoint(ckpt)
    current = PolicyRunner(plain.model, plain.tokenizer, gates=trained[0])
    assert legacy.first_gated_exit == 2 and learned_criterion(legacy) == Criterion(kind="learned", first_exit=2)
    steps = [episodes(6, 1, seed=7)[e] for e in range(6)]
    _, old_scores = collect_exit_actions_and_scores(legacy, steps)
    _, new_scores = collect_exit_actions_and_scores(current, steps)
    assert old_scores.shape == (6, 3) and new_scores.shape == (6, 4)
    np.testing.assert_allclose(old_scores, new_scores[:, 1:], rtol=1e-5)  # same gates for exits 2..N
    legacy.begin_step(steps[0][0])
    legacy.run_next_exit()
    with pytest.raises(ValueError, match="scores exits 2..N"):
        legacy.exit_score()
    # the cost of the old gates is charged from exit 2, as before
    per_gate = legacy.exit_gate_gflops
    assert legacy.cost_profile_for("learned").cost(3) - legacy.cost_profile.cost(3) == pytest.approx(2 * per_gate)
    # a thresholds file written before (no first_exit) runs on them; thresholds from exit 1 are refused
    old_file = tmp_path / "old.json"
    old_file.write_text(json.dumps({"values": [0.0, 0.0, 0.0], "criterion": {"kind": "learned"}}))
    stack = load_stack(out, old_file, "cpu", {}, criterion="learned")
    assert stack.controller.first_exit == 2
    _, rec = stack.controller.step(steps[0][0])
    assert rec.exit_used == 4 and rec.distances_from_exit == 2 and len(rec.distances) == 3
    new_file = tmp_path / "new.json"
    Thresholds(values=[1e9, 0.0, 0.0, 0.0], criterion=LEARNED).save(new_file)
    with pytest.raises(ConfigurationError, match="gates begin at exit 2.*train-gate"):
        load_stack(out, new_file, "cpu", {}, criterion="learned")


def test_train_gate_refuses_an_output_it_cannot_write_before_recording(tmp_path: Path, capsys) -> None:
    """The gates are written after minutes of recording and training: an output that cannot be written (a file in
    the way here; a read-only install on a robot) is refused at the start, in one line, not by a traceback at the
    end. The checkpoint is never loaded, so none is needed."""
    from deer_vla.train.gate import cli_main

    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "gates.safetensors"
    assert cli_main([str(tmp_path / "ckpt"), "--data", "d", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"deer-vla train-gate: cannot write to {out.parent}: ") and err.count("\n") == 1


def test_an_input_that_barely_varied_in_training_cannot_make_the_score_infinite() -> None:
    """The default's gates had a gripper-change input with std 1e-4: an unusual step standardised it to ~1e4,
    the gate predicted log-distance ~1e4, and exp() gave inf, which stopped the evaluation (and a robot's step)."""
    config = GateConfig(feature_dim=8, action_dim=4, num_exits=3)
    gates = ExitGates(config)
    with torch.no_grad():
        gates.input_std.fill_(1e-4)  # every input almost constant in training
        gates.w2.fill_(1.0)
    feature = torch.zeros(8)
    action, previous = np.array([0.0, 0.0, 0.0, 1.0]), np.array([0.0, 0.0, 0.0, -1.0])  # gripper flips
    score = gates.score(feature, action, previous, exit_index=2)
    assert np.isfinite(score) and score > 1.0  # far from training: a large distance ("go deeper"), finite
    far = gate_inputs(feature.reshape(1, -1), torch.tensor(action[None], dtype=torch.float32),
                      torch.tensor(previous[None], dtype=torch.float32), config.floor)
    assert torch.isfinite(torch.exp(gates.forward_all(far.unsqueeze(1).expand(1, 2, -1)))).all()


def test_gates_retrained_after_calibration_refuse_the_old_thresholds(gated: Path, demos: Path, tmp_path: Path,
                                                                     capsys) -> None:
    """train-gate after calibrate, on the same weights: the learned thresholds were solved on the old gates'
    scores, so the node (load_stack) and evaluate refuse them until calibrate runs again."""
    from deer_vla.commands.calibrate import cli_main as calibrate_main
    from deer_vla.evaluation.evaluator import cli_main as evaluate_main
    from deer_vla.ros.policy_backend import ConfigurationError, load_stack
    from deer_vla.train.gate import cli_main as train_gate_main

    copy = tmp_path / "ckpt"
    shutil.copytree(gated, copy)
    assert calibrate_main(["--checkpoint", str(copy), "--dataset", str(demos), "--average-budget-fraction", "0.6",
                           "--criterion", "learned", "--out", str(copy)]) == 0
    load_stack(copy, copy / "thresholds.json", "cpu", {}, 0)  # as solved: accepted
    assert train_gate_main([str(copy), "--data", str(demos), "--epochs", "2", "--seed", "7"]) == 0
    with pytest.raises(ConfigurationError, match="solved with other exit gates"):
        load_stack(copy, copy / "thresholds.json", "cpu", {}, 0)
    capsys.readouterr()
    assert evaluate_main(["--checkpoint", str(copy), "--budgets", "", "--thresholds", str(copy / "thresholds.json"),
                          "--tasks", "drawer-open", "--episodes-per-task", "1"]) == 2
    assert "solved with other exit gates" in capsys.readouterr().err


def test_the_same_gates_trained_twice_keep_the_thresholds_solved_on_them(tmp_path):
    """train-gate run again with the same seed gave bit-identical gate tensors in a file of other bytes (its
    timings in the metadata, which safetensors writes in a hash map's order), and the learned criterion's
    thresholds solved on the first were refused. The gates digest covers what the gates are; thresholds that
    record the file's bytes (calibrated before) are still accepted; retrained gates are still refused."""
    import torch

    from deer_vla.control.thresholds import Thresholds
    from deer_vla.model.checkpoint_dir import CheckpointDir

    torch.manual_seed(0)
    gates = ExitGates(GateConfig(feature_dim=8, action_dim=4, num_exits=3))
    ckpt = CheckpointDir(tmp_path)
    gates.save(ckpt.gates_path, training={"seconds": 12.3, "record_seconds": 4.5}, weights_digest="a" * 64)
    first, first_file = ckpt.gates_digest(), ckpt.gates_file_digest()
    gates.save(ckpt.gates_path, training={"record_seconds": 4.7, "seconds": 11.9}, weights_digest="a" * 64)
    assert ckpt.gates_file_digest() != first_file  # another file ...
    assert ckpt.gates_digest() == first  # ... of the same gates

    def solved_on(digest: str) -> None:
        Thresholds(values=[0.1, 0.2], gates_sha256=digest).check_solved_on(
            lambda: "w" * 64, "thresholds.json", "ckpt", ckpt.gates_digest, ckpt.gates_file_digest)

    solved_on(first)
    solved_on(ckpt.gates_file_digest())  # thresholds calibrated before record the file's bytes
    with torch.no_grad():
        next(gates.parameters()).add_(1e-3)
    gates.save(ckpt.gates_path, training={"seconds": 12.3, "record_seconds": 4.5}, weights_digest="a" * 64)
    with pytest.raises(ValueError, match="solved with other exit gates"):
        solved_on(first)
    assert ckpt.gates_digest() != first
