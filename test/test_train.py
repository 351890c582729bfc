"""Training: the DeeR objective learns, resume is exact, the CLI writes a loadable checkpoint."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fixtures import tiny_demos, tiny_train_overrides

from deer_vla.model.presets import preset_config
from deer_vla.train.config import LossWeights, load_config
from deer_vla.train.data import load_episodes
from deer_vla.train.losses import DeerObjective
from deer_vla.train.trainer import Trainer, _action_dim, cli_main
from deer_vla.train.windows import WindowDataset, make_collate

torch.set_num_threads(1)

_overrides = tiny_train_overrides  # (the name this file's many calls use)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_demos(tmp_path_factory.mktemp("demos"))




def test_steps_lower_the_loss_on_a_fixed_batch(dataset: Path, tiny_cfg) -> None:
    from deer_vla.model.policy import MultiExitPolicy
    from deer_vla.model.tokenizer import build_word_tokenizer

    torch.manual_seed(0)
    eps = load_episodes(
        dataset, tuple(tiny_cfg.cameras), int(tiny_cfg.image_size), _action_dim(tiny_cfg), int(tiny_cfg.proprio_dim)
    )
    model = MultiExitPolicy(tiny_cfg)
    tok = build_word_tokenizer([t for e in eps for t in e.instructions])
    ds = WindowDataset(eps, window=4, shift_pad=2, seed=0)
    batch = make_collate(tok)([ds[i] for i in (0, 3, len(ds) - 1)])
    obj = DeerObjective(model, LossWeights())
    obj.generator = torch.Generator()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        obj.generator.manual_seed(0)  # same exits drawn every step: the same objective each time
        loss, metrics = obj(batch)
        assert set(metrics) >= {"loss_aux", "loss_final", "loss_random_exit", "loss_split_exit"}
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[1] < losses[0]  # one step already helps
    assert losses[-1] < 0.7 * losses[0], losses


def test_refine_stage_trains_heads_only(dataset: Path, tmp_path: Path) -> None:
    cfg = load_config(None, _overrides(dataset, tmp_path / "run", **{"joint.steps": 1, "joint.warmup_steps": 0,
                                                                     "refine.steps": 2}))
    trainer = Trainer(cfg, show_progress=False)
    trainer.train(stop_at=1)
    head_ids = {id(p) for h in (trainer.model.head, trainer.model.aux_heads) for p in h.parameters()}
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p)}
    heads = {n for n, p in trainer.model.named_parameters() if id(p) in head_ids}
    assert changed and changed <= heads  # the backbone is frozen in stage 2


def test_resume_continues_exactly(dataset: Path, tmp_path: Path) -> None:
    full = Trainer(load_config(None, _overrides(dataset, tmp_path / "a")), show_progress=False)
    hist_a = full.train()
    assert [h["step"] for h in hist_a] == [1, 2, 3, 4, 5]

    cut = Trainer(load_config(None, _overrides(dataset, tmp_path / "b")), show_progress=False)
    cut.train(stop_at=4)  # mid refine stage
    saved_opt = {k: v.clone() for k, v in _opt_tensors(cut.optimizer).items()}
    resumed = Trainer(load_config(None, _overrides(dataset, tmp_path / "b")), resume=True, show_progress=False)
    assert resumed.start_step == 4
    hist_b = resumed.train(stop_at=4)  # nothing to do, but the stage + optimizer state are rebuilt
    assert hist_b[-1]["step"] == 4
    restored = _opt_tensors(resumed.optimizer)
    assert restored.keys() == saved_opt.keys() and all(torch.equal(saved_opt[k], restored[k]) for k in saved_opt)
    resumed.train()
    a = dict(full.model.named_parameters())
    for name, p in resumed.model.named_parameters():
        torch.testing.assert_close(p, a[name], rtol=1e-5, atol=1e-6, msg=f"{name} differs after resume")
    assert (tmp_path / "b" / "config.json").is_file()


def test_a_run_stopped_between_log_rows_and_resumed_logs_the_uninterrupted_rows(dataset: Path, tmp_path: Path,
                                                                                monkeypatch) -> None:
    """The sums behind a log row were not in the checkpoint: a run stopped (--stop-at, a kill) between two rows
    logged an extra row at the stop and, resumed, a next row averaging only the steps after it. Its weights were
    the uninterrupted run's, its training log not."""
    import json as json_
    import types

    from deer_vla.train import trainer as trainer_module

    def rows(out: Path) -> list[dict]:
        return [json_.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]

    # a clock that reads one second per step trained: every row's it_per_s is exactly 1, unless a resumed row counts
    # steps of the stopped process over this process's time (its first row read 7x the true rate)
    running: list[Trainer] = []
    clock = types.SimpleNamespace(**{**vars(trainer_module.time), "perf_counter": lambda: float(running[-1].step)})

    def run(cfg, stop_at: int | None = None, resume: bool = False) -> None:
        running.append(Trainer(cfg, resume=resume, show_progress=False))
        running[-1].train(stop_at=stop_at)

    settings = {"log_every": 2, "checkpoint_every": 1}
    monkeypatch.setattr(trainer_module, "time", clock)
    run(load_config(None, _overrides(dataset, tmp_path / "whole", **settings)))
    whole = rows(tmp_path / "whole")
    assert [(r["step"], r["stage"]) for r in whole] == [(2, "joint"), (3, "joint"), (4, "refine"), (5, "refine")]
    assert {r["it_per_s"] for r in whole} == {1.0}
    for stop in (1, 3):  # between two rows of a stage; at the stage boundary with a joint step pending
        out = tmp_path / f"stop{stop}"
        cfg = load_config(None, _overrides(dataset, out, **settings))
        run(cfg, stop_at=stop)
        run(cfg, resume=True)
        assert rows(out) == whole, f"stopped at {stop}"


def test_a_resume_heals_a_torn_final_save_refuses_other_settings_and_logs_each_step_once(dataset: Path,
                                                                                         tmp_path: Path) -> None:
    """A kill during the final save left no (or half a) final model, and --resume said "nothing to do"; a resume
    with other settings (window, steps, data) trained on silently and the saved config described neither run; the
    rows logged after the last checkpoint by the stopped run were logged again; a cost profile measured on the
    weights of an earlier run in the same folder stayed beside the new ones."""
    import json as json_

    from deer_vla.model.checkpoint import CheckpointDir, load_checkpoint

    out = tmp_path / "run"
    (out).mkdir()
    (out / "profile.json").write_text("{}")  # an earlier run's, in the folder the new run writes its model to
    (out / "model.safetensors").write_bytes(b"earlier weights")
    cfg = load_config(None, _overrides(dataset, out, checkpoint_every=2))
    first = Trainer(cfg, show_progress=False)
    first.train()
    assert not (out / "profile.json").exists()  # other weights than the profile's
    logged = (out / "train_log.jsonl").read_text()
    (out / "model.safetensors").write_bytes(b"torn")
    (out / "config.json").unlink()
    again = Trainer(cfg, resume=True, show_progress=False)
    assert again.train() and [h["step"] for h in again.history] == [1, 2, 3, 4, 5]
    model, _ = load_checkpoint(out)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p, dict(first.model.named_parameters())[name], msg=name)
    (out / "profile.json").write_text("{}")  # measured on these weights: writing the same ones again keeps it
    Trainer(cfg, resume=True, show_progress=False).train()
    assert (out / "profile.json").exists() and CheckpointDir(out).weights_path.is_file()
    assert json_.loads((out / "train_history.json").read_text())[-1]["step"] == 5
    # a resume from step 4 re-logs step 5 once, not twice
    cut = load_config(None, _overrides(dataset, tmp_path / "cut", checkpoint_every=2))
    Trainer(cut, show_progress=False).train(stop_at=4)
    with (tmp_path / "cut" / "train_log.jsonl").open("a") as f:
        f.write(json_.dumps({"step": 5, "loss": 9.0}) + "\n" + '{"step": 6, "lo')  # the stopped run's, and a torn row
    Trainer(cut, resume=True, show_progress=False).train()
    steps = [json_.loads(r)["step"] for r in (tmp_path / "cut" / "train_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5] and logged.count("\n") == 5
    other = load_config(None, _overrides(dataset, tmp_path / "cut", window=3, checkpoint_every=2, num_threads=1))
    with pytest.raises(ValueError, match=r"cannot resume from .*other settings \(window: 4 -> 3\)"):
        Trainer(other, resume=True, show_progress=False)


def _opt_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    return {f"{pid}.{k}": v for pid, st in opt.state_dict()["state"].items() for k, v in st.items()
            if isinstance(v, torch.Tensor)}


def test_a_diverging_run_ends_in_one_line_and_keeps_its_checkpoints(dataset: Path, tmp_path: Path, capsys) -> None:
    """A NaN loss ended `deer-vla train` in a FloatingPointError traceback."""
    out = tmp_path / "diverged"
    argv = ["--no-progress", *sum((["--set", o] for o in _overrides(dataset, out, **{"joint.lr": 1e30})), [])]
    assert cli_main(argv) == 1
    err = capsys.readouterr().err
    assert "deer-vla train: loss became nan at step" in err and "lower the learning rate" in err
    assert "Traceback" not in err and ("no step checkpoint was written before it" in err
                                       or f"kept (the last: {out / 'checkpoints'}" in err)


def test_cli_trains_and_writes_a_loadable_checkpoint(dataset: Path, tmp_path: Path, capsys) -> None:
    from deer_vla.model.checkpoint import load_checkpoint

    out = tmp_path / "cli"
    assert cli_main(["--no-progress", *sum((["--set", o] for o in _overrides(dataset, out)), [])]) == 0
    model, tok = load_checkpoint(out)
    assert model.num_exits >= 2 and tok is not None
    assert (out / "train_history.json").is_file() and (out / "checkpoints").is_dir()
    assert "trained 5 steps" in capsys.readouterr().out
    # a fresh run into the same directory is refused without --overwrite, and with it starts a clean log and
    # checkpoint set
    again = ["--no-progress", *sum((["--set", o] for o in _overrides(dataset, out, **{"refine.steps": 1})), [])]
    assert cli_main(again) == 2 and "holds an earlier run" in capsys.readouterr().err
    assert cli_main([*again, "--overwrite"]) == 0
    assert len((out / "train_log.jsonl").read_text().splitlines()) == 4
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000002", "step_00000004"]
    # impossible configs fail before any model is built
    assert cli_main(["--set", "window=1"]) == 2
    assert "window" in capsys.readouterr().err


def test_checkpoints_record_the_instructions_they_were_trained_on(dataset: Path, tmp_path: Path, caplog) -> None:
    """extra.json lists each task's trained wording (inherited across init_checkpoint), and evaluate warns when
    the held-out wording it would measure is in that list."""
    import json

    from deer_vla.evaluation.evaluator import warn_about_instruction_record
    from deer_vla.model.checkpoint_dir import CheckpointDir
    from deer_vla.sim.tasks import get_task

    first, second = tmp_path / "first", tmp_path / "second"
    assert cli_main(["--no-progress", *sum((["--set", o] for o in _overrides(dataset, first)), [])]) == 0
    record = json.loads((first / "extra.json").read_text())["training"]["instructions"]
    drawer = get_task("drawer-open")
    assert sorted(record) == ["drawer-close", "drawer-open"]
    assert set(record["drawer-open"]) == {"drawer open now", *drawer.train_instructions}
    assert not set(record["drawer-open"]) & set(drawer.heldout_instructions)
    with caplog.at_level("WARNING", logger="deer_vla.evaluate"):
        warn_about_instruction_record(CheckpointDir(first), ["drawer-open", "drawer-close"])
    assert not caplog.records, caplog.text

    # a fine-tune keeps what its starting point was trained on, including wording this run never drew
    extra = json.loads((first / "extra.json").read_text())
    extra["training"]["instructions"]["drawer-open"].append(drawer.heldout_instructions[0])
    (first / "extra.json").write_text(json.dumps(extra))
    assert cli_main(["--no-progress", *sum((["--set", o] for o in _overrides(
        dataset, second, model_preset="null", init_checkpoint=str(first), **{"joint.steps": 2, "refine.steps": 1})),
        [])]) == 0
    inherited = json.loads((second / "extra.json").read_text())["training"]["instructions"]
    assert drawer.heldout_instructions[0] in inherited["drawer-open"]
    with caplog.at_level("WARNING", logger="deer_vla.evaluate"):
        warn_about_instruction_record(CheckpointDir(second), ["drawer-open", "drawer-close"])
    assert any("held-out" in r.message and drawer.heldout_instructions[0] in r.message for r in caplog.records)
    # a record that is not a list of strings is no record, not a crash
    extra["training"]["instructions"] = {"drawer-open": [{}, None, 3], "drawer-close": "text"}
    (second / "extra.json").write_text(json.dumps(extra))
    caplog.clear()
    with caplog.at_level("WARNING", logger="deer_vla.evaluate"):
        warn_about_instruction_record(CheckpointDir(second), ["drawer-open", "drawer-close"])
    assert not caplog.records, caplog.text


def test_data_mismatch_is_a_clear_error(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="window"):
        Trainer(load_config(None, _overrides(dataset, tmp_path / "w", window=40)), show_progress=False)
    with pytest.raises(FileNotFoundError, match="not found"):
        Trainer(load_config(None, _overrides(tmp_path / "missing", tmp_path / "m")), show_progress=False)


def test_training_starts_from_a_checkpoint_built_from_local_hf_backbones(dataset: Path, tmp_path: Path) -> None:
    """init_checkpoint: pretrained weights + tokenizer start the run; freeze_lm_layers keeps the decoder fixed."""
    import transformers

    from deer_vla.model.checkpoint import load_checkpoint, save_checkpoint
    from deer_vla.model.pretrained import policy_from_pretrained
    from deer_vla.model.tokenizer import build_word_tokenizer

    torch.manual_seed(0)
    lm_dir = tmp_path / "hf_llama"
    transformers.LlamaForCausalLM(transformers.LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=64, vocab_size=128, pad_token_id=0)).save_pretrained(lm_dir)
    build_word_tokenizer(["open the drawer", "press the button"]).save_pretrained(lm_dir)
    model, tok = policy_from_pretrained(lm_dir, base=preset_config("tiny"))
    init = save_checkpoint(model, tok, tmp_path / "init")
    start = {n: p.detach().clone() for n, p in model.named_parameters()}

    overrides = _overrides(dataset, tmp_path / "run", **{"refine.steps": 0, "joint.steps": 2})
    overrides = [o for o in overrides if not o.startswith("model_preset=")]
    cfg = load_config(None, [*overrides, f"init_checkpoint={init}", "freeze_lm_layers=true"])
    assert cfg.model_preset is None
    trainer = Trainer(cfg, show_progress=False)
    trainer.train()
    trained, trained_tok = load_checkpoint(tmp_path / "run")
    assert trained.config.lm.path == str(lm_dir) and trained_tok.get_vocab() == tok.get_vocab()
    after = dict(trained.named_parameters())
    lm_layers = {n for n in start if n.startswith("lm.layers.")}
    assert lm_layers and all(torch.equal(start[n], after[n]) for n in lm_layers)  # decoder kept as pretrained
    moved = {n for n in start if not torch.equal(start[n], after[n])}
    assert any(n.startswith("xattn.") for n in moved) and any(n.startswith("resampler.") for n in moved)
    # both a model and an init checkpoint, or a missing one, are clear errors
    from deer_vla.train.config import ConfigError

    with pytest.raises(ConfigError, match="exactly one"):
        load_config(None, [f"init_checkpoint={init}", "model_preset=tiny"])
    with pytest.raises(FileNotFoundError, match="init_checkpoint"):
        Trainer(load_config(None, [*overrides, f"init_checkpoint={tmp_path / 'nope'}"]), show_progress=False)


def test_init_checkpoint_takes_a_shipped_name(dataset: Path, tmp_path: Path) -> None:
    """init_checkpoint: "default" is the shipped checkpoint from any working directory; an unknown name lists them."""
    import json

    from deer_vla.model.shipped import UnknownCheckpointError, resolve_checkpoint
    from deer_vla.train.trainer import build_policy_config

    overrides = [o for o in _overrides(dataset, tmp_path / "run") if not o.startswith("model_preset=")]
    pcfg = build_policy_config(load_config(None, [*overrides, "init_checkpoint=default"]))
    shipped = json.loads((resolve_checkpoint("default") / "config.json").read_text())
    assert pcfg.lm.hf_config["num_hidden_layers"] == shipped["lm"]["hf_config"]["num_hidden_layers"]
    with pytest.raises(UnknownCheckpointError, match="shipped: .*default"):
        build_policy_config(load_config(None, [*overrides, "init_checkpoint=no_such_name"]))


def test_init_overrides_grow_the_resampler_and_keep_the_trained_weights(dataset: Path, tmp_path: Path) -> None:
    """init_overrides: more visual tokens per camera from a trained checkpoint; the trained latents and every
    unchanged tensor carry over, the new latents start near trained ones; a change that cannot carry is refused."""
    from deer_vla.model.checkpoint import CheckpointError, load_checkpoint

    cli_main([f"--set={o}" for o in _overrides(dataset, tmp_path / "base", **{"refine.steps": 0})])
    base, _ = load_checkpoint(tmp_path / "base")
    n_lat = base.resampler.latents.shape[0]
    overrides = [o for o in _overrides(dataset, tmp_path / "grown", **{"refine.steps": 0, "joint.steps": 2})
                 if not o.startswith("model_preset=")]
    cfg = load_config(None, [*overrides, f"init_checkpoint={tmp_path / 'base'}",
                             f"init_overrides.resampler.num_latents={2 * n_lat + 1}"])
    trainer = Trainer(cfg, show_progress=False)
    grown = trainer.model.resampler.latents.detach()
    trained = base.resampler.latents.detach()
    assert grown.shape[0] == 2 * n_lat + 1
    assert torch.equal(grown[:n_lat], trained)
    # new rows are copies of trained rows plus noise: closer to their source than to a fresh init's scale
    extra = grown[n_lat:]
    assert not torch.equal(extra[:n_lat], trained)
    assert (extra[:n_lat] - trained).norm() < 0.5 * trained.norm()
    assert torch.equal(trainer.model.resampler.proj.weight, base.resampler.proj.weight)
    trainer.train()
    after, _ = load_checkpoint(tmp_path / "grown")
    assert after.config.resampler.num_latents == 2 * n_lat + 1
    # a width change cannot carry the weights: refused with the tensors named
    width = [*overrides, f"init_checkpoint={tmp_path / 'base'}", "init_overrides.lm.hf_config.hidden_size=48"]
    with pytest.raises(CheckpointError, match="cannot carry weights.*->"):
        Trainer(load_config(None, width), show_progress=False)
    # an invalid override names the setting; overrides without an init checkpoint are a config error
    with pytest.raises(ValueError, match="init_overrides"):
        Trainer(load_config(None, [*overrides, f"init_checkpoint={tmp_path / 'base'}",
                                   "init_overrides.resampler.num_latents=0"]), show_progress=False)
    from deer_vla.train.config import ConfigError

    with pytest.raises(ConfigError, match="init_overrides"):
        load_config(None, [*overrides, "model_preset=tiny", "init_overrides.resampler.num_latents=4"])


def test_init_overrides_image_size_resizes_the_patch_positions_over_the_grid(dataset: Path, tmp_path: Path) -> None:
    """A higher image size from a trained checkpoint: the CNN carries over unchanged and the resampler's
    per-patch positions are interpolated over the finer grid (each keeps its place), not copied row by row."""
    from deer_vla.model.checkpoint import load_checkpoint, resize_patch_grid

    cli_main([f"--set={o}" for o in _overrides(dataset, tmp_path / "base", **{"refine.steps": 0})])
    base, _ = load_checkpoint(tmp_path / "base")
    size = int(base.config.image_size)
    overrides = [o for o in _overrides(dataset, tmp_path / "big", **{"refine.steps": 0, "joint.steps": 2})
                 if not o.startswith("model_preset=")]
    trainer = Trainer(load_config(None, [*overrides, f"init_checkpoint={tmp_path / 'base'}",
                                         f"init_overrides.image_size={2 * size}"]), show_progress=False)
    old, new = base.resampler.pos.detach(), trainer.model.resampler.pos.detach()
    side = int(round(old.shape[0] ** 0.5))
    assert new.shape == (4 * old.shape[0], old.shape[1])
    assert torch.allclose(new, resize_patch_grid(old, 2 * side))
    # the top-left 2x2 patches of the finer grid lie inside the old top-left patch: nearest to it of all
    grid = new.view(2 * side, 2 * side, -1)
    corner = grid[:2, :2].reshape(4, -1)
    dist = torch.cdist(corner, old)
    assert (dist.argmin(dim=1) == 0).all()
    for name, tensor in base.vision.state_dict().items():
        assert torch.equal(trainer.model.vision.state_dict()[name], tensor)
    trainer.train()
    after, _ = load_checkpoint(tmp_path / "big")
    assert after.config.image_size == 2 * size


def test_resize_patch_grid_keeps_the_layout_of_the_grid() -> None:
    from deer_vla.model.checkpoint import resize_patch_grid

    cols = torch.arange(4.0).repeat(4)  # value = column index on a 4x4 grid
    table = torch.stack([cols, torch.ones(16)], dim=1)
    assert torch.equal(resize_patch_grid(table, 4), table)
    up = resize_patch_grid(table, 8).view(8, 8, 2)
    assert torch.allclose(up[..., 1], torch.ones(8, 8))  # a constant stays constant
    assert torch.allclose(up[..., 0], up[0, :, 0].expand(8, 8))  # each column keeps one value down the rows
    assert (up[0, 1:, 0] >= up[0, :-1, 0]).all() and up[0, -1, 0] > up[0, 0, 0]  # and rises left to right
    down = resize_patch_grid(table, 2).view(2, 2, 2)
    assert torch.allclose(down[..., 0], torch.tensor([[0.5, 2.5], [0.5, 2.5]]))
    with pytest.raises(ValueError, match="not a square grid"):
        resize_patch_grid(torch.zeros(5, 2), 2)


@pytest.mark.parametrize(("src_channels", "dst_channels"), [([8, 16], [8, 16, 16]), ([8, 16, 16], [8, 16])])
def test_a_cnn_stage_more_or_fewer_resizes_the_patch_positions_at_the_same_image_size(
        src_channels: list[int], dst_channels: list[int]) -> None:
    """The patch grid also changes with the CNN's stage count (image size unchanged): a stage more halves
    its side, a stage fewer doubles it. The positions are interpolated over the new grid either way (before,
    a coarser grid was refused and a finer one filled by copying rows, each in the wrong place); the
    stages both share carry over, the added one starts fresh, the removed one is dropped."""
    from deer_vla.model.checkpoint import resize_patch_grid, transfer_weights
    from deer_vla.model.config import PolicyConfig
    from deer_vla.model.policy import MultiExitPolicy
    from deer_vla.model.presets import preset_config

    def build(channels: list[int]) -> MultiExitPolicy:
        data = preset_config("tiny").model_dump()
        data["vision"]["channels"] = channels
        return MultiExitPolicy(PolicyConfig.model_validate(data))

    torch.manual_seed(0)
    source, target = build(src_channels), build(dst_channels)
    report = transfer_weights(source, target)
    old, new = source.resampler.pos.detach(), target.resampler.pos.detach()
    old_side, new_side = int(round(old.shape[0] ** 0.5)), int(round(new.shape[0] ** 0.5))
    assert {old_side, new_side} == {4, 8} and new_side != old_side
    assert report["resized"] == ["resampler.pos"] and "resampler.pos" not in report["grown"]
    assert torch.allclose(new, resize_patch_grid(old, new_side))
    src_cnn, dst_cnn = source.vision.state_dict(), target.vision.state_dict()
    shared = [k for k in src_cnn if k in dst_cnn]
    assert shared and all(torch.equal(src_cnn[k], dst_cnn[k]) for k in shared)
    extra = "new" if len(dst_channels) > len(src_channels) else "dropped"
    assert any(k.startswith("vision.") for k in report[extra])


@pytest.mark.parametrize("source", ["first_exit", "proprio", "none"])
def test_a_history_source_trains_every_head_term_on_the_runners_histories(source: str, dataset: Path,
                                                                           tmp_path: Path) -> None:
    """head.history_source (set by init_overrides): each shared-head term reads exit 1's features (first_exit)
    or zero features (proprio: past steps' proprioception alone) as the history and its own exit only at the
    current step, and the setting reaches the saved checkpoint."""
    from deer_vla.model.checkpoint import load_checkpoint
    from deer_vla.train.losses import action_loss

    cli_main([f"--set={o}" for o in _overrides(dataset, tmp_path / "base", **{"refine.steps": 0})])
    overrides = [o for o in _overrides(dataset, tmp_path / "first", **{"refine.steps": 0, "joint.steps": 2})
                 if not o.startswith("model_preset=")]
    cfg = load_config(None, [*overrides, f"init_checkpoint={tmp_path / 'base'}",
                             f"init_overrides.head.history_source={source}"])
    trainer = Trainer(cfg, show_progress=False)
    model = trainer.model
    assert model.config.head.history_source == source
    batch = make_collate(trainer.tokenizer)([trainer.dataset[i] for i in (0, 1)])
    weights = LossWeights(aux=0, random_exit=0, split_exit=0)
    with torch.no_grad():
        loss, _ = DeerObjective(model, weights)(batch)
        feats = DeerObjective(model, weights).window_features(batch)
        n = feats.shape[2]
        history = feats[:, :, 0] if source == "first_exit" else torch.zeros_like(feats[:, :, 0])
        if source == "none":  # every step alone: the window's first step of a window that starts there
            out = model.head.forward_per_step(feats[:, :, n - 1], batch.proprio)
            alone = model.head(feats[:, 2:3, n - 1], batch.proprio[:, 2:3])
            torch.testing.assert_close(out.motion[:, 2:3], alone.motion)
        else:
            out = model.head.forward_over_history(history, feats[:, :, n - 1], batch.proprio)
        expected = action_loss(out.motion, out.gripper_logit, batch.actions, weights)
        plain = model.head(feats[:, :, n - 1], batch.proprio)
        committed = action_loss(plain.motion, plain.gripper_logit, batch.actions, weights)
    torch.testing.assert_close(loss, expected)
    assert not torch.isclose(loss, committed)
    trainer.train()
    trained, _ = load_checkpoint(tmp_path / "first")
    assert trained.config.head.history_source == source
    with pytest.raises(ValueError, match="history_source"):
        Trainer(load_config(None, [*overrides, f"init_checkpoint={tmp_path / 'base'}",
                                   "init_overrides.head.history_source=exit_2"]), show_progress=False)


def test_past_frames_train_each_step_on_the_frames_before_it_in_its_window(dataset: Path, tmp_path: Path) -> None:
    """init_overrides.past_frames=2 on a checkpoint without them: frame_embed is new, step t's features read the
    frames of steps t-2..t of its window (not later ones), and training saves a checkpoint that keeps them."""
    from deer_vla.model.checkpoint import load_checkpoint

    cli_main([f"--set={o}" for o in _overrides(dataset, tmp_path / "base", **{"refine.steps": 0})])
    overrides = [o for o in _overrides(dataset, tmp_path / "frames", **{"refine.steps": 0, "joint.steps": 2})
                 if not o.startswith("model_preset=")]
    trainer = Trainer(load_config(None, [*overrides, f"init_checkpoint={tmp_path / 'base'}",
                                         "init_overrides.past_frames=2"]), show_progress=False)
    model = trainer.model
    assert model.config.past_frames == 2 and model.frame_embed is not None
    for block in model.xattn.values():  # open gates, so the frames reach the features
        torch.nn.init.constant_(block.attn_gate, 0.7)
    batch = make_collate(trainer.tokenizer)([trainer.dataset[i] for i in (0, 1)])
    objective = DeerObjective(model, LossWeights())
    cam = model.config.cameras[0]
    with torch.no_grad():
        feats = objective.window_features(batch)  # (B, T=4, N, D)
        batch.images[cam][:, 1] = 1.0 - batch.images[cam][:, 1]  # change step 1's frame in every window
        changed = objective.window_features(batch)
    moved = (changed - feats).abs().amax(dim=(0, 2, 3))
    assert float(moved[0]) == 0.0  # step 0 reads no later frame
    assert bool((moved[1:] > 1e-4).all())  # step 1 itself, steps 2 and 3 through their past frames
    trainer.train()
    trained, _ = load_checkpoint(tmp_path / "frames")
    assert trained.config.past_frames == 2
    assert trained.frame_embed is not None


def test_random_exit_weights_draw_the_exits_they_weight(tiny_cfg) -> None:
    from deer_vla.model.policy import MultiExitPolicy

    n = tiny_cfg.num_exits
    model = MultiExitPolicy(tiny_cfg)
    weights = [0.0] * n
    weights[0], weights[-1] = 3.0, 1.0  # exit 1 three times as often as the last, no other exit
    obj = DeerObjective(model, LossWeights(random_exit_weights=weights))
    obj.generator = torch.Generator().manual_seed(0)
    draws = obj._draw_exits(n, (400, 10), torch.device("cpu"))
    assert draws.shape == (400, 10)
    assert set(draws.unique().tolist()) == {0, n - 1}
    assert 0.7 < float((draws == 0).float().mean()) < 0.8
    # under DDP each rank gets its share of the global draw, as with the uniform draws
    obj.generator.manual_seed(1)
    global_draw = obj._draw_exits(n, (8, 4), torch.device("cpu"))
    parts = []
    for rank in range(2):
        obj.shard = (rank, 2)
        obj.generator.manual_seed(1)
        parts.append(obj._draw_exits(n, (4, 4), torch.device("cpu")))
    assert torch.equal(torch.cat(parts), global_draw)
    # None keeps DeeR's uniform draws, bit for bit the same as before the option
    uniform = DeerObjective(model, LossWeights())
    uniform.generator = torch.Generator().manual_seed(2)
    expected = torch.randint(0, n, (3, 5), generator=torch.Generator().manual_seed(2))
    assert torch.equal(uniform._draw_exits(n, (3, 5), torch.device("cpu")), expected)


def test_random_exit_weights_are_checked_before_training(dataset: Path, tmp_path: Path) -> None:
    from deer_vla.core.config_io import ConfigError

    for bad in ([0.0, 0.0], [1.0, -1.0], [float("nan"), 1.0]):
        with pytest.raises(ConfigError, match="random_exit_weights"):
            load_config(None, _overrides(dataset, tmp_path / "bad", **{"loss.random_exit_weights": str(bad)}))
    cfg = load_config(None, _overrides(dataset, tmp_path / "run", **{"loss.random_exit_weights": "[1.0]"}))
    with pytest.raises(ConfigError, match="1 weights; the model has"):
        Trainer(cfg, show_progress=False)


def test_windows_shift_their_frames_without_keeping_a_padded_copy(dataset: Path, tiny_cfg) -> None:
    """Random shift (DrQ): each window is a crop of its replicate-padded frames, one offset per window and
    camera, drawn the same for the same (seed, epoch, index); the data set holds the loaded frames, not a copy."""
    import numpy as np

    from deer_vla.train.windows import random_shift

    def pad_frames(frames: torch.Tensor, pad: int) -> torch.Tensor:  # the reference: replicate padding
        return torch.nn.functional.pad(frames.float(), (pad, pad, pad, pad), mode="replicate").to(torch.uint8)

    eps = load_episodes(
        dataset, tuple(tiny_cfg.cameras), int(tiny_cfg.image_size), _action_dim(tiny_cfg), int(tiny_cfg.proprio_dim)
    )
    pad, window = 3, 4
    ds = WindowDataset(eps, window=window, shift_pad=pad, seed=5)
    for cam, frames in eps[0].images.items():
        assert ds.episodes[0].images[cam].data_ptr() == frames.data_ptr()
    size = int(tiny_cfg.image_size)
    offsets = set()
    for i in range(0, len(ds), max(1, len(ds) // 12)):
        e, start = ds.index[i]
        item = ds[i]
        assert torch.equal(item["images"]["static"], ds[i]["images"]["static"])  # reproducible draw
        for cam, crop in item["images"].items():
            assert crop.shape == (window, 3, size, size) and crop.dtype == torch.uint8
            padded = pad_frames(eps[e].images[cam], pad)[start:start + window]
            hits = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                    if torch.equal(padded[..., dy:dy + size, dx:dx + size], crop)]
            assert hits, "a window is not a crop of its padded frames"
            offsets.add(hits[0])
    assert len(offsets) > 1  # the offset is drawn, not fixed
    # the extreme offsets on a 2 x 2 frame: the corner pixel replicated into the padding
    frame = torch.from_numpy(np.arange(4, dtype=np.uint8).reshape(1, 1, 2, 2)).expand(1, 3, 2, 2)

    class Fixed:  # stands in for the generator: draws the given offsets
        def __init__(self, dy: int, dx: int) -> None:
            self.offsets = np.array([dy, dx])

        def integers(self, low: int, high: int, size: int) -> np.ndarray:
            assert (low, high, size) == (0, 3, 2)
            return self.offsets

    assert random_shift(frame, 1, Fixed(0, 0))[0, 0].tolist() == [[0, 0], [0, 0]]
    assert random_shift(frame, 1, Fixed(2, 2))[0, 0].tolist() == [[3, 3], [3, 3]]
    assert random_shift(frame, 1, Fixed(1, 1))[0, 0].tolist() == [[0, 1], [2, 3]]  # the centre: unshifted
    assert random_shift(frame, 0, Fixed(2, 2)) is frame


def test_wording_consistency_pulls_exits_on_a_paraphrase_toward_the_full_model_on_the_recorded_wording(
    dataset: Path, tiny_cfg
) -> None:
    from deer_vla.model.policy import MultiExitPolicy
    from deer_vla.model.tokenizer import build_word_tokenizer

    torch.manual_seed(0)
    eps = load_episodes(
        dataset, tuple(tiny_cfg.cameras), int(tiny_cfg.image_size), _action_dim(tiny_cfg), int(tiny_cfg.proprio_dim)
    )
    model = MultiExitPolicy(tiny_cfg)
    items = [WindowDataset(eps, window=4, shift_pad=2, seed=0)[i] for i in (0, 3)]
    assert [it["anchor"] for it in items] == [eps[0].instructions[0]] * 2  # the recorded instruction, not a draw
    for it in items:  # a wording the recorded one is not
        it["instruction"] = "kindly " + it["anchor"] + " right away"
    tok = build_word_tokenizer([t for it in items for t in (it["instruction"], it["anchor"])])
    batch = make_collate(tok, anchor=True)(items)
    assert batch.anchor_ids is not None and not torch.equal(batch.anchor_ids, batch.input_ids)
    n = tiny_cfg.num_exits
    only_exit_1 = [1.0] + [0.0] * (n - 1)
    obj = DeerObjective(model, LossWeights(aux=0, final=0, random_exit=0, split_exit=0, wording_consistency=1.0,
                                           random_exit_weights=only_exit_1))
    obj.generator = torch.Generator()

    def gap() -> float:  # exit 1 on the paraphrase vs the deepest exit on the recorded wording (RMS motion)
        with torch.no_grad():
            student = model.head(obj.window_features(batch)[:, :, 0], batch.proprio).motion
            teacher = model.head(obj.window_features(batch, anchor=True)[:, :, n - 1], batch.proprio).motion
        return float((student - teacher).pow(2).mean().sqrt())

    obj.generator.manual_seed(0)
    loss, metrics = obj(batch)
    assert set(metrics) >= {"loss_wording_consistency"} and "loss_random_exit" not in metrics
    loss.backward()
    # the teacher pass has no gradient: layers only the deepest exit runs get none from exit 1's term
    deepest_only = [p for name, p in model.named_parameters() if name.startswith(f"lm.layers.{n - 1}.")]
    assert deepest_only and all(p.grad is None or not p.grad.any() for p in deepest_only)
    before = gap()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(10):
        opt.zero_grad()
        obj.generator.manual_seed(0)
        obj(batch)[0].backward()
        opt.step()
    assert gap() < 0.5 * before
    # without the recorded instructions in the batch the term says what is missing
    with pytest.raises(ValueError, match="recorded instructions"):
        obj(make_collate(tok)(items))


def test_wording_consistency_off_leaves_the_batches_and_the_loss_as_before(dataset: Path, tiny_cfg) -> None:
    from deer_vla.model.policy import MultiExitPolicy
    from deer_vla.model.tokenizer import build_word_tokenizer

    eps = load_episodes(
        dataset, tuple(tiny_cfg.cameras), int(tiny_cfg.image_size), _action_dim(tiny_cfg), int(tiny_cfg.proprio_dim)
    )
    model = MultiExitPolicy(tiny_cfg)
    tok = build_word_tokenizer([t for e in eps for t in e.instructions])
    items = [WindowDataset(eps, window=4, shift_pad=2, seed=0)[i] for i in (0, 3)]
    plain, with_anchor = make_collate(tok)(items), make_collate(tok, anchor=True)(items)
    assert plain.anchor_ids is None and with_anchor.anchor_ids is not None
    obj = DeerObjective(model, LossWeights())
    obj.generator = torch.Generator()
    out = []
    for batch in (plain, with_anchor):
        obj.generator.manual_seed(0)
        loss, metrics = obj(batch)
        assert "loss_wording_consistency" not in metrics
        out.append(float(loss.detach()))
    assert out[0] == out[1]


def test_a_run_with_wording_consistency_logs_the_term_in_both_stages(dataset: Path, tmp_path: Path) -> None:
    cfg = load_config(None, _overrides(dataset, tmp_path / "wc", **{"loss.wording_consistency": 2.0,
                                                                     "instruction_noise": "{}"}))
    hist = Trainer(cfg, show_progress=False).train()
    assert {h["stage"] for h in hist} == {"joint", "refine"}
    assert all(h["loss_wording_consistency"] >= 0 for h in hist)


def test_a_device_is_checked_by_name_then_on_this_machine(dataset: Path, tmp_path: Path) -> None:
    from deer_vla.core.config_io import ConfigError
    from deer_vla.train.trainer import DistInfo, resolve_device

    for bad in ("cudax", "cuda:x", "gpu"):  # "cudax" passed as "starts with cuda" and failed deep in torch
        with pytest.raises(ConfigError, match=r"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"):
            load_config(None, _overrides(dataset, tmp_path / "x", device=bad))
    cfg = load_config(None, _overrides(dataset, tmp_path / "x", device="cuda:99"))  # no machine here has 100
    with pytest.raises(ConfigError, match=r"cuda:99"):
        resolve_device(cfg, DistInfo())


def test_data_loader_workers_train_exactly_as_the_main_process(dataset: Path, tmp_path: Path) -> None:
    """num_workers > 0 (to overlap the data windows with a GPU's steps) draws the same windows, shifts and
    wordings: each window's randomness is seeded by (seed, epoch, index), not by the process that builds it."""
    main = Trainer(load_config(None, _overrides(dataset, tmp_path / "main")), show_progress=False)
    main.train()
    workers = Trainer(load_config(None, _overrides(dataset, tmp_path / "workers", num_workers=2)),
                      show_progress=False)
    workers.train()
    a = dict(main.model.named_parameters())
    for name, p in workers.model.named_parameters():
        torch.testing.assert_close(p, a[name], rtol=1e-5, atol=1e-6, msg=f"{name} differs with 2 loader workers")
    assert [round(h["loss"], 5) for h in workers.history] == [round(h["loss"], 5) for h in main.history]


def test_training_resizes_dataset_frames_to_exactly_the_pixels_the_policy_sees_at_run_time() -> None:
    """A data set whose frames are not the model's size trains on what the runner feeds the model: torch's
    area/bilinear differ from the runner's cv2 by up to 55/255 on odd aspect ratios."""
    import numpy as np

    from deer_vla.data.importing import resize_square
    from deer_vla.model.preprocess import images_to_tensor
    from deer_vla.train.windows import resize_frames

    rng = np.random.default_rng(0)
    for h, w in ((48, 90), (200, 120), (64, 64), (17, 33)):
        frames = rng.integers(0, 256, size=(3, h, w, 3), dtype=np.uint8)
        trained = resize_frames(frames, 64)
        assert trained.dtype == torch.uint8 and trained.shape == (3, 3, 64, 64)
        for t in range(3):
            seen = images_to_tensor([frames[t]], 64)[0].mul(255).round().to(torch.uint8)
            assert torch.equal(trained[t], seen), (h, w, (trained[t].int() - seen.int()).abs().max())
        imported = torch.from_numpy(resize_square(frames, 64)).permute(0, 3, 1, 2)
        assert torch.equal(imported, trained)


def test_training_windows_never_noise_an_instruction_into_a_heldout_or_another_tasks_one() -> None:
    """The windows' instruction noise could drop "side" from one task's "push the side handle down" and
    train it under the other task's "push the handle down", or turn it into the held-out "handle down"."""
    import numpy as np

    from deer_vla.train.instruction_noise import InstructionNoise
    from deer_vla.train.windows import EpisodeArrays

    def episode(task: str, text: str) -> EpisodeArrays:
        frames = torch.zeros(6, 3, 8, 8, dtype=torch.uint8)
        return EpisodeArrays(images={"static": frames}, proprio=None, actions=np.zeros((6, 7), np.float32),
                             instructions=[text], task=task)

    eps = [episode("side", "push the side handle down"), episode("front", "push the handle down")]
    noise = InstructionNoise(wrap=0.0, word_dropout=0.5, swap=0.3)
    drawn = {WindowDataset(eps[:1], window=4, shift_pad=0, seed=s, instruction_noise=noise)[i]["instruction"]
             for s in range(300) for i in range(3)}
    assert {"push the handle down", "handle down"} & drawn  # what noise alone reaches from this text
    ds = [WindowDataset(eps, window=4, shift_pad=0, seed=s, instruction_noise=noise, heldout=["handle down"])
          for s in range(300)]
    side = {d[i]["instruction"] for d in ds for i in range(3)}  # windows 0..2 are the "side" episode's
    assert len(side) > 3 and not {"push the handle down", "handle down"} & side


def test_a_batch_larger_than_the_data_set_is_refused_before_the_earlier_run_is_deleted(dataset: Path, tmp_path: Path,
                                                                                       capsys) -> None:
    """batch_size above the data set's windows was a ConfigError traceback raised once training began, after
    --overwrite had removed the earlier run's step checkpoints."""
    out = tmp_path / "run"
    assert cli_main(["--no-progress", *sum((["--set", o] for o in _overrides(dataset, out)), [])]) == 0
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    capsys.readouterr()
    big = ["--no-progress", "--overwrite", *sum((["--set", o] for o in _overrides(dataset, out, batch_size=4096)), [])]
    assert cli_main(big) == 2
    err = capsys.readouterr().err.strip()
    assert "batch_size 4096 x 1 process(es) exceeds the" in err and "\n" not in err
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before


def test_a_second_training_into_a_busy_output_dir_is_refused(tmp_path: Path) -> None:
    """Two runs into one output_dir interleaved their logs and removed each other's checkpoint staging."""
    import os
    import subprocess
    import sys

    from deer_vla.core.run_lock import lock_folder

    held = lock_folder(tmp_path, "training")
    try:
        code = ("import sys; from pathlib import Path; from deer_vla.core.run_lock import lock_folder\n"
                "try:\n    lock_folder(Path(sys.argv[1]), 'training')\n"
                "except ValueError as exc:\n    print(exc); sys.exit(3)")
        other = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                               timeout=60, env={"PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        assert other.returncode == 3 and f"in use by another training (pid {os.getpid()})" in other.stdout, other
    finally:
        held.close()
    lock_folder(tmp_path, "training").close()  # free again once the holder is gone


def test_a_resume_state_with_an_impossible_step_is_named(dataset: Path, tmp_path: Path, capsys) -> None:
    """A hand-edited or damaged train_state.json with step -5 ended `--resume` in a numpy traceback."""
    from deer_vla.train.state import STATE_JSON

    out = tmp_path / "run"
    argv = ["--no-progress", *sum((["--set", o] for o in _overrides(dataset, out)), [])]
    assert cli_main(argv) == 0
    last = sorted((out / "checkpoints").iterdir())[-1] / STATE_JSON
    state = json.loads(last.read_text())
    state["step"] = -5
    last.write_text(json.dumps(state))
    capsys.readouterr()
    assert cli_main([*argv, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "'step' must be an integer >= 0, got '-5'" in err and "Traceback" not in err


def test_a_damaged_training_record_or_a_file_named_checkpoints_is_a_clear_start(dataset: Path, tmp_path: Path,
                                                                                capsys) -> None:
    """extra.json with "training": 5 ended --resume in an AttributeError traceback; a regular file named
    checkpoints let a run train until its first checkpoint, then fail on "File exists"."""
    out = tmp_path / "run"
    argv = ["--no-progress", *sum((["--set", o] for o in _overrides(dataset, out)), [])]
    assert cli_main(argv) == 0
    last = sorted((out / "checkpoints").iterdir())[-1]
    (last / "extra.json").write_text(json.dumps({"training": 5}))
    assert cli_main([*argv, "--resume"]) == 0  # nothing to compare the settings with: it resumes
    other = tmp_path / "other"
    other.mkdir()
    (other / "checkpoints").write_text("")
    capsys.readouterr()
    assert cli_main(["--no-progress", *sum((["--set", o] for o in _overrides(dataset, other)), [])]) == 2
    assert "checkpoints is not a folder" in capsys.readouterr().err


def test_a_trained_model_is_never_replaced_by_a_resume_and_not_left_loadable_by_an_overwrite(
        dataset: Path, tmp_path: Path, capsys) -> None:
    """`--resume` in a folder holding a model but no step checkpoint (deleted to save space, a copied checkpoint)
    trained from scratch over it with one warning. `--overwrite` kept the old model, thresholds and gates loadable
    until the new run finished: a run stopped early (`--stop-at`, a kill) left the old model in place, described
    by the new run's train_config.json. A shipped checkpoint is never an output_dir."""
    import shutil

    from deer_vla.model.checkpoint_dir import CheckpointDir
    from deer_vla.model.shipped import resolve_checkpoint

    out = tmp_path / "run"
    args = ["--no-progress", *sum((["--set", o] for o in _overrides(dataset, out)), [])]
    assert cli_main(args) == 0
    shutil.rmtree(out / "checkpoints")
    (out / "thresholds.json").write_text("{}")  # calibrated for these weights
    weights = (out / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert cli_main([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "holds a trained model" in err and "--overwrite" in err and "\n" not in err.strip()
    assert (out / "model.safetensors").read_bytes() == weights  # untouched
    # --overwrite, stopped before the end: no model of the earlier run is left to load
    assert cli_main([*args, "--overwrite", "--stop-at", "2"]) == 0
    assert "checkpoint written to" in capsys.readouterr().out
    for name in ("config.json", "model.safetensors", "thresholds.json", "train_history.json"):
        assert not (out / name).exists(), name
    assert not CheckpointDir(out).weights_path.exists() and (out / "checkpoints" / "step_00000002").is_dir()
    assert cli_main([*args, "--resume"]) == 0  # continued from its step checkpoint to the end
    assert "model written to" in capsys.readouterr().out and (out / "model.safetensors").is_file()
    # an empty folder with --resume still starts (nothing to lose)
    assert cli_main(["--no-progress", "--resume", "--stop-at", "1",
                     *sum((["--set", o] for o in _overrides(dataset, tmp_path / "new")), [])]) == 0
    shipped = resolve_checkpoint("default")
    assert cli_main(["--no-progress", "--overwrite",
                     *sum((["--set", o] for o in _overrides(dataset, shipped)), [])]) == 2
    assert "shipped checkpoint 'default'" in capsys.readouterr().err


def test_the_log_gives_the_rate_each_step_used_and_never_mixes_two_stages(dataset: Path, tmp_path: Path) -> None:
    """train_log.jsonl's lr was the first group's (the heads', scaled by head_lr_scale) rate for the next step,
    and a row spanning the joint -> refine boundary averaged joint steps under the label 'refine'."""
    from deer_vla.train.config import load_config
    from deer_vla.train.schedule import lr_lambda
    from deer_vla.train.trainer import Trainer

    cfg = load_config(None, _overrides(dataset, tmp_path / "run", **{
        "joint.steps": 5, "joint.warmup_steps": 2, "joint.lr": 1e-3, "head_lr_scale": 0.25, "refine.steps": 4,
        "refine.lr": 1e-4, "log_every": 3, "checkpoint_every": 100}))
    trainer = Trainer(cfg, show_progress=False)
    rows = trainer.train()
    assert [(r["step"], r["stage"]) for r in rows] == [(3, "joint"), (5, "joint"), (6, "refine"), (9, "refine")]
    for r in rows:  # the rate of the row's last step, as the schedule gave it to that step
        stage = cfg.joint if r["stage"] == "joint" else cfg.refine
        index = r["step"] - 1 - (0 if r["stage"] == "joint" else cfg.joint.steps)
        assert r["lr"] == pytest.approx(stage.lr * lr_lambda(stage)(index), rel=1e-9), r


def test_huber_delta_is_the_huber_loss_delta() -> None:
    """loss.huber_delta was smooth-L1's beta (Huber / delta): any delta other than 1 scaled the pose term by
    1/delta against the gripper term. The same at delta 1, which every shipped config uses."""
    import torch
    import torch.nn.functional as F

    from deer_vla.train.config import LossWeights
    from deer_vla.train.losses import action_loss

    motion, target = torch.tensor([[0.05, 0.5, -0.3]]), torch.tensor([[0.0, 0.0, 0.0, -1.0]])
    for delta in (0.1, 1.0, 2.0):
        got = action_loss(motion, torch.tensor([-20.0]), target, LossWeights(huber_delta=delta, gripper=0.0))
        assert float(got) == pytest.approx(float(F.huber_loss(motion, target[..., :3], delta=delta)), rel=1e-6)
