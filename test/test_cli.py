"""`deer-vla`'s dispatcher: Ctrl-C and file-system errors end a command in one line, not a traceback."""
from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from deer_vla import cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("raised", "code", "said"), [
    (KeyboardInterrupt(), 130, "deer-vla fake: interrupted"),
    (PermissionError(13, "Permission denied", "/proc/foo"), 1, "deer-vla fake: [Errno 13] Permission denied: "
                                                                "'/proc/foo'"),
])
def test_ctrl_c_and_os_errors_end_a_command_in_one_line(monkeypatch, capsys, raised, code, said):
    module = types.ModuleType("deer_vla_fake_command")

    def cli_main(argv):
        raise raised

    module.cli_main = cli_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(cli.COMMANDS, "fake", (module.__name__, "a command that fails"))
    monkeypatch.setattr(cli, "_warn_if_stale", lambda: None)
    assert cli.main(["fake"]) == code
    assert capsys.readouterr().err.strip() == said


def test_a_bug_still_shows_its_traceback(monkeypatch):
    """Only the user's mistakes are one line: anything else is a bug and keeps its traceback."""
    module = types.ModuleType("deer_vla_buggy_command")
    module.cli_main = lambda argv: [][0]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(cli.COMMANDS, "buggy", (module.__name__, "a command with a bug"))
    monkeypatch.setattr(cli, "_warn_if_stale", lambda: None)
    with pytest.raises(IndexError):
        cli.main(["buggy"])


@pytest.mark.parametrize(("command", "argv"), [
    ("deer_vla.ros.replay", ["x.mcap"]), ("deer_vla.train.gate", ["default"]), ("deer_vla.model.profiling", []),
    ("deer_vla.evaluation.instruction_swap", []), ("deer_vla.commands.calibrate", ["--dataset", "x"]),
    ("deer_vla.evaluation.evaluator", []),
])
def test_every_command_refuses_an_unusable_device_before_any_work(command, argv, capsys):
    """`--device gpu9`, or cuda where there is none, was a traceback from deep inside the model loader."""
    import importlib

    main = importlib.import_module(command).cli_main
    try:
        code = main([*argv, "--device", "cuda:99"])  # no machine here has 100 GPUs
    except SystemExit as stop:  # argparse's usage error
        code = stop.code
    assert code == 2
    assert "device 'cuda:99': " in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "said"), [
    (["--timeout", "-5"], "--timeout must be a number of seconds > 0, got -5.0"),
    (["--timeout", "nan"], "--timeout must be"),
    (["--average-gflops", "0"], "--average-gflops must be > 0"),
    (["--average-gflops", "inf"], "--average-gflops must be > 0"),
])
def test_demo_refuses_values_that_would_run_nothing_or_print_an_unusable_replay(argv, said, capsys):
    from deer_vla.ros.bringup import demo_main

    assert demo_main(argv) == 2  # before any node starts
    assert said in capsys.readouterr().err


@pytest.mark.parametrize("duration", ["-1", "nan", "inf"])
def test_bringup_refuses_a_duration_that_is_no_duration(duration, capsys):
    from deer_vla.ros.bringup import cli_main

    with pytest.raises(SystemExit) as stop:
        cli_main(["--duration", duration])
    assert stop.value.code == 2 and "--duration must be a number of seconds >= 0" in capsys.readouterr().err


def test_replay_refuses_an_unwritable_json_before_replaying(capsys):
    """It said so only after replaying the whole recording (minutes for a long one)."""
    from deer_vla.ros.replay import cli_main

    assert cli_main(["/no/such/recording.mcap", "--json", "/proc/no/such/dir/report.json"]) == 2
    err = capsys.readouterr().err
    assert "--json /proc/no/such/dir/report.json: cannot write to /proc/no/such/dir" in err


@pytest.mark.parametrize("argv", [["--episodes", str(2**64)], ["--seed", str(-(2**70))], ["--max-steps", "9" * 25]])
def test_demo_refuses_integers_no_ros_parameter_holds(argv, capsys):
    """rclpy failed with a SystemError traceback inside declare_parameter, after the graph had started."""
    from deer_vla.ros.bringup import demo_main

    with pytest.raises(SystemExit) as stop:
        demo_main(argv)
    assert stop.value.code == 2 and "does not fit a ROS integer parameter" in capsys.readouterr().err


def test_bringup_settings_it_cannot_use_are_a_usage_error_in_one_line(tmp_path, capsys, monkeypatch):
    """A bad --set or launch argument ended bringup with status 1 (an unprefixed SystemExit, or a failure after
    ROS had started), where every other command says "usage" with 2; a --set that is no YAML was a traceback."""
    import shutil

    from deer_vla.model.shipped import resolve_checkpoint
    from deer_vla.ros.bringup import cli_main

    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    truncated = tmp_path / "truncated"  # a checkpoint whose weights were cut short (a review's: it started ROS)
    shutil.copytree(resolve_checkpoint("default"), truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])

    for argv, message in ((["--set", "policy.rate_hz=[a"], "--set policy.rate_hz: '[a' is not a YAML value"),
                          (["--set", "policy"], "--set expects NODE.PARAM=VALUE"),
                          (["checkpoint=/x"], "launch arguments are NAME:=VALUE"),
                          (["checkpont:=/x"], "unknown launch argument(s) ['checkpont']"),
                          ([f"params_file:={tmp_path / 'none.yaml'}"], "parameter file not found"),
                          (["--graph", "sim", f"checkpoint:={tmp_path / 'none'}"], "checkpoint directory not found"),
                          # the robot graph too, before ROS and the monitor start (a newcomer's: an empty log folder
                          # was left behind, and the monitor's status printed, before the policy's configure failed)
                          ([f"checkpoint:={tmp_path / 'none'}"], "checkpoint directory not found"),
                          ([f"checkpoint:={truncated}"], "model.safetensors"),
                          # what the policy's configure refuses, before ROS too (an empty log folder was left, and
                          # the run ended with status 1 after the monitor's summary)
                          ([f"thresholds:={tmp_path / 'none.json'}"], "thresholds file not found"),
                          (["--set", "policy.budget.average_gflops=0.0001"], "smallest feasible average budget"),
                          (["--set", "policy.budget.memory_bytes=1000"], "smallest feasible memory budget"),
                          (["--set", "policy.rate_hz=-3"], "parameter 'rate_hz' = -3")):
        assert cli_main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("deer-vla bringup: ") and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "cwd" / "deer_vla_logs").exists()  # no log folder of a run that never started


def test_bringup_set_refuses_an_integer_no_ros_parameter_holds():
    from deer_vla.ros.bringup import _parse_set

    with pytest.raises(ValueError, match="does not fit a ROS integer parameter"):
        _parse_set([f"sim.episodes={2**63}"])
    with pytest.raises(ValueError, match="does not fit"):
        _parse_set([f"sim.cameras=[1, {2**64}]"])
    assert _parse_set([f"sim.seed={2**63 - 1}"]) == {"sim": {"seed": 2**63 - 1}}


def test_bringup_set_of_an_empty_value_is_the_empty_string():
    """`--set policy.checkpoint_dir=` (the docs' "" = the default checkpoint) was YAML's null, and the node said
    "checkpoint 'None' is neither an existing directory..."."""
    from deer_vla.ros.bringup import _parse_set

    assert _parse_set(["policy.checkpoint_dir=", "policy.thresholds_file= "]) == {
        "policy": {"checkpoint_dir": "", "thresholds_file": ""}}
    assert _parse_set(["policy.record_path=''"]) == {"policy": {"record_path": ""}}


@pytest.mark.parametrize("command", [
    ["-m", "deer_vla.cli", "demo", "--episodes", "1"],
    ["-c", "import sys; from deer_vla.ros.monitor_node import main; sys.exit(main())"],
])
def test_a_ros_domain_id_that_is_no_number_is_one_line_not_a_traceback(command, tmp_path):
    import os
    import subprocess

    env = dict(os.environ, ROS_DOMAIN_ID="abc", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, *command], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "ROS 2 could not start" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not list(tmp_path.rglob("demo_*"))  # no empty run folder left behind


def test_a_node_executable_with_an_unusable_setting_says_so_in_one_line(tmp_path):
    """The node executables created their node outside any handler: a monitor log_dir under a file, a window of
    -1, a sim task nobody has, ended in a traceback."""
    import os
    import subprocess

    (tmp_path / "file").write_text("")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for module, param in (("monitor_node", f"log_dir:={tmp_path / 'file' / 'logs'}"),
                          ("sim_node", "tasks:=[fly-to-moon]")):
        proc = subprocess.run([sys.executable, "-c", f"import sys; from deer_vla.ros.{module} import main; "
                               "sys.exit(main())", "--ros-args", "-p", param],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert proc.stderr.startswith(f"{module}: ") and "Traceback" not in proc.stderr, proc.stderr[-2000:]


def test_no_command_writes_its_output_over_its_own_input(tiny_checkpoint, tmp_path, capsys):
    """`train-gate --out CKPT/model.safetensors` replaced the weights, `eval-report E --json E/episodes.jsonl`
    the journal, `replay REC --json REC` the recording, `profile --json CKPT/model.safetensors` the weights, each
    with exit 0; train-gate also replaced any existing file given as --out (a system file, once). Each is refused
    before any work, and the input is untouched."""
    import shutil

    from deer_vla.core.writable import clobbers_input
    from deer_vla.evaluation.journal import JOURNAL_NAME
    from deer_vla.evaluation.journal_report import cli_main as eval_report
    from deer_vla.model.profiling import cli_main as profile
    from deer_vla.ros.replay import cli_main as replay
    from deer_vla.train.gate import cli_main as train_gate

    ckpt = Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))
    weights = (ckpt / "model.safetensors").read_bytes()
    journal = tmp_path / "eval" / JOURNAL_NAME
    journal.parent.mkdir()
    journal.write_text('{"journal": 1}\n')
    recording = tmp_path / "io.mcap"
    recording.write_bytes(b"\x89MCAP0\r\n")
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    data = tmp_path / "demos"
    data.mkdir()
    runs = [
        (train_gate, [str(ckpt), "--data", str(data), "--out", str(ckpt / "model.safetensors")], "input"),
        (train_gate, [str(ckpt), "--data", str(data), "--out", str(notes)], "not a safetensors file"),
        (eval_report, [str(journal.parent), "--json", str(journal)], "input"),
        (eval_report, [str(journal.parent), "--depth-weights", str(tmp_path / "eval" / "." / JOURNAL_NAME)], "input"),
        (replay, [str(recording), "--checkpoint", str(ckpt), "--json", str(recording)], "input"),
        (profile, ["--checkpoint", str(ckpt), "--json", str(ckpt / "model.safetensors")], "input"),
    ]
    for command, argv, said in runs:
        assert command(argv) == 2, argv
        err = capsys.readouterr().err
        assert said in err and "\n" not in err.strip(), err
    assert (ckpt / "model.safetensors").read_bytes() == weights and journal.read_text() == '{"journal": 1}\n'
    assert recording.read_bytes() == b"\x89MCAP0\r\n" and notes.read_text() == "mine"
    # the job's own output in an input folder, and new files there, stay allowed
    assert clobbers_input(ckpt / "profile.json", [ckpt], allowed=[ckpt / "profile.json"]) is None
    assert clobbers_input(ckpt / "mine.json", [ckpt]) is None
    assert clobbers_input(journal.parent / "report.json", [journal]) is None


@pytest.mark.parametrize(("argv", "message"), [
    (["--tasks", "drawer-open", "fly-to-moon"], "--tasks: "),
    (["--seed", "-1"], "--seed must be >= 0, got -1"),
    (["--max-steps", "501"], "--max-steps must be in 0..500"),
])
def test_demo_refuses_its_simulator_flags_before_starting_anything(argv, message, tmp_path, capsys):
    """`deer-vla demo --tasks fly-to-moon` started ROS and the graph, and the sim node's refusal ended the demo with
    status 1 (a node that failed), where `collect --tasks fly-to-moon` is a usage error (2)."""
    from deer_vla.ros.bringup import demo_main

    assert demo_main([*argv, "--output-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deer-vla demo: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # no run folder, no ROS graph


def test_demo_refuses_a_checkpoint_whose_weights_are_cut_short_before_starting_anything(tmp_path, capsys):
    """A truncated model.safetensors was found only at the policy's configure: the demo had started ROS, made its
    run folder and ended with status 1 (a review's); bringup's check before ROS serves the demo too."""
    import shutil

    from deer_vla.model.shipped import resolve_checkpoint
    from deer_vla.ros.bringup import demo_main

    truncated = tmp_path / "truncated"
    shutil.copytree(resolve_checkpoint("default"), truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert demo_main(["--checkpoint", str(truncated), "--output-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deer-vla demo: ") and "model.safetensors" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()


def test_demo_refuses_an_average_budget_below_exit_1_before_starting_anything(tmp_path, capsys):
    """--average-gflops below exit 1's cost was refused only at the policy's configure: a run folder with an
    empty log was left and the demo ended with status 1."""
    from deer_vla.ros.bringup import demo_main

    assert demo_main(["--average-gflops", "0.0001", "--output-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deer-vla demo: ") and "smallest feasible average budget" in err, err
    assert len(err.splitlines()) == 1 and not (tmp_path / "runs").exists()

