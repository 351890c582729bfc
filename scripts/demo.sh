#!/usr/bin/env bash
# Install everything (idempotent) and run the main job: the simulated robot
# driven by the policy node (shipped checkpoint, default budget) + monitor.
# Extra arguments go to `deer-vla demo`, e.g. `--episodes 3`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export MUJOCO_GL=${MUJOCO_GL:-egl} EGL_PLATFORM=${EGL_PLATFORM:-surfaceless}
exec .venv/bin/deer-vla demo "$@"
