#!/usr/bin/env bash
# Budgets chosen by a sweep, and whether SPUNGE changes how well forgetting survives: on lethe
# synth's data (the demo's tiny Llama, finetuned until it knows both scopes),
#  1. `lethe sweep` over 8 methods x lr {3e-4, 1e-3} x steps {25, 50} (batch 16, constant lr,
#     teacher-forced evaluation: no generation), 2 rank groups;
#  2. per method, the configuration with the best harmonic mean of forgetting (1 - forget answer
#     probability) and model utility;
#  3. `lethe spunge --compare --probe` (split by domain, TIES) for gd and npo at their chosen
#     budgets: SPUNGE and plain unlearning, each probed (int8, NF4, FP4, the prefix prompt,
#     relearning on half of the forget set for one epoch at lr 1e-3, the tiny model's scale, as in
#     bench/run_probe_demo.sh; logit lens).
# Prints the sweep table, the choices and both robustness tables. Not part of CI (~2 min on 2 cores).
# usage: bench/run_sweep_demo.sh [RUN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
L=$PWD/build/lethe
RUN=${1:-runs/sweep-demo-$(date +%Y%m%d-%H%M%S)}
if [ -e "$RUN" ]; then echo "run_sweep_demo: $RUN already exists" >&2; exit 2; fi
mkdir -p "$RUN"
D=$RUN/data
PY=${LETHE_PYTHON:-.venv/bin/python}
MPI=(mpirun -np 2 --oversubscribe)
[ "$(id -u)" = 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
$L synth --out "$D" --seed 1234 >/dev/null
$L init --model-config configs/models/tiny-llama.json --train-tokenizer "$D/train.jsonl" --vocab-size 768 \
  --out "$RUN/base" --seed 1 >/dev/null 2>&1
$L finetune --config configs/demo/finetune.ini --model "$RUN/base" --data "$D/train.jsonl" --out "$RUN/finetuned" \
  --log-file "$RUN/finetune.log" >/dev/null 2>&1
cat >"$RUN/grid.json" <<'JSON'
{"methods": ["ga", "gd", "npo", "simnpo", "wga", "satimp", "undial", "ce_u"], "lr": [3e-4, 1e-3], "steps": [25, 50]}
JSON
t0=$(date +%s)
"${MPI[@]}" $L sweep --model "$RUN/finetuned" --forget "$D/forget.jsonl" --retain "$D/retain.jsonl" --template chatml \
  --grid "$RUN/grid.json" --batch-size 16 --schedule constant --no-generate --log-every 50 \
  --out "$RUN/sweep" --log-file "$RUN/sweep.log" >/dev/null 2>&1
echo "sweep: $(( $(date +%s) - t0 )) s"
cat "$RUN/sweep/sweep.md"
# Each method's choice: the best harmonic mean of x (forgetting) and y (model utility).
"$PY" bench/sweep_choices.py "$RUN/sweep/sweep.json" >"$RUN/choices.txt"
echo; echo "per-method choice (method lr steps hmean config):"; cat "$RUN/choices.txt"
for m in gd npo; do
  read -r _ lr steps _ _ < <(grep "^$m " "$RUN/choices.txt")
  t0=$(date +%s)
  "${MPI[@]}" $L spunge --config configs/demo/unlearn.ini --method $m --lr "$lr" --steps "$steps" --eval-every 0 \
    --model "$RUN/finetuned" --forget "$D/forget.jsonl" --retain "$D/retain.jsonl" --split-by domain --merge ties \
    --compare --probe --relearn-lr 1e-3 --no-generate --out "$RUN/spunge-$m" --log-file "$RUN/spunge-$m.log" >/dev/null 2>&1
  echo; echo "spunge --compare --probe, $m at lr $lr for $steps steps: $(( $(date +%s) - t0 )) s"
  sed -n '/Robustness: SPUNGE vs plain/,/^### SPUNGE/p' "$RUN/spunge-$m/report.md" | grep -v "^### SPUNGE"
done
