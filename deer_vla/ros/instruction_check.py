"""What the policy node makes of an instruction: the trained wording and task it is nearest, and whether it is
unlike all of them (parameters ``unfamiliar_instruction``, ``min_instruction_similarity``).

ROS-free: the node asks ``judge`` when a text arrives and ``status`` for its ``<node>: instruction`` entry on
/diagnostics. The comparison itself is model/instruction_match.py's.
"""
from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from deer_vla.core.instruction_text import (
    ADDRESS_WORDS,
    CLAUSE_BREAK,
    CORRECTIONS,
    DISMISSALS,
    FUNCTION_WORDS,
    OPPOSITES,
    SAID_NO,
    SET_ASIDE_BEFORE,
    instruction_words,
    says_state,
    set_aside,
)
from deer_vla.core.log_text import quoted
from deer_vla.model.instruction_match import InstructionMatch, InstructionMatcher
from deer_vla.model.instruction_words import TrainedWords
from deer_vla.model.word_senses import WordSensesError, installed_senses
from deer_vla.sim.tasks import ALL_TASKS

# diagnostic_msgs/DiagnosticStatus levels (without importing ROS here)
OK, WARN = 0, 1
# a trained wording's own similarity is 1 within float32 rounding (0.99999976): a floor of 1 must still take it
SIMILARITY_SLACK = 1e-6
# another task's wording this near as the nearest one: which task the text asks is a close call (on the shipped
# default 2 of the ten tasks' 70 held-out wordings, one of them heard as the wrong task; "rotate the faucet
# handle to the left" 0.918 as faucet-close against 0.913 as faucet-open, which the policy did)
CLOSE_CALL = 0.02
SHARED = "-shared"  # a task's shared-start twin, trained on its wordings: the same task to these checks
# each clause this near a wording of its own task for a text to be said to ask two: MT50's own multi-step wordings
# ("pick up the puck and put it at the goal") split into clauses near other tasks, 0.52-0.87 (0.88 once, on a
# trained wording, which is never judged so), while "open the drawer, then press the button" is 1.0 and 0.89
TWO_TASKS_SIMILARITY = 0.88
# as near, for two clauses that name things neither task's wordings have ("shut the faucet and close the window" ran
# faucet-close silently on mt50: "shut the faucet" is 0.86); MT50's multi-step wordings name one task's things
TWO_THINGS_SIMILARITY = 0.75
# the first word of a clause that gives the speaker's reason or a state beside a request, not a request ("open the
# door, I'm locked out": set s's ran door-lock silently on mt50, heard from "locked")
REASON_OPENERS = frozenset({"i", "i'm", "im", "i've", "ive", "i'd", "we", "we're", "we've", "my", "our", "because",
                            "since", "cos", "coz", "cause", "'cause", "it's", "its", "it", "that's", "there's",
                            "they're", "they", "he's", "she's"})
# the request alone must be this much nearer its task than any other for a reason to be said to move it: one that
# several tasks share is told apart by the reason (an MT50 wording: "i would like a coffee, press the button")
REASON_CLEAR_MARGIN = 0.1
# a word no trained wording has, this near its nearest trained word or nearer, is one the policy knows in another
# form ("opening"/"opened" 0.77, "hands"/"hand" 0.77, "sink"/"faucet" 0.42); under it the text names something
# the policy never learned ("open the fridge" on the default, nearest trained word "closed" 0.18, was heard as
# faucet-open 0.54 at INFO): on 800 labelled instructions 0.4 marked 58% of the requests of things no suite has
# and 7% of the suite's own tasks, most of those with a word the policy indeed never learned ("clockwise",
# "10 cm", "spigot")
UNKNOWN_WORD_SIMILARITY = 0.4
# a text this unlike every trained wording names no task even where it names a trained word ("hold on a second",
# 0.15: "on"): under 'warn' it ran its nearest task. Of both suites' 958 wordings none that names a trained word
# is under 0.2 (the lowest, mt50's "water on", 0.247 as faucet-open), nor of 583 labelled instructions
# (bench_instruction_sets.py) one heard as its own task but "cierra la ventana", which names nothing anyway; a
# user's floor under it lowers it too
FAR_UNDER_SIMILARITY = 0.2
INFLECTION_STEM = 4  # letters a word shares with a trained word it is another form of ("clos"-ing, "draw"-ers)
# the task heard for a text that sets a thing aside is one of what the rest asks when the rest is this near its
# wordings too ("open the window, I mean the drawer": the rest "the drawer" is drawer-close 0.87, drawer-open 0.86)
SET_ASIDE_MARGIN = 0.05
# these say that what follows is not there ("there isn't a wall"), as "no" does
ABSENT_AFTER = frozenset({"isn't", "aren't", "isnt", "arent"})
# "no" names nothing either: "no, the window" names one word several tasks share
NAMING_NOTHING = FUNCTION_WORDS | ADDRESS_WORDS | SAID_NO
# words that order the clauses of a sequence and name nothing ("first the drawer, then the window" ran drawer-open
# at INFO: two things, no verb)
SEQUENCE_WORDS = frozenset({"first", "firstly", "second", "secondly", "third", "next", "then", "after", "afterwards",
                            "finally", "last", "lastly", "also", "too",
                            # or at once: "open the drawer and the window at the same time" (set n's: ran drawer-open
                            # silently, "the window at the same time" no thing named alone)
                            "same", "time", "together", "simultaneously", "once", "both", "meanwhile"})
# "at the same time", "at once": the "at" of a simultaneity, no thing
SIMULTANEOUS = re.compile(r"\bat\s+(?:the\s+same\s+time|once)\b", re.IGNORECASE)
# a clause of a verb and these acts on the thing of the clause before ("open the door and then lock it")
PRONOUNS = frozenset({"it", "them", "that", "this"})
# the words that set a thing aside or take it back: not the thing's name
TAKING_BACK = frozenset(w for marker in CORRECTIONS + SET_ASIDE_BEFORE for w in marker) | DISMISSALS | {"leave"}
# one word several tasks' wordings share names one of them when its nearest wording is this much nearer than any
# other task's ("go to the goal": reach 0.83, soccer 0.61 on mt50; not "open": faucet-open 0.74, window-open 0.68, nor
# "handle": handle-press 0.71, faucet-close 0.55 on the default)
ONE_WORD_MARGIN = 0.2
# a text that is only a task's name, as software writes it ("push-wall", "DRAWER_OPEN", "door lock", "reach-v3"):
# punctuation around it, joiners ("door.lock", "drawer/open" too) and case aside
TASK_NAME_JOINERS = re.compile(r"[-_\s./]+")
# a label before a task's name ("Command: door.lock" was heard as door-unlock, 0.86)
TASK_NAME_LABEL = re.compile(r"\s*[^\W\d_]+\s*:\s*(?=\S)")
# the modes of unfamiliar_instruction that keep an unfamiliar text out, and the one that keeps out every doubtful one
STRICT = "strict"
KEEPING_OUT = frozenset({"refuse", STRICT})
TASK_NAME_EDGES = "\"'`.,;:!?()[]{}<>"


# words of opposite motions: the comparison pools a text's words, and one word of these weighs little in it ("turn
# off the water" was heard as faucet-open's "turn on the water", 0.89, without a warning; "pull the handle down"
# as handle-pull's "... up"); a text that says one where its nearest wording says the other is said at WARN
DIRECTIONS = (
    *OPPOSITES,
    (frozenset({"left", "leftward", "leftwards"}), frozenset({"right", "rightward", "rightwards"})),
    (frozenset({"up", "upward", "upwards"}), frozenset({"down", "downward", "downwards"})),
    (frozenset({"in", "into", "inward", "inwards"}), frozenset({"out", "outward", "outwards"})),
    (frozenset({"forward", "forwards"}), frozenset({"back", "backward", "backwards"})),
    # set j's: "take the ring off the peg" was heard as assembly's "slide the ring onto the peg" (0.76) at INFO
    (frozenset({"onto"}), frozenset({"off"})),
)


def contradicted_direction(text: str, wording: str) -> tuple[str, str] | None:
    """(the text's word, the wording's) when ``text`` says one side of a DIRECTIONS pair where ``wording`` says
    the other, and neither says both; else None."""
    mine, theirs = set(instruction_words(text)), set(instruction_words(wording))
    for pair in DIRECTIONS:
        for side, other in (pair, pair[::-1]):
            said, against = mine & side, theirs & other
            if said and against and not mine & other and not theirs & side:
                return sorted(said)[0], sorted(against)[0]
    return None


def under_floor(match: InstructionMatch, floor: float) -> bool:
    return match.similarity < floor - SIMILARITY_SLACK


def _inflection(word: str, nearest: str, similarity: float) -> bool:
    """``word`` is another form of the trained word ``nearest`` (their mean token rows ``similarity``): as near
    as UNKNOWN_WORD_SIMILARITY with the same first INFLECTION_STEM letters ("faucets", "closing"; not "joke"/"poke"
    0.41, "stove"/"shove" 0.69: the rows share spelling more than meaning)."""
    return similarity >= UNKNOWN_WORD_SIMILARITY and len(os.path.commonprefix([word, nearest])) >= INFLECTION_STEM


def _named(text: str) -> list[str]:
    """The words of ``text`` that may name something: not FUNCTION_WORDS nor ADDRESS_WORDS."""
    return [w for w in instruction_words(text) if w not in NAMING_NOTHING]


def _gives_reason(clause: str) -> bool:
    """Whether ``clause`` gives the speaker's reason or says a state, not a request: REASON_OPENERS first among its
    words (after ADDRESS_WORDS), or ``says_state``."""
    words = [w for w in instruction_words(clause) if w not in ADDRESS_WORDS]
    return bool(words) and words[0] in REASON_OPENERS or says_state(clause)


def far_under(match: InstructionMatch, floor: float) -> bool:
    """Under FAR_UNDER_SIMILARITY, or the floor where it is lower (a floor of 0 refuses nothing)."""
    return match.similarity < min(FAR_UNDER_SIMILARITY, floor) - SIMILARITY_SLACK


@dataclass(frozen=True)
class Verdict:
    """One instruction judged: its match (None when not compared) and whether it is under the similarity
    floor; ``heard`` is the sentence the node logs."""

    match: InstructionMatch | None
    unfamiliar: bool
    contradicts: tuple[str, str] | None = None  # contradicted_direction of the text read and the nearest wording
    # two clauses heard as two tasks ("open the drawer and close the window": heard as drawer-open alone)
    two_tasks: tuple[InstructionMatch, InstructionMatch] | None = None
    # words of the text the policy never learned, each with its nearest trained word and their similarity
    unknown: tuple[tuple[str, str, float], ...] = ()
    # no word of the text (but FUNCTION_WORDS and ADDRESS_WORDS) is a trained word or another form of one
    names_nothing: bool = False
    # under FAR_UNDER_SIMILARITY (or the floor, if lower): so unlike every trained wording it names no task
    far_off: bool = False
    # the text is a task's name ("push-wall"), and a trained wording of it for an example (None: a task of the
    # suites this checkpoint was not trained on, "lever-pull" to the default)
    named_task: tuple[str, str | None] | None = None
    # the one word the text names, when the wordings of several tasks have it ("open", "drawer"), and those tasks
    one_shared_word: tuple[str, tuple[str, ...]] | None = None
    # heard as another task than the one asked after a clause that sets a thing aside (core.instruction_text.
    # set_aside): (that clause, the task of the text after it, which is what is asked)
    heard_set_aside: tuple[str, str] | None = None
    # heard as a task of a thing the text says is not there, another without that clause: ("no wall", that other
    # task) ("press the button from above, there is no wall" ran button-press-wall on mt50 at INFO)
    absent_heard: tuple[str, str] | None = None
    # (tokens past what the model reads, how many it reads): a long text's request may lie past the cut
    unread: tuple[int, int] = (0, 0)
    # heard as another task than its one request alone, the other clauses a reason or a state: (the request, its
    # task) ("open the door, I'm locked out" ran door-lock silently on mt50: "locked" outweighed "open the door")
    reason_heard: tuple[str, str] | None = None

    @property
    def misnamed(self) -> bool:
        """The text is a task's name but heard as another task: the policy reads words, not task names
        ("push-wall" was heard as button-press-wall, 0.79, at INFO on the mt50 checkpoint)."""
        return (self.match is not None and self.named_task is not None
                and (self.named_task[1] is None
                     or self.match.task.removesuffix(SHARED) != self.named_task[0].removesuffix(SHARED)))

    @property
    def no_task(self) -> bool:
        """The text names no task: nothing the checkpoint was trained on, or far under every trained wording."""
        return self.names_nothing or self.far_off

    def refused(self, mode: str) -> bool:
        """Whether the node refuses the text under ``unfamiliar_instruction`` ``mode``: one that names no task in
        every mode ("hello", "nope", "hold on a second", another language: warn ran the nearest task), one unlike
        every trained wording under 'refuse', every one 'warn' says at WARN (``doubtful``) under 'strict'."""
        return self.match is not None and (self.drops or (self.unfamiliar and mode in KEEPING_OUT)
                                           or (self.doubtful and mode == STRICT))

    @property
    def drops(self) -> bool:
        """Refused in either mode, the instruction in force dropped with it, as for a stop: a text naming no task,
        a task's name heard as another, a text heard as another task than what it asks beside a thing set aside or
        taken back, one word several tasks share, a text heard as the task of a thing it says is not there. The
        robot was told something new; carrying on with the last instruction did what it may have just been told
        not to ("open the drawer, I mean the window" kept the drawer opening)."""
        return self.match is not None and (self.no_task or self.misnamed or self.heard_set_aside is not None
                                           or self.one_shared_word is not None or self.absent_heard is not None
                                           or self.reason_heard is not None)

    @property
    def close_call(self) -> bool:
        """Another task's wording is within CLOSE_CALL of the nearest: the text may ask either (a WARN). Not a text
        like nothing trained (similarity 0 to every wording: the floor's to judge)."""
        m = self.match
        return (m is not None and m.runner_up_similarity is not None and m.similarity > 0.0
                and m.similarity - m.runner_up_similarity < CLOSE_CALL)

    def heard(self, floor: float) -> str:
        said = self._heard(floor)
        if self.unread[0] and (self.no_task or self.unfamiliar):  # a long preamble: what was asked lies past it
            said += (f"; the text is {self.unread[0]} token(s) longer than the {self.unread[1]} the model reads, "
                     "so its end is not read: say the task first, or shorter")
        return said

    def _heard(self, floor: float) -> str:
        m = self.match
        if m is None:
            return ""
        if self.misnamed:
            assert self.named_task is not None
            task, example = self.named_task
            heard = f"{m.task} (nearest trained wording {quoted(m.nearest, 80)}, similarity {m.similarity:.2f})"
            if example is None:
                return (f"names the task {task} by its name, a task this checkpoint was not trained on (it would hear "
                        f"it as {heard})")
            return (f"names the task {task} by its name, but the policy reads words, not task names, and hears it as "
                    f"{heard}: say it in words, as trained ({quoted(example, 80)})")
        if self.one_shared_word is not None:
            word, tasks = self.one_shared_word
            named = ", ".join(t.removesuffix(SHARED) for t in tasks[:4]) + (", ..." if len(tasks) > 4 else "")
            return (f"names only {word!r}, a word of {len(tasks)} tasks' wordings ({named}): the policy may do any "
                    f"of them (heard as {m.task}, similarity {m.similarity:.2f}); say which")
        if self.absent_heard is not None:
            absent, without = self.absent_heard
            return (f"says {absent!r} but is heard as {m.task} (nearest trained wording {quoted(m.nearest, 80)}, "
                    f"similarity {m.similarity:.2f}), a task with {absent.split()[-1]!r}; without that clause it is "
                    f"heard as {without}: the policy reads every word; leave it out")
        if self.reason_heard is not None:
            clause, asked = self.reason_heard
            return (f"asks {quoted(clause, 60)} ({asked}), but with the words beside it is heard as {m.task} (nearest "
                    f"trained wording {quoted(m.nearest, 80)}, similarity {m.similarity:.2f}): the policy reads every "
                    "word, a reason too; send only the task")
        if self.heard_set_aside is not None:
            clause, asked = self.heard_set_aside
            return (f"sets {quoted(clause, 60)} aside and asks {asked}, but is heard as {m.task} (nearest trained "
                    f"wording {quoted(m.nearest, 80)}, similarity {m.similarity:.2f}): the policy reads every word, "
                    "those set aside too; send only the task")
        if self.names_nothing:  # (of a long text, what it reads: "2026-12-07T19:40:01Z INFO cmd: close the drawer")
            words = "none of the words the model reads" if self.unread[0] else "none of its words"
            return (f"names nothing this checkpoint was trained on ({words} is in a trained wording), so "
                    f"no task: the nearest wording is {quoted(m.nearest, 80)} ({m.task}), similarity "
                    f"{m.similarity:.2f}")
        if self.far_off:
            return (f"names no task, so unlike every instruction this checkpoint was trained on: the nearest "
                    f"wording is {quoted(m.nearest, 80)} ({m.task}), similarity {m.similarity:.2f} < "
                    f"{min(FAR_UNDER_SIMILARITY, floor):g}")
        if self.unfamiliar:
            return (f"unlike every instruction this checkpoint was trained on: nearest is {quoted(m.nearest, 80)} "
                    f"({m.task}), similarity {m.similarity:.2f} < min_instruction_similarity {floor:g}")
        said = f"heard as {m.task} (nearest trained wording {quoted(m.nearest, 80)}, similarity {m.similarity:.2f})"
        if self.close_call:
            said += (f", but {m.runner_up_task}'s {quoted(m.runner_up or '', 80)} is nearly as near "
                     f"({m.runner_up_similarity:.2f}): the policy may do either; say it as trained")
        if self.contradicts is not None:
            said += (f", but it says {self.contradicts[0]!r} where that wording says {self.contradicts[1]!r}: the "
                     "policy may do the opposite; say it as trained")
        if self.two_tasks is not None:
            first, second = self.two_tasks
            said += (f", but it may ask two tasks, {first.task} and {second.task} ({quoted(second.nearest, 60)}): the "
                     "policy does one; say one at a time")
        if self.unknown:
            named = ", ".join(f"{w!r} (nearest trained word {n!r}, {s:.2f})" if n else repr(w)
                              for w, n, s in self.unknown[:3])
            more = f" and {len(self.unknown) - 3} more" if len(self.unknown) > 3 else ""
            said += (f", but it names {named}{more}: no trained wording has such a word, the policy reads only the "
                     "words it learned and may do something else; say it as trained")
        return said

    @property
    def doubtful(self) -> bool:
        """Whether the node says it at WARN: unlike every trained wording, a close call, a direction
        contradicted, two tasks asked, or a word the policy never learned."""
        return (self.unfamiliar or self.close_call or self.contradicts is not None or self.two_tasks is not None
                or bool(self.unknown) or self.drops)


class InstructionCheck:
    """A configured node's matcher, or the reason it has none (a checkpoint that records no trained wording)."""

    def __init__(self, matcher: InstructionMatcher | None, why_not: str = "",
                 read: Callable[[str], str] | None = None, trained_words: TrainedWords | None = None) -> None:
        """``read``: the text as the model reads it (PolicyRunner.read_instruction's: misspelt trained words read
        as meant), which is what is compared; ``trained_words``: the checkpoint's (PolicyRunner.trained_words),
        to name the words of a text the policy never learned (None: not named)."""
        self.matcher = matcher
        self.why_not = why_not
        self._read = read
        self._trained_words = trained_words
        self.unfamiliar = 0  # instructions under the floor (warned or refused), for /diagnostics
        self._last: tuple[str, str, InstructionMatch] | None = None  # (text, as read, its match)
        self._last_free: tuple[str, Verdict] | None = None  # (text, its verdict but for the floor's part)

    @classmethod
    def for_runner(cls, runner: Any) -> InstructionCheck:
        """From the loaded checkpoint's record (extra.json ``training.instructions``, as the runner read it at
        load: ``runner.training``, ``runner.training_error``); never raises: an unreadable or absent record only
        means instructions are not compared."""
        error = getattr(runner, "training_error", None)
        if error is not None:
            return cls(None, f"not compared: the checkpoint's training record cannot be read ({error})")
        record = getattr(runner, "training", {}).get("instructions")
        if record is None:
            return cls(None, "not compared: the checkpoint records no trained instructions (extra.json "
                             "training.instructions, written by deer-vla train)")
        read_instruction = getattr(runner, "read_instruction", None)
        trained_words = getattr(runner, "trained_words", None)
        try:
            if trained_words is not None:  # parsed once per process, here and not in the first instruction's
                installed_senses()  # callback (0.6-1.7 s there, the camera callbacks' group held)
            return cls(InstructionMatcher.from_runner(runner, record),
                       read=(lambda text: read_instruction(text)[0]) if read_instruction is not None else None,
                       trained_words=trained_words)
        except (TypeError, ValueError, WordSensesError) as exc:
            return cls(None, f"not compared: {exc}")

    def judge(self, text: str, mode: str, floor: float, count: bool = True) -> Verdict:
        """``text`` (cleaned, as the node holds it) against the floor; ``count``: a newly arrived instruction,
        counted on /diagnostics when unfamiliar (not the one in force judged again)."""
        if self.matcher is None or mode == "off":
            return Verdict(None, False)
        verdict = self._verdict(text, floor)
        self.unfamiliar += verdict.unfamiliar and count
        return verdict

    def status(self, text: str | None, mode: str, floor: float,
               dropped: str | None = None) -> tuple[int, str, list[tuple[str, str]]]:
        """(level, message, key-values) for the current instruction ``text``, judged against the floor now (a
        run-time change of it shows at once); ``dropped``: why none is in force, when one was dropped (a stop
        said "no instruction yet" after the robot had been running one)."""
        values = [("unfamiliar instructions", str(self.unfamiliar)), ("unfamiliar_instruction", mode),
                  ("min_instruction_similarity", f"{floor:g}")]
        if text is None:
            return OK, "no instruction yet" if dropped is None else f"none in force: {dropped}", values
        if mode == "off":
            return OK, "not compared (unfamiliar_instruction: off)", values
        if self.matcher is None:
            return OK, self.why_not, values
        verdict = self._verdict(text, floor)
        match = verdict.match
        assert match is not None
        values = [("instruction", quoted(text, 200)), ("heard as task", match.task),
                  ("nearest trained wording", match.nearest), ("similarity", f"{match.similarity:.3f}"), *values]
        if verdict.unknown:
            values.insert(4, ("words never learned", ", ".join(w for w, _, _ in verdict.unknown)))
        if match.runner_up_task is not None and match.runner_up_similarity is not None:
            values.insert(4, ("nearest other task", f"{match.runner_up_task} ({match.runner_up_similarity:.3f})"))
        return (WARN if verdict.doubtful else OK), verdict.heard(floor), values

    def _contradicts(self, text: str, match: InstructionMatch) -> tuple[str, str] | None:
        """A direction the text (as the model reads it) says against its nearest wording (a text under the floor
        is judged too: its WARN then says both)."""
        return contradicted_direction(self._reading(text)[0], match.nearest)

    def _two_tasks(self, text: str, match: InstructionMatch) -> tuple[InstructionMatch, InstructionMatch] | None:
        """Two clauses of ``text`` (as the model reads it; CLAUSE_BREAK, each of two words or more that name
        something; one that names a thing alone takes the verb of the clause before: "close the window and the
        drawer" ran drawer-close at INFO) each within TWO_TASKS_SIMILARITY of a wording of its own task, two tasks
        (a -shared twin is its task), or None; never for a trained wording (``match``, the whole text's, at 1)."""
        assert self.matcher is not None
        read = self._reading(text)[0]
        asked, alone = [], []  # clauses heard as a task; things named alone, no verb said before them
        apart: list[tuple[InstructionMatch, set[str]]] = []  # clauses heard as a task, less near, with their things
        if not match.similarity >= 1.0 - SIMILARITY_SLACK:
            verb: list[str] = []  # the last clause's verb, for a clause that names a thing alone
            thing: list[str] = []  # the last clause's thing, for a clause of a verb and "it"
            for clause in CLAUSE_BREAK.split(SIMULTANEOUS.sub(" ", read)):
                if says_state(clause):  # "the door is locked, unlock it": a state, no task asked nor thing for "it"
                    continue
                named = [w for w in _named(clause) if w not in SEQUENCE_WORDS]
                own_verb = bool(named) and self.matcher.leads(named[0])  # (not "over and out" after "shut the drawer")
                if len(named) == 1 and verb and not self.matcher.leads(named[0]):
                    clause, named = " ".join([*verb, clause]), [*verb, *named]  # "close the window and the drawer"
                elif (len(named) == 1 and thing and self.matcher.leads(named[0])
                      and PRONOUNS & set(instruction_words(clause))):
                    named = [*named, *thing]  # "open the door and then lock it"
                    clause, verb = " ".join(named), named[:1]
                elif named and self.matcher.leads(named[0]):
                    verb = named[:1]
                elif len(named) == 1 and self.matcher.tasks_with_word(named[0]):
                    alone.append(named[0])  # "first the drawer, then the window"
                if named:
                    thing = named[1:] if self.matcher.leads(named[0]) else named
                if len(named) >= 2:  # judged on its trained words: "press the button simultaneously" was 0.77
                    clause_match = self.matcher.match(self._trained_part(clause))
                    if clause_match.similarity >= TWO_TASKS_SIMILARITY:
                        asked.append(clause_match)
                    if clause_match.similarity >= TWO_THINGS_SIMILARITY and own_verb:  # a request of its own
                        things = self._things(named)
                        if things:
                            apart.append((clause_match, things))
        two = next(((a, b) for i, a in enumerate(asked) for b in asked[i + 1:]
                    if a.task.removesuffix(SHARED) != b.task.removesuffix(SHARED)), None)
        if two is None and set_aside(read) is None:  # (a thing set aside is ``heard_set_aside``'s)
            # two tasks of two things, neither of whose wordings names the other's thing, nor the whole text's task
            # both ("reach past the wall and push the button": button-press-wall's wordings have both)
            two = next(((a, b) for i, (a, a_things) in enumerate(apart) for b, b_things in apart[i + 1:]
                        if a.task.removesuffix(SHARED) != b.task.removesuffix(SHARED)
                        and not self._names_any(a.task, b_things) and not self._names_any(b.task, a_things)
                        and not (self._names_any(match.task, a_things) and self._names_any(match.task, b_things))),
                       None)
        if two is None:  # two things no task of one has in its wordings: two tasks, whichever verb was meant
            tasks = {w: {t.removesuffix(SHARED) for t in self.matcher.tasks_with_word(w)} for w in alone}
            pair = next(((a, b) for i, a in enumerate(alone) for b in alone[i + 1:] if not tasks[a] & tasks[b]), None)
            if pair is not None:
                two = (self.matcher.match(pair[0]), self.matcher.match(pair[1]))
        return two

    def _things(self, words: list[str]) -> set[str]:
        """The words of ``words`` that name a thing of some task's wordings (no leading verb)."""
        assert self.matcher is not None
        return {w for w in words if not self.matcher.leads(w) and self.matcher.tasks_with_word(w)}

    def _names_any(self, task: str, words: set[str]) -> bool:
        """Whether a wording of ``task`` (or of its -shared twin) has any of ``words``."""
        assert self.matcher is not None
        own = task.removesuffix(SHARED)
        return any(own in {t.removesuffix(SHARED) for t in self.matcher.tasks_with_word(w)} for w in words)

    def _trained_part(self, clause: str) -> str:
        """The words of ``clause`` a trained wording has, in order ("[op] open the drawer" -> "open the drawer"), or
        the clause itself when the checkpoint's trained words are not known or it has none."""
        if self._trained_words is None:
            return clause
        trained = [w for w in instruction_words(clause) if w in self._trained_words.words]
        return " ".join(trained) or clause

    def _verdict(self, text: str, floor: float) -> Verdict:
        """``text`` judged against the floor: its match and every check beside it."""
        verdict = self._floor_free(text)
        assert verdict.match is not None
        return replace(verdict, unfamiliar=under_floor(verdict.match, floor), far_off=far_under(verdict.match, floor))

    def _floor_free(self, text: str) -> Verdict:
        """``text``'s verdict but for what the floor decides (``unfamiliar``, ``far_off``: False here), computed once
        per text (the status asks every diagnostics period)."""
        last = self._last_free
        if last is not None and last[0] == text:
            return last[1]
        assert self.matcher is not None
        match = self._match(text)
        unknown, names_nothing = self._words(text)
        named_task = self._named_task(text)
        # a task's own name heard as that task names it ("reach" on mt50, a word of 4 tasks' wordings)
        by_name = (named_task is not None and named_task[1] is not None
                   and named_task[0].removesuffix(SHARED) == match.task.removesuffix(SHARED))
        verdict = Verdict(match, False, self._contradicts(text, match), self._two_tasks(text, match), unknown,
                          names_nothing, named_task=named_task, heard_set_aside=self._heard_set_aside(text, match),
                          absent_heard=self._absent_heard(text, match),
                          reason_heard=self._reason_heard(text, match),
                          unread=self.matcher.tokens_unread(self._reading(text)[0]),
                          one_shared_word=None if by_name else self._one_shared_word(text, match))
        self._last_free = (text, verdict)
        return verdict

    def _reason_heard(self, text: str, match: InstructionMatch) -> tuple[str, str] | None:
        """(the request, its task) when ``text`` (as the model reads it) is one request and clauses that give a
        reason or say a state (REASON_OPENERS first, or ``says_state``), the request alone is heard as its task at
        TWO_TASKS_SIMILARITY or more and REASON_CLEAR_MARGIN above any other, and the whole text as another; else
        None."""
        assert self.matcher is not None
        read = self._reading(text)[0]
        if set_aside(read) is not None:  # "open the window, I mean the drawer": a correction, ``heard_set_aside``'s
            return None
        clauses = [c for c in CLAUSE_BREAK.split(read) if _named(c)]
        requests = [c for c in clauses if not _gives_reason(c)]
        if len(clauses) < 2 or len(requests) != 1:
            return None
        alone = self.matcher.match(self._trained_part(requests[0]))
        if alone.task.removesuffix(SHARED) == match.task.removesuffix(SHARED):
            return None
        things = self._things(_named(requests[0]))
        if alone.similarity < TWO_TASKS_SIMILARITY:  # a less clear request: only when the text's task names none of
            # its things ("push the button, the door is locked" ran door-lock silently on mt50)
            near = alone.similarity >= TWO_THINGS_SIMILARITY and things and not self._names_any(match.task, things)
            return (requests[0].strip(), alone.task) if near else None
        runner_up = alone.runner_up_similarity
        if (runner_up is not None and alone.similarity - runner_up < REASON_CLEAR_MARGIN
                and self._names_any(match.task, things)):
            return None  # a request the reason tells apart ("i would like a coffee, press the button": which button;
            # not "press the button, the drawer is open", heard as drawer-open, whose wordings name no button)
        return requests[0].strip(), alone.task

    def _absent_heard(self, text: str, match: InstructionMatch) -> tuple[str, str] | None:
        """("no <word>", the task of the text without its clause) when ``text`` (as the model reads it) says a
        thing is not there, is heard as a task whose wordings have that thing, and is heard as another task
        without that clause; else None ("there's no water, turn on the faucet" is faucet-open either way)."""
        assert self.matcher is not None
        read = self._reading(text)[0]
        clauses = CLAUSE_BREAK.split(read)
        for n, clause in enumerate(clauses):
            words = instruction_words(clause)
            for i, word in enumerate(words):
                if not (word == "no" or word in ABSENT_AFTER or word == "not" and words[i - 1:i] in (["is"], ["are"])):
                    continue
                after = words[i + 1:]
                if word != "no" and after[:1] and after[0] in ("a", "an", "any"):  # "there isn't a wall"
                    after = after[1:]
                if not after or match.task not in self.matcher.tasks_with_word(after[0]):
                    continue
                rest = " ".join(c for k, c in enumerate(clauses) if k != n)
                if _named(rest):
                    without = self.matcher.match(rest).task
                    if without.removesuffix(SHARED) != match.task.removesuffix(SHARED):
                        return " ".join(words[i:len(words) - len(after) + 1]), without
        return None

    def _one_shared_word(self, text: str, match: InstructionMatch) -> tuple[str, tuple[str, ...]] | None:
        """(the word, its tasks) when ``text`` (as the model reads it) names one word only (but FUNCTION_WORDS and
        ADDRESS_WORDS), and the trained wordings of more than one task (a -shared twin is its task) have it: "open"
        ran window-open (0.68), "handle" handle-press (0.71), at INFO."""
        assert self.matcher is not None
        words = _named(self._reading(text)[0])
        if len(set(words)) != 1:
            return None
        tasks = tuple(dict.fromkeys(t.removesuffix(SHARED) for t in self.matcher.tasks_with_word(words[0])))
        if match.runner_up_similarity is not None and match.similarity - match.runner_up_similarity >= ONE_WORD_MARGIN:
            return None  # one task stands out ("go to the goal", reach 0.83 against soccer 0.61 on mt50)
        return (words[0], tasks) if len(tasks) > 1 else None

    def _heard_set_aside(self, text: str, match: InstructionMatch) -> tuple[str, str] | None:
        """(the clause set aside, the task asked after it) when ``text`` (as the model reads it) sets a thing aside
        and asks a task after, and the whole is heard as another task than the one asked ("forget the drawer, open
        the window" as drawer-open, "ignore the faucet, close the window" as faucet-close, at INFO); else None."""
        assert self.matcher is not None
        split = set_aside(self._reading(text)[0])
        if split is None:
            return None
        clause, rest = split
        named = _named(CLAUSE_BREAK.sub(" ", rest))  # ("then close it": "then" names nothing)
        if len(named) == 1:  # half a request: the other half is the one said before
            aside = [w for w in _named(clause) if w not in TAKING_BACK]
            if self.matcher.leads(named[0]):  # "close the drawer, no wait, open it": the thing named before
                rest = " ".join([rest, *aside[1:]])
            else:  # "open the faucet, I mean the window": the verb said before
                rest = " ".join([*aside[:1], rest])
        asked = self.matcher.match(rest)
        if match.task.removesuffix(SHARED) == asked.task.removesuffix(SHARED):
            return None
        # the rest may fit the task heard about as well ("the drawer" after "I mean": drawer-close 0.87, drawer-open
        # 0.86): then the whole is heard as one of what is asked
        if self.matcher.task_similarity(rest, match.task) >= asked.similarity - SET_ASIDE_MARGIN:
            return None
        return clause, asked.task.removesuffix(SHARED)

    def _named_task(self, text: str) -> tuple[str, str | None] | None:
        """The task whose name ``text`` is ("push-wall", "DRAWER_OPEN", "door lock", "reach-v3"), with its shortest
        trained wording (for an example), or with None for a task of the suites (sim.tasks) that the checkpoint was
        not trained on; or None."""
        assert self.matcher is not None
        label = TASK_NAME_LABEL.match(text)
        for said in (text, text[label.end():]) if label else (text,):
            name = TASK_NAME_JOINERS.sub("-", said.strip().strip(TASK_NAME_EDGES).strip().lower()).strip("-")
            name = name.removesuffix("-v3")
            task = next((t for t in self.matcher.tasks if t.removesuffix(SHARED) == name), None)
            if task is not None:
                return task, min(self.matcher.wordings(task), key=len)
            if name in ALL_TASKS:
                return name, None
        return None

    def _words(self, text: str) -> tuple[tuple[tuple[str, str, float], ...], bool]:
        """The words of ``text`` (of the part the model reads) measured against the trained words, in one pass:
        those it never learned (TrainedWords.untrained, no other form of a trained word: ``_inflection`` of the
        nearest), each with that nearest word and their similarity; and whether it names nothing (no word but
        FUNCTION_WORDS and ADDRESS_WORDS is a trained word or another form of one: "faucets", "closing windows").
        Without the checkpoint's trained words: neither judged. Each word embedded once."""
        matcher = self.matcher
        if self._trained_words is not None and matcher is not None:
            part = unicodedata.normalize("NFKC", matcher.read_part(self._reading(text)[0]))
            nearest: dict[str, tuple[str, float]] = {}

            def known_form(word: str) -> bool:
                if word not in nearest:
                    nearest[word] = matcher.nearest_trained_word(word)
                return _inflection(word, *nearest[word])

            unknown = tuple((w, *nearest[w]) for w in self._trained_words.untrained(part) if not known_form(w))
            words = set(_named(part))
            nothing = not words & self._trained_words.words and not any(known_form(w) for w in sorted(words))
            return unknown, nothing
        return (), False

    def _match(self, text: str) -> InstructionMatch:
        return self._reading(text)[1]

    def _reading(self, text: str) -> tuple[str, InstructionMatch]:
        """(``text`` as the model reads it, its match), computed once per text (the status asks every
        diagnostics period, and the checks beside the match read the same text)."""
        assert self.matcher is not None
        last = self._last
        if last is None or last[0] != text:
            read = self._read(text) if self._read is not None else text
            last = self._last = (text, read, self.matcher.match(read))
        return last[1], last[2]
