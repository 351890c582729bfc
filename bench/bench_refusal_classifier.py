"""Would a learned refusal classifier catch what the instruction rules let run? Measured held out by writer.

The instruction rules (core.instruction_text, model.instruction_words, ros/instruction_check.py) were written
from labelled sets, and each new blind set found families they did not know. A classifier over the same texts
might carry over better. This fits one and measures it the way a new writer would meet it: leave one labelled set
out (each set is one audit's writers), fit a logistic regression (L2, torch's L-BFGS) on the others' texts and
the suites' trained wordings (requests), and judge the held-out set. Features: the mean and the max of the
checkpoint's own token-table rows over the text's tokens (what the instruction matcher pools), standardised.

Two operating points, each chosen on the training folds alone: above every trained wording (no trained
wording would be flagged), and the 99th percentile of the training folds' request texts (1% of requests
flagged). Reported over the texts the node's rules let run (silent or with a WARN), on the checkpoint given:
REFUSE-labelled ones the classifier would catch, task-labelled ones it would flag, and the suites' held-out
wordings it would flag, with Wilson intervals. No simulator: about a minute.

    python bench/bench_refusal_classifier.py                         # default
    python bench/bench_refusal_classifier.py --checkpoint mt50
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from common import checkpoint_option, instruction_check_of, run_bench  # also puts this checkout first on sys.path

from deer_vla.core.config_io import thread_count
from deer_vla.model.shipped import checkpoint_help

DATA = sorted((Path(__file__).resolve().parent / "data").glob("instructions_labelled*.json"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=checkpoint_option, default="default", help=checkpoint_help())
    ap.add_argument("--data", type=Path, nargs="+", default=DATA, help="labelled sets (default: bench/data's)")
    ap.add_argument("--l2", type=float, default=1e-3, help="L2 weight of the logistic regression")
    ap.add_argument("--threads", type=thread_count, default=1)
    args = ap.parse_args()
    if not args.l2 >= 0:
        raise ValueError(f"--l2 must be >= 0, got {args.l2}")

    import torch

    from deer_vla.core.instruction_text import clean_instruction
    from deer_vla.evaluation.stats import wilson_interval
    from deer_vla.model.instruction_match import token_table
    from deer_vla.model.tokenizer import encode_instructions
    from deer_vla.sim.tasks import ALL_TASKS

    torch.set_num_threads(args.threads)
    loaded = instruction_check_of(args.checkpoint)
    if loaded is None:
        return 2
    runner, check = loaded
    tasks = set(check.matcher.tasks)
    table = token_table(runner.model.lm.embed_tokens).detach().float()
    special = set(getattr(runner.tokenizer, "all_special_ids", ()) or ())

    def features(texts: list[str]) -> np.ndarray:
        rows = []
        for ids in encode_instructions(runner.tokenizer, texts):
            kept = [i for i in ids if i not in special and 0 <= i < table.shape[0]]
            tokens = table[kept] if kept else torch.zeros(1, table.shape[1])
            rows.append(torch.cat([tokens.mean(0), tokens.max(0).values]).numpy())
        return np.stack(rows)

    # each text once (the first label and set it is met with), as the node reads it
    texts: dict[str, tuple[bool, str]] = {}
    for path in args.data:
        for item in json.loads(path.read_text(encoding="utf-8")):
            try:
                text = clean_instruction(item["text"])
            except ValueError:
                continue
            if text and text not in texts:
                texts[text] = (item["label"] not in tasks, str(item.get("set") or path.stem))
    names = list(texts)
    refuse = np.array([texts[t][0] for t in names])
    group = np.array([texts[t][1] for t in names])

    def runs(text: str) -> str | None:  # "silent" / "WARN" for a text the rules let run, else None
        if runner.refusal(text) is not None:
            return None
        verdict = check.judge(text, "warn", 0.45, count=False)
        return None if verdict.refused("warn") else ("WARN" if verdict.doubtful else "silent")

    verdicts = [runs(t) for t in names]
    trained = sorted({clean_instruction(w) for task in ALL_TASKS.values()
                      for w in (task.instruction, *task.train_instructions)})
    held_out = sorted({clean_instruction(w) for task in ALL_TASKS.values() for w in task.heldout_instructions}
                      - set(trained))
    x, x_trained, x_held = features(names), features(trained), features(held_out)

    def fit(xs: np.ndarray, ys: np.ndarray):  # -> probability of "refuse" for rows of features
        mean, std = xs.mean(0), xs.std(0) + 1e-6
        xt, yt = torch.tensor((xs - mean) / std), torch.tensor(ys, dtype=torch.float32)
        w = torch.zeros(xs.shape[1], requires_grad=True)
        b = torch.zeros(1, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=300, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt) + args.l2 * (w * w).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return lambda z: torch.sigmoid(torch.tensor((z - mean) / std) @ w + b).detach().numpy()

    counts: dict[str, Counter[str]] = {"above every trained wording": Counter(), "1% of requests": Counter()}
    for held in sorted(set(group)):
        train = group != held
        predict = fit(np.concatenate([x[train], x_trained]),
                      np.concatenate([refuse[train], np.zeros(len(trained), bool)]).astype(np.float32))
        cuts = {"above every trained wording": float(predict(x_trained).max()) + 1e-6,
                "1% of requests": float(np.quantile(predict(x[train][~refuse[train]]), 0.99))}
        scores, held_scores = predict(x[~train]), predict(x_held)
        for point, cut in cuts.items():
            c = counts[point]
            c["held-out wordings flagged"] += int((held_scores >= cut).sum())
            for score, is_refuse, verdict in zip(scores, refuse[~train], np.array(verdicts, dtype=object)[~train]):
                if verdict is None:
                    continue
                key = f"{'REFUSE' if is_refuse else 'task'} {verdict}"
                c[key] += 1
                c[key + " flagged"] += int(score >= cut)

    def share(k: int, n: int) -> str:
        lo, hi = wilson_interval(k, n)
        return f"{k}/{n} ({100 * k / max(n, 1):.0f}%, {100 * lo:.0f}-{100 * hi:.0f}%)"

    print(f"checkpoint {args.checkpoint}: {len(names)} labelled texts in {len(set(group))} sets, each held out in "
          f"turn; logistic regression on mean+max token rows, L2 {args.l2:g}")
    for point, c in counts.items():
        print(f"threshold {point}:")
        for kind, what in (("REFUSE", "caught"), ("task", "flagged")):
            for verdict in ("silent", "WARN"):
                key = f"{kind} {verdict}"
                print(f"  {kind}-labelled the rules run {verdict:<6}: {what} {share(c[key + ' flagged'], c[key])}")
        folds = len(set(group))
        flagged = share(c["held-out wordings flagged"], len(held_out) * folds)
        print(f"  the suites' held-out wordings flagged: {flagged} (over the {folds} folds)")
    return 0


if __name__ == "__main__":
    sys.exit(run_bench(main))
