#!/usr/bin/env bash
# SPUNGE and `lethe merge` end to end on the CPU machine:
# - K = 2 groups on 4 ranks give the same merged checkpoint (byte for byte) as unlearning the two
#   subsets one after the other on 2 ranks each and merging them with `lethe merge`; so does the
#   same at ZeRO 3, where no rank holds a group's model whole;
# - `lethe merge` on 1 rank and on 2 ranks, and from HF or native inputs, write the same files;
# - subsets that outnumber the groups queue, and their merge equals `lethe merge` of them;
# - an interrupted `lethe merge` resumes without redoing finished tensors and writes the same files;
# - bad input: missing attribute, empty subset, mismatched checkpoints (names, shapes, dtypes),
#   corrupt input, an existing --out: one clear message, non-zero exit, nothing written over.
# usage: test_spunge.sh LETHE_BINARY SOURCE_DIR MPIRUN
set -u
LETHE=$1; SRC=$2; MPIRUN=$3
# shellcheck source=mpi_common.sh
source "$SRC/tests/cli/mpi_common.sh"

make_tiny_model
"$LETHE" finetune --model "$T/base" --data "$T/data/train.jsonl" --batch-size 8 --lr 2e-3 --steps 20 --format hf \
  --out "$T/ft" >/dev/null 2>&1 || bad "finetune"
UN=(--method gd --retain "$T/data/retain.jsonl" --steps 4 --batch-size 4 --lr 1e-3)
SP=(spunge --model "$T/ft" --forget "$T/data/forget.jsonl" "${UN[@]}" --no-generate)

# ---- 2 groups on 4 ranks == 2 subsets one after the other on 2 ranks + lethe merge ----
# (--probe: the robustness probe on the SPUNGE and the plain model, side by side.)
if "$MPIRUN" -np 4 "$LETHE" "${SP[@]}" --split-by domain --group-sizes 2,2 --merge ties --format hf --compare --probe \
     --out "$T/sp4" >"$T/sp4.log" 2>&1; then
  ok
  grep -q "SPUNGE vs plain unlearning" "$T/sp4/report.md" && [ -f "$T/sp4/eval/report.json" ] \
    && [ -f "$T/sp4/eval_plain/report.json" ] && ok || bad "spunge --compare report missing"
  "$PY" - "$T/sp4" <<'PY' && ok || bad "spunge --probe"
import json, sys
r = json.load(open(sys.argv[1] + "/result.json"))["probe"]
for name in ("plain", "spunge"):
    rows = [p["probe"] for p in r[name]]
    assert rows == ["as is", 'prefix "Sure, here is the answer:"', "as is, held-out forget part", "relearned", "int8",
                    "nf4", "fp4"], rows
    assert rows == [p["probe"] for p in json.load(open(f"{sys.argv[1]}/probe_{name}/probe.json"))["probes"]]
assert r["plain"][0]["forget"]["answer_prob"] != r["spunge"][0]["forget"]["answer_prob"], (r["plain"][0], r["spunge"][0])
md = open(sys.argv[1] + "/report.md").read()
assert "Robustness: SPUNGE vs plain" in md and "| nf4 |" in md, md
PY
  for s in copyright privacy; do
    "$MPIRUN" -np 2 "$LETHE" unlearn --model "$T/ft" --forget "$T/sp4/subsets/$s.jsonl" "${UN[@]}" --format hf \
      --out "$T/u_$s" >"$T/u.log" 2>&1 || { bad "unlearn subset $s"; tail "$T/u.log"; }
  done
  "$MPIRUN" -np 2 "$LETHE" merge --format hf --base "$T/ft" --models "$T/u_copyright" "$T/u_privacy" --merge ties \
    --out "$T/m2" >"$T/m.log" 2>&1 || { bad "lethe merge on 2 ranks"; tail "$T/m.log"; }
  cmp -s "$T/sp4/merged/model.safetensors" "$T/m2/model.safetensors" && ok \
    || bad "spunge (2 groups x 2 ranks) differs from sequential unlearning + lethe merge"
  $CMP "$T/sp4/merged" "$T/ft" --rtol 0 >/dev/null && bad "the merged model equals the base model" || ok
else
  bad "spunge on 4 ranks"; tail -20 "$T/sp4.log"
fi

# ---- ZeRO 3: each group keeps its model sharded from loading to the merge (no rank holds it
# whole; the merge gathers one layer at a time; the merged model is evaluated as shards); the
# same files as unlearning each subset at ZeRO 3 on 2 ranks + lethe merge, and the kept subset
# models (saved from the shards) equal those runs'.
# Full-parameter, and with LoRA, whose frozen base weights are shards too (the adapters are merged
# into their weights as the layers are gathered) ----
spunge_zero3() {  # TAG LOG_PATTERN EXTRA_FLAGS...
  local tag=$1 pattern=$2 s
  shift 2
  if ! "$MPIRUN" -np 4 "$LETHE" "${SP[@]}" "$@" --split-by domain --group-sizes 2,2 --merge ties --format hf \
       --zero-stage 3 --keep-subset-models --out "$T/sp$tag" >"$T/sp$tag.log" 2>&1; then
    bad "spunge ($tag) at ZeRO 3 on 4 ranks"; tail -20 "$T/sp$tag.log"; return
  fi
  grep -q "$pattern" "$T/sp$tag.log" && ! grep -q "loads the model whole" "$T/sp$tag.log" && ok \
    || bad "spunge ($tag) at ZeRO 3 did not keep the groups' models sharded: $(grep 'ZeRO 3' "$T/sp$tag.log" | head -2)"
  # The merged model is evaluated at ZeRO 3 as well (each rank reads its shard of the layers):
  # the report of one process that loads it whole.
  "$LETHE" eval --model "$T/sp$tag/merged" --forget "$T/data/forget.jsonl" --retain "$T/data/retain.jsonl" --no-generate \
    --out "$T/spe$tag" >/dev/null 2>&1 || bad "eval of spunge's merged model ($tag)"
  grep -q "eval: ZeRO 3 over 4 rank(s)" "$T/sp$tag.log" && $REPORTS "$T/spe$tag" "$T/sp$tag/eval" --rtol 1e-5 && ok \
    || bad "spunge ($tag) at ZeRO 3: the merged model's evaluation is not sharded or differs from a whole one"
  for s in copyright privacy; do
    "$MPIRUN" -np 2 "$LETHE" unlearn --model "$T/ft" --forget "$T/sp$tag/subsets/$s.jsonl" "${UN[@]}" "$@" \
      --zero-stage 3 --format hf --out "$T/z${tag}_$s" >"$T/u.log" 2>&1 || { bad "unlearn ($tag) $s at ZeRO 3"; tail "$T/u.log"; }
    "$LETHE" convert --in "$T/sp$tag/unlearned/$s" --to hf --out "$T/zk${tag}_$s" >/dev/null 2>&1 \
      && $CMP "$T/zk${tag}_$s" "$T/z${tag}_$s" --exact >/dev/null && ok || bad "spunge's kept ZeRO 3 model ($tag) of $s differs"
  done
  "$LETHE" merge --format hf --base "$T/ft" --models "$T/z${tag}_copyright" "$T/z${tag}_privacy" --merge ties \
    --out "$T/mz$tag" >"$T/m.log" 2>&1 || { bad "lethe merge of the ZeRO 3 models ($tag)"; tail "$T/m.log"; }
  cmp -s "$T/sp$tag/merged/model.safetensors" "$T/mz$tag/model.safetensors" && ok \
    || bad "spunge ($tag) at ZeRO 3 (2 groups x 2 ranks) differs from sequential ZeRO 3 unlearning + lethe merge"
}
spunge_zero3 full "each rank reads its shard of the decoder layers"
spunge_zero3 lora "frozen base weights included" --lora-rank 4 --lora-dropout 0
# --probe at ZeRO 3: the plain and the SPUNGE model probed as shards (as is, relearnt, quantized
# one gathered layer at a time); the plain model's table is the ZeRO 0 run's above.
if "$MPIRUN" -np 4 "$LETHE" "${SP[@]}" --split-by domain --group-sizes 2,2 --merge ties --format hf --compare --probe \
     --zero-stage 3 --out "$T/spz3p" >"$T/spz3p.log" 2>&1; then
  grep -q "probe: relearning .* (ZeRO 3)" "$T/spz3p.log" && ! grep -q "loads the model whole" "$T/spz3p.log" \
    && [ "$(grep -c "eval: ZeRO 3 over 4 rank(s)" "$T/spz3p.log")" -ge 10 ] && ok \
    || bad "spunge --probe at ZeRO 3 did not probe as shards"
  $REPORTS "$T/sp4/probe_plain" "$T/spz3p/probe_plain" --keys probes --rtol 1e-3 && ok \
    || bad "spunge --probe at ZeRO 3: the plain model's table differs from ZeRO 0's"
else
  bad "spunge --probe at ZeRO 3"; tail -20 "$T/spz3p.log"
fi

# ---- lethe merge: 1 rank == 2 ranks; native inputs == HF inputs; native output; sharded output ----
"$LETHE" merge --format hf --base "$T/ft" --models "$T/u_copyright" "$T/u_privacy" --merge ties --out "$T/m1" >/dev/null 2>&1
cmp -s "$T/m1/model.safetensors" "$T/m2/model.safetensors" && ok || bad "lethe merge: 1 rank differs from 2 ranks"
for s in copyright privacy; do "$LETHE" convert --in "$T/u_$s" --to native --out "$T/n_$s" >/dev/null 2>&1; done
"$LETHE" merge --format hf --base "$T/ft" --models "$T/n_copyright" "$T/n_privacy" --merge ties --out "$T/mn" >/dev/null 2>&1
cmp -s "$T/mn/model.safetensors" "$T/m2/model.safetensors" && ok || bad "lethe merge from native inputs differs"
"$MPIRUN" -np 2 "$LETHE" merge --format hf --base "$T/ft" --models "$T/u_copyright" "$T/u_privacy" --merge dare_ties \
  --merge.seed 5 --max-shard-size 200KB --out "$T/ms" >/dev/null 2>&1 \
  && [ -f "$T/ms/model.safetensors.index.json" ] && [ -f "$T/ms/tokenizer.json" ] && [ -f "$T/ms/config.json" ] \
  && [ ! -e "$T/ms/.lethe-merge" ] && ok || bad "sharded HF output incomplete"
"$LETHE" merge --format hf --base "$T/ft" --models "$T/u_copyright" "$T/u_privacy" --merge dare_ties --merge.seed 5 \
  --out "$T/ms1" >/dev/null 2>&1
$CMP "$T/ms" "$T/ms1" --exact >/dev/null && ok || bad "sharded dare_ties output differs from the single-file one"
"$LETHE" merge --base "$T/ft" --models "$T/u_copyright" "$T/u_privacy" --merge task_arithmetic --format native \
  --out "$T/mnat" >/dev/null 2>&1 && "$LETHE" eval --model "$T/mnat" --forget "$T/data/forget.jsonl" --no-generate \
  >/dev/null 2>&1 && ok || bad "native merge output does not load"

# ---- an interrupted merge resumes and writes the same files ----
# (the output shard is the unit of resumption: several shards, a stop after the first on each rank)
"$MPIRUN" -np 2 "$LETHE" merge --format hf --base "$T/ft" --models "$T/u_copyright" "$T/u_privacy" --merge ties \
  --max-shard-size 200KB --out "$T/mi0" >/dev/null 2>&1 || bad "sharded ties merge failed"
"$MPIRUN" -np 2 "$LETHE" merge --format hf --base "$T/ft" --models "$T/u_copyright" "$T/u_privacy" --merge ties --max-tensors 1 \
  --max-shard-size 200KB --out "$T/mi" >"$T/mi.log" 2>&1; rc=$?
written=$(ls "$T/mi" | grep -c '^model-.*\.safetensors$')
[ $rc -eq 75 ] && [ "$written" -eq 2 ] && [ ! -e "$T/mi/COMPLETE" ] && [ ! -e "$T/mi/model.safetensors.index.json" ] && ok \
  || { bad "interrupted merge: rc $rc, $written shards, want 75, 2 shards and no marker"; tail -5 "$T/mi.log"; }
"$MPIRUN" -np 2 "$LETHE" merge --format hf --base "$T/ft" --models "$T/u_copyright" "$T/u_privacy" --merge ties --merge.lambda 2 \
  --max-shard-size 200KB --out "$T/mi" >"$T/err" 2>&1 && bad "resume with another job accepted" || { grep -q "different job" "$T/err" && ok || bad "resume with another job: $(tail -2 "$T/err")"; }
"$MPIRUN" -np 2 "$LETHE" merge --format hf --base "$T/ft" --models "$T/u_copyright" "$T/u_privacy" --merge ties \
  --max-shard-size 200KB --out "$T/mi" >"$T/mi2.log" 2>&1 || bad "resumed merge failed"
grep -q "$written already written" "$T/mi2.log" && ok \
  || bad "resumed merge did not reuse the $written written shards: $(grep written "$T/mi2.log")"
diff -r "$T/mi" "$T/mi0" >/dev/null && ok || bad "resumed merge output differs from an uninterrupted one"

# ---- subsets that outnumber the groups queue; their merge equals lethe merge of them ----
if "$MPIRUN" -np 2 "$LETHE" "${SP[@]}" --split-by kind --split-map verbatim=book,continuation=book --groups 2 \
     --merge dare_linear --merge.seed 3 --format hf --out "$T/spq" >"$T/spq.log" 2>&1; then
  ls "$T/spq/unlearned" | tr '\n' ' ' | grep -q "book contact family" && ok || bad "queued subsets: $(ls "$T/spq/unlearned")"
  "$LETHE" merge --format hf --base "$T/ft" --models "$T/spq/unlearned/book" "$T/spq/unlearned/contact" "$T/spq/unlearned/family" \
    --merge dare_linear --merge.seed 3 --out "$T/mq" >/dev/null 2>&1
  cmp -s "$T/spq/merged/model.safetensors" "$T/mq/model.safetensors" && ok || bad "queued spunge merge differs from lethe merge"
else
  bad "queued spunge"; tail -20 "$T/spq.log"
fi

# ---- bad input: one clear message, non-zero exit, nothing written over ----
expect_error() {  # expect_error PATTERN ARGS...  (exit 2, the message, no $T/x)
  local pat=$1; shift
  "$@" >"$T/err" 2>&1; local rc=$?
  if [ $rc -ne 0 ] && grep -q -- "$pat" "$T/err" && [ ! -e "$T/x" ]; then ok; else
    bad "'$*': rc $rc, want non-zero, '$pat' and no output"; tail -5 "$T/err"; fi
}
/usr/bin/python3 - "$T/data/forget.jsonl" "$T/noattr.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
del rows[2]["domain"]
open(sys.argv[2], "w").write("".join(json.dumps(r) + "\n" for r in rows))
PY
expect_error "forget record 3 has no attribute 'domain'" "$MPIRUN" -np 2 "$LETHE" spunge --model "$T/ft" \
  --forget "$T/noattr.jsonl" "${UN[@]}" --split-by domain --out "$T/x"
expect_error "value 'poetry' (subset 'p') matches no forget record" "$LETHE" "${SP[@]}" --split-by domain \
  --split-map poetry=p --out "$T/x"
expect_error "SPUNGE needs two or more" "$LETHE" "${SP[@]}" --split-by scope --out "$T/x"
expect_error "2 subsets need at least 2 ranks" "$LETHE" "${SP[@]}" --split-by domain --out "$T/x"
expect_error "unknown merge method 'mean'" "$LETHE" merge --base "$T/ft" --models "$T/u_copyright" "$T/u_privacy" \
  --merge mean --out "$T/x"
sed 's/"num_hidden_layers": 4/"num_hidden_layers": 3/' "$SRC/configs/models/tiny-llama.json" >"$T/l3.json"
sed 's/"intermediate_size": [0-9]*/"intermediate_size": 96/' "$SRC/configs/models/tiny-llama.json" >"$T/i96.json"
"$LETHE" init --model-config "$T/l3.json" --train-tokenizer "$T/data/train.jsonl" --vocab-size 300 --out "$T/l3" >/dev/null 2>&1
"$LETHE" init --model-config "$T/i96.json" --train-tokenizer "$T/data/train.jsonl" --vocab-size 300 --out "$T/i96" >/dev/null 2>&1
"$LETHE" finetune --model "$T/ft" --data "$T/data/train.jsonl" --steps 1 --dtype bfloat16 --format hf --out "$T/bf16" \
  >/dev/null 2>&1
expect_error "has no tensor 'model.layers.3" "$LETHE" merge --base "$T/ft" --models "$T/u_copyright" "$T/l3" --out "$T/x"
expect_error "has shape" "$LETHE" merge --base "$T/ft" --models "$T/u_copyright" "$T/i96" --out "$T/x"
expect_error "is F32 in" "$LETHE" merge --base "$T/ft" --models "$T/u_copyright" "$T/bf16" --out "$T/x"
cp -r "$T/u_privacy" "$T/trunc" && truncate -s 1000 "$T/trunc/model.safetensors"
expect_error "trunc/model.safetensors" "$LETHE" merge --base "$T/ft" --models "$T/u_copyright" "$T/trunc" --out "$T/x"
mkdir -p "$T/taken" && echo keep >"$T/taken/file"
"$LETHE" merge --base "$T/ft" --models "$T/u_copyright" "$T/u_privacy" --out "$T/taken" >"$T/err" 2>&1 \
  && bad "merge over an existing directory" || { grep -q "already exists" "$T/err" && [ "$(cat "$T/taken/file")" = keep ] \
  && [ "$(ls "$T/taken")" = file ] && ok || bad "existing --out: $(tail -1 "$T/err")"; }
"$MPIRUN" -np 2 "$LETHE" "${SP[@]}" --split-by domain --out "$T/taken" >"$T/err" 2>&1 \
  && bad "spunge over an existing directory" || { grep -q "already exists" "$T/err" && [ "$(ls "$T/taken")" = file ] \
  && ok || bad "spunge existing --out: $(tail -1 "$T/err")"; }
expect_error "--probe needs --compare" "$LETHE" "${SP[@]}" --split-by domain --probe --out "$T/x"

echo "spunge: $pass passed, $fail failed"
[ $fail -eq 0 ]
