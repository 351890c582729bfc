"""What the policy node does with instructions written by people who never read the suites' wordings.

`bench/data/instructions_labelled.json` holds 583 instructions two audits wrote on 2026-12-07 for the shipped
checkpoints without reading `deer_vla/sim/*.py`'s wordings, each labelled with the task it asks or REFUSE
(a stop, a negation, a thing no suite has, nonsense), and a category (paraphrase, foreign, stop, ...). Each is
heard as the policy node hears a new instruction, from the same pieces in the same order
(`deer_vla/ros/policy_node.py` `_checked_instruction`, `_take_instruction`): cleaned
(`core.instruction_text.clean_instruction`), the runner's refusal of stops, negations and states
(`PolicyRunner.refusal`), then the instruction check (`ros/instruction_check.py`: `Verdict.refused` under
`unfamiliar_instruction`, a WARN when `Verdict.doubtful`). Per category, side by side:

- refused, dropped: refused, and the instruction in force dropped with it (no steps until a new one: a stop,
  a negation, a text naming no task: nothing the checkpoint was trained on, or far under every trained wording;
  a task's name heard as another, a text heard as another task than what it asks beside a thing set aside, one
  word several tasks share: `Verdict.drops`);
- refused, kept: refused, the previous instruction stays in force (an empty or invalid text; under
  `--mode refuse`, one unlike every trained wording; under `--mode strict`, every one `warn` runs at WARN);
- right / wrong, silent / WARN: run as the labelled task or another (for a REFUSE label any task is wrong);
  "wrong, silent" is the harmful cell: the robot does another task and nothing says so.

On the default checkpoint a task of MT50 only is a REFUSE (the scene has none of it). No simulator: seconds.

`bench/data/instructions_labelled_2.json` holds 570 more, of two audits of 2026-12-07 (session 65) in other
families: speech-recogniser output, stops among other words, corrections and changed minds, dismissals before
a request, software's messages (JSON, key=value, task names), reasons and conditions, statements of state, very
short ones and typos (texts with two labels left out). The instruction rules of that session were mended
after reading both audits' findings: it measures them, it did not hold them out.

`bench/data/instructions_labelled_3.json` holds 450 of a third audit (session 66, set f): reports of what was done,
other objects named with the scene's words, sequences and conditions, manner and amounts, other languages,
speech-recogniser output, planners' messages, negated goals, stops in other words (three texts with two labels
left out). Its stops, reports and sequences were mended after reading it, as above.
`bench/data/instructions_labelled_4.json` holds 378 of a fourth (set g), written blind by people of other kinds
(a radio, an elderly user, texting, a planner, a second robot's status lines, narration, corrections): measured
held out on the rules of sets c-f first (docs/RESULTS.md session 66), then mended after reading it.
`bench/data/instructions_labelled_5.json` holds 302 of a fifth (set h), written blind the same way by ten other
voices (a non-native speaker, a child, a factory operator, a nurse, context over several sentences, dictation,
templated strings, ...): held out on the rules of sets c-g, then mended after reading it.
`bench/data/instructions_labelled_6.json` holds 330 of a sixth (set i: an LLM agent's tool calls, a safety
officer, sarcasm, a parent, rambling voice notes, dialect, a demo presenter, a laggy link, indirect British
requests, two languages): held out on the rules of sets c-h, then mended after reading it.
`bench/data/instructions_labelled_7.json` holds 328 of a seventh (set j: an elderly owner, a kitchen worker,
a student testing edge cases, translator-app English, a busy parent, a technical writer, a streamer, a
checklist, a voice assistant relaying a user, scene descriptions before a request): held out on all of
session 66's rules (the last set measured before mending; three of its findings mended after).
`bench/data/instructions_labelled_8.json` holds 304 of an eighth (set k, session 67: a radio supervisor, a lab
notebook, a stutter in speech-recogniser output, non-native word orders, a sci-fi fan, a texter, a teacher, a
corporate user, a gamer, a caregiver, spatial detail, a remote operator's log lines; hypotheticals among them):
held out on the rules of sets a-j, then mended after reading it.
`bench/data/instructions_labelled_9.json` holds 337 of a ninth (set l: a hospital porter, a teenager, an engineer who
over-explains, a chatbot's templates, dictation while driving, Australian, Irish and Indian English, a poet, a
lawyer, someone testing the robot's limits, speech meant for another person, a quality inspector): held out on
the rules of sets a-k, then mended after reading it.
`bench/data/instructions_labelled_10.json` holds 369 of a tenth (set m: a restaurant manager, a physiotherapist, a
child, a sailor, a farmer, a sports commentator, a grumpy old man, Japanese-English, Scots, a meditation teacher,
a project manager, a manual read aloud, a home-automation hub, someone half asleep): held out on all of session
67's rules but its own two (a Scots negation and "there is no need to"; an apology after a request), mended after.
`bench/data/instructions_labelled_11.json` holds 334 of an eleventh (set n, session 68: a night-shift nurse, a
teenager texting, a pilot's radio phraseology, Spanish-English, a lawyer, a chef, a teacher, a speech recogniser's
transcript, a stutter, a poet, an engineer with units, a drill sergeant, a tired parent, a gamer, Irish English, a
chatbot): held out on all of session 67's rules, mended after with set m's left-overs.
`bench/data/instructions_labelled_12.json` holds 320 of a twelfth (set o: a museum guide, a plumber, Nigerian,
Welsh and Indian English, a barista, a nervous first user, a researcher, a game-show host, a pharmacist, street
dictation, a security guard's radio, a grandmother, a philosophy student, a comedian, a prompt-injection tester):
held out on session 68's first rules (e377d61), mended after.
`bench/data/instructions_labelled_13.json` holds 318 of a thirteenth (set p: a ship's captain, a yoga teacher,
South-African and Singaporean English, an estate agent, a sarcastic teenager, a warehouse supervisor, a Scottish
grandmother, a shift handover, a coach, German word by word, a DJ, a surgeon, test steps, a hangover, a misfiring
voice assistant): held out on session 68's rules but the last batch (f9956d6), mended after.
`bench/data/instructions_labelled_14.json` holds 350 of a fourteenth (set q: a firefighter, a librarian, an
Australian tradie, a small child, a security tester, a TV chef, Jamaican and Hong Kong English, a shift lead, a
recipe read aloud, a radio operator, a sleepy student, an angry customer, a chess commentator, a translation app's
French, a smart-home script): held out on session 68's rules but its last two batches (e2f02d6), mended after.
`bench/data/instructions_labelled_15.json` holds 308 of a fifteenth (set r: a lab technician, a concierge, New
Zealand and Filipino English, a parent narrating, a tour guide, a lab report, a bartender, directions, a sports fan,
a mechanic, an auctioneer, single words, a care home, a QA script, a conspiracy theorist): held out on all of
session 68's rules (5b757f4); only its one silent stop mended after.
`bench/data/instructions_labelled_16.json` holds 340 of a sixteenth (set s: a nurse, a speech-recognition
transcript, Nigerian English, a pilot's checklist, a gamer, a lawyer, a call centre, radio, a German writing
English, a texting teenager, a comedian, a poet, a chef, a teacher, someone half asleep, a prompt injector): held
out on all rules before session 69 (83b70b6); two of its silent runs mended after.
`bench/data/instructions_labelled_17.json` holds 360 of a seventeenth (set t: a farmer, Scottish and Indian
English, a museum guard, a physiotherapist, a referee, a stage director, a parent with a crying baby, Spanish
translated word by word, a commit message, a forecaster, a porter, a dog trainer, a flatmate, an elderly user, a
game-show host): held out on session 69's rules but its review's (19ddf1c).

    python bench/bench_instruction_sets.py                          # default
    python bench/bench_instruction_sets.py --checkpoint mt50
    python bench/bench_instruction_sets.py --data bench/data/instructions_labelled_2.json
    python bench/bench_instruction_sets.py --data bench/data/instructions_labelled_3.json
    python bench/bench_instruction_sets.py --data bench/data/instructions_labelled_4.json
    python bench/bench_instruction_sets.py --data bench/data/instructions_labelled_5.json
    python bench/bench_instruction_sets.py --data bench/data/instructions_labelled_6.json
    python bench/bench_instruction_sets.py --data bench/data/instructions_labelled_7.json
    python bench/bench_instruction_sets.py --data bench/data/instructions_labelled_8.json
    python bench/bench_instruction_sets.py --data bench/data/instructions_labelled_9.json
    python bench/bench_instruction_sets.py --data bench/data/instructions_labelled_10.json
    python bench/bench_instruction_sets.py --data bench/data/instructions_labelled_11.json
    python bench/bench_instruction_sets.py --data bench/data/instructions_labelled_12.json
    python bench/bench_instruction_sets.py --data bench/data/instructions_labelled_13.json
    python bench/bench_instruction_sets.py --data bench/data/instructions_labelled_14.json
    python bench/bench_instruction_sets.py --data bench/data/instructions_labelled_15.json
    python bench/bench_instruction_sets.py --data bench/data/instructions_labelled_16.json
    python bench/bench_instruction_sets.py --data bench/data/instructions_labelled_17.json
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

from common import checkpoint_option, instruction_check_of, run_bench  # also puts this checkout first on sys.path

from deer_vla.core.config_io import thread_count
from deer_vla.model.shipped import checkpoint_help

DATA = Path(__file__).resolve().parent / "data" / "instructions_labelled.json"


def similarity_floor(text: str) -> float:
    """min_instruction_similarity as the node takes it: a number in 0..1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in 0..1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:  # NaN too
        raise argparse.ArgumentTypeError(f"expected a number in 0..1, got {text}")
    return value
CELLS = ("refused, dropped", "refused, kept", "right, silent", "right, WARN", "wrong, WARN", "wrong, silent")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=checkpoint_option, default="default", help=checkpoint_help())
    ap.add_argument("--mode", default="warn", choices=("warn", "refuse", "strict"),
                    help="unfamiliar_instruction")
    ap.add_argument("--floor", type=similarity_floor, default=0.45, help="min_instruction_similarity")
    ap.add_argument("--data", type=Path, default=DATA, help="labelled instructions (JSON list of text, label, "
                                                            "category)")
    ap.add_argument("--list", action="store_true", help="also list every instruction run as a wrong task silently")
    ap.add_argument("--threads", type=thread_count, default=1)
    args = ap.parse_args()

    import torch

    from deer_vla.core.instruction_text import clean_instruction
    from deer_vla.ros.instruction_check import SHARED

    torch.set_num_threads(args.threads)
    items = json.loads(args.data.read_text(encoding="utf-8"))
    loaded = instruction_check_of(args.checkpoint)
    if loaded is None:
        return 2
    runner, check = loaded
    tasks = set(check.matcher.tasks)
    table: dict[str, Counter[str]] = defaultdict(Counter)
    harmful = []
    for item in items:
        label = item["label"] if item["label"] in tasks else "REFUSE"
        try:
            text = clean_instruction(item["text"])
        except ValueError:
            text = ""
        verdict = check.judge(text, args.mode, args.floor, count=False) if text else None
        if not text or verdict is None or verdict.match is None:
            cell = "refused, kept"
        elif runner.refusal(text) is not None or verdict.drops:
            cell = "refused, dropped"
        elif verdict.refused(args.mode):
            cell = "refused, kept"
        else:
            right = verdict.match.task.removesuffix(SHARED) == label
            cell = f"{'right' if right else 'wrong'}, {'WARN' if verdict.doubtful else 'silent'}"
            if cell == "wrong, silent":
                harmful.append((item["category"], item["text"], verdict.match.task, verdict.match.similarity))
        expected = "REFUSE" if label == "REFUSE" else "task"
        table[f"{item['category']} ({expected})"][cell] += 1
        table[f"all ({expected})"][cell] += 1

    print(f"checkpoint {args.checkpoint} ({len(tasks)} tasks), unfamiliar_instruction {args.mode}, floor "
          f"{args.floor:g}: {len(items)} labelled instructions ({args.data.name})")
    width = max(len(k) for k in table)
    print(f"{'category (label)':<{width}}  " + "  ".join(f"{c:>16}" for c in CELLS))
    for key in sorted(table, key=lambda k: (k.startswith("all"), k)):
        print(f"{key:<{width}}  " + "  ".join(f"{table[key][c]:>16}" for c in CELLS))
    if args.list:
        print("run as a wrong task silently:")
        for category, text, task, similarity in harmful:
            print(f"  [{category}] {text!r} -> {task} ({similarity:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(run_bench(main))
