"""Write the small LeRobot v3 dataset the own-robot walk-through (docs/own_robot.md) and the tests use.

A synthetic 7-DoF arm (deer_vla.data.lerobot_writer.demo_episodes): two tasks, a front and a wrist camera
(AV1 mp4, as LeRobot records them), a 6-D joint state in degrees, end-effector delta actions
x, y, z (m), roll, pitch, yaw (rad) and a gripper recorded as 0 = open .. 1 = closed.

    python scripts/make_demo_lerobot.py --out /tmp/lerobot_demo
"""
from __future__ import annotations

import argparse
import sys

from deer_vla.core.writable import path_argument
from deer_vla.data.lerobot_writer import write_demo_dataset


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=path_argument, required=True, help="new directory for the LeRobot dataset")
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--steps", type=int, default=20, help="frames per episode")
    p.add_argument("--fps", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        root = write_demo_dataset(args.out, n_episodes=args.episodes, steps=args.steps, seed=args.seed, fps=args.fps)
    except FileExistsError as exc:
        print(f"make_demo_lerobot: {exc}", file=sys.stderr)
        return 1
    print(f"wrote a LeRobot v3 dataset: {args.episodes} episodes x {args.steps} frames at {args.fps} fps -> {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
