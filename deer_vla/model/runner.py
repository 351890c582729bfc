"""PolicyRunner: the model as a deer_vla.core.SegmentedPolicy over numpy Observations (batch of one).

Per step: ``begin_step`` encodes images + instruction, ``run_next_exit`` runs
one more segment and returns that exit's candidate action computed from the
*committed* head state of the previous step, ``commit(k)`` adopts exit k's
head state (the head's history then holds exit k's feature for this step; exit
1's whatever k with ``config.head.history_source = "first_exit"``, no feature with ``"proprio"``;
``"none"`` keeps no history: each candidate is the head on the current step alone).
With ``config.past_frames = K`` the runner keeps the visual tokens of the last
K committed steps, which the decoder reads beside the current step's.

With ``config.head.history = N > 0`` the head keeps no recurrent state between
steps: each candidate is the LSTM run from zero over the last N-1 committed
(feature, proprio) pairs plus this exit's, matching the training windows. The
past part is the same for every exit, so ``begin_step`` runs it once and each
exit continues from that state for one step.

With exit gates (``model.gate``, the checkpoint's gates file) the runner is
also a ``core.ScoredPolicy``: ``exit_score`` gives the learned criterion's
score of the exit run last, computed only when asked.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deer_vla.core import ActionSpec, CostProfile, LatencyStats, NonFiniteActionError, Observation
from deer_vla.core.instruction_text import MAX_INSTRUCTION_CHARS, clean_instruction
from deer_vla.core.log_text import quoted
from deer_vla.model.checkpoint_dir import CheckpointDir
from deer_vla.model.gate import ExitGates, GateError, read_gates
from deer_vla.model.head import LSTMState, gripper_value
from deer_vla.model.instruction_words import (
    NegatedInstructionError,
    OppositeWordsError,
    TrainedWords,
    refusal,
    trained_words_of,
)
from deer_vla.model.policy import MultiExitPolicy, SegmentState
from deer_vla.model.preprocess import images_to_tensor
from deer_vla.model.tokenizer import encode_instruction

# The instruction token cache: at most this many instructions, and this many characters of them in all
# (an instruction is at most core.instruction_text.MAX_INSTRUCTION_CHARS long)
log = logging.getLogger(__name__)

TOKEN_CACHE_ENTRIES = 256
TOKEN_CACHE_CHARS = 1 << 20
# whole steps timed for a time budget (time_here): a p99 of 50 lies between the two slowest; ~1.5 s for the default
STEP_TIMING_ITERS = 50


class PolicyRunner:
    def __init__(self, model: MultiExitPolicy, tokenizer: Any, device: str | torch.device = "cpu",
                 profile: CostProfile | None = None, gates: ExitGates | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.model.to(self.device)
        self._profile = profile
        if gates is not None:
            gates.check_fits(model.feature_dim, model.config.action_spec.dim, model.config.num_exits)
            gates = gates.to(self.device).eval()
        self._gates = gates
        self._proprio_spec = model.config.proprio_spec  # length and, for a named robot, its limits
        # the folder it was loaded from (from_checkpoint): the controller checks thresholds against its weights
        self.checkpoint_dir: CheckpointDir | None = None
        # instruction -> (ids, mask, tokens past lm.max_text_len that the model does not read)
        self._token_cache: dict[str, tuple[torch.Tensor, torch.Tensor, int]] = {}
        self._token_cache_chars = 0  # characters of the cached instructions (the keys)
        self.dropped_tokens = 0  # of the last step's instruction: its tokens past lm.max_text_len, not read
        # the checkpoint's training record (extra.json ``training``, read once by from_checkpoint: {} when none;
        # ``training_error`` says why it could not be read) and its trained words, when it records them:
        # misspelt ones read as meant
        self.training: dict[str, Any] = {}
        self.training_error: str | None = None
        self.trained_words: TrainedWords | None = None
        self._last_read: tuple[str, str, tuple[tuple[str, str], ...]] | None = None  # read_instruction's last
        self.reset()

    @classmethod
    def from_checkpoint(cls, ckpt: str | Path, max_exit: int | None = None, device: str = "cpu",
                        full_profile: CostProfile | None = None) -> PolicyRunner:
        """``ckpt``: a folder or a shipped checkpoint's name. ``full_profile``: the whole model's profile to use
        (e.g. one timed on this machine) instead of the checkpoint's profile.json."""
        from deer_vla.model.checkpoint import load_checkpoint
        from deer_vla.model.shipped import resolve_checkpoint

        ckpt = resolve_checkpoint(ckpt)
        model, tokenizer = load_checkpoint(ckpt, max_exit=max_exit, device=device)
        profile = None
        full = full_profile if full_profile is not None else CheckpointDir(ckpt).read_profile()
        # a profile of another model, device or dtype says nothing about this one: measure instead
        if full is not None and full.describes(model.config.num_exits, torch.device(device).type, model.weights_dtype):
            profile = full.truncated(model.num_exits)
        gates = read_gates(ckpt, model.feature_dim, model.config.action_spec.dim, model.config.num_exits)
        runner = cls(model, tokenizer, device=device, profile=profile, gates=gates)
        runner.checkpoint_dir = CheckpointDir(ckpt)
        try:
            runner.training = runner.checkpoint_dir.read_training()
        except (OSError, ValueError) as exc:  # the weights are what runs: the record only informs
            runner.training_error = str(exc)
            log.warning("misspelt instructions are read as written: the training record of %s cannot be read (%s)",
                        ckpt, exc)
        runner.trained_words = trained_words_of(runner.training.get("instructions"))
        return runner

    def fork(self) -> PolicyRunner:
        """Another runner over the same model, tokenizer, profile and gates, with its own episode state (history):
        several controllers replaying the same steps side by side without copying the weights."""
        runner = PolicyRunner(self.model, self.tokenizer, device=self.device, profile=self._profile, gates=self._gates)
        runner.checkpoint_dir = self.checkpoint_dir
        runner.training, runner.training_error = self.training, self.training_error
        runner.trained_words = self.trained_words
        return runner

    # -- properties the controller / node read
    @property
    def num_exits(self) -> int:
        return self.model.num_exits

    @property
    def action_spec(self) -> ActionSpec:
        return self.model.config.action_spec

    @property
    def cameras(self) -> tuple[str, ...]:
        return tuple(self.model.config.cameras)

    @property
    def image_size(self) -> int:
        """The side of the square images the model reads (frames of any size are resized to it)."""
        return int(self.model.config.image_size)

    @property
    def model_profile(self) -> CostProfile:
        """The model's profile: the checkpoint's saved one (truncated to the loaded exits), else measured here
        once. Its bytes are the weights' alone."""
        if self._profile is None:
            from deer_vla.model.profiling import profile_policy

            self._profile = profile_policy(self.model, device=self.device, warmup=2, iters=5)
        return self._profile

    @property
    def cost_profile(self) -> CostProfile:
        """``model_profile`` with the exit gates' bytes held beside every exit's: what this runner keeps
        resident, and what a memory budget is checked against."""
        return self.model_profile.with_resident_bytes(self.exit_gate_bytes)

    def time_here(self, warmup: int = 3, iters: int = STEP_TIMING_ITERS) -> None:
        """Give the cost profile this machine's step times, measured through whole steps (``time_steps``): a
        time budget (peak_ms, a deadline) is enforced with them. FLOPs and bytes stay. The saved profile's times
        (the model's parts timed alone, 5-10 runs each, perhaps on another machine) put the "p99" of a deep
        exit below the median of real steps here."""
        from dataclasses import replace

        from deer_vla.model.profiling import machine_id

        encode, segments, head = self.time_steps(warmup, iters)
        self._profile = replace(self.model_profile, segment_latency=segments, encode_latency=encode,
                                head_latency=head, machine=machine_id())

    def time_steps(self, warmup: int = 3, iters: int = STEP_TIMING_ITERS
                   ) -> tuple[LatencyStats, list[LatencyStats], LatencyStats]:
        """Wall times of ``iters`` whole steps to the last exit, as the exit controller times them: begin_step
        (images to tensors, tokens, encode, the history's head state), each run_next_exit (segment, its action
        head, the action to numpy; the exit's gate with exit gates), commit. -> (encode, per exit, head) in the
        cost profile's terms, set so that its worst case for exit k (encode + k segments + k + 1 head steps) is
        the quantile of whole steps stopped at exit k (plus k commits, a few hundredths of a ms): each exit's
        share is the rise of that quantile from exit k - 1. Summing each part's own p99 instead put spikes
        that never meet in one step on top of each other (2-3x the real p99 at exit 12). The runner's history
        is cleared after (configure times it before any step)."""
        size, n = self.image_size, self.num_exits
        rng = np.random.default_rng(0)
        spec = self._proprio_spec
        p = self.model.config.proprio_dim
        proprio = None
        if p:  # inside a named robot's limits (zeros may not be), its standardisation's centre otherwise
            if spec.low and spec.high:
                proprio = (np.asarray(spec.low, np.float32) + np.asarray(spec.high, np.float32)) / 2
            else:
                proprio = np.asarray(spec.mean, np.float32) if spec.mean else np.zeros(p, np.float32)
        begin, exits, commit = np.zeros(iters), np.zeros((iters, n)), np.zeros(iters)
        gated_from = self._gates.config.first_exit if self._gates is not None else n + 1
        try:
            for it in range(warmup + iters):
                observation = Observation(
                    images={c: rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for c in self.cameras},
                    instruction="pick up the object", proprio=proprio)
                times = [time.perf_counter()]
                self.begin_step(observation)
                times.append(time.perf_counter())
                for k in range(1, n + 1):
                    self.run_next_exit()
                    if k >= gated_from:  # the learned criterion's gate, run after its exit
                        self.exit_score()
                    times.append(time.perf_counter())
                self.commit(n)
                times.append(time.perf_counter())
                if it >= warmup:
                    gaps = np.diff(times) * 1e3
                    row = it - warmup
                    begin[row], exits[row], commit[row] = gaps[0], gaps[1:-1], gaps[-1]
        finally:
            self.reset()
        # whole steps stopped at exit 0 (no exit: begin + commit), 1, ..., n
        whole = np.concatenate([(begin + commit)[:, None], begin[:, None] + np.cumsum(exits, axis=1)
                                + commit[:, None]], axis=1)
        qs = (50, 95, 99)
        rise = {q: np.diff(np.percentile(whole, q, axis=0)) for q in qs}  # >= 0: the steps only grow
        head = {q: float(np.percentile(commit, q)) for q in qs}
        stats = lambda value: LatencyStats(value(50), value(95), value(99), iters)
        encode = stats(lambda q: float(np.percentile(begin + commit, q)) - head[q])
        return encode, [stats(lambda q, k=k: float(rise[q][k])) for k in range(n)], stats(lambda q: head[q])

    # -- learned exit criterion (core.ScoredPolicy)
    @property
    def has_exit_gates(self) -> bool:
        return self._gates is not None

    @property
    def exit_gate_bytes(self) -> int:
        """Bytes of the exit gates, all of them loaded whatever the exit cap (0 without gates)."""
        if self._gates is None:
            return 0
        return sum(t.numel() * t.element_size() for t in [*self._gates.parameters(), *self._gates.buffers()])

    @property
    def exit_gate_gflops(self) -> float:
        """One gate evaluation (0 without gates)."""
        return self._gates.flops_per_exit() / 1e9 if self._gates is not None else 0.0

    @property
    def first_gated_exit(self) -> int:
        """The first exit the gates score: 1, or 2 for gates trained without an exit-1 gate (2 without gates)."""
        return self._gates.config.first_exit if self._gates is not None else 2

    def cost_profile_for(self, criterion: str, first_exit: int | None = None) -> CostProfile:
        """``cost_profile``, charged for the exit gates when ``criterion`` is "learned" (GateError without gates):
        one evaluation at each exit from ``first_exit`` on (default ``first_gated_exit``; thresholds that
        start later, e.g. DeeR's rule from exit 2, run fewer gates)."""
        if criterion == "consecutive":
            return self.cost_profile
        if criterion != "learned":
            raise ValueError(f"unknown criterion {criterion!r}; choose 'consecutive' or 'learned'")
        if self._gates is None:
            raise GateError("the learned criterion needs exit gates, and this checkpoint has none: train them "
                            "with `deer-vla train-gate CHECKPOINT --data DIR`, or use the consecutive criterion")
        first = self.first_gated_exit if first_exit is None else first_exit
        return self.cost_profile.with_exit_gates(self.exit_gate_gflops, first)

    def exit_feature(self, exit_index: int) -> np.ndarray:
        """The pooled feature (D,) of an exit run this step: what the action head and the gate read."""
        if exit_index not in self._candidates:
            raise ValueError(f"exit {exit_index} has not run this step (ran {sorted(self._candidates)})")
        return self._candidates[exit_index][2].reshape(-1).float().cpu().numpy()

    def exit_score(self) -> float:
        """The gate's predicted RMS distance of the last exit's action from the full model's (0 at exit N)."""
        if self._gates is None:
            raise GateError("exit_score needs exit gates; this runner has none")
        k = max(self._candidates, default=0)
        first = self._gates.config.first_exit
        if k < first:
            raise ValueError(f"exit_score scores exits {first}..N after they run; the last exit run is {k}")
        if k >= self.model.config.num_exits:
            return 0.0  # the full model's own action
        action, _, feature = self._candidates[k]
        previous = self._candidates[k - 1][0] if k > 1 else None
        return self._gates.score(feature, action, previous, k)

    # -- SegmentedPolicy
    def reset(self) -> None:
        self._committed: LSTMState | None = None
        self._state: SegmentState | None = None
        self._frame_tokens: torch.Tensor | None = None  # this step's visual tokens (begin_step)
        self._proprio: torch.Tensor | None = None
        self._candidates: dict[int, tuple[np.ndarray, LSTMState | None, torch.Tensor]] = {}
        self._past_state: LSTMState | None = None  # history mode: the head's state after this step's past
        # committed (feature (1,1,D), proprio (1,1,P) | None) of the previous steps, oldest first
        self._past: deque[tuple[torch.Tensor, torch.Tensor | None]] = deque(maxlen=self.model.config.head.past_steps)
        # visual tokens (1,V,H) of the last past_frames committed steps, oldest first
        self._frames: deque[torch.Tensor] = deque(maxlen=self.model.config.past_frames)

    def read_instruction(self, instruction: str) -> tuple[str, list[tuple[str, str]]]:
        """``instruction`` as the model reads it: cleaned (core.instruction_text), each misspelt trained word read
        as that word (model.instruction_words, with a checkpoint that records its trained wordings); and the
        (word, read as) pairs."""
        last = self._last_read  # one tuple, swapped whole: the node's executor thread reads texts here too
        if last is not None and last[0] == instruction:  # the controller asks at every step
            return last[1], list(last[2])
        text = clean_instruction(instruction)
        read, fixed = self.trained_words.read(text) if self.trained_words is not None else (text, [])
        self._last_read = (instruction, read, tuple(fixed))
        return read, fixed

    def instruction_key(self, instruction: str) -> str:
        """``instruction`` as the tokenizer reads it: ``read_instruction``, then put through the tokenizer's own
        normalizer (case, Unicode forms). Two texts with one key are one instruction to the model ("Open the
        drawer" and "open the drawer" for a lower-casing tokenizer, "cloes the drawer" and "close the drawer")."""
        text, _ = self.read_instruction(instruction)
        normalizer = getattr(getattr(self.tokenizer, "backend_tokenizer", None), "normalizer", None)
        return normalizer.normalize_str(text) if normalizer is not None else text

    def refusal(self, instruction: str) -> NegatedInstructionError | OppositeWordsError | None:
        """Why the policy would not do ``instruction`` as meant (model.instruction_words.refusal, with this
        checkpoint's trained words and reading), or None."""
        trained = self.trained_words
        return refusal(instruction, trained.words if trained is not None else (), self.read_instruction(instruction)[0],
                       trained.stop_phrases if trained is not None else ())

    def check_instruction(self, instruction: str) -> None:
        """ValueError when the model would refuse ``instruction`` at a step: over MAX_INSTRUCTION_CHARS, no text
        once cleaned, or a refusal (``refusal``: NegatedInstructionError, OppositeWordsError)."""
        if instruction in self._token_cache:  # read before
            return
        if len(instruction) > MAX_INSTRUCTION_CHARS:
            raise ValueError(f"instruction of {len(instruction)} characters is over the {MAX_INSTRUCTION_CHARS} "
                             f"an instruction may have (the model reads its first "
                             f"{self.model.config.lm.max_text_len} tokens)")
        if not clean_instruction(instruction):  # e.g. only zero-width characters: BOS alone would still "work"
            raise ValueError(f"instruction {quoted(instruction, 80)} holds no text")
        refused = self.refusal(instruction)
        if refused is not None:
            raise refused

    def _tokens(self, instruction: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The instruction's (ids, mask), cut to ``lm.max_text_len`` tokens by the tokenizer (the whole text is
        tokenized: cutting the text first could change the tokens at the cut), and ``dropped_tokens`` set to the
        tokens past the cut. Cached, bounded in count and in size: instructions change rarely, but each text is a
        key (see TOKEN_CACHE_*). A text over MAX_INSTRUCTION_CHARS is refused (seconds of tokenizing per step
        for a megabyte, for the same max_text_len tokens)."""
        cached = self._token_cache.get(instruction)
        if cached is not None:
            self.dropped_tokens = cached[2]
            return cached[0], cached[1]
        self.check_instruction(instruction)
        # text left after cleaning always gives at least one token (byte fallback, or the unknown token)
        limit = self.model.config.lm.max_text_len
        text, _ = self.read_instruction(instruction)
        kept = encode_instruction(self.tokenizer, text, limit)
        dropped = 0
        if len(kept) >= limit:  # perhaps cut: how much the model does not read, for whoever sent it to hear
            dropped = max(0, len(encode_instruction(self.tokenizer, text)) - len(kept))
            if dropped:
                log.warning("instruction %s is %d token(s) longer than the %d the model reads; the rest is "
                            "ignored", quoted(instruction), dropped, limit)
        ids = torch.tensor([kept], dtype=torch.long)
        tokens = (ids.to(self.device), torch.ones_like(ids).to(self.device))
        if (len(self._token_cache) >= TOKEN_CACHE_ENTRIES
                or self._token_cache_chars + len(instruction) > TOKEN_CACHE_CHARS):
            self._token_cache.clear()
            self._token_cache_chars = 0
        self._token_cache[instruction] = (*tokens, dropped)
        self._token_cache_chars += len(instruction)
        self.dropped_tokens = dropped
        return tokens

    def check_observation(self, observation: Observation) -> np.ndarray | None:
        """ValueError for what ``begin_step`` refuses, before anything runs or changes (the controller asks before
        a new instruction resets the episode: a refused step must leave the history as it was); -> the
        proprioception as a float32 copy (None for a model that takes none)."""
        observation.validate(self.cameras)
        self.check_instruction(observation.instruction)
        p = self.model.config.proprio_dim
        if p == 0:
            return None
        if observation.proprio is None:
            raise ValueError(f"the policy needs proprioception ({p} values); observation has none")
        # a copy: the history keeps this step's values, and a control loop that refills one buffer would
        # otherwise rewrite every past step's proprioception (the action changed, the gripper flipped)
        arr = np.array(observation.proprio, dtype=np.float32)
        if arr.ndim != 1:
            raise ValueError(f"proprioception must be a flat array of {p} values, got shape {arr.shape}")
        # length, finite as float32 (1e300 is inf there), and a named robot's limits, as the ROS node checks
        return self._proprio_spec.check(arr)

    @torch.inference_mode()
    def begin_step(self, observation: Observation) -> None:
        arr = self.check_observation(observation)
        size = self.model.config.image_size
        images = {c: images_to_tensor([observation.images[c]], size).to(self.device) for c in self.cameras}
        ids, mask = self._tokens(observation.instruction)
        p = self.model.config.proprio_dim
        proprio = None if arr is None else torch.from_numpy(arr).to(self.device).view(1, 1, p)
        self._proprio = proprio
        past_frames = torch.stack(tuple(self._frames), dim=1) if self._frames else None
        self._state = self.model.encode(images, ids, mask, past_frames=past_frames)
        self._frame_tokens = self._state.frame_tokens
        self._candidates = {}
        self._past_state = None
        if self.model.config.head.history > 0 and self._past:
            feats = torch.cat([f for f, _ in self._past], dim=1)
            past_proprio = None if proprio is None else torch.cat([p for _, p in self._past], dim=1)  # type: ignore[misc]
            self._past_state = self.model.head.history_state(feats, past_proprio)

    @torch.inference_mode()
    def run_next_exit(self) -> np.ndarray:
        if self._state is None:
            raise RuntimeError("run_next_exit before begin_step")
        self._state = self.model.run_segment(self._state)
        k = self._state.exit_index
        assert self._state.feature is not None
        feature = self._state.feature.unsqueeze(1)
        if self.model.config.head.history > 0:
            out = self.model.head(feature, self._proprio, self._past_state)
        else:
            out = self.model.head(feature, self._proprio, self._committed)
        raw = torch.cat([out.motion[0, -1], gripper_value(out.gripper_logit[0, -1:])]).float().cpu().numpy()
        if not np.all(np.isfinite(raw)):
            raise NonFiniteActionError(f"exit {k} produced a non-finite action {raw} (bad weights or inputs)")
        self._candidates[k] = (self.action_spec.clip(raw), out.hidden, feature)
        return self._candidates[k][0]

    def commit(self, exit_index: int) -> np.ndarray:
        if exit_index not in self._candidates:
            raise ValueError(f"commit({exit_index}): that exit has not run this step (ran {sorted(self._candidates)})")
        action, hidden, feature = self._candidates[exit_index]
        if self.model.config.head.history_source == "first_exit":
            # the history keeps exit 1's step whatever exit acted (every step runs exit 1 first)
            if 1 not in self._candidates:
                raise ValueError("commit: history_source 'first_exit' keeps exit 1's feature, and exit 1 has not run")
            _, hidden, feature = self._candidates[1]
        elif self.model.config.head.history_source == "none":
            hidden = None  # every step starts the head from zero
        elif self.model.config.head.history_source == "proprio":
            feature = torch.zeros_like(feature)  # the step's proprio stays in the history, no scene feature
            if self.model.config.head.history == 0:  # one persistent state: advance it over that alone
                with torch.inference_mode():
                    hidden = self.model.head(feature, self._proprio, self._committed).hidden
        self._committed = hidden
        if self._past.maxlen:
            self._past.append((feature, self._proprio))
        if self._frames.maxlen and self._frame_tokens is not None:
            self._frames.append(self._frame_tokens)
        self._frame_tokens = None
        self._state = None  # the step is over: a new begin_step is required
        self._candidates = {}
        return action
