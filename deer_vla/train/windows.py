"""Training windows over recorded episodes.

Every window is W consecutive steps of one episode (images of every camera,
proprioception, expert actions) plus an instruction. Episodes are held in
memory as uint8 at the model's image size (small: 64x64 frames), so a
window costs one slice. Randomness (shift augmentation, paraphrase choice) is
a pure function of (seed, epoch, index): a resumed run sees the same data,
whatever the number of DataLoader workers.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from deer_vla.core.image_resize import resize_rgb_frames
from deer_vla.model.tokenizer import encode_instruction
from deer_vla.train.instruction_noise import InstructionNoise, avoid_by_task
from deer_vla.train.losses import WindowBatch

log = logging.getLogger(__name__)

# Texts whose token ids a collate keeps. A task's paraphrases are few, but instruction noise draws fresh
# variants for the whole run; the least recently used go, so memory stays flat over a long run.
COLLATE_TOKEN_CACHE = 4096


@dataclass
class EpisodeArrays:
    images: dict[str, torch.Tensor]  # cam -> (T, 3, S, S) uint8
    proprio: np.ndarray | None  # (T, P) float32
    actions: np.ndarray  # (T, A) float32
    instructions: list[str]  # paraphrases to draw from (training ones only)
    task: str


def resize_frames(frames: np.ndarray, size: int) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, size, size) uint8, resized exactly as the policy resizes camera images at run
    time (``core.image_resize``), so a model trains on the pixels it will see."""
    x = np.ascontiguousarray(frames)
    if x.shape[1:3] != (size, size):
        x = resize_rgb_frames(x, size)
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()


def random_shift(frames: torch.Tensor, pad: int, rng: np.random.Generator) -> torch.Tensor:
    """Random-shift augmentation (DrQ) of a window of (T, 3, S, S) uint8 frames: a crop of the window
    replicate-padded by ``pad`` pixels, one offset per window and camera, as if the camera had moved a little.
    Only the drawn window is padded (uint8, no float copy); uint8 in/out."""
    if pad <= 0:
        return frames
    dy, dx = (int(v) for v in rng.integers(0, 2 * pad + 1, size=2))
    h, w = frames.shape[-2], frames.shape[-1]
    padded = F.pad(frames, (pad, pad, pad, pad), mode="replicate")
    return padded[..., dy : dy + h, dx : dx + w].contiguous()


class WindowDataset(Dataset):
    """All windows of length ``window`` inside the given episodes (no padding across episode ends)."""

    def __init__(
        self,
        episodes: Sequence[EpisodeArrays],
        window: int,
        shift_pad: int = 4,
        paraphrase: bool = True,
        seed: int = 0,
        instruction_noise: InstructionNoise | None = None,
        heldout: Sequence[str] = (),
    ) -> None:
        if window < 2:
            raise ValueError(f"window must be >= 2 steps, got {window}")
        # Frames stay as loaded (shared with the caller): a window is padded and cropped when drawn, so the
        # data set costs its frames once, not again as a padded copy (128-px MT50: 7.6 GiB, not 17).
        self.episodes = list(episodes)
        self.window = window
        self.shift_pad = shift_pad
        self.paraphrase = paraphrase
        self.instruction_noise = instruction_noise
        # what noise must not turn an episode's instruction into: held-out and other tasks' instructions
        texts: dict[str, set[str]] = {}
        for ep in self.episodes:
            texts.setdefault(ep.task, set()).update(ep.instructions)
        self._avoid = avoid_by_task(texts, heldout) if instruction_noise is not None else {}
        self.seed = seed
        self.epoch = 0
        index: list[tuple[int, int]] = []
        short = 0
        for e, ep in enumerate(self.episodes):
            n = ep.actions.shape[0]
            if n < window:
                short += 1
                continue
            index.extend((e, s) for s in range(n - window + 1))
        if not index:
            lengths = sorted({ep.actions.shape[0] for ep in self.episodes})
            raise ValueError(
                f"no episode is at least window={window} steps long (episode lengths: {lengths[:10]}); "
                "lower `window` or record longer episodes"
            )
        if short:
            log.warning("%d of %d episodes are shorter than the window (%d): skipped", short, len(episodes), window)
        self.index = index

    def __len__(self) -> int:
        return len(self.index)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int) -> dict:
        e, s = self.index[i]
        ep = self.episodes[e]
        rng = np.random.default_rng((self.seed, self.epoch, i))
        sl = slice(s, s + self.window)
        images = {cam: random_shift(frames[sl], self.shift_pad, rng) for cam, frames in ep.images.items()}
        instr = ep.instructions[int(rng.integers(len(ep.instructions)))] if self.paraphrase else ep.instructions[0]
        if self.instruction_noise is not None:
            instr = self.instruction_noise.apply(instr, rng, self._avoid[ep.task])
        return {
            "images": images,
            "instruction": instr,
            "anchor": ep.instructions[0],  # the recorded instruction (train.data.task_paraphrases puts it first)
            "proprio": None if ep.proprio is None else torch.from_numpy(ep.proprio[sl]),
            "actions": torch.from_numpy(ep.actions[sl]),
        }


def make_collate(
    tokenizer: Callable, max_text_len: int | None = None, anchor: bool = False
) -> Callable[[list[dict]], WindowBatch]:
    """Collate window dicts into a WindowBatch: stack, scale images to [0, 1], tokenize with padding
    (truncated to ``max_text_len`` like the runner does at run time); ``anchor`` also tokenizes each
    window's recorded instruction (the wording_consistency loss term reads it)."""

    @functools.lru_cache(maxsize=COLLATE_TOKEN_CACHE)  # instructions repeat constantly: tokenize each once
    def ids_of(text: str) -> tuple[int, ...]:  # as the runner reads it (model.tokenizer.encode_instruction)
        return tuple(encode_instruction(tokenizer, text, max_text_len))

    pad_id = int(getattr(tokenizer, "pad_token_id", 0) or 0)

    def padded(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        seqs = [ids_of(t) for t in texts]
        length = max(len(q) for q in seqs)
        ids = torch.tensor([[*q, *[pad_id] * (length - len(q))] for q in seqs], dtype=torch.long)
        mask = torch.tensor([[1] * len(q) + [0] * (length - len(q)) for q in seqs], dtype=torch.long)
        return ids, mask

    def collate(items: list[dict]) -> WindowBatch:
        cams = items[0]["images"].keys()
        images = {c: torch.stack([it["images"][c] for it in items]).float().div_(255.0) for c in cams}
        input_ids, attention_mask = padded([it["instruction"] for it in items])
        anchor_ids, anchor_mask = padded([it["anchor"] for it in items]) if anchor else (None, None)
        proprio = None if items[0]["proprio"] is None else torch.stack([it["proprio"] for it in items]).float()
        return WindowBatch(
            images=images,
            input_ids=input_ids,
            attention_mask=attention_mask,
            proprio=proprio,
            actions=torch.stack([it["actions"] for it in items]).float(),
            anchor_ids=anchor_ids,
            anchor_mask=anchor_mask,
        )

    return collate
