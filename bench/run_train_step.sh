#!/usr/bin/env bash
# Side-by-side training-step throughput: lethe vs Hugging Face transformers, same model, batch,
# optimizer and thread count; runs them alternately (REPEATS times) and prints the ratio of
# medians. Hardware: any; 2-core CPU numbers are in docs/PERFORMANCE.md.
# usage: bench/run_train_step.sh [CONFIG.json] [BATCH] [SEQ] [STEPS] [THREADS] [REPEATS]
#                               [DEVICE cpu|cuda] [DTYPE float32|bfloat16] [PEER hf-sdpa|hf-eager]
# PYTHON (default .venv/bin/python, the project environment) and BUILD (default build) may be set.
set -euo pipefail
cd "$(dirname "$0")/.."
CFG=${1:-configs/models/tiny-llama.json}; B=${2:-16}; T=${3:-64}; S=${4:-10}; TH=${5:-2}; R=${6:-3}
DEV=${7:-cpu}; DT=${8:-float32}; IMPL=${9:-hf-sdpa}
PY=${PYTHON:-.venv/bin/python}; BIN=${BUILD:-build}/bench/lethe_bench_step
[ -x "$BIN" ] || { echo "build first: bash scripts/setup.sh" >&2; exit 2; }
ours=(); peer=()
for _ in $(seq "$R"); do
  ours+=("$("$BIN" "$CFG" "$B" "$T" "$S" "$TH" "$DEV" "$DT")")
  peer+=("$("$PY" bench/peer_train_step.py "$CFG" "$B" "$T" "$S" "$TH" "$DEV" "$DT" "$IMPL")")
done
"$PY" - "$CFG" "$B" "$T" "$TH" "${ours[@]}" "${peer[@]}" <<'PY'
import json, statistics, sys
cfg, B, T, th = sys.argv[1:5]
runs = [json.loads(x) for x in sys.argv[5:]]
half = len(runs) // 2
ours, peer = runs[:half], runs[half:]
mo = statistics.median(r["step_s"] for r in ours)
mp = statistics.median(r["step_s"] for r in peer)
print(f"config {cfg} ({ours[0]['params']:,} params), batch {B} x {T} tokens, {th} threads, {half} alternating runs,"
      f" {ours[0]['device']} {ours[0]['dtype']}")
print(f"lethe          {mo*1000:8.1f} ms/step  {int(B)*int(T)/mo:10.0f} tokens/s")
print(f"{peer[0]['impl']:14s} {mp*1000:8.1f} ms/step  {int(B)*int(T)/mp:10.0f} tokens/s")
print(f"ratio (peer time / lethe time): {mp/mo:.2f}x")
PY
