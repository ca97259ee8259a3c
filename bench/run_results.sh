#!/usr/bin/env bash
# The comparison table of docs/RESULTS.md: every unlearning method on
#   (a) lethe synth's KnowUnDo-style data (privacy + copyright scopes), tiny model finetuned
#       until both scopes are learned (as in scripts/demo.sh), KnowUnDo metrics;
#   (b) TOFU forget10 / retain90: a small model finetuned on all of TOFU and its twin finetuned on
#       retain90 only (the reference for forget quality), TOFU metrics and leakage.
# Each method gets the same step budget; every command is recorded with its wall time in
# RUN/results.jsonl, then bench/results_report.py writes docs/RESULTS.md and the plots.
# Every method on the synthetic data is also probed (`lethe probe`): section (a)'s robustness table.
# (c) SPUNGE vs plain unlearning (gd, npo) on the synthetic data split by domain and by fact kind,
#     and on TOFU forget10 split by author (blocks of 5 authors): `lethe spunge --compare`.
# Not part of CI (about 1.5 hours on 2 cores).
# usage: bench/run_results.sh [RUN_DIR] [synth|tofu|spunge|all]
set -euo pipefail
cd "$(dirname "$0")/.."
L=$PWD/build/lethe
RUN=${1:-runs/results-$(date +%Y%m%d-%H%M%S)}
PART=${2:-all}
TOFU=${TOFU_DIR:-../shared/data/tofu}
[ -x "$L" ] || bash scripts/setup.sh --no-test-deps
command -v gnuplot >/dev/null || { echo "run_results: needs gnuplot (apt-get install gnuplot-nox)" >&2; exit 2; }
mkdir -p "$RUN"
RUN=$(cd "$RUN" && pwd)
REFUSALS=$(cd "$TOFU" 2>/dev/null && pwd)/idontknow.jsonl

record() {  # record DATASET NAME SECONDS MODEL_DIR EVAL_DIR CMD...
  local ds=$1 name=$2 secs=$3 model=$4 ev=$5; shift 5
  /usr/bin/python3 - "$RUN/results.jsonl" "$ds" "$name" "$secs" "$model" "$ev" "$*" <<'PY'
import json, sys
path, ds, name, secs, model, ev, cmd = sys.argv[1:]
with open(path, "a") as f:
    f.write(json.dumps({"dataset": ds, "method": name, "seconds": float(secs), "model": model, "eval": ev,
                        "command": cmd}) + "\n")
PY
}

# run_method DATASET NAME METHOD [extra unlearn options...]: unlearn, evaluate, record.
run_method() {
  local ds=$1 name=$2 method=$3; shift 3
  local dir=$RUN/$ds/$name
  [ -e "$dir/eval/report.json" ] && { echo "== $ds/$name: done already"; return; }
  rm -rf "$dir"; mkdir -p "$dir"
  local lr=(); [[ " $* " == *" --lr "* ]] || [ -z "${BASE_LR:-}" ] || lr=(--lr "$BASE_LR")
  local cmd=("$L" unlearn --method "$method" "${UNLEARN[@]}" "${lr[@]}" "$@" --format hf --out "$dir/model" --log-file "$dir/unlearn.log")
  echo "== $ds/$name: ${cmd[*]}"
  local t0; t0=$(date +%s.%N)
  "${cmd[@]}" >/dev/null
  local secs; secs=$(echo "$(date +%s.%N) - $t0" | bc)
  "$L" eval --model "$dir/model" "${EVAL[@]}" --out "$dir/eval" --title "$ds: $name" >/dev/null
  record "$ds" "$name" "$secs" "$dir/model" "$dir/eval" "${cmd[*]}"
}

# run_spunge DATASET SPLIT METHOD RANKS MERGE [spunge options...]: SPUNGE and plain unlearning with the
# same method and budget (`lethe spunge --compare`, one rank group per subset), both evaluated
# with this dataset's EVAL like every other row; recorded as dataset spunge-DATASET.
run_spunge() {
  local ds=$1 split=$2 method=$3 np=$4 merge=$5; shift 5
  local dir=$RUN/spunge/$ds-$split-$method; [ "$merge" = ties ] || dir=$dir-$merge
  [ -e "$dir/eval_spunge/report.json" ] && { echo "== spunge $ds/$split/$method: done already"; return; }
  rm -rf "$dir"; mkdir -p "$dir"
  local lr=(); [ -z "${BASE_LR:-}" ] || lr=(--lr "$BASE_LR")
  local cmd=(mpirun -np "$np" --oversubscribe "$L" spunge --method "$method" "${UNLEARN[@]}" "${lr[@]}" "$@"
             --merge "$merge" --compare --no-generate --format hf --out "$dir/run" --log-file "$dir/spunge.log")
  echo "== spunge $ds/$split/$method: ${cmd[*]}"
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "${cmd[@]}" >/dev/null
  "$L" eval --model "$dir/run/merged" "${EVAL[@]}" --out "$dir/eval_spunge" --title "$ds: SPUNGE $method by $split" >/dev/null
  "$L" eval --model "$dir/run/plain" "${EVAL[@]}" --out "$dir/eval_plain" --title "$ds: plain $method" >/dev/null
  local k; k=$(wc -l <"$dir/run/subsets.txt")
  local secs; secs=$(/usr/bin/python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(r['plain_train_seconds'], r['train_seconds'] + r['merge_seconds'])" "$dir/run/result.json")
  record "spunge-$ds" "$method, plain (whole forget set)" "${secs% *}" "$dir/run/plain" "$dir/eval_plain" "${cmd[*]}"
  record "spunge-$ds" "$method, SPUNGE by $split ($k subsets, $merge)" "${secs#* }" "$dir/run/merged" "$dir/eval_spunge" "${cmd[*]}"
}

run_all_methods() {  # run_all_methods DATASET
  local ds=$1
  local lora=(--lora-rank 8 --lora-alpha 16 --lora-dropout 0.1)
  run_method "$ds" ga ga
  run_method "$ds" gd gd
  run_method "$ds" kl kl
  run_method "$ds" random_label random_label
  run_method "$ds" adversarial adversarial
  run_method "$ds" npo npo
  run_method "$ds" simnpo simnpo
  run_method "$ds" dpo dpo --dpo.refusals "$REFUSALS"
  run_method "$ds" idk idk --idk.refusals "$REFUSALS"
  # 4 decoder layers here: steer the output of layer 1, train down_proj of layers 0 and 1
  # (the WMDP recipe's layer 7 and 5-7 of 32 layers, scaled down).
  run_method "$ds" rmu rmu --rmu.layer 1 --rmu.train 'model\.layers\.(0|1)\.mlp\.down_proj\.weight'
  # The same with the retain weight scaled to this model (see the analysis in docs/RESULTS.md).
  run_method "$ds" rmu_alpha10 rmu --rmu.layer 1 --rmu.train 'model\.layers\.(0|1)\.mlp\.down_proj\.weight' --rmu.alpha 10 --lr 1e-2
  run_method "$ds" tvn tvn
  # TOFU's `subject` attribute is a phrase of the question (a city, a genre), not the author:
  # no templated entity questions there.
  local snap_extra=(); [ "$ds" = tofu ] && snap_extra=(--snap.entity-questions 0)
  run_method "$ds" snap snap --snap.refusals "$REFUSALS" "${snap_extra[@]}"
  # MemFlex and the paper's baseline setting for it: the same LoRA, all matrices.
  run_method "$ds" memflex memflex "${lora[@]}" --lr "$LORA_LR" --memflex.localization "$RUN/$ds/memflex.localization.json"
  run_method "$ds" gd_lora_all gd "${lora[@]}" --lr "$LORA_LR"
  # open-unlearning's methods, with their published defaults
  run_method "$ds" wga wga
  run_method "$ds" undial undial
  run_method "$ds" satimp satimp
  run_method "$ds" ce_u ce_u
  run_method "$ds" pdu pdu
  run_method "$ds" altpo altpo
}

# probe_all DATASET: `lethe probe` on the finetuned model and every method's (teacher-forced: int8,
# NF4, FP4, the prefix prompt, relearning on the first half of the forget items for one epoch at
# lr 1e-3, the tiny model's scale; logit lens), into RUN/DATASET/NAME/probe.
probe_all() {
  local ds=$1 dir
  for dir in "$RUN/$ds"/*/; do
    local name; name=$(basename "$dir")
    local model=$dir/model; [ "$name" = before ] && model=$RUN/$ds/finetuned
    [ -e "$model" ] && [ -e "$dir/eval/report.json" ] || continue
    [ -e "$dir/probe/probe.json" ] && continue
    echo "== $ds/$name: probe"
    "$L" probe --model "$model" "${PROBE[@]}" --out "$dir/probe" >"$dir/probe.log" 2>&1 || echo "   probe failed: $dir/probe.log"
  done
}

start=$(date +%s)
# ---------------------------------------------------------------- (a) synthetic KnowUnDo-style
if [ "$PART" = all ] || [ "$PART" = synth ] || [ "$PART" = spunge ]; then
  S=$RUN/synth
  mkdir -p "$S"
  D=$S/data
  [ -d "$D" ] || "$L" synth --out "$D" --seed 1234 >/dev/null
  [ -d "$S/base" ] || "$L" init --model-config configs/models/tiny-llama.json --train-tokenizer "$D/train.jsonl" \
    --vocab-size 768 --out "$S/base" --seed 1 >/dev/null
  [ -d "$S/finetuned" ] || "$L" finetune --config configs/demo/finetune.ini --model "$S/base" --data "$D/train.jsonl" \
    --out "$S/finetuned" --log-file "$S/finetune.log" >/dev/null
  EVAL=(--forget "$D/forget.jsonl" --retain "$D/retain.jsonl" --split "eval_forget=$D/eval_forget.jsonl"
        --split "eval_retain=$D/eval_retain.jsonl" --max-new-tokens 32 --per-item)
  if [ ! -e "$S/before/eval/report.json" ]; then
    mkdir -p "$S/before"
    "$L" eval --model "$S/finetuned" "${EVAL[@]}" --out "$S/before/eval" --title "synth: before" >/dev/null
    record synth before 0 "$S/finetuned" "$S/before/eval" "(the finetuned model)"
  fi
  # configs/demo/unlearn.ini's budget (that file also sets spunge's generation length, which
  # `lethe unlearn` has no option for, so the values are spelled out here)
  BASE_LR=1e-3
  UNLEARN=(--steps 50 --batch-size 16 --schedule constant --eval-every 10 --log-every 10 --template chatml
           --model "$S/finetuned" --forget "$D/forget.jsonl" --retain "$D/retain.jsonl"
           --eval-forget "$D/forget.jsonl" --eval-retain "$D/retain.jsonl")
  LORA_LR=1e-2
  PROBE=(--forget "$D/forget.jsonl" --retain "$D/retain.jsonl" --template chatml --no-generate --prompts prefix
         --relearn --relearn-lr 1e-3 --relearn-batch-size 8)
  [ "$PART" = spunge ] || { run_all_methods synth; probe_all synth; }
  if [ "$PART" = all ] || [ "$PART" = spunge ]; then
    for m in gd npo; do
      run_spunge synth domain $m 2 ties --split-by domain
      run_spunge synth kind $m 4 ties --split-by kind
      # The merge rule matters: the sum of the deltas instead of TIES' trimmed disjoint mean.
      run_spunge synth domain $m 2 task_arithmetic --split-by domain
    done
  fi
fi

# ---------------------------------------------------------------- (b) TOFU forget10 / retain90
if [ "$PART" = all ] || [ "$PART" = tofu ] || [ "$PART" = spunge ]; then
  [ -f "$TOFU/forget10.json" ] || { echo "run_results: no TOFU data in $TOFU" >&2; exit 2; }
  B=$RUN/tofu
  mkdir -p "$B/data"
  # all.json = forget10 + retain90 (the whole benchmark); retain_eval.json = 400 seeded retain90
  # items for the retain metrics (evaluating all 3,600 after every method would dominate the time).
  /usr/bin/python3 - "$TOFU" "$B/data" <<'PY'
import json, random, sys
src, out = sys.argv[1:]
f, r = json.load(open(f"{src}/forget10.json")), json.load(open(f"{src}/retain90.json"))
json.dump(f + r, open(f"{out}/all.json", "w"))
json.dump(random.Random(0).sample(r, 400), open(f"{out}/retain_eval.json", "w"))
PY
  FT=(--steps 1500 --batch-size 16 --lr 3e-3 --warmup-steps 50 --schedule cosine --log-every 200 --template chatml)
  [ -d "$B/base" ] || "$L" init --model-config configs/models/tiny-llama.json --train-tokenizer "$B/data/all.json" \
    --vocab-size 2048 --out "$B/base" --seed 1 >/dev/null
  for twin in full retain90; do
    data=$B/data/all.json; [ $twin = retain90 ] && data=$TOFU/retain90.json
    if [ ! -d "$B/$twin" ]; then
      t0=$(date +%s.%N)
      "$L" finetune "${FT[@]}" --model "$B/base" --data "$data" --out "$B/$twin" --log-file "$B/finetune_$twin.log" >/dev/null
      echo "finetune $twin: $(echo "$(date +%s.%N) - $t0" | bc) s" | tee -a "$B/finetune_times.txt"
    fi
  done
  EVAL0=(--forget "$TOFU/forget10.json" --retain "$B/data/retain_eval.json" --max-new-tokens 48 --per-item)
  if [ ! -e "$B/retain90_model/eval/report.json" ]; then
    mkdir -p "$B/retain90_model"
    "$L" eval --model "$B/retain90" "${EVAL0[@]}" --out "$B/retain90_model/eval" --title "tofu: retain90-only model" >/dev/null
    record tofu retain90_only 0 "$B/retain90" "$B/retain90_model/eval" "(finetuned on retain90 only: the forget-quality reference)"
  fi
  EVAL=("${EVAL0[@]}" --tofu-reference "$B/retain90_model/eval/report.json")
  if [ ! -e "$B/before/eval/report.json" ]; then
    mkdir -p "$B/before"
    "$L" eval --model "$B/full" "${EVAL[@]}" --out "$B/before/eval" --title "tofu: before" >/dev/null
    record tofu before 0 "$B/full" "$B/before/eval" "(finetuned on all of TOFU)"
  fi
  UNLEARN=(--model "$B/full" --forget "$TOFU/forget10.json" --retain "$TOFU/retain90.json" --steps 40 --batch-size 16
           --schedule constant --eval-every 10 --log-every 10 --template chatml
           --eval-forget "$TOFU/forget10.json" --eval-retain "$B/data/retain_eval.json")
  BASE_LR=1e-3
  LORA_LR=1e-2
  [ "$PART" = spunge ] || run_all_methods tofu
  if [ "$PART" = all ] || [ "$PART" = spunge ]; then
    # TOFU has no author field: forget10's 400 rows are 20 authors x 20 questions in order, so
    # blocks of 100 rows are 4 subsets of 5 authors each.
    for m in gd npo; do
      run_spunge tofu author $m 4 ties --split-block 100
      run_spunge tofu author $m 4 task_arithmetic --split-block 100
    done
  fi
fi

echo "run_results: all runs in $RUN ($(( $(date +%s) - start )) s)"
/usr/bin/python3 bench/results_report.py "$RUN" docs/RESULTS.md docs/results
