"""CheckpointDir: one owner of the checkpoint directory's layout, its format version and its errors."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from deer_vla.model.checkpoint import load_checkpoint
from deer_vla.model.checkpoint_dir import FORMAT_KEY, FORMAT_VERSION, CheckpointDir, CheckpointError


@pytest.fixture
def ckpt(tiny_checkpoint: Path, tmp_path: Path) -> CheckpointDir:
    """A writable copy of the session's tiny checkpoint."""
    return CheckpointDir(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))


def _config(ckpt: CheckpointDir) -> dict:
    return json.loads(ckpt.config_path.read_text())


def test_saved_checkpoints_carry_the_format_version(ckpt: CheckpointDir) -> None:
    assert _config(ckpt)[FORMAT_KEY] == FORMAT_VERSION
    assert ckpt.exists() and ckpt.check().num_exits >= 2


def test_a_config_without_a_version_is_read_as_format_1(ckpt: CheckpointDir) -> None:
    """Checkpoints written before the version existed (the shipped one included) still load."""
    versioned = ckpt.read_config()
    data = _config(ckpt)
    del data[FORMAT_KEY]
    ckpt.config_path.write_text(json.dumps(data))
    assert ckpt.read_config() == versioned
    model, _ = load_checkpoint(ckpt.root)
    assert model.num_exits == versioned.num_exits


def test_a_newer_format_is_refused_naming_the_file_and_both_versions(ckpt: CheckpointDir) -> None:
    ckpt.config_path.write_text(json.dumps({**_config(ckpt), FORMAT_KEY: FORMAT_VERSION + 1}))
    with pytest.raises(CheckpointError, match=rf"config\.json: checkpoint format {FORMAT_VERSION + 1} is newer "
                                              rf"than this deer_vla reads \({FORMAT_VERSION}\)"):
        load_checkpoint(ckpt.root)


@pytest.mark.parametrize("version", [0, "1", True, 1.5])
def test_a_malformed_format_version_is_named(ckpt: CheckpointDir, version: object) -> None:
    ckpt.config_path.write_text(json.dumps({**_config(ckpt), FORMAT_KEY: version}))
    with pytest.raises(CheckpointError, match=r"config\.json: format_version must be a positive integer"):
        ckpt.read_config()


def test_the_optional_files_live_in_the_directory(ckpt: CheckpointDir) -> None:
    assert {ckpt.thresholds_path.parent, ckpt.profile_path.parent, ckpt.extra_path.parent} == {ckpt.root}
    assert ckpt.thresholds_path.is_file()  # the tiny checkpoint's thresholds
    assert ckpt.read_profile() is None and ckpt.read_extra() is None


def test_the_training_record_is_an_object_or_empty(ckpt: CheckpointDir) -> None:
    assert ckpt.read_training() == {}  # no extra.json
    for extra in ({"training": ["not", "an", "object"]}, ["no", "record"], {"other": 1}):
        ckpt.extra_path.write_text(json.dumps(extra))
        assert ckpt.read_training() == {}
    ckpt.extra_path.write_text(json.dumps({"training": {"step": 4, "instructions": {"t": ["a"]}}}))
    assert ckpt.read_training() == {"step": 4, "instructions": {"t": ["a"]}}
    ckpt.extra_path.write_text("{not json")
    with pytest.raises(CheckpointError, match="extra.json"):
        ckpt.read_training()
    ckpt.extra_path.unlink()


def test_a_profile_roundtrips_and_a_broken_one_names_its_file(ckpt: CheckpointDir) -> None:
    from deer_vla.control.synthetic import synthetic_profile

    profile = synthetic_profile(3)
    ckpt.write_profile(profile)
    assert ckpt.read_profile() == profile
    ckpt.profile_path.write_text('{"llm_gflops": [1.0]')
    with pytest.raises(CheckpointError, match=r"invalid .*profile\.json: not JSON"):
        ckpt.read_profile()
    ckpt.profile_path.write_text('{"llm_gflops": [2.0, 1.0]}')
    with pytest.raises(CheckpointError, match=r"invalid .*profile\.json: "):
        ckpt.read_profile()
    good = profile.to_dict()
    for bad in ([-1.0, 1.0, 2.0], [0.5, "1", 2.0], [0.5, float("nan"), 2.0], [0.5, 1.0, float("inf")]):
        ckpt.profile_path.write_text(json.dumps({**good, "llm_gflops": bad}))  # was a tracker error, no file
        with pytest.raises(CheckpointError, match=r"invalid .*profile\.json: CostProfile.llm_gflops must be finite"):
            ckpt.read_profile()
    ckpt.profile_path.write_text("[1, 2]")
    with pytest.raises(CheckpointError, match=r"invalid .*profile\.json: a cost profile is a JSON object"):
        ckpt.read_profile()


def test_an_empty_directory_is_not_a_checkpoint(tmp_path: Path) -> None:
    empty = CheckpointDir(tmp_path)
    assert not empty.exists()
    with pytest.raises(CheckpointError, match=r"has no config\.json"):
        empty.check()


def test_the_weights_digest_is_read_once_per_file_version(tmp_path: Path) -> None:
    """A configure asks for the digest several times (gates, thresholds, recording): one read of a file as it
    is, and a rewritten file is hashed again."""
    import hashlib
    import os

    from deer_vla.model.checkpoint_dir import _file_sha256

    ckpt = CheckpointDir(tmp_path)
    ckpt.weights_path.write_bytes(b"first weights")
    first = ckpt.weights_digest()
    assert first == hashlib.sha256(b"first weights").hexdigest()
    hits = _file_sha256.cache_info().hits
    assert CheckpointDir(tmp_path).weights_digest() == first and _file_sha256.cache_info().hits == hits + 1
    ckpt.weights_path.write_bytes(b"other weights")
    os.utime(ckpt.weights_path, ns=(1, 1))  # even with a clock too coarse to tell the two writes apart
    assert ckpt.weights_digest() == hashlib.sha256(b"other weights").hexdigest()


@pytest.mark.parametrize(("broken", "match"), [
    ("{not json", r"tokenizer .*tokenizer\.json cannot be loaded: "),
    ('{"version": "1.0", "model": {"type": "Nonesuch"}}', r"tokenizer .*tokenizer\.json cannot be loaded: "),
])
def test_a_broken_tokenizer_names_its_file_in_one_line(ckpt: CheckpointDir, broken: str, match: str) -> None:
    """transformers' own errors (a bare JSONDecodeError, a multi-line "Couldn't instantiate the backend
    tokenizer") named no file."""
    (ckpt.root / "tokenizer.json").write_text(broken)
    with pytest.raises(ValueError, match=match) as info:
        load_checkpoint(ckpt.root)
    assert "\n" not in str(info.value) and len(str(info.value)) < 500


@pytest.mark.parametrize(("damage", "match"), [
    ("truncated", r"tokenizer config .*tokenizer_config\.json cannot be read: not JSON"),
    ("list", r"tokenizer config .*tokenizer_config\.json cannot be read: not a JSON object"),
    ("folder", r"tokenizer config .*tokenizer_config\.json cannot be read"),
    ("missing", r"neither a pad nor an eos token \(tokenizer_config\.json, which names them, is missing\)"),
])
def test_a_damaged_tokenizer_config_is_named_not_blamed_on_tokenizer_json(ckpt: CheckpointDir, damage: str,
                                                                          match: str) -> None:
    """A truncated tokenizer_config.json was reported as "tokenizer .../tokenizer.json cannot be loaded", and a
    missing one as a tokenizer without special tokens: the user was sent to the wrong file (a copy per test)."""
    config = ckpt.root / "tokenizer_config.json"
    text = config.read_text()
    if damage == "truncated":
        config.write_text(text[: len(text) // 2])
    elif damage == "list":
        config.write_text("[1, 2]")
    elif damage == "folder":
        config.unlink()
        config.mkdir()
    else:
        config.unlink()
    with pytest.raises(ValueError, match=match):
        load_checkpoint(ckpt.root)


def test_a_config_nested_too_deeply_names_its_file(ckpt: CheckpointDir) -> None:
    ckpt.config_path.write_text("[" * 100_000)
    with pytest.raises(CheckpointError, match=r"invalid .*config\.json: JSON nested too deeply"):
        ckpt.read_config()


@pytest.mark.parametrize("keep", [0, 100])
def test_an_empty_or_truncated_weights_file_names_itself(ckpt: CheckpointDir, keep: int) -> None:
    """safetensors' own error (a bare SafetensorError, "header too small") named no file; every command and the
    policy node's configure go through load_checkpoint."""
    data = ckpt.weights_path.read_bytes()
    ckpt.weights_path.write_bytes(data[:keep])
    with pytest.raises(CheckpointError, match=r"model\.safetensors cannot be read as safetensors .*copy the "):
        load_checkpoint(ckpt.root)


def test_damaged_weights_are_named_before_thresholds_are_compared_with_them(tmp_path: Path) -> None:
    """A truncated model.safetensors beside thresholds that record the weights' digest was reported as
    "thresholds.json was solved on other weights": the digest was compared before the weights were read."""
    from deer_vla.model.shipped import resolve_checkpoint
    from deer_vla.ros.policy_backend import ConfigurationError, load_stack

    copy = tmp_path / "ckpt"
    shutil.copytree(resolve_checkpoint("default"), copy)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4096])
    with pytest.raises((CheckpointError, ConfigurationError)) as err:
        load_stack(copy, CheckpointDir(copy).thresholds_path, "cpu", {}, 0)
    assert "cannot be read as safetensors" in str(err.value) and "other weights" not in str(err.value)


def _peak_rss_reset() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # peak mark := current RSS


def _peak_rss() -> int:
    import re

    return int(re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's resettable peak RSS")
def test_a_config_asking_for_huge_tensors_is_refused_before_any_is_built(ckpt: CheckpointDir) -> None:
    """The model was built (each parameter allocated, then moved to meta) before the file's shapes were compared
    with the config's: image_size 16000 took 4.5 GB before its shape error, larger ones died in the allocator."""
    config = _config(ckpt)
    config["image_size"] = 4096  # the largest a config may ask for: a 512 x 512 patch grid, 128 MiB of positions
    ckpt.config_path.write_text(json.dumps(config))
    _peak_rss_reset()
    before = _peak_rss()
    with pytest.raises(CheckpointError, match="resampler.pos' has shape"):
        load_checkpoint(ckpt.root)
    assert _peak_rss() - before < 48 * 2**20
    config["image_size"] = 16000
    ckpt.config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="image_size: Input should be less than or equal to 4096"):
        load_checkpoint(ckpt.root)


@pytest.mark.parametrize(("value", "said"), [
    (float("inf"), "holds NaN or infinite values"), (float("-inf"), "holds NaN or infinite values"),
    (float("nan"), "holds NaN or infinite values"),
    (1e30, "holds a value of magnitude 1e+30, over the 10000"), (-2e4, "holds a value of magnitude 2e+04"),
])
def test_weights_that_are_not_finite_are_refused_at_load(ckpt: CheckpointDir, value: float, said: str) -> None:
    """An infinite weight loaded silently and drove every action to full scale (tanh(inf) = 1 passes the
    runner's finite-action check); NaN only failed at the first step; a finite 1e30 did what inf did."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(ckpt.weights_path))
    tensors["head.motion.bias"][0] = value
    save_file(tensors, str(ckpt.weights_path))
    with pytest.raises(CheckpointError, match=re.escape(f"tensor 'head.motion.bias' {said}")):
        load_checkpoint(ckpt.root)


@pytest.mark.parametrize(("change", "said"), [
    ({"lm.num_hidden_layers": 100_000}, "'num_hidden_layers' must be an integer in 1..1024"),  # hung, 4 GB
    ({"lm.num_hidden_layers": 0}, "'num_hidden_layers' must be an integer in 1..1024"),
    ({"lm.num_hidden_layers": 12.7}, "'num_hidden_layers' must be an integer"),
    ({"lm.hidden_size": -128}, "'hidden_size' must be an integer in 1..65536"),
    ({"lm.num_attention_heads": 0}, "'num_attention_heads' must be an integer"),  # ZeroDivisionError before
    ({"lm.num_attention_heads": 3}, "attention heads must divide its hidden size"),
    ({"max_text_len": 100_000}, "max_text_len"),  # profiling built a 100k x 100k mask: 20 GB
    ({"image_std": [float("nan")] * 3}, "vision.image_mean/std need 3 values each"),
    ({"image_std": [1e-30] * 3}, "stds in 0.001..1000"),  # every feature inf: NaN actions at the first step
    ({"image_mean": [1e300] * 3}, "means in -1000..1000"),
    ({"lm.rms_norm_eps": float("nan")}, "'rms_norm_eps' must be a finite number > 0"),
    ({"lm.rms_norm_eps": -1}, "'rms_norm_eps' must be a finite number > 0"),
    ({"lm.rope_theta": -5}, "'rope_theta' must be a finite number > 0"),
    ({"lm.rope_parameters": {"rope_type": "default", "rope_theta": float("nan")}},  # where transformers 5 puts it
     "lm.hf_config.rope_parameters 'rope_theta' must be a finite number > 0"),
    ({"num_latents": 10**9}, "num_latents"),
])
def test_a_config_of_sizes_no_model_can_have_is_refused_naming_the_file(ckpt: CheckpointDir, change: dict,
                                                                       said: str) -> None:
    """config.json's sizes reached torch unchecked: tracebacks (negative width, 0 heads, a float layer count),
    a hang at 10^5 layers, a 20 GB mask at 10^5 tokens."""
    config = _config(ckpt)
    (key, value), = change.items()
    if key.startswith("lm."):
        config["lm"]["hf_config"][key[3:]] = value
    elif key == "max_text_len":
        config["lm"]["max_text_len"] = value
    elif key.startswith("image_"):
        config["vision"][key] = value
    else:
        config["resampler"][key] = value
    ckpt.config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=re.escape(said)) as err:
        load_checkpoint(ckpt.root)
    assert str(ckpt.config_path) in str(err.value)


def test_json_files_python_cannot_read_or_that_are_huge_are_named(ckpt: CheckpointDir) -> None:
    """A 5000-digit integer (over Python's digit limit: a bare ValueError naming no file), an integer no float
    holds in profile.json (OverflowError, a traceback), a 1 GB config.json read whole before "not JSON"."""
    text = ckpt.config_path.read_text()
    ckpt.config_path.write_text(re.sub(r'"image_size": \d+', '"image_size": ' + "9" * 5000, text))
    with pytest.raises(CheckpointError, match=r"config\.json: not JSON .*4300"):
        ckpt.read_config()
    ckpt.config_path.write_text(text + " " * (17 << 20))
    with pytest.raises(CheckpointError, match=r"config\.json: \d+ bytes, far more"):
        ckpt.read_config()
    ckpt.config_path.write_text(text)
    profile = {"llm_gflops": [10**400], "total_gflops": [1.0], "params": [1], "weight_bytes": [1]}
    ckpt.profile_path.write_text(json.dumps(profile))
    with pytest.raises(CheckpointError, match=r"invalid .*profile\.json"):
        ckpt.read_profile()


def test_weights_and_train_state_follow_the_umask_and_an_unreadable_file_is_said(tmp_path: Path, monkeypatch) -> None:
    """safetensors' save_file made model.safetensors and train_state.safetensors owner-only (0600) whatever the
    umask: a checkpoint trained by one account was 'No such file or directory' to a robot's service user."""
    import os

    import torch

    from deer_vla.model import lean_load
    from deer_vla.model.checkpoint import save_checkpoint
    from deer_vla.model.presets import save_random_checkpoint
    from deer_vla.train.state import STATE_TENSORS, save_train_state

    old = os.umask(0o022)
    try:
        source = save_random_checkpoint(tmp_path / "random")
        model, tokenizer = load_checkpoint(source)
        out = CheckpointDir(save_checkpoint(model, tokenizer, tmp_path / "saved"))
        weight = torch.nn.Parameter(torch.zeros(2))
        optimizer = torch.optim.AdamW([weight])
        weight.grad = torch.ones(2)
        optimizer.step()
        save_train_state(tmp_path, 1, "joint", optimizer, None, {})
    finally:
        os.umask(old)
    assert out.weights_path.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / STATE_TENSORS).stat().st_mode & 0o777 == 0o644
    assert load_checkpoint(out.root)[0].num_exits == model.num_exits

    real_access = os.access
    monkeypatch.setattr(lean_load.os, "access", lambda p, mode: False if str(p) == str(out.weights_path)
                        else real_access(p, mode))
    with pytest.raises(ValueError, match=r"model.safetensors: permission denied \(mode 644, owner uid \d+\)"):
        load_checkpoint(out.root)


def test_weights_written_in_a_folder_with_a_default_acl_keep_its_grants(tmp_path: Path) -> None:
    """The weights' mode was set from the umask after safetensors wrote them: in a folder whose default ACL
    grants a service group read, that also set the file's ACL mask to the umask's group bits (none under 077),
    and the group could read config.json but not model.safetensors. They get the mode a file created there
    gets now."""
    import os
    import struct

    from deer_vla.model.checkpoint import save_checkpoint
    from deer_vla.model.presets import save_random_checkpoint

    folder = tmp_path / "shared"
    folder.mkdir()
    every = 0xFFFFFFFF  # (an entry without an id)
    entries = [(0x01, 7, every), (0x04, 5, every), (0x08, 5, 1234), (0x10, 5, every), (0x20, 0, every)]
    try:  # = setfacl -d -m g:1234:rx shared
        os.setxattr(folder, "system.posix_acl_default",
                    struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries))
    except OSError as exc:
        pytest.skip(f"no POSIX ACLs on this file system: {exc}")
    model, tokenizer = load_checkpoint(save_random_checkpoint(tmp_path / "random"))
    old = os.umask(0o077)
    try:
        out = CheckpointDir(save_checkpoint(model, tokenizer, folder / "ckpt"))
    finally:
        os.umask(old)
    config_mode = out.config_path.stat().st_mode & 0o777  # written with open(): mask r-x of rw- asked -> r--
    assert config_mode & 0o070 == 0o040
    assert out.weights_path.stat().st_mode & 0o777 == config_mode


def test_a_needed_file_that_is_a_folder_or_a_dead_link_is_said_to_be(ckpt: CheckpointDir, tmp_path: Path) -> None:
    """A symlink loop at model.safetensors or config.json, or a folder in its place, was reported as "has no
    model.safetensors": the file is there, and is the wrong thing."""
    ckpt.weights_path.unlink()
    ckpt.weights_path.symlink_to(ckpt.weights_path)  # a loop
    with pytest.raises(CheckpointError, match=r"model\.safetensors is a symbolic link to no file"):
        ckpt.check()
    ckpt.weights_path.unlink()
    ckpt.weights_path.mkdir()
    with pytest.raises(CheckpointError, match=r"model\.safetensors is a folder, not a file"):
        ckpt.check()
    ckpt.config_path.unlink()
    ckpt.config_path.symlink_to(tmp_path / "nowhere.json")
    with pytest.raises(CheckpointError, match=r"config\.json is a symbolic link to no file"):
        ckpt.read_config()


def test_a_tokenizer_the_disk_cannot_take_is_an_os_error_naming_the_folder(tmp_path: Path, monkeypatch) -> None:
    """The tokenizers library says a full disk with a plain Exception ("No space left on device (os error
    28)"): it escaped train's handler (an OSError's) as a traceback and left the half-written step folder."""
    from fixtures import build_tiny_checkpoint

    from deer_vla.model.checkpoint import save_checkpoint
    from deer_vla.model.runner import PolicyRunner

    runner = PolicyRunner.from_checkpoint(build_tiny_checkpoint(tmp_path / "tiny"))

    def full(*args: object, **kwargs: object) -> None:
        raise Exception("No space left on device (os error 28)")  # what the tokenizers library raises

    monkeypatch.setattr(runner.tokenizer, "save_pretrained", full)
    with pytest.raises(OSError, match=r"writing the tokenizer in .*out failed: No space left on device"):
        save_checkpoint(runner.model, runner.tokenizer, tmp_path / "out")


def test_a_vision_towers_norm_eps_is_checked_as_the_decoders() -> None:
    """NaN or -1 layer_norm_eps in a CLIP tower's config loaded, and every action was NaN at the first step."""
    from pydantic import ValidationError

    from deer_vla.model.config import VisionConfig

    for bad in (float("nan"), -1.0, 0):
        with pytest.raises(ValidationError, match="vision.hf_config 'layer_norm_eps' must be a finite number > 0"):
            VisionConfig(kind="clip", hf_config={"hidden_size": 32, "layer_norm_eps": bad})
    assert VisionConfig(kind="clip", hf_config={"hidden_size": 32, "layer_norm_eps": 1e-5}).hf_config


def test_a_weights_file_that_cannot_be_read_or_is_a_pipe_is_said_to_be(ckpt: CheckpointDir, monkeypatch) -> None:
    """safetensors said "No such file or directory" of an unreadable model.safetensors (a lifecycle audit, run
    without root's override), and a named pipe in its place was "has no model.safetensors": each is there, and
    is the wrong thing."""
    import os

    real_open = Path.open

    def refusing(path: Path, *args, **kwargs):
        if path == ckpt.weights_path:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refusing)
    with pytest.raises(CheckpointError, match=r"model\.safetensors cannot be read: Permission denied"):
        ckpt.check()
    monkeypatch.undo()
    ckpt.check()
    ckpt.weights_path.unlink()
    os.mkfifo(ckpt.weights_path)
    with pytest.raises(CheckpointError, match=r"model\.safetensors is not a regular file \(a pipe"):
        ckpt.check()


def test_a_broken_profile_is_named_once(ckpt: CheckpointDir) -> None:
    """A profile that is no JSON said "invalid .../profile.json: invalid .../profile.json: not JSON"."""
    ckpt.profile_path.write_text('{"llm_gflops": [1.0]')
    with pytest.raises(CheckpointError) as caught:
        ckpt.read_profile()
    assert str(caught.value).count("profile.json") == 1, str(caught.value)


def test_a_config_of_strings_for_numbers_or_booleans_is_refused_and_whole_floats_are_numbers(ckpt: CheckpointDir):
    """config.json's "64" was taken as the size 64 and "yes" as true (pydantic's lax coercion), without a word."""
    data = json.loads(ckpt.config_path.read_text())
    data["image_size"] = str(data["image_size"])
    ckpt.config_path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=r"image_size: Input should be a valid integer"):
        ckpt.read_config()
    data["image_size"] = float(data["image_size"])  # 64.0, as some tools write a whole number: still one
    data["vision"]["freeze"] = "yes"
    ckpt.config_path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=r"vision\.freeze: Input should be a valid boolean"):
        ckpt.read_config()
    data["vision"]["freeze"] = True
    ckpt.config_path.write_text(json.dumps(data))
    assert ckpt.read_config().image_size == int(data["image_size"])
