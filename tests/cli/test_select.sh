#!/usr/bin/env bash
# Checkpoint selection (`lethe unlearn --eval-every N --select ...`) end to end on a tiny model:
# best keeps the evaluated step that maximises the criterion and writes that step's weights
# (bit-identical to a run trained only that far), 1 and 4 ranks (ZeRO 3) choose the same step and
# write the same weights, a resume from a checkpoint taken after the choice keeps it, MUSE's rule
# stops at the first step at or below the retain-only model's forget memorisation, the default
# criterion (forget quality x model utility) runs on TOFU records, and bad input is refused.
# usage: test_select.sh LETHE_BINARY SOURCE_DIR MPIRUN
set -u
LETHE=$1; SRC=$2; MPIRUN=$3
# shellcheck source=mpi_common.sh
source "$SRC/tests/cli/mpi_common.sh"

make_finetuned_model
D="$T/data"
# Gradient ascent raises the forget NLL step by step: minimising it picks the first evaluation.
U=(unlearn --model "$T/ft" --forget "$D/forget.jsonl" --retain "$D/retain.jsonl" --method ga --batch-size 8 --lr 1e-3
   --schedule constant --warmup-steps 0 --format hf --log-every 1)
S=("${U[@]}" --steps 6 --eval-every 2 --eval-forget "$D/forget.jsonl" --eval-retain "$D/retain.jsonl"
   --select best --select-criterion=-forget.mean_nll)
"$LETHE" "${S[@]}" --out "$T/best1" >"$T/log1" 2>&1 && ok || { bad "select best on 1 rank"; tail -5 "$T/log1"; }
"$LETHE" "${U[@]}" --steps 2 --out "$T/two" >/dev/null 2>&1 || bad "2-step run"
"$PY" - "$T/best1" <<'PY' && ok || bad "selection record"
import json, sys, glob
cfg = None
for f in glob.glob(sys.argv[1] + "/*.json"):
    j = json.load(open(f))
    if isinstance(j, dict) and "result" in j:
        cfg = j
sel = cfg["result"]["selection"]
assert sel["rule"] == "best" and sel["criterion"] == "-forget.mean_nll" and sel["kept_step"] == 2, sel
assert sel["output_step"] == 2 and cfg["result"]["steps"] == 6, (sel, cfg["result"]["steps"])
hist = cfg["result"]["history"]
assert [h["step"] for h in hist] == [2, 4, 6], hist
nll = [h["forget"]["mean_nll"] for h in hist]
assert nll == sorted(nll) and abs(sel["value"] - nll[0]) < 1e-12, (nll, sel)
PY
$CMP "$T/best1" "$T/two" --exact >"$T/cmp1" 2>&1 && ok || { bad "the selected output is not step 2's weights"; cat "$T/cmp1"; }
grep -q "returning the weights kept at step 2" "$T/log1" && ok || bad "no log line for the kept step"
# 4 ranks, ZeRO 3 (each rank keeps its quarter of the step-2 weights): the same choice and weights.
"$MPIRUN" -np 4 "$LETHE" "${S[@]}" --zero-stage 3 --out "$T/best4" >"$T/log4" 2>&1 && ok \
  || { bad "select best on 4 ranks"; tail -5 "$T/log4"; }
grep -q "returning the weights kept at step 2" "$T/log4" && ok || bad "4 ranks kept another step"
$CMP "$T/best4" "$T/best1" --rtol 1e-5 >"$T/cmp4" 2>&1 && ok || { bad "4 ranks differ from 1 rank"; cat "$T/cmp4"; }
# Evaluation while the layers are ZeRO 3 shards (each forward gathers layers: a collective): every
# rank scores every item, so a split that does not divide over the ranks (one item on two) runs,
# and the evaluation history equals one rank's.
head -1 "$D/forget.jsonl" >"$T/one.jsonl"
O=("${U[@]}" --steps 2 --eval-every 1 --eval-forget "$T/one.jsonl" --eval-retain "$D/retain.jsonl")
"$LETHE" "${O[@]}" --out "$T/one1" >"$T/logo1" 2>&1 && ok || { bad "evaluation of one item on 1 rank"; tail -5 "$T/logo1"; }
"$MPIRUN" -np 2 "$LETHE" "${O[@]}" --zero-stage 3 --out "$T/one2" >"$T/logo2" 2>&1 && ok \
  || { bad "evaluation of one item on 2 ranks at ZeRO 3"; tail -5 "$T/logo2"; }
"$PY" - "$T/one1" "$T/one2" <<'PY' && ok || bad "ZeRO 3 evaluation history differs from 1 rank's"
import json, sys, glob
def history(d):
    cfg = [j for j in (json.load(open(f)) for f in glob.glob(d + "/*.json")) if isinstance(j, dict) and "result" in j][0]
    return cfg["result"]["history"]
a, b = history(sys.argv[1]), history(sys.argv[2])
assert [h["step"] for h in a] == [h["step"] for h in b] == [1, 2], (a, b)
for x, y in zip(a, b):
    for split in ("forget", "retain"):
        u, v = x[split]["mean_nll"], y[split]["mean_nll"]
        assert abs(u - v) <= 1e-5 * abs(u), (split, u, v)
PY
# Resume from the step-4 checkpoint (the choice of step 2 is in it): bit-identical output.
"$LETHE" "${S[@]}" --checkpoint-every 4 --checkpoint-dir "$T/ck" --out "$T/straight" >/dev/null 2>&1 \
  && cp -r "$T/ck" "$T/ck2" \
  && "$MPIRUN" -np 2 "$LETHE" "${S[@]}" --zero-stage 1 --checkpoint-every 4 --checkpoint-dir "$T/ck2" --resume --out "$T/resumed" >"$T/logr" 2>&1 \
  && grep -q "resumed from" "$T/logr" && grep -q '"kept_step": *2' "$T"/ck/step-00000004/manifest.json \
  && $CMP "$T/resumed" "$T/straight" --exact >/dev/null && ok || { bad "resume lost the selection"; tail -3 "$T/logr"; }
# MUSE's rule against the untrained base model's forget memorisation.
"$LETHE" eval --model "$T/base" --forget "$D/forget.jsonl" --no-generate --out "$T/ref" >/dev/null 2>&1 || bad "reference report"
"$LETHE" "${U[@]}" --steps 8 --eval-every 1 --eval-forget "$D/forget.jsonl" --select muse \
  --select-reference "$T/ref/report.json" --out "$T/muse" >"$T/logm" 2>&1 && ok || { bad "select muse"; tail -5 "$T/logm"; }
"$PY" - "$T/muse" "$T/ref/report.json" <<'PY' && ok || bad "muse selection"
import json, sys, glob
cfg = [j for j in (json.load(open(f)) for f in glob.glob(sys.argv[1] + "/*.json")) if isinstance(j, dict) and "result" in j][0]
ref = json.load(open(sys.argv[2]))["splits"]["forget"]["exact_memorization"]
sel, res = cfg["result"]["selection"], cfg["result"]
mems = [h["forget"]["exact_memorization"] for h in res["history"]]
assert sel["rule"] == "muse" and abs(sel["reference_memorization"] - ref) < 1e-12, sel
if sel["reached"]:  # the first step at or below, and training stopped there
    first = next(i for i, m in enumerate(mems) if m <= ref)
    assert sel["output_step"] == res["history"][first]["step"] == res["steps"] and len(mems) == first + 1, (sel, mems)
else:
    assert all(m > ref for m in mems) and sel["output_step"] == res["steps"] == 8, (sel, mems)
PY
# The default criterion, fq_mu, on six TOFU records against the finetuned model's own report.
"$PY" -c "import json,sys; json.dump(json.load(open(sys.argv[1]))[:6], open(sys.argv[2], 'w'))" \
  "$SRC/../shared/data/tofu/forget01.json" "$T/tofu6.json" || bad "TOFU subset"
"$LETHE" eval --model "$T/ft" --forget "$T/tofu6.json" --no-generate --out "$T/tref" >/dev/null 2>&1 || bad "TOFU reference"
"$LETHE" unlearn --model "$T/ft" --forget "$T/tofu6.json" --method ga --batch-size 2 --lr 1e-3 --steps 4 --format hf \
  --eval-every 2 --eval-forget "$T/tofu6.json" --eval-retain "$D/retain.jsonl" --select best \
  --select-reference "$T/tref/TOFU_EVAL.json" --out "$T/fqmu" >"$T/logf" 2>&1 && ok || { bad "select best fq_mu"; tail -5 "$T/logf"; }
"$PY" - "$T/fqmu" <<'PY' && ok || bad "fq_mu record"
import json, sys, glob
cfg = [j for j in (json.load(open(f)) for f in glob.glob(sys.argv[1] + "/*.json")) if isinstance(j, dict) and "result" in j][0]
sel, hist = cfg["result"]["selection"], cfg["result"]["history"]
assert sel["criterion"] == "fq_mu" and sel["output_step"] in (2, 4), sel
for h in hist:
    fq, mu = h["forget_quality"], h["model_utility"]
    assert abs(h["fq_mu"] - 2 / (1 / fq + 1 / mu)) < 1e-12 and "truth_ratio" in h["forget"], h
best = max(hist, key=lambda h: h["fq_mu"])
assert sel["kept_step"] == best["step"], (sel, hist)
PY
# Bad input: refused before training, nothing written.
expect_refusal() {  # message, command...
  local msg=$1; shift
  if "$@" >"$T/err" 2>&1; then bad "accepted: $msg"; return; fi
  grep -qF -- "$msg" "$T/err" && [ ! -e "$T/bad" ] && ok || { bad "refusal '$msg'"; tail -3 "$T/err"; }
}
expect_refusal "--select best needs --eval-every N" "$LETHE" "${U[@]}" --steps 2 --select best --eval-forget "$D/forget.jsonl" --out "$T/bad"
expect_refusal "needs --select-reference" "$LETHE" "${U[@]}" --steps 2 --eval-every 1 --eval-forget "$D/forget.jsonl" \
  --eval-retain "$D/retain.jsonl" --select best --out "$T/bad"
expect_refusal "--select muse needs --eval-forget" "$LETHE" "${U[@]}" --steps 2 --eval-every 1 --select muse \
  --select-reference "$T/ref/report.json" --out "$T/bad"
expect_refusal "the evaluation has no 'nope'" "$LETHE" "${U[@]}" --steps 2 --eval-every 1 --eval-forget "$D/forget.jsonl" \
  --select best --select-criterion nope --out "$T/bad"

echo "select: $pass passed, $fail failed"
[ $fail -eq 0 ]
