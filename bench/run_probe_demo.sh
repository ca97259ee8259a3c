#!/usr/bin/env bash
# Does the forgetting survive? `lethe probe` on lethe synth's data (as scripts/demo.sh builds it:
# a tiny Llama finetuned until it knows both scopes), for the finetuned model and for ga, gd and
# npo unlearning with the demo budget (configs/demo/unlearn.ini's: 50 steps of 16 at lr 1e-3): weights in int8, NF4 and FP4,
# the "Sure, here is the answer:" prefix, relearning on half of the forget set (the other half
# tested; --relearn-lr 1e-3 for 1 epoch, the tiny model's scale), and the logit lens. Prints one
# line per model and probe: forget and retain answer-token accuracy. Not part of CI (~10 min).
# usage: bench/run_probe_demo.sh [RUN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
L=$PWD/build/lethe
RUN=${1:-runs/probe-demo-$(date +%Y%m%d-%H%M%S)}
if [ -e "$RUN" ]; then echo "run_probe_demo: $RUN already exists" >&2; exit 2; fi
mkdir -p "$RUN"
D=$RUN/data
PY=${LETHE_PYTHON:-.venv/bin/python}
$L synth --out "$D" --seed 1234 >/dev/null
$L init --model-config configs/models/tiny-llama.json --train-tokenizer "$D/train.jsonl" --vocab-size 768 \
  --out "$RUN/base" --seed 1 >/dev/null 2>&1
$L finetune --config configs/demo/finetune.ini --model "$RUN/base" --data "$D/train.jsonl" --out "$RUN/finetuned" \
  --log-file "$RUN/finetune.log" >/dev/null 2>&1
for m in ga gd npo; do
  $L unlearn --method $m --lr 1e-3 --steps 50 --batch-size 16 --schedule constant --template chatml \
    --model "$RUN/finetuned" --forget "$D/forget.jsonl" --retain "$D/retain.jsonl" --out "$RUN/$m" \
    --log-file "$RUN/$m.log" >/dev/null 2>&1
done
for m in finetuned ga gd npo; do
  $L probe --model "$RUN/$m" --forget "$D/forget.jsonl" --retain "$D/retain.jsonl" --template chatml \
    --prompts prefix --relearn --relearn-lr 1e-3 --relearn-batch-size 8 --max-new-tokens 32 \
    --out "$RUN/probe-$m" >"$RUN/probe-$m.log" 2>&1
done
"$PY" - "$RUN" <<'PY'
import json, sys
run = sys.argv[1]
print(f"{'model':10} {'probe':32} {'forget acc':>10} {'retain acc':>10} {'forget ROUGE-L':>14}")
for m in ("finetuned", "ga", "gd", "npo"):
    p = json.load(open(f"{run}/probe-{m}/probe.json"))
    for r in p["probes"]:
        f, t = r.get("forget", {}), r.get("retain", {})
        fmt = lambda d, k: f"{d[k]:.3f}" if k in d else "-"
        print(f"{m:10} {r['probe']:32} {fmt(f, 'accuracy'):>10} {fmt(t, 'accuracy'):>10} {fmt(f, 'rouge_l_recall'):>14}")
    lens = p["logit_lens"]
    print(f"{m:10} {'logit lens (forget prob/layer)':32} " + " ".join(f"{v:.3f}" for v in lens["forget"]))
PY
