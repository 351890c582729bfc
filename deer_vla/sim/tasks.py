"""The language-conditioned task suite: Meta-World v3 tasks with instruction paraphrases.

Tasks were chosen so that (a) Meta-World's scripted expert succeeds on every
seed, also with Gaussian action noise (sigma 0.1), and (b) behaviour cloning
from 64x64 images is plausible: one object, short reaching/pushing motions,
object visible from the static camera. Pairs sharing a scene (drawer
open/close, window open/close, faucet open/close) make the instruction matter.

Measured with the collector's own rollouts (seeds 0..99, expert + N(0, 0.1)
action noise; `python -m deer_vla.data.expert_stats --tasks all --seeds 100`):
success 100% for all ten; mean / max episode length in steps is noted per task. ``max_steps`` is about 1.5x the longest
noisy expert episode, so a slightly slower learned policy still has time.

This module imports no simulator, so the trainer and evaluator can read task
metadata on machines without MuJoCo.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskSpec:
    name: str  # suite name, e.g. "drawer-open"
    env_name: str  # Meta-World v3 environment name, e.g. "drawer-open-v3"
    train_instructions: tuple[str, ...]  # paraphrases used in demonstrations and training
    heldout_instructions: tuple[str, ...]  # never trained on; for generalisation tests
    max_steps: int = 150  # episode limit (control steps)
    # Key of a start state shared with the pair's other task (deer_vla.sim.metaworld_env.SHARED_STARTS), where
    # only the instruction tells the two apart; None = Meta-World's own start state for env_name.
    shared_start: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_instructions", tuple(self.train_instructions))
        object.__setattr__(self, "heldout_instructions", tuple(self.heldout_instructions))
        if not self.train_instructions:
            raise ValueError(f"task {self.name}: needs at least one training instruction")
        overlap = set(self.train_instructions) & set(self.heldout_instructions)
        if overlap:
            raise ValueError(f"task {self.name}: instructions both trained and held out: {sorted(overlap)}")
        if self.max_steps < 1:
            raise ValueError(f"task {self.name}: max_steps must be >= 1, got {self.max_steps}")

    @property
    def instruction(self) -> str:
        """The canonical instruction (first training paraphrase)."""
        return self.train_instructions[0]


def _task(name: str, train: tuple[str, ...], heldout: tuple[str, ...], max_steps: int) -> TaskSpec:
    return TaskSpec(name, f"{name}-v3", train, heldout, max_steps)


# Comments: expert episode length with noise 0.1, mean / max over seeds 0..99.
# Training paraphrases: the first eight per task, then the seven that were held out until 2026-12-02 (measured
# held out on the checkpoints up to then, see docs/RESULTS.md). The held-out sets since are new wording, written
# once and not tuned against: wrappers never trained ("hey robot,", "let's", "when you get a chance"), synonyms
# ("tap", "pane", "smash"), terse forms ("water off", "drawer in").
_SUITE: tuple[TaskSpec, ...] = (
    _task(  # 68 / 79
        "button-press-topdown",
        ("press the button from the top", "push the button down from above", "press down on the red button",
         "push the button downward", "please press the button from the top", "can you push the button downward",
         "press the top of the red button", "push down on the button from the top",
         "press the button down from above", "could you press down on the button",
         "lower the hand onto the button", "press the red button straight down",
         "i need the button pushed down from the top", "the button: press it from above",
         "push the button down, from the top"),
        ("hey robot, press the button from above", "let's push the button down from the top",
         "tap the button from above when you get a chance", "from above, press the button",
         "press that button down from the top", "smash the button from above", "top-down button press"),
        120,
    ),
    _task(  # 62 / 66
        "button-press",
        ("press the button forward", "push the button on the front of the box", "push the red button in",
         "press the button horizontally", "please press the button forward", "can you push the red button in",
         "push the front button", "press the red button forward", "push the button forward",
         "could you push in the button on the box", "poke the button straight ahead",
         "press the button on the side of the box", "i need the red button pushed in",
         "the red button: push it forward", "press in the front button, thanks"),
        ("hey robot, press the button forward", "let's push the red button in",
         "push the box's button in when you get a chance", "forward, press the button", "jab the button forward",
         "press that button in from the front", "front button press"),
        100,
    ),
    _task(  # 36 / 44
        "coffee-button",
        ("press the button on the coffee machine", "push the coffee machine button", "start the coffee machine",
         "press the coffee button", "please press the coffee machine button", "can you start the coffee machine",
         "push the button of the coffee machine", "make the coffee machine start",
         "push the button on the coffee maker", "could you switch on the coffee maker", "brew some coffee",
         "press the coffee maker button", "i would like a coffee, press the button",
         "turn on the espresso machine", "hit the coffee maker's button"),
        ("hey robot, start the coffee machine", "let's make some coffee",
         "press the coffee machine's button when you get a chance", "coffee machine, press its button",
         "get the coffee going", "switch the coffee machine on", "coffee button press"),
        70,
    ),
    _task(  # 32 / 53
        "handle-press",
        ("press the handle down", "push the handle down", "push down on the lever handle",
         "press the handle downward", "please press the handle down", "can you push the handle down",
         "push the lever down", "press down on the handle", "push the handle downward",
         "could you lower the lever", "pull the lever handle down", "move the handle to the bottom",
         "i need the handle pressed down", "the handle: push it down", "depress the lever"),
        ("hey robot, push the handle down", "let's press the lever down",
         "bring the handle down when you get a chance", "down with the handle", "push that lever to the bottom",
         "press the lever handle downward", "handle down"),
        80,
    ),
    _task(  # 90 / 99
        "drawer-open",
        ("open the drawer", "pull the drawer open", "pull out the drawer", "slide the drawer open",
         "please open the drawer", "can you pull the drawer open", "pull the drawer out toward the robot",
         "slide out the drawer", "pull the drawer out", "could you open the drawer", "pull the drawer toward you",
         "drawer open please", "i need the drawer opened", "extend the drawer", "yank the drawer open"),
        ("hey robot, open the drawer", "let's pull the drawer open", "open that drawer when you get a chance",
         "drawer out", "pull open the drawer", "get the drawer open", "draw the drawer out"),
        150,
    ),
    _task(  # 81 / 83
        "drawer-close",
        ("close the drawer", "push the drawer closed", "push in the drawer", "slide the drawer shut",
         "please close the drawer", "can you push the drawer closed", "push the drawer back in",
         "slide in the drawer", "shut the drawer", "could you close the drawer", "push the drawer away from you",
         "drawer closed please", "i need the drawer shut", "retract the drawer", "close up the drawer all the way"),
        ("hey robot, close the drawer", "let's push the drawer shut", "close that drawer when you get a chance",
         "drawer in", "push shut the drawer", "get the drawer closed", "tuck the drawer back in"),
        130,
    ),
    _task(  # 90 / 100
        "window-open",
        ("open the window", "slide the window open", "slide the window to the left", "push the window open",
         "please open the window", "can you slide the window open", "move the window to the left",
         "slide open the window pane", "slide open the window", "could you open the window", "window: open it",
         "window open please", "i need the window opened", "shift the sliding window leftward",
         "open up the window all the way"),
        ("hey robot, open the window", "let's slide the window open", "open that window when you get a chance",
         "window to the left", "slide the pane to the left", "get the window open",
         "let some air in through the window"),
        150,
    ),
    _task(  # 83 / 91
        "window-close",
        ("close the window", "slide the window closed", "slide the window to the right", "push the window shut",
         "please close the window", "can you slide the window closed", "move the window to the right",
         "slide the window pane closed", "slide the window shut", "could you close the window", "window: shut it",
         "window closed please", "i need the window shut", "shift the sliding window rightward",
         "shut the window all the way"),
        ("hey robot, close the window", "let's slide the window shut", "close that window when you get a chance",
         "window to the right", "slide the pane to the right", "get the window closed",
         "keep the draft out, close the window"),
        140,
    ),
    _task(  # 62 / 69
        "faucet-open",
        ("turn on the faucet", "open the faucet", "rotate the faucet handle to open it", "turn the tap on",
         "please turn on the faucet", "can you open the faucet", "rotate the faucet handle open",
         "turn the faucet handle to open", "open the tap", "could you turn on the faucet", "start the water",
         "turn the water on", "faucet on please", "i need the water running", "twist the faucet open"),
        ("hey robot, turn on the faucet", "let's open the tap", "turn the faucet on when you get a chance",
         "water on", "get the water flowing", "open up the faucet", "switch the tap on"),
        110,
    ),
    _task(  # 66 / 71
        "faucet-close",
        ("turn off the faucet", "close the faucet", "rotate the faucet handle to close it", "turn the tap off",
         "please turn off the faucet", "can you close the faucet", "rotate the faucet handle closed",
         "turn the faucet handle to close", "close the tap", "could you turn off the faucet", "stop the water",
         "shut off the water", "faucet off please", "i need the water stopped", "twist the faucet shut"),
        ("hey robot, turn off the faucet", "let's close the tap", "turn the faucet off when you get a chance",
         "water off", "cut the water", "close off the faucet", "switch the tap off"),
        110,
    ),
)

TASK_SUITE: dict[str, TaskSpec] = {t.name: t for t in _SUITE}


def _shared(name: str, scene: str, max_steps: int) -> TaskSpec:
    base = TASK_SUITE[name]  # the same instruction tuples (by reference): the text alone names the task
    return TaskSpec(f"{name}-shared", base.env_name, base.train_instructions, base.heldout_instructions, max_steps,
                    shared_start=scene)


# Same-scene pairs from one shared start (drawer / window half open, faucet handle centred); see
# docs/shared_starts.md. Not in TASK_SUITE: "all" stays the ten original tasks. Comments: expert episode length
# with noise 0.1, mean / max over seeds 0..99 (all succeed). Both tasks of a pair get the same max_steps (about
# 1.5x the pair's longest expert episode): the limit must not differ with the instruction, and a policy that
# does the other task must have time to finish it for the instruction-swap evaluation to see it.
SHARED_TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        _shared("drawer-open", "drawer", 115),  # 57 / 76
        _shared("drawer-close", "drawer", 115),  # 23 / 25
        _shared("window-open", "window", 135),  # 79 / 88
        _shared("window-close", "window", 135),  # 70 / 81
        _shared("faucet-open", "faucet", 110),  # 62 / 72
        _shared("faucet-close", "faucet", 110),  # 67 / 71
    )
}
ALL_TASKS: dict[str, TaskSpec] = {**TASK_SUITE, **SHARED_TASKS}
# Named groups accepted wherever a task list is (--tasks all, --tasks shared, ...).
TASK_GROUPS: dict[str, tuple[str, ...]] = {
    "all": tuple(TASK_SUITE),
    "shared": tuple(SHARED_TASKS),
    "all+shared": tuple(ALL_TASKS),
}


# Named suites for --suite (commands that take --tasks): each is a task group. "default" is the ten-task suite.
SUITES: dict[str, str] = {"default": "all", "mt50": "mt50"}

# Seeds: demonstrations are collected from 0 up, evaluation episodes from here up (disjoint from them)
EVAL_SEED_OFFSET = 100_000
# What the simulator can do (Meta-World v3 through MuJoCo's renderer): its smallest image, its offscreen
# buffer (640x480), its episode limit (max_path_length), the proprioception it sends; the collector, the sim node
# and the adapter check these (here, not in metaworld_env: a launch file reading them must not load MuJoCo)
MIN_IMAGE_SIZE = 16
MAX_IMAGE_SIZE = 480
MAX_EPISODE_STEPS = 500
PROPRIO_DIM = 4  # hand x, y, z (m) + gripper opening (1 open .. 0 closed)
CAMERA_SLOTS = ("static", "wrist")  # the camera names every task has (MetaWorldAdapter's aliases)


def tasks_arg(suite: str | None, tasks: str | None, default: str = "all") -> str:
    """The task list a command runs, from its --suite and --tasks options (at most one of them given)."""
    if suite is not None and tasks is not None:
        raise ValueError(f"give --suite or --tasks, not both (got --suite {suite} --tasks {tasks})")
    if suite is not None:
        if suite not in SUITES:
            raise ValueError(f"unknown suite {suite!r}; known suites: {', '.join(SUITES)}")
        return SUITES[suite]
    return default if tasks is None else tasks


def task_names() -> list[str]:
    return list(TASK_SUITE)


def shared_partner(task: str | TaskSpec) -> TaskSpec:
    """The other task of ``task``'s shared-start pair (e.g. drawer-close-shared for drawer-open-shared)."""
    spec = get_task(task)
    others = [t for t in SHARED_TASKS.values() if t.shared_start == spec.shared_start and t.name != spec.name]
    if spec.shared_start is None or len(others) != 1:
        raise ValueError(f"task {spec.name} has no shared-start partner; shared tasks: {', '.join(SHARED_TASKS)}")
    return others[0]


def instruction_record_problems(trained: dict[str, list[str]], tasks: list[TaskSpec]) -> list[str]:
    """What a checkpoint's record of the instructions it was trained on (task -> wording) says is wrong with
    evaluating ``tasks`` as this suite defines them now: held-out wording it was trained on (held-out figures
    would measure trained wording), and a canonical instruction it never saw (canonical figures would measure
    unseen wording). Tasks the record does not name are not judged here; other training wording it never saw
    is ``untrained_suite_wordings``' (evaluation runs only the canonical and the held-out ones)."""
    problems = []
    for task in tasks:
        seen = set(trained.get(task.name, ()))
        if not seen:
            continue
        leaked = [t for t in task.heldout_instructions if t in seen]
        if leaked:
            problems.append(f"{task.name}: {len(leaked)} held-out instruction(s) were trained on, e.g. {leaked[0]!r}")
        if task.instruction not in seen:
            problems.append(f"{task.name}: its canonical instruction {task.instruction!r} was never trained on")
    return problems


def untrained_suite_wordings(trained: dict[str, list[str]], tasks: list[TaskSpec]) -> dict[str, list[str]]:
    """Task -> the suite's training wordings (other than the canonical one) a checkpoint's record never saw: the
    suite gained wording after it was trained (the shipped mt50 predates the ten tasks' last seven), or the run
    imported an older install. Tasks the record does not name are left out."""
    unseen = {}
    for task in tasks:
        seen = set(trained.get(task.name, ()))
        missing = [t for t in task.train_instructions if t not in seen and t != task.instruction]
        if seen and missing:
            unseen[task.name] = missing
    return unseen


class UnknownTaskError(KeyError):
    """A task name that is neither a task nor a group; its str() is the message (a KeyError's would be quoted)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def get_task(name: str | TaskSpec) -> TaskSpec:
    """The suite task called ``name`` (a TaskSpec passes through).

    Unknown names raise UnknownTaskError (a KeyError) listing the known ones.
    """
    if isinstance(name, TaskSpec):
        return name
    if not isinstance(name, str):
        raise TypeError(f"task must be a name or a TaskSpec, got {type(name).__name__}")
    key = name.strip()
    if key.endswith("-v3") and key[:-3] in ALL_TASKS:  # accept Meta-World's own env name too
        key = key[:-3]
    if key not in ALL_TASKS:
        raise UnknownTaskError(f"unknown task {name!r}; known tasks: {', '.join(ALL_TASKS)}; groups: "
                               f"{', '.join(TASK_GROUPS)}")
    return ALL_TASKS[key]


def expand_tasks(names: list[str]) -> list[TaskSpec]:
    """Task names and groups ('all', 'mt50-hard', ...) -> their tasks, in order, repeats kept (a sim cycling
    ['reach', 'reach', 'push'] runs reach twice as often)."""
    return [get_task(m) for n in names for m in TASK_GROUPS.get(n.strip(), (n,))]


def resolve_tasks(spec: str) -> list[TaskSpec]:
    """A comma-separated list of task names and groups ('all', 'shared', 'all+shared', 'mt50', 'mt50-easy',
    ...); order kept, duplicates dropped."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise ValueError(f"no task names in {spec!r}; use a group ({', '.join(TASK_GROUPS)}) or a comma list of: "
                         f"{', '.join(ALL_TASKS)}")
    return list(dict.fromkeys(expand_tasks(names)))


def _load_mt50() -> None:
    # The 50-task suite lives in its own module (it reuses this one's ten TaskSpecs). Importing it registers its
    # tasks and groups ("mt50", "mt50-easy", ...) in ALL_TASKS / TASK_GROUPS, whichever module is imported first.
    import deer_vla.sim.mt50  # noqa: F401


_load_mt50()
