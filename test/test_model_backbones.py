"""Real HF backbones through the local-directory loading path (tiny random configs, no network).

With the gates closed our segment-by-segment hidden states must equal the HF
model's own forward, layer by layer, for every LM family.
"""
from __future__ import annotations

import pytest
import torch
import transformers

from deer_vla.model.checkpoint import load_checkpoint, save_checkpoint
from deer_vla.model.config import ExitConfig
from deer_vla.model.policy import MultiExitPolicy
from deer_vla.model.presets import preset_config
from deer_vla.model.pretrained import policy_from_pretrained
from deer_vla.model.tokenizer import build_word_tokenizer

TEXTS = ["open the drawer", "push the red button to the left"]


def _lm(family: str):
    common = {"vocab_size": 128, "pad_token_id": 0}
    if family == "gpt2":
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(
            n_embd=32, n_layer=4, n_head=2, n_positions=64, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0,
            bos_token_id=0, eos_token_id=0, **common))
    if family == "mpt":  # the original DeeR's LM family: ALiBi positions, fused qkv, no biases
        return transformers.MptForCausalLM(transformers.MptConfig(
            d_model=32, n_heads=4, n_layers=4, expansion_ratio=4, max_seq_len=64, resid_pdrop=0, emb_pdrop=0,
            **common))
    cls_cfg, cls_model = {
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
    }[family]
    cfg = cls_cfg(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64, **common)
    return cls_model(cfg)


@pytest.fixture(scope="module", params=["llama", "qwen2", "gpt2", "mpt"])
def lm_dir(request, tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp(request.param)
    _lm(request.param).save_pretrained(d)
    build_word_tokenizer(TEXTS).save_pretrained(d)  # stands in for the LM's own tokenizer files
    return request.param, d


def test_lm_family_matches_hf_forward_with_gates_closed(lm_dir):
    family, d = lm_dir
    model, tok = policy_from_pretrained(d, base=preset_config("tiny"), exits=ExitConfig(layers_per_exit=1))
    model.eval()
    assert model.config.lm.family == family and model.num_exits == 4
    ref = transformers.AutoModel.from_pretrained(d, local_files_only=True, attn_implementation="eager").eval()
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    s = model.config.image_size
    images = {c: torch.rand(2, 3, s, s) for c in model.config.cameras}
    with torch.no_grad():
        hf = ref(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        state = model.encode(images, ids, mask)
        valid = mask.bool()
        torch.testing.assert_close(state.hidden[valid], hf[0][valid], rtol=1e-5, atol=1e-5)
        for k in range(1, 4):  # hf[4] is after the final norm, which exits do not use
            state = model.run_segment(state)
            torch.testing.assert_close(state.hidden[valid], hf[k][valid], rtol=1e-4, atol=1e-5)
        # opening a gate changes the LM: cross-attention is really wired in
        before = state.hidden.clone()
        model.xattn["0"].attn_gate.fill_(1.0)
        after = model.run_segment(model.run_segment(model.run_segment(model.encode(images, ids, mask))))
        assert float((after.hidden - before).abs().max()) > 1e-4


def test_lm_family_counted_flops_match_the_analytic_formula(lm_dir):
    import numpy as np

    from deer_vla.model.profiling import analytic_llm_flops, count_flops

    _, d = lm_dir
    model, _ = policy_from_pretrained(d, base=preset_config("tiny"), exits=ExitConfig(layers_per_exit=1))
    counted = np.cumsum(count_flops(model.eval(), 12)["segments"])
    np.testing.assert_allclose(counted, analytic_llm_flops(model.config, 12), rtol=1e-9)


def test_lm_family_checkpoint_roundtrip_and_partial(lm_dir, tmp_path):
    family, d = lm_dir
    model, tok = policy_from_pretrained(d, base=preset_config("tiny"), exits=ExitConfig(layers_per_exit=None,
                                                                                    boundaries=[1, 2, 4]))
    out = save_checkpoint(model.eval(), tok, tmp_path / "ck")
    loaded, tok2 = load_checkpoint(out)
    enc = tok2(TEXTS, padding=True, return_tensors="pt")
    s = model.config.image_size
    images = {c: torch.rand(2, 3, s, s) for c in model.config.cameras}
    with torch.no_grad():
        a = model.exit_features(images, enc["input_ids"], enc["attention_mask"])
        b = loaded.exit_features(images, enc["input_ids"], enc["attention_mask"])
        torch.testing.assert_close(a, b)
        part, _ = load_checkpoint(out, max_exit=2)
        assert len(part.lm.layers) == 2
        torch.testing.assert_close(part.exit_features(images, enc["input_ids"], enc["attention_mask"]), a[:, :2])
    assert sum(p.numel() for p in part.parameters()) < sum(p.numel() for p in loaded.parameters())


# The old eager paths, kept here as references: build every parameter with random values, then copy the
# pretrained / saved ones over them (HF's own loader for the LM, a plain state-dict load for checkpoints).
_HF_PARTS = {"gpt2": ("wte", "wpe", "h"), "mpt": ("wte", None, "blocks"), "llama": ("embed_tokens", None, "layers"),
             "qwen2": ("embed_tokens", None, "layers")}


def _eager_from_hf(config, lm_dir) -> MultiExitPolicy:
    model = MultiExitPolicy(config)
    base = transformers.AutoModel.from_pretrained(lm_dir, local_files_only=True)
    tokens, positions, layers = (getattr(base, a) if a else None for a in _HF_PARTS[config.lm.family])
    model.lm.embed_tokens.load_state_dict(tokens.state_dict())
    if positions is not None:
        model.lm.embed_positions.load_state_dict(positions.state_dict())
    for ours, theirs in zip(model.lm.layers, layers):
        ours.load_state_dict(theirs.state_dict())
    return model


def _eager_from_checkpoint(ckpt, max_exit=None) -> MultiExitPolicy:
    from safetensors.torch import load_file

    from deer_vla.model.checkpoint import read_config

    model = MultiExitPolicy(read_config(ckpt), max_exit=max_exit)
    state = load_file(str(ckpt / "model.safetensors"))
    model.load_state_dict({k: state[k] for k in model.state_dict()}, strict=True)
    return model


def _outputs(model: MultiExitPolicy, tok) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(1)
    s = model.config.image_size
    images = {c: torch.rand(2, 3, s, s, generator=gen) for c in model.config.cameras}
    proprio = torch.rand(2, model.config.proprio_dim, generator=gen) if model.config.proprio_dim else None
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        feats = model.eval().exit_features(images, enc["input_ids"], enc["attention_mask"], proprio)
        out = model.head(feats[:, -1:], None if proprio is None else proprio[:, None])
    return feats, out.motion, out.gripper_logit


def _assert_bitwise_equal(a: MultiExitPolicy, b: MultiExitPolicy, tok) -> None:
    for x, y in zip(_outputs(a, tok), _outputs(b, tok)):
        assert torch.equal(x, y)
    # computed buffers (rotary inv_freq, position ids, image mean/std) are not in any file: same values too
    ours, ref = dict(a.named_buffers()), dict(b.named_buffers())
    assert ours.keys() == ref.keys() and all(torch.equal(ours[k], ref[k]) for k in ref)
    assert not any(t.is_meta for t in [*a.parameters(), *a.buffers()])
    assert all(p.requires_grad for p in a.parameters())  # a lean-loaded model still trains


def test_lean_pretrained_lm_equals_the_eager_hf_loader_bit_for_bit(lm_dir):
    _, d = lm_dir
    torch.manual_seed(0)
    lean, tok = policy_from_pretrained(d, base=preset_config("tiny"), exits=ExitConfig(layers_per_exit=1))
    ref = _eager_from_hf(lean.config, d)
    # the freshly initialised parts (resampler, gates, heads...) come from different random draws: share them
    fresh = {k: v for k, v in lean.state_dict().items() if not k.startswith("lm.")}
    assert not ref.load_state_dict(fresh, strict=False).unexpected_keys
    _assert_bitwise_equal(lean, ref, tok)


@pytest.mark.parametrize("max_exit", [None, 2])
def test_lean_checkpoint_load_equals_the_eager_load_bit_for_bit(lm_dir, tmp_path, max_exit):
    _, d = lm_dir
    model, tok = policy_from_pretrained(d, base=preset_config("tiny"), exits=ExitConfig(layers_per_exit=1))
    with torch.no_grad():
        for gate in [p for n, p in model.named_parameters() if n.endswith("_gate")]:
            gate.fill_(0.7)  # open the cross-attention gates so every part shapes the outputs
    ckpt = save_checkpoint(model, tok, tmp_path / "ck")
    lean, tok2 = load_checkpoint(ckpt, max_exit=max_exit)
    assert lean.num_exits == (max_exit or 4) and len(lean.lm.layers) == (max_exit or 4)
    _assert_bitwise_equal(lean, _eager_from_checkpoint(ckpt, max_exit), tok2)


def test_lean_pretrained_lm_from_a_sharded_save(tmp_path):
    """A sharded directory (model.safetensors.index.json + shards) loads the same weights as one file."""
    torch.manual_seed(0)
    lm = _lm("llama")
    for name, kw in (("one", {}), ("sharded", {"max_shard_size": "40KB"})):
        lm.save_pretrained(tmp_path / name, **kw)
        build_word_tokenizer(TEXTS).save_pretrained(tmp_path / name)
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    one, _ = policy_from_pretrained(tmp_path / "one", base=preset_config("tiny"))
    sharded, _ = policy_from_pretrained(tmp_path / "sharded", base=preset_config("tiny"))
    a, b = one.lm.state_dict(), sharded.lm.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_lean_vision_tower_from_a_full_clip_save(tmp_path):
    """A CLIPModel directory (text + vision towers) feeds the vision tower only; text weights are never read."""
    torch.manual_seed(0)
    vis = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
           "image_size": 32, "patch_size": 8}
    txt = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
           "vocab_size": 64}
    full = transformers.CLIPModel(transformers.CLIPConfig(vision_config=vis, text_config=txt, projection_dim=16))
    full.save_pretrained(tmp_path / "clip")
    lm = tmp_path / "lm"
    _lm("llama").save_pretrained(lm)
    build_word_tokenizer(TEXTS).save_pretrained(lm)
    model, _ = policy_from_pretrained(lm, vision_dir=tmp_path / "clip", base=preset_config("tiny"))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        # (HF's default attention here is SDPA, ours eager: equal up to rounding)
        torch.testing.assert_close(model.vision(x), full.vision_model.eval()(pixel_values=x).last_hidden_state)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_vision_tower_from_local_dir(kind, tmp_path):
    torch.manual_seed(0)
    common = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
              "image_size": 32, "patch_size": 8}
    if kind == "clip":
        tower = transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**common))
    else:
        tower = transformers.SiglipVisionModel(transformers.SiglipVisionConfig(**common))
    tower.save_pretrained(tmp_path / "vision")
    lm = tmp_path / "lm"
    _lm("llama").save_pretrained(lm)
    build_word_tokenizer(TEXTS).save_pretrained(lm)
    model, tok = policy_from_pretrained(lm, vision_dir=tmp_path / "vision", base=preset_config("tiny"))
    assert model.config.vision.kind == kind and model.config.image_size == 32
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ours = model.vision(x)
        theirs = tower.eval()(pixel_values=x).last_hidden_state
    torch.testing.assert_close(ours, theirs)  # HF's default attention is SDPA, ours eager: equal up to rounding
    # the old eager path (tower built with random weights, HF's loader copied over them): equal bit for bit
    from deer_vla.model.backbones import HFVisionTower

    eager = HFVisionTower(model.config.vision)
    eager.model.load_state_dict(type(tower).from_pretrained(tmp_path / "vision", local_files_only=True).state_dict())
    with torch.no_grad():
        assert torch.equal(ours, eager.eval()(x))
    assert ours.shape[1] == model.resampler.pos.shape[0]
    # frozen by default: no gradient reaches the tower even in training mode
    model.train()
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    feats = model.exit_features({c: torch.rand(2, 3, 32, 32) for c in model.config.cameras},
                                enc["input_ids"], enc["attention_mask"])
    feats.sum().backward()
    assert all(p.grad is None for p in model.vision.parameters())
    assert model.resampler.proj.weight.grad is not None
    # and the whole policy round-trips through a checkpoint (vision weights included)
    out = save_checkpoint(model.eval(), tok, tmp_path / "ck")
    loaded, _ = load_checkpoint(out)
    assert isinstance(loaded, MultiExitPolicy)
    with torch.no_grad():
        torch.testing.assert_close(loaded.vision(x), theirs)


def test_missing_backbone_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="language model directory"):
        policy_from_pretrained(tmp_path / "absent", base=preset_config("tiny"))


def test_a_base_with_a_text_front_end_is_refused_not_paired_with_the_lms_tokenizer(tmp_path):
    """The text front end's table was kept while the LM directory's tokenizer was returned: its ids read
    unrelated rows of the table (all zeros when trainable), and the instruction was lost without a word."""
    from deer_vla.model.text import text_config

    torch.manual_seed(0)
    _lm("llama").save_pretrained(tmp_path)
    build_word_tokenizer(TEXTS).save_pretrained(tmp_path)
    base = preset_config("tiny").model_copy(update={"text": text_config("wordllama")})
    with pytest.raises(ValueError, match="has a text front end \\(wordllama\\).*set the base's text to null"):
        policy_from_pretrained(tmp_path, base=base)


def test_hf_folders_with_damaged_files_name_them_before_reading_weights(tmp_path, monkeypatch):
    """A shard index that is not JSON gave "not JSON" without the file; a git-lfs pointer left in place of the
    weights a bare SafetensorError ("header too large"); a missing tokenizer was found only after every weight
    had been read (minutes for a multi-GB LM)."""
    from deer_vla.model import pretrained
    from deer_vla.model.backbones import hf_weight_files

    d = tmp_path / "lm"
    _lm("llama").save_pretrained(d)
    (d / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"model\.safetensors\.index\.json: not JSON"):
        hf_weight_files(d)
    (d / "model.safetensors.index.json").unlink()
    real = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n")
    with pytest.raises(ValueError, match=r"model\.safetensors: not a readable safetensors file.*git lfs pull"):
        hf_weight_files(d)
    (d / "model.safetensors").write_bytes(real)

    def no_weights(*args, **kwargs):
        raise AssertionError("weights read before the tokenizer was checked")

    monkeypatch.setattr(pretrained, "load_pretrained_lm", no_weights)
    with pytest.raises(ValueError, match="tokenizer"):  # no tokenizer files in the folder
        policy_from_pretrained(d, base=preset_config("tiny").model_copy(update={"text": None}))
