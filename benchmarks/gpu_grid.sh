#!/usr/bin/env bash
# RRL vs baseline on a GPU machine: the hard-task benchmark (5 seeds x 400 steps) for the baseline,
# the baseline with hot sampling on hard prompts, and three RRL variants, all in parallel on one GPU;
# then the same small job on the machine's CPU for a per-step time comparison.
# Usage: bash benchmarks/gpu_grid.sh OUTDIR   (openrlhf_rrl and OpenRLHF's packages on PYTHONPATH)
set -uo pipefail
out=${1:?output folder}
runs=${RRL_CACHE_DIR:-/tmp/rrl}/grid
mkdir -p "$out" "$runs"
seeds=${SEEDS:-5}
common=(--task chain --seeds "$seeds" --train.num_steps "${STEPS:-400}" --eval.steps 25 --no_progress --device "${DEVICE:-cuda}")
demo() { python3 -m openrlhf_rrl.runner.cli "${common[@]}" "$@"; }
t0=$(date +%s)
demo --arms baseline,rrl --workers 10 --rrl_restart_temperature none --out "$runs/AB" > "$out/AB.log" 2>&1 &
first=$!
while [ "$(find "$RRL_CACHE_DIR/warmup" -name "*.pt" 2>/dev/null | wc -l)" -lt "$seeds" ] && kill -0 "$first" 2>/dev/null; do sleep 2; done
demo --arms rrl --workers 5 --rrl_restart_temperature 2 --rollout.is_correction --out "$runs/T2IS" > "$out/T2IS.log" 2>&1 &
demo --arms rrl --workers 5 --rrl_restart_temperature 2 --out "$runs/T2" > "$out/T2.log" 2>&1 &
demo --arms baseline --workers 5 --rollout.hard_temperature 2 --out "$runs/BHT2" > "$out/BHT2.log" 2>&1 &
wait
echo "grid wall s: $(( $(date +%s) - t0 ))"
mkdir -p "$runs/all/metrics"
for f in "$runs"/AB/metrics/*.jsonl; do cp "$f" "$runs/all/metrics/"; done
for f in "$runs"/T2IS/metrics/rrl_s*.jsonl; do cp "$f" "$runs/all/metrics/rrl-t2-is_s${f##*_s}"; done
for f in "$runs"/T2/metrics/rrl_s*.jsonl; do cp "$f" "$runs/all/metrics/rrl-t2_s${f##*_s}"; done
for f in "$runs"/BHT2/metrics/baseline_s*.jsonl; do cp "$f" "$runs/all/metrics/baseline-hot2_s${f##*_s}"; done
python3 -c "
from openrlhf_rrl.runner.report import write_report
table, _ = write_report('$runs/all', title='chain task, tiny model, GPU: hard success, 5 seeds x 400 steps')
print(table)"
cp "$runs/all/results.md" "$runs/all/curves.png" "$out/"
tar czf "$out/metrics.tgz" -C "$runs/all" metrics
# per-step time of the same job on this machine's CPU (2 seeds x 100 steps, warm models cached)
t1=$(date +%s)
timeout 240 python3 -m openrlhf_rrl.runner.cli --task chain --seeds 2 --train.num_steps "${CPU_STEPS:-100}" --eval.steps 50 \
  --no_progress --device cpu --workers 4 --out "$runs/cpu" > "$out/cpu.log" 2>&1
echo "cpu job wall s: $(( $(date +%s) - t1 ))"
grep -h '"summary"' "$runs"/cpu/metrics/*.jsonl | python3 -c "
import sys, json
for l in sys.stdin:
    r = json.loads(l); print('cpu', r['step'], 'steps', round(1000*r['step_time_s']), 'ms/step', round(r['rrl_overhead_pct'], 2), '% rrl')"
