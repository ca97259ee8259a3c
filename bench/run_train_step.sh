#!/usr/bin/env bash
# The same training step, lethe (`lethe bench step`) against Hugging Face transformers + torch
# AdamW (bench/peer_step.py; peft for LoRA; the frozen reference model every step for npo, kl,
# dpo, rmu and adversarial), run alternately (A B A B ...) REPEATS times each, with the same model
# config, batch, sequence length, method, dtype and thread count. Prints every run, the medians,
# the ratio (peer time / lethe time: above 1, lethe is faster) and lethe's MFU.
# usage: bench/run_train_step.sh CONFIG BATCH SEQ [METHOD=gd] [STEPS=5] [THREADS=2] [REPEATS=3]
#                                [LORA_RANK=0] [DEVICE=cpu] [DTYPE=float32] [ATTN=sdpa]
# PYTHON (default .venv/bin/python), BUILD (default build), WARMUP (default 2) may be set; any
# further lethe flags in LETHE_FLAGS (e.g. "--zero-stage 3"). rmu steers the middle decoder layer
# l (num_hidden_layers / 2) and trains the down_proj weights of layers l-2..l on both sides. dpo's
# peer prefers refusals of the mean length of lethe's (its preferred_seq_len).
set -euo pipefail
cd "$(dirname "$0")/.."
CFG=$1; B=$2; T=$3; M=${4:-gd}; S=${5:-5}; TH=${6:-2}; R=${7:-3}; LR=${8:-0}; DEV=${9:-cpu}; DT=${10:-float32}
ATTN=${11:-sdpa}; W=${WARMUP:-2}
PY=${PYTHON:-.venv/bin/python}; BIN=${BUILD:-build}/lethe
[ -x "$BIN" ] || { echo "build first: bash scripts/setup.sh" >&2; exit 2; }
ours=(); peer=(); MF=(); PF=()
if [ "$M" = rmu ]; then
  l=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["num_hidden_layers"] // 2)' "$CFG")
  MF=(--rmu.layer "$l" --rmu.train "model\\.layers\\.($((l - 2))|$((l - 1))|$l)\\.mlp\\.down_proj\\.weight")
  PF=(--rmu-layer "$l")
fi
for _ in $(seq "$R"); do
  # shellcheck disable=SC2086
  ours+=("$("$BIN" bench step --model-config "$CFG" --batch-size "$B" --seq-len "$T" --steps "$S" --warmup "$W" \
    --method "$M" "${MF[@]}" --lora-rank "$LR" --threads "$TH" --device "$DEV" --dtype "$DT" --json ${LETHE_FLAGS:-} \
    --log-level warn)")
  if [ "$M" = dpo ]; then  # the peer's refusals as long as lethe's (their mean length)
    PF=(--win-len "$("$PY" -c 'import json, sys; print(round(json.loads(sys.argv[1])["preferred_seq_len"]))' "${ours[-1]}")")
  fi
  peer+=("$("$PY" bench/peer_step.py --model-config "$CFG" --batch-size "$B" --seq-len "$T" --steps "$S" \
    --warmup "$W" --method "$M" "${PF[@]}" --lora-rank "$LR" --threads "$TH" --device "$DEV" --dtype "$DT" --attn "$ATTN")")
done
"$PY" bench/compare_runs.py "${ours[@]}" -- "${peer[@]}"
