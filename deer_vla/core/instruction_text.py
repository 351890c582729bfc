"""The one form of an instruction's text that the tokenizer reads, in training and at run time alike."""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

# The longest instruction anything reads, in characters: the model reads only its first lm.max_text_len tokens,
# but the tokenizer reads the whole text (cutting it first could change the tokens at the cut), about 200 ms
# at this length on a CPU and seconds for megabytes. The policy node's max_instruction_chars is at most this.
MAX_INSTRUCTION_CHARS = 1 << 16
# marks people type for an apostrophe: right and left single quotes, acute and grave accents, the modifier letter
APOSTROPHES = "\u2019\u2018\u00b4`\u02bc"
# letters, with apostrophes inside ("don't", "maker's"); digits and underscores are not word letters here
WORD = re.compile(r"[^\W\d_\u02bc]+(?:['\u2019\u2018\u00b4`\u02bc][^\W\d_\u02bc]+)*")
# words that make a request one not to do something: the policy can only do tasks, and it did the task named
# ("don't open the drawer" opened it in 10 of 10 episodes on the shipped default), so such a request is refused.
# Contractions are also matched by their ending (n't, 'nt), with or without the apostrophe for the common ones
NEGATIONS = frozenset({
    "not", "never", "no", "nor", "neither", "cannot", "donot", "avoid", "dont", "doesnt", "didnt", "cant", "wont",
    "shouldnt", "mustnt", "isnt", "arent", "couldnt", "wouldnt",
})
# where a request's first clause ends: "push the puck, not too fast" and "close it so it's not left open" ask for
# the task; only a negation before such a break forbids it
CLAUSE_BREAK = re.compile(r"[,;:.!?]|\b(?:so|but|if|unless|because|while|and then)\b", re.IGNORECASE)
# "press the No. 5 button": an abbreviation of number, not a negation
NUMBER_ABBREVIATION = re.compile(r"\bno\.?\s*\d", re.IGNORECASE)


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
    """A word lower-cased, every apostrophe mark made plain."""
    return word.lower().translate(str.maketrans(APOSTROPHES, "'" * len(APOSTROPHES)))


def instruction_words(text: str) -> list[str]:
    """The words of ``text`` (``plain_word``)."""
    return [plain_word(m.group()) for m in WORD.finditer(text)]


def negation(text: str, trained: Iterable[str] = ()) -> str | None:
    """The word that makes ``text`` ask not to do something, or None: one of NEGATIONS or a contraction ending in
    n't or 'nt ("don't", "do'nt", "didnt"), in the request's first clause of more than two words (clauses end at
    CLAUSE_BREAK: "open the drawer, no rush" asks to open it), not "No." before a number, and not a word a
    checkpoint was trained on (``trained``)."""
    allowed = set(trained)
    clauses = [instruction_words(c) for c in CLAUSE_BREAK.split(NUMBER_ABBREVIATION.sub(" ", text))]
    # a leading address or interjection of a word or two is not the request: "robot, don't open the drawer"
    # forbids, "no, open the drawer" asks to open it
    request = next((c for c in clauses if len(c) > 2), [w for c in clauses for w in c])  # else all of it
    for word in request:
        if word not in allowed and (word in NEGATIONS or word.endswith(("n't", "'nt"))):
            return word
    return None
