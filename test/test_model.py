"""Model: config validation, segment-at-a-time == one-shot, checkpoints (partial, malformed), runner, profile."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import INSTRUCTIONS, build_tiny_checkpoint

from deer_vla.core import Observation
from deer_vla.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from deer_vla.model.config import PolicyConfig
from deer_vla.model.head import gripper_value
from deer_vla.model.policy import MultiExitPolicy
from deer_vla.model.presets import preset_config
from deer_vla.model.profiling import analytic_llm_flops, count_flops, profile_policy
from deer_vla.model.runner import PolicyRunner
from deer_vla.model.tokenizer import build_word_tokenizer, load_tokenizer

TEXTS = ["open the drawer", "push the red button to the left", "close the window"]


@pytest.fixture(scope="module")
def tiny() -> tuple[MultiExitPolicy, object]:
    torch.manual_seed(0)
    model = MultiExitPolicy(preset_config("tiny")).eval()
    # open the gates so cross-attention really changes the LM (gates start closed)
    with torch.no_grad():
        for block in model.xattn.values():
            block.attn_gate.fill_(0.7)
            block.ff_gate.fill_(-0.4)
    return model, build_word_tokenizer(TEXTS)


@pytest.fixture(scope="module")
def ckpt(tiny, tmp_path_factory) -> Path:
    model, _ = tiny
    return build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", model=model, texts=TEXTS, eta=None)


def _inputs(model: MultiExitPolicy, tok, batch: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    s = model.config.image_size
    enc = tok(TEXTS[:batch], padding=True, return_tensors="pt")
    images = {c: torch.rand(batch, 3, s, s, generator=g) for c in model.config.cameras}
    proprio = torch.rand(batch, model.config.proprio_dim, generator=g)
    return images, enc["input_ids"], enc["attention_mask"], proprio


def _obs(model: MultiExitPolicy, seed: int, instruction: str = "open the drawer", size: int = 48) -> Observation:
    rng = np.random.default_rng(seed)
    imgs = {c: rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for c in model.config.cameras}
    return Observation(images=imgs, instruction=instruction, proprio=rng.uniform(-1, 1, model.config.proprio_dim))


def _play(model: MultiExitPolicy, tok, steps: list[Observation], commits: list[int]) -> list[np.ndarray]:
    """A fresh runner over ``steps``, every exit run and exit ``commits[t]`` committed at step t: each step's
    candidates (N, A), oldest first."""
    runner = PolicyRunner(model, tok)
    out = []
    for o, k in zip(steps, commits, strict=True):
        runner.begin_step(o)
        out.append(np.array([runner.run_next_exit() for _ in range(runner.num_exits)]))
        runner.commit(k)
    return out


# --- config ---------------------------------------------------------------------------------


def test_presets_validate_and_roundtrip_json():
    for name in ("tiny", "default", "1b", "mpt1b"):
        cfg = preset_config(name)
        assert PolicyConfig.model_validate_json(cfg.model_dump_json()) == cfg
    mpt = preset_config("mpt1b")  # the original DeeR's MPT-1B layout: 24 layers, 12 exits, xattn at every layer
    assert mpt.lm.family == "mpt" and mpt.lm.num_layers == 24 and mpt.num_exits == 12
    assert mpt.cross_attn_layers() == list(range(24))
    d = preset_config("default")
    assert d.num_exits == 12 and d.lm.hidden_size == 128 and d.image_size == 64
    assert d.cross_attn_layers() == [0, 2, 4, 6, 8, 10]
    with pytest.raises(ValueError, match="unknown model preset 'huge'"):
        preset_config("huge")


def test_config_rejects_unknown_and_bad_keys():
    data = preset_config("tiny").model_dump()
    data["head"]["hiden"] = 3
    with pytest.raises(ValueError, match="hiden"):
        PolicyConfig.model_validate(data)
    data = preset_config("tiny").model_dump()
    data["exits"] = {"layers_per_exit": None, "boundaries": [1, 3, 3]}
    with pytest.raises(ValueError, match="boundaries"):
        PolicyConfig.model_validate(data)
    data["exits"] = {"layers_per_exit": 3, "boundaries": None}
    with pytest.raises(ValueError, match="must divide the 4 decoder layers"):
        PolicyConfig.model_validate(data)
    data["exits"] = {"layers_per_exit": None, "boundaries": [1, 4]}
    assert PolicyConfig.model_validate(data).segment_ends() == [1, 4]


# --- forward --------------------------------------------------------------------------------


def test_gates_start_closed():
    model = MultiExitPolicy(preset_config("tiny"))
    assert len(model.xattn) == 2
    gates = [float(g.detach()) for b in model.xattn.values() for g in (b.attn_gate, b.ff_gate)]
    assert gates == [0.0] * 4


@pytest.mark.parametrize("boundaries", [None, [1, 3, 4]])
def test_segment_at_a_time_equals_one_shot_for_every_exit(tiny, boundaries):
    model, tok = tiny
    if boundaries is not None:
        data = model.config.model_dump()
        data["exits"] = {"layers_per_exit": None, "boundaries": boundaries}
        model2 = MultiExitPolicy(PolicyConfig.model_validate(data)).eval()
        model2.load_state_dict({k: v for k, v in model.state_dict().items() if k in model2.state_dict()},
                               strict=False)
        model = model2
    images, ids, mask, proprio = _inputs(model, tok)
    assert not bool(mask.all()), "the batch should contain padding"
    with torch.no_grad():
        full = model.exit_features(images, ids, mask, proprio)
        assert full.shape == (3, model.num_exits, model.feature_dim)
        state = model.encode(images, ids, mask, proprio)
        for k in range(1, model.num_exits + 1):
            state = model.run_segment(state)
            assert state.exit_index == k
            truncated = model.exit_features(images, ids, mask, proprio, max_exit=k)
            assert truncated.shape[1] == k
            torch.testing.assert_close(state.feature, truncated[:, -1], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(state.feature, full[:, k - 1], rtol=1e-5, atol=1e-6)
            a = model.head(state.feature[:, None], proprio[:, None])
            b = model.head(truncated[:, -1:], proprio[:, None])
            torch.testing.assert_close(a.motion, b.motion)
            torch.testing.assert_close(a.gripper_logit, b.gripper_logit)
        with pytest.raises(IndexError, match="already ran"):
            model.run_segment(state)
    # exits differ from each other (the features really come from different depths)
    assert float((full[:, 0] - full[:, -1]).abs().max()) > 1e-3


def test_padding_does_not_change_features(tiny):
    model, tok = tiny
    images, _, _, proprio = _inputs(model, tok, batch=1)
    short = tok(["open the drawer"], return_tensors="pt")
    padded = tok(["open the drawer"], padding="max_length", max_length=9, return_tensors="pt")
    with torch.no_grad():
        a = model.exit_features(images, short["input_ids"], short["attention_mask"], proprio)
        b = model.exit_features(images, padded["input_ids"], padded["attention_mask"], proprio)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_heads_output_shapes_and_ranges(tiny):
    model, _ = tiny
    feats = torch.randn(2, 5, model.feature_dim) * 10
    with torch.no_grad():
        out = model.head(feats, torch.randn(2, 5, 4))
    assert out.motion.shape == (2, 5, 3) and out.gripper_logit.shape == (2, 5)
    assert float(out.motion.abs().max()) <= 1.0
    assert len(model.aux_heads) == model.num_exits
    aux = model.aux_heads[0](feats, None)
    assert aux.motion.shape == (2, 5, 3) and aux.hidden is None
    with pytest.raises(ValueError, match="proprio must be"):
        model.head(feats, torch.randn(2, 5, 3))
    # the LSTM run step by step with carried state equals the run over the whole window
    h = None
    for t in range(5):
        step = model.head(feats[:, t : t + 1], torch.zeros(2, 1, 4), h)
        h = step.hidden
    torch.testing.assert_close(step.motion[:, 0], model.head(feats, torch.zeros(2, 5, 4)).motion[:, -1])


# --- tokenizer ------------------------------------------------------------------------------


def test_word_tokenizer_roundtrip(tmp_path):
    tok = build_word_tokenizer(TEXTS)
    enc = tok(["Open the DRAWER", "open the cupboard"], padding=True)
    assert enc["input_ids"][0][:3] == tok("open the drawer")["input_ids"]
    assert tok.unk_token_id in enc["input_ids"][1] and tok.pad_token_id == 0
    tok.save_pretrained(tmp_path)
    back = load_tokenizer(tmp_path)
    assert back("push the red button")["input_ids"] == tok("push the red button")["input_ids"]
    assert len(back) == len(tok)
    with pytest.raises(ValueError, match="at least one"):
        build_word_tokenizer(["   "])
    # a file that loads but cannot encode (its unknown token missing from the vocabulary) used to fail at every
    # instruction, at run time, with a bare Exception: it is refused when loaded, naming the file
    data = json.loads((tmp_path / "tokenizer.json").read_text())
    del data["model"]["vocab"]["[UNK]"]
    (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"tokenizer .*tokenizer.json loads but cannot encode text"):
        load_tokenizer(tmp_path)


# --- checkpoints ----------------------------------------------------------------------------


def test_checkpoint_roundtrip_and_partial_loading(tiny, ckpt):
    model, tok = tiny
    assert sorted(p.name for p in ckpt.iterdir()) >= ["config.json", "model.safetensors", "tokenizer.json"]
    loaded, tok2 = load_checkpoint(ckpt)
    images, ids, mask, proprio = _inputs(model, tok)
    with torch.no_grad():
        torch.testing.assert_close(loaded.exit_features(images, ids, mask, proprio),
                                   model.exit_features(images, ids, mask, proprio))
    assert tok2("open the drawer")["input_ids"] == tok("open the drawer")["input_ids"]

    full_prof = profile_policy(loaded, latency=False)
    counts = []
    for k in range(1, model.num_exits + 1):
        part, _ = load_checkpoint(ckpt, max_exit=k)
        assert part.num_exits == k and len(part.lm.layers) == part.segment_ends[-1]
        n_params = sum(p.numel() for p in part.parameters())
        n_bytes = sum(t.numel() * t.element_size() for t in [*part.parameters(), *part.buffers()])
        assert n_params == full_prof.params[k - 1] and n_bytes == full_prof.weight_bytes[k - 1]
        with torch.no_grad():
            torch.testing.assert_close(part.exit_features(images, ids, mask, proprio),
                                       model.exit_features(images, ids, mask, proprio, max_exit=k))
        counts.append(n_params)
    assert all(a < b for a, b in zip(counts, counts[1:]))
    with pytest.raises(CheckpointError, match="max_exit=9"):
        load_checkpoint(ckpt, max_exit=9)


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _edit_config(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def mutate(d: Path) -> None:
        cfg = json.loads((d / "config.json").read_text())
        change(cfg)
        (d / "config.json").write_text(json.dumps(cfg))

    return mutate


def _set_layers(cfg: dict) -> None:
    cfg["lm"]["hf_config"]["num_hidden_layers"] = 6
    cfg["exits"]["layers_per_exit"] = 2


MALFORMED = {
    "no weights": (lambda d: (d / "model.safetensors").unlink(), "model.safetensors"),
    "no tokenizer": (lambda d: [(d / f).unlink() for f in ("tokenizer.json", "tokenizer_config.json")], "tokenizer"),
    "unknown config key": (_edit_config(lambda c: c["resampler"].update(num_latens=4)),
                           r"config\.json: resampler\.num_latens: unknown key"),
    "missing config key": (_edit_config(lambda c: c.pop("lm")), r"config\.json: lm: Field required"),
    "tensor shape": (_edit_config(lambda c: c["head"].update(hidden=48)),
                     r"'head\.lstm\.weight_ih_l0' has shape \(128, 40\), config expects \(192, 40\)"),
    "missing tensors": (_edit_config(_set_layers), r"missing tensors \['lm\.layers\.4\."),
    "config not JSON": (lambda d: (d / "config.json").write_text("{not json"), r"invalid .*config\.json: not JSON"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_checkpoint_names_the_file_and_the_problem(ckpt, tmp_path, case):
    mutate, message = MALFORMED[case]
    d = _copy(ckpt, tmp_path / "bad")
    mutate(d)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(d)


def test_a_missing_checkpoint_directory_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint directory not found: .*nope"):
        load_checkpoint(tmp_path / "nope")


def test_a_tokenizer_larger_than_the_token_vocabulary_is_not_saved(tiny, tmp_path):
    model, _ = tiny
    big = build_word_tokenizer([" ".join(f"w{i}" for i in range(600))])
    with pytest.raises(CheckpointError, match=r"token vocabulary \(lm.hf_config.vocab_size\)"):
        save_checkpoint(model, big, tmp_path / "big_vocab")


def test_a_partially_loaded_model_is_not_saved(tiny, ckpt, tmp_path):
    _, tok = tiny
    part, _ = load_checkpoint(ckpt, max_exit=2)
    with pytest.raises(CheckpointError, match="partially loaded"):
        save_checkpoint(part, tok, tmp_path / "partial")


# --- runner ---------------------------------------------------------------------------------


def test_runner_commit_advances_only_with_the_committed_exit(tiny, ckpt):
    model, tok = tiny
    runner = PolicyRunner.from_checkpoint(ckpt)
    assert runner.num_exits == 4 and runner.cameras == ("static", "wrist") and runner.action_spec.dim == 4
    obs0, obs1 = _obs(model, 0), _obs(model, 1)

    runner.begin_step(obs0)
    step0 = [runner.run_next_exit() for _ in range(runner.num_exits)]
    assert all(a.shape == (4,) and np.all(np.abs(a) <= 1) for a in step0)
    assert not np.allclose(step0[0], step0[-1])
    np.testing.assert_array_equal(runner.commit(2), step0[1])
    runner.begin_step(obs1)
    step1 = [runner.run_next_exit() for _ in range(3)]

    # reference by hand: head history = [exit-2 feature of step 0], candidates from that state
    size = model.config.image_size
    from deer_vla.model.preprocess import images_to_tensor

    def feats(obs):
        imgs = {c: images_to_tensor([obs.images[c]], size) for c in model.config.cameras}
        enc = tok([obs.instruction], return_tensors="pt")
        return model.exit_features(imgs, enc["input_ids"], enc["attention_mask"])[0]

    with torch.no_grad():
        f0, f1 = feats(obs0), feats(obs1)
        p0 = torch.tensor(obs0.proprio, dtype=torch.float32).view(1, 1, -1)
        p1 = torch.tensor(obs1.proprio, dtype=torch.float32).view(1, 1, -1)
        h = model.head(f0[1].view(1, 1, -1), p0).hidden
        for k in range(3):
            out = model.head(f1[k].view(1, 1, -1), p1, h)
            ref = torch.cat([out.motion[0, 0], gripper_value(out.gripper_logit[0])]).numpy()
            np.testing.assert_allclose(step1[k], ref, rtol=1e-5, atol=1e-6)
        # committing a different exit at step 0 would have given different step-1 actions
        h_other = model.head(f0[3].view(1, 1, -1), p0).hidden
        other = model.head(f1[0].view(1, 1, -1), p1, h_other).motion[0, 0].numpy()
    assert not np.allclose(other, step1[0][:3])
    with pytest.raises(ValueError, match=r"commit\(4\): that exit has not run"):
        runner.commit(4)

    # reset clears history: the first step after reset repeats step 0 exactly
    runner.reset()
    runner.begin_step(obs0)
    np.testing.assert_array_equal(runner.run_next_exit(), step0[0])


def test_runner_history_window_matches_a_training_window(tiny):
    """head.history=N: each candidate is the head run from zero over the last N committed steps."""
    model, tok = tiny
    model.config.head.history = 2
    try:
        runner = PolicyRunner(model, tok)
        obs = [_obs(model, s) for s in range(3)]
        committed, last = [], None
        for o in obs:
            runner.begin_step(o)
            cands = [runner.run_next_exit() for _ in range(runner.num_exits)]
            runner.commit(3)
            committed.append((o, 3))
            last = cands
        size = model.config.image_size
        from deer_vla.model.preprocess import images_to_tensor

        def feat_proprio(o, k):
            imgs = {c: images_to_tensor([o.images[c]], size) for c in model.config.cameras}
            enc = tok([o.instruction], return_tensors="pt")
            f = model.exit_features(imgs, enc["input_ids"], enc["attention_mask"])[0, k - 1]
            return f.view(1, 1, -1), torch.tensor(o.proprio, dtype=torch.float32).view(1, 1, -1)

        with torch.no_grad():
            f1, p1 = feat_proprio(obs[1], 3)  # the window at step 2 = [step 1 at exit 3, step 2 at exit k]
            for k in (1, 4):
                f2, p2 = feat_proprio(obs[2], k)
                out = model.head(torch.cat([f1, f2], 1), torch.cat([p1, p2], 1))
                ref = torch.cat([out.motion[0, -1], gripper_value(out.gripper_logit[0, -1:])]).numpy()
                np.testing.assert_allclose(last[k - 1], ref, rtol=1e-5, atol=1e-6)
            # step 0 dropped out of the window: a window of 3 would differ
            f0, p0 = feat_proprio(obs[0], 3)
            f2, p2 = feat_proprio(obs[2], 1)
            longer = model.head(torch.cat([f0, f1, f2], 1), torch.cat([p0, p1, p2], 1)).motion[0, -1].numpy()
        assert not np.allclose(longer, last[0][:3])
    finally:
        model.config.head.history = 0


def test_first_exit_history_runner_matches_training_and_ignores_the_committed_exits(tiny):
    """history_source="first_exit": the runner's candidate at step t is the head over exit 1's features of the
    earlier steps and exit k's of step t, exactly what training computes (ActionHead.forward_over_history), so
    the depths committed before leave every later action unchanged."""
    model, tok = tiny
    model.config.head.history = 3
    model.config.head.history_source = "first_exit"
    try:
        obs = [_obs(model, s) for s in range(4)]

        shallow, deep = _play(model, tok, obs, [1, 1, 1, 1]), _play(model, tok, obs, [4, 2, 3, 4])
        np.testing.assert_array_equal(np.array(shallow), np.array(deep))
        size = model.config.image_size
        from deer_vla.model.preprocess import images_to_tensor

        with torch.no_grad():
            feats = torch.stack([model.exit_features(
                {c: images_to_tensor([o.images[c]], size) for c in model.config.cameras},
                *tok([o.instruction], return_tensors="pt").values())[0] for o in obs[1:]])[None]  # (1, 3, N, D)
            proprio = torch.tensor(np.stack([o.proprio for o in obs[1:]]), dtype=torch.float32)[None]
            for k in (1, 2, 4):  # the window of the last step = obs[1:]: history at exit 1, current at exit k
                out = model.head.forward_over_history(feats[:, :, 0], feats[:, :, k - 1], proprio)
                ref = torch.cat([out.motion[0, -1], gripper_value(out.gripper_logit[0, -1:])]).numpy()
                np.testing.assert_allclose(deep[-1][k - 1], ref, rtol=1e-5, atol=1e-6)
            # at t = 0 the output is the head on the current step alone; the committed-history head differs
            first = model.head.forward_over_history(feats[:, :, 0], feats[:, :, 3], proprio)
            alone = model.head(feats[:, :1, 3], proprio[:, :1])
            torch.testing.assert_close(first.motion[:, 0], alone.motion[:, 0])
            committed = model.head(feats[:, :, 3], proprio)
        assert not torch.allclose(first.motion[:, -1], committed.motion[:, -1])
    finally:
        model.config.head.history = 0
        model.config.head.history_source = "committed"


@pytest.mark.parametrize("history,source", [(0, "proprio"), (0, "committed"), (3, "proprio"), (3, "first_exit")])
def test_the_profile_charges_every_head_step_a_runner_step_runs(tiny, history, source):
    """The profile charges one head step per exit tried, plus those run once per step (the history window's
    state, or, with "proprio" and one persistent state, the commit that advances it over the step's proprio).
    The commit's step went uncharged: the average tracker and head_ms ran under the truth."""
    from deer_vla.model.profiling import count_flops

    model, tok = tiny
    model.config.head.history, model.config.head.history_source = history, source
    calls = []
    hook = model.head.register_forward_hook(lambda *_: calls.append(1))
    try:
        flops = count_flops(model)
        model.config.head.history_source = "committed"  # the same head and encode without the commit's step
        base = count_flops(model)
        model.config.head.history_source = source
        runner = PolicyRunner(model, tok)
        runner.begin_step(_obs(model, 0))
        for _ in range(2):
            runner.run_next_exit()
        calls.clear()
        runner.commit(2)
        commit_calls = len(calls)
    finally:
        hook.remove()
        model.config.head.history, model.config.head.history_source = 0, "committed"
    assert commit_calls == (1 if (history, source) == (0, "proprio") else 0)
    assert flops["head"] == base["head"] and flops["head"] > 0
    assert flops["encode"] == pytest.approx(base["encode"] + commit_calls * flops["head"], rel=1e-9)


def test_proprio_history_runner_sees_past_steps_through_their_proprioception_alone(tiny):
    """history_source="proprio": the history holds zero features, so neither the depths committed before nor
    the past steps' images change a later action, their proprioception does, and the candidate is exactly
    what training computes (forward_over_history over zero features)."""
    model, tok = tiny
    model.config.head.history = 3
    model.config.head.history_source = "proprio"
    try:
        obs = [_obs(model, s) for s in range(4)]
        other_images = [Observation(images=_obs(model, 10 + s).images, instruction=o.instruction,
                                    proprio=o.proprio) for s, o in enumerate(obs[:-1])] + [obs[-1]]
        other_proprio = [Observation(images=o.images, instruction=o.instruction, proprio=-o.proprio)
                         for o in obs[:-1]] + [obs[-1]]

        def play(steps: list[Observation], commits: list[int]) -> np.ndarray:
            return _play(model, tok, steps, commits)[-1]

        for history in (0, 3):  # 0: one persistent LSTM state, which must not carry the scene either
            model.config.head.history = history
            reference = play(obs, [1, 1, 1, 1])
            np.testing.assert_array_equal(np.array(reference), np.array(play(obs, [4, 2, 3, 4])))
            np.testing.assert_allclose(np.array(reference), np.array(play(other_images, [4, 4, 4, 4])), atol=1e-6)
            assert not np.allclose(np.array(reference), np.array(play(other_proprio, [1, 1, 1, 1])), atol=1e-4)
        from deer_vla.model.preprocess import images_to_tensor

        size = model.config.image_size
        with torch.no_grad():
            feats = torch.stack([model.exit_features(
                {c: images_to_tensor([o.images[c]], size) for c in model.config.cameras},
                *tok([o.instruction], return_tensors="pt").values())[0] for o in obs[1:]])[None]  # (1, 3, N, D)
            proprio = torch.tensor(np.stack([o.proprio for o in obs[1:]]), dtype=torch.float32)[None]
            for k in (1, 4):
                out = model.head.forward_over_history(torch.zeros_like(feats[:, :, 0]), feats[:, :, k - 1], proprio)
                ref = torch.cat([out.motion[0, -1], gripper_value(out.gripper_logit[0, -1:])]).numpy()
                np.testing.assert_allclose(reference[k - 1], ref, rtol=1e-5, atol=1e-6)
    finally:
        model.config.head.history = 0
        model.config.head.history_source = "committed"


def test_no_history_runner_reads_the_current_step_alone(tiny):
    """history_source="none": each candidate is the head on the current step alone, from a zero state (what
    training's forward_per_step computes), so earlier steps, their depths and proprioception change nothing."""
    model, tok = tiny
    model.config.head.history_source = "none"
    try:
        obs = [_obs(model, s) for s in range(3)]
        others = [_obs(model, 10 + s) for s in range(2)] + [obs[-1]]

        def play(steps: list[Observation], commits: list[int]) -> np.ndarray:
            return _play(model, tok, steps, commits)[-1]

        for history in (0, 3):
            model.config.head.history = history
            reference = play(obs, [1, 1, 1])
            np.testing.assert_allclose(np.array(reference), np.array(play(others, [4, 2, 4])), atol=1e-6)
            np.testing.assert_allclose(np.array(reference), np.array(play(obs[-1:], [4])), atol=1e-6)
        from deer_vla.model.preprocess import images_to_tensor

        size = model.config.image_size
        with torch.no_grad():
            feats = model.exit_features({c: images_to_tensor([obs[-1].images[c]], size) for c in model.config.cameras},
                                        *tok([obs[-1].instruction], return_tensors="pt").values())
            proprio = torch.tensor(obs[-1].proprio, dtype=torch.float32).view(1, 1, -1)
            out = model.head.forward_per_step(feats[:, None, 1], proprio)
        ref = torch.cat([out.motion[0, -1], gripper_value(out.gripper_logit[0, -1:])]).numpy()
        np.testing.assert_allclose(reference[1], ref, rtol=1e-5, atol=1e-6)
        model.config.head.history_source = "committed"  # the control: a remembering head sees the past
        assert not np.allclose(np.array(play(obs, [1, 1, 1])), np.array(play(others, [4, 2, 4])), atol=1e-4)
    finally:
        model.config.head.history = 0
        model.config.head.history_source = "committed"


def _past_frames_model(past_frames: int) -> MultiExitPolicy:
    torch.manual_seed(1)
    cfg = preset_config("tiny").model_copy(update={"past_frames": past_frames})
    model = MultiExitPolicy(cfg).eval()
    with torch.no_grad():  # open the gates, as in ``tiny``: closed ones would hide what cross-attention reads
        for block in model.xattn.values():
            block.attn_gate.fill_(0.7)
            block.ff_gate.fill_(-0.4)
    return model


def test_past_frames_runner_reads_the_steps_training_windows_give_it(tiny):
    """past_frames=K: the runner's features at step t are a training window's at t (window_visual: the K steps
    before t, the first step repeated where the episode has none), images of steps within K change the step's
    action, older ones do not, and so does the frames' order (each frame has its own embedding)."""
    _, tok = tiny
    model = _past_frames_model(2)
    model.config.head.history = 3
    model.config.head.history_source = "proprio"  # the past reaches the head through the decoder alone
    obs = [_obs(model, s) for s in range(5)]

    def play(steps: list[Observation]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        runner = PolicyRunner(model, tok)
        features, actions = [], []
        for o in steps:
            runner.begin_step(o)
            actions.append(np.array([runner.run_next_exit() for _ in range(runner.num_exits)]))
            features.append(np.stack([runner.exit_feature(k) for k in range(1, runner.num_exits + 1)]))
            runner.commit(1)
        return features, actions

    features, actions = play(obs)
    from deer_vla.model.preprocess import images_to_tensor

    size = model.config.image_size
    images = {c: torch.cat([images_to_tensor([o.images[c]], size) for o in obs]) for c in model.config.cameras}
    enc = tok([obs[0].instruction] * len(obs), return_tensors="pt")
    with torch.no_grad():
        window = model.exit_features(images, enc["input_ids"], enc["attention_mask"], window=len(obs))
    np.testing.assert_allclose(np.stack(features), window.numpy(), rtol=1e-4, atol=1e-5)

    def swapped(step: int) -> list[Observation]:
        other = _obs(model, 20 + step)
        return [Observation(images=other.images, instruction=o.instruction, proprio=o.proprio) if i == step else o
                for i, o in enumerate(obs)]

    assert not np.allclose(play(swapped(2))[1][-1], actions[-1], atol=1e-4)  # step 2 is in step 4's context
    np.testing.assert_allclose(play(swapped(1))[1][-1], actions[-1], rtol=1e-5, atol=1e-6)  # step 1 is not
    without = _past_frames_model(0)
    without.load_state_dict({k: v for k, v in model.state_dict().items() if k != "frame_embed"})
    without.config.head.history, without.config.head.history_source = 3, "proprio"
    last = _play(without, tok, swapped(3), [1] * len(obs))[-1]
    ref = _play(without, tok, obs, [1] * len(obs))[-1]
    np.testing.assert_allclose(np.array(last), np.array(ref), rtol=1e-5, atol=1e-6)  # no past frames: blind to it
    with torch.no_grad():  # the order matters: the same frames, oldest and newest swapped, read differently
        tokens = torch.rand(1, 3, 4, model.feature_dim)
        forward = model.with_past_frames(tokens[:, 2], tokens[:, :2])
        backward = model.with_past_frames(tokens[:, 0], tokens[:, 1:].flip(1))
    assert not torch.allclose(forward, backward)


def test_past_frames_survive_a_checkpoint_and_bad_contexts_are_refused(tiny, tmp_path):
    _, tok = tiny
    model = _past_frames_model(2)
    save_checkpoint(model, tok, tmp_path / "frames")
    loaded, _ = load_checkpoint(tmp_path / "frames")
    assert loaded.config.past_frames == 2
    assert loaded.frame_embed is not None
    torch.testing.assert_close(loaded.frame_embed, model.frame_embed)
    current = torch.rand(2, 4, model.feature_dim)
    assert model.with_past_frames(current).shape == (2, 12, model.feature_dim)
    with pytest.raises(ValueError, match="3 past frames given; the model reads 2"):
        model.with_past_frames(current, torch.rand(2, 3, 4, model.feature_dim))
    with pytest.raises(ValueError, match="past frames must be"):
        model.with_past_frames(current, torch.rand(2, 1, 5, model.feature_dim))
    images, ids, mask, _ = _inputs(model, tok, batch=3)
    with pytest.raises(ValueError, match="does not divide"):
        model.encode(images, ids, mask, window=2)
    with pytest.raises(ValueError, match="past_frames"):
        PolicyConfig.model_validate({**preset_config("tiny").model_dump(), "past_frames": -1})


def test_runner_rejects_bad_inputs_and_nan(tiny, ckpt, tmp_path):
    model, _ = tiny
    runner = PolicyRunner.from_checkpoint(ckpt)
    with pytest.raises(RuntimeError, match="before begin_step"):
        runner.run_next_exit()
    obs = _obs(model, 0)
    obs.proprio = np.array([0.0, np.nan, 0.0, 0.0])
    with pytest.raises(ValueError, match="NaN"):
        runner.begin_step(obs)
    obs = _obs(model, 0)
    obs.proprio = np.zeros(3)
    with pytest.raises(ValueError, match="3 values, the model takes 4"):
        runner.begin_step(obs)
    obs = _obs(model, 0)
    del obs.images["wrist"]
    with pytest.raises(ValueError, match="wrist"):
        runner.begin_step(obs)
    # NaN weights -> a clear error, never a NaN action
    broken = PolicyRunner.from_checkpoint(ckpt)
    with torch.no_grad():
        broken.model.head.motion.bias.fill_(float("nan"))
    broken.begin_step(_obs(model, 0))
    with pytest.raises(FloatingPointError, match="exit 1 produced a non-finite action"):
        broken.run_next_exit()


def test_runner_token_cache_is_bounded_in_size_and_keeps_the_tokens(ckpt, monkeypatch):
    """The instruction token cache was bounded in count only (257 texts of any length were kept). It is also
    bounded in characters; a text over the longest an instruction may be is refused (it was tokenized whole at
    every step: seconds for a megabyte), and an instruction that holds no text is named by its start and
    length, not in full."""
    from deer_vla.model import runner as runner_module

    monkeypatch.setattr(runner_module, "TOKEN_CACHE_CHARS", 200)
    monkeypatch.setattr(runner_module, "MAX_INSTRUCTION_CHARS", 100)
    runner = PolicyRunner.from_checkpoint(ckpt)
    max_len = runner.model.config.lm.max_text_len
    for k in range(12):  # 16 to 159 characters
        text = "open the drawer " + "and close it " * k
        if len(text) > 100:
            with pytest.raises(ValueError, match=f"instruction of {len(text)} characters is over the 100"):
                runner._tokens(text)
            continue
        ids, mask = runner._tokens(text)
        expected = runner.tokenizer([text], truncation=True, max_length=max_len, return_tensors="pt")
        assert torch.equal(ids, expected["input_ids"]) and torch.equal(mask, expected["attention_mask"])
        assert runner._tokens(text)[0].tolist() == ids.tolist()
        assert text in runner._token_cache
        assert sum(map(len, runner._token_cache)) <= 200
    with pytest.raises(ValueError, match="holds no text") as exc:
        runner._tokens(" " * 90)
    assert "90 characters" in str(exc.value) and len(str(exc.value)) < 200


def test_runner_says_how_much_of_a_long_instruction_the_model_does_not_read(ckpt, caplog):
    """The model reads the first lm.max_text_len tokens: a longer instruction lost its last words without a
    word, so "... please open the drawer" and "... please close the drawer" were one input. The runner counts
    the tokens it drops (the policy node reports them) and logs it once per text."""
    import logging

    runner = PolicyRunner.from_checkpoint(ckpt)
    max_len = runner.model.config.lm.max_text_len
    runner._tokens("open the drawer")
    assert runner.dropped_tokens == 0
    long = "open the drawer " * max_len
    whole = len(runner.tokenizer(long)["input_ids"])
    with caplog.at_level(logging.WARNING, logger="deer_vla.model.runner"):
        ids, _ = runner._tokens(long)
        runner._tokens(long)  # cached: said once
    assert ids.shape[1] == max_len and runner.dropped_tokens == whole - max_len > 0
    said = [r.getMessage() for r in caplog.records if r.name == "deer_vla.model.runner"]
    assert len(said) == 1 and f"{whole - max_len} token(s) longer than the {max_len}" in said[0]
    runner._tokens("close the drawer")
    assert runner.dropped_tokens == 0
    # one instruction to the model whatever its case, spacing or invisible characters
    assert runner.instruction_key("Open  the\u200b drawer") == runner.instruction_key("open the drawer") \
        != runner.instruction_key("close the drawer")


def test_runner_partial_and_profile(ckpt):
    full = PolicyRunner.from_checkpoint(ckpt)
    part = PolicyRunner.from_checkpoint(ckpt, max_exit=2)
    assert part.num_exits == 2
    pf, pp = full.cost_profile, part.cost_profile
    assert pp.llm_gflops == pytest.approx(pf.llm_gflops[:2])
    assert pp.params == pf.params[:2] and pp.weight_bytes == pf.weight_bytes[:2]
    assert pf.has_latency() and len(pf.segment_latency) == 4 and pf.encode_latency.median_ms > 0


# --- FLOPs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text_len", [5, 16])
def test_counted_llm_flops_match_analytic(tiny, text_len):
    model, _ = tiny
    counted = np.cumsum(count_flops(model, text_len)["segments"])
    np.testing.assert_allclose(counted, analytic_llm_flops(model.config, text_len), rtol=1e-9)
    prof = profile_policy(model, latency=False, text_len=text_len)
    assert prof.total_gflops[0] > prof.llm_gflops[0] and not prof.has_latency()
    assert prof.llm_gflops[-1] / prof.llm_gflops[0] > 2


def test_past_frames_are_paid_for_in_the_counted_flops():
    """Cross-attention over K past frames costs more at every exit, by the formula, and encode does not (the
    earlier steps' tokens are kept, not encoded again)."""
    with_frames, plain = _past_frames_model(2), _past_frames_model(0)
    counted = count_flops(with_frames, 8)
    np.testing.assert_allclose(np.cumsum(counted["segments"]), analytic_llm_flops(with_frames.config, 8), rtol=1e-9)
    assert all(a > b for a, b in zip(np.cumsum(counted["segments"]), np.cumsum(count_flops(plain, 8)["segments"]),
                                     strict=True))
    assert counted["encode"] == pytest.approx(count_flops(plain, 8)["encode"], rel=1e-6)


def test_time_budgets_run_on_this_machines_latencies_not_the_checkpoints_makers(tiny_checkpoint, tmp_path):
    """A shipped checkpoint's profile.json was timed where it was made; the node enforced peak_ms and deadlines
    with those timings (a cap of exit 12 under 20 ms on one machine, exit 2 under the same budget here). With a
    time budget the latencies are measured here; FLOPs and bytes stay the file's."""
    import dataclasses
    import shutil

    from deer_vla.core import CostProfile, LatencyStats
    from deer_vla.model.profiling import machine_id
    from deer_vla.model.runner import PolicyRunner
    from deer_vla.ros.policy_backend import load_stack

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, ckpt)
    mine = PolicyRunner.from_checkpoint(ckpt).cost_profile
    slow = LatencyStats(median_ms=1e4, p95_ms=1e4, p99_ms=1e4, samples=5)
    elsewhere = dataclasses.replace(mine, segment_latency=[slow] * mine.num_exits, encode_latency=slow,
                                    head_latency=slow, machine="the maker's workstation")
    elsewhere.save(ckpt / "profile.json")
    assert CostProfile.load(ckpt / "profile.json").machine == "the maker's workstation"
    runner = PolicyRunner.from_checkpoint(ckpt)
    runner.time_here()
    here = runner.cost_profile
    assert here.machine == machine_id() and here.worst_case_ms(1) < 1e4
    assert here.llm_gflops == elsewhere.llm_gflops and here.weight_bytes == elsewhere.weight_bytes
    # the node's stack: a deadline that another machine's timings made infeasible configures here
    stack = load_stack(ckpt, ckpt / "thresholds.json", "cpu", {"peak_ms": 5000.0})
    assert stack.profile.machine == machine_id() and stack.cap == here.num_exits
    untimed = load_stack(ckpt, ckpt / "thresholds.json", "cpu", {})  # no time budget: the file's profile
    assert untimed.profile.machine == "the maker's workstation"


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_a_memory_budget_never_has_the_device_hold_exits_past_its_cap(tiny_checkpoint, monkeypatch, device):
    """Configure reads the whole model once for its cost profile, which sets the cap. It used to read it onto the
    device and keep it while loading the capped model: a device that fits only the capped model ran out of
    memory on a feasible budget. Now the whole model is read on the CPU (no time budget to time on the device)
    and let go before the capped one is loaded. CUDA is stood in for by the CPU: the test sees which device
    each load asks for."""
    import gc
    import weakref

    from deer_vla.model.runner import PolicyRunner
    from deer_vla.ros.policy_backend import load_stack

    real = PolicyRunner.from_checkpoint.__func__
    loads: list[tuple[int | None, str, bool]] = []  # (max_exit, device asked, an earlier model still alive)
    alive: list[weakref.ref] = []

    def spy(cls, ckpt, max_exit=None, device="cpu", full_profile=None):
        gc.collect()
        loads.append((max_exit, device, any(ref() is not None for ref in alive)))
        runner = real(cls, ckpt, max_exit=max_exit, device="cpu", full_profile=full_profile)
        alive.append(weakref.ref(runner.model))
        return runner

    monkeypatch.setattr(PolicyRunner, "from_checkpoint", classmethod(spy))
    profile = real(PolicyRunner, tiny_checkpoint).cost_profile
    budget = (profile.weight_bytes[1] + profile.weight_bytes[2]) // 2  # fits exit 2, not exit 3
    stack = load_stack(tiny_checkpoint, tiny_checkpoint / "thresholds.json", device, {"memory_bytes": budget})
    assert stack.cap == 2
    assert loads == [(None, "cpu", False), (2, device, False)], loads


def test_a_time_budget_is_held_with_whole_steps_times(tiny_checkpoint, monkeypatch) -> None:
    """The times a peak_ms cap and a deadline trust were the model's parts timed alone, 5-10 runs each: what a
    real step adds around them (images to tensors, tokens, each exit's action to numpy, the gates) was not in
    them, and a deep exit's "p99" came out below the median of real steps. time_here times whole steps; here a
    20 ms image conversion that only real steps pay shows up in the worst case of every exit."""
    import time

    import deer_vla.model.runner as runner_module
    from deer_vla.control import BudgetSpec, ExitController
    from deer_vla.control.budgets import step_worst_ms
    from deer_vla.core import Observation
    from deer_vla.model.runner import PolicyRunner

    convert = runner_module.images_to_tensor

    def slow_convert(*args, **kwargs):
        time.sleep(0.02)
        return convert(*args, **kwargs)

    monkeypatch.setattr(runner_module, "images_to_tensor", slow_convert)
    runner = PolicyRunner.from_checkpoint(tiny_checkpoint)
    runner.time_here(warmup=1, iters=5)
    profile = runner.cost_profile
    cameras = len(runner.cameras)
    assert profile.encode_latency.median_ms >= 20.0 * cameras
    n = runner.num_exits
    controller = ExitController(runner, profile, None, BudgetSpec(), fixed_exit=n)
    size = runner.image_size
    proprio = np.zeros(runner.model.config.proprio_dim, np.float32)
    observation = Observation(images={c: np.zeros((size, size, 3), np.uint8) for c in runner.cameras},
                              instruction=INSTRUCTIONS[0], proprio=proprio)
    steps = [controller.step(observation)[1].total_ms for _ in range(5)]
    assert step_worst_ms(profile, n) >= 0.9 * min(steps)  # the worst case covers what real steps take
    assert runner._candidates == {} and runner._past_state is None  # timing left no history behind


def test_a_fixed_exit_the_budget_cannot_afford_names_the_budget() -> None:
    """`replay --fixed-exit 3 --average-gflops 0.02` on a 12-exit model said "fixed_exit must be an exit in 1..1":
    the budget cut the loaded model to exit 1 first, and the message named neither it nor the exit's cost."""
    from deer_vla.core.cost_profile import CostProfile
    from deer_vla.ros.policy_backend import ConfigurationError, check_budget, make_budget

    profile = CostProfile(llm_gflops=[1.0, 2.0, 3.0, 4.0], total_gflops=[1.5, 2.5, 3.5, 4.5], params=[1] * 4,
                          weight_bytes=[4] * 4)
    with pytest.raises(ConfigurationError, match=r"fixed_exit 3 costs 3 llm_gflops every step, over the average "
                                                 r"budget 2.5: the deepest exit it affords every step is 2; or raise "
                                                 r"the average budget to 3"):
        check_budget(profile, make_budget({"average_gflops": 2.5}), 3)
    assert check_budget(profile, make_budget({"average_gflops": 2.5}), 2) == 4
    with pytest.raises(ConfigurationError, match="fixed_exit 3 is beyond exit 2, the deepest peak_gflops allows"):
        check_budget(profile, make_budget({"peak_gflops": 2.5}), 3)
    assert check_budget(profile, make_budget({"peak_gflops": 2.5}), 2) == 2
