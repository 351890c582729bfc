"""Instruction noise: generic perturbations of training instructions, so the policy does not key on exact wording.

People phrase requests with wrappers ("now ...", "... for me"), drop words and reorder them. The
training paraphrases cover a few of these per task; this draws more at random, from word lists that
are task-independent. The wrappers were chosen *not* to repeat the wording of the held-out
evaluation instructions (deer_vla.sim.tasks: no "could you", "i need", "thanks", trailing "please"
or colons), so held-out success still measures generalisation to unseen wording. Dropping and
swapping words can still land on a held-out instruction ("pull the drawer out" -> "drawer out") or on
another task's ("push the side handle down" -> "push the handle down", a contradictory label): a draw
that reads as one of the texts it is told to avoid (``avoid_by_task``) is drawn again.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Set

import numpy as np
from pydantic import ConfigDict, Field

from deer_vla.core.config_io import NoBoolNumbers

PREFIXES: tuple[str, ...] = (
    "now", "ok", "robot,", "go ahead and", "i want you to", "would you", "try to", "just", "you should", "kindly",
)
SUFFIXES: tuple[str, ...] = ("now", "for me", "right away", "if you can", "quickly")
# draws of one window's instruction before giving up and training on it un-noised
MAX_DRAWS = 8


def reading(text: str) -> str:
    """The form in which two instructions count as the same text here: case-folded, single-spaced."""
    return " ".join(text.casefold().split())


def avoid_by_task(instructions: Mapping[str, Iterable[str]], heldout: Iterable[str]) -> dict[str, frozenset[str]]:
    """task -> the texts (``reading``) noise must not turn its instructions into: every held-out instruction and
    every other task's training instruction, but none of the task's own (tasks sharing a scene share them)."""
    own = {task: {reading(t) for t in texts} for task, texts in instructions.items()}
    every = set().union(*own.values(), (reading(t) for t in heldout))
    return {task: frozenset(every - texts) for task, texts in own.items()}


class InstructionNoise(NoBoolNumbers):
    """Probabilities of each perturbation, drawn independently per training window."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    wrap: float = Field(0.3, ge=0, le=1, description="add a random request prefix and/or suffix")
    word_dropout: float = Field(0.05, ge=0, le=1, description="drop each word (at least two words stay)")
    swap: float = Field(0.1, ge=0, le=1, description="swap two adjacent words once")

    def apply(self, text: str, rng: np.random.Generator, avoid: Set[str] = frozenset()) -> str:
        """``text`` perturbed; a draw that reads (``reading``) as a text in ``avoid`` is drawn again, up to
        MAX_DRAWS times, after which ``text`` itself is returned. With nothing to avoid, one draw."""
        for _ in range(MAX_DRAWS):
            noised = self._draw(text, rng)
            if not avoid or reading(noised) not in avoid:
                return noised
        return text

    def _draw(self, text: str, rng: np.random.Generator) -> str:
        words = text.split()
        if len(words) > 2 and self.word_dropout > 0:
            keep = rng.random(len(words)) >= self.word_dropout
            if keep.sum() >= 2:
                words = [w for w, k in zip(words, keep) if k]
        if len(words) > 1 and rng.random() < self.swap:
            i = int(rng.integers(len(words) - 1))
            words[i], words[i + 1] = words[i + 1], words[i]
        if rng.random() < self.wrap:
            side = int(rng.integers(3))  # 0 prefix, 1 suffix, 2 both
            if side in (0, 2):
                words = [PREFIXES[int(rng.integers(len(PREFIXES)))], *words]
            if side in (1, 2):
                words = [*words, SUFFIXES[int(rng.integers(len(SUFFIXES)))]]
        return " ".join(words)
