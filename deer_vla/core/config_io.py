"""One config style for every command: YAML file (--config) + `--set key=value` + flags, validated by pydantic.

Layers, lowest first: the model's defaults, the YAML file, the `--set` overrides, then the flags given
on the command line; a partial mapping for a nested model (`--set joint.steps=3`) keeps that model's other
defaults. train, evaluate and calibrate load through `load_layered`. Every error names the key (a dotted
path for nested ones) and the source.
"""
from __future__ import annotations

import argparse
import os
import reprlib
import sys
import types
import typing
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError, ValidationInfo, field_validator

ModelT = TypeVar("ModelT", bound=BaseModel)

PACKAGE = "deer_vla"
GRAPH_FILE = "graph.yaml"  # marks the config folder: the node graph the launch files read

# argparse destinations that carry the config layers themselves, not config values
_LAYER_DESTS = ("config", "overrides")


class ConfigError(ValueError):
    """A config that cannot be used; the message names the offending key(s) and where they came from."""


# bounds of counts a command line may ask for: torch takes a C int of threads (10**30 was a traceback), and each
# worker process loads a model (10**30 workers queued that many stop markers before starting one, for ever)
MAX_THREADS = 1024
MAX_WORKERS = 256
MAX_REPEATS = 100_000  # timing iterations (profile --iters): 10**30 ran for ever, printing nothing


def _int_at_least(text: str, low: int, high: int | None = None) -> int:
    span = f">= {low}" if high is None else f"in {low}..{high}"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer {span}, got {text!r}") from None
    if value < low or (high is not None and value > high):
        raise argparse.ArgumentTypeError(f"expected an integer {span}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type of counts that may be large (steps, episodes): an integer >= 1, else a clear usage error."""
    return _int_at_least(text, 1)


def thread_count(text: str) -> int:
    """argparse type of --threads: an integer in 1..MAX_THREADS."""
    return _int_at_least(text, 1, MAX_THREADS)


def worker_count(text: str) -> int:
    """argparse type of --workers: an integer in 1..MAX_WORKERS."""
    return _int_at_least(text, 1, MAX_WORKERS)


def repeat_count(text: str) -> int:
    """argparse type of timing repetitions (--iters): an integer in 1..MAX_REPEATS."""
    return _int_at_least(text, 1, MAX_REPEATS)


def non_negative_int(text: str) -> int:
    """argparse type of counts that may be 0: an integer >= 0, else a clear usage error."""
    return _int_at_least(text, 0)


def warmup_count(text: str) -> int:
    """argparse type of timing warm-up repetitions (--warmup): an integer in 0..MAX_REPEATS."""
    return _int_at_least(text, 0, MAX_REPEATS)


def _takes_bool(annotation: Any) -> bool:
    """Whether a field's type admits true/false (bool itself, Any, or a union with one of them)."""
    return any(a is bool or a is Any for a in _members(annotation))


class NoBoolNumbers(BaseModel):
    """Settings whose numbers are not true/false: pydantic reads ``episodes_per_task: true`` as 1, silently."""

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name) if info.field_name is not None else None
        if field is None:
            return value
        if isinstance(value, bool) and not _takes_bool(field.annotation):
            raise ValueError(f"{str(value).lower()} is not a {_type_name(field.annotation)}")
        if isinstance(value, (list, tuple)) and any(isinstance(v, bool) for v in value):  # budgets: [true] is 1.0
            items = [t for a in _members(field.annotation) if typing.get_origin(a) in (list, tuple)
                     for t in typing.get_args(a)]
            if any(t in (int, float) for t in items) and not any(_takes_bool(t) for t in items):
                first = next(v for v in value if isinstance(v, bool))
                raise ValueError(f"a list of numbers holds {str(first).lower()}")
        return value


def _members(annotation: Any) -> tuple[Any, ...]:
    """A union's members, or the annotation itself."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _type_name(annotation: Any) -> str:
    names = [getattr(a, "__name__", str(a)) for a in typing.get_args(annotation) or (annotation,)
             if a is not type(None)]
    return " or ".join({"int": "number", "float": "number"}.get(n, n) for n in dict.fromkeys(names))


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (it keeps the last, silently: a settings
    file that says episodes_per_task twice ran with the second without a word). Merge keys (<<) are YAML's own
    way to repeat keys, and not judged here."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the base constructor says so
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """YAML text as Python (safe types only), a key given twice in a mapping refused (yaml.YAMLError)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary Python objects


def parse_value(text: str) -> Any:
    """`--set` values are YAML scalars/flows: 3, 1e-4, true, null, [1, 2], {a: 1}. ConfigError otherwise."""
    try:
        return load_yaml(text) if text.strip() else ""
    # ValueError: an integer of over 4300 digits (Python's int() limit, which PyYAML meets)
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        raise ConfigError(f"--set value {shown_value(text)} is not a YAML value: "
                          f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def shown_value(value: Any, limit: int = 120) -> str:
    """``value``'s repr for an error message, cut after ``limit`` characters: a 10 MB key printed whole buried
    the message. A string's length is said; a container is shown a few levels and items deep, never expanded
    whole (a 400-byte YAML of nested aliases expands to 10^8 items: its full repr took 22 s and 880 MB)."""
    if isinstance(value, str | bytes):
        text = repr(value[: limit + 1])  # escapes make the repr longer than the value: cut the repr too
        return text if len(value) <= limit and len(text) <= limit else f"{text[:limit]}... ({len(value)} characters)"
    short = reprlib.Repr()
    short.maxlevel = 3
    short.maxlist = short.maxtuple = short.maxdict = short.maxset = short.maxfrozenset = 8
    short.maxstring = short.maxother = short.maxlong = limit
    text = short.repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=value` overrides to a nested dict (copying the touched levels)."""
    out = dict(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"--set key {key!r} is malformed")
        node = out
        for p in parts[:-1]:
            child = node.get(p)
            child = dict(child) if isinstance(child, dict) else {}
            node[p] = child
            node = child
        node[parts[-1]] = parse_value(value)
    return out


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``; nested mappings merge key by key."""
    out = dict(base)
    for k, v in top.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """The mapping at the top of a YAML file (empty file: {}); ConfigError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} file not found: {path}")
    try:
        loaded = load_yaml(path.read_text(encoding="utf-8"))  # YAML is UTF-8, whatever the locale
    # RecursionError: nested too deeply; ValueError (UnicodeDecodeError among them): not UTF-8, an integer of
    # over 4300 digits (Python's int() limit, which PyYAML meets)
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None and f"line {mark.line + 1}" not in first else ""
        raise ConfigError(f"{what} {path} is not valid YAML: {first}{where}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{what} {path} must be a mapping, got {type(loaded).__name__}")
    return loaded or {}


def format_validation_error(exc: ValidationError, what: str, source: str, flags: bool = False) -> str:
    """One line per problem, naming the key path and the value given. ``flags``: the top-level keys are also
    command-line flags (``--key-name``), named where a required one is missing."""
    lines = [f"invalid {what} ({source}):"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        value = err.get("input")
        shown = "" if isinstance(value, dict) else f" (got {shown_value(value)})"
        loc = loc if len(loc) <= 200 else f"{loc[:200]}... ({len(loc)} characters)"
        message = err["msg"]
        if err["type"] == "missing" and flags and len(err["loc"]) == 1:  # "checkpoint: Field required" said how
            message = f"required and not given: --{str(err['loc'][0]).replace('_', '-')} VALUE, or {loc}: in --config"
        lines.append(f"  {loc}: {message}{shown}")
    return "\n".join(lines)


def validate(model: type[ModelT], data: dict[str, Any], what: str, source: str, flags: bool = False) -> ModelT:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, what, source, flags)) from None


def add_config_arguments(parser: argparse.ArgumentParser, what: str,
                         keys: str = "keys: the flags' names with '_' for '-'; flags given here win",
                         example: str = "device=cuda") -> None:
    """--config FILE.yaml and repeatable --set KEY=VALUE; ``keys`` says what the YAML keys are."""
    parser.add_argument("--config", default=None, metavar="FILE.yaml", help=f"{what} as YAML ({keys})")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                        help=f"override one key of the --config file (a YAML value), e.g. --set {example}; repeatable")


def _over_nested_defaults(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """A partial mapping for a field whose default is itself a model fills in the rest from that default, so
    `--set joint.steps=3` keeps joint.lr (a field whose default is None takes the mapping as given)."""
    out = dict(data)
    for name, value in data.items():
        field = model.model_fields.get(name)
        if field is None or not isinstance(value, dict):
            continue
        default = field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            out[name] = deep_merge(default.model_dump(), value)
    return out


def load_layers(model: type[ModelT], what: str, config: str | Path | None = None, overrides: Sequence[str] = (),
                flags: dict[str, Any] | None = None, alternatives: Collection[Collection[str]] = ()) -> ModelT:
    """Defaults < the YAML file ``config`` < the ``--set`` overrides < ``flags``, validated as ``model``.
    ``alternatives``: groups of top-level keys of which one is set (a dataset or a recording): a later layer
    that sets one clears the others an earlier layer set, as the later layer wins for a single key."""
    data: dict[str, Any] = {}
    source = "defaults"

    def clear_alternatives(given: Collection[str]) -> None:
        for group in alternatives:
            if any(k in given for k in group):
                for k in group:
                    if k not in given:
                        data.pop(k, None)

    if config:
        data = read_yaml_mapping(config, what)
        source = str(config)
    if overrides:
        clear_alternatives({o.split("=", 1)[0].strip() for o in overrides})
        data = apply_overrides(data, list(overrides))
        source += " + --set"
    if flags:
        clear_alternatives(set(flags))
        data = deep_merge(data, flags)
        source += " + flags"
    return validate(model, _over_nested_defaults(model, data), what, source, flags=flags is not None)


def load_layered(model: type[ModelT], args: argparse.Namespace, what: str,
                 run_flags: Collection[str] = (), alternatives: Collection[Collection[str]] = ()) -> ModelT:
    """`load_layers` from a parsed command line. The parser must leave flags that were not given out of ``args``
    (``argument_default=argparse.SUPPRESS`` and no per-flag defaults), so that a flag overrides the file only
    when it is actually on the command line; ``run_flags`` name the destinations that steer the run and are
    not config keys (e.g. train's --resume)."""
    flags = {k: v for k, v in vars(args).items() if k not in _LAYER_DESTS and k not in run_flags}
    return load_layers(model, what, getattr(args, "config", None), getattr(args, "overrides", None) or (), flags,
                       alternatives)


def packaged_config_dir() -> Path | None:
    """$DEER_VLA_CONFIG_DIR, else the first of ``config_dir_candidates()`` holding the node graph; None when
    none does (``ros.graph.default_config_dir`` then asks the ament index)."""
    env = os.environ.get("DEER_VLA_CONFIG_DIR")
    if env:
        return Path(env)
    return next((folder for folder in config_dir_candidates() if (folder / GRAPH_FILE).is_file()), None)


def config_dir_candidates() -> list[Path]:
    """Where the package's config folder may be, without ROS: the source tree's config/, a pip install's
    <prefix>/share/deer_vla/config."""
    return [Path(__file__).resolve().parents[2] / "config", Path(sys.prefix) / "share" / PACKAGE / "config"]
