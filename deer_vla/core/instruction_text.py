"""The one form of an instruction's text that the tokenizer reads, in training and at run time alike."""
from __future__ import annotations

import unicodedata

# The longest instruction anything reads, in characters: the model reads only its first lm.max_text_len tokens,
# but the tokenizer reads the whole text (cutting it first could change the tokens at the cut), about 200 ms
# at this length on a CPU and seconds for megabytes. The policy node's max_instruction_chars is at most this.
MAX_INSTRUCTION_CHARS = 1 << 16


def clean_instruction(text: str) -> str:
    """``text`` with format characters (zero-width spaces and joiners, byte-order marks, direction marks)
    dropped and every run of whitespace or control characters (tabs, newlines) made one space, ends stripped.

    Training texts are single-spaced words, so "open  the\\tdrawer\\n" must read as "open the drawer" on a
    robot too: the subword tokenizer would otherwise add tokens (a lone "▁", "<0x09>") the model never saw.
    Raises ValueError for text that is not valid Unicode (a lone surrogate, e.g. from undecodable bytes).
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"instruction is not valid text ({exc.reason} at character {exc.start})") from exc
    kept = "".join(" " if unicodedata.category(c) == "Cc" else c for c in text if unicodedata.category(c) != "Cf")
    return " ".join(kept.split())
