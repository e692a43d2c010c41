#!/usr/bin/env bash
# Create or refresh the project-local virtual environment (.venv) from the pinned requirements.
# Idempotent: does nothing when .venv already matches the requirement files.
# Set DEPTH_ROS_NO_ROS_WHEELS=1 on a machine with a ROS 2 distro (its rclpy must not be shadowed).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
py="${DEPTH_ROS_PYTHON:-}"
if [ -z "$py" ]; then
  for c in python3.11 python3.12 python3.10 python3; do
    if command -v "$c" >/dev/null 2>&1; then py="$c"; break; fi
  done
fi
sets=(requirements/runtime.txt requirements/test.txt)
if [ "${DEPTH_ROS_NO_ROS_WHEELS:-0}" != "1" ]; then sets+=(requirements/ros-wheels.txt); fi
want="$(cat "${sets[@]}" setup.py | sha256sum | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.depth_ros_stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
# open3d needs libusb at import time.
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    echo "[setup] installing libusb-1.0-0 (needed by open3d)" >&2
    (apt-get install -y -qq libusb-1.0-0 >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq libusb-1.0-0 >/dev/null; }) \
      || echo "[setup] warning: could not install libusb-1.0-0; open3d (PLY output, voxel outlier removal) will fail" >&2
  else
    echo "[setup] warning: libusb-1.0-0 missing; open3d features will be unavailable" >&2
  fi
fi
echo "[setup] creating/refreshing $venv with $py (first run downloads ~5 GB: torch, timm, ROS 2 wheels)" >&2
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip >&2
args=()
for s in "${sets[@]}"; do args+=(-r "$s"); done
"$venv/bin/python" -m pip install -q "${args[@]}" >&2
"$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e . >&2
echo "$want" > "$venv/.depth_ros_stamp"
echo "[setup] environment ready" >&2
