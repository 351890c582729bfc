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
