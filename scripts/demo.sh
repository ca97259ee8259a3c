#!/usr/bin/env bash
# The demo on the embedded default data (lethe synth): synth KnowUnDo-style data -> a tiny
# Llama-family model with its own BPE tokenizer -> finetune until both scopes are learned ->
# unlearn the unlearn scope with gradient ascent (GA) and gradient difference (GD) -> the
# KnowUnDo metrics before and after, side by side. Expected: under 5 minutes on 2 cores
# (after the build), GD forgetting the unlearn scope while keeping the retention scope.
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
EVAL=(--forget "$D/forget.jsonl" --retain "$D/retain.jsonl" --split "eval_forget=$D/eval_forget.jsonl"
      --split "eval_retain=$D/eval_retain.jsonl" --max-new-tokens 32 --per-item)
$L eval --model "$RUN/finetuned" "${EVAL[@]}" --out "$RUN/eval_before" --title "before unlearning"
for method in ga gd; do
  $L unlearn --config configs/demo/unlearn.ini --method $method --model "$RUN/finetuned" \
    --forget "$D/forget.jsonl" --retain "$D/retain.jsonl" \
    --eval-forget "$D/forget.jsonl" --eval-retain "$D/retain.jsonl" --out "$RUN/$method" --log-file "$RUN/$method.log"
  $L eval --model "$RUN/$method" "${EVAL[@]}" --out "$RUN/eval_$method" --title "after $method"
done

/usr/bin/python3 - "$RUN" <<'PY' | tee "$RUN/summary.md"
import json, sys
run = sys.argv[1]
rows = [("before", "eval_before"), ("GA", "eval_ga"), ("GD", "eval_gd")]
print("\n## lethe demo: KnowUnDo metrics on the synthetic privacy + copyright data\n")
print("| model | Unlearn Success | Retention Success | Average Success | forget ppl | retain ppl | forget ROUGE-L | retain ROUGE-L | held-out forget acc % | held-out retain acc % |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for name, d in rows:
    j = json.load(open(f"{run}/{d}/report.json"))
    k, s = j["knowundo"], j["splits"]
    print(f"| {name} | {k['unlearn_success']:.1f} | {k['retention_success']:.1f} | {k['average_success']:.1f} | "
          f"{s['forget']['perplexity']:.3g} | {s['retain']['perplexity']:.3g} | {s['forget']['rouge_l_f1']:.3f} | "
          f"{s['retain']['rouge_l_f1']:.3f} | {100*s['eval_forget']['accuracy']:.1f} | {100*s['eval_retain']['accuracy']:.1f} |")
PY
echo "demo: finished in $(( $(date +%s) - start )) s; everything is in $RUN"
