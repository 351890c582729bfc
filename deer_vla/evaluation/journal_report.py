"""`deer-vla eval-report DIR`: the results so far of an evaluation, running or interrupted, from its journal.

A long run (MT50: hours) writes each finished episode to ``DIR/episodes.jsonl`` at once; this reads that file
without the model or the simulator and prints the same tables as the finished run (success with Wilson
intervals, GFLOPs per step, MT50 difficulty groups), with how many of each mode's planned episodes are in.
Modes that are behind have fewer episodes: compare modes on the tasks they all finished (``--common``).
Several runs of the same checkpoint (e.g. a second run with more seeds, ``--seed-offset``) are pooled: give
every output directory; a mode's episodes from all of them count, each (mode, task, seed) once.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from deer_vla.evaluation.journal import JOURNAL_NAME, JournalError, episode_key, read_journal
from deer_vla.evaluation.report import (
    HELDOUT_SUFFIX,
    group_report,
    paired_with,
    print_groups,
    print_paired,
    print_table,
    summarize,
)


def journal_report(out_dirs: str | Path | list[str | Path], common: bool = False,
                   seeds: tuple[int, int] | None = None, pair_with: str = "full") -> dict[str, Any]:
    """Summary of the journal in ``out_dirs`` (one directory, or several runs to pool): {"plan", "progress":
    {mode: [done, planned]}, "summary", "groups", "paired", "episodes"}. ``common``: only the (task, seed) pairs
    every mode has finished, so the modes are compared on the same episodes. ``seeds`` (first, last): only those
    seeds' episodes, planned and played (e.g. the whole seeds a stopped run finished). ``pair_with``: the mode
    every other is paired with episode by episode (e.g. a static exit of the dynamic mode's cost; held-out modes
    with its held-out run, so 'exit2' and 'exit2 [heldout]' name the same pairing). Runs of another
    checkpoint (weights), step limit or image size than the first are refused (JournalError)."""
    dirs = [Path(d) for d in (out_dirs if isinstance(out_dirs, list) else [out_dirs])]
    runs = [(d, *read_journal(d / JOURNAL_NAME)) for d in dirs]
    _check_poolable(runs)

    def in_range(seed: int) -> bool:
        return seeds is None or seeds[0] <= seed <= seeds[1]

    records = [r for _, _, rs in runs for r in rs if in_range(r.seed)]
    results = list({episode_key(r): r for r in records}.values())  # one per episode, the latest, as --resume keeps
    plans = [header.get("plan") or {} for _, header, _ in runs]
    plan = plans[0] if len(plans) == 1 else {"runs": [str(d) for d in dirs], "plans": plans}
    order = [m for pl in plans for m in (pl.get("modes") or [])]
    order += [r.mode for r in results]  # modes a plan lacks (older journals)
    order = list(dict.fromkeys(order))
    if common and order:
        by_mode: dict[str, set[tuple[str, int]]] = {m: set() for m in order}
        for r in results:
            by_mode[r.mode].add((r.task, r.seed))
        shared = set.intersection(*(by_mode[m] for m in order))
        results = [r for r in results if (r.task, r.seed) in shared]
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
        "episodes": [r.to_dict() for r in results],
    }


def _check_poolable(runs: list[tuple[Path, dict[str, Any], list[Any]]]) -> None:
    """Runs pool only if their episodes are of one policy and one protocol: the same checkpoint weights, step
    limit and image size (modes, seeds and tasks may differ), and a mode name both runs have means the same
    mode in both (its digest in the plans; journals older than the digests cannot be checked)."""
    first_dir, first, _ = runs[0]
    seen: dict[str, tuple[str, Path]] = {}  # mode -> (digest, run that first had it)
    for out, header, _ in runs:
        mine, theirs = first.get("fingerprint", {}), header.get("fingerprint", {})
        diff = [k for k in ("weights_sha256", "max_steps", "image_size") if mine.get(k) != theirs.get(k)]
        if diff:
            raise JournalError(f"cannot pool {out} with {first_dir}: their {', '.join(diff)} differ (another "
                               "checkpoint or protocol)")
        for mode, digest in ((header.get("plan") or {}).get("mode_digests") or {}).items():
            other = seen.setdefault(mode, (digest, out))
            if other[0] != digest:
                raise JournalError(f"cannot pool {out} with {other[1]}: their mode {mode!r} is not the same mode "
                                   "(other thresholds, criterion or budget); report them separately")


def _seed_range(text: str) -> tuple[int, int]:
    first, sep, last = text.partition("-")
    try:
        lo, hi = int(first), int(last if sep else first)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FIRST-LAST seeds (or one seed), got {text!r}") from None
    if lo > hi:
        raise argparse.ArgumentTypeError(f"first seed {lo} is after last seed {hi}")
    return lo, hi


def _full_mode(order: list[str]) -> str | None:
    return "full" if "full" in order else None


def cli_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="deer-vla eval-report", description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, nargs="+",
                   help="the evaluation's --out directory (holds episodes.jsonl); several: runs to pool")
    p.add_argument("--common", action="store_true",
                   help="only the task/seed episodes every mode has finished (modes compared on the same seeds)")
    p.add_argument("--seeds", type=_seed_range, default=None, metavar="FIRST-LAST",
                   help="only these seeds' episodes, e.g. 100004-100005 (the whole seeds a stopped run finished)")
    p.add_argument("--pair-with", default=None, metavar="MODE",
                   help="pair every mode with this one episode by episode (default: full), e.g. exit2 to set a "
                   "dynamic mode beside the static exit of its cost")
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = p.parse_args(argv)
    try:
        report = journal_report(args.out, common=args.common, seeds=args.seeds,
                                pair_with=args.pair_with or "full")
    except JournalError as exc:
        print(f"deer-vla eval-report: {exc}", file=sys.stderr)
        return 1
    summary = report["summary"]
    if not summary:
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
    print_paired(report["paired"])
    for mode, (done, planned) in report["progress"].items():
        print(f"{mode}: {done}{'' if planned is None else f' of {planned}'} episodes"
              f"{' (on the seeds every mode finished)' if args.common else ''}")
    if args.json is not None:
        try:
            args.json.write_text(json.dumps(report, indent=2))
        except OSError as exc:
            print(f"deer-vla eval-report: cannot write --json {args.json}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli_main())
