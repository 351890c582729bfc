"""Instruction-swap evaluation: the bookkeeping of own success vs swapped completion (headless MuJoCo)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

pytest.importorskip("deer_vla.sim.metaworld_env")

from deer_vla.evaluation import instruction_swap as swap


def _adapter(task: str):  # type: ignore[no-untyped-def]
    from deer_vla.sim.metaworld_env import MetaWorldAdapter

    return MetaWorldAdapter(task, cameras=(), track_partner=True)


def test_the_other_tasks_expert_counts_as_swapped_completion_not_success() -> None:
    with _adapter("drawer-open-shared") as adapter:
        wrong = swap.run_swap_episode(adapter, swap.ExpertActor("partner"), "expert-partner", 4, None)
        right = swap.run_swap_episode(adapter, swap.ExpertActor("own"), "expert-own", 4, None)
    # the drawer-close expert closes the drawer: the other task is done, this one is not
    assert wrong.swapped and not wrong.success and wrong.first_swap_step is not None
    assert wrong.task == "drawer-open-shared" and wrong.partner == "drawer-close-shared" and wrong.pair == "drawer"
    assert wrong.steps == adapter.max_steps  # it ran to the limit: own success never came
    assert right.success and not right.swapped and right.steps < adapter.max_steps


def test_summary_counts_per_pair_with_wilson_intervals() -> None:
    def ep(task: str, seed: int, success: bool, swapped: bool) -> swap.SwapEpisode:
        partner = task.replace("open", "close") if "open" in task else task.replace("close", "open")
        return swap.SwapEpisode("full", task, partner, "faucet", seed, "x", success, swapped, 10,
                                3 if swapped else None)

    eps = [ep("faucet-open-shared", 0, True, False), ep("faucet-close-shared", 0, True, False),
           ep("faucet-open-shared", 1, False, True), ep("faucet-close-shared", 1, True, False)]
    block = swap.summarize_swap(eps)["full"]["faucet"]
    assert block["own"]["episodes"] == 4 and block["own"]["successes"] == 3 and block["own"]["swapped"] == 1
    lo, hi = block["own"]["swapped_ci95"]
    assert 0 < lo < 0.25 < hi < 1
    assert block["tasks"]["faucet-open-shared"]["swapped_rate"] == 0.5
    assert block["both_own"] == {"seeds": 2, "both_succeeded": 1, "rate": 0.5, "ci95": block["both_own"]["ci95"]}


def test_cli_with_the_partner_expert_reports_every_episode_swapped(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    rc = swap.cli_main(["--expert", "partner", "--tasks", "faucet-open-shared,faucet-close-shared",
                        "--episodes-per-task", "1", "--out", str(tmp_path), "--no-progress"])
    assert rc == 0
    result = json.loads((tmp_path / "swap_results.json").read_text())
    block = result["summary"]["expert-partner"]["faucet"]
    assert block["own"]["success_rate"] == 0.0 and block["own"]["swapped_rate"] == 1.0
    assert {e["seed"] for e in result["episodes"]} == {result["seed_offset"]}  # one seed, both instructions
    assert "swapped completion" in capsys.readouterr().out


def test_cli_refuses_tasks_without_a_shared_start(capsys: pytest.CaptureFixture) -> None:
    assert swap.cli_main(["--expert", "own", "--tasks", "drawer-open"]) == 2
    assert "shared-start tasks only" in capsys.readouterr().err


def test_cli_refuses_budgets_without_demonstrations_to_solve_them_on(tiny_checkpoint, tmp_path, capsys) -> None:
    """They quietly became the checkpoint's own thresholds (one mode, whatever budget those were solved for)."""
    argv = ["--checkpoint", str(tiny_checkpoint), "--tasks", "faucet-open-shared,faucet-close-shared",
            "--budgets", "0.3", "--out", str(tmp_path / "out")]
    assert swap.cli_main(argv) == 2
    assert "--budgets needs --calibration-dataset" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_experts_unrendered_simulator_is_not_handed_to_the_policy() -> None:
    """Experts read the state (no cameras); the policy needs its cameras: one task, two simulators."""
    from types import SimpleNamespace

    from deer_vla.evaluation.instruction_swap import SwapWorker

    worker = SwapWorker(runner=SimpleNamespace(cameras=("static",)), image_size=32)
    try:
        expert_sim = worker.adapter("drawer-open-shared", False, 5)
        policy_sim = worker.adapter("drawer-open-shared", True, 5)
        assert policy_sim is not expert_sim
        assert tuple(expert_sim.cameras) == () and tuple(policy_sim.cameras) == ("static",)
        assert worker.adapter("drawer-open-shared", True, 5) is policy_sim
    finally:
        worker.close()


def test_cli_refuses_an_out_that_is_a_file_or_holds_earlier_results_before_any_episode(tmp_path, capsys) -> None:
    """An --out that is a file failed only after every episode had run; an earlier run's swap_results.json was
    replaced without a word (evaluate and train refuse an earlier run unless told)."""
    base = ["--expert", "partner", "--tasks", "faucet-open-shared,faucet-close-shared", "--episodes-per-task", "1"]
    a_file = tmp_path / "out.txt"
    a_file.write_text("mine")
    assert swap.cli_main([*base, "--out", str(a_file)]) == 2
    assert "not a directory" in capsys.readouterr().err and a_file.read_text() == "mine"
    earlier = tmp_path / "swap" / "swap_results.json"
    earlier.parent.mkdir()
    earlier.write_text("{}")
    assert swap.cli_main([*base, "--out", str(earlier.parent)]) == 2
    assert "--overwrite replaces them" in capsys.readouterr().err and earlier.read_text() == "{}"


def test_cli_runs_a_task_under_a_wording_of_ones_own(tmp_path: Path) -> None:
    """--wording TASK=TEXT: that task's episodes get TEXT (a typo, a user's phrasing), the pair's other task
    its own instruction, both recorded."""
    rc = swap.cli_main(["--expert", "own", "--tasks", "faucet-open-shared,faucet-close-shared",
                        "--episodes-per-task", "1", "--wording", "faucet-close-shared=tunr off the faucet",
                        "--out", str(tmp_path), "--no-progress"])
    assert rc == 0
    result = json.loads((tmp_path / "swap_results.json").read_text())
    used = {e["task"]: e["instruction"] for e in result["episodes"]}
    assert used["faucet-close-shared"] == "tunr off the faucet"
    assert used["faucet-open-shared"] != "tunr off the faucet"
    assert result["wordings"] == {"faucet-close-shared": "tunr off the faucet"}


@pytest.mark.parametrize(("wording", "said"), [
    ("faucet-close-shared", "--wording takes TASK=TEXT"),
    ("drawer-open-shared=open it", "not among the tasks run"),
    ("faucet-close-shared=  ", "is empty"),
    ("faucet-close-shared=don't turn on the faucet", "asks not to do something"),
    ("faucet-close-shared=the faucet is on, turn it off", "says a state ('on') beside a request"),
])
def test_cli_refuses_a_wording_it_cannot_run_before_any_episode(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                 wording: str, said: str) -> None:
    assert swap.cli_main(["--expert", "own", "--tasks", "faucet-open-shared,faucet-close-shared",
                          "--wording", wording, "--out", str(tmp_path), "--no-progress"]) == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "swap_results.json").exists()


def test_cli_refuses_two_wordings_for_one_task_and_more_workers_than_it_may_start(tmp_path: Path,
                                                                                 capsys: pytest.CaptureFixture) -> None:
    """`--wording T=A --wording T=B` ran B alone, without a word; `--workers 10**30` queued that many stop markers
    before starting a worker (memory growing, for ever)."""
    assert swap.cli_main(["--expert", "own", "--tasks", "faucet-open-shared,faucet-close-shared", "--wording",
                          "faucet-close-shared=turn off the tap", "--wording", "faucet-close-shared=shut the tap",
                          "--out", str(tmp_path), "--no-progress"]) == 2
    assert "--wording gives faucet-close-shared two wordings ('turn off the tap', 'shut the tap')" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_code:
        swap.cli_main(["--expert", "own", "--workers", str(10**30), "--out", str(tmp_path)])
    assert exit_code.value.code == 2 and "expected an integer in 1..256" in capsys.readouterr().err
    assert not (tmp_path / "swap_results.json").exists()


@pytest.mark.parametrize(("text", "said"), [
    ("the window is open, please cloes it", "the wording for window-close-shared says a state ('open') beside a "
                                            "request"),
    ("\u200b\u200b", "the wording for window-close-shared: instruction '\\u200b\\u200b' holds no text"),
])
def test_a_checkpoints_wording_is_judged_as_its_runner_reads_it_before_any_episode(
        tmp_path: Path, capsys: pytest.CaptureFixture, text: str, said: str) -> None:
    """With a checkpoint, a wording is refused as the runner will refuse it, before any episode: with its trained
    words' reading ("cloes" reads "close", so a state beside the opposite request), not only as sent, and a
    text with nothing left once cleaned (zero-width characters) too."""
    from deer_vla.model.shipped import resolve_checkpoint

    if not (resolve_checkpoint("default") / "config.json").is_file():
        pytest.skip("needs the shipped default checkpoint")
    wording = f"window-close-shared={text}"
    started = time.perf_counter()
    assert swap.cli_main(["--checkpoint", "default", "--tasks", "window-open-shared,window-close-shared",
                          "--exits", "1", "--episodes-per-task", "1", "--wording", wording, "--out", str(tmp_path),
                          "--no-progress"]) == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "swap_results.json").exists()
    assert time.perf_counter() - started < 60  # refused at load, not after episodes
