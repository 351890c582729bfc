"""Episode workers: a policy and a simulator per task, reused over jobs, here or in worker processes.

A worker is an explicit object, not module state: ``EvalWorker`` runs the
evaluator's (mode, task, seeds) jobs; ``run_in_processes`` starts spawn
processes that each build their own worker from a picklable factory (for
example ``functools.partial(EvalWorker.from_spec, spec)``) and feed it jobs
from a queue, so a process loads its policy once and keeps its simulators.

A worker keeps at most ``max_simulators`` simulators (``sim.simulator_cache``).
"""
from __future__ import annotations

import queue
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from deer_vla.evaluation.rollout import EpisodeResult, ModeSpec, make_controller, run_episode
from deer_vla.sim.simulator_cache import SimulatorCache

if TYPE_CHECKING:
    from deer_vla.core import CostProfile
    from deer_vla.model.runner import PolicyRunner

# (mode, task, [(seed, instruction or None = the task's own)], step limit or None = the adapter's)
Job = tuple[ModeSpec, str, list[tuple[int, str | None]], int | None]
R = TypeVar("R")
DEFAULT_MAX_SIMULATORS = 16  # all of the ten-task suite with its shared-start tasks; of MT50's 50, a third


M = TypeVar("M")


def seed_major_jobs(plans: Iterable[tuple[M, str, list[tuple[int, str | None]]]], max_steps: int | None
                    ) -> list[tuple[M, str, list[tuple[int, str | None]], int | None]]:
    """One job per episode, ordered by seed: every task and mode at the first seed, then at the next. A run
    stopped or still running then holds whole seeds of the suite for every mode (eval-report --common compares
    the modes on a fair sample, not on the suite's first tasks), and workers share the load evenly. ``plans``:
    (mode, task, [(seed, instruction)]) in the order ties keep."""
    keyed = [(seed, n, (mode, task, [(seed, instruction)], max_steps))
             for n, (mode, task, episodes) in enumerate(plans) for seed, instruction in episodes]
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [job for _, _, job in keyed]


@dataclass(frozen=True)
class PolicySpec:
    """What a process needs to load the same policy as the main process (picklable)."""

    checkpoint: str
    device: str = "cpu"
    threads: int = 1  # torch threads of the process
    image_size: int | None = None  # rendered camera size; None = the model's own
    profile: dict[str, Any] | None = None  # CostProfile.to_dict(), so workers do not re-measure it

    def load(self) -> tuple[PolicyRunner, CostProfile]:
        import torch

        from deer_vla.core import CostProfile
        from deer_vla.model.runner import PolicyRunner

        torch.set_num_threads(self.threads)
        runner = PolicyRunner.from_checkpoint(self.checkpoint, device=self.device)
        profile = CostProfile.from_dict(self.profile) if self.profile is not None else runner.cost_profile
        return runner, profile

    def with_profile(self, profile: CostProfile) -> PolicySpec:
        return replace(self, profile=profile.to_dict())


def model_image_size(runner: Any) -> int | None:
    """The image size the model was trained on (the simulator renders at it), if the runner has a model."""
    cfg = getattr(getattr(runner, "model", None), "config", None)
    return int(cfg.image_size) if cfg is not None and getattr(cfg, "image_size", None) else None


def make_adapter(task: str, cameras: tuple[str, ...], image_size: int | None, max_steps: int | None,
                 **options: Any) -> Any:
    """A MetaWorldAdapter of ``task`` rendering ``cameras``; image size and step limit None keep the adapter's."""
    from deer_vla.sim.metaworld_env import MetaWorldAdapter

    kwargs: dict[str, Any] = {"cameras": cameras, **options}
    if cameras and image_size:
        kwargs["image_size"] = image_size
    if max_steps is not None:
        kwargs["max_steps"] = max_steps
    return MetaWorldAdapter(task, **kwargs)


class EvalWorker:
    """Runs evaluation jobs with one policy: a simulator per task (at most ``max_simulators``, the least
    recently used closed first). Nothing of one episode carries into the next (a tracking mode's tracker
    restarts per episode: ``make_controller``), so results do not depend on which worker ran what."""

    def __init__(self, runner: Any, profile: CostProfile, image_size: int | None = None,
                 max_simulators: int = DEFAULT_MAX_SIMULATORS) -> None:
        self.runner = runner
        self.profile = profile
        self.image_size = image_size or model_image_size(runner)
        self.simulators = SimulatorCache(max_simulators)

    @classmethod
    def from_spec(cls, spec: PolicySpec, max_simulators: int = DEFAULT_MAX_SIMULATORS) -> EvalWorker:
        runner, profile = spec.load()
        return cls(runner, profile, spec.image_size, max_simulators)

    def adapter(self, task: str, max_steps: int | None) -> Any:
        """The simulator of ``task``, made on first use (``max_steps`` applies when it is made)."""
        return self.simulators.get(task, lambda: self._make_adapter(task, max_steps))

    def _make_adapter(self, task: str, max_steps: int | None) -> Any:
        return make_adapter(task, tuple(self.runner.cameras), self.image_size, max_steps)

    def run_job(self, job: Job) -> list[EpisodeResult]:
        mode, task, plan, max_steps = job
        adapter = self.adapter(task, max_steps)
        controller = make_controller(self.runner, self.profile, mode)
        limit = max_steps or int(getattr(adapter, "max_steps", 500))
        return [run_episode(adapter, controller, mode.name, task, seed, instr, limit) for seed, instr in plan]

    def close(self) -> None:
        self.simulators.close()


class Worker(Protocol[R]):
    def run_job(self, job: Any) -> list[R]: ...

    def close(self) -> None: ...


def _serve(factory: Callable[[], Worker[Any]], jobs: Any, results: Any) -> None:
    """A worker process: build the worker, run jobs until the None sentinel, report each job's outcome."""
    import signal

    from deer_vla.core.parent_watch import exit_with_parent

    exit_with_parent()  # a killed evaluation must not leave its workers (and their simulators) behind
    # Ctrl-C reaches the whole process group: the parent alone answers it (its journal holds every finished
    # episode) and terminates the workers, instead of each printing a KeyboardInterrupt traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        worker = factory()
    except Exception as exc:
        results.put((None, None, f"starting the worker: {type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
        return
    try:
        for index, job in iter(jobs.get, None):
            try:
                results.put((index, worker.run_job(job), None))
            except Exception as exc:  # reported as text: not every exception pickles
                results.put((index, None, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    finally:
        worker.close()


class WorkerProcessError(RuntimeError):
    """A job failed in a worker process, or a worker process ended before its jobs were done."""


def _next_result(result_queue: Any, procs: list[Any], poll_s: float) -> tuple[int | None, Any, str | None]:
    while True:
        ended = any(p.exitcode not in (None, 0) for p in procs) or all(p.exitcode == 0 for p in procs)
        try:  # after a process ended, one last wait for what it flushed on exit
            return result_queue.get(timeout=poll_s)
        except queue.Empty:
            if ended:
                codes = [p.exitcode for p in procs]
                killed = " (-9: killed, e.g. by the kernel's out-of-memory killer)" if -9 in codes else ""
                raise WorkerProcessError(f"an episode worker process ended before its jobs were done "
                                         f"(exit codes {codes}){killed}") from None


def run_in_processes(factory: Callable[[], Worker[R]], jobs: Sequence[Any], processes: int,
                     poll_s: float = 1.0) -> Iterator[list[R]]:
    """Each job's results, in completion order, from ``processes`` spawn processes that each run
    ``factory()`` once. A job that raises, or a process that dies, raises WorkerProcessError here."""
    import multiprocessing as mp

    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    processes = min(processes, max(len(jobs), 1))  # a process per job at most: each loads a model
    ctx = mp.get_context("spawn")  # torch + MuJoCo GL contexts do not survive fork
    job_queue: Any = ctx.Queue()
    # Jobs still buffered when a worker dies are abandoned: by default the process would wait at exit for
    # the queue's feeder thread to push them into a pipe no one reads any more, and hang once it is full
    job_queue.cancel_join_thread()
    result_queue: Any = ctx.Queue()
    for item in enumerate(jobs):
        job_queue.put(item)
    for _ in range(processes):
        job_queue.put(None)
    procs = [ctx.Process(target=_serve, args=(factory, job_queue, result_queue), daemon=True)
             for _ in range(processes)]
    for p in procs:
        p.start()
    try:
        for _ in range(len(jobs)):
            index, out, error = _next_result(result_queue, procs, poll_s)
            if error is not None:
                what = "a worker process failed" if index is None else f"job {index} failed in a worker process"
                raise WorkerProcessError(f"{what}: {error}")
            yield out
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join(timeout=5.0)
