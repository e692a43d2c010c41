#!/usr/bin/env bash
# The demo (main-job command): set up .venv when needed, then run a real ROS 2 graph in three
# processes -- sample_camera -> depth_node (config/zoedepth_nk.yaml, as launch/zoedepth.launch.py
# starts it) -> depth_recorder -- and write pictures, PLY clouds, a rosbag2 and a summary to out/demo.
#
#   bash scripts/demo.sh                 # ZoeDepth-NK; official weights when available, else random (marked)
#   bash scripts/demo.sh --quick         # tiny test network, ~30 s: a smoke test of the whole graph
#   bash scripts/demo.sh --help          # all options (--out, --rate, --frames, --weights, --device, ...)
#
# Weights: --weights PATH, $DEPTH_ROS_WEIGHTS_DIR/ZoeD_M12_NK.pt, ~/.cache/depth_ros (or $DEPTH_ROS_CACHE),
# else a download (set DEPTH_ROS_OFFLINE=1 to skip it).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup_env.sh
exec "$root/.venv/bin/python" -m depth_ros.demo.run_demo "$@"
