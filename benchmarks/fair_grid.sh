#!/usr/bin/env bash
# The fair benchmark in one command: on the hard chain task (800 steps, read at H = 400 and 2H = 800)
# and on the GSM8K-style arithmetic task (200 steps, read at 100 and 200), the baseline over learning
# rate x exploration and each replay policy, 5 seeds, every arm on the same warm models, prompt stream
# and sampled sequences per step (benchmarks/grid.py's default grids). Each task writes results.md
# (a table per horizon against the best baseline) and curves.png under OUT/<task>/.
# About 3.7 hours (chain: 25 arms) + 1.5 hours (arithmetic) on 2 CPU cores, warm-ups included; on a GPU machine
# add: --device cuda --workers 15.
# Usage: bash benchmarks/fair_grid.sh [OUT] [extra grid.py flags]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$root/runs/fair_grid}
shift || true
bash "$root/scripts/bootstrap.sh"
# shellcheck source=scripts/env.sh
source "$root/scripts/env.sh"
for task in chain arithmetic; do
   "$root/.venv/bin/python" "$root/benchmarks/grid.py" --task "$task" --seeds 5 --out "$out/$task" "$@"
done
