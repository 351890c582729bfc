"""Words of an instruction the policy would not read as meant: misspelt trained words, and negations.

A policy trained on a few hundred wordings reads a word it never saw as whatever its tokens are nearest to.
On the shipped default, "cloes the window", "colse the window" and "clsoe the drawer" opened the window or
drawer in 4 of 4 episodes each (shared starts, where only the instruction tells the two apart), while the
instruction check heard them as the close task. ``TrainedWords.read`` reads such a
word as the trained word it misspells: a word that is neither a trained word nor a common English word (a
real word the user chose, "oven" or "shot", is left alone) becomes the one trained word within one edit (a
letter added, dropped, changed, or two neighbours swapped; two edits for words of 8 letters or more), if
exactly one is that near; a word with accents reads as the trained word without them.

A negated request ("don't open the drawer") names the task it forbids, and the policy does that task (5 of 5
episodes opened the drawer). It cannot do "not X": core.instruction_text's ``negation`` finds the word that
makes it one, and the node and the runner refuse it.
"""
from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable
from typing import TYPE_CHECKING

from deer_vla.core.instruction_text import WORD, instruction_words, plain_word
from deer_vla.core.log_text import quoted
from deer_vla.model.instruction_match import trained_wordings

if TYPE_CHECKING:
    from deer_vla.model.checkpoint_dir import CheckpointDir

log = logging.getLogger("deer_vla.instruction_words")

MIN_FIXED_LETTERS = 4  # shorter words are too near too many others ("on"/"in", "up"/"us") to guess
TWO_EDIT_LETTERS = 8  # from this length two edits still leave one trained word nearest
# a word this frequent in pyspellchecker's English list is one the user chose ("oven", "shot", "lover"), not a
# misspelling; misspellings that happen to be rare words ("handel" 63, "pres" 216, "clos" 56) are read as typos
COMMON_WORD_FREQUENCY = 1000


class NegatedInstructionError(ValueError):
    """An instruction that asks not to do something: the policy can only do tasks."""

    def __init__(self, text: str, word: str) -> None:
        self.word = word
        super().__init__(f"instruction {quoted(text, 80)} asks not to do something ({word!r}): the policy can only "
                         "do tasks, not avoid them, and would do the task it names")


def without_accents(word: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


class TrainedWords:
    """The words of a checkpoint's trained wordings, and what a misspelt one reads as (``read``). The search is
    pyspellchecker's (Norvig's edits, swaps of neighbours included) over the trained words; its English word
    frequencies say which words are real ones a user chose."""

    def __init__(self, trained: Iterable[str]) -> None:
        from spellchecker import SpellChecker

        self.words = frozenset(plain_word(w) for w in trained)
        self._plain = {without_accents(w): w for w in self.words}
        alpha = [w for w in self.words if w.isalpha()]
        self._near = {}
        for distance in (1, 2):
            checker = SpellChecker(language=None, distance=distance, case_sensitive=True)
            checker.word_frequency.load_words(alpha)
            self._near[distance] = checker
        self._english = SpellChecker(language="en", distance=1)  # 160 000 words with their frequencies, 0.1 s

    @classmethod
    def from_wordings(cls, wordings: dict[str, list[str]]) -> TrainedWords:
        """From a checkpoint's trained wordings (task -> texts)."""
        return cls(w for texts in wordings.values() for text in texts for w in instruction_words(text))

    def fix(self, word: str) -> str | None:
        """The trained word ``word`` misspells, or None (it is trained, a common English word, too short, or near
        no single trained word)."""
        w = plain_word(word)
        if w in self.words:
            return None
        plain = without_accents(w)
        if plain != w and plain in self._plain:
            return self._plain[plain]
        if (len(plain) < MIN_FIXED_LETTERS or not plain.isalpha() or not plain.isascii()
                or self._english.word_frequency[plain] >= COMMON_WORD_FREQUENCY):
            return None
        near = self._near[2 if len(plain) >= TWO_EDIT_LETTERS else 1].candidates(plain) or set()
        near &= self.words  # without one, the library offers the word itself
        return next(iter(near)) if len(near) == 1 else None

    def read(self, text: str) -> tuple[str, list[tuple[str, str]]]:
        """``text`` with every misspelt trained word replaced by it, and the (word, read as) pairs replaced."""
        fixed: list[tuple[str, str]] = []

        def replace(match: re.Match[str]) -> str:
            word = match.group()
            to = self.fix(word)
            if to is None:
                return word
            fixed.append((word, to))
            return to.upper() if word.isupper() else to.title() if word.istitle() else to  # the word's case kept

        return WORD.sub(replace, text), fixed


def read_trained_words(checkpoint: CheckpointDir) -> TrainedWords | None:
    """The trained words of a checkpoint that records its wordings (extra.json ``training.instructions``), else
    None; an unreadable record is None too (said once: the weights are what runs, the record only informs)."""
    try:
        record = checkpoint.read_training().get("instructions")
    except (OSError, ValueError) as exc:
        log.warning("misspelt instructions are read as written: the training record of %s cannot be read (%s)",
                    checkpoint.root, exc)
        return None
    wordings = trained_wordings(record)
    return TrainedWords.from_wordings(wordings) if wordings else None
