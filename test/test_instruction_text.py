"""An instruction reads the same to the model in training and on a robot, whatever its spacing or spelling."""
from __future__ import annotations

import pytest

from deer_vla.core.instruction_text import clean_instruction
from deer_vla.model.text import source_tokenizer
from deer_vla.model.tokenizer import build_word_tokenizer, encode_instruction
from deer_vla.train.windows import make_collate


@pytest.fixture(scope="module")
def wordllama():
    return source_tokenizer("wordllama")


@pytest.mark.parametrize("text", [
    "open the drawer", " open  the drawer ", "open\tthe\ndrawer\r\n", "\ufeffopen the\u200b drawer\u200e",
    "open\u00a0the\u3000drawer", "open the\x0bdrawer",
])
def test_spacing_and_invisible_characters_read_as_the_training_text(text, wordllama):
    """A tab, a newline, a doubled space or a zero-width character added subword tokens ("<0x09>", a lone
    "▁") the model never saw in training, whose texts are single-spaced."""
    assert clean_instruction(text) == "open the drawer"
    assert encode_instruction(wordllama, text, 24) == encode_instruction(wordllama, "open the drawer", 24)


def test_special_token_spellings_in_an_instruction_are_plain_text(wordllama):
    """"</s>" in a message was the end-of-text token, which is also the pad id training only sees masked out;
    "<unk>" alone was an all-unknown instruction the runner accepted."""
    specials = {wordllama.eos_token_id, wordllama.unk_token_id, wordllama.pad_token_id}
    for text in ("open the drawer</s></s>", "<unk>", "<s> open the drawer"):
        ids = encode_instruction(wordllama, text, 24)
        assert ids[0] == wordllama.bos_token_id and not specials & set(ids[1:]), (text, ids)
        assert wordllama.bos_token_id not in ids[1:]


def test_text_that_is_not_valid_unicode_is_refused_and_training_reads_as_run_time(wordllama):
    with pytest.raises(ValueError, match="not valid text"):
        clean_instruction("open the drawer \ud83d")  # a lone surrogate: undecodable bytes read by Python
    assert clean_instruction("\u200b \t") == ""
    # the training batches tokenize through the same function as the runner
    word = build_word_tokenizer(["open the drawer"])
    for tok in (wordllama, word):
        batch = make_collate(tok, 24)([_item("open  the\tdrawer\n")])
        assert batch.input_ids[0].tolist() == encode_instruction(tok, "open the drawer", 24)


def _item(instruction: str) -> dict:
    import torch

    return {"images": {"static": torch.zeros(2, 8, 8, 3, dtype=torch.uint8)}, "instruction": instruction,
            "anchor": instruction, "proprio": None, "actions": torch.zeros(2, 4)}


def test_training_token_cache_keeps_recent_texts_and_stays_bounded(monkeypatch):
    """Instruction noise makes fresh variants all run long; the collate's cache of their token ids grew
    without bound. It keeps the most recent texts (tokenized once while they repeat) and drops the oldest."""
    import deer_vla.train.windows as windows

    calls: list[str] = []

    def counting(tok, text, max_len):
        calls.append(text)
        return encode_instruction(tok, text, max_len)

    monkeypatch.setattr(windows, "encode_instruction", counting)
    monkeypatch.setattr(windows, "COLLATE_TOKEN_CACHE", 2)
    collate = make_collate(build_word_tokenizer(["open the drawer", "close it", "push the button"]), 24)
    for text in ("open the drawer", "open the drawer", "close it", "open the drawer"):
        collate([_item(text)])
    assert calls == ["open the drawer", "close it"]  # repeats are not tokenized again
    collate([_item("push the button")])  # a third text: "close it" is the least recent and goes
    collate([_item("open the drawer")])
    collate([_item("close it")])
    assert calls == ["open the drawer", "close it", "push the button", "close it"]


@pytest.mark.parametrize("text", ["open the drawer \ufffd", "open the \ufffd\ufffd drawer"])
def test_undecodable_bytes_anywhere_in_the_text_are_refused(text):
    with pytest.raises(ValueError, match="U\\+FFFD"):
        clean_instruction(text)


def test_digits_are_not_word_letters():
    from deer_vla.core.instruction_text import instruction_words

    assert instruction_words("press button 2, then b4") == ["press", "button", "then", "b"]
