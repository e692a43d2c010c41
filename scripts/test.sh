#!/usr/bin/env bash
# Run the whole test suite (sets up .venv first when needed). Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup_env.sh
export DEPTH_ROS_OFFLINE="${DEPTH_ROS_OFFLINE:-1}"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
exec "$root/.venv/bin/python" -m pytest -q -rs -p no:cacheprovider "$@" test
