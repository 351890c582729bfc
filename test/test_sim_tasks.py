"""The task suite: metadata only (no simulator import)."""
from __future__ import annotations

import sys

import pytest

from deer_vla.sim.tasks import TASK_SUITE, TaskSpec, get_task, resolve_tasks


def test_suite_has_ten_tasks_with_disjoint_paraphrases() -> None:
    assert len(TASK_SUITE) >= 10
    all_train: set[str] = set()
    for name, spec in TASK_SUITE.items():
        assert spec.name == name and spec.env_name == f"{name}-v3"
        assert len(spec.train_instructions) >= 3 and len(spec.heldout_instructions) >= 1
        assert not set(spec.train_instructions) & set(spec.heldout_instructions)
        assert 1 <= spec.max_steps <= 150
        all_train |= set(spec.train_instructions) | set(spec.heldout_instructions)
    # No instruction is shared between tasks: the text identifies the task.
    assert len(all_train) == sum(len(s.train_instructions) + len(s.heldout_instructions) for s in TASK_SUITE.values())


def test_tasks_module_imports_no_simulator() -> None:
    import subprocess

    code = "import sys, deer_vla.sim.tasks; print('mujoco' in sys.modules, 'metaworld' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_unknown_task_lists_known_names() -> None:
    with pytest.raises(KeyError, match="unknown task 'pick-the-moon'.*drawer-open") as exc:
        get_task("pick-the-moon")
    # commands print it as f"deer-vla demo: {exc}": the message itself, not a KeyError's quoted repr of it
    assert str(exc.value).startswith("unknown task 'pick-the-moon'")
    assert get_task("drawer-open-v3") is TASK_SUITE["drawer-open"]
    spec = TASK_SUITE["drawer-open"]
    assert get_task(spec) is spec
    with pytest.raises(TypeError, match="name or a TaskSpec"):
        get_task(3)  # type: ignore[arg-type]


def test_resolve_tasks() -> None:
    assert [t.name for t in resolve_tasks("all")] == list(TASK_SUITE)
    assert [t.name for t in resolve_tasks(" drawer-open, faucet-close ,drawer-open")] == ["drawer-open", "faucet-close"]
    with pytest.raises(ValueError, match="no task names"):
        resolve_tasks(" , ")
    with pytest.raises(KeyError, match="known tasks"):
        resolve_tasks("drawer-open,nope")


def test_taskspec_validation() -> None:
    with pytest.raises(ValueError, match="both trained and held out"):
        TaskSpec("x", "x-v3", ("a",), ("a",))
    with pytest.raises(ValueError, match="at least one training instruction"):
        TaskSpec("x", "x-v3", (), ("a",))
    with pytest.raises(ValueError, match="max_steps"):
        TaskSpec("x", "x-v3", ("a",), (), max_steps=0)


def test_shared_tasks_are_named_groups_outside_all() -> None:
    from deer_vla.sim.tasks import SHARED_TASKS, shared_partner

    assert [t.name for t in resolve_tasks("all")] == list(TASK_SUITE)  # "all" stays the ten original tasks
    shared = [t.name for t in resolve_tasks("shared")]
    assert shared == list(SHARED_TASKS) and len(shared) == 6 and not set(shared) & set(TASK_SUITE)
    assert [t.name for t in resolve_tasks("all+shared")] == list(TASK_SUITE) + shared
    assert [t.name for t in resolve_tasks("shared,drawer-open")] == [*shared, "drawer-open"]
    for name in shared:
        spec, base = get_task(name), TASK_SUITE[name.removesuffix("-shared")]
        assert spec.env_name == base.env_name and spec.shared_start is not None
        # one instruction list per task: the shared task reads the original's tuples, so edits reach both
        assert spec.train_instructions is base.train_instructions
        assert spec.heldout_instructions is base.heldout_instructions
        partner = shared_partner(name)
        assert partner.shared_start == spec.shared_start and shared_partner(partner) is spec
        assert partner.max_steps == spec.max_steps  # the limit does not depend on the instruction
    with pytest.raises(ValueError, match="no shared-start partner"):
        shared_partner("drawer-open")


def test_an_instruction_record_is_judged_against_the_suite_as_it_is_now() -> None:
    from deer_vla.sim.tasks import get_task, instruction_record_problems, untrained_suite_wordings

    drawer, window = get_task("drawer-open"), get_task("window-open")
    clean = {drawer.name: list(drawer.train_instructions)}
    assert instruction_record_problems(clean, [drawer, window]) == []  # window: not in the record, not judged
    leaked = {drawer.name: [*drawer.train_instructions, drawer.heldout_instructions[2]]}
    (problem,) = instruction_record_problems(leaked, [drawer])
    assert "held-out" in problem and repr(drawer.heldout_instructions[2]) in problem
    # e.g. the shipped mt50 (trained before the ten tasks' last seven) or a run that imported a stale install:
    # wording evaluation never runs, so not a problem of the figures, but listed
    older = {drawer.name: list(drawer.train_instructions[:8])}
    assert instruction_record_problems(older, [drawer]) == []
    assert untrained_suite_wordings(older, [drawer, window]) == {drawer.name: list(drawer.train_instructions[8:])}
    assert untrained_suite_wordings(clean, [drawer, window]) == {}
    # the canonical instruction never trained: the canonical figures would measure unseen wording
    no_canonical = {drawer.name: list(drawer.train_instructions[1:])}
    (problem,) = instruction_record_problems(no_canonical, [drawer])
    assert "canonical" in problem and repr(drawer.instruction) in problem
    assert untrained_suite_wordings(no_canonical, [drawer]) == {}
