"""evaluation.workers: jobs run in spawn processes that each build their own worker (no module state)."""
from __future__ import annotations

import os
from functools import partial

import pytest

from deer_vla.evaluation.workers import run_in_processes, seed_major_jobs


class Scaler:
    """A worker whose jobs are numbers: it answers [job * factor, its pid], fails on 'bad', dies on 'die'."""

    def __init__(self, factor: int) -> None:
        if factor < 0:
            raise ValueError("factor must be >= 0")
        self.factor = factor

    def run_job(self, job: object) -> list[object]:
        if job == "bad":
            raise KeyError("no such job")
        if job == "die":
            os._exit(3)
        assert isinstance(job, int)
        return [job * self.factor, os.getpid()]

    def close(self) -> None:
        pass


def test_every_job_runs_once_in_the_worker_processes() -> None:
    out = list(run_in_processes(partial(Scaler, 10), list(range(6)), processes=2))
    assert sorted(r[0] for r in out) == [0, 10, 20, 30, 40, 50]
    assert os.getpid() not in {r[1] for r in out}


def test_a_failing_job_is_raised_with_its_message() -> None:
    with pytest.raises(RuntimeError, match=r"job 1 failed in a worker process: KeyError: 'no such job'"):
        list(run_in_processes(partial(Scaler, 1), [0, "bad", 2], processes=1))


def test_a_worker_that_cannot_start_is_reported() -> None:
    with pytest.raises(RuntimeError, match=r"starting the worker: ValueError: factor must be >= 0"):
        list(run_in_processes(partial(Scaler, -1), [0], processes=1))


def test_a_process_that_dies_mid_job_is_reported_instead_of_hanging() -> None:
    with pytest.raises(RuntimeError, match=r"ended before its jobs were done \(exit codes \[3\]\)"):
        list(run_in_processes(partial(Scaler, 1), ["die", 1], processes=1, poll_s=0.2))


def test_jobs_run_seed_by_seed_so_a_stopped_run_holds_whole_seeds_of_every_task_and_mode() -> None:
    """An MT50 run takes hours: stopped (or read while running) after its first 100 episodes of 2 modes x 50
    tasks, it must hold one whole seed of the suite, not every seed of its first ten tasks."""
    plans = [(mode, task, [(100 + i, None) for i in range(3)]) for task in ("t0", "t1") for mode in ("full", "exit1")]
    plans.append(("exit1", "t2", [(101, "resumed: seed 100 was done")]))
    jobs = seed_major_jobs(plans, 7)
    assert all(len(episodes) == 1 and limit == 7 for _, _, episodes, limit in jobs)
    order = [(mode, task, episodes[0][0]) for mode, task, episodes, _ in jobs]
    assert order[:4] == [("full", "t0", 100), ("exit1", "t0", 100), ("full", "t1", 100), ("exit1", "t1", 100)]
    assert order[4:9] == [("full", "t0", 101), ("exit1", "t0", 101), ("full", "t1", 101), ("exit1", "t1", 101),
                          ("exit1", "t2", 101)]
    assert len(order) == 13 and sorted(order) == sorted(set(order))  # every episode once
