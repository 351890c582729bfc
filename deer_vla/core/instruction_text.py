"""The one form of an instruction's text that the tokenizer reads, in training and at run time alike."""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

# The longest instruction anything reads, in characters: the model reads only its first lm.max_text_len tokens,
# but the tokenizer reads the whole text (cutting it first could change the tokens at the cut), about 200 ms
# at this length on a CPU and seconds for megabytes. The policy node's max_instruction_chars is at most this.
MAX_INSTRUCTION_CHARS = 1 << 16
# letters, with apostrophes inside ("don't", "maker's"); digits and underscores are not word letters here
WORD = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*")
# words that make a request one not to do something: the policy can only do tasks, and it did the task named
# ("don't open the drawer" opened it in 5 of 5 episodes on the shipped default), so such a request is refused
NEGATIONS = frozenset({
    "not", "never", "no", "nor", "neither", "don't", "dont", "doesn't", "doesnt", "didn't", "cannot", "can't",
    "won't", "shouldn't", "mustn't", "avoid", "without",
})


def clean_instruction(text: str) -> str:
    """``text`` with format characters (zero-width spaces and joiners, byte-order marks, direction marks)
    dropped and every run of whitespace or control characters (tabs, newlines) made one space, ends stripped.

    Training texts are single-spaced words, so "open  the\\tdrawer\\n" must read as "open the drawer" on a
    robot too: the subword tokenizer would otherwise add tokens (a lone "▁", "<0x09>") the model never saw.
    Raises ValueError for text that is not valid Unicode (a lone surrogate, e.g. from undecodable bytes) or
    holds U+FFFD, the character decoders put for bytes that are not UTF-8.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"instruction is not valid text ({exc.reason} at character {exc.start})") from exc
    bad = text.find("\ufffd")
    if bad >= 0:  # what a decoder puts for bytes that are not UTF-8 (rclpy does for a String's): the words are lost
        raise ValueError(f"instruction is not valid text (U+FFFD, a replacement for undecodable bytes, at "
                         f"character {bad})")
    kept = "".join(" " if unicodedata.category(c) == "Cc" else c for c in text if unicodedata.category(c) != "Cf")
    return " ".join(kept.split())


def plain_word(word: str) -> str:
    """A word lower-cased, typographic apostrophes made plain."""
    return word.lower().replace("\u2019", "'")


def instruction_words(text: str) -> list[str]:
    """The words of ``text`` (``plain_word``)."""
    return [plain_word(m.group()) for m in WORD.finditer(text)]


def negation(text: str, trained: Iterable[str] = ()) -> str | None:
    """The first word of ``text`` that makes it ask not to do something (NEGATIONS, or a word ending in n't), or
    None; words a checkpoint was trained on (``trained``) do not count."""
    allowed = set(trained)
    for word in instruction_words(text):
        if word not in allowed and (word in NEGATIONS or word.endswith("n't")):
            return word
    return None
