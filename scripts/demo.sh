#!/usr/bin/env bash
# The README's main command: set up the pinned environment, then run RRL vs the baseline on
# this machine's CPU (tiny Qwen2 by default). Extra arguments go to rrl-demo (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
source scripts/env.sh
exec .venv/bin/rrl-demo "$@"
