#!/usr/bin/env bash
# Peak resident memory per rank at ZeRO 3 on a ~1B Llama (configs/models/llama-1b.json: 1.10B
# parameters, vocab 32000, untied head) for 1, 2 and 4 ranks, from loading to the saved output:
# `lethe finetune --zero-stage 3` reads each rank's shard of the decoder layers from the
# safetensors file, trains sharded and writes the output from the shards (no rank holds the model
# whole), next to the model state each rank must hold. float32 with SGD (no optimizer state) so
# that four ranks fit in this 24 GiB machine; with AdamW add 2 x 4 bytes per parameter, divided
# the same way. Then unlearning at 2 ranks, all through the sharded engine: npo (reference
# values), pdu (the starting retain loss), tvn (the negation, on each rank's shard), rmu (three
# matrices train; the layers with nothing to train are frozen shards) and tvn with LoRA (the
# adapters negated, merged as the shards are saved); then npo with LoRA (r 16) on RANKS, where
# the frozen base weights are shards too (model state: the frozen parameters; the adapters and
# their gradients are ~1% of it). memflex (LoRA r 16) locates its adapters through a first engine
# over them, then trains the located ones. Last, `lethe eval` and `lethe probe` of the model whole
# and at ZeRO 3.
# Hardware: a CPU machine with ~20 GiB free and ~12 GB of disk; ~15 minutes on 2 cores.
# usage: bench/zero3_memory.sh [STEPS=2] [RANKS="1 2 4"] (UNLEARN=0 skips the six unlearn rows, LORA=0 the
# sharded LoRA rows, EVAL=0 the evaluation rows, ONLY=TEXT runs only the rows whose label contains TEXT).
# Results: docs/PERFORMANCE.md "Memory".
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
STEPS=${1:-2}
RANKS=${2-1 2 4}  # "" runs no finetune row
L=build/lethe
CFG=configs/models/llama-1b.json
TOK=../shared/data/tokenizers/llama2/tokenizer.json
[ -f "$TOK" ] || { echo "needs the Llama-2 tokenizer in ../shared/data/tokenizers" >&2; exit 2; }
W=${WORK:-$(mktemp -d)}
trap 'rm -rf "$W"' EXIT
$L synth --out "$W/data" --people 4 --books 2 >/dev/null 2>&1
$L init --model-config "$CFG" --tokenizer "$TOK" --dtype float32 --out "$W/base" >/dev/null 2>&1
run() {  # ranks, label, state (full: params + grads; frozen: params), extra flags...
  local np=$1 label=$2 kind=$3
  shift 3
  [[ "$label" == *"${ONLY:-}"* ]] || return 0
  rm -rf "$W/out"
  /usr/bin/time -f "%e s wall" mpirun -np "$np" $L "$@" --model "$W/base" --template llama2 --steps "$STEPS" \
    --batch-size 4 --max-len 64 --zero-stage 3 --optimizer sgd --dtype float32 --out "$W/out" \
    --max-shard-size 200MB --threads 1 >"$W/log" 2>&1 || { tail "$W/log"; exit 1; }
  local train save wall
  train=$(grep -o 'peak resident memory per rank (MiB): .*' "$W/log" | sed 's/.*: //')
  save=$(grep -o 'peak resident memory per rank including the save (MiB): .*' "$W/log" | sed 's/.*: //')
  wall=$(grep -o '[0-9.]* s wall' "$W/log")
  /usr/bin/python3 - "$CFG" "$np" "$label" "$train" "$save" "$wall" "$kind" <<'PY'
import json, sys
cfg, n, label = json.load(open(sys.argv[1])), int(sys.argv[2]), sys.argv[3]
train, save = json.loads(sys.argv[4]), json.loads(sys.argv[5])
h, i, v, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
kv = h // cfg["num_attention_heads"] * cfg["num_key_value_heads"]
layer = h * h * 2 + h * kv * 2 + 3 * h * i + 2 * h       # q, o, k, v, gate/up/down, two norms
replicated = v * h * (1 if cfg["tie_word_embeddings"] else 2) + h
MiB = 2**20
state = (8 if sys.argv[7] == "full" else 4) * (L * layer + replicated) / MiB  # fp32 params (+ grads; SGD: no state)
print(f"| {n} | {label} | {', '.join(map(str, train))} | {', '.join(map(str, save))} | {state / n:.0f} | "
      f"{max(save) - state / n:.0f} | {sys.argv[6]} |")
PY
}
echo "| ranks | load path | peak RSS per rank after training (MiB) | ... including the save (MiB) | model state / ranks (MiB) | max - state / ranks (MiB) | wall |"
echo "|---:|---|---|---|---:|---:|---|"
for np in $RANKS; do
  run "$np" "shards (finetune)" full finetune --data "$W/data/train.jsonl"
done
if [ "${UNLEARN:-1}" = 1 ]; then
  U=(unlearn --forget "$W/data/forget.jsonl" --retain "$W/data/retain.jsonl")
  run 2 "shards, reference values through the engine (unlearn npo)" full "${U[@]}" --method npo
  run 2 "shards, the starting retain loss through the engine (unlearn pdu)" full "${U[@]}" --method pdu
  run 2 "shards, negated shard by shard (unlearn tvn)" full "${U[@]}" --method tvn
  # rmu trains three matrices: its state is the parameters (the kind "frozen": 4 bytes each).
  run 2 "shards, frozen layers as shards (unlearn rmu, 3 matrices trained)" frozen "${U[@]}" --method rmu
  run 2 "shards, LoRA r 16, negated through the adapters (unlearn tvn)" frozen "${U[@]}" --method tvn --lora-rank 16
  # memflex locates its adapters from gradients through a first engine over them (4 items per set).
  run 2 "shards, LoRA r 16, located through the engine (unlearn memflex)" frozen "${U[@]}" --method memflex \
    --lora-rank 16 --memflex.sigma 0 --memflex.max-items 4
fi
# Evaluation (`lethe eval`, forget against holdout: the forward metrics and GradNorm): whole on
# every rank, then --zero-stage 3 (each rank reads its shard of the layers; GradNorm's gradients
# are fp32 shards too, and every rank runs every item for it); then the forward metrics alone.
run_eval() {  # ranks, label, state (full: params + grads; frozen: params), command (eval, probe), extra flags...
  local np=$1 label=$2 kind=$3 cmd=$4
  shift 4
  [[ "$label" == *"${ONLY:-}"* ]] || return 0
  rm -rf "$W/out"
  /usr/bin/time -f "%e s wall" mpirun -np "$np" $L "$cmd" --model "$W/base" --template llama2 --forget "$W/eval.jsonl" \
    --max-len 64 --no-generate --dtype float32 --threads 1 --out "$W/out" "$@" \
    >"$W/log" 2>&1 || { tail "$W/log"; exit 1; }
  local peak wall
  peak=$(grep -o 'peak resident memory per rank (MiB): .*' "$W/log" | sed 's/.*: //')
  wall=$(grep -o '[0-9.]* s wall' "$W/log")
  /usr/bin/python3 - "$CFG" "$np" "$label" "$peak" "$wall" "$kind" <<'PY'
import json, sys
cfg, n, label = json.load(open(sys.argv[1])), int(sys.argv[2]), sys.argv[3]
peak = json.loads(sys.argv[4])
h, i, v, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
kv = h // cfg["num_attention_heads"] * cfg["num_key_value_heads"]
layer = h * h * 2 + h * kv * 2 + 3 * h * i + 2 * h
replicated = v * h * (1 if cfg["tie_word_embeddings"] else 2) + h
MiB = 2**20
whole = "whole" in label
state = (8 if sys.argv[6] == "full" else 4) * (L * layer + replicated) / MiB / (1 if whole else n)
print(f"| {n} | {label} | {', '.join(map(str, peak))} | {state:.0f} | {max(peak) - state:.0f} | {sys.argv[5]} |")
PY
}
if [ "${EVAL:-1}" = 1 ]; then
  head -n 4 "$W/data/forget.jsonl" >"$W/eval.jsonl"
  head -n 4 "$W/data/retain.jsonl" >"$W/holdout.jsonl"
  echo
  echo "| ranks | evaluation | peak RSS per rank (MiB) | model state per rank (MiB) | max - state (MiB) | wall |"
  echo "|---:|---|---|---:|---:|---|"
  H=(--holdout "$W/holdout.jsonl")
  run_eval 2 "whole on every rank, with GradNorm (eval)" full eval "${H[@]}"
  for np in $RANKS; do
    run_eval "$np" "shards, GradNorm through the engine (eval --zero-stage 3)" full eval "${H[@]}" --zero-stage 3
  done
  # The forward metrics alone: the state is the parameters (4 bytes each).
  run_eval 2 "whole on every rank, forward metrics only (eval)" frozen eval
  run_eval 2 "shards, forward metrics only (eval --zero-stage 3)" frozen eval --zero-stage 3
  # The robustness probe: the model as it is, with the logit lens, then NF4-quantized (a fresh copy
  # of the model, rounded whole, or one gathered layer at a time at ZeRO 3).
  PR=(--quantize nf4 --prompts none)
  run_eval 2 "whole on every rank, as is + logit lens + NF4 (probe)" frozen probe "${PR[@]}"
  for np in $RANKS; do
    run_eval "$np" "shards, as is + logit lens + NF4 (probe --zero-stage 3)" frozen probe "${PR[@]}" --zero-stage 3
  done
fi
if [ "${LORA:-1}" = 1 ]; then
  U=(unlearn --forget "$W/data/forget.jsonl" --retain "$W/data/retain.jsonl")
  for np in $RANKS; do
    run "$np" "shards, LoRA r 16, frozen base as shards (unlearn npo)" frozen "${U[@]}" --method npo --lora-rank 16
  done
fi
