"""The budget benchmark runs end to end on small synthetic and recorded data."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from deer_vla.control.synthetic import synthetic_exit_actions, synthetic_profile

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_budgets.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_budgets", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_synthetic(capsys):
    assert load_bench().main(["--calib-steps", "200", "--steps", "300", "--fractions", "0.5", "--bo-trials", "0"]) == 0
    out = capsys.readouterr().out
    assert "under shift" in out and "Peak cap" in out and "Deadline" in out
    # Peak adherence column: no step exceeded its peak budget.
    peak_rows = out.split("== Peak cap")[1].split("==")[0].strip().splitlines()[2:]
    assert peak_rows and all(row.split()[-1] == "0" for row in peak_rows)


def test_bench_recorded(tmp_path, capsys):
    np.save(tmp_path / "x.npy", synthetic_exit_actions(300, 4, seed=2))
    synthetic_profile(4).save(tmp_path / "profile.json")
    args = ["--exit-actions", str(tmp_path / "x.npy"), "--profile", str(tmp_path / "profile.json"),
            "--fractions", "0.3", "0.7", "--steps", "200", "--bo-trials", "2"]
    assert load_bench().main(args) == 0
    assert "held-out recorded steps" in capsys.readouterr().out
