"""The MT50 suite: all 50 Meta-World v3 tasks with language, in the community's four difficulty groups.

The ten tasks of the default suite (``deer_vla.sim.tasks.TASK_SUITE``, group "all") are reused as they are; the
other forty are defined here, each with a canonical first training instruction written from what the task does,
more training paraphrases, and never-trained held-out ones (politeness wrappers, synonyms, other word orders,
short imperatives). No instruction of one task is an instruction of another. Where two tasks share a scene
(push / pick-place, push-wall / pick-place-wall, plate-slide / plate-slide-back, ...) the verb names the task.

Difficulty groups: LeRobot's Meta-World config, huggingface/lerobot src/lerobot/envs/metaworld_config.json
("DIFFICULTY_TO_TASKS": easy 28, medium 11, hard 6, very_hard 5), the grouping LeRobot's per-difficulty
evaluation reports.

Expert figures (docs/mt50.md): Meta-World's scripted expert with N(0, 0.1) action noise on seeds 0..99 (the
collector's rollout), episode limit 500 (Meta-World's max_path_length). Comments give the success count and
the mean / max length of the successful episodes; ``max_steps`` is about 1.5x the longest one, capped at 500.
No task is dropped: soccer (257/300 seeds) and peg-insert-side (263/300) are kept below the ~90% bar because
their failures are the expert's own (the same with half the noise) and the collector stores successes only.
Like ``tasks``, this module imports no simulator.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

from deer_vla.sim.tasks import ALL_TASKS, TASK_GROUPS, TASK_SUITE, TaskSpec

META_WORLD_MAX_PATH_LENGTH = 500


def steps_for(longest_expert_episode: int) -> int:
    """Episode limit for a task: 1.5x its longest noisy expert episode, rounded up to 10, capped at 500."""
    return min(META_WORLD_MAX_PATH_LENGTH, 10 * math.ceil(1.5 * longest_expert_episode / 10))


def _mt(name: str, train: tuple[str, ...], heldout: tuple[str, ...], longest: int) -> TaskSpec:
    return TaskSpec(name, f"{name}-v3", train, heldout, steps_for(longest))


# Comments: expert successes out of 100 with noise 0.1, mean / max length of the successful episodes.
_NEW: tuple[TaskSpec, ...] = (
    # --- easy --------------------------------------------------------------------------------------------
    _mt(  # 100/100, 59 / 66
        "button-press-topdown-wall",
        ("press the button behind the wall from the top", "reach over the wall and press the button down",
         "push the button down from above past the wall", "press down on the button behind the wall",
         "please press the walled button from the top", "can you push down the button behind the wall"),
        ("go over the wall and push the button down", "could you press the button behind the wall from above",
         "the button behind the wall: press it from the top", "press the button beyond the wall downward",
         "i need the button behind the wall pushed down", "push down the button that is behind the wall, thanks"),
        66,
    ),
    _mt(  # 100/100, 67 / 135
        "button-press-wall",
        ("press the button behind the wall", "reach around the wall and push the button in",
         "push the button on the box behind the wall", "press the button forward past the wall",
         "please press the button behind the wall", "can you push in the button behind the wall"),
        ("get around the wall and press the button", "could you push the button behind the wall",
         "the button behind the wall: push it in", "poke the button past the wall",
         "i need the button behind the wall pressed", "push in the button hidden behind the wall"),
        135,
    ),
    _mt(  # 100/100, 78 / 136
        "dial-turn",
        ("turn the dial", "rotate the dial", "spin the dial around", "turn the knob on the dial",
         "please turn the dial", "can you rotate the dial"),
        ("twist the dial", "could you turn the dial", "give the dial a turn", "rotate the dial knob",
         "i need the dial turned", "the dial: turn it", "spin the dial, thanks"),
        136,
    ),
    _mt(  # 100/100, 70 / 80
        "door-close",
        ("close the door", "push the door shut", "swing the door closed", "shut the door",
         "please close the door", "can you push the door closed"),
        ("close up the door", "could you shut the door", "swing the door shut", "door closed please",
         "i need the door closed", "the door: close it", "push the door until it is shut"),
        80,
    ),
    _mt(  # 100/100, 105 / 137
        "door-lock",
        ("lock the door", "turn the lock on the door", "rotate the door lock down", "turn the door lock to locked",
         "please lock the door", "can you lock the door"),
        ("could you lock the door", "secure the door lock", "twist the lock closed", "door locked please",
         "i need the door locked", "the lock: turn it to lock", "set the door lock"),
        137,
    ),
    _mt(  # 97/100, 85 / 132
        "door-open",
        ("open the door", "pull the door open", "swing the door open", "swing open the door",
         "please open the door", "can you pull the door open"),
        ("could you open the door", "open up the door", "door open please", "i need the door opened",
         "the door: open it", "pull open the door by its handle", "swing the door wide open"),
        132,
    ),
    _mt(  # 100/100, 46 / 85
        "door-unlock",
        ("unlock the door", "turn the lock on the door to unlock it", "rotate the door lock open",
         "release the door lock", "please unlock the door", "can you unlock the door"),
        ("could you unlock the door", "undo the door lock", "twist the lock open", "door unlocked please",
         "i need the door unlocked", "the lock: turn it to unlock", "open the lock on the door"),
        85,
    ),
    _mt(  # 100/100, 43 / 65
        "handle-press-side",
        ("press the handle down from the side", "push the side handle down", "press down on the handle from the side",
         "push the handle down sideways", "please press the side handle down", "can you push the side handle down"),
        ("could you press down the side handle", "lower the side handle", "the side handle: push it down",
         "press the sideways handle downward", "i need the side handle pressed down",
         "depress the handle from the side", "push down the handle mounted sideways"),
        65,
    ),
    _mt(  # 100/100, 108 / 131
        "handle-pull",
        ("pull the handle up", "lift the handle", "pull up on the handle", "raise the handle",
         "please pull the handle up", "can you lift the handle up"),
        ("could you pull up the handle", "pull the handle upward", "the handle: pull it up", "bring the handle up",
         "i need the handle raised", "yank the handle up", "lift up the handle, thanks"),
        131,
    ),
    _mt(  # 98/100, 84 / 171
        "handle-pull-side",
        ("pull the handle up from the side", "lift the side handle", "pull up on the side handle",
         "raise the handle from the side", "please pull the side handle up", "can you lift the side handle"),
        ("could you pull up the side handle", "pull the sideways handle upward", "the side handle: pull it up",
         "bring the side handle up", "i need the side handle raised", "raise the handle mounted sideways",
         "lift up the side handle, thanks"),
        171,
    ),
    _mt(  # 100/100, 82 / 160
        "lever-pull",
        ("pull the lever up", "lift the lever", "raise the lever", "swing the lever up",
         "please pull the lever up", "can you lift the lever up"),
        ("could you raise the lever", "the lever: pull it up", "flip the lever up", "i need the lever pulled up",
         "pull up on the lever", "rotate the lever upward", "bring the lever up, thanks"),
        160,
    ),
    _mt(  # 100/100, 52 / 56
        "plate-slide",
        ("slide the plate into the cabinet", "push the plate into the cabinet",
         "slide the plate forward into the cabinet", "move the plate into the cabinet",
         "please slide the plate into the cabinet", "can you push the plate into the cabinet"),
        ("could you slide the plate into the cabinet", "put the plate in the cabinet by sliding it",
         "the plate: slide it into the cabinet", "shove the plate into the cabinet", "i need the plate in the cabinet",
         "slide the plate forward", "push the plate in, thanks"),
        56,
    ),
    _mt(  # 100/100, 60 / 95
        "plate-slide-back",
        ("slide the plate out of the cabinet", "pull the plate out of the cabinet", "get the plate from the cabinet",
         "slide the plate back out of the cabinet", "please pull the plate out of the cabinet",
         "can you slide the plate out of the cabinet"),
        ("could you get the plate out of the cabinet", "the plate: slide it out of the cabinet",
         "take the plate out of the cabinet", "i need the plate out of the cabinet",
         "retrieve the plate from the cabinet", "draw the plate back out of the cabinet",
         "bring the plate out of the cabinet, thanks"),
        95,
    ),
    _mt(  # 100/100, 47 / 59
        "plate-slide-back-side",
        ("slide the plate sideways out of the cabinet", "pull the plate out of the cabinet from the side",
         "get the plate from the cabinet sideways", "move the plate sideways out of the cabinet",
         "please slide the plate sideways out of the cabinet", "can you pull the plate sideways out of the cabinet"),
        ("could you get the plate sideways out of the cabinet", "the plate: slide it sideways out of the cabinet",
         "take the plate out of the cabinet sideways", "i need the plate slid sideways out of the cabinet",
         "retrieve the plate from the cabinet sideways", "slide the plate out from the side",
         "sideways, slide the plate out of the cabinet"),
        59,
    ),
    _mt(  # 100/100, 49 / 67
        "plate-slide-side",
        ("slide the plate sideways into the cabinet", "push the plate into the cabinet from the side",
         "slide the plate to the side into the cabinet", "move the plate sideways into the cabinet",
         "please slide the plate sideways into the cabinet", "can you push the plate sideways into the cabinet"),
        ("could you slide the plate sideways into the cabinet", "the plate: slide it sideways into the cabinet",
         "shove the plate into the cabinet from the side", "i need the plate slid sideways into the cabinet",
         "slide the plate in from the side", "push the plate sideways, into the cabinet",
         "sideways, slide the plate into the cabinet"),
        67,
    ),
    _mt(  # 100/100, 50 / 102
        "reach",
        ("reach the goal position", "move the hand to the goal", "reach to the target", "move the gripper to the goal",
         "please reach the goal", "can you move your hand to the target"),
        ("could you reach the target", "go to the goal", "put the hand at the goal", "touch the target point",
         "i need the hand at the goal", "the goal: reach it", "bring the gripper to the target"),
        102,
    ),
    _mt(  # 100/100, 48 / 150
        "reach-wall",
        ("reach the goal behind the wall", "move the hand over the wall to the goal",
         "reach past the wall to the target", "move the gripper to the goal behind the wall",
         "please reach the goal behind the wall", "can you reach over the wall to the target"),
        ("could you reach the target behind the wall", "go over the wall to the goal",
         "put the hand at the goal behind the wall", "touch the target past the wall",
         "i need the hand at the goal beyond the wall", "the goal behind the wall: reach it",
         "get around the wall and reach the goal"),
        150,
    ),
    _mt(  # 91/100, 116 / 191
        "peg-unplug-side",
        ("unplug the peg", "pull the peg out sideways", "pull the peg out of the hole", "remove the peg from the side",
         "please unplug the peg", "can you pull the peg out"),
        ("could you unplug the peg", "take the peg out of the socket", "the peg: pull it out", "yank out the peg",
         "i need the peg unplugged", "draw the peg out sideways", "extract the peg from the hole"),
        191,
    ),
    # --- medium ------------------------------------------------------------------------------------------
    _mt(  # 96/100, 103 / 170
        "basketball",
        ("put the ball in the basket", "dunk the basketball", "pick up the ball and drop it in the hoop",
         "place the basketball in the hoop", "please dunk the ball", "can you put the ball through the hoop"),
        ("could you dunk the basketball", "score a basket", "the ball: put it in the hoop", "slam dunk the ball",
         "i need the ball in the basket", "drop the ball into the hoop", "shoot the ball into the basket"),
        170,
    ),
    _mt(  # 100/100, 129 / 279
        "bin-picking",
        ("move the puck to the other bin", "pick the puck from one bin and put it in the other",
         "transfer the puck between the bins", "place the puck in the empty bin",
         "please move the puck to the other bin", "can you put the puck in the other bin"),
        ("could you move the puck into the other bin", "the puck: put it in the second bin",
         "shift the puck over to the other bin", "i need the puck in the other bin",
         "pick up the puck and drop it in the empty bin", "relocate the puck to the other bin",
         "take the puck out of its bin and into the other one"),
        279,
    ),
    _mt(  # 93/100, 112 / 169
        "box-close",
        ("close the box", "put the lid on the box", "pick up the lid and close the box", "cover the box with the lid",
         "please close the box", "can you put the lid on the box"),
        ("could you close the box", "the box: close it with the lid", "place the cover on the box",
         "i need the box closed", "shut the box", "lid on the box please", "cap the box"),
        169,
    ),
    _mt(  # 100/100, 79 / 94
        "coffee-pull",
        ("pull the mug from the coffee machine", "take the mug out from under the coffee machine",
         "pull the cup away from the coffee machine", "slide the mug out of the coffee machine",
         "please pull the mug out of the coffee machine", "can you pull the cup from the coffee machine"),
        ("could you take the mug from the coffee machine", "the mug: pull it out from the coffee maker",
         "get the cup from the coffee maker", "i need the mug out of the coffee machine",
         "draw the mug back from the coffee machine", "remove the cup from under the espresso machine",
         "bring the mug out from the coffee machine, thanks"),
        94,
    ),
    _mt(  # 100/100, 56 / 64
        "coffee-push",
        ("push the mug under the coffee machine", "slide the mug under the coffee machine",
         "put the cup under the coffee machine", "push the cup to the coffee machine",
         "please push the mug under the coffee machine", "can you slide the cup under the coffee machine"),
        ("could you push the mug under the coffee maker", "the mug: push it under the coffee machine",
         "move the cup beneath the coffee maker", "i need the mug under the coffee machine",
         "shove the mug under the espresso machine", "set the cup under the coffee machine",
         "place the mug beneath the coffee machine by pushing it"),
        64,
    ),
    _mt(  # 100/100, 69 / 109
        "hammer",
        ("hammer the nail in", "pick up the hammer and drive in the nail", "hit the nail with the hammer",
         "use the hammer on the nail", "please hammer the nail in", "can you hammer in the nail"),
        ("could you hammer the nail", "drive the nail in with the hammer", "the nail: hammer it in",
         "i need the nail hammered in", "pound the nail in", "grab the hammer and hit the nail",
         "knock the nail into the wall"),
        109,
    ),
    _mt(  # 88/100, 121 / 347
        "peg-insert-side",
        ("insert the peg into the hole", "put the peg in the hole sideways", "pick up the peg and insert it sideways",
         "push the peg into the hole from the side", "please insert the peg into the hole",
         "can you put the peg in the hole"),
        ("could you insert the peg", "the peg: put it in the hole", "plug the peg into the hole",
         "i need the peg inserted", "slide the peg into the hole sideways", "stick the peg in the hole",
         "fit the peg into the hole from the side"),
        347,
    ),
    _mt(  # 100/100, 83 / 94
        "push-wall",
        ("push the puck around the wall to the goal", "push the puck past the wall to the goal",
         "slide the puck around the wall to the target", "shove the puck around the wall",
         "please push the puck around the wall to the goal", "can you push the puck past the wall"),
        ("could you push the puck around the wall", "the puck: push it past the wall to the goal",
         "nudge the puck around the wall to the target", "i need the puck pushed around the wall",
         "get the puck around the wall to the goal by pushing", "bypass the wall and push the puck to the goal",
         "slide the puck past the wall to the goal"),
        94,
    ),
    _mt(  # 89/100, 77 / 139
        "soccer",
        ("kick the ball into the goal", "push the soccer ball into the net", "score a goal with the ball",
         "roll the ball into the goal", "please kick the ball into the goal", "can you push the ball into the net"),
        ("could you score a goal", "the ball: put it in the net", "shoot the soccer ball into the goal",
         "i need the ball in the goal", "knock the ball into the net", "get the soccer ball in the goal",
         "kick the soccer ball in"),
        139,
    ),
    _mt(  # 100/100, 92 / 129
        "sweep",
        ("sweep the puck off the table", "push the puck off the edge of the table", "sweep the puck off the side",
         "knock the puck off the table", "please sweep the puck off the table", "can you push the puck off the table"),
        ("could you sweep the puck off the table", "the puck: sweep it off the table", "clear the puck off the table",
         "i need the puck off the table", "brush the puck off the edge", "get the puck off the table",
         "slide the puck over the edge"),
        129,
    ),
    _mt(  # 91/100, 56 / 69
        "sweep-into",
        ("sweep the puck into the hole", "push the puck into the hole", "sweep the puck into the goal hole",
         "slide the puck into the hole", "please sweep the puck into the hole", "can you push the puck into the hole"),
        ("could you sweep the puck into the hole", "the puck: sweep it into the hole", "brush the puck into the hole",
         "i need the puck in the hole", "get the puck into the hole", "knock the puck into the hole",
         "slide the puck in the hole, thanks"),
        69,
    ),
    # --- hard --------------------------------------------------------------------------------------------
    _mt(  # 100/100, 97 / 218
        "assembly",
        ("put the nut on the peg", "pick up the nut and place it onto the peg", "assemble the nut onto the peg",
         "slide the ring onto the peg", "please put the nut on the peg", "can you fit the nut onto the peg"),
        ("could you place the nut on the peg", "the nut: put it onto the peg", "thread the nut over the peg",
         "i need the nut on the peg", "drop the nut onto the peg", "assemble the parts", "fit the ring over the peg"),
        218,
    ),
    _mt(  # 100/100, 62 / 106
        "hand-insert",
        ("put the block in the hole", "pick up the block and insert it into the hole", "insert the block into the hole",
         "drop the block into the hole", "please put the block in the hole", "can you insert the block into the hole"),
        ("could you put the block into the hole", "the block: insert it in the hole", "place the block inside the hole",
         "i need the block in the hole", "push the block down into the hole", "fit the block into the hole",
         "lower the block into the hole"),
        106,
    ),
    _mt(  # 100/100, 155 / 375
        "pick-out-of-hole",
        ("pick the puck out of the hole", "lift the puck out of the hole", "take the puck out of the hole",
         "pick up the puck from the hole and move it to the goal", "please pick the puck out of the hole",
         "can you lift the puck out of the hole"),
        ("could you get the puck out of the hole", "the puck: lift it out of the hole", "remove the puck from the hole",
         "i need the puck out of the hole", "retrieve the puck from the hole", "pull the puck up out of the hole",
         "grab the puck from the hole"),
        375,
    ),
    _mt(  # 100/100, 54 / 64
        "pick-place",
        ("pick up the puck and place it at the goal", "lift the puck to the goal",
         "pick the puck up and move it to the target", "grasp the puck and carry it to the goal",
         "please pick up the puck and place it at the goal", "can you lift the puck to the target"),
        ("could you pick the puck up and put it at the goal", "the puck: pick it up and put it at the goal",
         "carry the puck to the target", "i need the puck picked up and placed at the goal",
         "grab the puck and hold it at the goal", "pick and place the puck", "raise the puck up to the goal"),
        64,
    ),
    _mt(  # 99/100, 64 / 166
        "push",
        ("push the puck to the goal", "slide the puck to the target", "push the puck across the table to the goal",
         "shove the puck to the goal", "please push the puck to the goal", "can you slide the puck to the goal"),
        ("could you push the puck to the target", "the puck: push it to the goal", "nudge the puck to the goal",
         "i need the puck pushed to the goal", "move the puck to the goal by pushing it",
         "push the puck forward to the target", "slide the puck over to the goal"),
        166,
    ),
    _mt(  # 98/100, 145 / 467
        "push-back",
        ("pull the puck back to the goal", "push the puck back toward the robot", "slide the puck back to the target",
         "bring the puck back toward you", "please pull the puck back to the goal",
         "can you slide the puck back toward the robot"),
        ("could you pull the puck back to the target", "the puck: pull it back to the goal",
         "drag the puck back to the goal", "i need the puck pulled back", "move the puck backward to the goal",
         "draw the puck back toward the robot", "slide the puck back, thanks"),
        467,
    ),
    # --- very hard ---------------------------------------------------------------------------------------
    _mt(  # 94/100, 96 / 265
        "shelf-place",
        ("put the puck on the shelf", "pick up the puck and place it on the shelf", "place the puck onto the shelf",
         "lift the puck onto the shelf", "please put the puck on the shelf", "can you place the puck on the shelf"),
        ("could you put the puck onto the shelf", "the puck: place it on the shelf", "shelve the puck",
         "i need the puck on the shelf", "set the puck up on the shelf", "store the puck on the shelf",
         "grab the puck and put it on the shelf"),
        265,
    ),
    _mt(  # 95/100, 112 / 318
        "disassemble",
        ("take the nut off the peg", "pick the nut out of the peg", "lift the nut off the peg",
         "remove the nut from the peg", "please take the nut off the peg", "can you lift the nut off the peg"),
        ("could you remove the nut from the peg", "the nut: take it off the peg", "pull the nut up off the peg",
         "i need the nut off the peg", "disassemble the parts", "get the nut off the peg",
         "unstack the ring from the peg"),
        318,
    ),
    _mt(  # 89/100, 151 / 500
        "stick-pull",
        ("pull the box with the stick", "grab the stick and pull the box toward you", "use the stick to pull the box",
         "pick up the stick and drag the box back", "please pull the box with the stick",
         "can you use the stick to pull the box"),
        ("could you pull the box using the stick", "the box: pull it with the stick",
         "hook the box with the stick and pull", "i need the box pulled with the stick", "drag the box with the stick",
         "take the stick and draw the box closer", "pull the box over with the stick, thanks"),
        500,
    ),
    _mt(  # 100/100, 76 / 96
        "stick-push",
        ("push the box with the stick", "grab the stick and push the box away", "use the stick to push the box",
         "pick up the stick and shove the box forward", "please push the box with the stick",
         "can you use the stick to push the box"),
        ("could you push the box using the stick", "the box: push it with the stick",
         "poke the box forward with the stick", "i need the box pushed with the stick", "shove the box with the stick",
         "take the stick and move the box away", "push the box over with the stick, thanks"),
        96,
    ),
    _mt(  # 100/100, 96 / 266
        "pick-place-wall",
        ("pick up the puck and place it at the goal behind the wall", "lift the puck over the wall to the goal",
         "carry the puck over the wall and put it at the goal", "raise the puck over the wall to the goal",
         "please place the puck at the goal behind the wall", "can you lift the puck over the wall"),
        ("could you put the puck at the goal behind the wall", "the puck: carry it over the wall to the goal",
         "bring the puck over the wall to the target", "i need the puck placed behind the wall",
         "grab the puck and drop it beyond the wall", "get the puck over the wall to the goal",
         "pick and place the puck over the wall"),
        266,
    ),
)

# LeRobot's DIFFICULTY_TO_TASKS (file named in the module docstring), without the "-v3" suffix.
MT50_DIFFICULTY: dict[str, tuple[str, ...]] = {
    "easy": (
        "button-press", "button-press-topdown", "button-press-topdown-wall", "button-press-wall", "coffee-button",
        "dial-turn", "door-close", "door-lock", "door-open", "door-unlock", "drawer-close", "drawer-open",
        "faucet-close", "faucet-open", "handle-press", "handle-press-side", "handle-pull", "handle-pull-side",
        "lever-pull", "plate-slide", "plate-slide-back", "plate-slide-back-side", "plate-slide-side", "reach",
        "reach-wall", "window-close", "window-open", "peg-unplug-side",
    ),
    "medium": ("basketball", "bin-picking", "box-close", "coffee-pull", "coffee-push", "hammer", "peg-insert-side",
               "push-wall", "soccer", "sweep", "sweep-into"),
    "hard": ("assembly", "hand-insert", "pick-out-of-hole", "pick-place", "push", "push-back"),
    "very-hard": ("shelf-place", "disassemble", "stick-pull", "stick-push", "pick-place-wall"),
}
# Tasks left out of the suite, with why (none may leave silently: docs/mt50.md has the measurements).
DROPPED: dict[str, str] = {}

_BY_NAME: dict[str, TaskSpec] = {**{t.name: t for t in _NEW}, **TASK_SUITE}
MT50_TASKS: dict[str, TaskSpec] = {
    n: _BY_NAME[n] for group in MT50_DIFFICULTY.values() for n in group if n not in DROPPED
}
# Named groups for --tasks / --suite: "mt50" and one per difficulty ("mt50-easy", ..., "mt50-very-hard").
MT50_GROUPS: dict[str, tuple[str, ...]] = {
    "mt50": tuple(MT50_TASKS),
    **{f"mt50-{g}": tuple(n for n in names if n in MT50_TASKS) for g, names in MT50_DIFFICULTY.items()},
}


def difficulty_groups(tasks: Iterable[str]) -> dict[str, list[str]]:
    """The given tasks that are MT50 tasks, by difficulty group (easy .. very-hard; empty groups left out)."""
    names = [t.removesuffix("-v3") for t in tasks]
    groups = {g: [n for n in names if n in members] for g, members in MT50_DIFFICULTY.items()}
    return {g: ns for g, ns in groups.items() if ns}


def difficulty(task: str) -> str:
    """The difficulty group ('easy', 'medium', 'hard', 'very-hard') of an MT50 task; KeyError for other names."""
    name = task.removesuffix("-v3")
    for group, names in MT50_DIFFICULTY.items():
        if name in names:
            return group
    raise KeyError(f"{task!r} is not an MT50 task")


def _check() -> None:
    # A typo in a group or a name in two groups would silently change what the per-group numbers mean.
    names = [n for g in MT50_DIFFICULTY.values() for n in g]
    if len(names) != 50 or len(set(names)) != 50:
        raise RuntimeError(f"MT50_DIFFICULTY must name 50 distinct tasks, got {len(set(names))} of {len(names)}")
    missing = set(names) - set(_BY_NAME) - set(DROPPED)
    if missing:
        raise RuntimeError(f"MT50 tasks without a TaskSpec: {sorted(missing)}")



def _register() -> None:
    # Every command that takes --tasks also takes the forty new names and the mt50 groups.
    for name, spec in MT50_TASKS.items():
        ALL_TASKS.setdefault(name, spec)
    TASK_GROUPS.update(MT50_GROUPS)


_check()
_register()
