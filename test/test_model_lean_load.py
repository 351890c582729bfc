"""Lean loading (model.lean_load): parameters built without storage, filled from safetensors with one copy.

The family-by-family equality with the old eager paths is in test_model_backbones.py.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file, save_model
from torch import nn

from deer_vla.model.lean_load import TensorRef, file_refs, materialize, parameters_on_meta, tied_names

REPO = Path(__file__).resolve().parents[1]


class _TiedLM(nn.Module):
    """An embedding and an output projection sharing one weight, plus a computed buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(16, 8)
        self.out = nn.Linear(8, 16, bias=False)
        self.out.weight = self.embed.weight
        self.register_buffer("scale", torch.arange(8, dtype=torch.float32) / 8, persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(ids) * self.scale)


def test_parameters_on_meta_keeps_buffers_and_other_threads_untouched() -> None:
    built: dict[str, nn.Module] = {}
    with parameters_on_meta():
        lean = _TiedLM()
        other = threading.Thread(target=lambda: built.setdefault("other", nn.Linear(4, 4)))
        other.start()
        other.join()
    assert all(p.is_meta for p in lean.parameters())
    assert torch.equal(lean.scale, torch.arange(8) / 8)  # computed buffers are real
    assert lean.out.weight is lean.embed.weight  # a tie made during construction survives
    assert not built["other"].weight.is_meta  # another thread building at the same time gets real weights
    assert not nn.Linear(2, 2).weight.is_meta  # and the hook is gone after the block


def test_tied_weights_are_read_once_and_stay_tied(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ref = _TiedLM()
    save_model(ref, str(tmp_path / "w.safetensors"))  # stores the shared weight under one name only
    with parameters_on_meta():
        lean = _TiedLM()
    assert tied_names(lean) == {"out.weight": "embed.weight"}
    stored = "out.weight" if "out.weight" in _keys(tmp_path / "w.safetensors") else "embed.weight"
    materialize(lean, file_refs(tmp_path / "w.safetensors", [stored]))
    assert lean.out.weight is lean.embed.weight and lean.embed.weight.requires_grad
    ids = torch.tensor([[1, 5, 7]])
    assert torch.equal(lean(ids), ref(ids))


def _keys(path: Path) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return set(f.keys())


def test_dtype_follows_the_model_and_bad_files_are_named(tmp_path: Path) -> None:
    w = torch.randn(3, 4)
    save_file({"weight": w.to(torch.bfloat16), "bias": torch.zeros(3, dtype=torch.bfloat16),
               "wrong": torch.zeros(5, 4)}, str(tmp_path / "w.safetensors"))
    with parameters_on_meta():
        lin = nn.Linear(4, 3)
    materialize(lin, file_refs(tmp_path / "w.safetensors", ["weight", "bias"]))
    assert lin.weight.dtype == torch.float32 and torch.equal(lin.weight, w.to(torch.bfloat16).float())
    with parameters_on_meta():
        lin = nn.Linear(4, 3)
    with pytest.raises(ValueError, match="'wrong' has shape"):
        materialize(lin, {"weight": TensorRef(tmp_path / "w.safetensors", "wrong")})
    with pytest.raises(KeyError, match="lacks tensor"):
        materialize(lin, {"weight": TensorRef(tmp_path / "w.safetensors", "absent")})
    with pytest.raises(ValueError, match="were not loaded.*'bias'"):  # a parameter left without values
        materialize(lin, file_refs(tmp_path / "w.safetensors", ["weight"]))


_PEAK_SCRIPT = textwrap.dedent("""
    import re, sys
    from pathlib import Path
    import torch
    from torch import nn
    from deer_vla.model.lean_load import file_refs, materialize, parameters_on_meta

    def hwm():
        return int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024

    Path("/proc/self/clear_refs").write_text("5")  # peak mark := current RSS (after imports)
    before = hwm()
    with parameters_on_meta():
        model = nn.Sequential(*(nn.Linear(2048, 2048) for _ in range(16)))
    materialize(model, file_refs(sys.argv[1], list(model.state_dict())))
    assert float(model[3].weight.sum()) == float(model[3].weight.sum())  # touch the weights
    print(hwm() - before)
""")


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's resettable peak RSS")
def test_peak_memory_of_a_load_is_one_copy_of_the_weights(tmp_path: Path) -> None:
    """256 MiB of weights (a few MiB of allocator overhead stay small beside them): the eager build + copy
    this replaces peaked at about twice that."""
    model = nn.Sequential(*(nn.Linear(2048, 2048) for _ in range(16)))
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    del model
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(tmp_path / "w.safetensors")], cwd=REPO,
                         capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(REPO),
                                                                            "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    peak = int(out.stdout.split()[-1])
    assert peak <= 1.15 * weights, f"peak {peak / 2**20:.1f} MiB for {weights / 2**20:.1f} MiB of weights"
