"""Trace one closed-loop episode: the policy's action beside the scripted expert's, step by step.

For finding *where* a policy leaves the expert's path (e.g. which phase of a task it gets wrong):

    python scripts/trace_episode.py --checkpoint default --task window-close \
        --seed 100000 --every 5 [--instruction "open the window"] [--exit 3]

Prints the hand position, the policy's action and the expert's action at every ``--every``-th step and how the
episode ended. The expert is only queried (its action is never executed).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # this checkout's deer_vla, as the benches use
    sys.path.insert(0, str(REPO))

from deer_vla.core.config_io import thread_count  # noqa: E402
from deer_vla.model.shipped import checkpoint_argument, checkpoint_help  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=checkpoint_argument, required=True, help=checkpoint_help(default=None))
    p.add_argument("--task", required=True, help="a suite task name, e.g. window-close")
    p.add_argument("--seed", type=int, default=100_000, help="episode seed (evaluation seeds start at 100000)")
    p.add_argument("--instruction", default=None, help="instead of the task's canonical instruction")
    p.add_argument("--exit", type=int, default=None, help="fixed exit (default: the full model)")
    p.add_argument("--max-steps", type=int, default=None, help="episode step limit (default: the task's)")
    p.add_argument("--every", type=int, default=5, help="print every N-th step")
    p.add_argument("--threads", type=thread_count, default=1, help="torch threads")
    args = p.parse_args(argv)
    if args.every < 1:
        p.error("--every must be >= 1")
    torch.set_num_threads(args.threads)

    from deer_vla.control.controller import ExitController
    from deer_vla.model.runner import PolicyRunner
    from deer_vla.sim.metaworld_env import MetaWorldAdapter

    runner = PolicyRunner.from_checkpoint(args.checkpoint)
    exit_k = runner.num_exits if args.exit is None else args.exit
    if not 1 <= exit_k <= runner.num_exits:
        p.error(f"--exit must be in 1..{runner.num_exits}")
    controller = ExitController(runner, runner.cost_profile, None, fixed_exit=exit_k)
    np.set_printoptions(precision=2, suppress=True, floatmode="fixed")
    size = int(runner.model.config.image_size)
    with MetaWorldAdapter(args.task, image_size=size, cameras=tuple(runner.cameras), max_steps=args.max_steps) as env:
        obs = env.reset(seed=args.seed, instruction=args.instruction)
        controller.reset_episode()
        print(f"{args.task} seed {args.seed} exit {exit_k}: {env.instruction!r}")
        for t in range(env.max_steps):
            expert = env.expert_action()
            action, _ = controller.step(obs)
            hand = env.proprio()[:3]
            result = env.step(action)
            if t % args.every == 0 or result.success or result.done:
                print(f"{t:4d} hand {hand}  policy {np.asarray(action)}  expert {np.asarray(expert)}")
            if result.success or result.done:
                print(f"{'success' if result.success else 'not solved'} after {t + 1} steps")
                return 0
            obs = result.observation
    return 0


if __name__ == "__main__":
    sys.exit(main())
