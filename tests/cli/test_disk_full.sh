#!/usr/bin/env bash
# Disk full: every writer (HDF5 and safetensors models, training checkpoints on 1 and 2 ranks,
# merge, eval reports) saving into a small tmpfs fails with one message naming the path and
# ENOSPC, exit 2, no crash; nothing that loads as complete is left, no temporary remains, and
# an earlier checkpoint is intact and resumes. Needs root (mount); fails without it.
# usage: test_disk_full.sh LETHE_BINARY SOURCE_DIR MPIRUN
set -u
LETHE=$1; SRC=$2; MPIRUN=$3
# shellcheck source=mpi_common.sh
source "$SRC/tests/cli/mpi_common.sh"
export OMP_NUM_THREADS=1
mounts=()
cleanup() { for m in "${mounts[@]}"; do umount "$m" 2>/dev/null; done; rm -rf "$T"; }
trap cleanup EXIT

# small_fs DIR BYTES: a tmpfs of that size at DIR.
small_fs() {
  mkdir -p "$1"
  mount -t tmpfs -o size="$2" tmpfs "$1" || { bad "cannot mount a tmpfs at $1 (this test needs root)"; exit 1; }
  mounts+=("$1")
}
# expect_enospc WHAT DIR CMD...: exit 2, one 'error:' line naming DIR and ENOSPC, no crash.
expect_enospc() {
  local what=$1 dir=$2; shift 2
  timeout 300 "$@" >"$T/out" 2>"$T/err"; local rc=$?
  [ $rc -eq 2 ] || { bad "$what: exit $rc (want 2)"; tail -5 "$T/err"; return 1; }
  grep -q "No space left on device" "$T/err" && grep -q -- "$dir" "$T/err" && ok \
    || { bad "$what: message lacks the path or ENOSPC"; tail -3 "$T/err"; return 1; }
  ! grep -qiE "internal error|segmentation|signal" "$T/err" && ok || bad "$what: $(grep -iE 'internal|segm|signal' "$T/err" | head -2)"
}
# nothing_complete DIR: no COMPLETE marker and no temporary anywhere below DIR.
nothing_complete() {
  [ -z "$(find "$1" -name COMPLETE | head -1)" ] && [ -z "$(find "$1" -name '.*.tmp*' | head -1)" ] && ok \
    || bad "$1 holds a complete-looking output or a temporary: $(find "$1" -name COMPLETE -o -name '.*.tmp*' | head -3)"
}

make_tiny_model
"$LETHE" finetune --model "$T/base" --data "$T/data/train.jsonl" --batch-size 8 --lr 2e-3 --steps 4 --format hf \
  --out "$T/ft" >/dev/null 2>&1 || bad "finetune"
"$LETHE" convert --in "$T/ft" --to native --out "$T/ft_native" >/dev/null 2>&1 || bad "convert"

# ---- models: native (HDF5) and HF (safetensors), evaluation reports ----
small_fs "$T/full" 256k
expect_enospc "convert --to native" "$T/full/c" "$LETHE" convert --in "$T/ft" --to native --out "$T/full/c"
expect_enospc "convert --to hf" "$T/full/c" "$LETHE" convert --in "$T/ft_native" --to hf --out "$T/full/c"
[ -z "$(ls -A "$T/full")" ] && ok || bad "a failed model write left $(ls -A "$T/full")"
expect_enospc "merge" "$T/full/m" "$LETHE" merge --base "$T/ft" --models "$T/ft_native" "$T/ft" --merge linear --out "$T/full/m"
nothing_complete "$T/full"
rm -rf "${T:?}/full/"*
dd if=/dev/zero of="$T/full/filler" bs=4k count=1000 2>/dev/null  # fills it up
expect_enospc "eval --out" "$T/full/ev" "$LETHE" eval --model "$T/ft" --forget "$T/data/forget.jsonl" --no-generate \
  --out "$T/full/ev"
[ "$(ls -A "$T/full")" = filler ] && ok || bad "a failed report left $(ls -A "$T/full")"

# ---- training checkpoints: room for two, the third fails; the earlier ones are intact ----
"$LETHE" finetune --model "$T/ft" --data "$T/data/train.jsonl" --steps 2 --checkpoint-every 1 --checkpoint-dir "$T/ck_probe" \
  --out "$T/probe" --batch-size 4 --threads 1 >/dev/null 2>&1 || bad "probe run"
step_bytes=$(du -sb "$T/ck_probe/step-00000001" | cut -f1)
TRAIN=(--model "$T/ft" --data "$T/data/train.jsonl" --steps 5 --checkpoint-every 1 --batch-size 4 --lr 1e-3 --threads 1)
for np in 1 2; do
  ck="$T/ck$np"
  small_fs "$ck" $((step_bytes * 5 / 2))
  run=("$LETHE"); [ $np -gt 1 ] && run=("$MPIRUN" -np $np "$LETHE")
  timeout 300 "${run[@]}" finetune "${TRAIN[@]}" --checkpoint-dir "$ck" --out "$T/out$np" >"$T/out" 2>"$T/err"; rc=$?
  [ $rc -ne 0 ] && grep -q "No space left on device" "$T/err" && grep -q "$ck" "$T/err" && ok \
    || { bad "$np rank(s): checkpoint on a full disk: exit $rc"; tail -3 "$T/err"; }
  grep -qiE "segmentation|internal error" "$T/err" && bad "$np rank(s): $(grep -iE 'segm|internal' "$T/err" | head -1)" || ok
  [ "$(ls -A "$ck" | tr '\n' ' ')" = "step-00000001 step-00000002 " ] && [ -f "$ck/step-00000002/COMPLETE" ] && ok \
    || bad "$np rank(s): after the failed save: $(ls -A "$ck")"
  [ ! -e "$T/out$np" ] && ok || bad "$np rank(s): --out written after a failed checkpoint"
  # The previous checkpoint resumes (copied where there is room).
  cp -a "$ck" "$T/ck${np}_copy"
  timeout 300 "${run[@]}" finetune "${TRAIN[@]}" --checkpoint-dir "$T/ck${np}_copy" --resume --out "$T/out$np" \
    >"$T/out" 2>"$T/err" && grep -q "resumed from .*step-00000002" "$T/out" "$T/err" && ok \
    || { bad "$np rank(s): resume from the intact checkpoint"; tail -3 "$T/err"; }
done

echo "disk full: $pass passed, $fail failed"
[ $fail -eq 0 ]
