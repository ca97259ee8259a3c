#!/usr/bin/env bash
# Every unlearning method end to end through `lethe unlearn` (a reduced run: tiny model, few
# steps), on 1 rank and on 2 ranks under mpirun with the ZeRO stages rotated over the methods:
# the 2-rank parameters must equal the 1-rank ones within 1e-5 relative. Also the methods'
# bad-input messages (exit code 2, nothing written). With a model config (another family: Qwen3,
# Gemma, Gemma-2, Phi-3 ...), method x ZeRO runs on a tiny model of that family, with a
# shorter finetune, six of the methods (see METHODS) and without the family-independent parts.
# usage: test_methods_mpi.sh LETHE_BINARY SOURCE_DIR MPIRUN [MODEL_CONFIG]
set -u
LETHE=$1; SRC=$2; MPIRUN=$3; MODEL_CONFIG=${4:-}
FT_STEPS=20; [ -n "$MODEL_CONFIG" ] && FT_STEPS=6
# shellcheck source=mpi_common.sh
source "$SRC/tests/cli/mpi_common.sh"

make_tiny_model
"$LETHE" finetune --model "$T/base" --data "$T/data/train.jsonl" --batch-size 8 --lr 3e-3 --steps $FT_STEPS --log-every 20 \
  --out "$T/ft" >/dev/null 2>&1 || bad "finetune"
D="$T/data"
UN=(unlearn --model "$T/ft" --forget "$D/forget.jsonl" --retain "$D/retain.jsonl" --steps 3 --batch-size 8 --lr 1e-3
    --log-every 1 --format hf)
REFUSALS="$SRC/../shared/data/tofu/idontknow.jsonl"
[ -f "$REFUSALS" ] || REFUSALS=""
declare -A EXTRA=(
  [rmu]="--rmu.layer 2 --rmu.train model\\.layers\\.[12]\\.mlp\\.down_proj\\.weight --rmu.alpha 10"
  [memflex]="--lora-rank 4 --lora-alpha 8 --lora-dropout 0 --memflex.sigma 0"
  [dpo]="${REFUSALS:+--dpo.refusals $REFUSALS}"
  [snap]="--snap.projections 16"
  [kl]="--kl.mask all")
# Every method on the default family; on another family the methods whose code touches the
# model differently (plain loss, a frozen reference, activations at a layer, LoRA, the SNAP
# regulariser), still over all four ZeRO stages: the rest differ from these only in the loss.
METHODS=(ga gd kl random_label adversarial npo simnpo dpo idk rmu tvn memflex snap undial wga satimp ce_u pdu altpo)
[ -n "$MODEL_CONFIG" ] && METHODS=(ga kl npo rmu memflex snap)
# two_ranks METHOD STAGE TAG [FLAGS...]: the method on 2 ranks at that ZeRO stage into $T/METHOD.TAG
# (log $T/METHOD.logTAG), which must equal its 1-rank output $T/METHOD.1 within 1e-5 relative.
two_ranks() {
  local m=$1 z=$2 tag=$3
  shift 3
  # shellcheck disable=SC2086
  if "$MPIRUN" -np 2 "$LETHE" "${UN[@]}" --method $m ${EXTRA[$m]:-} "$@" --zero-stage $z --out "$T/$m.$tag" >"$T/$m.log$tag" 2>&1; then
    if $CMP "$T/$m.$tag" "$T/$m.1" --rtol 1e-5 >"$T/$m.cmp$tag" 2>&1; then
      ok; echo "$m: 1 vs 2 ranks (ZeRO $z): $(tail -1 "$T/$m.cmp$tag")"
    else
      bad "$m: 2 ranks (ZeRO $z) differ from 1 rank"; cat "$T/$m.cmp$tag"
    fi
  else
    bad "$m on 2 ranks (ZeRO $z) failed"; tail -5 "$T/$m.log$tag"
  fi
}
stage=0
for m in "${METHODS[@]}"; do
  z=$stage; [ $m = snap ] && z=2  # snap: its regulariser takes the after-backward path of ZeRO 2
  stage=$(( (stage + 1) % 4 ))
  x=${EXTRA[$m]:-}
  loc1=(); loc2=()
  [ $m = memflex ] && { loc1=(--memflex.localization "$T/loc1.json"); loc2=(--memflex.localization "$T/loc2.json"); }
  # shellcheck disable=SC2086
  if ! "$LETHE" "${UN[@]}" --method $m $x "${loc1[@]}" --out "$T/$m.1" >"$T/$m.log1" 2>&1; then
    bad "$m on 1 rank failed"; tail -5 "$T/$m.log1"; continue
  fi
  grep -q "step 3/3" "$T/$m.log1" && ok || bad "$m: no step 3 logged"
  two_ranks $m $z 2 "${loc2[@]}"
done
# ZeRO 3 kept sharded for the methods that read the weights outside training through the engine
# (snap: its theta_0 share, the regulariser on gathered layers; pdu: the starting retain loss;
# altpo: the generated alternatives; tvn: the negation on each rank's shard; rmu: the reference
# hidden states, and its layers with nothing to train sharded as frozen blocks): no rank loads
# the model whole, and the result equals one rank's (another family: snap and rmu).
Z3=(snap tvn pdu altpo rmu)
[ -n "$MODEL_CONFIG" ] && Z3=(snap rmu)
for m in "${Z3[@]}"; do
  two_ranks $m 3 z3
  grep -q "no rank holds them whole" "$T/$m.logz3" && ok || bad "$m: ZeRO 3 loaded the model whole"
done
# memflex reusing the localization its 1-rank run saved: chosen by name, so at ZeRO 3 the model
# stays shards (the layers whose adapters do not train too); the same as that run.
if [ -z "$MODEL_CONFIG" ]; then
  two_ranks memflex 3 z3 --memflex.localization "$T/loc1.json"
  grep -q "no rank holds them whole" "$T/memflex.logz3" && ok || bad "memflex: ZeRO 3 loaded the model whole"
  # Locating them at ZeRO 3 (a first engine over the adapters gives the gradients): still shards,
  # the same localization (checked below) and the same model as one rank's.
  two_ranks memflex 3 z3loc --memflex.localization "$T/loc3.json"
  grep -q "no rank holds them whole" "$T/memflex.logz3loc" && ok || bad "memflex locating: ZeRO 3 loaded the model whole"
fi
# tvn with LoRA: the adapters are negated (through their scale) and merged layer by layer as the
# shards are saved; the same as one rank, which merges them whole.
if [ -z "$MODEL_CONFIG" ]; then
  TL=(--method tvn --lora-rank 4 --lora-alpha 8 --lora-dropout 0)
  "$LETHE" "${UN[@]}" "${TL[@]}" --out "$T/tvnl.1" >"$T/tvnl.log1" 2>&1 || bad "tvn with LoRA on 1 rank failed"
  if "$MPIRUN" -np 2 "$LETHE" "${UN[@]}" "${TL[@]}" --zero-stage 3 --out "$T/tvnl.z3" >"$T/tvnl.logz3" 2>&1; then
    grep -q "no rank holds them whole" "$T/tvnl.logz3" && ok || bad "tvn with LoRA: ZeRO 3 loaded the model whole"
    $CMP "$T/tvnl.z3" "$T/tvnl.1" --rtol 1e-5 >"$T/tvnl.cmp" 2>&1 && ok || { bad "tvn with LoRA: 2 ranks (ZeRO 3) differ from 1 rank"; cat "$T/tvnl.cmp"; }
    echo "tvn with LoRA: 1 vs 2 ranks (ZeRO 3): $(tail -1 "$T/tvnl.cmp")"
  else
    bad "tvn with LoRA on 2 ranks (ZeRO 3) failed"; tail -5 "$T/tvnl.logz3"
  fi
fi
# PDU's dual variable is state of the run: a resume from the step-2 checkpoint (its lambda and
# epsilon stored with it) ends bit-identical to the run that went straight through.
if [ -z "$MODEL_CONFIG" ]; then
  PD=(unlearn --model "$T/ft" --forget "$D/forget.jsonl" --retain "$D/retain.jsonl" --steps 4 --batch-size 8 --lr 1e-3
      --format hf --method pdu --pdu.dual-step 5 --checkpoint-every 2)
  "$LETHE" "${PD[@]}" --checkpoint-dir "$T/pdu.ck" --out "$T/pdu.straight" >"$T/pdu.logs" 2>&1 \
    && cp -r "$T/pdu.ck" "$T/pdu.ck2" \
    && "$LETHE" "${PD[@]}" --checkpoint-dir "$T/pdu.ck2" --out "$T/pdu.resumed" --resume >"$T/pdu.logr" 2>&1 \
    && grep -q "resumed from" "$T/pdu.logr" && grep -q '"lambda"' "$T"/pdu.ck/step-*/manifest.json \
    && $CMP "$T/pdu.resumed" "$T/pdu.straight" --exact >/dev/null && ok || { bad "pdu: resume is not bit-identical"; tail -3 "$T/pdu.logr"; }
fi
# MemFlex's distributed gradient pass locates the same matrices on 1 and 2 ranks (and at ZeRO 3
# through the engine), and the localization is stored with the output model.
LOCS=("$T/loc2.json"); [ -z "$MODEL_CONFIG" ] && LOCS+=("$T/loc3.json")
"$PY" - "$T/memflex.1" "$T/loc1.json" "${LOCS[@]}" <<'PY' && ok || bad "memflex localization differs or is not stored"
import json, sys, os
a = json.load(open(sys.argv[2]))
assert a["selected"] and len(a["selected"]) < len(a["matrices"]), a["selected"]
for p in sys.argv[3:]:
    b = json.load(open(p))
    assert a["selected"] == b["selected"], (p, a["selected"], b["selected"])
    for k in a["matrices"]:
        assert abs(a["matrices"][k]["cos"] - b["matrices"][k]["cos"]) < 1e-5, (p, k)
        assert abs(a["matrices"][k]["mag"] - b["matrices"][k]["mag"]) <= 1e-5 * abs(a["matrices"][k]["mag"]), (p, k)
cfg = json.load(open(os.path.join(sys.argv[1], "lethe_run_config.json")))
assert cfg["objective"]["memflex_localization"]["selected"] == a["selected"]
PY
# Reuse: the saved localization gives the same model without the gradient pass.
if [ -z "$MODEL_CONFIG" ]; then
  "$LETHE" "${UN[@]}" --method memflex ${EXTRA[memflex]} --memflex.localization "$T/loc1.json" --out "$T/memflex.reuse" \
    >"$T/reuse.log" 2>&1 && grep -q "reusing the localization" "$T/reuse.log" \
    && $CMP "$T/memflex.reuse" "$T/memflex.1" --exact >/dev/null && ok || bad "memflex localization reuse"
fi

if [ -n "$MODEL_CONFIG" ]; then
  echo "methods on $(basename "$MODEL_CONFIG"): $pass passed, $fail failed"
  [ $fail -eq 0 ]; exit
fi
# ---- bad input: one clear message, exit 2, nothing written ----
expect_error() {  # expect_error PATTERN ARGS...
  local pat=$1; shift
  "$LETHE" "$@" >"$T/err" 2>&1; local rc=$?
  if [ $rc -eq 2 ] && grep -q -- "$pat" "$T/err"; then ok; else bad "'$*': rc $rc, want 2 and '$pat'"; cat "$T/err"; fi
}
expect_error "unknown unlearning method 'nope'" "${UN[@]}" --method nope --out "$T/x"
expect_error "needs LoRA adapters" "${UN[@]}" --method memflex --out "$T/x"
expect_error "kl.mask: unknown value" "${UN[@]}" --method kl --kl.mask sometimes --out "$T/x"
expect_error "rmu.layer 7" "${UN[@]}" --method rmu --out "$T/x"
expect_error "cannot read refusal file" "${UN[@]}" --method idk --idk.refusals "$T/none.txt" --out "$T/x"
echo "{broken" >"$T/badloc.json"
expect_error "badloc.json" "${UN[@]}" --method memflex --lora-rank 4 --memflex.localization "$T/badloc.json" --out "$T/x"
[ ! -e "$T/x" ] && ok || bad "a failed run wrote its output"

echo "methods: $pass passed, $fail failed"
[ $fail -eq 0 ]
