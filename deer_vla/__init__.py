"""deer_vla: dynamic early-exit vision-language-action policy for ROS 2.

Sub-packages, one job each:
  core/        shared types: action layout, observation, cost profile, step record
  model/       the multi-exit Flamingo-style policy, checkpoints, cost profiling
  control/     exit controller and budgets (no ROS, no simulator)
  sim/         Meta-World adapter and the language-conditioned task suite
  data/        demonstration episode format, collector, importers, MCAP recordings read offline
  train/       DeeR multi-exit training
  evaluation/  closed-loop evaluator, episode workers, trade-off plots
  ros/         policy, monitor and sim nodes, node graph, bringup, record/replay
  commands/    sub-commands that span layers (calibrate)
  cli.py       the `deer-vla` command
Imports go down: core <- control, model, sim <- data <- train, evaluation, ros <- cli, commands
(test/test_layers.py).
"""
from deer_vla._ament import register_venv_prefix

__version__ = "0.1.0"

# pip installs our ament index marker under sys.prefix/share, but the ROS
# wheels never set AMENT_PREFIX_PATH; without this, get_package_share_directory
# cannot find an installed deer_vla in a venv. A no-op under a sourced ROS.
register_venv_prefix()
