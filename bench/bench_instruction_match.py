"""What the policy node hears an instruction as: held-out wordings against requests for other things.

The policy node compares every new instruction with the wordings its checkpoint was trained on
(`deer_vla/model/instruction_match.py`; parameters `unfamiliar_instruction`, `min_instruction_similarity`).
This bench measures that comparison for a checkpoint, side by side in one run:

- the suite's never-trained (held-out) wordings: is their nearest trained wording of their own task, and how
  similar is it (these should stay above the floor: they are what a user says to a robot that knows the task);
- requests for things no task does (OTHER_REQUESTS below, written for this bench): how many fall under each
  floor (these should);
- a task's own verb for an object the scene does not have (OTHER_OBJECTS: "open the cabinet", "close the car
  window", from an audit that wrote them before reading the suite): how many fall under each floor. A
  comparison of wording shares the verb and the article with the task's own; most of these pass any floor
  that keeps the held-out wordings, and the policy does the task of the verb.

For each of the three, how many name a word the policy never learned (a word no trained wording has, nor one
near it: the node's WARN beside the match, `deer_vla/ros/instruction_check.py`), of those above the default floor;
and how many name no word of any trained wording at all (the node refuses them in either mode).

By default the checkpoint's own record (extra.json `training.instructions`) is the trained set; `--wordings
suite` uses the suite's training wordings instead, for a checkpoint without a record (one trained before
2026-12-02 that records none; the shipped `mt50`'s was written from the suite at the commit that trained it).
No simulator, no dataset: seconds.

    python bench/bench_instruction_match.py                                  # the shipped default, ten tasks
    python bench/bench_instruction_match.py --checkpoint mt50 --suite mt50          # the fifty tasks
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
from common import checkpoint_option, run_bench  # also puts this checkout first on sys.path

from deer_vla.core.config_io import thread_count
from deer_vla.model.shipped import checkpoint_help

# Requests a user might make of a robot arm that no task of either suite does, or that are not tasks at all.
OTHER_REQUESTS = (
    "make me a sandwich", "fly to the moon", "asdf qwerty", "stop", "what time is it", "pick up the red cube",
    "open the fridge", "wave hello", "dance", "turn off the lights", "go home", "clean the table",
    "bring me a cup of tea", "open the oven", "x", "do nothing", "ignore previous instructions", "tell me a joke",
    "sort the blocks by colour", "fold the towel", "hand me the screwdriver", "water the plants", "sing a song",
    "drive forward two meters", "look left", "put the apple in the bowl", "stack the cups", "shut down",
)
# A task's verb, another object (an audit's requests, 2026-12-06): wording alone cannot tell these apart.
OTHER_OBJECTS = (
    "open the cabinet", "close the door", "open the door", "close the lid", "open the window blinds",
    "close the car window", "turn off the oven", "turn on the lights", "press the elevator button",
    "press the doorbell", "push the chair in", "pull the chair out", "open the bottle", "open the box",
    "close the laptop", "close the curtains", "turn on the stove", "open the garage", "open the fridge door please",
    "open the kitchen drawer and get a knife", "turn the tap off in the bathroom",
)
FLOORS = (0.35, 0.40, 0.45, 0.50, 0.55)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=checkpoint_option, default="default", help=checkpoint_help())
    ap.add_argument("--suite", default="default", choices=("default", "mt50"),
                    help="whose held-out wordings to try (default: the ten tasks)")
    ap.add_argument("--wordings", default="record", choices=("record", "suite"),
                    help="the trained set: the checkpoint's record (as the node uses) or the suite's training "
                         "wordings (for a checkpoint without a record)")
    ap.add_argument("--threads", type=thread_count, default=1)
    args = ap.parse_args()

    import torch

    from deer_vla.core.instruction_text import clean_instruction
    from deer_vla.model.instruction_match import InstructionMatcher
    from deer_vla.model.instruction_words import trained_words_of
    from deer_vla.model.runner import PolicyRunner
    from deer_vla.ros.instruction_check import CLOSE_CALL, InstructionCheck, Verdict
    from deer_vla.ros.params import POLICY_DEFAULTS
    from deer_vla.sim.tasks import SUITES, resolve_tasks

    torch.set_num_threads(args.threads)
    runner = PolicyRunner.from_checkpoint(args.checkpoint)
    tasks = resolve_tasks(SUITES[args.suite])
    if args.wordings == "suite":
        record = {t.name: list(t.train_instructions) for t in tasks}
    else:
        assert runner.checkpoint_dir is not None
        record = runner.checkpoint_dir.read_training().get("instructions")
        if record is None:
            print(f"{args.checkpoint}: no record of trained instructions (use --wordings suite)", file=sys.stderr)
            return 2
    matcher = InstructionMatcher.from_runner(runner, record)
    trained = trained_words_of(record)
    check = InstructionCheck(matcher, read=(lambda text: trained.read(clean_instruction(text))[0]) if trained else None,
                             trained_words=trained)
    node_floor = float(POLICY_DEFAULTS["min_instruction_similarity"])

    held = [(t.name, text) for t in tasks for text in t.heldout_instructions]
    held_matches = [matcher.match(text) for _, text in held]
    right = sum(m.task.removesuffix("-shared") == task for (task, _), m in zip(held, held_matches))
    held_sim = np.array([m.similarity for m in held_matches])
    other = sorted(((matcher.match(text), text) for text in OTHER_REQUESTS), key=lambda p: -p[0].similarity)
    other_sim = np.array([m.similarity for m, _ in other])
    objects = sorted(((matcher.match(text), text) for text in OTHER_OBJECTS), key=lambda p: -p[0].similarity)
    object_sim = np.array([m.similarity for m, _ in objects])

    print(f"checkpoint {args.checkpoint}, trained set: {args.wordings} ({len(matcher.tasks)} tasks), "
          f"held-out wordings of suite '{args.suite}': {len(held)}")
    print(f"held-out: nearest trained wording of its own task {right}/{len(held)} ({right / len(held):.1%}); "
          f"similarity min {held_sim.min():.3f}, 5th percentile {np.percentile(held_sim, 5):.3f}, "
          f"median {np.median(held_sim):.3f}")
    close = [((task, text), m) for (task, text), m in zip(held, held_matches) if Verdict(m, False).close_call]
    close_wrong = sum(m.task.removesuffix("-shared") != task for (task, _), m in close)
    print(f"held-out close calls (another task's wording within {CLOSE_CALL} of the nearest: the node's WARN): "
          f"{len(close)}/{len(held)}, {close_wrong} of them nearest another task")
    print(f"other requests: similarity max {other_sim.max():.3f}, median {np.median(other_sim):.3f}")
    print(f"another object for a task's verb: similarity max {object_sim.max():.3f}, "
          f"median {np.median(object_sim):.3f}")
    print(f"{'floor':>6}  {'held-out under it':>18}  {'other requests under it':>24}  {'other objects under it':>23}")
    for floor in FLOORS:
        print(f"{floor:6.2f}  {int((held_sim < floor).sum()):>10}/{len(held):<7}  "
              f"{int((other_sim < floor).sum()):>15}/{len(other_sim):<8}  "
              f"{int((object_sim < floor).sum()):>15}/{len(object_sim):<7}")
    for label, pairs in (("other requests", other), ("other objects", objects)):
        print(f"{label}, most similar first:")
        for m, text in pairs[:8]:
            print(f"  {m.similarity:.3f}  {text!r} -> {m.task} ({m.nearest!r})")
    named, nothing = [], []
    for label, texts in (("held-out", [text for _, text in held]), ("other requests", OTHER_REQUESTS),
                         ("other objects", OTHER_OBJECTS)):
        verdicts = [(text, check.judge(text, "warn", node_floor)) for text in texts]
        nothing.append(f"{label} {sum(v.names_nothing for _, v in verdicts)}/{len(verdicts)}")
        above = [(text, v) for text, v in verdicts if not v.unfamiliar]
        marked = [(text, v) for text, v in above if v.unknown]
        named.append(f"{label} {len(marked)}/{len(above)}")
        for text, v in marked[:4]:
            print(f"  words never learned: {text!r} -> {v.match.task if v.match else '-'}, "
                  + ", ".join(f"{w!r} (nearest {n!r} {s:.2f})" for w, n, s in v.unknown))
    print(f"above the floor {node_floor:g}, naming a word never learned (the node's WARN): " + ", ".join(named))
    print("naming no word of a trained wording (refused in either mode): " + ", ".join(nothing))
    wrong = [(task, text, m) for (task, text), m in zip(held, held_matches) if m.task.removesuffix("-shared") != task]
    if wrong:
        print("held-out wordings nearest another task:")
        for task, text, m in wrong[:10]:
            print(f"  {task}: {text!r} -> {m.task} ({m.nearest!r}, {m.similarity:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(run_bench(main))
