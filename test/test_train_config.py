"""Training config: YAML + overrides, schedules, wilson CI, and clear errors for impossible configs."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from deer_vla.evaluation.stats import wilson_interval
from deer_vla.train.config import ConfigError, StageConfig, load_config, validate_config
from deer_vla.train.schedule import lr_lambda

REPO = Path(__file__).resolve().parents[1]


def test_shipped_yaml_loads_and_overrides_apply() -> None:
    cfg = load_config(REPO / "config" / "train_default.yaml")
    assert cfg.model_preset == "default" and cfg.total_steps > 0
    cfg2 = load_config(
        REPO / "config" / "train_default.yaml",
        ["joint.steps=700", "loss.gripper=0.5", "window=4", "model_preset=tiny", "device=cpu"],
    )
    assert (cfg2.joint.steps, cfg2.loss.gripper, cfg2.window, cfg2.model_preset) == (700, 0.5, 4, "tiny")
    assert cfg2.refine == cfg.refine  # untouched nested keys survive an override of a sibling


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["window=1"], "window"),
        (["batch_size=0"], "batch_size"),
        (["joint.lr=-1"], "joint.lr"),
        (["joint.lr=inf"], "joint.lr"),  # passes lr > 0, and the loss is NaN at the first step
        (["loss.aux=1e999"], "loss.aux"),
        (["grad_clip=.inf"], "grad_clip"),
        (["joint.steps=0", "refine.steps=0"], "nothing to train"),
        (["joint.steps=10", "joint.warmup_steps=10"], "warmup_steps"),
        (["device=tpu"], "device"),
        (["loss.aux=0", "loss.final=0", "loss.random_exit=0", "loss.split_exit=0"], "all 0"),
        (["bogus_key=3"], "bogus_key"),
        (["model={lm: {}}"], None),  # explicit model is fine for the schema (PolicyConfig checks it later)
        (["model_preset=null"], "exactly one"),
        (["joint.schedule=exp"], "joint.schedule"),
        (["nodot"], "key=value"),
        # a fresh model's decoder layers are random: frozen, they stayed random for the whole run
        (["freeze_lm_layers=true"], "freeze_lm_layers"),
        (["init_checkpoint=default", "text=null", "freeze_lm_layers=true",
          "init_overrides={lm: {hf_config: {num_hidden_layers: 6}}}"], "changed decoder"),
    ],
)
def test_bad_configs_name_the_key(overrides: list[str], needle: str | None) -> None:
    if needle is None:
        cfg = load_config(None, overrides)
        assert cfg.model_preset is None and cfg.model == {"lm": {}}
        return
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert needle in str(err.value)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("window: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(lst)
    with pytest.raises(ConfigError, match="got 'x'"):
        validate_config({"batch_size": "x"})


def test_lr_schedule_warmup_and_decay() -> None:
    f = lr_lambda(StageConfig(steps=100, lr=1e-3, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1))
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(100) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(10, 100))
    g = lr_lambda(StageConfig(steps=50, lr=1e-3, schedule="linear", min_lr_ratio=0.0))
    assert g(25) == pytest.approx(0.5) and g(50) == pytest.approx(0.0)


def test_wilson_interval() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    for n in range(1, 400):  # all or nothing: the bound at that end is exact (rounding once left 4/4's at 1 - 1e-16)
        assert wilson_interval(n, n)[1] == 1.0 and wilson_interval(0, n)[0] == 0.0
        for s in range(n + 1):
            low, high = wilson_interval(s, n)
            assert low <= s / n <= high
    lo, hi = wilson_interval(20, 20)
    assert hi == 1.0 and 0.83 < lo < 0.84  # textbook value 0.8389
    lo, hi = wilson_interval(10, 20)
    assert lo == pytest.approx(0.2993, abs=1e-3) and hi == pytest.approx(0.7007, abs=1e-3)
    assert math.isclose(lo + hi, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


@pytest.mark.parametrize("path", sorted((REPO / "config").glob("train_*.yaml")), ids=lambda p: p.name)
def test_every_shipped_training_recipe_validates(path: Path) -> None:
    """A recipe the docs tell people to run must at least pass the schema (a typo'd key fails here, not an hour in)."""
    cfg = load_config(path)
    assert cfg.total_steps > 0 and cfg.dataset and cfg.output_dir
