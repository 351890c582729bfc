"""Pretrained instruction front end: subword tokenizer + token table from local files (wordllama wheel, HF dir)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from deer_vla.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from deer_vla.model.policy import MultiExitPolicy
from deer_vla.model.presets import preset_config
from deer_vla.model.text import TextSourceError, load_table, source_tokenizer, text_config
from deer_vla.sim.tasks import TASK_SUITE

torch.set_num_threads(1)

# Ordinary English words a person might type to a robot (none of them in the old 41-word vocabulary).
ORDINARY = (
    "could you please gently shut the cupboard door for me, thanks! Rotate the knob clockwise; "
    "lower the lever toward yourself. Would you mind opening the window a little wider? "
    "Switch off the water tap, then push the red switch on the espresso maker."
)


@pytest.fixture(scope="module")
def wordllama() -> tuple[object, object]:
    cfg = text_config("wordllama")
    return cfg, source_tokenizer("wordllama")


def _sentence_vector(tok: object, table: torch.Tensor, text: str) -> np.ndarray:
    ids = tok(text)["input_ids"][1:]  # without the <s> every instruction shares
    v = table[ids].mean(0).numpy()
    return v / np.linalg.norm(v)


def test_no_ordinary_english_word_is_unknown(wordllama) -> None:
    _, tok = wordllama
    texts = [ORDINARY, ORDINARY.upper()]
    for spec in TASK_SUITE.values():
        texts += [*spec.train_instructions, *spec.heldout_instructions]
    for text in texts:
        ids = tok(text)["input_ids"]
        assert tok.unk_token_id not in ids, (text, tok.convert_ids_to_tokens(ids))


def test_case_and_unicode_width_do_not_change_tokens(wordllama) -> None:
    _, tok = wordllama
    assert tok("Open The DRAWER")["input_ids"] == tok("open the drawer")["input_ids"]
    assert tok("ｏｐｅｎ the drawer")["input_ids"] == tok("open the drawer")["input_ids"]  # NFKC folds full width


def test_paraphrases_land_closer_than_other_tasks(wordllama) -> None:
    cfg, tok = wordllama
    table = load_table(cfg)

    def sim(a: str, b: str) -> float:
        return float(_sentence_vector(tok, table, a) @ _sentence_vector(tok, table, b))

    # "shut" was [UNK] for the old word vocabulary; in the pretrained table it means close, not open
    assert sim("shut the window", "close the window") > sim("shut the window", "open the window")
    assert sim("could you open the drawer", "open the drawer") > sim("could you open the drawer", "close the drawer")

    def word(w: str) -> np.ndarray:
        ids = tok(w)["input_ids"][1:]
        v = table[ids].mean(0).numpy()
        return v / np.linalg.norm(v)

    assert float(word("shut") @ word("close")) > float(word("shut") @ word("coffee"))
    assert float(word("tap") @ word("faucet")) > float(word("tap") @ word("drawer"))


def test_frozen_table_is_not_stored_and_is_checked_on_load(wordllama, tmp_path: Path) -> None:
    cfg, tok = wordllama
    pcfg = preset_config("tiny")
    pcfg.text = cfg
    model = MultiExitPolicy(pcfg)
    ckpt = save_checkpoint(model, tok, tmp_path / "ck")
    from safetensors import safe_open

    with safe_open(str(ckpt / "model.safetensors"), framework="pt") as f:
        assert not any("table" in k for k in f.keys())  # 32000x256 stays in the wheel
    loaded, loaded_tok = load_checkpoint(ckpt)
    # the case folding is part of the saved tokenizer, not only of the source's
    assert loaded_tok("Open The DRAWER")["input_ids"] == tok("open the drawer")["input_ids"]
    ids = torch.tensor([loaded_tok("could you shut the drawer")["input_ids"]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        a, _ = model.lm.embed(ids, mask)
        b, _ = loaded.lm.embed(ids, mask)
    assert torch.equal(a, b)

    data = json.loads((ckpt / "config.json").read_text())
    data["text"]["sha256"] = "0" * 64
    (ckpt / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="text front end.*differ"):
        load_checkpoint(ckpt)
    data["text"]["source"] = str(tmp_path / "nowhere")
    (ckpt / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="nowhere"):
        load_checkpoint(ckpt)


def test_trainable_table_round_trips_through_the_checkpoint(tmp_path: Path) -> None:
    cfg = text_config("wordllama", trainable=True)
    pcfg = preset_config("tiny")
    pcfg.text = cfg
    model = MultiExitPolicy(pcfg)
    model.lm.embed_tokens.init_from_source(cfg)
    with torch.no_grad():
        model.lm.embed_tokens.table[5] += 1.0  # "fine-tuned"
    assert any(p is model.lm.embed_tokens.table for p in model.parameters())
    ckpt = save_checkpoint(model, source_tokenizer("wordllama"), tmp_path / "ck")
    loaded, _ = load_checkpoint(ckpt)
    assert torch.equal(loaded.lm.embed_tokens.table, model.lm.embed_tokens.table)
    assert not torch.equal(loaded.lm.embed_tokens.table[5], load_table(cfg)[5])


def _tiny_hf_lm(root: Path) -> Path:
    """A tiny Llama saved with save_pretrained, with a BPE tokenizer trained here (an HF LM directory)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    texts = [t for s in TASK_SUITE.values() for t in s.train_instructions] * 3
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=200, special_tokens=["<unk>", "<s>", "</s>"]))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=24, intermediate_size=48, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2)
    LlamaForCausalLM(cfg).save_pretrained(root)
    tok.save_pretrained(root)
    return root


def test_a_local_hf_lm_directory_is_a_text_source(tmp_path: Path) -> None:
    from transformers import LlamaForCausalLM

    lm_dir = _tiny_hf_lm(tmp_path / "lm")
    cfg = text_config(str(lm_dir))
    assert cfg.embed_dim == 24
    expected = LlamaForCausalLM.from_pretrained(lm_dir).get_input_embeddings().weight.detach()
    assert torch.equal(load_table(cfg), expected)
    tok = source_tokenizer(str(lm_dir))
    assert tok("PUSH the Drawer")["input_ids"] == tok("push the drawer")["input_ids"]

    pcfg = preset_config("tiny")
    pcfg.text = cfg
    ckpt = save_checkpoint(MultiExitPolicy(pcfg), tok, tmp_path / "ck")
    model, loaded_tok = load_checkpoint(ckpt)
    assert len(loaded_tok) == len(tok)
    assert torch.equal(model.lm.embed_tokens.table, expected)


def test_bad_sources_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(TextSourceError, match="neither 'wordllama' nor an existing directory"):
        text_config("no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TextSourceError, match=r"no \*\.safetensors"):
        text_config(str(tmp_path / "empty"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes(b"\xff\xfe not safetensors")
    (bad / "tokenizer.json").write_text("{}")
    with pytest.raises(TextSourceError, match="cannot read token embeddings"):
        text_config(str(bad))


def test_checkpoints_from_before_the_text_front_end_still_load(tmp_path: Path) -> None:
    from deer_vla.model.tokenizer import build_word_tokenizer

    model = MultiExitPolicy(preset_config("tiny"))
    ckpt = save_checkpoint(model, build_word_tokenizer(["open the drawer"]), tmp_path / "old")
    data = json.loads((ckpt / "config.json").read_text())
    del data["text"]  # config.json as written before the key existed
    (ckpt / "config.json").write_text(json.dumps(data))
    loaded, tok = load_checkpoint(ckpt)
    assert loaded.config.text is None and isinstance(loaded.lm.embed_tokens, torch.nn.Embedding)
    assert tok("shut the drawer")["input_ids"][0] == tok.unk_token_id  # the closed vocabulary it was built with


def test_training_with_the_pretrained_front_end_writes_a_runnable_checkpoint(tmp_path: Path) -> None:
    from deer_vla.core import Observation
    from deer_vla.model.runner import PolicyRunner
    from deer_vla.train.synthetic import write_tiny_dataset
    from deer_vla.train.trainer import cli_main

    tiny = preset_config("tiny")
    data = write_tiny_dataset(tmp_path / "demos", tuple(tiny.cameras), int(tiny.image_size), int(tiny.proprio_dim),
                              tiny.action)
    out = tmp_path / "run"
    sets = {"model_preset": "tiny", "dataset": str(data), "output_dir": str(out), "window": 4, "batch_size": 2,
            "joint.steps": 2, "joint.warmup_steps": 1, "refine.steps": 1, "device": "cpu", "num_threads": 1,
            "text.source": "wordllama", "text.trainable": "false"}
    argv = ["--no-progress"]
    for k, v in sets.items():
        argv += ["--set", f"{k}={v}"]
    assert cli_main(argv) == 0
    runner = PolicyRunner.from_checkpoint(out)
    assert runner.model.config.text is not None and runner.model.config.text.source == "wordllama"
    size = int(tiny.image_size)
    obs = Observation(images={c: np.zeros((size, size, 3), np.uint8) for c in tiny.cameras},
                      instruction="Could you SHUT the drawer, please?", proprio=np.zeros(4, np.float32))
    runner.begin_step(obs)
    action = runner.run_next_exit()
    assert np.isfinite(action).all() and action.size == runner.model.config.action_spec.dim


def test_train_keeps_an_earlier_run_and_names_a_missing_dataset(tmp_path: Path, capsys) -> None:
    """The same command again (no --resume) deleted the earlier run's step checkpoints and overwrote its weights
    without a word; a missing dataset was a traceback."""
    from deer_vla.train.synthetic import write_tiny_dataset
    from deer_vla.train.trainer import cli_main

    tiny = preset_config("tiny")
    data = write_tiny_dataset(tmp_path / "demos", tuple(tiny.cameras), int(tiny.image_size), int(tiny.proprio_dim),
                              tiny.action)
    out = tmp_path / "run"

    def argv(**changes: object) -> list[str]:
        sets = {"model_preset": "tiny", "dataset": str(data), "output_dir": str(out), "window": 4, "batch_size": 2,
                "joint.steps": 2, "joint.warmup_steps": 1, "refine.steps": 0, "device": "cpu", "num_threads": 1,
                "checkpoint_every": 1, **changes}
        return ["--no-progress", *(a for k, v in sets.items() for a in ("--set", f"{k}={v}"))]

    assert cli_main(argv()) == 0
    weights = (out / "model.safetensors").read_bytes()
    steps = sorted(p.name for p in (out / "checkpoints").iterdir())
    capsys.readouterr()
    assert cli_main(argv(seed=5)) == 2
    err = capsys.readouterr().err
    assert f"{out} holds an earlier run (model.safetensors, {len(steps)} step checkpoints" in err
    assert (out / "model.safetensors").read_bytes() == weights
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == steps
    assert cli_main([*argv(), "--resume", "--overwrite"]) == 2 and cli_main([*argv(), "--stop-at", "0"]) == 2
    assert cli_main([*argv(seed=5), "--overwrite"]) == 0
    assert (out / "model.safetensors").read_bytes() != weights
    capsys.readouterr()
    assert cli_main(argv(dataset=str(tmp_path / "nowhere"), output_dir=str(tmp_path / "run2"))) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_text_with_an_init_checkpoint_is_refused() -> None:
    from deer_vla.train.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="text applies to a fresh model"):
        load_config(None, ["model_preset=null", "init_checkpoint=/x", "text.source=wordllama"])


def test_a_bf16_source_given_by_a_relative_path_loads_from_anywhere(tmp_path: Path, monkeypatch) -> None:
    """Most language models ship bf16 weights: numpy has no bfloat16, and such a source was refused ("data type
    'bfloat16' not understood"). A relative source was stored as given, so the checkpoint loaded only from the
    folder it was trained in."""
    from safetensors.torch import load_file, save_file

    lm_dir = _tiny_hf_lm(tmp_path / "lm")
    weights = load_file(lm_dir / "model.safetensors")
    save_file({k: v.to(torch.bfloat16) for k, v in weights.items()}, lm_dir / "model.safetensors",
              metadata={"format": "pt"})
    monkeypatch.chdir(tmp_path)
    cfg = text_config("lm")
    assert cfg.source == str(lm_dir.resolve())
    table = load_table(cfg)
    assert table.dtype == torch.float32
    assert torch.equal(table, weights["model.embed_tokens.weight"].to(torch.bfloat16).float())
    monkeypatch.chdir("/")
    assert torch.equal(load_table(cfg), table)


def test_a_tokenizer_that_gives_no_tokens_or_runs_folder_code_is_refused_at_load(tmp_path: Path) -> None:
    """A tokenizer_config.json without its vocabulary loaded as a tokenizer that turns every text into no tokens
    (training died at its first step with a traceback); one naming Python code in the folder asked on a terminal
    to run it, and ran it on "y"."""
    import json

    from deer_vla.model.tokenizer import load_tokenizer

    lm_dir = _tiny_hf_lm(tmp_path / "lm")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer"}))
    with pytest.raises(ValueError, match="turns text into no tokens|cannot be loaded"):
        load_tokenizer(partial)
    code = tmp_path / "code"
    code.mkdir()
    (code / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "FooTokenizer", "auto_map": {"AutoTokenizer": ["foo_tok.FooTokenizer", None]}}))
    (code / "foo_tok.py").write_text(f"open({str(tmp_path / 'RAN')!r}, 'w').write('yes')\n")
    with pytest.raises(ValueError, match="cannot be loaded"):
        load_tokenizer(code)
    assert not (tmp_path / "RAN").exists()
    assert len(load_tokenizer(lm_dir)) > 3  # a whole one still loads


def test_a_word_vocabulary_of_a_robots_own_instructions_loads(tmp_path: Path) -> None:
    """The load check encoded "open the drawer ...": a word vocabulary built from a robot's own instructions
    (`deer-vla train` without a text front end) turned it into [UNK] alone and was refused as having no
    vocabulary, so the checkpoint trained fine and then no node, calibrate or evaluate could load it."""
    from deer_vla.model.tokenizer import build_word_tokenizer, load_tokenizer

    build_word_tokenizer(["grasp bottle", "wipe table"]).save_pretrained(str(tmp_path / "words"))
    tok = load_tokenizer(tmp_path / "words")
    ids = tok("wipe the bottle")["input_ids"]
    assert len([i for i in ids if i not in set(tok.all_special_ids)]) == 2  # "the" is unknown here
