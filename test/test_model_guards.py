"""Runner, checkpoint loading, tokenizers, text source and observation checks: rules no other test pinned down (a
mutation audit broke each and every test passed). Broken, each would carry state into a new episode, act outside
the action limits, use another machine's costs, load a checkpoint or tokenizer it should refuse, or refuse it
naming the wrong problem."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from deer_vla.core import ActionSpec, CostProfile, Observation
from deer_vla.core.instruction_text import clean_instruction
from deer_vla.core.proprio_spec import ProprioSpec
from deer_vla.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from deer_vla.model.checkpoint_dir import CheckpointDir
from deer_vla.model.policy import MultiExitPolicy
from deer_vla.model.presets import preset_config
from deer_vla.model.runner import PolicyRunner
from deer_vla.model.text import TextSourceError, text_config
from deer_vla.model.tokenizer import build_word_tokenizer, load_tokenizer

torch.set_num_threads(1)
TEXTS = ["open the drawer", "close the window"]


def tiny_model(saturate: bool = False, **config: object) -> MultiExitPolicy:
    """The "tiny" preset (``config`` keys replaced), seeded, cross-attention gates open so the images and past
    frames change the actions; ``saturate``: head weights so large that its outputs sit at their limits."""
    torch.manual_seed(0)
    model = MultiExitPolicy(preset_config("tiny").model_copy(update=config)).eval()
    with torch.no_grad():
        for block in model.xattn.values():
            block.attn_gate.fill_(0.7)
            block.ff_gate.fill_(-0.4)
        for p in model.head.parameters() if saturate else ():
            p.mul_(20.0)
    return model


def observation(model: MultiExitPolicy, seed: int, instruction: str = TEXTS[0], proprio: bool = True) -> Observation:
    rng = np.random.default_rng(seed)
    images = {c: rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for c in model.config.cameras}
    return Observation(images=images, instruction=instruction,
                       proprio=rng.uniform(-1, 1, model.config.proprio_dim) if proprio else None)


def play(runner: PolicyRunner, model: MultiExitPolicy, seeds: list[int]) -> list[np.ndarray]:
    """One step per seed, every exit run and the last committed: each step's (N, A) candidate actions."""
    out = []
    for seed in seeds:
        runner.begin_step(observation(model, seed))
        out.append(np.stack([runner.run_next_exit() for _ in range(runner.num_exits)]))
        runner.commit(runner.num_exits)
    return out


@pytest.fixture
def checkpoint(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    """A copy of the session's tiny checkpoint that a test may change."""
    return Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))


# --- runner -------------------------------------------------------------------------------------


def test_reset_forgets_the_past_frames() -> None:
    """reset() kept the visual tokens of the last episode's frames: the first steps of a new episode saw the old
    scene, and its actions differed from a fresh runner's."""
    model = tiny_model(past_frames=2)
    tokenizer = build_word_tokenizer(TEXTS)
    runner = PolicyRunner(model, tokenizer)
    play(runner, model, [10, 11, 12])
    runner.reset()
    fresh = play(PolicyRunner(model, tokenizer), model, [1, 2])
    for got, want in zip(play(runner, model, [1, 2]), fresh, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_the_runner_clips_every_exits_action_to_the_action_spec() -> None:
    """A head whose outputs overshoot the checkpoint's action limits sent them to the robot unclipped."""
    spec = ActionSpec(axes=("x", "y", "z"), low=(-0.05,) * 3, high=(0.05,) * 3)
    model = tiny_model(saturate=True, action=spec.to_dict())
    runner = PolicyRunner(model, build_word_tokenizer(TEXTS))
    motion = np.abs(np.concatenate([a[:, :3] for a in play(runner, model, [0, 1, 2])]))
    assert motion.max() <= 0.05
    assert np.isclose(motion, 0.05).any()  # the head did overshoot: the limit was applied


def test_a_missing_proprioception_is_refused_naming_it() -> None:
    """An observation without proprioception, for a model that reads it, failed as a shapeless array, not as the
    missing input it is."""
    model = tiny_model()
    runner = PolicyRunner(model, build_word_tokenizer(TEXTS))
    with pytest.raises(ValueError, match=r"needs proprioception \(4 values\); observation has none"):
        runner.begin_step(observation(model, 0, proprio=False))


def test_dropped_tokens_follows_the_instruction_read_from_the_cache() -> None:
    """An instruction read from the token cache kept the previous instruction's count of tokens past the model's
    limit, so a long instruction seen before was reported as read whole."""
    model = tiny_model()
    runner = PolicyRunner(model, build_word_tokenizer(TEXTS))
    long = " ".join([TEXTS[0]] * 40)
    dropped = []
    for text in (long, TEXTS[0], long):
        runner.begin_step(observation(model, 0, instruction=text))
        runner.run_next_exit()
        runner.commit(1)
        dropped.append(runner.dropped_tokens)
    assert dropped[0] > 0 and dropped == [dropped[0], 0, dropped[0]]


@pytest.mark.parametrize("change", [{"device": "cuda"}, {"exits": 5}, {"exits": 3}, {"dtype": "bfloat16"}],
                         ids=["another-device", "more-exits", "fewer-exits", "another-dtype"])
def test_a_saved_profile_of_another_model_or_device_is_not_used(checkpoint: Path, change: dict) -> None:
    """A profile.json measured on a GPU, or for a model with another number of exits, set this runner's costs and
    times: budgets were checked against another machine's numbers. The runner measures its own instead."""
    n = int(change.get("exits", 4))
    saved = CostProfile(llm_gflops=[100.0 * k for k in range(1, n + 1)],
                        total_gflops=[200.0 * k for k in range(1, n + 1)], params=[10] * n, weight_bytes=[40] * n,
                        device=str(change.get("device", "cpu")), dtype=str(change.get("dtype", "float32")))
    CheckpointDir(checkpoint).write_profile(saved)
    profile = PolicyRunner.from_checkpoint(checkpoint).cost_profile
    assert (profile.device, profile.dtype, profile.num_exits) == ("cpu", "float32", 4)
    assert profile.llm_gflops != saved.llm_gflops[:4]


def test_a_saved_profile_of_this_model_on_this_device_is_used(checkpoint: Path) -> None:
    """The other side of the rule above: a matching profile.json is read, not measured again."""
    saved = CostProfile(llm_gflops=[1.0, 2.0, 3.0, 4.0], total_gflops=[2.0, 3.0, 4.0, 5.0], params=[10] * 4,
                        weight_bytes=[40] * 4)
    CheckpointDir(checkpoint).write_profile(saved)
    assert PolicyRunner.from_checkpoint(checkpoint).model_profile.llm_gflops == saved.llm_gflops


# --- checkpoint ---------------------------------------------------------------------------------


def test_max_exit_outside_the_checkpoints_exits_is_refused_naming_its_config(checkpoint: Path) -> None:
    """max_exit 0 or past the last exit was refused only by the model's constructor, naming no checkpoint file."""
    for bad in (0, 5):
        with pytest.raises(CheckpointError, match=rf"max_exit={bad} outside 1\.\.4 \(exits in .*config\.json\)"):
            load_checkpoint(checkpoint, max_exit=bad)


def test_weights_missing_tensors_are_refused_naming_them(checkpoint: Path) -> None:
    """A weights file lacking tensors (and holding no others) was read on and failed as "a truncated copy",
    naming neither the tensors nor the config they are missing from."""
    weights = CheckpointDir(checkpoint).weights_path
    tensors = load_file(str(weights))
    dropped = sorted(tensors)[-1]
    del tensors[dropped]
    save_file(tensors, str(weights))
    with pytest.raises(CheckpointError, match=rf"missing tensors \['{dropped}'\], unexpected tensors \[\]"):
        load_checkpoint(checkpoint)


def test_a_tokenizer_one_token_over_the_vocabulary_is_refused_at_load(tmp_path: Path) -> None:
    """A tokenizer with one token more than the model's embedding rows loaded, and that token's id indexed past
    the table at its first use."""
    model = tiny_model()
    vocab = model.config.token_vocab_size
    ckpt = save_checkpoint(model, build_word_tokenizer(TEXTS), tmp_path / "ckpt")
    big = build_word_tokenizer([" ".join(f"w{i}" for i in range(vocab - 1))])  # + [PAD], [UNK]
    assert len(big) == vocab + 1
    big.save_pretrained(str(ckpt))
    with pytest.raises(CheckpointError, match=rf"tokenizer has {vocab + 1} tokens but the token vocabulary"):
        load_checkpoint(ckpt)


# --- tokenizers and text sources ----------------------------------------------------------------


def test_a_tokenizer_without_a_pad_token_pads_with_its_end_token(tmp_path: Path) -> None:
    """A saved tokenizer that names an end token but no pad token loaded without one, and every padded batch
    (training, calibration) failed."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>", "open", "the", "drawer"]
    backend = Tokenizer(WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>",
                            eos_token="</s>").save_pretrained(str(tmp_path))
    tok = load_tokenizer(tmp_path)
    assert tok.pad_token == "</s>" and tok.pad_token_id == tok.eos_token_id
    batch = tok(["open", "open the drawer"], padding=True)["input_ids"]
    assert batch[0] == [3, 2, 2]


def _hf_text_source(root: Path, rows: int) -> Path:
    """A local HF LM directory: a word tokenizer of 5 tokens and an embedding table of ``rows`` rows."""
    root.mkdir()
    save_file({"model.embed_tokens.weight": torch.randn(rows, 8)}, str(root / "model.safetensors"))
    build_word_tokenizer(["open the drawer"]).save_pretrained(str(root))
    return root


def test_a_text_source_whose_tokenizer_outgrows_its_embedding_table_is_refused(tmp_path: Path) -> None:
    """A tokenizer with more tokens than the table has rows made a text config whose last token ids index past
    the table."""
    with pytest.raises(TextSourceError, match="tokenizer has 5 tokens but the embedding table only 4 rows"):
        text_config(str(_hf_text_source(tmp_path / "small", rows=4)))
    assert text_config(str(_hf_text_source(tmp_path / "exact", rows=5))).vocab_size == 5


# --- observation, proprioception spec, instruction text -----------------------------------------


def test_an_image_too_narrow_or_not_rgb_is_refused() -> None:
    """A 64x4 image passed (only the height was checked), and a 4-channel RGBA image passed the HxWx3 check."""
    cameras = ("static",)
    Observation(images={"static": np.zeros((8, 8, 3), np.uint8)}, instruction="x").validate(cameras)
    with pytest.raises(ValueError, match=r"too small \(min 8x8\)"):
        Observation(images={"static": np.zeros((64, 4, 3), np.uint8)}, instruction="x").validate(cameras)
    with pytest.raises(ValueError, match=r"expected HxWx3 uint8 RGB, got shape \(8, 8, 4\)"):
        Observation(images={"static": np.zeros((8, 8, 4), np.uint8)}, instruction="x").validate(cameras)


def test_a_proprio_spec_with_a_zero_std_crossed_limits_or_an_unknown_key_is_refused() -> None:
    """A zero std divided by zero at standardisation; low above high refused every value; a misspelt key ("lo")
    was dropped and the robot ran without limits."""
    with pytest.raises(ValueError, match="std must be positive"):
        ProprioSpec(names=("a",), mean=(0.0,), std=(0.0,))
    with pytest.raises(ValueError, match="low must not exceed high"):
        ProprioSpec(names=("a",), low=(1.0,), high=(0.0,))
    with pytest.raises(ValueError, match=r"unknown ProprioSpec keys \['lo'\]"):
        ProprioSpec.from_dict({"names": ["a"], "lo": [0.0]})


def test_control_characters_in_an_instruction_become_a_space() -> None:
    """A NUL or ESC between words joined them into one word the tokenizer never saw."""
    assert clean_instruction("open\x00the\x1bdrawer") == "open the drawer"
