"""The one form of an instruction's text that the tokenizer reads, in training and at run time alike."""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

# The longest instruction anything reads, in characters: the model reads only its first lm.max_text_len tokens,
# but the tokenizer reads the whole text (cutting it first could change the tokens at the cut), about 200 ms
# at this length on a CPU and seconds for megabytes. The policy node's max_instruction_chars is at most this.
MAX_INSTRUCTION_CHARS = 1 << 16
# marks people type for an apostrophe: right and left single quotes, acute and grave accents, modifier letters,
# the prime (fullwidth ones are NFKC's to fold, as the tokenizer does)
APOSTROPHES = "\u2019\u2018\u00b4`\u02bc\u02b9\u2032"
_PLAIN_APOSTROPHES = str.maketrans(APOSTROPHES, "'" * len(APOSTROPHES))
# letters (the modifier-letter apostrophes aside), with apostrophes inside ("don't", "maker's"); digits and
# underscores are not word letters here
_LETTER = r"[^\W\d_\u02bc\u02b9]"
WORD = re.compile(rf"{_LETTER}+(?:['{re.escape(APOSTROPHES)}]{_LETTER}+)*")
# words that make a request one not to do something: the policy can only do tasks, and it did the task named
# ("don't open the drawer" opened it in 10 of 10 episodes on the shipped default), so such a request is refused.
# Contractions are also matched by their ending (n't, 'nt), with or without the apostrophe for the common ones
NEGATIONS = frozenset({
    "not", "never", "no", "nor", "neither", "cannot", "donot", "avoid", "dont", "doesnt", "didnt", "cant", "wont",
    "shouldnt", "mustnt", "couldnt", "wouldnt",
})
# where a clause ends: "push the puck, not too fast" asks for the task, "the drawer, don't open it" forbids it
CLAUSE_BREAK = re.compile(r"[,;:.!?]|\b(?:so|but|if|unless|because|while|and|then)\b", re.IGNORECASE)
# words that name no task: a clause of only these and a negation ("don't!", "robot, never") forbids what follows
FUNCTION_WORDS = frozenset({
    "the", "a", "an", "to", "it", "its", "it's", "you", "i", "me", "my", "please", "robot", "hey", "ok", "okay",
    "could", "would", "can", "will", "some", "like", "need", "of", "that", "this", "for", "with", "is", "be", "now",
    "just", "do", "ever", "again", "there", "we", "us", "let's", "go", "ahead",
})
# a negation after these says what something is, not what not to do ("the button that is not red", "so it's
# not left open")
COPULAS = frozenset({"is", "are", "was", "were", "it's", "that's", "there's", "which", "that", "who"})
# idioms that negate nothing the robot is asked
NOT_NEGATING = frozenset({("no", "problem"), ("no", "rush"), ("no", "hurry"), ("no", "worries"), ("not", "now")})
# "press the No. 5 button": an abbreviation of number, not a negation
NUMBER_ABBREVIATION = re.compile(r"\bno\.?\s*\d", re.IGNORECASE)
# words of opposite tasks (drawer-open / drawer-close, faucet on / off; not "lock", a noun as often: "the lock:
# turn it to unlock" is door-unlock's own wording). A state said with one beside a goal said with the other ("the
# window is open, please close the window") is read as the state's task: the model reads word order little (its
# instruction check not at all) and did the opposite task in 5 of 5 episodes for that window text and for "the
# drawer is shut, please open the drawer". Only a stated state counts (after a copula: "on the sink", "take the
# nut off the peg", "close to you" are no states). No trained or held-out wording of either suite holds one
OPPOSITES = (
    (frozenset({"open", "opens", "opened", "opening"}),
     frozenset({"close", "closes", "closed", "closing", "shut", "shuts", "shutting"})),
    (frozenset({"on"}), frozenset({"off"})),
)


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
    return word.lower().translate(_PLAIN_APOSTROPHES)


def instruction_words(text: str) -> list[str]:
    """The words of ``text`` (``plain_word``)."""
    return [plain_word(m.group()) for m in WORD.finditer(text)]


STATE_WORDS_AFTER = 3  # "is open", "is still open", "was left wide open": the state word this near its copula
# a copula in a state (and "<noun>'s", "the faucet's off"); "it's" too
STATE_COPULAS = frozenset({"is", "are", "was", "were", "it's", "that's", "looks", "seems", "stays", "remains"})


def opposite_words(text: str) -> tuple[str, str] | None:
    """(the state word, the other) when ``text`` says a state with a word of one side of OPPOSITES ("the window is
    open", "the faucet's off": up to STATE_WORDS_AFTER words after a copula, in its clause) and holds a word of the
    other side ("close", "on") anywhere; else None. Read NFKC-folded, as the tokenizer reads it."""
    folded = unicodedata.normalize("NFKC", text.translate(_PLAIN_APOSTROPHES))
    everywhere = set(instruction_words(folded))
    for clause in CLAUSE_BREAK.split(folded):
        words = instruction_words(clause)
        for i, word in enumerate(words):
            if not (word in STATE_COPULAS or word.endswith("'s")):
                continue
            for state in words[i + 1:i + 1 + STATE_WORDS_AFTER]:
                for one, other in OPPOSITES:
                    for side, opposite in ((one, other), (other, one)):
                        found = sorted(everywhere & opposite)
                        if state in side and found:
                            return state, found[0]
    return None


# these say a state ("if the drawer isn't open"), spelt with an apostrophe or without, unless PROHIBITIVE follows
STATE_NEGATORS = frozenset({"isn't", "aren't", "wasn't", "weren't", "isnt", "arent"})
# after a copula's negation these make a prohibition: "you aren't allowed to", "you are not to", "isnt meant to"
PROHIBITIVE = frozenset({"to", "allowed", "supposed", "meant", "permitted"})


def _negator(word: str) -> bool:
    return (word in NEGATIONS or word.endswith(("n't", "'nt"))) and word not in STATE_NEGATORS


def negation(text: str, trained: Iterable[str] = ()) -> str | None:
    """The word that makes ``text`` ask not to do something, or None. A clause (CLAUSE_BREAK ends one) forbids
    when it holds a negation (NEGATIONS, or a contraction ending in n't or 'nt: "don't", "do'nt", "didnt"; not
    after a copula, "the button that is not red", unless a prohibition follows: "you aren't allowed to"; "isn't",
    "aren't" only then; not "No." before a number; not an idiom, "no rush"; not a word
    a checkpoint was trained on, ``trained``) and either a word that may name the task (any word but
    FUNCTION_WORDS; with ``trained`` given, a trained one) or nothing else ("don't! open the drawer"). The text
    is read NFKC-folded, as the tokenizer reads it ("don＇t" is "don't"). Refusing is the safe side: "open the
    window and don't close it" and "open the drawer if you can't see the window" are refused too."""
    allowed = set(trained)
    # apostrophe marks first: NFKC makes the acute accent a space and a combining mark ("don´t" would be "don t")
    folded = NUMBER_ABBREVIATION.sub(" ", unicodedata.normalize("NFKC", text.translate(_PLAIN_APOSTROPHES)))
    for clause in CLAUSE_BREAK.split(folded):
        words = instruction_words(clause)
        found = None
        for i, word in enumerate(words):
            prohibits = i + 1 < len(words) and words[i + 1] in PROHIBITIVE
            if word in allowed or not (_negator(word) or word in STATE_NEGATORS and prohibits):
                continue
            if i and words[i - 1] in COPULAS and not prohibits:
                continue
            if i + 1 < len(words) and (word, words[i + 1]) in NOT_NEGATING:
                continue
            found = found or word
        if found is None:
            continue
        rest = [w for w in words if not _negator(w) and w not in FUNCTION_WORDS]
        # a trained word or a form of one ("pushing" of "push")
        names_task = (any(w in allowed or any(w.startswith(t) for t in allowed if len(t) >= 4) for w in rest)
                      if allowed else bool(rest))
        if names_task or not rest:
            return found
    return None
