"""Every bench script runs in --quick mode as its own process and prints its key ratio lines.

One test per script; a script that does not exist yet is skipped with that
reason. The energy meters are also tested on a fake RAPL sysfs tree (this
machine has none), including the counter's wrap-around.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures import load_bench

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
TIMEOUT_S = 180  # issue 7: each --quick run under 3 minutes on 2 cores


def run_quick(script: str, *extra: str) -> str:
    path = BENCH / script
    if not path.is_file():
        pytest.skip(f"bench/{script} does not exist yet")
    # The working tree's deer_vla, not a possibly older installed copy.
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), MPLBACKEND="Agg",
               PYTHONPATH=pythonpath)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(path), "--quick", *extra], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, f"{script} --quick failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n" \
                                 f"{proc.stderr[-5000:]}"
    print(f"{script} --quick took {time.monotonic() - t0:.1f} s")
    return proc.stdout


def needs_model() -> None:
    if importlib.util.find_spec("deer_vla.model.runner") is None:
        pytest.skip("deer_vla.model.runner does not exist yet")


@pytest.mark.slow
def test_bench_budgets_quick():
    out = run_quick("bench_budgets.py")
    assert "under shift" in out and "Peak cap" in out and "Deadline" in out
    # the slowed machine's rows: at 2x, the guard that adds the drift margin overruns less than the blind one
    rows = [line.split() for line in out.splitlines() if line.startswith("  2.0x")]
    assert len(rows) == 3, out
    assert all(float(r[4].rstrip("%")) < float(r[3].rstrip("%")) for r in rows), rows


@pytest.mark.slow
@pytest.mark.parametrize("budget", ["deadline", "peak_ms"])
def test_bench_deadline_drift_quick(tmp_path, budget):
    """The real default model beside two busy processes started after configure timed it: the controller that
    adds the measured drift margin goes past the time budget less often than the one planning on configure's
    times, and it measured a drift."""
    needs_model()
    out = run_quick("bench_deadline_drift.py", "--budget", budget, "--json", str(tmp_path / "drift.json"))
    assert "beside 2 busy process(es)" in out and f"steps over {budget}" in out
    result = json.loads((tmp_path / "drift.json").read_text())
    assert result["budget"] == budget
    loaded = result["phases"]["loaded"]
    assert loaded["following"]["steps"] == loaded["blind"]["steps"] == 120
    assert loaded["following"]["over"] <= loaded["blind"]["over"], loaded
    assert result["margin_ms"] > 0.0
    if budget == "peak_ms":  # the blind cap never moves (12.0 measured); the following one came down
        assert loaded["following"]["mean_exit"] < loaded["blind"]["mean_exit"] - 1.0, loaded


@pytest.mark.slow
def test_bench_model_quick():
    needs_model()
    out = run_quick("bench_model.py")
    assert "ratio full/exit-1: LLM GFLOPs" in out and "int8 dynamic (Linear) vs fp32" in out


@pytest.mark.slow
@pytest.mark.ros
def test_bench_node_latency_quick():
    needs_model()
    out = run_quick("bench_node_latency.py", "--transport", "raw,compressed")
    assert "overhead_ms" in out and "round_trip_ms" in out
    # both executors measured in the one run, and their ratio
    assert "events executor" in out and "single executor" in out and "ratio overhead median single/events" in out
    # both image transports too: JPEG frames through <base>/compressed reach the model (no step lost)
    assert "compressed images" in out and "JPEG median" in out and "ratio overhead inside the node" in out
    assert "lost 0" in out and "lost 1" not in out


@pytest.mark.slow
@pytest.mark.ros
def test_bench_node_latency_under_load_and_halt_quick():
    needs_model()
    out = run_quick("bench_node_latency.py", "--executors", "events", "--cpu-load", "1", "--halt", "3")
    assert "cpu load 0" in out and "cpu load 1" in out  # both runs, side by side
    assert "ratio loaded/unloaded p95" in out and "halt_response_ms" in out


@pytest.mark.slow
@pytest.mark.ros
def test_bench_soak_quick():
    out = run_quick("bench_soak.py")
    assert "RSS growth after warm-up" in out and "flat" in out
    out = run_quick("bench_soak.py", "--compressed", "--record")  # JPEG frames decoded by each step, recorded
    assert "JPEG cameras" in out and "400 steps" in out and "flat" in out


@pytest.mark.slow
def test_bench_tradeoff_quick(tmp_path):
    needs_model()
    if not (REPO / "deer_vla" / "assets" / "default_checkpoint" / "config.json").is_file():
        pytest.skip("bench_tradeoff needs the shipped checkpoint deer_vla/assets/default_checkpoint (not there yet)")
    out = run_quick("bench_tradeoff.py", "--out", str(tmp_path))
    assert "full model: success" in out and "controller compute /" in out
    # The compute-reduction line, or its plain statement that no budget matched the full model's success.
    assert "matched success (within" in out or "no dynamic budget kept success" in out
    assert (tmp_path / "tradeoff.png").is_file()


@pytest.fixture(scope="module")
def quick_demos(tmp_path_factory):
    """Two expert demonstrations per quick-mode task (calibration / held-out)."""
    needs_model()
    if not (REPO / "deer_vla" / "assets" / "default_checkpoint" / "config.json").is_file():
        pytest.skip("the dataset benches need the shipped checkpoint deer_vla/assets/default_checkpoint")
    from deer_vla.data.collect import cli_main as collect

    demos = tmp_path_factory.mktemp("quick") / "demos"
    assert collect(["--tasks", "coffee-button,handle-press", "--episodes-per-task", "2", "--out", str(demos),
                    "--image-size", "64", "--workers", "1", "--seed", "0", "--no-progress"]) == 0
    return demos


@pytest.mark.slow
def test_bench_budget_shift_quick(tmp_path, quick_demos):
    out = run_quick("bench_budget_shift.py", "--dataset", str(quick_demos), "--out", str(tmp_path / "res"))
    assert "calibrated on" in out and "task shift: worst average-budget error without tracking" in out
    import json

    rows = json.loads((tmp_path / "res" / "shift.json").read_text())["rows"]
    # both directions of the shift, every budget with a static and a tracked run, costs measured (> 0)
    assert {(r["calibrated_on"], r["run_on"]) for r in rows} == {("A", "B"), ("B", "A")}
    assert all(r["static_gflops"] > 0 and r["tracked_gflops"] > 0 and r["target_gflops"] > 0 for r in rows)



@pytest.mark.slow
def test_bench_oracle_gap_quick(tmp_path, quick_demos):
    out = run_quick("bench_oracle_gap.py", "--dataset", str(quick_demos), "--out", str(tmp_path / "gap.json"),
                    "--criterion", "consecutive,learned")  # the shipped checkpoint's exit gates
    for method, criterion in [("quantile", "consecutive"), ("descent", "consecutive"), ("quantile", "learned"),
                              ("descent", "learned"), ("descent", "perfect gate")]:
        assert f"dynamic controller ({method}, {criterion}) / oracle at the same mean error" in out
    import json

    rows = json.loads((tmp_path / "gap.json").read_text())["rows"]
    static = [r for r in rows if r["budget_fraction"] is None]
    assert len(static) >= 2 and len(rows) > len(static)
    # the oracle is a lower bound at every mode's own error; the deepest static exit has error 0
    assert all(r["oracle_cost"] <= r["mean_cost"] * (1 + 1e-9) for r in rows)
    assert static[-1]["mean_error"] == 0 and static[-1]["controller_over_oracle"] == pytest.approx(1.0)
    assert all(0 < r["expert_rms"] < 2 for r in rows)  # against the demonstrations' own actions
    assert {r["criterion"] for r in rows} == {None, "consecutive", "learned", "perfect gate", "learned from 2"}
    # below exit 2's cost (0.15x) the consecutive criterion can only run exit 1; the learned one (the shipped
    # gates have an exit-1 gate) mixes exit 1 with deeper exits
    low = {(r["criterion"], r["method"]): r["exit1_fraction"] for r in rows if r["budget_fraction"] == 0.15}
    assert low["consecutive", "quantile"] == 1.0
    assert 0 < low["learned", "descent"] < 1 and 0 < low["perfect gate", "descent"] < 1
    assert all(r["exit1_fraction"] == 0 for r in rows if r["criterion"] == "learned from 2")


@pytest.mark.slow
def test_bench_history_quick(tmp_path, quick_demos):
    import json

    out = run_quick("bench_history.py", "--dataset", str(quick_demos), "--out", str(tmp_path / "history.json"),
                    "--exits", "1,2", "--oracle", "0,0.05", "--reference-oracle", "0.05")
    assert "from full, own history" in out
    modes = json.loads((tmp_path / "history.json").read_text())["modes"]
    assert set(modes) == {"full", "exit1", "exit2", "oracle0", "oracle0.05", "reference-oracle0.05"}
    # judged against the reference itself, every step it commits is within the tolerance of the full model's
    assert modes["reference-oracle0.05"]["from_full_own_history"] <= 0.05
    assert modes["exit1"]["mean_exit"] == 1 and modes["exit2"]["mean_exit"] == 2
    assert modes["full"]["from_full_own_history"] == 0 and modes["full"]["cost_over_full"] == pytest.approx(1)
    # tolerance 0 commits the full model at every step, so its history is the reference's: nothing drifts
    assert modes["oracle0"]["from_full_own_history"] < 1e-6 and modes["oracle0"]["mean_exit"] > 1
    # a static exit's own history is not the full model's: the two replays differ (one runner per mode)
    assert modes["exit1"]["from_full_own_history"] != pytest.approx(modes["exit1"]["from_full_full_history"])
    assert all(0 < m["from_expert_own_history"] < 2 for m in modes.values())


@pytest.mark.slow
def test_bench_language_quick(quick_demos):
    out = run_quick("bench_language.py", "--dataset", str(quick_demos))
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith(
        ("coffee-button", "handle-press", "all "))}
    assert set(rows) == {"coffee-button", "handle-press", "all"}
    canonical, heldout = float(rows["all"][0]), float(rows["all"][1])
    assert 0 < canonical < 2 and 0 < heldout < 2  # RMS motion errors against the expert, both ways measured
    exit1_canonical, exit1_heldout = float(rows["all"][5]), float(rows["all"][6])
    assert 0 < exit1_canonical < 2 and 0 < exit1_heldout < 2  # and exit 1's
    assert float(rows["all"][7]) == pytest.approx(exit1_heldout / exit1_canonical, abs=0.006)
    to_full = [float(v) for v in rows["all"][8:10]]  # exit 1's distance from the full model, both ways
    assert len(to_full) == 2 and all(0 < d < 2 for d in to_full)


@pytest.mark.slow
def test_bench_risk_quick(tmp_path, quick_demos):
    out = run_quick("bench_risk.py", "--dataset", str(quick_demos), "--out", str(tmp_path / "risk.json"))
    assert "LTT viol." in out
    import json

    pairs = json.loads((tmp_path / "risk.json").read_text())["pairs"]
    assert pairs and all(0 <= p["ltt_violation_rate"] <= 1 and len(p["splits"]) > 0 for p in pairs)


@pytest.mark.slow
def test_bench_memory_quick():
    needs_model()
    out = run_quick("bench_memory.py")
    assert "ratio full/cap-1: weights" in out and "peak RSS over baseline" in out
    assert "full/cap RSS" in out and "RSS/weights" in out and "peak RSS over baseline / weights: cap 1 " in out


def test_bench_latency_quick(tmp_path):  # ~10 s
    needs_model()
    out = run_quick("bench_latency.py", "--json", str(tmp_path / "latency.json"))
    assert "ratio full/dynamic: latency median" in out
    # a time budget's worst case per exit, both ways, beside the measured steps
    assert "the worst case a time budget (peak_ms, deadline) trusts per exit" in out
    import json

    worst = json.loads((tmp_path / "latency.json").read_text())["info"]["time_budget_worst_ms"]
    assert list(worst) == ["exit 1", "exit 2", "exit 3", "full"]
    assert all(w["whole_steps"] > 0 and w["parts_alone"] > 0 and 0 <= w["missed_whole_steps"] <= 1
               for w in worst.values())
    assert worst["full"]["whole_steps"] > worst["exit 1"]["whole_steps"]
    assert "ratio full/exit-k (median latency): exit 1" in out
    # Either a measured energy line or the exact "not available" line, never a made-up figure.
    assert "energy (" in out or "energy: not available (no RAPL/NVML on this machine)" in out


def test_bench_train_speed_quick(tmp_path):  # ~20 s: the real Trainer from the shipped checkpoint
    needs_model()
    out = run_quick("bench_train_speed.py", "--num-workers", "0,1", "--json", str(tmp_path / "speed.json"))
    assert "batch    2 x window 10, 0 data workers:" in out and "steps/s" in out and "the recipe's 14000 steps" in out
    import json

    rows = json.loads((tmp_path / "speed.json").read_text())["rows"]
    assert [(r["batch_size"], r["num_workers"]) for r in rows] == [(2, 0), (2, 1)]  # a worker process trained too
    assert all(r["steps"] == 3 and r["steps_per_s"] > 0 for r in rows)
    assert "data windows alone" in out and 0 < rows[0]["data_ms_per_batch"] < 1e3 / rows[0]["steps_per_s"]


def test_gpu_check_refuses_a_machine_without_a_gpu_and_writes_nothing(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: bench/gpu_check.sh would run for minutes")
    proc = subprocess.run(["bash", str(BENCH / "gpu_check.sh"), str(tmp_path / "out")], cwd=tmp_path,
                          env=dict(os.environ, PYTHON=sys.executable), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "sees no CUDA GPU here: nothing to check" in proc.stderr
    assert not (tmp_path / "out").exists()


def run_bad(script: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    return subprocess.run([sys.executable, str(BENCH / script), *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("script,flag", [
    ("bench_latency.py", "--json"), ("bench_memory.py", "--json"), ("bench_soak.py", "--json"),
    ("bench_node_latency.py", "--json"), ("bench_mcap_split.py", "--out"), ("bench_train_speed.py", "--json"),
])
def test_a_bench_refuses_an_output_it_cannot_write_before_its_work(script, flag, tmp_path):
    """Checked at the end, a missing folder lost the whole measurement (minutes for some) to a traceback."""
    proc = run_bad(script, "--quick", flag, str(tmp_path / "missing" / "out.json"))
    assert proc.returncode == 2 and f"{flag}: no folder {tmp_path / 'missing'}" in proc.stderr
    assert "Traceback" not in proc.stderr and not proc.stdout.strip()  # nothing measured first


@pytest.mark.parametrize("script,args,message", [
    ("bench_latency.py", ["--episodes", "1000000000"], "--episodes must be in 1..1000"),  # filled 9.5 GB in 35 s
    ("bench_latency.py", ["--steps", "0"], "--steps must be in 1..1000"),  # was the default, silently
    ("bench_memory.py", ["--repeats", "0"], "--repeats must be in 1..100"),
    ("bench_budgets.py", ["--exits", "1"], "--exits must be a number in [2, 64], got 1"),  # an IndexError
    ("bench_budgets.py", ["--fractions", "nan"], "--fractions must be a number in [0, 1], got nan"),
    ("bench_node_latency.py", ["--image-size", "0"], "--image-size must be in 8..1024"),  # 5 s per refused step
    ("bench_mcap_split.py", ["--configs", "0:0,,x"], "--configs: '' is not SPLIT_MIB:SPLIT_S"),
    ("bench_latency.py", ["--dataset", "/nonexistent"], "dataset directory not found"),  # a DatasetError traceback
    ("bench_train_speed.py", ["--num-workers", "0,-1"], "expected worker counts in 0..64"),
    # NaN was tested as a risk limit: no test risk exceeds it, so the guarantee "held"
    ("bench_risk.py", ["--pair", "mean,nan,0.1"], "--pair 'mean,nan,0.1': EPS must be a finite number > 0"),
    ("bench_risk.py", ["--pair", "mean,0.01,1"], "and DELTA in (0, 1)"),
    # an explicit 0 was turned into the default (`args.x or default`), or reached torch as a traceback
    ("bench_risk.py", ["--splits", "0"], "argument --splits: expected an integer >= 1, got 0"),
    ("bench_risk.py", ["--episodes", "0"], "argument --episodes: expected an integer >= 1, got 0"),
    ("bench_risk.py", ["--threads", "0"], "argument --threads: expected an integer in 1..1024, got 0"),
    # torch takes a C int: 10**30 was an overflow traceback (a review)
    ("bench_instruction_match.py", ["--threads", str(10**30)], "argument --threads: expected an integer in 1..1024"),
    ("bench_instruction_sets.py", ["--floor", "nan"], "argument --floor: expected a number in 0..1, got nan"),
    ("bench_latency.py", ["--quick", "--threads", str(10**30)], "--threads must be in 0..1024"),
    ("bench_oracle_gap.py", ["--threads", "0"], "argument --threads: expected an integer in 1..1024, got 0"),
    ("bench_oracle_gap.py", ["--held-episodes", "0"], "argument --held-episodes: expected an integer >= 1, got 0"),
    ("bench_history.py", ["--threads", "0"], "argument --threads: expected an integer in 1..1024, got 0"),
    ("bench_history.py", ["--max-steps", "0"], "argument --max-steps: expected an integer >= 1, got 0"),
    ("bench_history.py", ["--episodes-per-task", "0"], "argument --episodes-per-task: expected an integer >= 1"),
    ("bench_gate_fit.py", ["--threads", "0"], "argument --threads: expected an integer in 1..1024, got 0"),
    ("bench_language.py", ["--dataset", "x", "--threads", "0"], "argument --threads: expected an integer in 1..1024"),
    ("bench_language.py", ["--dataset", "x", "--episodes-per-task", "0"], "argument --episodes-per-task: expected"),
    ("bench_budget_shift.py", ["--max-steps", "0"], "argument --max-steps: expected an integer >= 1, got 0"),
    ("bench_mcap_split.py", ["--seconds", "1.5"], "--seconds must be in [3, 86400] (a 2 s warm-up"),  # child died
])
def test_a_bench_refuses_bad_values_in_one_line(script, args, message):
    proc = run_bad(script, *args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("script", ["bench_risk.py", "bench_oracle_gap.py", "bench_history.py", "bench_gate_fit.py",
                                    "bench_budget_shift.py"])
def test_a_dataset_bench_refuses_an_output_it_cannot_write_before_its_work(script, tmp_path):
    """Their --out folder is made for them (bench_results/ by default); under a file it cannot be: this was found
    out after the whole run."""
    (tmp_path / "afile").write_text("")
    data = [] if script == "bench_gate_fit.py" else ["--dataset", str(tmp_path)]  # before it is looked at
    proc = run_bad(script, *data, "--out", str(tmp_path / "afile" / "out"))
    assert proc.returncode == 2 and f"--out: cannot write to {tmp_path / 'afile'}" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not proc.stdout.strip()  # nothing measured first


def fake_dataset(root: Path, tasks: list[str], per_task: int = 2) -> Path:
    """A dataset's layout with empty episode files: enough for the task checks made before anything is read."""
    from deer_vla.core.action_spec import ActionSpec
    from deer_vla.data.episodes import EPISODE_DIR, DatasetMeta

    root.mkdir(parents=True)
    spec = ActionSpec(axes=("x", "y", "z"), scale=(0.01, 0.01, 0.01))
    DatasetMeta(cameras=("static",), image_size=16, action_spec=spec.to_dict(), proprio_dim=4, tasks=tasks).save(root)
    for task in tasks:
        (root / EPISODE_DIR / task).mkdir(parents=True)
        for seed in range(per_task):
            (root / EPISODE_DIR / task / f"{task}__seed{seed:07d}.h5").write_bytes(b"")
    return root


@pytest.mark.parametrize("script,args", [
    ("bench_oracle_gap.py", ["--dataset", "{data}", "--tasks", "drawer-open"]),
    ("bench_history.py", ["--dataset", "{data}", "--tasks", "drawer-open"]),
    ("bench_gate_fit.py", ["--quick", "--train", "{data}", "--held", "{held}"]),  # --quick: the held-out tasks
])
def test_a_task_missing_from_the_dataset_is_one_line_naming_the_tasks_present(script, args, tmp_path):
    """It was a KeyError traceback from the dataset's lookup."""
    data = fake_dataset(tmp_path / "data", ["coffee-button"])
    held = fake_dataset(tmp_path / "held", ["coffee-button", "drawer-open"])
    args = [a.format(data=data, held=held) for a in args]
    proc = run_bad(script, *args, "--out", str(tmp_path / "out.json"))
    assert proc.returncode == 2 and f"task 'drawer-open' has no episodes in {data}; present: coffee-button" \
        in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_bench_language_refuses_a_dataset_without_suite_tasks(tmp_path):
    """Every task was skipped and the table was NaN, rc 0."""
    data = fake_dataset(tmp_path / "data", ["my-robot-task"])
    proc = run_bad("bench_language.py", "--dataset", str(data))
    assert proc.returncode == 2 and f"no task of {data} (my-robot-task) is a suite task" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_bench_budgets_refuses_an_empty_exit_actions_file_in_one_line(tmp_path):
    (tmp_path / "empty.npy").write_bytes(b"")  # was an EOFError traceback
    proc = run_bad("bench_budgets.py", "--exit-actions", str(tmp_path / "empty.npy"), "--profile", "unused.json")
    assert proc.returncode == 2 and "--exit-actions" in proc.stderr and "not a readable .npy array" in proc.stderr
    assert "Traceback" not in proc.stderr




def test_bench_risk_refuses_a_split_with_an_empty_side():
    """An empty test side has NaN risk, which never exceeds eps: the guarantee "held" ("ok", rc 0)."""
    risk = load_bench("bench_risk")
    assert risk.calib_units(143, 0.5, "step") == 72 and risk.calib_units(4, 0.6, "episode") == 2
    for n, fraction, unit in [(143, 0.999, "step"), (4, 0.9, "episode"), (1, 0.5, "episode")]:
        with pytest.raises(ValueError, match=f"leaves none for the test side; each side needs at least one {unit}"):
            risk.calib_units(n, fraction, unit)


def test_an_action_cache_is_written_whole_and_an_unreadable_one_is_a_miss(tmp_path, capsys, monkeypatch):
    import numpy as np

    common = load_bench("common")
    key, path = np.array(["ckpt", "data"]), tmp_path / "cache.npz"
    common.save_cache(path, key=key, actions=np.arange(6.0))
    assert common.load_cache(path, key)["actions"].tolist() == list(range(6))
    assert common.load_cache(path, np.array(["other"])) is None  # another checkpoint or data: a miss
    assert [p.name for p in tmp_path.iterdir()] == ["cache.npz"]  # no temporary file left beside it

    def killed(file, **arrays):  # a run killed (or a disk filled) halfway through writing
        file.write(b"PK\x03\x04 half a zip")
        raise OSError("No space left on device")

    monkeypatch.setattr(np, "savez", killed)
    with pytest.raises(OSError):
        common.save_cache(path, key=key, actions=np.zeros(3))
    monkeypatch.undo()
    assert common.load_cache(path, key)["actions"].tolist() == list(range(6))  # the earlier cache is intact
    assert [p.name for p in tmp_path.iterdir()] == ["cache.npz"]

    path.write_bytes(path.read_bytes()[:100])  # truncated by an older writer: was a BadZipFile traceback
    capsys.readouterr()
    assert common.load_cache(path, key) is None
    err = capsys.readouterr().err
    assert f"warning: cache {path} is unreadable" in err and "recomputing" in err and len(err.splitlines()) == 1


def test_bench_budget_shift_rows_carry_success_counts_and_wilson_intervals(capsys):
    from deer_vla.evaluation.stats import wilson_interval

    shift = load_bench("bench_budget_shift")

    def overall(k: int, n: int, gflops: float) -> dict:
        return {"successes": k, "episodes": n, "success_rate": k / n, "mean_llm_gflops": gflops, "steps": 10 * n}

    payload = {"modes": {"dyn": {"kind": "dynamic", "budget_gflops": 0.05, "budget_fraction": 0.3},
                         "dyn+track": {"kind": "dynamic", "track_budget": True}},
               "summary": {"dyn": {"overall": overall(5, 8, 0.06)}, "dyn+track": {"overall": overall(2, 8, 0.05)}}}
    (row,) = shift.adherence_rows(payload, "A", "B")
    assert (row["static_successes"], row["static_episodes"], row["tracked_successes"]) == (5, 8, 2)
    assert row["static_success_ci95"] == pytest.approx(wilson_interval(5, 8))
    assert row["tracked_success_ci95"] == pytest.approx(wilson_interval(2, 8))
    shift.print_rows([row])
    lo, hi = wilson_interval(5, 8)
    assert f"62.5% 5/8 [{100 * lo:.1f}, {100 * hi:.1f}]" in capsys.readouterr().out


def test_bench_mcap_split_reports_the_growth_ratio():
    """It printed "ratio ... 12.0 / 3.0 MB" and the JSON had no ratio."""
    split = load_bench("bench_mcap_split")
    results = [{"split_mib": 0, "split_s": 0, "rss_growth_mb": 12.0}, {"split_mib": 32, "split_s": 0,
                                                                         "rss_growth_mb": 3.0},
               {"split_mib": 256, "split_s": 3600, "rss_growth_mb": 0.0}]
    split.add_growth_ratios(results)
    assert [r["rss_growth_unsplit_over_split"] for r in results] == [None, 4.0, float("inf")]


def test_bench_memory_always_measures_the_full_model(monkeypatch):
    """The reference of every full/cap ratio: the largest cap asked for was labelled "full"."""
    import argparse

    memory = load_bench("bench_memory")
    monkeypatch.setattr(memory, "resident_profile", lambda checkpoint: ([10, 20, 30, 40], [100, 200, 300, 400]))
    loaded = []

    def spawn(checkpoint, k, args):
        loaded.append(k)
        return {"max_exit": k, "peak_rss": 1000 + k, "rss_after": 0}

    monkeypatch.setattr(memory, "spawn", spawn)
    rows = memory.measure(Path("unused"), argparse.Namespace(caps=[2, 1, 2], repeats=1))
    assert loaded == [0, 1, 2, 4] and [r["max_exit"] for r in rows] == [1, 2, 4]  # baseline first, then the caps


def test_gpu_check_names_a_python_without_torch_in_one_line(tmp_path):
    python = tmp_path / "python"  # this interpreter without its site-packages: no torch
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    python.chmod(0o755)
    proc = subprocess.run(["bash", str(BENCH / "gpu_check.sh"), str(tmp_path / "out")], cwd=tmp_path,
                          env=dict(os.environ, PYTHON=str(python)), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and f"gpu_check: {python} cannot import torch (ModuleNotFoundError" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()


# --- energy meters (fast, no model) -----------------------------------------------------------


def load_energy():
    spec = importlib.util.spec_from_file_location("bench_energy", BENCH / "energy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_rapl(root: Path, name: str, energy_uj: int, max_uj: int) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "energy_uj").write_text(f"{energy_uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
    (d / "name").write_text("package-0\n")
    return d


def test_rapl_meter_counts_across_wraparound(tmp_path):
    energy = load_energy()
    pkg = fake_rapl(tmp_path, "intel-rapl:0", 9_000_000, 10_000_000)
    fake_rapl(tmp_path, "intel-rapl:0:0", 1, 10_000_000)  # sub-domain: inside the package figure
    meter = energy.rapl_meter(tmp_path, poll_s=60)
    assert meter is not None and "package-0" in meter.name
    meter.start()
    (pkg / "energy_uj").write_text("500000\n")  # wrapped: 9.0 J -> 10.0 J -> 0.5 J
    assert meter.stop() == pytest.approx(1.5)


def test_rapl_meter_absent_or_unreadable(tmp_path):
    energy = load_energy()
    assert energy.rapl_meter(tmp_path / "missing") is None
    (tmp_path / "intel-rapl:0").mkdir()  # no readable counter (root-only on patched kernels)
    assert energy.rapl_meter(tmp_path) is None


def test_no_meter_means_not_available_message():
    energy = load_energy()
    assert energy.NOT_AVAILABLE == "energy: not available (no RAPL/NVML on this machine)"
    if not energy.RAPL_ROOT.is_dir():  # this CI machine: an AMD VM without powercap, no NVIDIA GPU
        assert energy.detect_meters("cpu") == []


def test_power_sampling_meter_integrates_watts():
    energy = load_energy()
    meter = energy._PowerSamplingMeter("fake", lambda: 10.0, poll_s=0.005)
    t0 = time.perf_counter()
    meter.start()
    time.sleep(0.1)
    joules = meter.stop()
    assert joules == pytest.approx(10.0 * (time.perf_counter() - t0), rel=0.2)


# --- the energy path of bench_latency, on fake meters (no meter on this machine) -------------


class FakeWattMeter:
    """Joules = constant watts x wall time: a meter whose answer the test knows."""

    def __init__(self, name: str, watts: float) -> None:
        self.name, self.watts, self._t0 = name, watts, None

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def stop(self) -> float:
        assert self._t0 is not None
        return self.watts * (time.perf_counter() - self._t0)


def test_latency_energy_per_action_and_report(capsys):
    from deer_vla.control import ExitController
    from deer_vla.control.synthetic import SyntheticExitPolicy, synthetic_episodes, synthetic_profile

    bench = load_bench("bench_latency")
    profile = synthetic_profile(3)
    ctls = {"full": ExitController(SyntheticExitPolicy(3), profile, None, fixed_exit=3),
            "dynamic": ExitController(SyntheticExitPolicy(3), profile, None, fixed_exit=1)}
    meter = FakeWattMeter("fake", 10.0)
    gross, net = bench.measure_energy(ctls, synthetic_episodes(1, 5), [meter], min_seconds=0.05)
    for mode in ctls:
        assert gross[mode]["fake"] > 0
        # Above idle: constant power means no extra energy per action.
        assert abs(net[mode]["fake"]) < 0.2 * gross[mode]["fake"]
    stats = bench.latency_stats([1.0, 2.0, 3.0])
    results = [bench.ModeResult(name, stats, 1.0, 1.0, 2.0, {"fake": j}, {"fake": j / 2})
               for name, j in (("full", 4.0), ("exit 1", 1.0), ("dynamic", 2.0))]
    bench.report(results, {"machine": "test", "checkpoint": "x", "exits": 2, "device": "cpu",
                           "observations": "synthetic", "budget_average_llm_gflops": 1.0,
                           "calibration_steps": 10, "calibration_expected_llm_gflops": 1.0, "meters": ["fake"],
                           "time_budget_worst_ms": {"exit 1": {"parts_alone": 1.5, "whole_steps": 2.5,
                                                               "missed_parts_alone": 0.5, "missed_whole_steps": 0.25}}})
    out = capsys.readouterr().out
    assert "energy (fake): full 4 J/action, dynamic 2 J/action, ratio full/dynamic 2.00x" in out
    assert "exit 1             1.500          2.500       2.980 |             50.0%  25.0%" in out
    assert "not available" not in out


@pytest.mark.slow
def test_bench_gate_fit_quick(tmp_path, quick_demos):
    shipped = REPO / "deer_vla" / "assets" / "default_checkpoint" / "gates.safetensors"
    out = run_quick("bench_gate_fit.py", "--train", str(quick_demos), "--held", str(quick_demos),
                    "--out", str(tmp_path / "fit.json"), "--cache", str(tmp_path / "cache"), "--gates", str(shipped))
    assert "best held-out fit:" in out
    import json

    rows = json.loads((tmp_path / "fit.json").read_text())["rows"]
    given = rows.pop()  # the shipped gates file, scored the same way after the trained settings
    assert given["gates"] == str(shipped) and given["fit_mse"] > 0 and set(given["budgets"]) == {"0.3", "0.5"}
    assert [(r["per_task"], r["hidden"]) for r in rows] == [(1, 16), (2, 16)]
    assert rows[1]["steps"] > rows[0]["steps"]  # the second setting trains on more episodes
    # a fit and a controller/oracle ratio (>= 1: the oracle is a lower bound) for every budget
    assert all(r["fit_mse"] > 0 and r["constant_mse"] > 0 for r in rows)
    assert all(b["controller_over_oracle"] >= 1 - 1e-9 for r in rows for b in r["budgets"].values())
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["demos.npz"]  # one per dataset, reused


def test_bench_instruction_match_reports_both_sides_and_refuses_a_checkpoint_without_a_record(tmp_path: Path):
    if not (REPO / "deer_vla" / "assets" / "default_checkpoint" / "config.json").is_file():
        pytest.skip("needs the shipped checkpoint deer_vla/assets/default_checkpoint")
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    script = str(BENCH / "bench_instruction_match.py")
    proc = subprocess.run([sys.executable, script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "held-out: nearest trained wording of its own task" in proc.stdout
    floor = next(line.split() for line in proc.stdout.splitlines() if line.strip().startswith("0.45"))
    assert floor[1] == "0/70"  # the default floor leaves every held-out wording of the ten tasks alone
    assert floor[2] == "23/28" and floor[3] == "4/21"  # the figures docs/ros.md quotes
    assert "other objects, most similar first:" in proc.stdout
    assert "held-out close calls (another task's wording within 0.02 of the nearest: the node's WARN): 2/70, " \
           "1 of them nearest another task" in proc.stdout  # the figures docs/ros.md and the node's CLOSE_CALL quote
    assert "nearest trained wording of its own task 66/70" in proc.stdout  # test_instruction_match's figure
    # the figures docs/ros.md quotes for the words-never-learned WARN and the refusal of texts naming nothing
    assert ("above the floor 0.45, naming a word never learned (the node's WARN): held-out 6/70, other requests "
            "3/5, other objects 16/17") in proc.stdout
    assert ("naming no word of a trained wording (refused in either mode): held-out 0/70, other requests 16/28, "
            "other objects 0/21") in proc.stdout
    # mt50 without its record (as shipped before 2026-12-06): the files linked, extra.json without "instructions"
    bare = tmp_path / "mt50_bare"
    bare.mkdir()
    shipped = REPO / "deer_vla" / "assets" / "mt50_checkpoint"
    for f in shipped.iterdir():
        if f.name != "extra.json":
            (bare / f.name).symlink_to(f)
    extra = json.loads((shipped / "extra.json").read_text())
    assert extra["training"].pop("instructions")
    (bare / "extra.json").write_text(json.dumps(extra))
    proc = subprocess.run([sys.executable, script, "--checkpoint", str(bare)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "no record of trained instructions" in proc.stderr


def test_bench_instruction_sets_hears_the_labelled_instructions_as_the_node_does():
    """Each category side by side (refused, right or wrong, silent or WARN) on the default checkpoint: the
    figures docs/RESULTS.md (session 64) quotes; "wrong, silent" for a REFUSE label is the harmful cell."""
    if not (REPO / "deer_vla" / "assets" / "default_checkpoint" / "config.json").is_file():
        pytest.skip("needs the shipped checkpoint deer_vla/assets/default_checkpoint")
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    proc = subprocess.run([sys.executable, str(BENCH / "bench_instruction_sets.py"), "--list"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "583 labelled instructions" in proc.stdout
    rows = {key + ")": [int(v) for v in rest.split()] for key, _, rest in
            (line.partition(")") for line in proc.stdout.splitlines() if line.startswith("all ("))}
    # (session 69: "The water is running. Turn it off." heard as faucet-open, a wrong WARN, is refused: its request
    # alone is faucet-close, whose "off" the heard task's wordings lack)
    assert rows["all (REFUSE)"] == [168, 0, 0, 0, 173, 9] and rows["all (task)"] == [17, 0, 168, 42, 6, 0]
    assert proc.stdout.count("\n  [") == 9  # --list: each one run as a wrong task silently
    second = subprocess.run([sys.executable, str(BENCH / "bench_instruction_sets.py"), "--data",
                             str(BENCH / "data" / "instructions_labelled_2.json")], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 0 and "570 labelled instructions" in second.stdout, second.stderr[-3000:]
    rows = {key + ")": [int(v) for v in rest.split()] for key, _, rest in
            (line.partition(")") for line in second.stdout.splitlines() if line.startswith("all ("))}
    # session 65's speech, stop, correction and software families (fb34d8e: REFUSE 115 0 0 0 52 31, task 53 0 155
    # 127 22 15)
    # (one right silent to right WARN in session 67: "open the drawer -- sent from my phone" names a phone)
    # (and session 69's "the water is running, turn it off", a wrong WARN, refused)
    assert rows["all (REFUSE)"] == [172, 0, 0, 0, 22, 4] and rows["all (task)"] == [77, 0, 174, 108, 13, 0]


def test_bench_refusal_classifier_measures_each_set_held_out():
    """The learned classifier of docs/RESULTS.md session 67, on the first labelled file's two sets (each held out
    in turn): both operating points, every cell counted over the texts the rules let run; a bad L2 is refused."""
    if not (REPO / "deer_vla" / "assets" / "default_checkpoint" / "config.json").is_file():
        pytest.skip("needs the shipped checkpoint deer_vla/assets/default_checkpoint")
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    script = str(BENCH / "bench_refusal_classifier.py")
    proc = subprocess.run([sys.executable, script, "--data", str(BENCH / "data" / "instructions_labelled.json")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "583 labelled texts in 2 sets, each held out in turn" in proc.stdout
    # the rules' own verdicts, as bench_instruction_sets counts them: 9 REFUSE-labelled run silently, 173 WARN
    assert proc.stdout.count("REFUSE-labelled the rules run silent: caught ") == 2
    assert proc.stdout.count("/9 (") == 2 and proc.stdout.count("/173 (") == 2
    assert proc.stdout.count("the suites' held-out wordings flagged: ") == 2
    bad = subprocess.run([sys.executable, script, "--l2", "nan"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "--l2 must be >= 0, got nan" in bad.stderr
