#!/usr/bin/env bash
# Side-by-side training-step throughput: lethe vs the PyTorch eager peer, same model, batch,
# optimizer and thread count; runs them alternately (REPEATS times) and prints the ratio of
# medians. Hardware: any; 2-core CPU numbers are in docs/PERFORMANCE.md.
# usage: bench/run_train_step.sh [CONFIG.json] [BATCH] [SEQ] [STEPS] [THREADS] [REPEATS]
set -euo pipefail
cd "$(dirname "$0")/.."
CFG=${1:-configs/models/tiny-llama.json}; B=${2:-16}; T=${3:-64}; S=${4:-10}; TH=${5:-2}; R=${6:-3}
[ -x build/bench/lethe_bench_step ] || { echo "build first: bash scripts/setup.sh" >&2; exit 2; }
ours=(); peer=()
for _ in $(seq "$R"); do
  ours+=("$(build/bench/lethe_bench_step "$CFG" "$B" "$T" "$S" "$TH")")
  peer+=("$(/usr/bin/python3 bench/peer_train_step.py "$CFG" "$B" "$T" "$S" "$TH")")
done
/usr/bin/python3 - "$CFG" "$B" "$T" "$TH" "${ours[@]}" "${peer[@]}" <<'PY'
import json, statistics, sys
cfg, B, T, th = sys.argv[1:5]
runs = [json.loads(x) for x in sys.argv[5:]]
half = len(runs) // 2
ours, peer = runs[:half], runs[half:]
mo = statistics.median(r["step_s"] for r in ours)
mp = statistics.median(r["step_s"] for r in peer)
print(f"config {cfg} ({ours[0]['params']:,} params), batch {B} x {T} tokens, {th} threads, {half} alternating runs")
print(f"lethe          {mo*1000:8.1f} ms/step  {B and int(B)*int(T)/mo:10.0f} tokens/s")
print(f"pytorch eager  {mp*1000:8.1f} ms/step  {int(B)*int(T)/mp:10.0f} tokens/s")
print(f"ratio (peer time / lethe time): {mp/mo:.2f}x")
PY
