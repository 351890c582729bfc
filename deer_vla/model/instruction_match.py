"""How near an instruction is to the wordings a checkpoint was trained on.

The nearest trained wording, its task, and their cosine similarity over mean-pooled token embeddings of the
checkpoint's own input table (the pre-projection rows of ``text.TokenEmbedder``, or an LM's ``nn.Embedding``):
with the wordllama front end this is WordLlama's own sentence embedding (average pooling of its token rows), of
the texts without the words that only address the robot ("hey robot", "please": core.instruction_text's
ADDRESS_WORDS) where the model reads the whole text.
A robot hears "make me a sandwich" as something: this says what, and how far from anything trained.
The record of trained wordings is extra.json's ``training.instructions`` (task -> texts, written by
`deer-vla train`); a checkpoint without one cannot be judged.
"""
from __future__ import annotations

import copy
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from deer_vla.core.instruction_text import (
    ADDRESS_WORDS,
    FUNCTION_WORDS,
    clean_instruction,
    instruction_words,
    without_address,
)
from deer_vla.model.tokenizer import encode_instructions, without_token_cache


@dataclass(frozen=True)
class InstructionMatch:
    """The trained wording nearest to an instruction: its task, its text and their cosine similarity
    (1.0: the same tokens; unrelated wordings fall to about 0.1-0.3 with the wordllama table); and the nearest
    wording of another task (one not trained on that same text: a shared-start twin is the same task to this
    comparison), its task and similarity (None: no other task)."""

    task: str
    nearest: str
    similarity: float
    runner_up_task: str | None = None
    runner_up: str | None = None
    runner_up_similarity: float | None = None


def trained_wordings(record: Any) -> dict[str, list[str]]:
    """The usable part of a checkpoint's instruction record: string task -> its texts that are valid text and not
    empty once cleaned as the model reads them (core.instruction_text). Anything else in a damaged or
    hand-edited record (a number for a list, a list of numbers, a lone surrogate) is left out, not an error:
    the record only informs, the weights are what runs."""
    if not isinstance(record, dict):
        return {}
    wordings = {}
    for task, texts in record.items():
        if isinstance(task, str) and isinstance(texts, list):
            kept = [t for t in texts if isinstance(t, str) and _readable(t)]
            if kept:
                wordings[task] = kept
    return wordings


def _readable(text: str) -> bool:
    try:
        return bool(clean_instruction(text))
    except ValueError:  # not valid Unicode
        return False


def token_table(embed_tokens: torch.nn.Module) -> torch.Tensor:
    """The rows a model's input embedding reads token ids from: TokenEmbedder's table before its projection,
    or an nn.Embedding's weight."""
    table = getattr(embed_tokens, "table", None)
    if table is None and isinstance(embed_tokens, torch.nn.Embedding):
        table = embed_tokens.weight
    if not isinstance(table, torch.Tensor) or table.ndim != 2:
        raise TypeError(f"{type(embed_tokens).__name__} holds no token-embedding table")
    return table


EMBED_CHUNK = 2048  # texts tokenized per batch while the trained wordings are embedded


class InstructionMatcher:
    """Nearest trained wording of an instruction (``match``). Holds its own copy of the tokenizer, used under a
    lock: a fast tokenizer's truncation setting is state that each call sets, and the policy's step worker
    tokenizes on another thread with the model's copy."""

    def __init__(self, tokenizer: Any, table: torch.Tensor, trained: dict[str, list[str]],
                 max_tokens: int | None = None) -> None:
        wordings = trained_wordings(trained)
        if not wordings:
            raise ValueError("no trained instructions to compare with")
        self._tokenizer = without_token_cache(copy.deepcopy(tokenizer))  # one per configure: no cache to leak
        self._lock = threading.Lock()
        self._table = table.detach()
        self._max_tokens = max_tokens
        self._special = set(getattr(tokenizer, "all_special_ids", ()) or ())
        self._keys = [(task, text) for task, texts in sorted(wordings.items()) for text in texts]
        # each distinct text embedded once (a record can name one wording under several tasks), in chunks: one
        # batch of 100 000 texts held ~300 MB of token lists at once
        unique = sorted({text for _, text in self._keys})
        rows = np.concatenate([self.embed(unique[i:i + EMBED_CHUNK]) for i in range(0, len(unique), EMBED_CHUNK)])
        index = {text: i for i, text in enumerate(unique)}
        self._matrix = rows[[index[text] for _, text in self._keys]]
        # per key: its text's and its task's numbers, for the nearest other task without a Python loop per call
        self._text_ids = np.array([index[text] for _, text in self._keys])
        self._task_index = {task: i for i, task in enumerate(sorted(wordings))}
        self._task_ids = np.array([self._task_index[task] for task, _ in self._keys])
        # each word of the trained wordings, embedded here at configure (lazily, a 100 000-wording record's 80 000
        # words held the executor 2.6 s at the first instruction naming an untrained word)
        # the words that name something: not "the", "to", "please" (the nearest to "fridge" was "ahead")
        self._vocabulary = sorted({w for text in unique for w in instruction_words(text)}
                                  - FUNCTION_WORDS - ADDRESS_WORDS)
        # per word of the wordings, the tasks whose wordings have it ("open": drawer-open, window-open, ...); and
        # the words that start a wording (its verbs, mostly: "open", "press", "turn")
        self._word_tasks: dict[str, set[str]] = {}
        self._uses: Counter[str] = Counter()
        self._leading: Counter[str] = Counter()
        for task, text in self._keys:
            words = [w for w in instruction_words(text) if w not in FUNCTION_WORDS and w not in ADDRESS_WORDS]
            for word in set(words):
                self._word_tasks.setdefault(word, set()).add(task)
            self._uses.update(words)
            self._leading.update(words[:1])
        self._word_rows = np.concatenate([self.embed(self._vocabulary[i:i + EMBED_CHUNK])
                                          for i in range(0, len(self._vocabulary), EMBED_CHUNK)]
                                         or [np.zeros((0, self._table.shape[1]), dtype=np.float32)])

    @classmethod
    def from_runner(cls, runner: Any, record: Any) -> InstructionMatcher:
        """A matcher over a loaded PolicyRunner's table and tokenizer, reading as many tokens as its model
        does. ValueError when ``record`` holds no usable wording."""
        model = runner.model
        return cls(runner.tokenizer, token_table(model.lm.embed_tokens), record,
                   max_tokens=model.config.lm.max_text_len)

    @property
    def tasks(self) -> list[str]:
        return sorted({task for task, _ in self._keys})

    def task_similarity(self, text: str, task: str) -> float:
        """The similarity of ``text`` to ``task``'s nearest trained wording (-1 for a task it does not name)."""
        rows = self._task_ids == self._task_index.get(task, -1)
        if not rows.any():
            return -1.0
        return float(np.clip(np.max(self._matrix[rows] @ self.embed([text])[0]), -1.0, 1.0))

    def leads(self, word: str) -> bool:
        """Whether ``word`` starts (after function and address words) a quarter or more of the trained wordings
        that have it: their verb, mostly ("open" 20 of 52 on the default, "press" 21 of 23; not "window", 12 of 60:
        "window: open it")."""
        return self._leading[word] * 4 >= self._uses[word] > 0

    def tasks_with_word(self, word: str) -> list[str]:
        """The tasks whose trained wordings have ``word`` (a plain, lower-case word), sorted."""
        return sorted(self._word_tasks.get(word, ()))

    def wordings(self, task: str) -> list[str]:
        """``task``'s trained wordings, in the record's order (empty for a task it does not name)."""
        return [text for t, text in self._keys if t == task]

    def tokens_unread(self, text: str) -> tuple[int, int]:
        """(tokens of ``text`` past what the model reads, how many it reads); (0, 0) with no limit."""
        limit = self._max_tokens
        if limit is None:
            return 0, 0
        with self._lock:
            count = len(encode_instructions(self._tokenizer, [text])[0])
        return max(0, count - limit), limit

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length mean token rows, one per text (N, D), the texts tokenized in one batch; a text of special
        tokens only is a zero row. A text the model reads whole is pooled without its address words; one longer
        than the model reads is pooled as cut, every word of what the model reads counted."""
        with self._lock:
            encoded = encode_instructions(self._tokenizer, texts)
            limit = self._max_tokens
            cut = [i for i, ids in enumerate(encoded) if limit is not None and len(ids) > limit]
            plain = {i: without_address(text) for i, text in enumerate(texts) if limit is None
                     or len(encoded[i]) <= limit}
            addressed = [i for i, text in plain.items() if text != texts[i]]
            for i, ids in zip(addressed, encode_instructions(self._tokenizer, [plain[i] for i in addressed])):
                encoded[i] = ids
            for i, ids in zip(cut, encode_instructions(self._tokenizer, [texts[i] for i in cut], limit)):
                encoded[i] = ids
        kept = [[i for i in ids if i not in self._special and 0 <= i < self._table.shape[0]] for ids in encoded]
        if not kept:
            return np.zeros((0, self._table.shape[1]), dtype=np.float32)
        offsets = np.cumsum([0] + [len(ids) for ids in kept[:-1]])
        device = self._table.device
        with torch.no_grad():  # an empty bag's mean is a zero row
            means = torch.nn.functional.embedding_bag(
                torch.tensor([i for ids in kept for i in ids], dtype=torch.long, device=device), self._table,
                torch.tensor(offsets, dtype=torch.long, device=device), mode="mean").float().cpu().numpy()
        norms = np.linalg.norm(means, axis=1, keepdims=True)
        ok = np.isfinite(norms) & (norms > 0)
        return np.where(ok, means / np.where(ok, norms, 1.0), 0.0).astype(np.float32)

    def match(self, text: str) -> InstructionMatch:
        """The nearest trained wording of ``text`` (ValueError for text that is not valid Unicode)."""
        scores = self._matrix @ self.embed([text])[0]
        best = int(np.argmax(scores))
        task, nearest = self._keys[best]
        same = self._task_ids[self._text_ids == self._text_ids[best]]  # tasks trained on that very wording
        others = ~np.isin(self._task_ids, same)
        if not others.any():
            return InstructionMatch(task, nearest, float(np.clip(scores[best], -1.0, 1.0)))
        second = int(np.argmax(np.where(others, scores, -np.inf)))
        return InstructionMatch(task, nearest, float(np.clip(scores[best], -1.0, 1.0)), self._keys[second][0],
                                self._keys[second][1], float(np.clip(scores[second], -1.0, 1.0)))

    def nearest_trained_word(self, word: str) -> tuple[str, float]:
        """The word of the trained wordings nearest to ``word`` (each a mean of its token rows, as ``embed``; not
        FUNCTION_WORDS or ADDRESS_WORDS), and their cosine similarity: inflections score 0.7-0.8 with the
        wordllama table ("opening"/"opened", "hands"/"hand"), unrelated words under 0.3 ("fridge"/"cabinet" 0.26,
        "door"/"side" 0.14)."""
        if not self._vocabulary:  # a record of wordings without a word ("???")
            return "", 0.0
        scores = self._word_rows @ self.embed([word])[0]
        best = int(np.argmax(scores))
        return self._vocabulary[best], float(np.clip(scores[best], -1.0, 1.0))

    def read_part(self, text: str) -> str:
        """The start of ``text`` (cleaned) that the model reads, its first ``max_tokens`` tokens (special ones
        counted, as the model's truncation counts them), or all of it: words past it name nothing to the
        policy."""
        cleaned = clean_instruction(text)
        limit = self._max_tokens
        if limit is None:
            return cleaned
        with self._lock:
            try:
                offsets = self._tokenizer(cleaned, split_special_tokens=True,
                                          return_offsets_mapping=True)["offset_mapping"]
            except (NotImplementedError, TypeError, ValueError, KeyError):  # a slow tokenizer has no offsets
                return cleaned
        if len(offsets) <= limit:
            return cleaned
        return cleaned[:max((end for _, end in offsets[:limit]), default=0)]
