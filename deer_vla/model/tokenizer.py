"""Word-level instruction tokenizer (built locally with the `tokenizers` library, no downloads)."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from deer_vla.core.instruction_text import clean_instruction
from deer_vla.core.json_text import JsonTextError, read_json_file

PAD, UNK = "[PAD]", "[UNK]"


def build_word_tokenizer(texts: Iterable[str], max_length: int = 64) -> Any:
    """Lower-cased words and punctuation of ``texts`` -> PreTrainedTokenizerFast (pad id 0, unk id 1)."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    pre = pre_tokenizers.Whitespace()
    words: set[str] = set()
    for text in texts:
        if not isinstance(text, str):
            raise ValueError(f"tokenizer texts must be strings, got {type(text).__name__}")
        words.update(w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)))
    if not words:
        raise ValueError("build_word_tokenizer needs at least one non-empty text")
    vocab = {PAD: 0, UNK: 1} | {w: i + 2 for i, w in enumerate(sorted(words))}
    tok = Tokenizer(WordLevel(vocab=vocab, unk_token=UNK))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, unk_token=UNK, padding_side="right",
                                   model_max_length=max_length)


def encode_instruction(tokenizer: Any, text: str, max_length: int | None = None) -> list[int]:
    """Token ids of an instruction as the model reads it, in training and at run time alike: the text
    cleaned (core.instruction_text), special-token spellings in it read as plain text ("</s>" in a message
    is not the end-of-text or pad token), cut to ``max_length`` tokens by the tokenizer."""
    return encode_instructions(tokenizer, [text], max_length)[0]


def encode_instructions(tokenizer: Any, texts: list[str], max_length: int | None = None) -> list[list[int]]:
    """``encode_instruction`` of many texts in one call of the tokenizer (its batch path)."""
    if not texts:
        return []
    kw: dict[str, Any] = {"split_special_tokens": True}
    if max_length is not None:
        kw |= {"truncation": True, "max_length": max_length}
    return [list(ids) for ids in tokenizer([clean_instruction(t) for t in texts], **kw)["input_ids"]]


def load_tokenizer(path: str | Path) -> Any:
    """Tokenizer saved in a local directory; right padding, pad = eos when it has none.

    A tokenizer.json fully describes a fast tokenizer, so it is loaded as is with
    PreTrainedTokenizerFast (AutoTokenizer would pick a class from a sibling
    model config.json and may rebuild the pipeline differently).
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    root = Path(path)
    fast = (root / "tokenizer.json").is_file()
    config = root / "tokenizer_config.json"  # names the special tokens; transformers' errors about it name no file
    if config.exists():
        try:
            if not isinstance(read_json_file(config), dict):
                raise JsonTextError("not a JSON object")
        except (JsonTextError, OSError) as exc:
            raise ValueError(f"tokenizer config {config} cannot be read: {exc}") from exc
    try:
        if fast:
            tok = PreTrainedTokenizerFast.from_pretrained(root, local_files_only=True, trust_remote_code=False)
        else:  # never the folder's own Python code: transformers would ask on a terminal and run it on "y"
            tok = AutoTokenizer.from_pretrained(root, local_files_only=True, trust_remote_code=False)
    except Exception as exc:
        # transformers and tokenizers raise many kinds (a JSONDecodeError, a multi-line "Couldn't instantiate the
        # backend tokenizer", a Rust panic's Exception), none naming the file: say which and why, in one line
        # without tokenizer.json transformers looks for other vocabulary files, and its error blames missing
        # libraries ("sentencepiece or tiktoken") when the file is what is missing
        what = root / "tokenizer.json" if fast else f"{root} (it has no tokenizer.json)"
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ValueError(f"tokenizer {what} cannot be loaded: {type(exc).__name__}: {reason}") from exc
    if tok.pad_token is None:
        if tok.eos_token is None:
            missing = "" if config.exists() else f" ({config.name}, which names them, is missing)"
            raise ValueError(f"tokenizer in {root} has neither a pad nor an eos token{missing}")
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    where = root / "tokenizer.json" if fast else root
    try:  # some broken files load and fail at every encode (an unknown token missing from the vocabulary)
        ids = tok("open the drawer é 漢 😀")["input_ids"]
    except Exception as exc:
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ValueError(f"tokenizer {where} loads but cannot encode text: {type(exc).__name__}: {reason}") from exc
    special = set(tok.all_special_ids)
    if not [i for i in ids if i not in special]:
        # no ordinary token for the sample text: a tokenizer_config.json without its vocabulary, or a word
        # vocabulary built from other words (a robot's own instructions: every sample word is [UNK]). Its own
        # words must then come back as themselves
        words = [i for i in tok.get_vocab().values() if i not in special][:32]
        own = tok(tok.decode(words))["input_ids"] if words else []
        if not [i for i in own if i not in special]:
            raise ValueError(f"tokenizer {where} loads but turns text into no tokens (its vocabulary files "
                             "missing?)")
    return tok


def without_token_cache(tokenizer: Any) -> Any:
    """``tokenizer`` with its model's cache of tokenized words off, where it has one (a BPE's): tokenizers 0.23
    keeps that memory when the tokenizer is deleted or its cache cleared (~1.3 KB per distinct text), so a copy
    made for each configure (the instruction matcher's) leaked ~216 KB per lifecycle cycle, without bound.
    A private method of tokenizers, called only where it exists."""
    model = getattr(getattr(tokenizer, "backend_tokenizer", None), "model", None)
    resize = getattr(model, "_resize_cache", None)
    if callable(resize):
        resize(0)
    return tokenizer
