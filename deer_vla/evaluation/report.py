"""Aggregate episode results and write them: JSON, CSV, a rich table and the trade-off plot."""
from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from deer_vla.core.atomic_file import atomic_write_text, save_figure
from deer_vla.evaluation.rollout import EpisodeResult
from deer_vla.evaluation.stats import mcnemar_exact, wilson_interval


def _stats(results: list[EpisodeResult]) -> dict[str, Any]:
    n = len(results)
    wins = sum(r.success for r in results)
    lo, hi = wilson_interval(wins, n)
    steps = sum(r.steps for r in results)
    counts = [sum(c) for c in zip(*(r.exit_counts for r in results))] if results else []
    committed = sum(counts)
    return {
        "episodes": n,
        "successes": wins,
        "success_rate": wins / n if n else 0.0,
        "ci95_low": lo,
        "ci95_high": hi,
        "steps": steps,
        # per control step, over every step of every episode of this mode
        "mean_llm_gflops": sum(r.llm_gflops for r in results) / steps if steps else 0.0,
        "mean_total_gflops": sum(r.total_gflops for r in results) / steps if steps else 0.0,
        "mean_exit": sum((k + 1) * c for k, c in enumerate(counts)) / committed if committed else 0.0,
        "exit_fractions": [c / committed for c in counts] if committed else [],
        "mean_model_ms": sum(r.model_ms for r in results) / steps if steps else 0.0,
    }


def summarize(results: list[EpisodeResult], mode_order: list[str]) -> dict[str, dict[str, Any]]:
    """mode -> {"overall": stats, "tasks": {task: stats}} (modes in ``mode_order``)."""
    by_mode: dict[str, list[EpisodeResult]] = defaultdict(list)
    for r in results:
        by_mode[r.mode].append(r)
    out: dict[str, dict[str, Any]] = {}
    for mode in mode_order:
        rs = by_mode.get(mode, [])
        tasks: dict[str, list[EpisodeResult]] = defaultdict(list)
        for r in rs:
            tasks[r.task].append(r)
        out[mode] = {"overall": _stats(rs), "tasks": {t: _stats(v) for t, v in sorted(tasks.items())}}
    return out


def paired_with(results: list[EpisodeResult], mode_order: list[str], reference: str = "full"
                ) -> dict[str, dict[str, Any]]:
    """Each mode against ``reference`` (a held-out-instruction mode against the reference's held-out run) on the
    episodes both played (same task, seed and instruction): pairs, successes of each, the pairs only one of them
    solved, and the exact McNemar p-value of that split. Paired episodes share their start state, so this tells
    two modes apart with fewer episodes than two independent intervals do. Modes without a common episode are
    left out."""
    played = _played(results)
    out: dict[str, dict[str, Any]] = {}
    for mode in mode_order:
        ref_name = reference + HELDOUT_SUFFIX if mode.endswith(HELDOUT_SUFFIX) else reference
        ref = played.get(ref_name, {})
        pairs = [(ref[k], won) for k, won in played.get(mode, {}).items() if k in ref]
        if mode == ref_name or not pairs:
            continue
        only_ref, only_mode = _discordant(pairs)
        out[mode] = {"reference": ref_name, "pairs": len(pairs), "successes": sum(b for _, b in pairs),
                     "reference_successes": sum(a for a, _ in pairs), "only_reference": only_ref,
                     "only_mode": only_mode, "p_mcnemar": mcnemar_exact(only_ref, only_mode)}
    return out


def _discordant(pairs: list[tuple[bool, bool]]) -> tuple[int, int]:
    """(pairs only the first solved, pairs only the second solved) of (first, second) successes."""
    return sum(a and not b for a, b in pairs), sum(b and not a for a, b in pairs)


def _played(results: list[EpisodeResult]) -> dict[str, dict[tuple[str, int, str], bool]]:
    """mode -> {(task, seed, instruction): success}."""
    played: dict[str, dict[tuple[str, int, str], bool]] = defaultdict(dict)
    for r in results:
        played[r.mode][(r.task, int(r.seed), r.instruction)] = r.success
    return played


def depth_weights(results: list[EpisodeResult], shallow: str, reference: str = "full") -> dict[str, dict[str, Any]]:
    """Per task, how much depth pays in closed loop: on the episodes both ``reference`` and ``shallow`` played,
    the pairs only the reference solved (b) and only the shallow mode solved (c), and the weight (b + 1) / (c + 1),
    the add-one odds that depth decides an episode it changes (1 where depth changes nothing either way). The
    weights of ``deer-vla train-gate --task-weights``. Tasks without a common episode are left out."""
    played = _played(results)
    ref, low = played.get(reference, {}), played.get(shallow, {})
    tasks: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for key, won in low.items():
        if key in ref:
            tasks[key[0]].append((ref[key], won))
    out: dict[str, dict[str, Any]] = {}
    for task, pairs in sorted(tasks.items()):
        b, c = _discordant(pairs)
        out[task] = {"pairs": len(pairs), "only_reference": b, "only_shallow": c, "weight": (b + 1) / (c + 1)}
    return out


def print_paired(paired: dict[str, dict[str, Any]]) -> None:
    """One row per mode: its success and the reference's on the same episodes, who alone solved how many, p."""
    from rich.table import Table

    if not paired:
        return
    table = Table(title="paired on the same task, seed and instruction (exact McNemar test)")
    for col in ("mode", "vs", "pairs", "mode solved", "vs solved", "only vs", "only mode", "p"):
        table.add_column(col, justify="right" if col not in ("mode", "vs") else "left")
    for mode, row in paired.items():
        n = row["pairs"]
        table.add_row(mode, row["reference"], str(n), f"{row['successes']} ({100 * row['successes'] / n:.1f}%)",
                      f"{row['reference_successes']} ({100 * row['reference_successes'] / n:.1f}%)",
                      str(row["only_reference"]), str(row["only_mode"]), f"{row['p_mcnemar']:.2g}")
    _show(table)


def summarize_groups(results: list[EpisodeResult], mode_order: list[str],
                     groups: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """mode -> {group: stats over every episode of the group's tasks} (e.g. MT50's difficulty groups)."""
    out: dict[str, dict[str, Any]] = {}
    for mode in mode_order:
        rs = [r for r in results if r.mode == mode]
        out[mode] = {g: _stats([r for r in rs if r.task in tasks]) for g, tasks in groups.items()}
    return out


def group_report(results: list[EpisodeResult], mode_order: list[str], tasks: list[str]) -> dict[str, Any] | None:
    """The results by MT50 difficulty group ({"tasks", "summary", "group_mean"}) where ``tasks`` span more than
    one group, else None: the "groups" entry of an evaluation's results and of eval-report."""
    from deer_vla.sim.mt50 import difficulty_groups

    groups = difficulty_groups(tasks)
    if len(groups) < 2:
        return None
    group_summary = summarize_groups(results, mode_order, groups)
    return {"tasks": groups, "summary": group_summary, "group_mean": group_means(group_summary)}


def group_means(group_summary: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """mode -> the unweighted mean of its groups' success rates: the "avg" that published MT50 tables report
    (SmolVLA, TinyVLA), which weighs the 5 very hard tasks as much as the 28 easy ones, unlike the overall
    rate over all episodes. None where a group has no episodes."""
    out: dict[str, float | None] = {}
    for mode, block in group_summary.items():
        rates = [st["success_rate"] for st in block.values()]
        out[mode] = None if not rates or any(st["episodes"] == 0 for st in block.values()) else \
            sum(rates) / len(rates)
    return out


def print_groups(group_summary: dict[str, dict[str, Any]], summary: dict[str, dict[str, Any]]) -> None:
    """Success per group with its 95% Wilson interval, the groups' mean and the overall, one row per mode."""
    from rich.table import Table

    groups = list(next(iter(group_summary.values()), {}))
    table = Table(title="success by task group (95% Wilson interval)")
    for col in ("mode", *groups, "group mean", "overall"):
        table.add_column(col, justify="right" if col != "mode" else "left")
    means = group_means(group_summary)

    def cell(st: dict[str, Any]) -> str:
        return (f"{100 * st['success_rate']:.1f}% ({st['successes']}/{st['episodes']}) "
                f"[{100 * st['ci95_low']:.0f}, {100 * st['ci95_high']:.0f}]")

    for mode, block in group_summary.items():
        mean = means[mode]
        table.add_row(mode, *(cell(block[g]) for g in groups), "-" if mean is None else f"{100 * mean:.1f}%",
                      cell(summary[mode]["overall"]))
    _show(table, width=200)  # groups table: wider


def print_per_task(summary: dict[str, dict[str, Any]]) -> None:
    """Successes per task, one column per mode: where a mode loses to another (e.g. the depth one task needs)."""
    from rich.table import Table

    tasks = sorted({t for block in summary.values() for t in block["tasks"]})
    table = Table(title="successes per task")
    for col in ("task", *summary):
        table.add_column(col, justify="right" if col != "task" else "left")
    for task in tasks:
        cells = [summary[m]["tasks"].get(task) for m in summary]
        table.add_row(task, *("-" if st is None else f"{st['successes']}/{st['episodes']}" for st in cells))
    table.add_row("all", *(f"{b['overall']['successes']}/{b['overall']['episodes']}" for b in summary.values()))
    _show(table, width=200)


HELDOUT_SUFFIX = " [heldout]"
HELDOUT_LABEL = " (held-out instructions)"  # the plot's series of held-out-instruction modes


def heldout_vs_canonical(summary: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per mode run both ways (same seeds): canonical vs held-out-paraphrase success, overall and per task.

    ``ratio`` is held-out success / canonical success (None when canonical is 0).
    """
    out: dict[str, dict[str, Any]] = {}
    for name, block in summary.items():
        held = summary.get(name + HELDOUT_SUFFIX)
        if name.endswith(HELDOUT_SUFFIX) or held is None:
            continue

        def pair(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
            ratio = b["success_rate"] / a["success_rate"] if a["success_rate"] > 0 else None
            return {"canonical": [a["successes"], a["episodes"]], "heldout": [b["successes"], b["episodes"]],
                    "canonical_ci95": [a["ci95_low"], a["ci95_high"]], "heldout_ci95": [b["ci95_low"], b["ci95_high"]],
                    "ratio": ratio, "canonical_llm_gflops": a["mean_llm_gflops"],
                    "heldout_llm_gflops": b["mean_llm_gflops"]}

        tasks = {t: pair(st, held["tasks"][t]) for t, st in block["tasks"].items() if t in held["tasks"]}
        out[name] = {"overall": pair(block["overall"], held["overall"]), "tasks": tasks}
    return out


def generalisation(results: list[EpisodeResult], mode_order: list[str]) -> dict[str, dict[str, Any]]:
    """``heldout_vs_canonical`` for every mode played both ways (``M`` and ``M [heldout]``), each on the task/seed
    starts both of its runs played: pooled runs (a canonical run over more seed ranges than its held-out run)
    are compared on the same seeds, as the ratio needs."""
    starts: dict[str, set[tuple[str, int]]] = defaultdict(set)
    for r in results:
        starts[r.mode].add((r.task, r.seed))
    out: dict[str, dict[str, Any]] = {}
    for mode in mode_order:
        held = mode + HELDOUT_SUFFIX
        if mode.endswith(HELDOUT_SUFFIX) or held not in starts:
            continue
        shared = starts[mode] & starts[held]
        if shared:
            both = [r for r in results if r.mode in (mode, held) and (r.task, r.seed) in shared]
            out.update(heldout_vs_canonical(summarize(both, [mode, held])))
    return out


def print_generalisation(table_data: dict[str, dict[str, Any]]) -> None:
    from rich.table import Table

    def cell(sn: list[int]) -> str:
        return f"{sn[0]}/{sn[1]}"

    for mode, block in table_data.items():
        table = Table(title=f"{mode}: canonical vs held-out instructions (same seeds)")
        for col in ("task", "canonical", "held-out", "held-out / canonical"):
            table.add_column(col, justify="right" if col != "task" else "left")
        rows = [*block["tasks"].items(), ("overall", block["overall"])]
        for task, p in rows:
            ratio = "-" if p["ratio"] is None else f"{p['ratio']:.2f}"
            table.add_row(task, cell(p["canonical"]), cell(p["heldout"]), ratio)
        _show(table)


def _show(table: Any, width: int = 140) -> None:
    """Print a rich table: no markup, so a mode named "full [heldout]" keeps its "[heldout]" (rich read it as a
    style tag and dropped it), and wide enough in logs and pipes that rows do not wrap."""
    from rich.console import Console

    console = Console(markup=False)
    if not console.is_terminal:
        console = Console(markup=False, width=width)
    console.print(table)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, allow_nan=False))  # a full disk leaves the old file


CSV_FIELDS = [
    "mode", "kind", "task", "episodes", "successes", "success_rate", "ci95_low", "ci95_high",
    "mean_llm_gflops", "mean_total_gflops", "mean_exit", "budget_gflops", "steps",
]


def write_csv(path: Path, summary: dict[str, dict[str, Any]], modes: dict[str, dict[str, Any]]) -> None:
    text = io.StringIO(newline="")
    w = csv.DictWriter(text, fieldnames=CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    for mode, block in summary.items():
        meta = {"mode": mode, "kind": modes[mode]["kind"], "budget_gflops": modes[mode].get("budget_gflops")}
        for task, st in block["tasks"].items():
            w.writerow({**meta, "task": task, **st})
        w.writerow({**meta, "task": "ALL", **block["overall"]})
    atomic_write_text(path, text.getvalue())


def print_table(summary: dict[str, dict[str, Any]], modes: dict[str, dict[str, Any]], full_mode: str | None) -> None:
    from rich.table import Table

    table = Table(title="closed-loop success vs compute (LLM GFLOPs per step, FlopCounter convention)")
    for col in ("mode", "success", "95% CI", "LLM GFLOPs", "total GFLOPs", "avg exit", "LLM vs full"):
        table.add_column(col, justify="right" if col != "mode" else "left")
    full = summary.get(full_mode, {}).get("overall") if full_mode else None
    for mode, block in summary.items():
        st = block["overall"]
        ratio = (
            f"{st['mean_llm_gflops'] / full['mean_llm_gflops']:.2f}x"
            if full and full["mean_llm_gflops"] > 0
            else "-"
        )
        table.add_row(
            mode,
            f"{100 * st['success_rate']:.1f}% ({st['successes']}/{st['episodes']})",
            f"[{100 * st['ci95_low']:.1f}, {100 * st['ci95_high']:.1f}]",
            f"{st['mean_llm_gflops']:.4f}",
            f"{st['mean_total_gflops']:.4f}",
            f"{st['mean_exit']:.2f}",
            ratio,
        )
    _show(table)


def plot_tradeoff(path: Path, summary: dict[str, dict[str, Any]], modes: dict[str, dict[str, Any]], title: str) -> None:
    """Success rate (with 95% CI) vs mean LLM GFLOPs: static exits as one line, dynamic as another."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    series: dict[str, list[tuple[float, float, float, float, str]]] = defaultdict(list)
    for mode, block in summary.items():
        st = block["overall"]
        if st["episodes"] == 0:
            continue
        kind = modes[mode]["kind"]
        label = {"fixed": "static exit", "dynamic": "DeeR dynamic", "oracle": "oracle"}[kind]
        if modes[mode].get("track_budget"):
            label = "DeeR + online tracker"
        if mode.endswith(HELDOUT_SUFFIX):  # its own series: one line through both runs zigzagged between them
            label += HELDOUT_LABEL
        p = 100 * st["success_rate"]
        series[label].append((st["mean_llm_gflops"], p, p - 100 * st["ci95_low"], 100 * st["ci95_high"] - p, mode))
    style = {"static exit": ("o-", "tab:gray"), "DeeR dynamic": ("s-", "tab:red"), "oracle": ("*", "tab:green"),
             "DeeR + online tracker": ("D--", "tab:blue")}
    for label, pts in series.items():
        pts.sort()
        xs, ys, lo, hi, names = zip(*pts)
        fmt, color = style[label.removesuffix(HELDOUT_LABEL)]
        if label.endswith(HELDOUT_LABEL):
            fmt = fmt[0] + ":" if len(fmt) > 1 else fmt  # the same marker, dotted
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt=fmt, color=color, label=label, capsize=3, markersize=6)
        for x, y, name in zip(xs, ys, names):
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("mean LLM GFLOPs per action")
    ax.set_ylabel("success rate (%)")
    ax.set_ylim(-2, 102)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    try:
        save_figure(fig, path, dpi=120)
    finally:
        plt.close(fig)
