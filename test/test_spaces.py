"""Configurable action and proprio spaces: units, names, limits, standardisation, and old configs still load."""
from __future__ import annotations

import numpy as np
import pytest

from deer_vla.core import ActionSpec, ProprioError, ProprioSpec


def test_action_units_default_to_per_step_and_old_dicts_load():
    spec = ActionSpec()
    assert spec.units == ("m", "m", "m", "rad", "rad", "rad")
    old = {"axes": ["x", "y", "z"], "low": [-1, -1, -1], "high": [1, 1, 1], "scale": [0.01] * 3}  # before units
    assert ActionSpec.from_dict(old) == ActionSpec(axes=("x", "y", "z"), units=("m", "m", "m"))
    assert ActionSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("units, message", [
    (("m", "m", "rad"), "axis 'z' is a translation"),
    (("m", "m", "m", "deg"), "has 4 values for 3 axes"),
])
def test_action_units_are_validated(units, message):
    with pytest.raises(ValueError, match=message):
        ActionSpec(axes=("x", "y", "z"), units=units)


def test_rotation_axes_reach_the_twist_angular_part_in_their_units():
    from deer_vla.ros.actions import to_robot_command

    per_step = ActionSpec(axes=("x", "yaw"), scale=(0.02, 0.1))
    cmd = to_robot_command(np.array([0.5, -1.0, 1.0]), per_step, period_s=0.1)
    assert cmd.linear == pytest.approx((0.1, 0.0, 0.0))  # 0.5 * 0.02 m per 0.1 s step
    assert cmd.angular == pytest.approx((0.0, 0.0, -1.0))  # -1 * 0.1 rad per 0.1 s step
    velocity = ActionSpec(axes=("x", "yaw"), scale=(0.02, 0.1), units=("m/s", "rad/s"))
    cmd = to_robot_command(np.array([0.5, -1.0, 1.0]), velocity, period_s=0.1)
    assert cmd.linear == pytest.approx((0.01, 0.0, 0.0)) and cmd.angular == pytest.approx((0.0, 0.0, -0.1))


def test_proprio_spec_refuses_wrong_length_non_finite_and_out_of_limits_naming_the_values():
    spec = ProprioSpec(names=("elbow", "gripper"), units=("rad", ""), low=(-3.2, 0.0), high=(3.2, 1.0))
    assert spec.check([0.5, 0.2]).dtype == np.float32
    with pytest.raises(ProprioError, match=r"3 values, the model takes 2: elbow \[rad\], gripper"):
        spec.check([0.0, 0.0, 0.0])
    with pytest.raises(ProprioError, match="non-finite values gripper=nan"):
        spec.check([0.0, np.nan])
    with pytest.raises(ProprioError, match=r"elbow=90 .*elbow in \[-3.2, 3.2\].*wrong units"):
        spec.check([90.0, 0.5])
    assert ProprioSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="give both or neither"):
        ProprioSpec(names=("a",), low=(0.0,))
    with pytest.raises(ValueError, match="unique identifiers"):
        ProprioSpec(names=("a", "a"))


def test_policy_config_carries_the_spaces_and_defaults_them_for_old_checkpoints():
    from deer_vla.model.config import PolicyConfig
    from deer_vla.model.presets import preset_config

    old = preset_config("tiny").model_dump()
    old["action"] = {k: v for k, v in old["action"].items() if k != "units"}
    del old["proprio"], old["control_rate_hz"]
    cfg = PolicyConfig.model_validate(old)  # a config.json written before the spaces were configurable
    assert cfg.proprio is None and cfg.proprio_spec.names == ("proprio_0", "proprio_1", "proprio_2", "proprio_3")
    assert cfg.action_spec.units == ("m", "m", "m")
    data = {**old, "proprio_dim": 2, "proprio": {"names": ["a", "b"]}, "control_rate_hz": 30.0,
            "action": ActionSpec(axes=("x", "y", "z", "yaw"), units=("m/s", "m/s", "m/s", "rad/s")).to_dict()}
    cfg = PolicyConfig.model_validate_json(PolicyConfig.model_validate(data).model_dump_json())
    assert cfg.proprio_spec.names == ("a", "b") and cfg.action_spec.units[-1] == "rad/s" and cfg.control_rate_hz == 30
    with pytest.raises(ValueError, match="proprio.names lists 2 values"):
        PolicyConfig.model_validate({**data, "proprio_dim": 3})


def test_the_model_standardises_proprio_with_the_configured_mean_and_std():
    import torch

    from deer_vla.model.config import PolicyConfig
    from deer_vla.model.policy import MultiExitPolicy
    from deer_vla.model.presets import preset_config

    base = preset_config("tiny").model_dump()
    mean, std = [10.0, -5.0, 0.0, 100.0], [2.0, 4.0, 1.0, 50.0]
    plain = MultiExitPolicy(PolicyConfig.model_validate(base)).eval()
    named = MultiExitPolicy(PolicyConfig.model_validate(
        {**base, "proprio": {"names": ["a", "b", "c", "d"], "mean": mean, "std": std}})).eval()
    named.load_state_dict(plain.state_dict())  # same weights: the standardisation adds no parameters
    feats = torch.randn(2, 3, named.head.inputs.feature_dim)
    raw = torch.randn(2, 3, 4) * torch.tensor(std) + torch.tensor(mean)
    with torch.no_grad():
        expected = plain.head(feats, (raw - torch.tensor(mean)) / torch.tensor(std)).motion
        assert torch.allclose(named.head(feats, raw).motion, expected, atol=1e-6)
        assert not torch.allclose(plain.head(feats, raw).motion, expected, atol=1e-3)


def test_dataset_meta_keeps_the_spaces_and_old_metas_stay_compatible(tmp_path):
    from deer_vla.data.episodes import DatasetError, DatasetMeta

    spec = ActionSpec(axes=("x", "y", "z"))
    proprio = ProprioSpec(names=("hand_x", "hand_y", "hand_z", "gripper_opening"))
    meta = DatasetMeta(("static",), 16, spec.to_dict(), 4, proprio_spec=proprio.to_dict(), control_rate_hz=10.0)
    meta.save(tmp_path)
    again = DatasetMeta.load(tmp_path)
    assert again.proprio_spec == proprio.to_dict() and again.control_rate_hz == 10.0
    old = DatasetMeta(("static",), 16, {k: v for k, v in spec.to_dict().items() if k != "units"}, 4)
    assert old.compatible_with(meta) == []  # written before units / names: nothing contradicts
    assert "action_spec" in old.compatible_with(
        DatasetMeta(("static",), 16, ActionSpec(axes=("x", "y", "z"), units=("m/s",) * 3).to_dict(), 4))[0]
    with pytest.raises(DatasetError, match="proprio_spec names 4 values, proprio_dim is 3"):
        DatasetMeta(("static",), 16, spec.to_dict(), 3, proprio_spec=proprio.to_dict())


def test_training_takes_the_spaces_from_the_dataset_unless_the_model_fixes_them(tmp_path):
    from deer_vla.data.episodes import DatasetMeta
    from deer_vla.model.presets import preset_config
    from deer_vla.train.spaces import SpaceMismatchError, spaces_from_dataset

    arm = ActionSpec(axes=("x", "y", "z", "roll", "pitch", "yaw"), scale=(0.01,) * 3 + (0.1,) * 3)
    proprio = ProprioSpec(names=tuple(f"joint_{i}" for i in range(6)), mean=(0.0,) * 6, std=(30.0,) * 6)
    DatasetMeta(("front",), 32, arm.to_dict(), 6, proprio_spec=proprio.to_dict(), control_rate_hz=15.0).save(tmp_path)
    preset = preset_config("tiny")
    cfg = spaces_from_dataset(preset, tmp_path, explicit=set(), fixed=False)
    assert cfg.action_spec == arm and cfg.proprio_spec == proprio and cfg.cameras == ["front"]
    assert cfg.control_rate_hz == 15.0 and cfg.lm == preset.lm  # the architecture stays the preset's
    with pytest.raises(SpaceMismatchError, match="action: model .* != dataset .*remove these keys from `model`"):
        spaces_from_dataset(preset, tmp_path, explicit={"action"}, fixed=False)
    with pytest.raises(SpaceMismatchError, match="proprio_dim: model 4 != dataset 6.*init_checkpoint fixes"):
        spaces_from_dataset(preset, tmp_path, explicit=set(), fixed=True)


def test_a_fresh_model_takes_every_camera_of_the_robot_in_its_order(tmp_path):
    """A preset's two cameras among a robot's three kept the preset's: the third was dropped without a word (the
    import had listed it), and the order was the preset's, not the robot's."""
    from deer_vla.data.episodes import DatasetMeta
    from deer_vla.model.presets import preset_config
    from deer_vla.train.spaces import SpaceMismatchError, spaces_from_dataset

    DatasetMeta(("wrist", "static", "side"), 32, ActionSpec(axes=("x", "y", "z")).to_dict(), 4).save(tmp_path)
    preset = preset_config("tiny")
    assert list(preset.cameras) == ["static", "wrist"]
    assert list(spaces_from_dataset(preset, tmp_path, explicit=set(), fixed=False).cameras) == [
        "wrist", "static", "side"]
    # a model that fixes its cameras may read some of the robot's, not others
    assert list(spaces_from_dataset(preset, tmp_path, explicit=set(), fixed=True).cameras) == ["static", "wrist"]
    other = preset.model_copy(update={"cameras": ["front"]})
    with pytest.raises(SpaceMismatchError, match=r"cameras: model \['front'\] not among the dataset's"):
        spaces_from_dataset(other, tmp_path, explicit={"cameras"}, fixed=False)


def test_calibrate_refuses_another_robots_demonstrations(tmp_path, capsys):
    """A one-camera, two-axis, 3 Hz checkpoint calibrated on a two-camera, six-axis, 10 Hz robot's data wrote new
    thresholds (the old ones moved aside) without a word."""
    from fixtures import build_tiny_checkpoint

    from deer_vla.commands.calibrate import cli_main
    from deer_vla.data.episodes import DatasetMeta

    ckpt = build_tiny_checkpoint(tmp_path / "ckpt", cameras=("front",), control_rate_hz=3.0,
                                 action=ActionSpec(axes=("x", "y")).to_dict(), proprio_dim=0)
    before = (ckpt / "thresholds.json").read_bytes()
    arm = ActionSpec(axes=("x", "y", "z", "roll", "pitch", "yaw"))
    (tmp_path / "other").mkdir()
    DatasetMeta(("static", "wrist"), 32, arm.to_dict(), 6, control_rate_hz=10.0).save(tmp_path / "other")
    assert cli_main(["--checkpoint", str(ckpt), "--dataset", str(tmp_path / "other"),
                     "--average-budget-fraction", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "does not fit dataset" in err and "action" in err and "calibrate on demonstrations of the robot" in err
    assert (ckpt / "thresholds.json").read_bytes() == before


def test_the_action_frame_is_kept_validated_and_written_only_when_known():
    tool = ActionSpec(axes=("x", "y", "z"), frame="tool0")
    assert ActionSpec.from_dict(tool.to_dict()) == tool and tool.to_dict()["frame"] == "tool0"
    assert "frame" not in ActionSpec(axes=("x", "y", "z")).to_dict()  # a spec without one is written as before
    assert tool != ActionSpec(axes=("x", "y", "z"))
    for bad in ("/base_link", "tool 0", "a\x00b", "x" * 257):
        with pytest.raises(ValueError, match="ActionSpec.frame must be a TF frame id"):
            ActionSpec(axes=("x",), frame=bad)
    with pytest.raises(ValueError, match="ActionSpec.frame must be a frame id \\(text\\), got int"):
        ActionSpec.from_dict({"axes": ["x"], "frame": 3})


def test_a_model_trained_on_a_dataset_takes_the_frame_its_actions_were_recorded_in(tmp_path):
    """The frame stayed in the dataset's notes: the checkpoint (which the policy node reads) never had it."""
    from dataclasses import replace

    from deer_vla.data.episodes import DatasetMeta
    from deer_vla.model.presets import preset_config
    from deer_vla.train.spaces import SpaceMismatchError, spaces_from_dataset

    preset = preset_config("tiny")
    tool = replace(preset.action_spec, frame="tool0")
    (tmp_path / "new").mkdir()
    DatasetMeta(tuple(preset.cameras), 32, tool.to_dict(), preset.proprio_dim).save(tmp_path / "new")
    assert spaces_from_dataset(preset, tmp_path / "new", explicit=set(), fixed=False).action_spec.frame == "tool0"
    # weights whose frame was never said (an init_checkpoint from before frames were kept) take the dataset's
    assert spaces_from_dataset(preset, tmp_path / "new", explicit=set(), fixed=True).action_spec == tool
    flange = preset.model_copy(update={"action": replace(tool, frame="flange").to_dict()})
    # a recording imported before the spec kept its frame noted the twists' frame beside it
    (tmp_path / "old").mkdir()
    DatasetMeta(tuple(preset.cameras), 32, preset.action, preset.proprio_dim,
                collection={"topics": {"twist_frame": "tool0"}}).save(tmp_path / "old")
    assert DatasetMeta.load(tmp_path / "old").action.frame == "tool0"
    assert spaces_from_dataset(preset, tmp_path / "old", explicit=set(), fixed=False).action_spec == tool
    # a dataset that does not say its frame (an array import without --action-frame) fits weights that do, which
    # keep theirs; two frames are named as such, not as two long dicts
    (tmp_path / "unsaid").mkdir()
    DatasetMeta(tuple(preset.cameras), 32, preset.action, preset.proprio_dim).save(tmp_path / "unsaid")
    assert spaces_from_dataset(flange, tmp_path / "unsaid", explicit=set(), fixed=True).action_spec.frame == "flange"
    with pytest.raises(SpaceMismatchError, match="action frame: model 'flange' != dataset 'tool0'"):
        spaces_from_dataset(flange, tmp_path / "new", explicit=set(), fixed=True)
    # episodes in two frames are not one dataset; a frame unrecorded on one side contradicts nothing
    new, old = DatasetMeta.load(tmp_path / "new"), DatasetMeta.load(tmp_path / "old")
    flange_meta = DatasetMeta(tuple(preset.cameras), 32, replace(tool, frame="flange").to_dict(), preset.proprio_dim)
    unsaid = DatasetMeta(tuple(preset.cameras), 32, preset.action, preset.proprio_dim)
    assert new.compatible_with(old) == [] and new.compatible_with(unsaid) == []
    assert "action_spec" in new.compatible_with(flange_meta)[0] and old.compatible_with(flange_meta)


def test_fine_tuned_and_resumed_weights_without_a_frame_are_saved_with_the_datasets(tmp_path):
    """build_policy_config settled the dataset's frame, but a model loaded from init_checkpoint (or a run resumed
    from before frames were kept) kept its own config: the checkpoint had no frame and the node sent the
    tool-frame policy's twists in base_link."""
    import json
    import shutil

    from fixtures import build_tiny_checkpoint, tiny_train_overrides

    from deer_vla.model.checkpoint import read_config
    from deer_vla.model.presets import preset_config
    from deer_vla.train.config import load_config
    from deer_vla.train.state import latest_checkpoint
    from deer_vla.train.synthetic import write_tiny_dataset
    from deer_vla.train.trainer import Trainer

    cfg = preset_config("tiny")
    data = write_tiny_dataset(tmp_path / "data", tuple(cfg.cameras), int(cfg.image_size), int(cfg.proprio_dim),
                              {**cfg.action, "frame": "tool0"})
    init = build_tiny_checkpoint(tmp_path / "init")
    assert not read_config(init).action_spec.frame
    overrides = [o for o in tiny_train_overrides(data, tmp_path / "tuned") if not o.startswith("model_preset=")]
    Trainer(load_config(None, [*overrides, f"init_checkpoint={init}"]), show_progress=False).train()
    assert read_config(tmp_path / "tuned").action_spec.frame == "tool0"
    # a run resumed from a step checkpoint saved without the frame
    run_cfg = load_config(None, tiny_train_overrides(data, tmp_path / "run", **{"joint.steps": 3, "refine.steps": 0}))
    Trainer(run_cfg, show_progress=False).train()
    steps = sorted((tmp_path / "run" / "checkpoints").glob("step_*"))
    for later in steps[1:]:  # as if stopped after the first step checkpoint
        shutil.rmtree(later)
    step = latest_checkpoint(tmp_path / "run")
    assert step == steps[0]
    config = json.loads((step / "config.json").read_text())
    config["action"].pop("frame")
    (step / "config.json").write_text(json.dumps(config))
    (tmp_path / "run" / "config.json").unlink()  # the final model of the stopped run does not exist yet
    Trainer(run_cfg, resume=True, show_progress=False).train()
    assert read_config(tmp_path / "run").action_spec.frame == "tool0"
