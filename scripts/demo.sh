#!/usr/bin/env bash
# The demo on the embedded default data (lethe synth): synth KnowUnDo-style data -> a tiny
# Llama-family model with its own BPE tokenizer -> finetune until both scopes are learned ->
# SPUNGE under mpirun: the forget set split by its `domain` attribute (privacy, copyright),
# each subset unlearned with gradient difference on its own rank group (2 groups of 1 rank, at
# the same time), the two deltas merged with TIES into one checkpoint, evaluated, and compared
# with plain GD on the whole forget set (same method and budget). Expected: under 5 minutes on
# 2 cores after the build.
# usage: scripts/demo.sh [RUN_DIR]   (default runs/demo-<time>; an existing directory is refused)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --no-test-deps
L=build/lethe
RUN=${1:-runs/demo-$(date +%Y%m%d-%H%M%S)}
if [ -e "$RUN" ]; then echo "demo: $RUN already exists; refusing to overwrite it" >&2; exit 2; fi
mkdir -p "$RUN"
D=$RUN/data
start=$(date +%s)

$L synth --out "$D" --seed 1234
$L init --model-config configs/models/tiny-llama.json --train-tokenizer "$D/train.jsonl" --vocab-size 768 \
  --out "$RUN/base" --seed 1
$L finetune --config configs/demo/finetune.ini --model "$RUN/base" --data "$D/train.jsonl" --out "$RUN/finetuned" \
  --log-file "$RUN/finetune.log"
# mpirun as root needs these; more ranks than cores needs --oversubscribe.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun -np 2 --oversubscribe $L spunge --config configs/demo/unlearn.ini --method gd --model "$RUN/finetuned" \
  --forget "$D/forget.jsonl" --retain "$D/retain.jsonl" --split-by domain --merge ties --compare \
  --eval-split "eval_forget=$D/eval_forget.jsonl" --eval-split "eval_retain=$D/eval_retain.jsonl" \
  --out "$RUN/spunge" --log-file "$RUN/spunge.log"
cp "$RUN/spunge/report.md" "$RUN/summary.md"
echo "demo: finished in $(( $(date +%s) - start )) s; everything is in $RUN (merged checkpoint: $RUN/spunge/merged)"
