"""Replay a recorded MCAP of the policy node's inputs through the policy offline.

    deer-vla replay RUN/policy_io.mcap --checkpoint DIR [--peak-gflops 3 ...]

A recording split into parts (policy_io_1.mcap, ...: record_split_mib /
record_split_s) is replayed whole from its first file, its folder or a glob.

Re-runs every recorded step (same images, instruction, proprioception,
episode boundaries) under the given checkpoint and budget and compares the
exit decisions and actions with the recorded ones: same checkpoint and
budget reproduce them; another budget shows what it would have changed.
Given no budget, each step runs under the one it was recorded under (changes
made while running included); given no thresholds, under the file the
recording names.
The recording names the checkpoint that made it (``recorded_policy``): a
replay under other weights says it compares two models.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deer_vla.core import StepRecord
from deer_vla.core.atomic_file import atomic_write_text
from deer_vla.core.config_io import thread_count
from deer_vla.core.writable import clobbers_input, path_argument, unwritable_dir
from deer_vla.data.mcap_io import truncation_warnings_to_stderr
from deer_vla.data.mcap_parts import log_parts
from deer_vla.data.recording import RECORD, RecordedStep, check_cameras, read_recording, recorded_policy
from deer_vla.model.checkpoint_dir import CheckpointDir
from deer_vla.model.device import device_arg
from deer_vla.model.shipped import checkpoint_argument, checkpoint_help
from deer_vla.ros.policy_backend import ConfigurationError, PolicyStack, load_stack, make_budget


@dataclass
class ReplayReport:
    steps: int
    same_exit_fraction: float
    recorded_mean_exit: float
    replayed_mean_exit: float
    recorded_mean_gflops: float
    replayed_mean_gflops: float
    max_action_diff: float  # over the 7-D standard layout
    mean_action_diff: float
    recorded_exits: list[int] = field(default_factory=list)
    replayed_exits: list[int] = field(default_factory=list)
    recorded_checkpoint: str | None = None  # what the recording says made it (None: a recording without it)
    same_weights: bool | None = None  # replayed under the weights it was recorded with (None: unknown)
    thresholds: str | None = None  # the thresholds file replayed with
    # recorded budgets applied from the step they came in at (no budget given to replay): how many distinct
    recorded_budgets: int = 0


def recorded_budget(record: StepRecord) -> dict[str, Any]:
    """The budget a step was taken under, as the policy node's step record holds it."""
    return {"average_gflops": record.budget_average_gflops, "peak_gflops": record.budget_peak_gflops,
            "peak_ms": record.budget_peak_ms, "memory_bytes": record.budget_memory_bytes,
            "deadline_ms": record.deadline_ms, "metric": record.budget_metric or "llm_gflops"}


def recorded_thresholds(recorded: dict[str, str] | None) -> Path | None:
    """The thresholds file the recording names, if it is still there; a missing one is said (the checkpoint's
    own then replace it, and exits may differ)."""
    named = (recorded or {}).get("thresholds")
    if not named:
        return None
    if Path(named).is_file():
        print(f"deer-vla replay: with the thresholds the recording names, {named}", file=sys.stderr)
        return Path(named)
    print(f"deer-vla replay: the recording was made with thresholds {named}, which is not there: replaying with "
          "the checkpoint's own (--thresholds FILE to choose), so exits may differ", file=sys.stderr)
    return None


def _same_file(path: str | Path, named: str | None) -> bool:
    """Whether ``named`` (a recording's text, maybe damaged) names the file ``path``."""
    try:
        return bool(named) and Path(path).resolve() == Path(str(named)).resolve()
    except (OSError, ValueError):  # a NUL byte, a loop of links: not the same file
        return False


def replay(path: str | Path, stack: PolicyStack, metric: str = "llm_gflops",
           follow_budgets: bool = False, steps: list[RecordedStep] | None = None,
           recorded_scale: bool = False) -> ReplayReport:
    """``follow_budgets``: each step runs under the budget its record holds, set from the step it first
    appears at, as ``ros2 param set`` set it live (a run whose budget changed is reproduced). ``steps``: the
    recording's, if already read. ``recorded_scale``: the online tracker starts at the first step's recorded
    threshold scale (the recorded model and thresholds replayed: the node's tracker may not have started at 1,
    a configuration again carries on the last one's scale, and a recording's later part starts mid-run)."""
    steps = read_recording(path) if steps is None else steps
    if not steps:
        raise ValueError(f"recording {path} holds no complete policy steps")
    check_cameras(steps, stack.cameras, path)
    controller = stack.controller
    tracker = getattr(controller, "tracker", None)
    if recorded_scale and tracker is not None:  # (another model's or thresholds' scale means another thing)
        try:
            tracker.start_at(steps[0].record.threshold_scale)
        except ValueError as exc:
            raise ValueError(f"{path}: step {steps[0].record.step}'s recorded threshold_scale: {exc}") from exc
    recorded_exits, replayed_exits, diffs, rec_cost, rep_cost = [], [], [], [], []
    episode = None
    budgets: list[dict[str, Any]] = []
    for s in steps:
        if follow_budgets and (not budgets or recorded_budget(s.record) != budgets[-1]):
            budgets.append(recorded_budget(s.record))
            try:
                controller.set_budget(make_budget(budgets[-1]))
            except (ConfigurationError, ValueError) as exc:
                raise ValueError(f"{path}: step {s.record.step}'s recorded budget cannot be replayed on this "
                                 f"checkpoint ({exc}); give the budget to replay instead") from exc
        if s.record.episode != episode:
            controller.reset_episode()
            episode = s.record.episode
        action, record = controller.step(s.observation(stack.cameras))
        action7 = stack.action_spec.to_standard7(stack.action_spec.clip(action))
        recorded_exits.append(s.record.exit_used)
        replayed_exits.append(record.exit_used)
        diffs.append(float(np.max(np.abs(action7 - s.action7))) if s.action7.shape == action7.shape else float("inf"))
        rec_cost.append(getattr(s.record, metric))
        rep_cost.append(getattr(record, metric))
    same = np.mean([a == b for a, b in zip(recorded_exits, replayed_exits)])
    return ReplayReport(
        steps=len(steps),
        same_exit_fraction=float(same),
        recorded_mean_exit=float(np.mean(recorded_exits)),
        replayed_mean_exit=float(np.mean(replayed_exits)),
        recorded_mean_gflops=float(np.mean(rec_cost)),
        replayed_mean_gflops=float(np.mean(rep_cost)),
        max_action_diff=float(np.max(diffs)),
        mean_action_diff=float(np.mean(diffs)),
        recorded_exits=recorded_exits,
        replayed_exits=replayed_exits,
        recorded_budgets=len({json.dumps(b, sort_keys=True) for b in budgets}),
    )


def cli_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deer-vla replay", description=__doc__.splitlines()[0])
    parser.add_argument("recording", type=path_argument, help="MCAP written by the policy node's record_path (a split "
                        "recording: its first file, folder or a quoted glob)")
    parser.add_argument("--checkpoint", type=checkpoint_argument, default="", help=checkpoint_help())
    parser.add_argument("--thresholds", type=path_argument, default=None,
                        help="default: the file the recording names when --checkpoint is the recorded model, else "
                             "the checkpoint's own")
    parser.add_argument("--device", default="cpu", type=device_arg, help="cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=thread_count, default=1,
                        help="torch CPU threads (default 1: more oversubscribe a shared CPU)")
    parser.add_argument("--average-gflops", type=float, default=None)
    parser.add_argument("--peak-gflops", type=float, default=None)
    parser.add_argument("--peak-ms", type=float, default=None)
    parser.add_argument("--memory-bytes", type=int, default=None)
    parser.add_argument("--deadline-ms", type=float, default=None)
    parser.add_argument("--metric", default="llm_gflops", choices=["llm_gflops", "total_gflops"])
    parser.add_argument("--fixed-exit", type=int, default=0)
    parser.add_argument("--no-track-average", action="store_true",
                        help="thresholds as solved, without the online tracker the policy node uses by default")
    parser.add_argument("--json", type=path_argument, default=None,
                        help="also write the report (with per-step exits) here")
    args = parser.parse_args(argv)
    if not Path(args.recording).is_file():
        try:  # a folder (or glob) of the policy's recording beside the monitor's log, a demo's: the recording
            args.recording = str(log_parts(args.recording, RECORD)[0])
        except (FileNotFoundError, ValueError):
            pass  # said by the reading below, in its words
    problem = unwritable_dir(args.json.parent, create=True) if args.json else None
    if args.json and problem is None:
        try:  # the recording's parts are what this job reads
            parts = log_parts(args.recording)
        except (FileNotFoundError, ValueError):
            parts = [args.recording]
        problem = clobbers_input(args.json, [args.recording, *parts, args.checkpoint])
    if problem:  # found now, not after the whole recording has been replayed
        print(f"deer-vla replay: --json {args.json}: {problem}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.threads)
    budget = {"average_gflops": args.average_gflops, "peak_gflops": args.peak_gflops, "peak_ms": args.peak_ms,
              "memory_bytes": args.memory_bytes, "deadline_ms": args.deadline_ms}
    # no budget given: each step runs under the one it was recorded under (run-time changes included)
    follow = all(v is None for v in budget.values()) and not args.fixed_exit
    budget["metric"] = args.metric
    try:
        # a damaged checkpoint named before a long recording is read; its images are read at the model's size
        image_size = CheckpointDir(args.checkpoint).read_config().image_size
        with truncation_warnings_to_stderr("deer-vla replay"):  # a crashed run's file: its complete part
            steps = read_recording(args.recording, image_size)
            recorded = recorded_policy(args.recording)
        if not steps:
            raise ValueError(f"recording {args.recording} holds no complete policy steps (a policy node's recording, "
                             f"policy_io*.mcap in a demo's folder, holds {RECORD}; the monitor's steps.mcap does not)")
        ckpt = CheckpointDir(args.checkpoint)
        # the config too where the recording has it (since 2026-12-07): the same weights under an edited config
        # are another model
        same_model = ((recorded or {}).get("weights_sha256") == ckpt.weights_digest()
                      and (recorded or {}).get("config_sha256", None) in (None, *ckpt.config_digests()))
        # the recording's thresholds were solved for its own model: another checkpoint runs its own
        thresholds = (args.thresholds or (recorded_thresholds(recorded) if same_model else None)
                      or CheckpointDir(args.checkpoint).thresholds_path)
        # the recorded run's tracker scale, where it is the recorded model and thresholds under the recorded budgets
        recorded_scale = follow and same_model and _same_file(thresholds, (recorded or {}).get("thresholds"))
        if follow:
            budget = recorded_budget(steps[0].record)
        stack = load_stack(args.checkpoint, thresholds, args.device,
                           budget, args.fixed_exit, track_average=not args.no_track_average)
        if steps[0].record.step > 0:  # the parts before it deleted (record_keep_parts), or a middle part given
            print(f"deer-vla replay: {args.recording} starts at the policy's step {steps[0].record.step}: the "
                  "action head's history starts empty here" + ("" if recorded_scale else " and so does the tracker")
                  + ", so the first steps may differ", file=sys.stderr)
        report = replay(args.recording, stack, args.metric, follow_budgets=follow, steps=steps,
                        recorded_scale=recorded_scale)
        report.thresholds = str(thresholds)
        if recorded is not None:
            report.recorded_checkpoint = recorded.get("checkpoint")
            if "weights_sha256" in recorded:
                report.same_weights = same_model
    except (ConfigurationError, FileNotFoundError, ValueError) as exc:  # an input refused: a usage error
        print(f"deer-vla replay: {exc}", file=sys.stderr)
        return 2
    if report.same_weights is False:  # a comparison of two models, not a reproduction that went wrong
        print(f"deer-vla replay: {args.recording} was recorded with {report.recorded_checkpoint}, other weights "
              "or config "
              f"than {args.checkpoint}'s: the differences below are between two models (--checkpoint "
              f"{report.recorded_checkpoint} replays the recorded one)", file=sys.stderr)
    print(f"replayed {report.steps} steps of {args.recording}")
    print(f"same exit as recorded  {100 * report.same_exit_fraction:.1f}% of steps")
    print(f"mean exit              recorded {report.recorded_mean_exit:.2f} -> "
          f"replayed {report.replayed_mean_exit:.2f}")
    print(f"mean {args.metric:<17} recorded {report.recorded_mean_gflops:.4f} -> "
          f"replayed {report.replayed_mean_gflops:.4f}")
    print(f"action difference      max {report.max_action_diff:.3g}, mean {report.mean_action_diff:.3g}")
    if args.json:
        try:
            atomic_write_text(args.json, json.dumps(asdict(report), indent=2))
        except OSError as exc:
            print(f"deer-vla replay: cannot write --json {args.json}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli_main())
