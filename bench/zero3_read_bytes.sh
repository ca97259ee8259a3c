#!/usr/bin/env bash
# Bytes each rank reads (the kernel's rchar: every read(2)/pread(2) of the process, page cache
# hits included) in a 2-rank ZeRO 3 finetune of a ~1B Llama (configs/models/llama-1b.json, fp32,
# a 4.2 GB checkpoint), from a safetensors and from a native checkpoint: each rank should read
# its half of the decoder layers plus the replicated embeddings and lm_head, not the file.
# Hardware: a CPU machine with ~14 GiB free and ~10 GB of disk; ~5 minutes on 2 cores.
# usage: bench/zero3_read_bytes.sh [RANKS=2]. Results: docs/PERFORMANCE.md "Memory".
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
RANKS=${1:-2}
L=$PWD/build/lethe
TOK=../shared/data/tokenizers/llama2/tokenizer.json
[ -f "$TOK" ] || { echo "needs the Llama-2 tokenizer in ../shared/data/tokenizers" >&2; exit 2; }
W=${WORK:-$(mktemp -d)}
trap 'rm -rf "$W"' EXIT
$L synth --out "$W/data" --people 4 --books 2 >/dev/null 2>&1
$L init --model-config configs/models/llama-1b.json --tokenizer "$TOK" --dtype float32 --out "$W/hf" >/dev/null 2>&1
$L convert --in "$W/hf" --to native --out "$W/native" >/dev/null 2>&1
echo "checkpoint sizes (MiB): $(du -sm "$W/hf" | cut -f1) safetensors, $(du -sm "$W/native" | cut -f1) native"
for fmt in hf native; do
  rm -rf "$W/out"
  # rchar of the shell that waited for lethe includes lethe's (a reaped child's I/O is added to its parent's)
  mpirun -np "$RANKS" sh -c "$L finetune --model $W/$fmt --data $W/data/train.jsonl --template llama2 --steps 1 \
    --batch-size $RANKS --max-len 32 --zero-stage 3 --optimizer sgd --out $W/out --threads 1 \
    >$W/log.\$OMPI_COMM_WORLD_RANK 2>&1 || { tail -3 $W/log.\$OMPI_COMM_WORLD_RANK; exit 1; }
    echo $fmt rank \$OMPI_COMM_WORLD_RANK read \$((\$(grep rchar /proc/\$\$/io | cut -d' ' -f2) / 1048576)) MiB"
done
