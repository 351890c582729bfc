"""`deer-vla eval-report DIR`: the results so far of an evaluation, running or interrupted, from its journal.

A long run (MT50: hours) writes each finished episode to ``DIR/episodes.jsonl`` at once; this reads that file
without the model or the simulator and prints the same tables as the finished run (success with Wilson
intervals, GFLOPs per step, MT50 difficulty groups), with how many of each mode's planned episodes are in.
Modes that are behind have fewer episodes: compare modes on the tasks they all finished (``--common``).
Several runs of the same checkpoint (e.g. a second run with more seeds, ``--seed-offset``) are pooled: give
every output directory; a mode's episodes from all of them count, each (mode, task, seed) once. Runs of
another checkpoint, or two runs whose modes share a name but not a definition (e.g. two gate sets'
``th-learned0.2+track``), are set side by side under a label (``--label DIR=NAME``: its modes become
``NAME:mode``), paired episode by episode with ``--pair-with``.
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from deer_vla.core.atomic_file import atomic_write_text
from deer_vla.core.writable import clobbers_input, path_argument, unwritable_dir
from deer_vla.evaluation.journal import JOURNAL_NAME, JournalError, episode_key, read_journal
from deer_vla.evaluation.report import (
    HELDOUT_SUFFIX,
    depth_weights,
    generalisation,
    group_report,
    paired_with,
    print_generalisation,
    print_groups,
    print_paired,
    print_per_task,
    print_table,
    summarize,
)
from deer_vla.evaluation.rollout import EpisodeResult

log = logging.getLogger(__name__)
LABEL_PATTERN = re.compile(r"[A-Za-z0-9_.+-]+")


def journal_report(out_dirs: str | Path | list[str | Path], common: bool = False,
                   seeds: tuple[int, int] | None = None, pair_with: str = "full",
                   labels: Mapping[str | Path, str] | None = None) -> dict[str, Any]:
    """Summary of the journal in ``out_dirs`` (one directory, or several runs to pool): {"plan", "progress":
    {mode: [done, planned]}, "summary", "groups", "paired", "generalisation", "episodes"} ("generalisation":
    each mode run both ways, canonical vs held-out instructions on the starts both runs played). ``common``: only
    the (task, seed) pairs every mode has finished, so the modes are compared on the same episodes. ``seeds``
    (first, last): only those seeds' episodes, planned and played (e.g. the whole seeds a stopped run finished).
    ``pair_with``: the mode every other is paired with episode by episode (e.g. a static exit of the dynamic
    mode's cost; held-out modes with its held-out run, so 'exit2' and 'exit2 [heldout]' name the same pairing).
    ``labels`` {run directory: name}: that run's modes are reported as 'name:mode' ('name:full',
    'name:exit2 [heldout]'). Runs of another step limit or image size than the first are refused (JournalError),
    and so are runs of another checkpoint (weights) without a label."""
    dirs = [Path(d) for d in (out_dirs if isinstance(out_dirs, list) else [out_dirs])]
    named = _labels(labels or {}, dirs)
    runs = [_labelled(d, *read_journal(d / JOURNAL_NAME), named.get(d)) for d in dirs]
    _check_poolable(runs, named)

    def in_range(seed: int) -> bool:
        return seeds is None or seeds[0] <= seed <= seeds[1]

    records = [r for _, _, rs in runs for r in rs if in_range(r.seed)]
    results = list({episode_key(r): r for r in records}.values())  # one per episode, the latest, as --resume keeps
    plans = [header.get("plan") or {} for _, header, _ in runs]
    plan = plans[0] if len(plans) == 1 else {"runs": [str(d) for d in dirs], "plans": plans}
    order = [m for pl in plans for m in (pl.get("modes") or [])]
    order += [r.mode for r in results]  # modes a plan lacks (older journals)
    order = list(dict.fromkeys(order))
    # planned episodes as (task, seed) sets: runs that replay seeds another run has (the full model in every
    # pooled run) plan them once, as they count once
    planned: dict[str, set[tuple[str, int]] | None] = {m: set() for m in order}
    tasks: list[str] = []
    for (_, header, _), pl in zip(runs, plans):
        pl_tasks = list(pl.get("tasks") or [])
        tasks += pl_tasks
        per_task = pl.get("episodes_per_task")
        first_seed = (header.get("fingerprint") or {}).get("seed_offset")
        for m in order:
            mode_plan = planned[m]
            if mode_plan is None:
                continue
            if not isinstance(per_task, int) or not isinstance(first_seed, int) or not pl_tasks \
                    or not pl.get("modes"):
                planned[m] = None  # a run without a plan: its size is unknown
            elif m in pl["modes"]:
                mode_plan.update((t, first_seed + i) for t in pl_tasks for i in range(per_task)
                                 if in_range(first_seed + i))
    # a journal resumed with fewer seeds per task keeps the earlier run's extra episodes; the run's results are
    # its plan's, as results.json has them ("full: 6 of 2 episodes" before)
    in_plan = {m for pl in plans for m in (pl.get("modes") or [])}
    # an older journal's plan names no modes: its records are its modes; where every plan names them, a record of
    # another mode was never played by these runs (a journal joined or edited by hand) and is dropped, said
    every_planned = all(pl.get("modes") for pl in plans)

    def planned_for(r: EpisodeResult) -> bool:
        if r.mode not in in_plan:
            return not every_planned
        mode_plan = planned[r.mode]
        return mode_plan is None or (r.task, r.seed) in mode_plan

    unplanned = sorted({r.mode for r in results if r.mode not in in_plan}) if every_planned else []
    if unplanned:
        log.warning("dropping the records of mode(s) %s: no plan of %s names them", ", ".join(unplanned),
                    ", ".join(str(d) for d in dirs))
        order = [m for m in order if m not in unplanned]
    results = [r for r in results if planned_for(r)]
    if common and order:
        by_mode: dict[str, set[tuple[str, int]]] = {m: set() for m in order}
        for r in results:
            by_mode[r.mode].add((r.task, r.seed))
        shared = set.intersection(*(by_mode[m] for m in order))
        results = [r for r in results if (r.task, r.seed) in shared]
    tasks = list(dict.fromkeys(tasks or [r.task for r in results]))
    progress = {m: [sum(r.mode == m for r in results), None if planned[m] is None else len(planned[m] or ())]
                for m in order}
    summary = summarize(results, order)
    return {
        "plan": plan,
        "common_only": common,
        "progress": progress,
        "summary": summary,
        "groups": group_report(results, order, tasks),
        "paired": paired_with(results, order, pair_with.removesuffix(HELDOUT_SUFFIX)),
        "generalisation": generalisation(results, order),
        "episodes": [r.to_dict() for r in results],
    }


def _labels(labels: Mapping[str | Path, str], dirs: list[Path]) -> dict[Path, str]:
    named = {Path(d): str(name) for d, name in labels.items()}
    for d, name in named.items():
        if d not in dirs:
            raise JournalError(f"--label {d}={name}: {d} is not one of the runs reported "
                               f"({', '.join(str(x) for x in dirs)})")
        if not LABEL_PATTERN.fullmatch(name):
            raise JournalError(f"--label {d}={name}: a label is letters, digits and . _ + - only")
    return named


def _labelled(out: Path, header: dict[str, Any], records: list[Any], label: str | None
              ) -> tuple[Path, dict[str, Any], list[Any]]:
    """The run with every mode named 'label:mode' (in its plan, its mode digests and its episodes)."""
    if label is None:
        return out, header, records
    plan = dict(header.get("plan") or {})
    if isinstance(plan.get("modes"), list):
        plan["modes"] = [f"{label}:{m}" for m in plan["modes"]]
    if isinstance(plan.get("mode_digests"), dict):
        plan["mode_digests"] = {f"{label}:{m}": d for m, d in plan["mode_digests"].items()}
    return out, {**header, "plan": plan}, [replace(r, mode=f"{label}:{r.mode}") for r in records]


def _check_poolable(runs: list[tuple[Path, dict[str, Any], list[Any]]], labels: Mapping[Path, str]) -> None:
    """Runs pool only if their episodes are of one protocol, the same step limit and image size (modes, seeds
    and tasks may differ); runs under one name (unlabelled, or one label) must be of one checkpoint's weights;
    a mode name two runs have means the same mode in both (its digest in the plans; journals older than the
    digests cannot be checked)."""
    first_dir, first, _ = runs[0]
    seen: dict[str, tuple[str, Path]] = {}  # mode -> (digest, run that first had it)
    # label (None: unlabelled) -> (weights, config, run that first had them); a journal from before configs were
    # recorded has none, and is judged on its weights alone
    weights: dict[str | None, tuple[Any, Any, Path]] = {}
    for out, header, _ in runs:
        mine, theirs = first.get("fingerprint", {}), header.get("fingerprint", {})
        diff = [k for k in ("max_steps", "image_size") if mine.get(k) != theirs.get(k)]
        if diff:
            raise JournalError(f"cannot pool {out} with {first_dir}: their {', '.join(diff)} differ (another "
                               "protocol)")
        label = labels.get(out)
        other_weights, other_config, other_run = weights.setdefault(
            label, (theirs.get("weights_sha256"), theirs.get("config_sha256"), out))
        if other_weights != theirs.get("weights_sha256"):
            raise JournalError(f"cannot pool {out} with {other_run}: their weights_sha256 differ (another "
                               f"checkpoint); to set them side by side, label one: --label {out}=NAME")
        config = theirs.get("config_sha256")
        if other_config is not None and config is not None and other_config != config:
            raise JournalError(f"cannot pool {out} with {other_run}: their config_sha256 differ (the same weights "
                               f"under an edited config.json: another model); to set them side by side, label one: "
                               f"--label {out}=NAME")
        if other_config is None and config is not None:
            weights[label] = (other_weights, config, other_run)
        for mode, digest in ((header.get("plan") or {}).get("mode_digests") or {}).items():
            other = seen.setdefault(mode, (digest, out))
            if other[0] != digest:
                raise JournalError(f"cannot pool {out} with {other[1]}: their mode {mode!r} is not the same mode "
                                   "(other thresholds, criterion or budget); report them separately, or label "
                                   f"one: --label {out}=NAME")


def _seed_range(text: str) -> tuple[int, int]:
    first, sep, last = text.partition("-")
    try:
        lo, hi = int(first), int(last if sep else first)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FIRST-LAST seeds (or one seed), got {text!r}") from None
    if lo > hi:
        raise argparse.ArgumentTypeError(f"first seed {lo} is after last seed {hi}")
    return lo, hi


def _label(text: str) -> tuple[Path, str]:
    out, sep, name = text.rpartition("=")
    if not sep or not out or not name:
        raise argparse.ArgumentTypeError(f"expected DIR=NAME, got {text!r}")
    return Path(out), name


def _full_mode(order: list[str]) -> str | None:
    return "full" if "full" in order else None


def cli_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="deer-vla eval-report", description=__doc__.splitlines()[0])
    p.add_argument("out", type=path_argument, nargs="+",
                   help="the evaluation's --out directory (holds episodes.jsonl); several: runs to pool")
    p.add_argument("--common", action="store_true",
                   help="only the task/seed episodes every mode has finished (modes compared on the same seeds)")
    p.add_argument("--seeds", type=_seed_range, default=None, metavar="FIRST-LAST",
                   help="only these seeds' episodes, e.g. 100004-100005 (the whole seeds a stopped run finished)")
    p.add_argument("--pair-with", default=None, metavar="MODE",
                   help="pair every mode with this one episode by episode (default: full), e.g. exit2 to set a "
                   "dynamic mode beside the static exit of its cost")
    p.add_argument("--label", type=_label, action="append", default=[], metavar="DIR=NAME",
                   help="report the run in DIR with its modes named NAME:mode, e.g. to set another checkpoint's "
                   "run or another gate set's beside this one (pair them with --pair-with NAME:full); repeatable")
    p.add_argument("--per-task", action="store_true", help="also print every mode's successes per task")
    p.add_argument("--json", type=path_argument, default=None, help="also write the report here")
    p.add_argument("--depth-weights", type=path_argument, default=None, metavar="JSON",
                   help="also write, per task, how much depth pays: (b + 1) / (c + 1) for the episodes only the full "
                   "model (b) and only --shallow (c) solved; the {task: weight} file of `deer-vla train-gate "
                   "--task-weights`. Measure it on seeds you do not evaluate on")
    p.add_argument("--shallow", default=None, metavar="MODE",
                   help="the shallow mode --depth-weights sets against the full model (default exit1)")
    args = p.parse_args(argv)
    # said before anything is read or written: each of these was dropped, or done, without a word
    labelled = [str(folder) for folder, _ in args.label]
    twice = sorted({f for f in labelled if labelled.count(f) > 1})
    if twice:
        p.error(f"--label gives {', '.join(twice)} two names; give each folder one")
    if args.shallow is not None and args.depth_weights is None:
        p.error("--shallow is the mode --depth-weights sets against the full model: give --depth-weights too")
    shallow = args.shallow or "exit1"
    if shallow == "full":
        p.error("--shallow full sets the full model against itself (a weight of 1 for every task): name a shallow "
                "mode, e.g. exit1")
    if args.json is not None and args.depth_weights is not None and \
            Path(args.json).absolute() == Path(args.depth_weights).absolute():
        p.error(f"--json and --depth-weights name one file, {args.json}: the weights would replace the report")
    journals = [out / JOURNAL_NAME for out in args.out]
    for flag, path in (("--json", args.json), ("--depth-weights", args.depth_weights)):
        problem = clobbers_input(path, journals) if path is not None else None
        if problem:  # the journal is the evaluation's only record of its episodes, and --resume's
            print(f"deer-vla eval-report: {flag} {problem}", file=sys.stderr)
            return 2
        # its folder made (as replay --json does) before the report is printed: it was printed whole, then
        # "No such file or directory" and status 1
        problem = unwritable_dir(Path(path).parent, create=True) if path is not None else None
        if problem:
            print(f"deer-vla eval-report: {flag} {path}: {problem}", file=sys.stderr)
            return 1
    try:
        report = journal_report(args.out, common=args.common, seeds=args.seeds,
                                pair_with=args.pair_with or "full", labels=dict(args.label))
    except JournalError as exc:  # no journal, or not one this command can read: a usage error
        print(f"deer-vla eval-report: {exc}", file=sys.stderr)
        return 2
    summary = report["summary"]
    # a journal whose header plans modes but holds no episode summarizes every planned mode as 0 of 0
    if not any(block["overall"]["episodes"] for block in summary.values()):
        print(f"deer-vla eval-report: no finished episode in {', '.join(str(d) for d in args.out)} yet")
        return 0
    bases = list(dict.fromkeys(m.removesuffix(HELDOUT_SUFFIX) for m in summary))  # a held-out-only run has these too
    if args.pair_with is not None and args.pair_with.removesuffix(HELDOUT_SUFFIX) not in bases:
        print(f"deer-vla eval-report: --pair-with {args.pair_with!r} is not a mode of these runs "
              f"({', '.join(bases)})", file=sys.stderr)
        return 2
    print_table(summary, {}, _full_mode(list(summary)))
    if report["groups"]:
        print_groups(report["groups"]["summary"], summary)
    if args.per_task:
        print_per_task(summary)
    if report["generalisation"]:
        print_generalisation(report["generalisation"])
    print_paired(report["paired"])
    for mode, (done, planned) in report["progress"].items():
        print(f"{mode}: {done}{'' if planned is None else f' of {planned}'} episodes"
              f"{' (on the seeds every mode finished)' if args.common else ''}")
    if args.json is not None:
        try:
            atomic_write_text(args.json, json.dumps(report, indent=2))
        except OSError as exc:
            print(f"deer-vla eval-report: cannot write --json {args.json}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    if args.depth_weights is not None:
        return _write_depth_weights(args.depth_weights, report, shallow)
    return 0


def _write_depth_weights(path: Path, report: dict[str, Any], shallow: str) -> int:
    full = _full_mode(list(report["summary"]))
    if full is None or shallow not in report["summary"]:
        print(f"deer-vla eval-report: --depth-weights needs the modes 'full' and {shallow!r} in these runs "
              f"(they have {', '.join(report['summary'])})", file=sys.stderr)
        return 2
    per_task = depth_weights([EpisodeResult.from_dict(e) for e in report["episodes"]], shallow, full)
    if not per_task:
        print(f"deer-vla eval-report: --depth-weights: 'full' and {shallow!r} share no episode", file=sys.stderr)
        return 2
    for task, row in per_task.items():
        print(f"depth weight {task}: {row['weight']:.3g} (only full {row['only_reference']}, only {shallow} "
              f"{row['only_shallow']}, of {row['pairs']})")
    try:
        atomic_write_text(path, json.dumps({t: row["weight"] for t, row in per_task.items()}, indent=2) + "\n")
    except OSError as exc:
        print(f"deer-vla eval-report: cannot write --depth-weights {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli_main())
