"""An evaluation's episode journal: every finished episode on disk at once, so a long run can resume.

``episodes.jsonl`` in the output directory: a header line ``{"journal": 1, "fingerprint": {...}}``, then one
EpisodeResult per line, appended and flushed (and fsync'ed) as each job finishes, so a SIGKILL loses at most
the jobs in flight. ``--resume`` reads it back, keeps the episodes whose (mode, task, seed) the new run would
play again, and runs only the rest. The fingerprint (checkpoint weights, modes with their thresholds, seeds'
start, step limit, image size) must match, so episodes of another run are never mixed in; a torn last line
(the crash happened mid-write) is dropped with a warning. A tracking mode's online tracker restarts at every
episode (``rollout.make_controller``), so a resumed run's episodes are those an uninterrupted one plays.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from deer_vla.core.atomic_file import atomic_write_text
from deer_vla.core.json_text import JsonTextError, parse_json
from deer_vla.evaluation.rollout import EpisodeResult, ModeSpec

log = logging.getLogger(__name__)

JOURNAL_NAME = "episodes.jsonl"
JOURNAL_VERSION = 1
# Seeds per (mode, task) a run may plan: the community protocol is 10, a long study a few hundred; a journal
# header claiming 10^12 made eval-report expand the plan into a set until memory ran out
MAX_EPISODES_PER_TASK = 100_000
EpisodeKey = tuple[str, str, int]


def episode_key(r: EpisodeResult) -> EpisodeKey:
    return (r.mode, r.task, int(r.seed))


def run_fingerprint(weights_digest: str, modes: Iterable[ModeSpec], seed_offset: int, max_steps: int | None,
                    image_size: int | None, config_digest: str | None = None) -> dict[str, Any]:
    """What must be equal for two runs' episodes to be pooled (episode counts and task lists may differ).
    ``config_digest``: the checkpoint's (CheckpointDir.config_digest): the same weights under an edited config
    are another model."""
    mode_text = json.dumps([mode_fields(m) for m in modes], sort_keys=True, default=str)
    fingerprint = {"weights_sha256": weights_digest, "modes_sha256": hashlib.sha256(mode_text.encode()).hexdigest(),
                   "seed_offset": seed_offset, "max_steps": max_steps, "image_size": image_size}
    if config_digest is not None:
        fingerprint["config_sha256"] = config_digest
    return fingerprint


# fingerprint keys added since journals began: a journal written before one was added lacks it, and is judged
# on the others (as it was then), so it stays resumable
ADDED_FINGERPRINT_KEYS = frozenset({"config_sha256"})


def fingerprint_differences(theirs: dict[str, Any], mine: dict[str, Any],
                            config_digests: Sequence[str] = ()) -> list[str]:
    """The keys two runs' fingerprints differ in (a key added since, absent from either, is no difference; a
    config digest of ``config_digests``, the ones this checkpoint's config answers to, is the config's)."""
    return sorted(k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k)
                  and not (k in ADDED_FINGERPRINT_KEYS and (k not in theirs or k not in mine))
                  and not (k == "config_sha256" and theirs.get(k) in config_digests))


def mode_digests(modes: Iterable[ModeSpec]) -> dict[str, str]:
    """{mode name: digest of what the mode plays} (kind, exit, thresholds, budget, tracker). Two runs' episodes of
    one mode name pool only if the digests agree: "dyn0.2" solved on other demonstrations is another mode. Floats
    count to 6 significant digits, so thresholds re-solved with another thread count still match."""
    return {m.name: hashlib.sha256(json.dumps(_rounded(mode_fields(m)), sort_keys=True,
                                              default=str).encode()).hexdigest()[:16] for m in modes}


# ModeSpec's fields when journals began recording digests: always in a digest. A field added since counts only
# when it differs from its default, so adding an option to the evaluation keeps every journal written before it
# resumable and poolable with runs after it (a mode that does not use the option plays as before).
_JOURNAL_V1_MODE_FIELDS = frozenset({"name", "kind", "exit", "thresholds", "budget_gflops", "budget_fraction",
                                     "oracle_tolerance", "track_budget"})


def mode_fields(mode: ModeSpec) -> dict[str, Any]:
    """The mode's fields that say what it plays, as fingerprints and digests hash them."""
    fields = {f.name: getattr(mode, f.name) for f in dataclasses.fields(mode)
              if f.name in _JOURNAL_V1_MODE_FIELDS or not _is_default(f, getattr(mode, f.name))}
    if mode.track_budget:
        # since 2026-12-05 the tracker restarts at every episode; before, it ran on over a worker's episodes
        # (results depended on the worker count and scheduling): those journals' tracking modes do not pool
        fields["tracker_scope"] = "episode"
    return fields


def _is_default(f: dataclasses.Field[Any], value: Any) -> bool:
    if f.default is not dataclasses.MISSING:
        return bool(value == f.default)
    if f.default_factory is not dataclasses.MISSING:
        return bool(value == f.default_factory())
    return False


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value


class JournalError(ValueError):
    """The journal on disk cannot be resumed from (another run's, or not a journal)."""


class EpisodeJournal:
    """Append-only episode log of one evaluation output directory."""

    def __init__(self, out_dir: str | Path, fingerprint: dict[str, Any], plan: dict[str, Any] | None = None,
                 config_digests: Sequence[str] = ()) -> None:
        """``plan``: what the run will play (mode names in order, tasks, episodes per task), kept in the header
        so ``deer-vla eval-report`` can show a run in progress against it. ``config_digests``: every digest the
        checkpoint's config answers to (CheckpointDir.config_digests): a journal stamped with another scheme's
        resumes, and is stamped with the fingerprint's from then on."""
        self.path = Path(out_dir) / JOURNAL_NAME
        self.fingerprint = fingerprint
        self.plan = plan
        self.config_digests = tuple(config_digests)

    def start(self, resume: bool) -> dict[EpisodeKey, EpisodeResult]:
        """Open the journal: resume=True keeps (and returns) a matching journal's episodes, else starts afresh.

        Raises JournalError naming the difference when the journal on disk belongs to another run."""
        done: dict[EpisodeKey, EpisodeResult] = {}
        if resume and self.path.is_file():
            done = self._read()
            self._rewrite(done.values())  # drops a torn tail, so appends start on a clean line
        else:
            if resume:
                log.warning("--resume: no %s in %s; starting afresh", JOURNAL_NAME, self.path.parent)
            self._rewrite([])
        return done

    def append(self, results: Iterable[EpisodeResult]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            for r in results:
                f.write(json.dumps(r.to_dict()) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _read(self) -> dict[EpisodeKey, EpisodeResult]:
        header, results = read_journal(self.path)
        diff = fingerprint_differences(header.get("fingerprint", {}), self.fingerprint, self.config_digests)
        if diff:
            raise JournalError(f"cannot resume from {self.path}: it was written by a different run ({', '.join(diff)} "
                             "differ); use another --out, or --overwrite instead of --resume to start afresh there")
        done = {episode_key(r): r for r in results}
        log.info("resuming: %d episodes already in %s", len(done), self.path)
        return done

    def _rewrite(self, results: Iterable[EpisodeResult]) -> None:
        header: dict[str, Any] = {"journal": JOURNAL_VERSION, "fingerprint": self.fingerprint}
        if self.plan is not None:
            header["plan"] = self.plan
        lines = [json.dumps(header), *(json.dumps(r.to_dict()) for r in results)]
        atomic_write_text(self.path, "\n".join(lines) + "\n")


def held_episodes(path: str | Path) -> str | None:
    """What starting afresh over the journal at ``path`` would lose, in words (``None``: nothing: no file, or a
    journal with no episode yet)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        _, results = read_journal(path)
    except JournalError:
        return f"{path}, unreadable as a journal" if path.stat().st_size else None
    return f"{len(results)} episodes in {path}" if results else None


def read_journal(path: str | Path) -> tuple[dict[str, Any], list[EpisodeResult]]:
    """(header, episodes) of a journal file, as written so far; a torn last line (a crash, or a run still
    writing) is dropped with a warning. JournalError when it is not a journal or a middle line is broken."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise JournalError(f"no evaluation journal at {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise JournalError(f"{path} cannot be read as an evaluation journal: {exc}") from exc
    try:
        header = parse_json(lines[0]) if lines else None
    except JsonTextError:
        header = None
    if not isinstance(header, dict) or header.get("journal") != JOURNAL_VERSION:
        raise JournalError(f"{path} is not an evaluation journal (version {JOURNAL_VERSION}); "
                           "(another --out, or remove the file)")
    problem = _plan_problem(header.get("plan"))
    if not isinstance(header.get("fingerprint", {}), dict):
        problem = f"fingerprint is not an object: {header['fingerprint']!r}"
    if problem:
        raise JournalError(f"{path} line 1: the header's {problem}")
    results: list[EpisodeResult] = []
    max_steps = header.get("fingerprint", {}).get("max_steps")
    for i, line in enumerate(lines[1:], start=2):
        try:
            record = parse_json(line)
        except JsonTextError as exc:
            # a line starts with "{": cut short anywhere, it does not parse (syntax), so only that is a torn write
            if exc.syntax and i == len(lines):  # the last line: a write cut short by a crash (or being written now)
                log.warning("%s: dropping a torn last line (%s)", path, exc)
                break
            raise JournalError(f"{path} line {i} is not an episode record: {exc}") from exc
        try:
            result = EpisodeResult.from_dict(record)
        except ValueError as exc:
            raise JournalError(f"{path} line {i} is not an episode record: {exc}") from exc
        # one model's exits on every line, and no episode past the run's step limit (a line cut to one exit's
        # count read as a 1-exit model's, its average exit 1.00 for the full model)
        if results and len(result.exit_counts) != len(results[0].exit_counts):
            raise JournalError(f"{path} line {i}: exit_counts for {len(result.exit_counts)} exits, where line 2 has "
                               f"{len(results[0].exit_counts)}")
        if isinstance(max_steps, int) and not isinstance(max_steps, bool) and result.steps > max_steps:
            raise JournalError(f"{path} line {i}: {result.steps} steps, past the run's max_steps {max_steps}")
        results.append(result)
    return header, results


def _plan_problem(plan: Any) -> str | None:
    """What is wrong with a header's plan (written by EpisodeJournal; absent in older journals), or None."""
    if plan is None:
        return None
    if not isinstance(plan, dict):
        return f"plan is not an object: {plan!r}"
    for key in ("modes", "tasks"):
        names = plan.get(key)
        if names is not None and not (isinstance(names, list) and all(isinstance(n, str) and n for n in names)):
            return f"plan's {key} is not a list of names: {names!r}"
    digests = plan.get("mode_digests")
    if digests is not None and not (isinstance(digests, dict)
                                    and all(isinstance(v, str) for v in digests.values())):
        return f"plan's mode_digests is not an object of digests: {digests!r}"
    per_task = plan.get("episodes_per_task")
    if per_task is not None and (isinstance(per_task, bool) or not isinstance(per_task, int)
                                 or not 1 <= per_task <= MAX_EPISODES_PER_TASK):
        return f"plan's episodes_per_task is not an integer in 1..{MAX_EPISODES_PER_TASK}: {str(per_task)[:40]!r}"
    return None
