"""core.console and the entry points: a closed stdout or an early Ctrl-C cost a line, not the run or a traceback."""
from __future__ import annotations

import io
import os
import sys

import pytest

from deer_vla.core.console import DropOnBrokenPipe


def test_a_stdout_whose_reader_has_gone_drops_its_output_instead_of_raising() -> None:
    read, write = os.pipe()
    os.close(read)  # `| head` has exited
    stream = io.TextIOWrapper(os.fdopen(write, "wb", buffering=0), write_through=True)
    with pytest.raises(BrokenPipeError):  # what print() raised in the demo's report
        stream.write("x\n")
    safe = DropOnBrokenPipe(stream)
    assert safe.write("summary  /runs/demo/demo_summary.json\n") == 38 and safe.gone
    safe.write("more\n")
    safe.flush()
    stream.write("the interpreter's last flush\n")  # the descriptor now points at /dev/null: quiet
    stream.close()


def _module_raising_on_import(tmp_path, monkeypatch, name: str) -> None:
    (tmp_path / f"{name}.py").write_text("raise KeyboardInterrupt\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)


def test_a_ctrl_c_while_a_node_executable_imports_is_one_line_and_130(tmp_path, monkeypatch, capsys) -> None:
    """policy_node Ctrl-C'd while it imported torch printed a KeyboardInterrupt traceback."""
    from deer_vla.ros import executables

    _module_raising_on_import(tmp_path, monkeypatch, "slow_node_module")
    monkeypatch.setitem(executables.MODULES, "policy_node", "slow_node_module")
    assert executables.policy_node() == 130
    assert capsys.readouterr().err == "policy_node: interrupted while starting\n"


def test_a_ctrl_c_while_a_command_imports_is_one_line_and_130(tmp_path, monkeypatch, capsys) -> None:
    """`deer-vla demo` Ctrl-C'd in its first half second printed a traceback through the import."""
    from deer_vla import cli

    _module_raising_on_import(tmp_path, monkeypatch, "slow_command_module")
    monkeypatch.setitem(cli.COMMANDS, "demo", ("slow_command_module", "the demo"))
    assert cli.main(["demo"]) == 130
    assert capsys.readouterr().err.endswith("deer-vla demo: interrupted\n")


def test_the_launchers_and_console_scripts_start_through_the_entry_points() -> None:
    from pathlib import Path

    from deer_vla.ros.executables import MODULES

    root = Path(__file__).resolve().parents[1]
    setup = (root / "setup.py").read_text()
    for name in MODULES:
        launcher = (root / "libexec" / name).read_text()
        assert f'from deer_vla.ros.executables import run; sys.exit(run("{name}"))' in launcher
        assert 'export DEER_VLA_PARENT_PID="$PPID"' in launcher  # --exit-with-parent's parent, taken at once
        assert f'"{name} = deer_vla.ros.executables:{name}"' in setup


def test_a_ctrl_c_in_an_executables_main_before_its_handlers_is_one_line_and_130(tmp_path, monkeypatch, capsys):
    """The bringup executable loads the model in its checks before it installs its handlers: a Ctrl-C there was a
    traceback (a review's)."""
    from deer_vla.ros import executables

    (tmp_path / "slow_main_module.py").write_text("def main():\n    raise KeyboardInterrupt\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "slow_main_module", raising=False)
    monkeypatch.setitem(executables.MODULES, "bringup", "slow_main_module")
    assert executables.bringup() == 130
    assert capsys.readouterr().err == "bringup: interrupted while starting\n"


def test_a_hang_up_ignored_by_nohup_stays_ignored() -> None:
    """SIGHUP stops a node as SIGTERM does, but one started under nohup (SIGHUP ignored) is meant to outlive its
    terminal: it stopped at the hang-up (a review's)."""
    import signal

    from deer_vla.ros.node_main import install_stop_handlers

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        install_stop_handlers()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        stop = install_stop_handlers()
        signal.raise_signal(signal.SIGHUP)
        assert stop.is_set()
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
