"""The torch device a command is asked for, checked before any work: on this machine, or a clear refusal."""
from __future__ import annotations

import argparse


def is_device_name(name: str) -> bool:
    """'cpu', 'cuda' or 'cuda:N': a name a device setting takes, whether or not this machine has that device
    (configs are validated where they are written, the device where it is used: ``check_device``)."""
    return name in ("cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit())


def check_device(name: str) -> str:
    """``name`` if torch can put a model there ('cpu', 'cuda', 'cuda:N'); else ValueError saying why."""
    if name == "cpu":
        return name
    if not is_device_name(name):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    import torch  # here, so that validating a config's device name does not import torch

    if not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: CUDA is not available on this machine (use 'cpu')")
    count = torch.cuda.device_count()
    if name != "cuda" and int(name[5:]) >= count:
        raise ValueError(f"device {name!r}: this machine has {count} GPU(s), cuda:0..cuda:{count - 1}")
    return name


def device_arg(name: str) -> str:
    """``check_device`` as an argparse ``type``: its message in argparse's one-line usage error."""
    try:
        return check_device(name)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
