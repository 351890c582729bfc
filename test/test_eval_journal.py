"""An evaluation journal read back (eval-report, evaluate --resume): a record or header of the wrong shape is
refused naming the file, the line and the field, instead of a traceback or a summary built on it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from deer_vla.evaluation.journal import JOURNAL_NAME, JournalError
from deer_vla.evaluation.journal_report import cli_main, journal_report

HEADER = {"journal": 1, "fingerprint": {"seed_offset": 0}, "plan": {"modes": ["full", "exit1"], "tasks": ["reach-v3"],
                                                    "episodes_per_task": 2}}


def _episode(**changes: object) -> dict:
    return {"mode": "full", "task": "reach-v3", "seed": 0, "instruction": "reach", "success": True, "steps": 10,
            "llm_gflops": 5.0, "total_gflops": 6.0, "exit_counts": [0, 10], "model_ms": 3.0, **changes}


def _journal(out: Path, lines: list) -> Path:
    out.mkdir()
    (out / JOURNAL_NAME).write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return out / JOURNAL_NAME


def test_a_journal_reports_its_episodes_and_drops_only_a_torn_last_line(tmp_path):
    _journal(tmp_path / "ok", [HEADER, _episode(), _episode(mode="exit1", success=False), '{"mode": "fu'])
    report = journal_report(tmp_path / "ok")
    assert report["progress"] == {"full": [1, 2], "exit1": [1, 2]}
    assert report["summary"]["exit1"]["overall"]["episodes"] == 1


def test_a_journal_with_its_plan_and_no_episode_yet_says_so_instead_of_a_table_of_zeros(tmp_path, capsys):
    """A header planning modes and no finished episode printed each mode as 0.0% (0/0), read as measured."""
    _journal(tmp_path / "new", [HEADER])
    assert cli_main([str(tmp_path / "new")]) == 0
    out = capsys.readouterr().out
    assert "no finished episode" in out and "0/0" not in out and "%" not in out


def test_an_episode_journalled_twice_counts_once_as_its_latest_record(tmp_path):
    """A journal joined by hand (or a job re-run after a crash) may hold one episode twice: it is one episode,
    and the later record wins, as evaluate --resume keeps it."""
    _journal(tmp_path / "twice", [HEADER, _episode(success=False), _episode(mode="exit1"), _episode(success=True)])
    report = journal_report(tmp_path / "twice")
    assert report["progress"] == {"full": [1, 2], "exit1": [1, 2]}
    assert report["summary"]["full"]["overall"]["successes"] == 1


@pytest.mark.parametrize("lines, expected", [
    ([HEADER, _episode(), "[1, 2]", _episode(seed=1)], "line 3 is not an episode record: expected a JSON object"),
    ([HEADER, _episode(success="yes")], "line 2 is not an episode record: success='yes' is not true or false"),
    ([HEADER, _episode(steps=-1)], "line 2 is not an episode record: steps=-1 is not an integer >= 0"),
    ([HEADER, _episode(llm_gflops="5")], "line 2 is not an episode record: llm_gflops='5' is not a finite number"),
    ([HEADER, _episode(mode=3)], "line 2 is not an episode record: mode=3 is not a mode name"),
    # complete JSON on the last line is a record, not a torn write: it was dropped silently before
    ([HEADER, _episode(), {**_episode(seed=1), "bogus": 1}], "line 3 is not an episode record: unknown key 'bogus'"),
    ([{**HEADER, "plan": ["full"]}, _episode()], "line 1: the header's plan is not an object"),
    ([{**HEADER, "plan": {**HEADER["plan"], "modes": "full"}}, _episode()],
     "line 1: the header's plan's modes is not a list of names: 'full'"),  # reported modes f, u, l, l before
    ([{**HEADER, "plan": {**HEADER["plan"], "tasks": 5}}, _episode()],
     "line 1: the header's plan's tasks is not a list"),
    ([{**HEADER, "plan": {**HEADER["plan"], "mode_digests": ["f0"]}}, _episode()],
     "line 1: the header's plan's mode_digests is not an object of digests"),
    # a plan of 10^12 seeds per task was expanded into a set until memory ran out (7 GB in 30 s)
    ([{**HEADER, "plan": {**HEADER["plan"], "episodes_per_task": 10**12}}, _episode()],
     "line 1: the header's plan's episodes_per_task is not an integer in 1..100000"),
    # valid JSON Python will not read (over its 4300-digit integer limit), and a float no number holds
    ([HEADER, json.dumps(_episode(seed=12345)).replace("12345", "9" * 5000), _episode(seed=1)],
     "line 2 is not an episode record: not JSON (Exceeds"),
    ([HEADER, _episode(llm_gflops=10**400)], "line 2 is not an episode record: llm_gflops="),
    # a damaged record the report read as measured: one exit's count (the full model's average exit 1.00), steps
    # of 10**30 (0 GFLOPs per step, exit 1 "3e27x" the full model's cost), steps past the run's limit
    ([HEADER, _episode(), _episode(mode="exit1", exit_counts=[10])],
     "line 3: exit_counts for 1 exits, where line 2 has 2"),
    ([HEADER, _episode(steps=10**30)], "line 2 is not an episode record: exit_counts [0, 10] add up to 10, not the "
                                       "1000000000000000000000000000000 steps"),
    ([{**HEADER, "fingerprint": {"seed_offset": 0, "max_steps": 5}}, _episode()],
     "line 2: 10 steps, past the run's max_steps 5"),
])
def test_a_record_or_header_of_the_wrong_shape_is_refused_naming_line_and_field(tmp_path, capsys, lines,
                                                                                expected):
    path = _journal(tmp_path / "eval", lines)
    assert cli_main([str(tmp_path / "eval")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"deer-vla eval-report: {path} {expected}") and "\n" not in err, err


def test_a_report_that_cannot_be_written_is_one_line(tmp_path, capsys):
    _journal(tmp_path / "eval", [HEADER, _episode()])
    (tmp_path / "file").write_text("")
    assert cli_main([str(tmp_path / "eval"), "--json", str(tmp_path / "file" / "report.json")]) == 1
    said = capsys.readouterr()
    assert said.err.strip() == (f"deer-vla eval-report: --json {tmp_path / 'file' / 'report.json'}: cannot write to "
                                f"{tmp_path / 'file'}: not a directory")
    assert said.out == ""  # said before the report, not after it


def test_runs_of_one_checkpoint_pool_and_runs_of_another_are_refused(tmp_path, capsys):
    """A second run with more seeds (evaluate --seed-offset) pools with the first: each mode's episodes from
    both, each (mode, task, seed) once, planned counts added; a run of other weights is refused."""
    first = {**HEADER, "fingerprint": {"weights_sha256": "a", "max_steps": None, "image_size": 64, "seed_offset": 0}}
    more = {"journal": 1, "fingerprint": {**first["fingerprint"], "modes_sha256": "other", "seed_offset": 2},
            "plan": {"modes": ["exit1"], "tasks": ["reach-v3"], "episodes_per_task": 2}}
    _journal(tmp_path / "a", [first, _episode(), _episode(mode="exit1", success=False)])
    _journal(tmp_path / "b", [more, _episode(mode="exit1", seed=1), _episode(mode="exit1", seed=2),
                              _episode(mode="exit1", success=False)])  # seed 0 again: counted once
    report = journal_report([tmp_path / "a", tmp_path / "b"])
    assert report["progress"] == {"full": [1, 2], "exit1": [3, 4]}
    assert report["summary"]["exit1"]["overall"]["successes"] == 2
    assert journal_report([tmp_path / "a", tmp_path / "b"], common=True)["progress"]["exit1"] == [1, 4]
    assert cli_main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert "exit1: 3 of 4 episodes" in capsys.readouterr().out
    # a third run replaying the first's seeds (evaluate always plays the full model): planned once, not twice
    again = {**more, "fingerprint": {**first["fingerprint"], "seed_offset": 0},
             "plan": {"modes": ["full", "exit1"], "tasks": ["reach-v3"], "episodes_per_task": 2}}
    _journal(tmp_path / "again", [again, _episode(), _episode(seed=1)])
    assert journal_report([tmp_path / "a", tmp_path / "b", tmp_path / "again"])["progress"] == \
        {"full": [2, 2], "exit1": [3, 4]}
    other = {**more, "fingerprint": {**more["fingerprint"], "weights_sha256": "b"}}
    _journal(tmp_path / "c", [other, _episode(mode="exit1", seed=5)])
    assert cli_main([str(tmp_path / "a"), str(tmp_path / "c")]) == 2
    assert "their weights_sha256 differ" in capsys.readouterr().err


def test_a_mode_name_two_runs_define_differently_is_not_pooled(tmp_path, capsys):
    """"dyn0.2" solved on other demonstrations (or run with other thresholds) is another policy: pooling its
    episodes under one name would report a success rate no single mode has."""
    fingerprint = {"weights_sha256": "a", "max_steps": None, "image_size": 64, "seed_offset": 0}
    plan = {"modes": ["full", "dyn0.2"], "tasks": ["reach-v3"], "episodes_per_task": 1,
            "mode_digests": {"full": "f0", "dyn0.2": "d1"}}
    _journal(tmp_path / "a", [{"journal": 1, "fingerprint": fingerprint, "plan": plan}, _episode(mode="dyn0.2")])
    same = {**plan, "mode_digests": {"full": "f0", "dyn0.2": "d1"}}
    _journal(tmp_path / "b", [{"journal": 1, "fingerprint": {**fingerprint, "seed_offset": 1}, "plan": same},
                              _episode(mode="dyn0.2", seed=1)])
    assert journal_report([tmp_path / "a", tmp_path / "b"])["progress"]["dyn0.2"] == [2, 2]
    other = {**plan, "mode_digests": {"full": "f0", "dyn0.2": "d2"}}
    _journal(tmp_path / "c", [{"journal": 1, "fingerprint": fingerprint, "plan": other},
                              _episode(mode="dyn0.2", seed=1)])
    assert cli_main([str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert f"cannot pool {tmp_path / 'c'} with {tmp_path / 'a'}: their mode 'dyn0.2' is not the same mode" in err


def test_a_new_mode_option_at_its_default_keeps_the_digests_of_journals_written_before_it():
    """Digests and fingerprints of existing modes stay as journals recorded them, and an option added to ModeSpec
    later changes them only for a mode that sets it: old runs stay resumable and poolable."""
    import dataclasses

    from deer_vla.evaluation.journal import mode_digests, run_fingerprint
    from deer_vla.evaluation.rollout import ModeSpec

    modes = [ModeSpec("full", "fixed", exit=4),
             ModeSpec("dyn0.2", "dynamic", thresholds={"values": [0.1, 0.2, 0.0]}, budget_fraction=0.2,
                      track_budget=True),
             ModeSpec("oracle0.02", "oracle", oracle_tolerance=0.02)]
    # the digests of journals written since 2026-12-02; a tracking mode's changed on 2026-12-05, on purpose, when
    # its tracker began to restart per episode (dyn0.2 was 6284483fe957e006, the fingerprint 45a5be0d...)
    recorded = {"full": "6548102c20361473", "dyn0.2": "6b690dae28ad5a21", "oracle0.02": "670c7de9db44166e"}
    assert mode_digests(modes) == recorded
    fingerprint = run_fingerprint("w", modes, 100000, None, 64)
    assert fingerprint["modes_sha256"] == "4cff9996935a246c89dca8fd963113291469826259c42c45bac23349946c2bd0"

    @dataclasses.dataclass(frozen=True)
    class WithHold(ModeSpec):  # a ModeSpec that gained an option
        hold_steps: int = 1

    same = [WithHold(**dataclasses.asdict(m)) for m in modes]
    assert mode_digests(same) == recorded
    assert run_fingerprint("w", same, 100000, None, 64) == fingerprint
    held = WithHold(**{**dataclasses.asdict(modes[1]), "hold_steps": 3})
    assert mode_digests([held])["dyn0.2"] != recorded["dyn0.2"]
    assert run_fingerprint("w", [modes[0], held, modes[2]], 100000, None, 64) != fingerprint


def test_modes_are_paired_on_the_same_episodes_with_an_exact_mcnemar_test(tmp_path):
    """eval-report (and evaluate) pair each mode with the full model on the same task, seed and instruction:
    only discordant pairs count, and an episode the full model did not play is not paired."""
    from deer_vla.evaluation.stats import mcnemar_exact

    records = [{**HEADER, "plan": {**HEADER["plan"], "episodes_per_task": 10}}]
    for seed in range(10):  # full solves seeds 0-7, exit1 solves 0-1 and 8: 6 only full, 1 only exit1
        records += [_episode(seed=seed, success=seed < 8),
                    _episode(mode="exit1", seed=seed, success=seed < 2 or seed == 8)]
    records.append(_episode(mode="exit1", seed=99, success=True))  # no full episode to pair with
    _journal(tmp_path / "eval", records)
    row = journal_report(tmp_path / "eval")["paired"]["exit1"]
    assert (row["pairs"], row["successes"], row["reference_successes"]) == (10, 3, 8)
    assert (row["only_reference"], row["only_mode"]) == (6, 1)
    assert row["p_mcnemar"] == pytest.approx(2 * 8 / 128)  # P(X <= 1), X ~ Binomial(7, 1/2), two-sided
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(600, 400) < 1e-9  # exact integers: thousands of pairs do not overflow


def test_depth_weights_are_the_add_one_odds_that_depth_decides_a_tasks_episodes(tmp_path, capsys):
    """--depth-weights: per task, (only full + 1) / (only the shallow mode + 1) on the episodes both played, the
    file train-gate --task-weights reads; without the two modes it says which are missing."""
    header = {**HEADER, "plan": {**HEADER["plan"], "modes": ["full", "exit1"], "tasks": ["reach-v3", "push-v3"],
                                 "episodes_per_task": 8}}
    records = [header]
    for seed in range(8):  # reach: full solves all, exit1 seeds 0-4 (3 only full); push: both solve the same 4
        records += [_episode(seed=seed), _episode(mode="exit1", seed=seed, success=seed < 5),
                    _episode(task="push-v3", seed=seed, success=seed % 2 == 0),
                    _episode(mode="exit1", task="push-v3", seed=seed, success=seed % 2 == 0)]
    records.append(_episode(mode="exit1", task="pick-v3", seed=0))  # no full episode: no weight
    _journal(tmp_path / "eval", records)
    out = tmp_path / "weights.json"
    assert cli_main([str(tmp_path / "eval"), "--depth-weights", str(out)]) == 0
    assert json.loads(out.read_text()) == {"push-v3": 1.0, "reach-v3": 4.0}
    assert "depth weight reach-v3: 4 (only full 3, only exit1 0, of 8)" in capsys.readouterr().out
    assert cli_main([str(tmp_path / "eval"), "--depth-weights", str(out), "--shallow", "exit2"]) == 2
    assert "needs the modes 'full' and 'exit2'" in capsys.readouterr().err


def test_modes_pair_with_a_chosen_mode_and_an_unknown_one_is_refused(tmp_path, capsys):
    """--pair-with exit1: a dynamic mode set beside the static exit of its cost, episode by episode."""
    header = {**HEADER, "plan": {**HEADER["plan"], "modes": ["full", "exit1", "dyn0.2"], "episodes_per_task": 6}}
    records = [header]
    for seed in range(6):  # exit1 solves seeds 0-1, dyn0.2 seeds 0-4: 3 only dyn0.2
        records += [_episode(seed=seed), _episode(mode="exit1", seed=seed, success=seed < 2),
                    _episode(mode="dyn0.2", seed=seed, success=seed < 5)]
    _journal(tmp_path / "eval", records)
    paired = journal_report(tmp_path / "eval", pair_with="exit1")["paired"]
    assert set(paired) == {"full", "dyn0.2"} and paired["dyn0.2"]["reference"] == "exit1"
    assert (paired["dyn0.2"]["only_reference"], paired["dyn0.2"]["only_mode"]) == (0, 3)
    assert cli_main([str(tmp_path / "eval"), "--pair-with", "exit1"]) == 0
    assert "exit1" in capsys.readouterr().out
    assert cli_main([str(tmp_path / "eval"), "--pair-with", "exit7"]) == 2
    assert "'exit7' is not a mode of these runs" in capsys.readouterr().err


def test_pair_with_names_the_reference_of_held_out_modes_too(tmp_path, capsys):
    """A held-out-only run (`--instructions heldout`) names its modes 'exit1 [heldout]': --pair-with exit1 (or the
    full name) pairs each held-out mode with exit1's held-out run, as the default pairs them with full's."""
    h = " [heldout]"
    header = {**HEADER, "plan": {**HEADER["plan"], "modes": ["full" + h, "exit1" + h, "dyn0.2" + h],
                                 "episodes_per_task": 4}}
    records = [header]
    for seed in range(4):  # exit1 solves seed 0, dyn0.2 seeds 0-2
        records += [_episode(mode="full" + h, seed=seed), _episode(mode="exit1" + h, seed=seed, success=seed < 1),
                    _episode(mode="dyn0.2" + h, seed=seed, success=seed < 3)]
    _journal(tmp_path / "eval", records)
    for name in ("exit1", "exit1" + h):
        paired = journal_report(tmp_path / "eval", pair_with=name)["paired"]
        assert paired["dyn0.2" + h]["reference"] == "exit1" + h and paired["dyn0.2" + h]["only_mode"] == 2
        assert cli_main([str(tmp_path / "eval"), "--pair-with", name]) == 0
        capsys.readouterr()
    assert cli_main([str(tmp_path / "eval"), "--pair-with", "exit7"]) == 2


def test_a_seed_range_reports_only_those_seeds_played_and_planned(tmp_path, capsys):
    """A run stopped mid-way holds whole seeds and a part of the next: --seeds reports the whole ones alone."""
    header = {**HEADER, "plan": {**HEADER["plan"], "episodes_per_task": 4}}
    _journal(tmp_path / "eval", [header, *(_episode(seed=s, success=s % 2 == 0) for s in range(3)),
                                 *(_episode(mode="exit1", seed=s) for s in range(2))])
    report = journal_report(tmp_path / "eval", seeds=(0, 1))
    assert report["progress"] == {"full": [2, 2], "exit1": [2, 2]}
    assert report["summary"]["full"]["overall"]["successes"] == 1
    assert cli_main([str(tmp_path / "eval"), "--seeds", "2"]) == 0
    assert "full: 1 of 1 episodes" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli_main([str(tmp_path / "eval"), "--seeds", "5-1"])
    assert "first seed 5 is after last seed 1" in capsys.readouterr().err


def test_a_held_out_mode_keeps_its_name_in_the_printed_tables(tmp_path, capsys):
    """Rich read the "[heldout]" of "full [heldout]" as a style tag and printed "full" twice."""
    header = {**HEADER, "plan": {**HEADER["plan"], "modes": ["full", "full [heldout]"]}}
    _journal(tmp_path / "eval", [header, _episode(), _episode(mode="full [heldout]", instruction="reach it")])
    assert cli_main([str(tmp_path / "eval")]) == 0
    out = capsys.readouterr().out
    assert out.count("full [heldout]") >= 2  # the summary row and its progress line
    assert "│ full [heldout]" in out


def test_runs_of_another_checkpoint_or_mode_definition_are_set_side_by_side_under_a_label(tmp_path, capsys):
    """Two checkpoints (or two gate sets' same-named modes) on the same seeds: labelled, each run's modes keep
    their own episodes ('s6:full') and pair episode by episode with the other run's; unlabelled, still refused."""
    def header(weights: str, digest: str) -> dict:
        return {"journal": 1, "fingerprint": {"weights_sha256": weights, "max_steps": None, "image_size": 64,
                                              "seed_offset": 0},
                "plan": {"modes": ["full", "full [heldout]"], "tasks": ["reach-v3"], "episodes_per_task": 4,
                         "mode_digests": {"full": digest, "full [heldout]": digest}}}

    new = [header("b", "f0")] + [_episode(seed=s, success=s < 3) for s in range(4)] + \
        [_episode(mode="full [heldout]", seed=s, success=s < 2) for s in range(4)]
    old = [header("a", "f9")] + [_episode(seed=s, success=s == 0) for s in range(4)] + \
        [_episode(mode="full [heldout]", seed=s, success=s == 3) for s in range(4)]
    _journal(tmp_path / "new", new)
    _journal(tmp_path / "old", old)
    runs = [tmp_path / "new", tmp_path / "old"]
    assert cli_main([str(d) for d in runs]) == 2
    assert f"--label {tmp_path / 'old'}=NAME" in capsys.readouterr().err
    report = journal_report(runs, labels={tmp_path / "old": "s6"}, pair_with="s6:full")
    assert report["progress"] == {"full": [4, 4], "full [heldout]": [4, 4], "s6:full": [4, 4],
                                  "s6:full [heldout]": [4, 4]}
    assert report["summary"]["s6:full"]["overall"]["successes"] == 1  # the old run's, not pooled with the new
    paired = report["paired"]
    assert (paired["full"]["reference"], paired["full"]["only_mode"], paired["full"]["only_reference"]) == \
        ("s6:full", 2, 0)
    assert (paired["full [heldout]"]["reference"], paired["full [heldout]"]["only_mode"],
            paired["full [heldout]"]["only_reference"]) == ("s6:full [heldout]", 2, 1)
    assert cli_main([str(d) for d in runs] + ["--label", f"{tmp_path / 'old'}=s6", "--pair-with", "s6:full"]) == 0
    assert "s6:full [heldout]" in capsys.readouterr().out
    # the same weights, a mode defined otherwise (another gate set's thresholds): a label sets it apart too
    _journal(tmp_path / "gates2", [header("b", "f1")] + [_episode(seed=s) for s in range(4)])
    assert cli_main([str(tmp_path / "new"), str(tmp_path / "gates2")]) == 2
    assert "is not the same mode" in capsys.readouterr().err
    assert journal_report([tmp_path / "new", tmp_path / "gates2"], labels={tmp_path / "gates2": "g2"}
                          )["summary"]["g2:full"]["overall"]["successes"] == 4
    # two unlabelled runs of two other checkpoints would still share names: refused, whatever is labelled
    _journal(tmp_path / "third", [header("c", "f0")] + [_episode(seed=s) for s in range(4)])
    with pytest.raises(JournalError, match="weights_sha256 differ"):
        journal_report([tmp_path / "old", tmp_path / "new", tmp_path / "third"], labels={tmp_path / "old": "s6"})
    for bad, expected in ((f"{tmp_path / 'elsewhere'}=x", "is not one of the runs reported"),
                          (f"{tmp_path / 'old'}=a b", "letters, digits")):
        assert cli_main([str(d) for d in runs] + ["--label", bad]) == 2
        assert expected in capsys.readouterr().err


def test_pooled_canonical_and_held_out_runs_give_the_held_out_ratio_on_the_seeds_both_played(tmp_path, capsys):
    """A canonical run over seeds 0-3 pooled with a held-out run of the same mode over seeds 0-1: the held-out /
    canonical ratio (the language issue's target) counts only seeds 0-1, which both played."""
    h = " [heldout]"
    canon = {**HEADER, "plan": {**HEADER["plan"], "modes": ["dyn0.2"], "episodes_per_task": 4}}
    held = {**HEADER, "plan": {**HEADER["plan"], "modes": ["dyn0.2" + h], "episodes_per_task": 2}}
    # canonical solves seeds 0, 1 and 3 (3 of 4, but 2 of the 2 shared); held-out solves seed 0 only
    _journal(tmp_path / "canon", [canon, *(_episode(mode="dyn0.2", seed=s, success=s != 2) for s in range(4))])
    _journal(tmp_path / "held", [held, *(_episode(mode="dyn0.2" + h, seed=s, success=s == 0, instruction="go reach")
                                         for s in range(2))])
    report = journal_report([tmp_path / "canon", tmp_path / "held"])
    row = report["generalisation"]["dyn0.2"]["overall"]
    assert (row["canonical"], row["heldout"], row["ratio"]) == ([2, 2], [1, 2], 0.5)
    assert report["summary"]["dyn0.2"]["overall"]["successes"] == 3  # the summary keeps every canonical episode
    assert cli_main([str(tmp_path / "canon"), str(tmp_path / "held")]) == 0
    assert "dyn0.2: canonical vs held-out instructions (same seeds)" in capsys.readouterr().out
    assert journal_report(tmp_path / "canon")["generalisation"] == {}  # one way only: no ratio


def test_per_task_prints_each_modes_successes_task_by_task(tmp_path, capsys):
    """--per-task: a row per task, a column per mode, "-" where a mode did not play the task."""
    header = {**HEADER, "plan": {**HEADER["plan"], "tasks": ["reach-v3", "push-v3"]}}
    _journal(tmp_path / "eval", [header, _episode(), _episode(seed=1, success=False),
                                 _episode(mode="exit1", seed=0, success=False), _episode(task="push-v3")])
    assert cli_main([str(tmp_path / "eval"), "--per-task"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[1]: line.split()[3::2] for line in out.splitlines()
            if line.startswith("│ ") and line.split()[1] in ("reach-v3", "push-v3", "all")}
    assert rows == {"push-v3": ["1/1", "-"], "reach-v3": ["1/2", "0/1"], "all": ["2/3", "0/1"]}
    assert cli_main([str(tmp_path / "eval")]) == 0
    assert "successes per task" not in capsys.readouterr().out


def test_a_resume_whose_rewrite_fails_keeps_every_episode_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    """--resume rewrites the journal to drop a torn tail; a disk that fills during that write left a stray
    .jsonl.tmp beside it. The journal stays whole (old or new, never half) and nothing else is left."""
    import os

    from deer_vla.evaluation.journal import EpisodeJournal

    fingerprint = {"seed_offset": 0}
    path = _journal(tmp_path / "eval", [HEADER, _episode(), _episode(seed=1), '{"mode": "fu'])
    before = path.read_bytes()

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        EpisodeJournal(tmp_path / "eval", fingerprint, HEADER["plan"]).start(resume=True)
    assert path.read_bytes() == before and sorted(p.name for p in path.parent.iterdir()) == [JOURNAL_NAME]
    monkeypatch.undo()
    done = EpisodeJournal(tmp_path / "eval", fingerprint, HEADER["plan"]).start(resume=True)
    assert len(done) == 2 and path.read_text().count("\n") == 3  # header + two episodes, the torn tail gone


def test_a_journal_resumed_with_fewer_seeds_reports_only_its_plan(tmp_path):
    """A finished run resumed with fewer --episodes-per-task keeps the earlier episodes in its journal;
    eval-report counted them all ("full: 3 of 2 episodes") where results.json has the plan's."""
    _journal(tmp_path / "ok", [HEADER, *(_episode(seed=s) for s in (0, 1, 2)), _episode(mode="exit1", seed=2)])
    report = journal_report(tmp_path / "ok")
    assert report["progress"] == {"full": [2, 2], "exit1": [0, 2]}
    assert report["summary"]["full"]["overall"]["episodes"] == 2


def test_records_of_a_mode_no_plan_names_are_dropped_and_said(tmp_path, caplog):
    """A record of mode 'zzz' in a journal whose plan names full and exit1 was reported as played ("zzz: 1 of 0
    episodes", in the summary and the pairing tables); it is dropped, with a warning naming it."""
    _journal(tmp_path / "run", [HEADER, _episode(), _episode(mode="exit1"), _episode(mode="zzz")])
    with caplog.at_level("WARNING"):
        report = journal_report(tmp_path / "run")
    assert report["progress"] == {"full": [1, 2], "exit1": [1, 2]} and "zzz" not in report["summary"]
    assert all(e["mode"] != "zzz" for e in report["episodes"])
    assert "dropping the records of mode(s) zzz: no plan of" in caplog.text
    older = {**HEADER, "plan": {"tasks": ["reach-v3"], "episodes_per_task": 2}}  # a plan naming no modes
    _journal(tmp_path / "older", [older, _episode(), _episode(mode="zzz")])
    assert journal_report(tmp_path / "older")["progress"]["zzz"] == [1, None]


def test_the_reports_files_keep_their_last_whole_version_on_a_full_disk(tmp_path, monkeypatch, capsys):
    """--json and --depth-weights were written in place: a full disk left an empty or half file where the last
    report was."""
    import errno
    import os

    _journal(tmp_path / "run", [HEADER, _episode(), _episode(mode="exit1", success=False)])
    report, weights = tmp_path / "report.json", tmp_path / "weights.json"
    report.write_text("last report")
    weights.write_text("last weights")

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    assert cli_main([str(tmp_path / "run"), "--json", str(report)]) == 1
    assert f"cannot write --json {report}" in capsys.readouterr().err and report.read_text() == "last report"
    assert cli_main([str(tmp_path / "run"), "--depth-weights", str(weights), "--shallow", "exit1"]) == 1
    assert weights.read_text() == "last weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "run", "weights.json"]


@pytest.mark.parametrize(("extra", "said"), [
    (["--label", "{run}=a", "--label", "{run}=b"], "--label gives {run} two names"),  # the last one won
    (["--shallow", "exit2"], "--shallow is the mode --depth-weights sets"),  # ignored
    (["--depth-weights", "{tmp}/w.json", "--shallow", "full"], "--shallow full sets the full model against itself"),
    (["--json", "{tmp}/w.json", "--depth-weights", "{tmp}/w.json"], "--json and --depth-weights name one file"),
])
def test_report_options_that_would_be_dropped_or_clash_are_refused_before_anything_is_written(
        tmp_path, capsys, extra, said):
    run = tmp_path / "run"
    _journal(run, [HEADER, _episode(), _episode(mode="exit1", success=False)])
    with pytest.raises(SystemExit) as exit_code:
        cli_main([str(run), *(e.format(run=run, tmp=tmp_path) for e in extra)])
    assert exit_code.value.code == 2 and said.format(run=run) in capsys.readouterr().err
    assert not (tmp_path / "w.json").exists()


def test_a_report_file_in_a_folder_not_made_yet_is_written_there(tmp_path, capsys):
    """`--json new/dir/report.json` printed the whole report, then "No such file or directory" and status 1."""
    run = tmp_path / "run"
    _journal(run, [HEADER, _episode(), _episode(mode="exit1", success=False)])
    assert cli_main([str(run), "--json", str(tmp_path / "new" / "dir" / "report.json")]) == 0
    assert json.loads((tmp_path / "new" / "dir" / "report.json").read_text())["progress"]["full"] == [1, 2]
