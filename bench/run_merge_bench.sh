#!/usr/bin/env bash
# Merge throughput: `lethe merge` vs mergekit (PyPI, CPU) on the same base and three random
# ~1.1B-parameter Llama models (configs/models/llama-1b.json, bf16 on disk), the same rule and
# options, float32 arithmetic and bf16 output on both sides; runs them alternately (REPEATS
# times each, output on the same disk, page cache dropped first when possible) and prints the
# medians and their ratio. Hardware: any CPU machine with ~12 GB free disk and ~16 GiB memory;
# on the 2-core development machine task_arithmetic x 2 about 6 minutes, ties x 1 about 14
# (results in docs/PERFORMANCE.md).
# Also times writing the output's bytes once with dd (conv=fsync): the floor a merge is held to;
# and with O_DIRECT (oflag=direct, 8 MiB blocks), the disk's own rate without the page cache's
# copy, which lethe's safetensors writer uses (on these VMs the buffered copy varies 1.5-9 s per
# 2.2 GB, the direct write 1.3-1.4 s).
# usage: bench/run_merge_bench.sh [METHOD ties|task_arithmetic] [REPEATS] [CONFIG]
set -euo pipefail
cd "$(dirname "$0")/.."
METHOD=${1:-ties}; R=${2:-2}; CFG=${3:-configs/models/llama-1b.json}
PY=${PYTHON:-.venv/bin/python}; L=${BUILD:-build}/lethe
[ -x "$L" ] || { echo "build first: bash scripts/setup.sh" >&2; exit 2; }
# WORK (optional) keeps the random models between runs; a temporary folder is removed at the end.
if [ -n "${WORK:-}" ]; then W=$WORK; mkdir -p "$W"; else W=$(mktemp -d -p "${TMPDIR:-/var/tmp}"); trap 'rm -rf "$W"' EXIT; fi
for s in 1 2 3 4; do
  [ -d "$W/m$s" ] || "$L" init --model-config "$CFG" --dtype bfloat16 --seed $s --out "$W/m$s" >/dev/null 2>&1
done
case $METHOD in
  # lethe's default trim (the k-th magnitude by selection) keeps the same entries as mergekit's argsort
  # on these models (no equal magnitudes; tests/cli/test_mergekit.sh); --merge.trim topk sorts like it.
  ties) LOPT=(--merge ties --merge.density 0.2); MP='{"weights": [1, 1, 1], "density": 0.2}' ;;
  task_arithmetic) LOPT=(--merge task_arithmetic --merge.lambda 0.5); MP='{"weights": [1, 1, 1], "lambda": 0.5}' ;;
  *) echo "METHOD: ties or task_arithmetic" >&2; exit 2 ;;
esac
MP=${MP%\}}', "out_dtype": "bfloat16"}'
drop() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
ours=(); theirs=(); dds=(); ddds=()
for i in $(seq "$R"); do
  rm -rf "$W/l" "$W/k"; drop
  t0=$EPOCHREALTIME
  "$L" merge --base "$W/m1" --models "$W/m2" "$W/m3" "$W/m4" "${LOPT[@]}" --format hf --out "$W/l" >"$W/l.log" 2>&1
  ours+=("$(awk -v a="$EPOCHREALTIME" -v b="$t0" 'BEGIN { print a - b }')")
  drop
  t0=$EPOCHREALTIME
  "$PY" tests/reference/mergekit_reference.py "$W/k" "$W/m1" "$METHOD" "$MP" "$W/m2" "$W/m3" "$W/m4" >"$W/k.log" 2>&1
  theirs+=("$(awk -v a="$EPOCHREALTIME" -v b="$t0" 'BEGIN { print a - b }')")
  # The floor: writing the output's bytes once at dd's fsynced bandwidth.
  out_mb=$(( ($(du -sb "$W/l" | cut -f1) + 1048575) / 1048576 ))
  drop
  t0=$EPOCHREALTIME
  dd if=/dev/zero of="$W/dd" bs=1M count="$out_mb" conv=fsync 2>/dev/null
  dds+=("$(awk -v a="$EPOCHREALTIME" -v b="$t0" 'BEGIN { print a - b }')")
  rm -f "$W/dd"
  t0=$EPOCHREALTIME
  dd if=/dev/zero of="$W/dd" bs=8M count=$(( (out_mb + 7) / 8 )) oflag=direct conv=fsync 2>/dev/null
  ddds+=("$(awk -v a="$EPOCHREALTIME" -v b="$t0" 'BEGIN { print a - b }')")
  rm -f "$W/dd"
  echo "run $i: lethe ${ours[-1]} s, mergekit ${theirs[-1]} s, dd of the output ${dds[-1]} s (direct ${ddds[-1]} s)"
done
out_bytes=$(du -sb "$W/l" | cut -f1)
"$PY" - "$METHOD" "$out_bytes" "$CFG" "${ours[@]}" "${theirs[@]}" "${dds[@]}" "${ddds[@]}" <<'PY'
import statistics, sys
method, nbytes, cfg = sys.argv[1], int(sys.argv[2]), sys.argv[3]
t = [float(x) for x in sys.argv[4:]]
n = len(t) // 4
ours, theirs, dd, ddd = t[:n], t[n:2 * n], t[2 * n:3 * n], t[3 * n:]
mo, mt, md, mdd = statistics.median(ours), statistics.median(theirs), statistics.median(dd), statistics.median(ddd)
print(f"{method}: base + 3 models of {cfg}, output {nbytes / 1e9:.3f} GB; medians of {n} alternating runs")
print(f"dd (output once, fsynced) {md:6.2f} s; lethe merge / dd: {mo / md:.2f}x")
print(f"dd oflag=direct           {mdd:6.2f} s; lethe merge / direct dd: {mo / mdd:.2f}x")
print(f"lethe merge   {mo:8.1f} s")
print(f"mergekit      {mt:8.1f} s")
print(f"ratio (mergekit time / lethe time): {mt / mo:.2f}x")
PY
