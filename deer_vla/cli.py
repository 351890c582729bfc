"""`deer-vla`: one command, one sub-command per job.

Each sub-command lives with the code it runs (a `cli_main(argv)` function in
that module) and is imported only when used, so `deer-vla --help` stays fast
and a robot without the simulator can still run the nodes.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from deer_vla.core.console import stdout_may_close

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("deer_vla.ros.bringup", "run the simulated robot under the policy node + monitor (the main job)"),
    "bringup": ("deer_vla.ros.bringup", "start a node graph (policy, monitor, sim) in one process"),
    "collect": ("deer_vla.data.collect", "roll out scripted experts and record demonstrations"),
    "import-lerobot": ("deer_vla.data.import_lerobot", "a LeRobot v3 dataset on disk -> demonstrations"),
    "import-mcap": ("deer_vla.data.import_mcap", "a teleoperation MCAP (rosbag2) -> demonstrations"),
    "train": ("deer_vla.train.trainer", "train a multi-exit policy (DeeR recipe)"),
    "train-gate": ("deer_vla.train.gate", "train the learned exit criterion's gates on a checkpoint's own outputs"),
    "calibrate": ("deer_vla.commands.calibrate", "solve exit thresholds for an average budget"),
    "evaluate": ("deer_vla.evaluation.evaluator", "closed-loop success vs compute evaluation"),
    "eval-report": ("deer_vla.evaluation.journal_report", "results so far of a running or interrupted evaluation"),
    "instruction-swap": ("deer_vla.evaluation.instruction_swap", "shared starts: does each instruction do its task"),
    "profile": ("deer_vla.model.profiling", "per-exit FLOPs, params, memory and latency of a checkpoint"),
    "replay": ("deer_vla.ros.replay", "replay a recorded MCAP through the policy offline"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        parser = argparse.ArgumentParser(prog="deer-vla", description=__doc__.splitlines()[0])
        sub = parser.add_subparsers(title="commands", metavar="COMMAND")
        for name, (_, help_text) in COMMANDS.items():
            sub.add_parser(name, help=help_text)
        parser.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"deer-vla: unknown command '{name}'; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    stdout_may_close()  # `deer-vla demo | head`: a reader gone costs the output, not the run (core/console.py)
    try:  # the import too: a Ctrl-C while it loads torch printed a traceback
        _warn_if_stale()
        module = importlib.import_module(COMMANDS[name][0])
        entry = getattr(module, "demo_main" if name == "demo" else "cli_main")
        return int(entry(rest) or 0)
    except KeyboardInterrupt:  # Ctrl-C: what each command wrote so far stays (journals, checkpoints, episodes)
        print(f"deer-vla {name}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # an unwritable --out, a missing file: the file and the reason, not a traceback
        print(f"deer-vla {name}: {exc}", file=sys.stderr)
        return 1


def _warn_if_stale() -> None:
    from pathlib import Path

    from deer_vla.commands.checkout import installed_package, stale_install

    try:
        warning = stale_install(Path.cwd(), installed_package(), share=Path(sys.prefix) / "share" / "deer_vla")
    except OSError:  # an unreadable file or a vanished cwd: a hint, never a reason to fail the command
        return
    if warning:
        print(warning, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
