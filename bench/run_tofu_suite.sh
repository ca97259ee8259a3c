#!/usr/bin/env bash
# docs/RESULTS.md section (f): every method on TOFU with open-unlearning's metric set, the
# robustness probe, budgets from a sweep, and SPUNGE vs plain under the probe.
#
#   data   forget10 (20 authors) to forget; retain90's first 160 authors (3,200 pairs) to keep; its
#          last 20 authors (400 pairs) are never trained on by either model and serve as the
#          membership-inference holdout (TOFU's own holdout split is not in ../shared/data/tofu).
#   models a tiny Llama (configs/models/tiny-llama.json, 2,048-token BPE trained on TOFU) finetuned
#          on forget10 + the kept retain authors (`before`), and its twin finetuned on the kept
#          retain authors only (the forget-quality, PrivLeak and relearning reference); both at
#          once, one thread each.
#   methods every method, 40 steps of 16 at lr 1e-3 (LoRA: 1e-2), two at a time (one thread each);
#          evaluated on all of forget10, 300 seeded kept-retain items, real authors, world facts
#          and the holdout: forget quality, model utility (open-unlearning's harmonic mean, 8 of 9
#          terms), truth ratio, ROUGE-L, paraphrased probability, extraction strength, exact
#          memorization, membership-inference AUCs and PrivLeak.
#   probe  `lethe probe` (int8, NF4, FP4, paraphrase and prefix prompts, relearning on half of
#          forget10 for one epoch at lr 1e-3 with the twin relearnt alike, logit lens; teacher-
#          forced, no generation) for the finetuned model and every method's.
#   sweep  `lethe sweep` over 7 methods x lr {3e-4, 1e-3} (MemFlex, with its LoRA from the grid:
#          {1e-2, 3e-2}) x steps {20, 40} on 2 rank groups, evaluated without generation against
#          the twin; each method's budget by the best harmonic mean of forget quality and utility.
#          Utility here is over the retain terms only: a model this small answers no real-author
#          question (ROUGE-L 0), which makes open-unlearning's 8-term harmonic mean 0 for every model.
#   spunge `lethe spunge --compare --probe` (forget10 in 4 blocks of 5 authors, TIES) for gd and
#          npo at their swept budgets.
# Then bench/tofu_suite_report.py writes section (f) of docs/RESULTS.md. Not part of CI (about
# 1.5 hours on 2 cores). Parts can be run one by one; finished runs are kept.
# usage: bench/run_tofu_suite.sh [RUN_DIR] [all|base|methods|probe|sweep|spunge|report]
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/tofu-suite-$(date +%Y%m%d-%H%M%S)}
PART=${2:-all}
TOFU=${TOFU_DIR:-../shared/data/tofu}
PY=${LETHE_PYTHON:-$PWD/.venv/bin/python}
[ -f "$TOFU/forget10.json" ] || { echo "run_tofu_suite: no TOFU data in $TOFU" >&2; exit 2; }
[ -x build/lethe ] || bash scripts/setup.sh --no-test-deps
mkdir -p "$RUN/bin"
RUN=$(cd "$RUN" && pwd)
TOFU=$(cd "$TOFU" && pwd)
# The run uses its own copy of the binary, so that rebuilding lethe meanwhile does not touch it.
[ -x "$RUN/bin/lethe" ] || cp build/lethe "$RUN/bin/lethe"
L=$RUN/bin/lethe
[ "$(id -u)" = 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
D=$RUN/data
T1=(--threads 1)
want() { [ "$PART" = all ] || [ "$PART" = "$1" ]; }
stamp() { echo "[$(date +%H:%M:%S)] $*"; }

# ---------------------------------------------------------------- data and the two finetuned models
if [ ! -f "$D/holdout.json" ]; then
  mkdir -p "$D"
  "$PY" - "$TOFU" "$D" <<'PY'
import json, random, sys
src, out = sys.argv[1:]
f, r = json.load(open(f"{src}/forget10.json")), json.load(open(f"{src}/retain90.json"))
kept, holdout = r[:3200], r[3200:]  # retain90 comes in blocks of 20 per author: the last 20 authors held out
json.dump(f + kept, open(f"{out}/train_full.json", "w"))
json.dump(kept, open(f"{out}/retain.json", "w"))
json.dump(holdout, open(f"{out}/holdout.json", "w"))
json.dump(random.Random(0).sample(kept, 300), open(f"{out}/retain_eval.json", "w"))
json.dump(f + r, open(f"{out}/tokenizer_text.json", "w"))
PY
fi
if want base || [ ! -d "$RUN/full" ]; then
  [ -d "$RUN/base" ] || "$L" init --model-config configs/models/tiny-llama.json --train-tokenizer "$D/tokenizer_text.json" \
    --vocab-size 2048 --out "$RUN/base" --seed 1 >/dev/null
  FT=(--steps 1200 --batch-size 16 --lr 3e-3 --warmup-steps 50 --schedule cosine --log-every 200 --template chatml "${T1[@]}")
  for twin in full retain; do
    data=$D/train_full.json; [ $twin = retain ] && data=$D/retain.json
    if [ ! -d "$RUN/$twin" ]; then
      ( t0=$(date +%s); "$L" finetune "${FT[@]}" --model "$RUN/base" --data "$data" --out "$RUN/$twin.tmp" \
          --log-file "$RUN/finetune_$twin.log" >/dev/null && mv "$RUN/$twin.tmp" "$RUN/$twin" &&
        echo "finetune $twin: $(( $(date +%s) - t0 )) s" >>"$RUN/finetune_times.txt" ) &
    fi
  done
  wait
  [ -d "$RUN/full" ] && [ -d "$RUN/retain" ] || { echo "run_tofu_suite: finetuning failed (see $RUN/finetune_*.log)" >&2; exit 1; }
  stamp "finetuned: $(tr '\n' ' ' <"$RUN/finetune_times.txt")"
fi

EVAL0=(--forget "$TOFU/forget10.json" --retain "$D/retain_eval.json" --holdout "$D/holdout.json"
       --real-authors "$TOFU/real_authors_perturbed.json" --world-facts "$TOFU/world_facts_perturbed.json"
       --max-new-tokens 48 --per-item "${T1[@]}")
evaluate() {  # evaluate MODEL OUT TITLE [more options]: lethe eval into OUT unless done
  local model=$1 out=$2 title=$3; shift 3
  [ -e "$out/report.json" ] && return
  rm -rf "$out.tmp"
  "$L" eval --model "$model" "${EVAL0[@]}" "$@" --out "$out.tmp" --title "$title" >/dev/null 2>"$out.err" || return 1
  mv "$out.tmp" "$out"
}
mkdir -p "$RUN/eval"
REF=$RUN/eval/retain_only/report.json
evaluate "$RUN/retain" "$RUN/eval/retain_only" "tofu: retain-only twin"
EVAL_REF=(--tofu-reference "$REF" --mia-reference "$RUN/retain")
evaluate "$RUN/full" "$RUN/eval/before" "tofu: before" "${EVAL_REF[@]}"

# ---------------------------------------------------------------- every method
REFUSALS=$TOFU/idontknow.jsonl
UNLEARN=(--model "$RUN/full" --forget "$TOFU/forget10.json" --retain "$D/retain.json" --steps 40 --batch-size 16
         --schedule constant --log-every 10 --template chatml "${T1[@]}")
LORA=(--lora-rank 8 --lora-alpha 16 --lora-dropout 0.1 --lr 1e-2)
run_method() {  # run_method NAME METHOD [options]: unlearn (timed), evaluate
  local name=$1 method=$2; shift 2
  local dir=$RUN/methods/$name
  [ -e "$dir/eval/report.json" ] && return
  rm -rf "$dir"; mkdir -p "$dir"
  local lr=(--lr 1e-3); [[ " $* " == *" --lr "* ]] && lr=()
  local t0; t0=$(date +%s.%N)
  if ! "$L" unlearn --method "$method" "${UNLEARN[@]}" "${lr[@]}" "$@" --format hf --out "$dir/model" --log-file "$dir/unlearn.log" \
       >/dev/null 2>"$dir/unlearn.err"; then
    stamp "$name: unlearn failed (see $dir/unlearn.err)"; return
  fi
  echo "$(date +%s.%N) - $t0" | bc >"$dir/seconds"
  printf '%s\n' "lethe unlearn --method $method ${UNLEARN[*]} ${lr[*]} $* --format hf --out $dir/model" >"$dir/command"
  evaluate "$dir/model" "$dir/eval" "tofu: $name" "${EVAL_REF[@]}" || stamp "$name: eval failed (see $dir/eval.err)"
  stamp "$name done"
}
# two lanes of one thread each (a 1M-parameter model does not use two threads well)
lane_a() {
  run_method ga ga; run_method gd gd; run_method kl kl; run_method npo npo; run_method simnpo simnpo
  run_method dpo dpo --dpo.refusals "$REFUSALS"; run_method wga wga; run_method undial undial
  run_method satimp satimp; run_method altpo altpo; run_method tvn tvn
}
lane_b() {
  run_method random_label random_label; run_method adversarial adversarial
  run_method idk idk --idk.refusals "$REFUSALS"; run_method ce_u ce_u; run_method pdu pdu
  # 4 decoder layers: steer layer 1's output, train down_proj of layers 0-1 (WMDP's 7 and 5-7 of 32, scaled)
  run_method rmu rmu --rmu.layer 1 --rmu.train 'model\.layers\.(0|1)\.mlp\.down_proj\.weight' --rmu.alpha 10 --lr 1e-2
  run_method snap snap --snap.refusals "$REFUSALS" --snap.entity-questions 0
  run_method memflex memflex "${LORA[@]}" --memflex.localization "$RUN/methods/memflex.localization.json"
  run_method gd_lora_all gd "${LORA[@]}"
}
if want methods; then
  stamp "methods"
  lane_a & lane_b & wait
fi

# ---------------------------------------------------------------- robustness probe
PROBE=(--forget "$TOFU/forget10.json" --retain "$D/retain_eval.json" --template chatml --no-generate
       --relearn --relearn-lr 1e-3 --relearn-batch-size 8 --relearn-reference "$RUN/retain" "${T1[@]}")
probe() {  # probe NAME MODEL
  local out=$RUN/probe/$1
  [ -e "$out/probe.json" ] && return
  mkdir -p "$RUN/probe"; rm -rf "$out"
  "$L" probe --model "$2" "${PROBE[@]}" --out "$out" >"$out.log" 2>&1 || stamp "probe $1 failed (see $out.log)"
  stamp "probe $1 done"
}
if want probe; then
  stamp "probe"
  # the finetuned model, then every method's, in two lanes of one thread each
  models=(before "$RUN/full")
  for dir in "$RUN"/methods/*/; do
    [ -e "$dir/eval/report.json" ] && models+=("$(basename "$dir")" "$dir/model")
  done
  for lane in 0 1; do
    { for ((i = 2 * lane; i < ${#models[@]}; i += 4)); do probe "${models[i]}" "${models[i + 1]}"; done; } &
  done
  wait
fi

# ---------------------------------------------------------------- budgets from a sweep
if want sweep && [ ! -e "$RUN/sweep/sweep.md" ]; then
  stamp "sweep"
  cat >"$RUN/grid.json" <<'JSON'
{"methods": ["gd", "npo", "simnpo", "wga", "undial", "satimp", "memflex"],
 "lr": {"gd": [3e-4, 1e-3], "npo": [3e-4, 1e-3], "simnpo": [3e-4, 1e-3], "wga": [3e-4, 1e-3], "undial": [3e-4, 1e-3],
        "satimp": [3e-4, 1e-3], "memflex": [1e-2, 3e-2]},
 "steps": [20, 40],
 "lora": {"memflex": {"rank": 8, "alpha": 16, "dropout": 0.1}},
 "options": {"memflex": {"memflex.localization": ["LOCALIZATION"]}}}
JSON
  # MemFlex's localization (a gradient pass over both sets) is the one the methods part computed.
  sed -i "s|LOCALIZATION|$RUN/methods/memflex.localization.json|" "$RUN/grid.json"
  resume=(); [ -e "$RUN/sweep/sweep.json" ] && resume=(--resume)
  mpirun -np 2 --oversubscribe "$L" sweep --model "$RUN/full" --forget "$TOFU/forget10.json" --retain "$D/retain.json" \
    --eval-retain "$D/retain_eval.json" --tofu-reference "$REF" --template chatml --grid "$RUN/grid.json" \
    --batch-size 16 --schedule constant --no-generate --log-every 20 "${resume[@]}" \
    --out "$RUN/sweep" --log-file "$RUN/sweep.log" >/dev/null 2>"$RUN/sweep.err" || stamp "sweep failed (see $RUN/sweep.err)"
fi
# Each method's choice: the best harmonic mean of forget quality (x) and model utility (y).
[ -e "$RUN/sweep/sweep.json" ] && "$PY" bench/sweep_choices.py "$RUN/sweep/sweep.json" >"$RUN/choices.txt"

# ---------------------------------------------------------------- SPUNGE vs plain under the probe
if want spunge && [ -s "$RUN/choices.txt" ]; then
  stamp "spunge"
  for m in gd npo; do
    out=$RUN/spunge/$m
    [ -e "$out/report.md" ] && continue
    read -r _ lr steps _ _ < <(grep "^$m " "$RUN/choices.txt")
    mkdir -p "$RUN/spunge"; rm -rf "$out"
    mpirun -np 4 --oversubscribe "$L" spunge --method $m --lr "$lr" --steps "$steps" --batch-size 16 --schedule constant \
      --template chatml --model "$RUN/full" --forget "$TOFU/forget10.json" --retain "$D/retain.json" \
      --split-block 100 --merge ties \
      --compare --probe --relearn-lr 1e-3 --no-generate --out "$out" --log-file "$RUN/spunge-$m.log" \
      >/dev/null 2>"$RUN/spunge-$m.err" || stamp "spunge $m failed (see $RUN/spunge-$m.err)"
    stamp "spunge $m done"
  done
fi

if want report || [ "$PART" = all ]; then
  "$PY" bench/tofu_suite_report.py "$RUN" docs/RESULTS.md
fi
