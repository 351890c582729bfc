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
TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
py_version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true; }

# The ROS 2 Jazzy wheels are CPython 3.11's: another Python fails deep in pip. A robot whose ROS comes from apt
# (DEER_VLA_NO_ROS_WHEELS=1) runs its system Python instead (3.12 on Ubuntu 24.04 for Jazzy).
version=$(py_version "$PYTHON")
if [ "${DEER_VLA_NO_ROS_WHEELS:-0}" = "1" ]; then
  supported="3.10 3.11 3.12"
else
  supported="3.11"
fi
case " $supported " in
  *" $version "*) ;;
  *) echo "[install] deer_vla needs Python ${supported// / or } here; $PYTHON is" \
          "$("$PYTHON" --version 2>&1 || echo 'not found'): set PYTHON=python3.11" >&2
     exit 1 ;;
esac

missing=()
for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ! "$PYTHON" -c "import venv, ensurepip" >/dev/null 2>&1; then missing+=(python3-venv); fi
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "[install] missing Debian packages and no sudo: as root, run" \
           "apt-get install -y --no-install-recommends ${missing[*]}" >&2
      exit 1
    fi
    SUDO="sudo"
  fi
  echo "[install] apt packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# A venv whose creation or pip install was cut short (Ctrl-C, a kill) can hold half-installed packages that
# pip then counts as installed: the marker stays until the install finishes, and a venv holding it is rebuilt,
# as is one made by another Python than $PYTHON.
incomplete=.venv/.deer_vla_incomplete
if [ -e "$incomplete" ] || { [ -e .venv ] && [ "$(py_version .venv/bin/python)" != "$version" ]; }; then
  echo "[install] .venv is incomplete or not Python $version: rebuilding it"
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  echo "[install] creating .venv with $("$PYTHON" --version)"
  mkdir -p .venv && touch "$incomplete"
  "$PYTHON" -m venv .venv
fi

reqs=(requirements/base.txt requirements/dev.txt)
[ "${DEER_VLA_NO_ROS_WHEELS:-0}" = "1" ] || reqs+=(requirements/ros-jazzy.txt)
stamp=.venv/.deer_vla_requirements
want=$(cat "${reqs[@]}" setup.py package.xml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[install] pip install (pinned)"
  touch "$incomplete"
  pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
  "${pip[@]}" --upgrade pip==26.3
  # torch first, its CPU build: PyPI's Linux torch is the CUDA one (GBs of nvidia-* wheels). A local wheel
  # (PIP_FIND_LINKS) is taken as is; otherwise PyTorch's CPU index, for torch alone
  torch_req=$(grep -E '^torch==' requirements/base.txt)
  "${pip[@]}" "$torch_req" 2>/dev/null || "${pip[@]}" --index-url "$TORCH_CPU_INDEX" "$torch_req"
  args=(); for r in "${reqs[@]}"; do args+=(-r "$r"); done
  "${pip[@]}" "${args[@]}"
  echo "$want" > "$stamp"
  rm -f "$incomplete"
fi
# The package itself, as a regular (not editable) install: only that puts
# setup.py's data_files (ament index marker, package.xml, launch/, config/)
# under the venv prefix where ament_index_python looks. Cheap to repeat.
# Its output is setuptools' warnings when it works, and pip's reason when it fails: shown then, with the exit.
if ! out=$(.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation . 2>&1)
then
  printf '%s\n' "$out" >&2
  echo "[install] installing deer_vla itself failed (above); the previous install, if any, is unchanged" >&2
  exit 1
fi
# ROS tools must find it too: pip ignores setup.cfg's install_scripts (setup.py installs the node
# launchers in .venv/lib/deer_vla itself), and the ROS wheels never set AMENT_PREFIX_PATH. This writes
# .venv/share/deer_vla/local_setup.sh (AMENT_PREFIX_PATH + PYTHONPATH; sourced by .venv/bin/activate)
# and a .pth that gives every Python of the venv the prefix on AMENT_PREFIX_PATH.
.venv/bin/python -m deer_vla.ament_hooks >/dev/null
echo "[install] ready: $(.venv/bin/python -c 'import deer_vla, torch, rclpy; print("deer_vla", deer_vla.__version__, "torch", torch.__version__)')"
