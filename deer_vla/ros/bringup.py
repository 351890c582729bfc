"""One-process bringup: the nodes of a graph (config/graph.yaml) in one process, the monitor on its own thread.

The same graph the launch files start, without `ros2 launch`: nodes get the
same parameter files, overrides and remappings; lifecycle nodes are
configured and activated programmatically. `demo_main` is the main job: the
simulated robot under the policy node + monitor for a few episodes.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import shlex
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from deer_vla.core.argv_text import check_text_arguments
from deer_vla.core.atomic_file import atomic_write_text
from deer_vla.core.log_text import error_text
from deer_vla.core.writable import path_argument
from deer_vla.data.mcap_io import numbered_parts
from deer_vla.model.shipped import (
    DEFAULT_NAME,
    UnknownCheckpointError,
    checkpoint_help,
    resolve_checkpoint,
    shipped_checkpoints,
    shipped_name_of,
)
from deer_vla.ros.executors import EXECUTORS, make_executor
from deer_vla.ros.graph import DEFAULT_RECORD_TOPIC, RECORD_TOPIC, GraphSpec, NodeSpec, load_graph
from deer_vla.ros.params import POLICY_NODE_NAME
from deer_vla.ros.preflight import check_policy_before_ros
from deer_vla.ros.ros_args import (
    PARAMETER_FLAGS,
    REMAP_FLAGS,
    check_namespace_remap,
    check_namespace_remaps,
    name_remaps,
    ros_flags,
)
from deer_vla.ros.sim_inputs import given_parameters, sim_graph_for_checkpoint


class BringupError(RuntimeError):
    """A node of the graph could not be created, configured or activated."""


def create_node(spec: NodeSpec) -> Any:
    from rclpy.parameter import Parameter

    module = importlib.import_module(f"deer_vla.ros.{spec.module}")
    cls = getattr(module, spec.class_name)
    overrides = [Parameter(name, value=value) for name, value in spec.parameters.items()]
    return cls(spec.name, namespace=spec.namespace, cli_args=spec.ros_args(), parameter_overrides=overrides)


# Nodes that only watch spin apart from the others, on their own executor and thread: the monitor writes its
# logs in its callbacks, and a disk that stalls them (seconds, on a full or network disk) held up the policy's
# timer, its stale-action stops and ~/halt, which share the main executor in one process.
SIDE_NODES = ("monitor",)
SIM_KEY = "sim"  # the simulator's node in config/graph.yaml's sim graph


class Bringup:
    """Create, start, spin and stop the nodes of one graph."""

    def __init__(self, graph: GraphSpec, executor: Any | None = None) -> None:
        self.graph = graph
        self.executor = executor or make_executor("events")
        self.nodes: dict[str, Any] = {}
        self._stopped = False
        self._side_executor: Any | None = None
        self._side_thread: threading.Thread | None = None
        self._side_stop = threading.Event()
        self.side_error: BaseException | None = None  # what ended the side spin (raised by spin_until)

    def start(self, stop: threading.Event | None = None) -> Bringup:
        """Create the nodes, configure and activate the lifecycle ones; none is activated once ``stop`` is set (a
        Ctrl-C during a configure that loads a model: it went on to activate, enabled, then stopped)."""
        from rclpy.lifecycle import TransitionCallbackReturn

        try:
            for spec in self.graph.nodes:
                node = create_node(spec)
                self.nodes[spec.key] = node
                if spec.key in SIDE_NODES:
                    if self._side_executor is None:
                        self._side_executor = make_executor("single")
                    self._side_executor.add_node(node)
                else:
                    self.executor.add_node(node)
            if self._side_executor is not None:
                self._side_thread = threading.Thread(target=self._spin_side, name="deer_vla_side", daemon=True)
                self._side_thread.start()
            for spec in self.graph.nodes:
                if not spec.lifecycle:
                    continue
                node = self.nodes[spec.key]
                for transition in ("configure", "activate"):
                    if stop is not None and stop.is_set():
                        return self
                    result = getattr(node, f"trigger_{transition}")()
                    if result != TransitionCallbackReturn.SUCCESS:
                        raise BringupError(f"node '{spec.name}' failed to {transition} (see its log above)")
        except Exception:
            self.stop()
            raise
        return self

    def _spin_side(self) -> None:
        assert self._side_executor is not None
        while not self._side_stop.is_set():
            try:
                self._side_executor.spin_once(timeout_sec=0.05)
            except BaseException as exc:  # a callback's error: said by the main thread, as when it spun there
                if not self._side_stop.is_set():
                    self.side_error = exc
                return

    def spin_until(self, predicate: Callable[[], bool], timeout_s: float | None = None) -> bool:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not predicate():
            if self.side_error is not None:
                raise self.side_error
            if deadline is not None and time.monotonic() > deadline:
                return False
            self.executor.spin_once(timeout_sec=0.05)
        return True

    def stop(self) -> None:
        """Deactivate the lifecycle nodes (the policy sends its zero twist), then stop the side spin and destroy
        every node (the monitor writes its summary and plot). Actuation stops first: a monitor slow to close
        (its plot, a stalled disk) delayed the zero twist, or, killed by a supervisor meanwhile, lost it."""
        if self._stopped:
            return
        self._stopped = True
        first_error: Exception | None = None
        for spec in self.graph.nodes:
            node = self.nodes.get(spec.key)
            try:  # one node failing to stop must not leave another actuating
                if node is not None and spec.lifecycle and getattr(node, "active", False):
                    node.trigger_deactivate()
            except Exception as exc:
                first_error = first_error or exc
        self._side_stop.set()
        if self._side_thread is not None:
            self._side_thread.join()  # a write under way ends first: the monitor is never closed under it
        for spec in reversed(self.graph.nodes):
            node = self.nodes.get(spec.key)
            if node is None:
                continue
            try:
                executor = self._side_executor if spec.key in SIDE_NODES else self.executor
                if executor is not None:
                    executor.remove_node(node)
                node.destroy_node()
            except Exception as exc:
                first_error = first_error or exc
        self.nodes.clear()
        if self._side_executor is not None:
            try:  # its guard conditions and wait set: one per bringup, not left behind
                self._side_executor.shutdown()
            except Exception as exc:
                first_error = first_error or exc
            self._side_executor = None
        if first_error is not None:  # every node is stopped: now say what went wrong
            raise first_error


def _parse_launch_arguments(items: list[str]) -> dict[str, str]:
    """["checkpoint:=/ckpt", "enabled:=true"] -> {"checkpoint": "/ckpt", "enabled": "true"} (ros2 launch syntax)."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise ValueError(f"launch arguments are NAME:=VALUE (e.g. enabled:=true), got '{item}'")
        out[name] = value
    return out


def _parse_set(items: list[str]) -> dict[str, dict[str, Any]]:
    """["policy.budget.average_gflops=0.5", ...] -> {"policy": {"budget.average_gflops": 0.5}}."""
    from rclpy.parameter import Parameter

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        node, dot, param = key.partition(".")
        if not sep or not dot or not param:
            raise ValueError(f"--set expects NODE.PARAM=VALUE (e.g. policy.enabled=true), got '{item}'")
        try:  # an empty value is the empty string ("" = the default for a path; YAML read it as null: 'None')
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ValueError(f"--set {key}: '{raw}' is not a YAML value ({exc.problem or exc})") from None
        try:  # a mapping, a mixed list or a date would otherwise be an rclpy TypeError traceback at node creation
            Parameter.Type.from_parameter_value(value)
        except TypeError:
            raise ValueError(f"--set {key}: '{raw}' is not a ROS parameter value (a bool, int, float or string, or "
                             "a list of one of those types)") from None
        if not _fits_int64(value):  # rclpy fails deep inside declare_parameter with a SystemError
            raise ValueError(f"--set {key}: '{raw}' does not fit a ROS integer parameter (64 bits)")
        out.setdefault(node, {})[param] = value
    return out


INT64 = (-(2**63), 2**63 - 1)


def _fits_int64(value: Any) -> bool:
    """Whether every integer in ``value`` (one, or a list) fits a ROS integer parameter."""
    items = value if isinstance(value, list) else [value]
    return all(INT64[0] <= v <= INT64[1] for v in items if isinstance(v, int) and not isinstance(v, bool))


def _int64_arg(text: str) -> int:
    """argparse type: an integer that fits a ROS integer parameter."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: '{text}'") from None
    if not _fits_int64(value):
        raise argparse.ArgumentTypeError(f"{text} does not fit a ROS integer parameter (64 bits)")
    return value


def _split_args(argv: list[str] | None) -> tuple[list[str], list[str]]:
    """-> (the arguments for rclpy, ours: launch arguments + those left after removing --ros-args ...); ValueError
    for an argument that is not text (check_text_arguments)."""
    from rclpy.utilities import remove_ros_args

    args = check_text_arguments(sys.argv[1:] if argv is None else argv)  # every argument goes to rcl: text
    check_namespace_remaps(args)  # before rcl, whose refusal says "Expected lexeme type 19"
    # NAME:=VALUE before --ros-args are launch arguments, as for ros2 launch; rcl would take them for
    # (deprecated) remapping rules, so they never reach rclpy
    cut = args.index("--ros-args") if "--ros-args" in args else len(args)
    launch = [a for a in args[:cut] if ":=" in a and not a.startswith("-")]
    ros = [a for a in args[:cut] if a not in launch] + args[cut:]
    return ros, launch + remove_ros_args(["deer_vla", *ros])[1:]


def _records_remapped(ros_args: list[str], graph: GraphSpec) -> bool:
    """Whether a topic remap rule among ``ros_args`` (``-r [node:]from:=to``) names the policy's step-record topic
    (its last name token: ``step_record``, ``/b/step_record``)."""
    policy = next((s for s in graph.nodes if s.key == "policy"), None)
    topic = policy.parameter(RECORD_TOPIC, DEFAULT_RECORD_TOPIC) if policy is not None else None
    if not isinstance(topic, str) or not topic.strip("/~"):
        return False
    last = topic.rstrip("/").rsplit("/", 1)[-1].lstrip("~")
    return any(rule.partition(":=")[0].rpartition(":")[2].rstrip("/").rsplit("/", 1)[-1].lstrip("~") == last
               for _, rule in ros_flags(ros_args, REMAP_FLAGS))


def _overridden_ros_parameters(ros_args: list[str], graph: GraphSpec) -> None:
    """ValueError for a parameter given after --ros-args (``-p [node:]name:=value``, ``--params-file``) that a
    node's own parameter files set: those are node-level arguments and win over the process's, so it changed
    nothing, in silence (`--ros-args -p checkpoint_dir:=mt50` ran the default). One no file sets
    (``use_sim_time``) reaches the node, and passes."""
    for arg, given in ros_flags(ros_args, PARAMETER_FLAGS):
        for spec in graph.nodes:
            own = {**spec.file_parameters(), **spec.parameters}
            if arg == "--params-file":
                try:
                    theirs = set(replace(spec, params_files=(Path(given),), parameters={}).file_parameters())
                except (OSError, ValueError):  # rcl says what is wrong with the file
                    continue
            else:
                node, _, name = given.partition(":=")[0].rpartition(":")
                theirs = {name} if not node or node.strip("/") in (spec.name, spec.full_name.strip("/")) else set()
            hit = sorted(theirs & set(own))
            if hit:
                raise ValueError(f"{arg} {given} after --ros-args would not reach {spec.name}: its own parameter files "
                                 f"set {', '.join(hit)} and win over the process's arguments; give it as bringup's "
                                 f"--set {spec.key}.{hit[0]}=VALUE, or in a parameter file (params_file:= for "
                                 "bringup, --config-dir for bringup and demo)")


def _with_name_remaps(ros_args: list[str], launch_arguments: dict[str, str],
                      graph: GraphSpec) -> tuple[dict[str, str], GraphSpec]:
    """The launch arguments and the graph as rcl will name the nodes, so that the parameter files are judged
    against those names. rcl applies to each node the first ``__ns`` rule that matches it (a rule naming a node
    matches it by its name after any rename): a global ``-r __ns:=/X`` is the graph's namespace argument for every
    node no earlier rule moved; ``-r deer_vla_policy:__ns:=/X`` moves that node, beside the graph's namespace
    (``namespace:=``) or a global rule after it; ``-r deer_vla_policy:__node:=X`` renames it (and a node
    waiting for it by name, the sim's policy_node). ValueError for a global ``-r __node:=X``, which would give
    every node one name (each loses its parameter file in silence), for a namespace rcl refuses, for a global
    rule beside another namespace (the launch argument, or a global rule before), and for a rule rcl would never
    apply (after a global one, or a second for one node)."""
    names = [a.name for a in graph.arguments if a.namespace]
    given = f"{names[0]}:={launch_arguments[names[0]]}" if names and names[0] in launch_arguments else None
    remaps = name_remaps(ros_args)
    for node, kind, value, rule in remaps:  # renames first: a node's namespace rule matches its new name
        if kind == "__node":
            if not node:
                raise ValueError(f"-r {rule} without a node name renames every node of the bringup to '{value}' "
                                 f"(the nodes would share it, and lose their parameter files); rename one node: "
                                 f"-r {POLICY_NODE_NAME}:__node:={value}")
            graph = graph.with_node_renamed(node, value)
    every: str | None = None  # the global namespace rule in force
    moved: dict[str, str] = {}  # node -> the rule that moved it
    for node, kind, value, rule in remaps:
        if kind != "__ns":
            continue
        check_namespace_remap(value)
        earlier = every or moved.get(node)
        if node and earlier is not None:
            raise ValueError(f"-r {rule} comes after -r {earlier}, which rcl applies to that node first: it would "
                             "never apply; give one namespace per node, the node's own rule first")
        if node:
            graph = graph.with_node_namespace(node, value)
            moved[node] = rule
            continue
        if every is not None or (given is not None and given.partition(":=")[2].strip("/") != value.strip("/")):
            raise ValueError(f"two namespaces: {every and '-r ' + every or given} and -r {rule}; give one")
        if names:
            launch_arguments = {**launch_arguments, names[0]: value}
        every = rule
    nodes = {s.key: s for s in graph.nodes}
    if SIM_KEY in nodes and "policy" in nodes:  # the sim's topics are relative, in its namespace

        def placed(spec: NodeSpec) -> str:
            given_ns = launch_arguments.get(names[0], spec.namespace) if names else spec.namespace
            return (spec.namespace if spec.namespace_remapped else given_ns).strip("/")

        sim, policy = nodes[SIM_KEY], nodes["policy"]
        if placed(sim) != placed(policy):
            moving = moved.get(sim.name) or moved.get(policy.name)
            raise ValueError(f"-r {moving} puts the simulator and the policy in two namespaces ('/{placed(sim)}', "
                             f"'/{placed(policy)}'): they talk on topics in their own namespace, and the policy would "
                             "wait for cameras that never come; move the whole graph, -r __ns:=/X")
    return launch_arguments, graph


def _split_args_or_say(prog: str, argv: list[str] | None) -> tuple[list[str], list[str]] | None:
    """``_split_args``, or None after one line naming an argument that is not text, or --ros-args rcl cannot
    parse (its RCLInvalidROSArgsError, a RuntimeError: `-r __ns:=arm1` was a traceback)."""
    try:
        return _split_args(argv)
    except (ValueError, RuntimeError) as exc:
        print(f"{prog}: {str(exc).split(', at /')[0]}", file=sys.stderr)  # rcl appends its source file paths
        return None


def _init_ros(args: list[str], stop: threading.Event) -> bool:
    """Init rclpy for a CLI run (unless the caller already did; returns whether we did).
    SIGINT/SIGTERM/SIGHUP set ``stop``, which ends the spin so the nodes shut down cleanly (rclpy's own handler
    would shut the context down under them, losing the monitor's summary)."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    from deer_vla.ros.node_main import install_stop_handlers

    install_stop_handlers(stop)
    if rclpy.ok():
        return False
    rclpy.init(args=["deer_vla", *args], signal_handler_options=SignalHandlerOptions.NO)
    return True


def _ros_name_error() -> type[Exception]:
    """rclpy's error for a topic, service or node name it refuses (imported when an error is being matched:
    this module leaves rclpy unloaded until the graph starts)."""
    from rclpy.exceptions import NameValidationException

    return NameValidationException


def _init_ros_or_say(prog: str, args: list[str], stop: threading.Event) -> bool | None:
    """``_init_ros``, or None after one line saying why ROS cannot start (rclpy's RCLError for a ROS_DOMAIN_ID
    that is not a number, --ros-args it cannot parse)."""
    from deer_vla.ros.node_main import ros_start_error

    try:
        return _init_ros(args, stop)
    except Exception as exc:
        print(f"{prog}: ROS 2 could not start: {ros_start_error(exc)}", file=sys.stderr)
        return None


def cli_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deer-vla bringup", description=__doc__.splitlines()[0])
    parser.add_argument("arguments", nargs="*", metavar="NAME:=VALUE",
                        help="launch arguments, as for ros2 launch: checkpoint, thresholds, camera_topics, enabled, "
                             "use_sim_time (graph robot), params_file, namespace (config/graph.yaml)")
    parser.add_argument("--graph", default="robot", help="graph in config/graph.yaml: robot (default) or sim")
    parser.add_argument("--config-dir", default=None, help="directory with graph.yaml and the parameter files")
    parser.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE",
                        help="parameter override, e.g. policy.checkpoint_dir=/path (repeatable)")
    parser.add_argument("--duration", type=float, default=0.0,
                        help="seconds to run (0 = until Ctrl-C, or the sim graph's last episode; a sim graph it cuts "
                             "short exits 1)")
    parser.add_argument("--executor", choices=EXECUTORS, default="events",
                        help="rclpy executor of the policy and sim: events (EventsExecutor, lower per-message "
                             "overhead) or single (the monitor spins its own SingleThreadedExecutor)")
    import rclpy

    split = _split_args_or_say(parser.prog, argv)
    if split is None:
        return 2
    all_args, own_args = split
    args = parser.parse_args(own_args)
    if not 0 <= args.duration < math.inf:  # -1 or nan ran until Ctrl-C as if 0 had been meant
        parser.error(f"--duration must be a number of seconds >= 0 (0 = until Ctrl-C), got {args.duration}")
    try:  # the settings, read before ROS starts: a bad one is a usage error (2), as in the other commands
        sets = _parse_set(args.set)
        launch_arguments, stock = _with_name_remaps(all_args, _parse_launch_arguments(args.arguments),
                                                    load_graph(args.graph, args.config_dir, sets))
        graph = stock.with_arguments(launch_arguments, records_remapped=_records_remapped(all_args, stock))
        if args.graph == "sim":  # the simulator renders what the checkpoint was trained on, unless told
            graph = sim_graph_for_checkpoint(graph, given_parameters(stock, sets, launch_arguments))
        _overridden_ros_parameters(all_args, graph)
        check_policy_before_ros(graph, all_args)
    except (KeyError, OSError, ValueError) as exc:
        print(f"deer-vla bringup: {error_text(exc)}", file=sys.stderr)
        return 2
    stop = threading.Event()  # Ctrl-C, SIGTERM, SIGHUP
    owned = _init_ros_or_say("deer-vla bringup", all_args, stop)
    if owned is None:
        return 1
    bringup = None
    enders: list[Any] = []
    try:
        bringup = Bringup(graph, make_executor(args.executor)).start(stop)
        if stop.is_set():  # stopped while a node configured: nothing was activated
            print("deer-vla bringup: interrupted before the graph started", file=sys.stderr)
            return 130
        print(f"[deer_vla bringup] graph '{args.graph}': {', '.join(n.name for n in bringup.graph.nodes)} running")
        # as in the launch files: the graph ends when a node marked ends_graph (the sim) is done
        enders = [bringup.nodes[s.key] for s in graph.nodes if s.ends_graph]
        bringup.spin_until(lambda: stop.is_set() or any(n.finished for n in enders), args.duration or None)
        failed = [n for n in enders if getattr(n, "error", None)]
        if failed:  # the simulator could not go on: the graph ended on a failure, not on its last episode
            print(f"deer-vla bringup: {failed[0].get_name()} failed: {failed[0].error}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        stop.set()
    except (BringupError, KeyError, FileNotFoundError, ValueError, _ros_name_error()) as exc:
        print(f"deer-vla bringup: {error_text(exc)}", file=sys.stderr)
        return 1
    finally:
        if bringup is not None:
            bringup.stop()
        if owned and rclpy.ok():
            rclpy.shutdown()
    # a graph that ends (the sim's) stopped before it was done: interrupted (130), or cut short by --duration (1,
    # as the demo's --timeout), never 0 (the robot graph runs until it is stopped: a stop is its normal end)
    if enders and not any(n.finished for n in enders):
        if stop.is_set():
            print("deer-vla bringup: interrupted before the graph was done", file=sys.stderr)
            return 130
        print(f"deer-vla bringup: --duration {args.duration:g} s ended the graph before it was done", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    return cli_main(None)


def demo_figures(results: list[dict], summary: dict, metric: str, full: float) -> dict[str, Any]:
    """The demo's figures from its episodes (``sim_node.results``) and the monitor's summary of its steps; ``full``:
    the full model's cost per step in ``metric``."""
    mean_cost = summary[f"mean_{metric}"]
    return {
        "success_rate": sum(r["success"] for r in results) / len(results) if results else 0.0,
        "steps": summary["steps"],
        "mean_exit": summary["mean_exit"],
        f"mean_{metric}": mean_cost,
        f"full_model_{metric}": full,
        "compute_saved": 1.0 - mean_cost / full if full > 0 and summary["steps"] else 0.0,
    }


def demo_headline(results: list[dict], figures: dict[str, Any], metric: str, num_exits: int) -> list[str]:
    """The lines the demo prints first: success, average exit, compute against the full model."""
    solved = sum(r["success"] for r in results)
    return [
        f"success rate      {figures['success_rate']:.2f} ({solved}/{len(results)})",
        f"average exit      {figures['mean_exit']:.2f} of {num_exits}",
        f"compute per step  {figures[f'mean_{metric}']:.4g} {metric} vs {figures[f'full_model_{metric}']:.4g} for the "
        f"full model -> {100 * figures['compute_saved'] + 0.0:.1f}% saved",
    ]


def replay_command(recording: str, checkpoint: Path, average_gflops: float | None) -> str:
    """The `deer-vla replay` command that reproduces a demo run: its recording under the same checkpoint (by
    name when shipped; replay's own default is the shipped "default") and the same average budget."""
    args = ["deer-vla", "replay", recording]
    name = shipped_name_of(checkpoint)
    if name != DEFAULT_NAME:
        args += ["--checkpoint", name or str(checkpoint.resolve())]
    if average_gflops is not None:
        args += ["--average-gflops", repr(average_gflops)]
    return shlex.join(args)


def _new_run_dir(out_dir: Path, run: str) -> Path:
    """A folder ``out_dir/run`` (or ``run.1``, ...) made here and now, so that two demos started in the same
    second do not share one: the policy's recording and the summary go in it, and the monitor takes it (it is
    empty)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for n in range(10_000):
        candidate = out_dir / (run if n == 0 else f"{run}.{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"{out_dir} already holds 10000 runs named '{run}'")


def _sim_flag_problem(tasks: list[str] | None, seed: int | None, max_steps: int) -> str | None:
    """Why the demo's --tasks, --seed or --max-steps cannot run (the sim node's own rules), or None."""
    from deer_vla.sim.tasks import MAX_EPISODE_STEPS, expand_tasks

    if tasks:
        try:
            expand_tasks(tasks)
        except (KeyError, ValueError) as exc:
            return f"--tasks: {error_text(exc)}"
    if seed is not None and seed < 0:
        return f"--seed must be >= 0, got {seed}"
    if not 0 <= max_steps <= MAX_EPISODE_STEPS:
        return f"--max-steps must be in 0..{MAX_EPISODE_STEPS} (0 = the task's own), got {max_steps}"
    return None


def demo_main(argv: list[str] | None = None) -> int:
    """The main job: sim + policy (shipped checkpoint, default budget) + monitor for a few episodes."""
    parser = argparse.ArgumentParser(prog="deer-vla demo", description=demo_main.__doc__)
    parser.add_argument("--checkpoint", default="", help=checkpoint_help())
    parser.add_argument("--episodes", type=_int64_arg, default=None, help="episodes (default: config/sim.yaml)")
    parser.add_argument("--tasks", nargs="+", default=None, help="task names (default: config/sim.yaml)")
    parser.add_argument("--seed", type=_int64_arg, default=None, help="first episode seed (default: config/sim.yaml)")
    parser.add_argument("--max-steps", type=_int64_arg, default=0, help="steps per episode (0 = the task default)")
    parser.add_argument("--average-gflops", type=float, default=None,
                        help="average compute budget per action (default: the one the thresholds were solved for)")
    parser.add_argument("--output-dir", type=path_argument, default=Path("deer_vla_logs"),
                        help="where each run's folder of logs goes (default: deer_vla_logs, in this folder)")
    parser.add_argument("--timeout", type=float, default=540.0, help="stop after this many seconds")
    parser.add_argument("--config-dir", default=None,
                        help="directory with graph.yaml and the parameter files (default: the package's config)")
    import rclpy

    split = _split_args_or_say(parser.prog, argv)
    if split is None:
        return 2
    all_args, own_args = split
    args = parser.parse_args(own_args)
    from deer_vla.model.checkpoint_dir import CheckpointDir

    try:
        checkpoint = resolve_checkpoint(args.checkpoint)
    except UnknownCheckpointError as exc:
        print(f"deer-vla demo: {exc}", file=sys.stderr)
        return 2
    if not CheckpointDir(checkpoint).exists():
        print(
            f"deer-vla demo: --checkpoint {args.checkpoint}: no policy checkpoint at {checkpoint} (no "
            f"{CheckpointDir.CONFIG} there); give a folder `deer-vla train` wrote, or a shipped name: "
            f"{', '.join(shipped_checkpoints())}",
            file=sys.stderr,
        )
        return 2
    if args.episodes is not None and args.episodes < 1:
        print(f"deer-vla demo: --episodes must be >= 1, got {args.episodes}", file=sys.stderr)
        return 2
    # the demo's own flags for the simulator, checked before anything starts: the sim node refusing them as it
    # started was a node that failed (status 1), where `collect --tasks nope` is a usage error (2)
    problem = _sim_flag_problem(args.tasks, args.seed, args.max_steps)
    if problem:
        print(f"deer-vla demo: {problem}", file=sys.stderr)
        return 2
    if not 0 < args.timeout < math.inf:  # -5 started the whole graph to play no episode
        print(f"deer-vla demo: --timeout must be a number of seconds > 0, got {args.timeout}", file=sys.stderr)
        return 2
    if args.average_gflops is not None and not 0 < args.average_gflops < math.inf:
        # 0 means "unset" to the policy node, but the replay command the summary prints would refuse it
        print(f"deer-vla demo: --average-gflops must be > 0 (omit it for the thresholds' own budget), got "
              f"{args.average_gflops}", file=sys.stderr)
        return 2
    budget = {} if args.average_gflops is None else {"budget.average_gflops": args.average_gflops}
    try:  # the simulator renders the checkpoint's cameras at its image size, on the topics its slots read
        graph = sim_graph_for_checkpoint(
            load_graph("sim", args.config_dir, {"policy": {"checkpoint_dir": str(checkpoint.resolve())}}), set())
        namespace, graph = _with_name_remaps(all_args, {}, graph)  # as rcl will name the nodes (bringup's rule)
        # judges the parameter files against those names
        graph = graph.with_arguments(namespace, records_remapped=_records_remapped(all_args, graph))
        _overridden_ros_parameters(all_args, graph)
        # as bringup: a truncated weights file or a budget below exit 1's cost left a run folder and status 1
        check_policy_before_ros(graph.with_parameters({"policy": budget}), all_args)
    except (OSError, ValueError, KeyError) as exc:
        print(f"deer-vla demo: {error_text(exc)}", file=sys.stderr)
        return 2
    out_dir = args.output_dir.resolve()
    try:
        run_dir = _new_run_dir(out_dir, time.strftime("demo_%Y%m%d_%H%M%S", time.gmtime()))
        run = run_dir.name
    except OSError as exc:
        print(f"deer-vla demo: cannot create a run folder in {out_dir}: {error_text(exc)}", file=sys.stderr)
        return 1
    policy: dict[str, Any] = {"checkpoint_dir": str(checkpoint.resolve()),
                              "record_path": str(out_dir / run / "policy_io.mcap"), **budget}
    sim: dict[str, Any] = {"max_steps": args.max_steps}
    if args.seed is not None:
        sim["seed"] = args.seed
    if args.episodes is not None:
        sim["episodes"] = args.episodes
    if args.tasks:
        sim["tasks"] = list(args.tasks)
    overrides = {"policy": policy, "sim": sim, "monitor": {"log_dir": str(out_dir), "run_name": run}}
    bringup = None
    started = time.monotonic()
    stop = threading.Event()  # Ctrl-C, SIGTERM, SIGHUP
    owned = _init_ros_or_say("deer-vla demo", all_args, stop)
    if owned is None:
        run_dir.rmdir()  # still empty: leave no trace of a run that never started
        return 1
    try:
        bringup = Bringup(graph.with_parameters(overrides)).start(stop)
        sim_node, policy_node, monitor = bringup.nodes["sim"], bringup.nodes["policy"], bringup.nodes["monitor"]
        if policy_node.stack is None:  # stopped while the policy configured: nothing ran, no figures to give
            print(f"deer-vla demo: interrupted before the policy started; logs in {run_dir}", file=sys.stderr)
            return 130
        bringup.spin_until(lambda: sim_node.finished or stop.is_set(), args.timeout)
        finished = sim_node.finished
        interrupted = stop.is_set() and not finished  # Ctrl-C or SIGTERM, not the timeout
        # let the last step records reach the monitor
        bringup.spin_until(lambda: monitor.stats.count >= policy_node.stats.steps, 2.0)
        stack = policy_node.stack
        metric = monitor.stats.metric
        full = stack.full_profile.cost(stack.full_profile.num_exits, metric)
        results = [r.__dict__ for r in sim_node.results]
        sim_error = sim_node.error
        bringup.stop()
        summary = monitor.close()
    except (BringupError, KeyError, FileNotFoundError, ValueError, _ros_name_error()) as exc:
        print(f"deer-vla demo: {exc}", file=sys.stderr)
        return 1
    finally:
        if bringup is not None:
            bringup.stop()
        if owned and rclpy.ok():
            rclpy.shutdown()
    if sim_error is not None:
        print(f"deer-vla demo: the simulator failed after {len(results)} episode(s): {sim_error}", file=sys.stderr)
        return 1
    figures = demo_figures(results, summary, metric, full)
    report = {
        "episodes": len(results),
        "finished": finished,
        "interrupted": interrupted,
        **figures,
        "budget_status": summary["worst_status"],
        "wall_s": time.monotonic() - started,
        "results": results,
        # another policy or simulator on these topics (same ROS domain) made the episodes unreliable
        "shared_topics": sorted({t for r in results for t in r["shared_topics"]}),
        "log": summary["jsonl"],
        "mcap": summary["mcap"],
        "policy_io_mcap": policy["record_path"],
        "plot": summary["plot"],
        "checkpoint": str(checkpoint.resolve()),
        "replay": replay_command(policy["record_path"], checkpoint, args.average_gflops),
    }
    report_path = out_dir / run / "demo_summary.json"
    recording = Path(report["policy_io_mcap"])
    deleted = {name.rsplit(".", 1)[-1] for name in summary.get("deleted_logs", [])}
    # logs deleted during the run (their folder removed, perhaps made again) are not there to read: the monitor
    # names its own; the recording is gone when no part of it is left (record_keep_parts leaves the newest)
    gone = {"log": "jsonl" in deleted, "mcap": "mcap" in deleted,
            "policy_io_mcap": not (recording.is_file() or numbered_parts(recording))}
    report["missing_logs"] = [str(report[key]) for key, lost in gone.items() if lost]
    try:  # before the report is printed: a stdout closed under it (`| head`) cost the summary of a finished run
        atomic_write_text(report_path, json.dumps(report, indent=2))
        unwritten = None
    except OSError as exc:  # the report is still printed: a full disk must not cost the results the run has
        unwritten = error_text(exc)
    ending = "" if finished else " (interrupted)" if interrupted else " (timed out)"
    print(f"\n=== deer-vla demo: {len(results)} episode(s){ending} ===")
    for line in demo_headline(results, figures, metric, stack.full_profile.num_exits):
        print(line)
    for label, key, after in (("step log (JSONL) ", "log", ""), ("step log (MCAP)  ", "mcap", ""),
                              ("policy I/O (MCAP)", "policy_io_mcap", f"  ({report['replay']})")):
        print(f"{label} {report[key]}" + ("  (DELETED during the run)" if gone[key] else after))
    print(f"plot              {report['plot'] if report['plot'] is not None else 'none (no steps to plot)'}")
    if unwritten is not None:
        print(f"deer-vla demo: summary not written to {report_path}: {unwritten}", file=sys.stderr)
        return 1
    print(f"summary           {report_path}")
    if report["shared_topics"]:
        print(f"WARNING: other nodes in this ROS domain also published on {', '.join(report['shared_topics'])} "
              "(a second demo or policy?): these episodes' results are unreliable. Give each run its own "
              "ROS_DOMAIN_ID.", file=sys.stderr)
    if interrupted:
        return 130  # the shell's code for a run ended by Ctrl-C
    return 0 if finished else 1


if __name__ == "__main__":
    sys.exit(main())
