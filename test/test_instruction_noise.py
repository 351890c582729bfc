"""Instruction noise: generic wording perturbations for training, kept apart from the held-out wording."""
from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from deer_vla.sim.mt50 import MT50_TASKS
from deer_vla.train.instruction_noise import PREFIXES, SUFFIXES, InstructionNoise

TEXT = "open the drawer by pulling the handle"


def test_noise_keeps_at_least_two_original_words_and_only_adds_wrappers():
    noise = InstructionNoise(wrap=1.0, word_dropout=0.9, swap=1.0)
    rng = np.random.default_rng(0)
    wrappers = {w for phrase in PREFIXES + SUFFIXES for w in phrase.split()}
    for _ in range(200):
        words = noise.apply(TEXT, rng).split()
        original = [w for w in words if w in TEXT.split()]
        assert len(original) >= 2
        assert set(words) - set(TEXT.split()) <= wrappers


def test_noise_changes_wording_often_and_is_reproducible():
    noise = InstructionNoise()
    out = [noise.apply(TEXT, np.random.default_rng(i)) for i in range(200)]
    assert 0.2 < np.mean([o != TEXT for o in out]) < 0.9
    assert out == [noise.apply(TEXT, np.random.default_rng(i)) for i in range(200)]
    assert InstructionNoise(wrap=0, word_dropout=0, swap=0).apply(TEXT, np.random.default_rng(0)) == TEXT


def test_wrappers_do_not_reproduce_heldout_wording():
    # Held-out success must measure unseen wording: no wrapper starts or ends a held-out instruction.
    for spec in MT50_TASKS.values():  # the ten suite tasks are among the fifty
        for text in spec.heldout_instructions:
            assert not any(text.startswith(p + " ") for p in PREFIXES), (spec.name, text)
            assert not any(text.endswith(" " + s) for s in SUFFIXES), (spec.name, text)


def test_probabilities_are_validated():
    with pytest.raises(ValidationError):
        InstructionNoise(wrap=1.5)
    with pytest.raises(ValidationError):
        InstructionNoise(typo=0.1)


def test_noise_never_draws_a_heldout_or_another_tasks_instruction():
    """Word dropout and swaps reached held-out instructions ("pull the drawer out" -> "drawer out") and other
    tasks' ("push the side handle down" -> "push the handle down": a contradictory label). Told what to avoid,
    a draw that lands there is drawn again; the gates' rewording avoids the whole suite's."""
    from deer_vla.train.gate import suite_avoid
    from deer_vla.train.instruction_noise import reading

    avoid = suite_avoid()
    assert reading("push the handle down") in avoid["handle-press-side"]
    assert reading("push the side handle down") not in avoid["handle-press-side"]
    noise = InstructionNoise(wrap=0.2, word_dropout=0.4, swap=0.4)
    rng = np.random.default_rng(0)
    reached = 0
    for spec in MT50_TASKS.values():
        for text in spec.train_instructions:
            for _ in range(30):
                assert reading(noise.apply(text, rng, avoid[spec.name])) not in avoid[spec.name], (spec.name, text)
                reached += reading(noise.apply(text, rng)) in avoid[spec.name]
    assert reached > 20  # without the list, the same draws do land there
