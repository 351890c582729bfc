#!/usr/bin/env bash
# Install everything (idempotent) and run lint, type checks and the test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export MUJOCO_GL=${MUJOCO_GL:-egl} EGL_PLATFORM=${EGL_PLATFORM:-surfaceless}
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
