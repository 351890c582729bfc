"""`deer-vla`'s dispatcher: Ctrl-C and file-system errors end a command in one line, not a traceback."""
from __future__ import annotations

import sys
import types

import pytest

from deer_vla import cli


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
