"""The `main` of every node executable: init rclpy, spin, shut down cleanly on Ctrl-C / SIGTERM."""
from __future__ import annotations

import argparse
import inspect
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import rclpy
from rclpy.exceptions import NameValidationException
from rclpy.executors import ExternalShutdownException
from rclpy.impl.implementation_singleton import rclpy_implementation
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from rclpy.utilities import remove_ros_args

from deer_vla.core.argv_text import check_text_arguments
from deer_vla.core.log_text import error_text
from deer_vla.ros.executors import EXECUTORS, make_executor
from deer_vla.ros.graph import parameter_file_keys, section_applies
from deer_vla.ros.ros_args import check_namespace_remaps, full_node_name, params_file_error, ros_flags

RCLError = rclpy_implementation.RCLError  # what rcl raises for a name it refuses at node creation

N = TypeVar("N", bound=Node)


# the signals that end a node or a bringup as a stop (the policy deactivated, its zero twist, the monitor's summary):
# Ctrl-C and `ros2 launch` (SIGINT), systemd and docker (SIGTERM), a closed terminal or ssh session and systemd's
# SendSIGHUP (SIGHUP: it killed them outright, the last nonzero twist standing)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# set by the <prefix>/lib/deer_vla launchers to their parent's pid ($PPID: `ros2 launch`), for --exit-with-parent:
# the node's own view of its parent, taken later, is init's when the launcher died while the node imported torch
PARENT_PID_ENV = "DEER_VLA_PARENT_PID"


def install_stop_handlers(stop: threading.Event | None = None) -> threading.Event:
    """STOP_SIGNALS set the returned event (``stop``, or a new one) instead of interrupting.

    A terminal and `ros2 launch` both deliver SIGINT; with rclpy's handlers the second one lands
    in the middle of cleanup (the monitor loses its summary, a step dies mid-publish). Every
    further signal is harmless: cleanup always runs to the end."""
    event = threading.Event() if stop is None else stop

    def handler(signum: int, frame: object) -> None:
        event.set()

    if threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            if signum == signal.SIGHUP and signal.getsignal(signum) is signal.SIG_IGN:
                continue  # started under nohup: meant to outlive its terminal (a review's: it stopped at hang-up)
            signal.signal(signum, handler)
    return event


def launcher_parent() -> int | None:
    """The pid the launcher that exec'd this process was started by (PARENT_PID_ENV), or None."""
    given = os.environ.get(PARENT_PID_ENV, "")
    return int(given) if given.isdigit() and int(given) > 0 else None


def ros_start_error(exc: BaseException) -> str:
    """Why rclpy.init failed, in one line, with the way out where there is one: rcl's logging needs a
    writable log folder ($ROS_LOG_DIR, else $ROS_HOME/log, else ~/.ros/log), and a service account or a
    container user often has no home."""
    text = error_text(exc)
    if "log" in text.lower() and "director" in text.lower():
        text += ("; set ROS_LOG_DIR to a writable folder (or HOME), or add --ros-args "
                 "--disable-external-lib-logs")
    return text


def unmatched_params_files(ros_args: list[str], full_name: str) -> list[str]:
    """For each --params-file among ``ros_args`` with no section rcl applies to the node named ``full_name``
    (as created: namespace and remaps applied), a line saying so: rcl skips such a file in silence, and the node
    ran on its defaults where a robot's file, keyed for another name or namespace, was meant. A file that cannot
    be read is rcl's to refuse (``params_file_error``)."""
    said = []
    for _, path in ros_flags(ros_args, ("--params-file",)):
        try:
            keys = parameter_file_keys(Path(path))
        except (OSError, ValueError):
            continue
        if not any(section_applies(key, full_name) for key in keys):
            name = full_name.rsplit("/", 1)[-1]
            sections = ", ".join(str(k) for k in keys[:5]) or "none"
            said.append(f"parameter file {path} holds no parameters for node {full_name} (its sections: {sections}); "
                        f"key them /**/{name} (any namespace), {full_name}, or /** (every node)")
    return said


def run_node(make_node: Callable[[], N], argv: list[str] | None = None,
             until: Callable[[N], bool] | None = None, on_done: Callable[[N], int | None] | None = None) -> int:
    """Spin ``make_node()`` until SIGINT/SIGTERM, or until ``until(node)`` holds; then ``on_done(node)``, whose
    int result (if any) is the exit status.

    An active lifecycle node is deactivated before it is destroyed (the policy sends its zero twist).
    ``--executor events|single`` (outside ``--ros-args``) picks the rclpy executor; events by default."""

    prog = getattr(make_node, "__module__", "deer_vla").rsplit(".", 1)[-1]  # "monitor_node" (argv[0] is "-c")
    module = sys.modules.get(getattr(make_node, "__module__", ""))
    spec = getattr(module, "__spec__", None)
    if prog == "__main__" and spec is not None:  # python -m deer_vla.ros.policy_node
        prog = spec.name.rsplit(".", 1)[-1]
    try:
        args = check_text_arguments(sys.argv if argv is None else argv)
        check_namespace_remaps(args)  # rcl's own refusals: "Expected lexeme type 19", or a traceback
    except ValueError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    about = ((module.__doc__ if module is not None else None) or "").strip().split("\n\n")[0]
    parser = argparse.ArgumentParser(
        prog=prog, description=about, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="ROS arguments go after --ros-args: -p NAME:=VALUE, --params-file FILE, -r FROM:=TO, -r __ns:=/NS. "
               "Every parameter, its default and meaning: share/deer_vla/config/*.yaml of the install "
               "(`ros2 pkg prefix deer_vla`) and docs/ros.md; `ros2 launch deer_vla deer_vla.launch.py --show-args`.")
    parser.add_argument("--executor", choices=EXECUTORS, default="events",
                        help="rclpy executor: events (EventsExecutor, the default) or single")
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="stop (as on SIGTERM: a policy sends its zero twist) when the process that started this "
                             "one exits without stopping it; the launch files pass it, so a killed `ros2 launch` "
                             "leaves no node running (a shell's `ros2 run` or nohup, without it, outlives its shell)")
    try:
        own = remove_ros_args(args)[1:]
    except Exception as exc:  # rclpy's UnknownROSArgsError: something inside --ros-args that is no ROS argument
        bad_file = params_file_error(error_text(exc))
        if bad_file is not None:  # rcl reads the parameter files here: one it cannot read is no misplaced argument
            print(f"{prog}: {bad_file}", file=sys.stderr)
            return 1
        print(f"{prog}: not ROS arguments after --ros-args: {ros_start_error(exc)} (ROS arguments: -p NAME:=VALUE, "
              "--params-file FILE, -r FROM:=TO; this program's own, such as --help, go before --ros-args)",
              file=sys.stderr)
        return 1
    try:  # --help prints the usage above and exits 0 before anything starts (it started the node before)
        known, unknown = parser.parse_known_args(own)
    except SystemExit as exc:
        return int(exc.code or 0)
    if unknown:  # "--checkpoint DIR" ran the shipped default checkpoint, "--params-file F" the defaults, unsaid
        print(f"{prog}: unrecognized arguments: {' '.join(unknown)} (ROS arguments, such as -p NAME:=VALUE and "
              "--params-file FILE, go after --ros-args; see --help)", file=sys.stderr)
        return 2
    default_name = inspect.signature(make_node).parameters.get("name")
    if default_name is not None and isinstance(default_name.default, str):
        unmatched = unmatched_params_files(args, full_node_name(args, default_name.default))
        files = len(list(ros_flags(args, ("--params-file",))))
        if unmatched and len(unmatched) == files:  # rcl skips a file with no section for the node: it ran on the
            print(f"{prog}: {unmatched[0]}", file=sys.stderr)  # shipped defaults, unsaid
            return 2
        for line in unmatched:  # beside a file that applies: a robot-wide file of other nodes' sections, maybe
            print(f"{prog}: warning: {line}; ignored", file=sys.stderr)
    stop = install_stop_handlers()
    if known.exit_with_parent:
        from deer_vla.core.parent_watch import watch_parent

        def parent_gone() -> None:
            print(f"{prog}: the process that started it exited: stopping (--exit-with-parent)", file=sys.stderr)
            stop.set()

        watch_parent(parent_gone, launcher_parent(), poll_s=0.5)
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except Exception as exc:  # rclpy's RCLError: a ROS_DOMAIN_ID that is not a number, --ros-args it cannot parse
        print(f"{prog}: ROS 2 could not start: {ros_start_error(exc)}", file=sys.stderr)
        return 1
    executor = make_executor(known.executor)
    try:
        node = make_node()
    except (ValueError, KeyError, OSError, NameValidationException, RCLError) as exc:
        # a bad parameter, an unknown task, an unusable log folder, a topic or service name ROS refuses, a node
        # name or namespace rcl refuses
        print(f"{prog}: {error_text(exc)}", file=sys.stderr)
        executor.shutdown()
        rclpy.shutdown()
        return 1
    executor.add_node(node)
    status = 0
    try:
        # spin_once in a loop, not spin(): the stop event must be checked between callbacks
        while not stop.is_set() and rclpy.ok() and (until is None or not until(node)):
            executor.spin_once(timeout_sec=0.1)
        if on_done is not None:
            status = on_done(node) or 0
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if getattr(node, "active", False) and hasattr(node, "trigger_deactivate"):
            node.trigger_deactivate()
        executor.remove_node(node)
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return status
