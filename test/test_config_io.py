"""train, evaluate and calibrate share one config style: --config YAML + --set key=value + flags, validated,
naming bad keys."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deer_vla.commands.calibrate import CalibrateSettings
from deer_vla.commands.calibrate import cli_main as calibrate_main
from deer_vla.commands.calibrate import load_settings as calibrate_settings
from deer_vla.core.config_io import ConfigError, apply_overrides
from deer_vla.evaluation.evaluator import EvaluateSettings
from deer_vla.evaluation.evaluator import cli_main as evaluate_main
from deer_vla.evaluation.evaluator import load_settings as evaluate_settings
from deer_vla.train.config import load_config

REPO = Path(__file__).resolve().parents[1]


def _yaml(tmp_path: Path, data: dict, name: str = "cfg.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_example_configs_are_the_defaults() -> None:
    ev = evaluate_settings(["--config", str(REPO / "config/evaluate_default.yaml"), "--set", "checkpoint=ck"])
    assert ev == EvaluateSettings(checkpoint="ck")
    cal = calibrate_settings(["--config", str(REPO / "config/calibrate_default.yaml"), "--set", "checkpoint=ck"])
    assert cal == CalibrateSettings(checkpoint="ck", dataset="data/demos", average_budget_fraction=0.5)


def test_yaml_and_set_round_trip(tmp_path: Path) -> None:
    path = _yaml(tmp_path, {"checkpoint": "ck", "episodes_per_task": 5, "budgets": [0.1, 0.3], "exits": "1,2,all"})
    settings = evaluate_settings(["--config", path, "--set", "workers=3", "--set", "budgets=[0.25]",
                                  "--set", "oracle=0.05"])
    assert (settings.episodes_per_task, settings.budgets, settings.workers, settings.oracle) == (5, [0.25], 3, 0.05)
    assert settings.exits == "1,2,all"
    # what it dumps loads back to the same settings
    again = evaluate_settings(["--config", _yaml(tmp_path, settings.model_dump(), "dump.yaml")])
    assert again == settings


def test_flags_override_set_which_overrides_the_file(tmp_path: Path) -> None:
    path = _yaml(tmp_path, {"checkpoint": "ck", "dataset": "demos", "average_budget_fraction": 0.4, "episodes": 7,
                            "threads": 3})
    assert calibrate_settings(["--config", path]).episodes == 7
    assert calibrate_settings(["--config", path, "--set", "episodes=8"]).episodes == 8
    both = calibrate_settings(["--config", path, "--set", "episodes=8", "--episodes", "9"])
    assert both.episodes == 9
    assert both.threads == 3  # a flag not given leaves the file's value
    assert both.method == "quantile"  # a key in neither keeps the default
    # the plain flag form, with no file, is unchanged
    plain = calibrate_settings(["--checkpoint", "ck", "--dataset", "d", "--average-gflops", "1.5", "--smooth", "2"])
    assert (plain.checkpoint, plain.dataset, plain.average_gflops, plain.smooth) == ("ck", "d", 1.5, 2)
    assert evaluate_settings(["--checkpoint", "ck", "--budgets", "", "--heldout-instructions"]).budgets == []


def test_a_flag_for_one_of_two_alternatives_replaces_the_other_from_the_file() -> None:
    """config/calibrate_default.yaml sets dataset and average_budget_fraction; its header says flags win, yet
    --recording or --average-gflops with it failed: "set exactly one of dataset and recording"."""
    base = ["--config", str(REPO / "config/calibrate_default.yaml"), "--set", "checkpoint=ck"]
    rec = calibrate_settings([*base, "--recording", "run/policy_io.mcap"])
    assert rec.dataset is None and rec.recording == ["run/policy_io.mcap"]
    gf = calibrate_settings([*base, "--average-gflops", "0.001"])
    assert gf.average_budget_fraction is None and gf.average_gflops == 0.001
    assert calibrate_settings([*base, "--set", "recording=[r.mcap]"]).dataset is None  # --set as well
    with pytest.raises(SystemExit):  # both on the command line: argparse's mutually exclusive group refuses
        calibrate_settings([*base, "--recording", "r.mcap", "--dataset", "d"])


@pytest.mark.parametrize("argv, key", [
    (["--set", "episode_per_task=3"], "episode_per_task"),  # unknown key (typo)
    (["--set", "episodes_per_task=0"], "episodes_per_task"),  # invalid value
    (["--set", "threshold_method=magic"], "threshold_method"),
])
def test_evaluate_refuses_a_bad_key_naming_it(tmp_path: Path, capsys, argv: list[str], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        evaluate_settings(["--checkpoint", "ck", *argv])
    assert evaluate_main(["--checkpoint", "ck", *argv]) == 2
    assert key in capsys.readouterr().err


def test_calibrate_refuses_bad_settings_naming_the_key(tmp_path: Path, capsys) -> None:
    path = _yaml(tmp_path, {"checkpoint": "ck", "dataset": "d", "average_budget_fraction": 0.5, "smoth": 2})
    assert calibrate_main(["--config", path]) == 2
    assert "smoth" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="exactly one of dataset"):
        calibrate_settings(["--checkpoint", "ck", "--average-gflops", "1"])
    with pytest.raises(ConfigError, match="average_budget_fraction"):
        calibrate_settings(["--checkpoint", "ck", "--dataset", "d"])  # no budget and no --risk
    with pytest.raises(ConfigError, match="risk_unit"):
        calibrate_settings(["--checkpoint", "ck", "--dataset", "d", "--risk", "0.1", "--set", "risk_unit=batch"])
    with pytest.raises(ConfigError, match="calibrate settings file not found"):
        calibrate_settings(["--config", str(tmp_path / "missing.yaml")])


def test_a_missing_checkpoint_names_the_flag_that_gives_it(capsys) -> None:
    """evaluate and calibrate without one said "checkpoint: Field required" (a review's): which flag?"""
    assert evaluate_main([]) == 2
    err = capsys.readouterr().err
    assert "checkpoint: required and not given: --checkpoint VALUE, or checkpoint: in --config" in err
    assert calibrate_main(["--dataset", "d", "--average-gflops", "1"]) == 2
    assert "--checkpoint VALUE" in capsys.readouterr().err


def test_a_key_given_twice_in_a_settings_file_is_refused_naming_it_and_its_line(tmp_path: Path) -> None:
    """PyYAML keeps the last of two equal keys without a word: a file saying episodes_per_task twice ran with the
    second. A merge key (<<) is YAML's own way to repeat keys and stays allowed."""
    path = tmp_path / "eval.yaml"
    path.write_text("checkpoint: ck\nepisodes_per_task: 1\ninstructions: canonical\nepisodes_per_task: 2\n")
    with pytest.raises(ConfigError, match=f"evaluate settings {path} is not valid YAML: the key 'episodes_per_task' "
                                          "is given twice \\(line 4\\)"):
        evaluate_settings(["--config", str(path)])
    nested = tmp_path / "train.yaml"
    nested.write_text("joint:\n  steps: 10\n  lr: 0.001\n  steps: 20\n")
    with pytest.raises(ConfigError, match="the key 'steps' is given twice"):
        load_config(str(nested))
    from deer_vla.core.config_io import load_yaml

    assert load_yaml("base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  x: 3\n")["d"] == {"x": 3, "y": 2}


@pytest.mark.parametrize("argv, needle", [
    (["--set", "episodes_per_task=true"], "episodes_per_task: Value error, true is not a number"),
    (["--set", "budgets=[0.2, true]"], "budgets: Value error, a list of numbers holds true"),  # it was 1.0
    (["--set", "max_steps=false"], "max_steps: Value error, false is not a number"),
])
def test_true_or_false_is_not_a_number_in_settings(argv: list[str], needle: str, capsys) -> None:
    """pydantic reads true as 1: `episodes_per_task: true` ran one episode per task, silently."""
    assert evaluate_main(["--checkpoint", "ck", *argv]) == 2
    assert needle in capsys.readouterr().err
    with pytest.raises(ConfigError, match="joint.steps: Value error, true is not a number"):
        load_config(None, ["joint.steps=true"])
    assert evaluate_settings(["--checkpoint", "ck", "--set", "skip_full=true"]).skip_full is True  # a real bool
    # nested settings too: instruction noise, and a `model:` mapping's configs (a review found these read as 1)
    with pytest.raises(ConfigError, match="instruction_noise.word_dropout: Value error, true is not a number"):
        load_config(None, ["instruction_noise={word_dropout: true}"])
    from pydantic import ValidationError

    from deer_vla.model.config import ExitConfig, ResamplerConfig, VisionConfig

    for build in (lambda: ResamplerConfig(depth=True), lambda: ExitConfig(layers_per_exit=True),
                  lambda: VisionConfig(channels=[16, True])):
        with pytest.raises(ValidationError, match="true is not a number|a list of numbers holds true"):
            build()


def test_set_needs_key_equals_value() -> None:
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["episodes"])
    assert apply_overrides({"a": {"b": 1}}, ["a.c=[1, 2]"]) == {"a": {"b": 1, "c": [1, 2]}}


def test_train_loads_through_the_same_loader(tmp_path: Path) -> None:
    from deer_vla.train.trainer import load_settings as train_settings

    path = _yaml(tmp_path, {"joint": {"steps": 40, "warmup_steps": 4}, "window": 6})
    cfg, args = train_settings(["--config", path, "--set", "joint.steps=30", "--set", "instruction_noise={}",
                                "--resume", "--stop-at", "7", "--no-progress"])
    assert (cfg.joint.steps, cfg.joint.warmup_steps, cfg.window) == (30, 4, 6)  # --set wins over the file
    assert cfg.joint.lr == 5e-4 and cfg.refine.steps == 500  # nested keys not given keep their defaults
    assert cfg.instruction_noise is not None  # a YAML flow value builds the nested model's defaults
    assert (args.resume, args.stop_at, args.no_progress) == (True, 7, True)  # run flags stay out of the config
    init, _ = train_settings(["--set", "init_checkpoint=ck"])
    assert (init.init_checkpoint, init.model_preset) == ("ck", None)  # a given source replaces the preset


@pytest.mark.parametrize("argv, needle", [
    (["--set", "joint.stepz=3"], "  joint.stepz: Extra inputs are not permitted"),  # unknown nested key
    (["--set", "joint.steps=3", "--set", "joint.warmup_steps=5"],
     "joint.warmup_steps (5) must be below joint.steps (3)"),
    (["--set", "loss.gripper=-1"], "  loss.gripper: Input should be greater than or equal to 0 (got -1)"),
])
def test_train_refuses_a_bad_key_naming_it(capsys, argv: list[str], needle: str) -> None:
    from deer_vla.train.trainer import cli_main as train_main

    assert train_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("deer-vla train: invalid training config (defaults + --set):") and needle in err


def test_set_values_and_files_yaml_cannot_read_and_huge_values_are_one_short_line(tmp_path: Path) -> None:
    """`--set joint.steps=[` and a deeply nested YAML file were tracebacks; a 10 MB value was echoed whole."""
    from deer_vla.core.config_io import read_yaml_mapping
    from deer_vla.train.config import TrainConfig

    with pytest.raises(ConfigError, match=r"--set value '\[' is not a YAML value"):
        apply_overrides({}, ["joint.steps=["])
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 100_000)
    with pytest.raises(ConfigError, match="deep.yaml is not valid YAML"):
        read_yaml_mapping(deep, "training config")
    from deer_vla.core.config_io import validate

    with pytest.raises(ConfigError) as err:
        validate(TrainConfig, {"dataset": "d", "output_dir": "o", "x" * 10_000_000: 1}, "training config", "t")
    assert len(str(err.value)) < 1000 and "(10000000 characters)" in str(err.value)
    for bad in ({"joint": {"steps": 3, "lr": 1e300}}, {"num_workers": 10**6}):
        with pytest.raises(ConfigError):
            validate(TrainConfig, {"dataset": "d", "output_dir": "o", **bad}, "training config", "t")
