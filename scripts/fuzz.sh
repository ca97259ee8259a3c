#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz: clang, AddressSanitizer, UBSan) in build-fuzz,
# replays every regression case (tests/fuzz/regressions/NAME/: inputs that once failed), then
# fuzzes each harness for FUZZ_SECONDS (default 60) from its seed corpus (tests/fuzz/corpus/NAME,
# copied: the repository is not changed), two at a time, with libFuzzer's random seed FUZZ_SEED
# (default 1, so CI runs start alike; any other value explores elsewhere). A crash, sanitizer
# report, timeout or uncaught exception fails the run; the reproducer is kept in
# build-fuzz/work/NAME/findings/ (add it to tests/fuzz/regressions/NAME/ once fixed).
# usage: scripts/fuzz.sh [HARNESS...]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${FUZZ_SECONDS:-60}
ALL=(safetensors hdf5 tokenizer encode config data ini decode)
NAMES=("${@:-${ALL[@]}}")
[ $# -gt 0 ] || NAMES=("${ALL[@]}")
if ! log=$(cmake -S tests/fuzz -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER_LAUNCHER=ccache 2>&1); then
  echo "$log"; echo "fuzz: configuring build-fuzz failed"; exit 1
fi
cmake --build build-fuzz -j2 -- --no-print-directory 2>&1 | grep -E "error:|warning: unused" || true
export LETHE_FUZZ_TOKENIZER=$ROOT/../shared/data/tokenizers/llama3/tokenizer.json
export LETHE_FUZZ_HDF5_SEED=$ROOT/tests/fuzz/corpus/hdf5/micro.h5
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:symbolize=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# The harnesses' scratch files (tests/fuzz/fuzz_common.h) go under TMPDIR, removed at the end.
TMPDIR=$(mktemp -d)
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT
[ -f "$LETHE_FUZZ_TOKENIZER" ] || { echo "fuzz: $LETHE_FUZZ_TOKENIZER missing (../shared beside the checkout)"; exit 1; }

fail=0
for name in "${NAMES[@]}"; do  # regression cases: each input once
  reg=tests/fuzz/regressions/$name
  [ -d "$reg" ] || continue
  if ./build-fuzz/fuzz_"$name" "$reg"/* >build-fuzz/regressions-"$name".log 2>&1; then
    echo "fuzz $name: $(ls "$reg" | wc -l) regression case(s) pass"
  else
    echo "FAIL fuzz $name: a regression case fails"; tail -20 build-fuzz/regressions-"$name".log; fail=1
  fi
done

run_one() {
  local name=$1 work=$ROOT/build-fuzz/work/$1
  rm -rf "$work"; mkdir -p "$work/corpus" "$work/findings"
  cp tests/fuzz/corpus/"$name"/* "$work/corpus/"
  local rc=0 runs
  (cd "$work" && "$ROOT/build-fuzz/fuzz_$name" -max_total_time="$SECS" -rss_limit_mb=4096 -timeout=30 \
     -seed="${FUZZ_SEED:-1}" -artifact_prefix=findings/ -print_final_stats=1 corpus >log 2>&1) || rc=$?
  runs=$(grep -o "stat::number_of_executed_units: *[0-9]*" "$work/log" | grep -o "[0-9]*$" || echo 0)
  if [ $rc -eq 0 ] && [ -z "$(ls -A "$work/findings")" ]; then
    echo "fuzz $name: ${SECS}s, $runs inputs, corpus $(ls "$work/corpus" | wc -l), no findings"
  else
    echo "FAIL fuzz $name: rc $rc, findings: $(ls "$work/findings" | tr '\n' ' ')"
    grep -E "ERROR|SUMMARY|runtime error|terminate|what\(\)" "$work/log" | head -5
    return 1
  fi
}
pids=()
for name in "${NAMES[@]}"; do
  run_one "$name" & pids+=($!)
  if [ ${#pids[@]} -ge 2 ]; then wait "${pids[0]}" || fail=1; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p" || fail=1; done
exit $fail
