#!/usr/bin/env bash
# Crash-point test: every durable step of a write (a file written, fsynced, renamed, a marker
# written or removed; common/fs.h crash_point) is a place where lethe may be killed. For each
# writing command (finetune and unlearn with checkpoints, merge on 1 and 2 ranks, convert both
# ways, spunge on 2 ranks), an uninterrupted run counts its points; then, for a spread of them,
# the command is SIGKILLed there (LETHE_CRASH_AFTER=k) and run again unchanged: it must finish
# and its final files must be byte-identical to the uninterrupted run's, with no temporary left.
# The run record (lethe_run_config.json) holds timings; it is compared without its "result", and
# the completion marker without the run record's size.
# usage: test_crash_points.sh LETHE_BINARY SOURCE_DIR MPIRUN [POINTS_PER_COMMAND (0: all)]
set -u
LETHE=$1; SRC=$2; MPIRUN=$3
POINTS=${4:-${LETHE_CRASH_POINTS:-10}}
# shellcheck source=mpi_common.sh
source "$SRC/tests/cli/mpi_common.sh"
export OMP_NUM_THREADS=1
trials=0; killed=0

make_tiny_model
"$LETHE" finetune --model "$T/base" --data "$T/data/train.jsonl" --batch-size 8 --lr 2e-3 --steps 6 --format hf \
  --out "$T/ft" >/dev/null 2>&1 || bad "finetune"
"$LETHE" convert --in "$T/ft" --to native --out "$T/ft_native" >/dev/null 2>&1 || bad "convert"
for s in 1 2; do
  "$LETHE" unlearn --method ga --model "$T/ft" --forget "$T/data/forget.jsonl" --steps 2 --batch-size 4 --lr 1e-3 \
    --seed $s --format hf --out "$T/u$s" >/dev/null 2>&1 || bad "unlearn $s"
done

# Final files of a run directory, one line per file with its hash (the run record without timings).
digest() {
  (cd "$1" && find "${@:2}" -type f | LC_ALL=C sort | while read -r f; do
    case "$f" in
      *lethe_run_config.json) printf '%s ' "$f"; "$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); j.pop("result",None); print(json.dumps(j,sort_keys=True))' "$f" | sha256sum ;;
      *COMPLETE) printf '%s ' "$f"; "$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); j["files"].pop("lethe_run_config.json",None); print(json.dumps(j,sort_keys=True))' "$f" | sha256sum ;;
      *) printf '%s ' "$f"; sha256sum <"$f" ;;
    esac
  done)
}
# Temporary names (common/fs.h) or staging left anywhere under a directory.
leftovers() { find "$1" \( -name '.*.tmp*' -o -name '.lethe-merge' \) -print | head -3; }

# True while a process still runs with its working directory in $1.
running_in() {
  local p
  for p in /proc/[0-9]*; do [ "$(readlink "$p/cwd" 2>/dev/null)" = "$1" ] && return 0; done
  return 1
}

# crash_case NAME "FINAL PATHS (relative)" CMD...: CMD runs in a fresh directory with relative paths.
crash_case() {
  local name=$1 finals=$2; shift 2
  [ -z "${CRASH_CASES:-}" ] || [[ " $CRASH_CASES " == *" $name "* ]] || return 0
  local ref="$T/cp_$name/ref"
  mkdir -p "$ref"
  (cd "$ref" && LETHE_CRASH_COUNT="$ref/.count" "$@" >"$ref/.log" 2>&1) || { bad "$name: uninterrupted run failed"; tail -5 "$ref/.log"; return; }
  # Every rank appends its count; the largest is the number of points of the busiest rank.
  local n; n=$(awk '$2 > m { m = $2 } END { print m + 0 }' "$ref/.count")
  [ "$n" -gt 0 ] || { bad "$name: no crash points counted"; return; }
  local want; want=$(digest "$ref" $finals)
  local ks
  if [ "$POINTS" -eq 0 ] || [ "$n" -le "$POINTS" ]; then ks=$(seq 1 "$n"); else
    ks=$(awk -v n="$n" -v p="$POINTS" 'BEGIN { for (i = 0; i < p; ++i) print 1 + int(i * (n - 1) / (p - 1)) }' | uniq)
  fi
  local k got rc
  for k in $ks; do
    trials=$((trials + 1))
    local w="$T/cp_$name/k$k"
    mkdir -p "$w"
    (cd "$w" && LETHE_CRASH_AFTER=$k timeout 300 "$@" >"$w/.log1" 2>&1); rc=$?
    if [ $rc -eq 0 ]; then bad "$name: point $k of $n: the run was not killed"; continue; fi
    killed=$((killed + 1))
    # mpirun may return before its other ranks are gone; a requeued job starts after them.
    local i; for i in $(seq 1 100); do running_in "$w" || break; sleep 0.2; done
    (cd "$w" && timeout 300 "$@" >"$w/.log2" 2>&1) || { bad "$name: rerun after a kill at point $k of $n failed"; tail -3 "$w/.log2"; continue; }
    got=$(digest "$w" $finals)
    if [ "$got" != "$want" ]; then
      bad "$name: after a kill at point $k of $n the final files differ"; diff <(echo "$want") <(echo "$got") | head -6
      continue
    fi
    [ -z "$(leftovers "$w")" ] && ok || bad "$name: point $k of $n left $(leftovers "$w")"
    [ -n "${KEEP_CRASH_DIRS:-}" ] || rm -rf "$w"
  done
  echo "$name: $n crash points, $(echo "$ks" | wc -w) tried"
}

TRAIN=(--batch-size 4 --lr 1e-3 --threads 1 --resume --checkpoint-dir ck --checkpoint-every 1)
crash_case finetune "out" "$LETHE" finetune --model "$T/base" --data "$T/data/train.jsonl" --steps 4 --format hf \
  --out out "${TRAIN[@]}"
crash_case unlearn "out adapter" "$LETHE" unlearn --method gd --model "$T/ft" --forget "$T/data/forget.jsonl" \
  --retain "$T/data/retain.jsonl" --steps 3 --lora-rank 4 --format hf --out out --adapter-out adapter "${TRAIN[@]}"
crash_case merge_np1 "out" "$LETHE" merge --base "$T/ft" --models "$T/u1" "$T/u2" --merge ties --format native --out out
crash_case merge_np2 "out" "$MPIRUN" -np 2 "$LETHE" merge --base "$T/ft" --models "$T/u1" "$T/u2" --merge ties \
  --format hf --max-shard-size 20KB --out out --threads 1
crash_case convert_hf "out" "$LETHE" convert --in "$T/ft_native" --to hf --max-shard-size 20KB --out out
crash_case convert_native "out" "$LETHE" convert --in "$T/ft" --to native --out out
crash_case spunge_np2 "run/merged run/unlearned run/subsets run/spunge.json" "$MPIRUN" -np 2 "$LETHE" spunge \
  --model "$T/ft" --forget "$T/data/forget.jsonl" --method ga --steps 2 --batch-size 4 --lr 1e-3 --threads 1 \
  --split-by domain --groups 2 --merge ties --format hf --no-generate --out run --resume --checkpoint-dir ck \
  --checkpoint-every 1

echo "crash-point trials: $trials ($killed killed and rerun); $pass passed, $fail failed"
[ $fail -eq 0 ]
