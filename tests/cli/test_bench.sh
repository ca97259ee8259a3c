#!/usr/bin/env bash
# `lethe bench step|checkpoint|merge` end to end on tiny models: one JSON line each with the
# promised fields and sane values (positive times, MFU in (0, 1], tokens/s = tokens per step /
# step time), 1 and 2 ranks for the step (ZeRO 3), the scratch outputs removed, the Python peer
# (bench/peer_step.py, transformers) runs the same step, and bad input ends in exit 2.
# No timing is asserted: the benchmarks compare speeds, this test only that they run and report.
# usage: test_bench.sh LETHE SRC MPIRUN
set -uo pipefail
LETHE=$1; SRC=$2; MPIRUN=$3
PY=${LETHE_PYTHON:-$SRC/.venv/bin/python}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
CFG=$SRC/configs/models/tiny-llama.json

# check_json FILE PYTHON_CONDITION...: the last stdout line is JSON satisfying every condition (j is it).
check_json() {
  local file=$1; shift
  if out=$("$PY" - "$file" "$@" 2>&1 <<'PY'
import json, sys
j = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
failed = [c for c in sys.argv[2:] if not eval(c)]
if failed:
    sys.exit("conditions not met: " + "; ".join(failed))
PY
  ); then
    ok
  else
    bad "$file: $out"; cat "$file"
  fi
}

STEP=(bench step --model-config "$CFG" --batch-size 4 --seq-len 32 --steps 3 --warmup 1 --json --log-level warn)
for m in gd npo; do
  "$LETHE" "${STEP[@]}" --method $m --threads 1 >"$T/step_$m.json" 2>"$T/err" || { bad "bench step $m: $(cat "$T/err")"; continue; }
  check_json "$T/step_$m.json" "j['bench'] == 'step'" "j['method'] == '$m'" "j['step_s'] > 0" \
    "abs(j['tokens_per_s'] - j['tokens_per_step'] / j['step_s']) < 1e-6 * j['tokens_per_s']" \
    "j['tokens_per_step'] == 2 * 4 * 32" "j['flops_per_step'] > 0" "0 < j['mfu'] <= 1" \
    "j['peak_flops_source'] == 'measured GEMM rate'" "len(j['step_s_all']) == 3" "j['peak_memory_mib'][0] > 0" \
    "j['ops_per_step'] is None"
done
# --count-ops: the operator calls of a timed step. gd runs a forward and backward on the forget and
# on the retain batch, ga on the forget batch alone (both: clipping and the fused AdamW), so gd
# makes nearly twice ga's calls; the same every step (the mean is a whole number).
for m in gd ga; do
  "$LETHE" "${STEP[@]}" --method $m --threads 1 --count-ops >"$T/ops_$m.json" 2>"$T/err" || bad "bench step --count-ops: $(cat "$T/err")"
  check_json "$T/ops_$m.json" "j['ops_per_step'] > 100" "j['ops_per_step'] == int(j['ops_per_step'])" \
    "abs(j['s_per_op'] * j['ops_per_step'] - j['step_s']) < 1e-9 + 1e-6 * j['step_s']"
done
"$PY" -c "import json,sys; g, a = (json.loads(open(f).read().splitlines()[-1])['ops_per_step'] for f in sys.argv[1:]); \
  sys.exit(0 if 1.6 < g / a < 2.2 else f'gd {g} ga {a}')" "$T/ops_gd.json" "$T/ops_ga.json" && ok || bad "gd's operator calls against ga's"
"$LETHE" "${STEP[@]}" --method ga --lora-rank 4 --threads 1 >"$T/step_lora.json" 2>"$T/err" || bad "bench step lora: $(cat "$T/err")"
check_json "$T/step_lora.json" "j['lora_rank'] == 4" "j['trainable'] < j['params']" "j['tokens_per_step'] == 4 * 32"
"$MPIRUN" -np 2 "$LETHE" "${STEP[@]}" --method gd --zero-stage 3 >"$T/step_np2.json" 2>"$T/err" \
  || bad "bench step on 2 ranks: $(tail -3 "$T/err")"
check_json "$T/step_np2.json" "j['ranks'] == 2" "j['zero_stage'] == 3" "len(j['peak_memory_mib']) == 2"
[ "$(grep -c '^{' "$T/step_np2.json")" -eq 1 ] && ok || bad "2 ranks printed more than one JSON line"

# The peer runs the same step and reports the same keys.
"$PY" "$SRC/bench/peer_step.py" --model-config "$CFG" --batch-size 4 --seq-len 32 --steps 2 --warmup 1 --method npo \
  --threads 1 >"$T/peer.json" 2>"$T/err" || bad "peer: $(tail -3 "$T/err")"
check_json "$T/peer.json" "j['method'] == 'npo'" "j['step_s'] > 0" "j['tokens_per_s'] > 0"
# rmu as open-unlearning runs it (a hooked whole forward) against lethe's layers 0..2 only.
"$PY" "$SRC/bench/peer_step.py" --model-config "$CFG" --batch-size 4 --seq-len 32 --steps 2 --warmup 1 --method rmu \
  --rmu-layer 2 --threads 1 >"$T/peer_rmu.json" 2>"$T/err" || bad "peer rmu: $(tail -3 "$T/err")"
check_json "$T/peer_rmu.json" "j['method'] == 'rmu'" "j['step_s'] > 0" "abs(j['tokens_per_s'] * j['step_s'] - 2 * 4 * 32) < 1e-6"
"$LETHE" "${STEP[@]}" --method rmu --rmu.layer 2 --rmu.train 'model\.layers\.(0|1|2)\.mlp\.down_proj\.weight' \
  --threads 1 >"$T/step_rmu.json" 2>"$T/err" || bad "bench step rmu: $(cat "$T/err")"
check_json "$T/step_rmu.json" "j['method'] == 'rmu'" "j['trainable'] < j['params']" "j['tokens_per_step'] == 2 * 4 * 32"
# dpo: lethe counts the refusal sequences it trains on; the peer runs ones of that length and
# both reference models every step. adversarial: the peer's reference picks the labels every step.
"$LETHE" "${STEP[@]}" --method dpo --threads 1 >"$T/step_dpo.json" 2>"$T/err" || bad "bench step dpo: $(cat "$T/err")"
check_json "$T/step_dpo.json" "16 < j['preferred_seq_len'] <= 32" \
  "abs(j['tokens_per_step'] - (2 * 4 * 32 + 4 * j['preferred_seq_len'])) < 1e-6"
"$PY" "$SRC/bench/peer_step.py" --model-config "$CFG" --batch-size 4 --seq-len 32 --steps 2 --warmup 1 --method dpo \
  --win-len 24 --threads 1 >"$T/peer_dpo.json" 2>"$T/err" || bad "peer dpo: $(tail -3 "$T/err")"
check_json "$T/peer_dpo.json" "j['method'] == 'dpo'" "abs(j['tokens_per_s'] * j['step_s'] - (2 * 4 * 32 + 4 * 24)) < 1e-6"
"$PY" "$SRC/bench/peer_step.py" --model-config "$CFG" --batch-size 4 --seq-len 32 --steps 2 --warmup 1 \
  --method adversarial --threads 1 >"$T/peer_adv.json" 2>"$T/err" || bad "peer adversarial: $(tail -3 "$T/err")"
check_json "$T/peer_adv.json" "j['method'] == 'adversarial'" "abs(j['tokens_per_s'] * j['step_s'] - 4 * 32) < 1e-6"
"$PY" "$SRC/bench/compare_runs.py" "$(cat "$T/step_npo.json")" -- "$(cat "$T/peer.json")" >"$T/cmp" 2>&1 \
  && grep -q "ratio (peer time / lethe time)" "$T/cmp" && ok || bad "compare_runs: $(cat "$T/cmp")"

# Checkpoint bandwidth, both formats; nothing left in --dir.
mkdir -p "$T/disk"
for f in native hf; do
  "$LETHE" bench checkpoint --model-config "$CFG" --dir "$T/disk" --format $f --repeats 2 --json >"$T/ck_$f.json" 2>"$T/err" \
    || bad "bench checkpoint $f: $(cat "$T/err")"
  check_json "$T/ck_$f.json" "j['format'] == '$f'" "j['bytes'] > 4 * 900000" "j['write_MBps'] > 0" "j['read_cold_MBps'] > 0" \
    "j['read_warm_MBps'] > 0"
done
[ -z "$(ls -A "$T/disk")" ] && ok || bad "bench checkpoint left $(ls -A "$T/disk")"

# Merge throughput on 1 and 2 ranks.
for s in 1 2 3; do "$LETHE" init --model-config "$CFG" --seed $s --out "$T/m$s" >/dev/null 2>&1 || bad "init"; done
"$LETHE" bench merge --base "$T/m1" --models "$T/m2" "$T/m3" --merge ties --dir "$T/disk" --repeats 2 --json \
  >"$T/merge.json" 2>"$T/err" || bad "bench merge: $(cat "$T/err")"
check_json "$T/merge.json" "j['models'] == 2" "j['output_bytes'] > 0" "j['merge_s'] > 0" "j['rule'].startswith('ties')"
"$MPIRUN" -np 2 "$LETHE" bench merge --base "$T/m1" --models "$T/m2" "$T/m3" --dir "$T/disk" --repeats 1 --json \
  >"$T/merge2.json" 2>"$T/err" || bad "bench merge on 2 ranks: $(tail -3 "$T/err")"
check_json "$T/merge2.json" "j['ranks'] == 2"
[ -z "$(ls -A "$T/disk")" ] && ok || bad "bench merge left $(ls -A "$T/disk")"

# Bad input: one message, exit 2.
expect_error() {
  local needle=$1; shift
  timeout 120 "$@" >"$T/out" 2>"$T/err"; local rc=$?
  if [ $rc -ne 2 ]; then bad "exit $rc (want 2): $*"; cat "$T/err"; return; fi
  grep -qF -- "$needle" "$T/err" && ok || { bad "message lacks '$needle': $*"; cat "$T/err"; }
}
expect_error "unknown command 'bench'" "$LETHE" bench
expect_error "unknown command 'bench nothing'" "$LETHE" bench nothing
expect_error "missing required option --model-config" "$LETHE" bench step
expect_error "--seq-len" "$LETHE" bench step --model-config "$CFG" --seq-len 1
expect_error "exceeds the model's max_position_embeddings" "$LETHE" bench step --model-config "$CFG" --seq-len 100000
expect_error "unknown unlearning method" "$LETHE" bench step --model-config "$CFG" --method nope
expect_error "is not an existing directory" "$LETHE" bench checkpoint --model-config "$CFG" --dir "$T/none"
expect_error "$T/none.json" "$LETHE" bench checkpoint --model-config "$T/none.json" --dir "$T/disk"

echo "bench: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
