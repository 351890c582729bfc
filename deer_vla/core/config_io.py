"""One config style for every command: YAML file (--config) + `--set key=value` + flags, validated by pydantic.

Layers, lowest first: the model's defaults, the YAML file, the `--set` overrides, then the flags given
on the command line. Every error names the key (a dotted path for nested ones) and the source.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)

# argparse destinations that carry the config layers themselves, not config values
_LAYER_DESTS = ("config", "overrides")


class ConfigError(ValueError):
    """A config that cannot be used; the message names the offending key(s) and where they came from."""


def parse_value(text: str) -> Any:
    """`--set` values are YAML scalars/flows: 3, 1e-4, true, null, [1, 2], {a: 1}."""
    return yaml.safe_load(text) if text.strip() else ""


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
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {exc}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{what} {path} must be a mapping, got {type(loaded).__name__}")
    return loaded or {}


def format_validation_error(exc: ValidationError, what: str, source: str) -> str:
    """One line per problem, naming the key path and the value given."""
    lines = [f"invalid {what} ({source}):"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        value = err.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"  {loc}: {err['msg']}{shown}")
    return "\n".join(lines)


def validate(model: type[ModelT], data: dict[str, Any], what: str, source: str) -> ModelT:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, what, source)) from None


def add_config_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """--config FILE.yaml and repeatable --set KEY=VALUE; keys are the flags' names with '_' for '-'."""
    parser.add_argument("--config", default=None, metavar="FILE.yaml",
                        help=f"{what} as YAML (keys: the flags' names with '_' for '-'); flags given here win")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                        help="override one key of the --config file (a YAML value), e.g. --set device=cuda; repeatable")


def load_layered(model: type[ModelT], args: argparse.Namespace, what: str) -> ModelT:
    """Defaults < --config YAML < --set < the flags given. The parser must leave flags that were not given
    out of ``args`` (``argument_default=argparse.SUPPRESS`` and no per-flag defaults), so that a flag
    overrides the file only when it is actually on the command line."""
    data: dict[str, Any] = {}
    source = "defaults"
    if getattr(args, "config", None):
        data = read_yaml_mapping(args.config, what)
        source = str(args.config)
    overrides = getattr(args, "overrides", None) or []
    if overrides:
        data = apply_overrides(data, overrides)
        source += " + --set"
    flags = {k: v for k, v in vars(args).items() if k not in _LAYER_DESTS}
    if flags:
        data = deep_merge(data, flags)
        source += " + flags"
    return validate(model, data, what, source)
