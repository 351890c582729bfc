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
        if job == "sigint":
            import signal

            return [signal.getsignal(signal.SIGINT) == signal.SIG_IGN, os.getpid()]
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


def test_no_more_processes_start_than_there_are_jobs() -> None:
    """instruction-swap --workers 10**30 queued a stop marker per process asked for before starting one: it never
    ran a job, its memory growing; two jobs need two processes at most, each loading a model."""
    out = list(run_in_processes(partial(Scaler, 1), [1, 2], processes=10**30))
    assert sorted(r[0] for r in out) == [1, 2] and len({r[1] for r in out}) <= 2


def test_workers_leave_ctrl_c_to_the_parent() -> None:
    """Ctrl-C reaches the whole process group: each worker printed a KeyboardInterrupt traceback of its own."""
    assert [r[0] for r in run_in_processes(partial(Scaler, 1), ["sigint"], processes=1)] == [True]


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


def test_a_dead_worker_with_jobs_still_queued_ends_the_run_instead_of_hanging_at_exit() -> None:
    """A worker killed (e.g. by the OOM killer) while many jobs wait in the queue: the error is raised and the
    process exits. The parent's queue feeder still holds the jobs nobody will read; joining it at exit (the
    multiprocessing default) blocked forever once the pipe was full (an MT50 run hung so after an OOM kill)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import sys
        from functools import partial
        sys.path.insert(0, sys.argv[1])
        from test_eval_workers import Scaler
        from deer_vla.evaluation.workers import run_in_processes
        big = 10 ** 5000  # ~2 KB pickled: 300 of them overfill the 64 KB pipe
        try:
            list(run_in_processes(partial(Scaler, 1), ["die"] + [big] * 300, processes=1, poll_s=0.2))
        except RuntimeError as exc:
            print("raised:", exc)
    """)
    proc = subprocess.run([sys.executable, "-c", script, os.path.dirname(__file__)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "raised: an episode worker process ended before its jobs were done" in proc.stdout
