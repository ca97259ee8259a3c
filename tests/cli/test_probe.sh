#!/usr/bin/env bash
# `lethe probe` end to end on a tiny model: the table has a row per probe (as is, paraphrased
# questions, the "Sure, here is the answer:" prefix, int8, NF4, FP4), the logit lens's last layer
# is the model's own answer probability, quantized rows report what they changed, 2 ranks give
# the table of 1 rank (at ZeRO 3 too, no rank holding the model whole), the plot is an SVG, and
# bad input is refused before any work.
# usage: test_probe.sh LETHE_BINARY SOURCE_DIR MPIRUN
set -u
LETHE=$1; SRC=$2; MPIRUN=$3
# shellcheck source=mpi_common.sh
source "$SRC/tests/cli/mpi_common.sh"

make_tiny_model
"$LETHE" finetune --model "$T/base" --data "$T/data/train.jsonl" --batch-size 8 --lr 3e-3 --steps 30 --log-every 30 \
  --out "$T/ft" >/dev/null 2>&1 || bad "finetune"
# Six TOFU records (paraphrased and perturbed answers, paraphrased questions) as the forget set.
"$PY" - "$SRC/../shared/data/tofu/forget01.json" "$T/tofu6.json" <<'PY' || bad "TOFU subset"
import json, sys
json.dump(json.load(open(sys.argv[1]))[:6], open(sys.argv[2], "w"))
PY
P=(probe --model "$T/ft" --forget "$T/tofu6.json" --retain "$T/data/retain.jsonl" --max-new-tokens 8 --eval-batch-size 4)
if "$LETHE" "${P[@]}" --out "$T/p1" >"$T/log1" 2>&1; then ok; else bad "probe on 1 rank"; tail -5 "$T/log1"; fi
if "$MPIRUN" -np 2 "$LETHE" "${P[@]}" --out "$T/p2" >"$T/log2" 2>&1; then ok; else bad "probe on 2 ranks"; tail -5 "$T/log2"; fi
"$PY" - "$T/p1" "$T/p2" "$T/ft/config.json" <<'PY' && ok || bad "probe report"
import json, sys, math
a = json.load(open(sys.argv[1] + "/probe.json"))
b = json.load(open(sys.argv[2] + "/probe.json"))
layers = json.load(open(sys.argv[3]))["num_hidden_layers"]
names = [r["probe"] for r in a["probes"]]
assert names == ["as is", "paraphrased questions", 'prefix "Sure, here is the answer:"', "int8", "nf4", "fp4"], names
rows = {r["probe"]: r for r in a["probes"]}
base = rows["as is"]
assert "truth_ratio" in base["forget"] and "retain" in base and "model_utility" in base["tofu"], base
for q in ("int8", "nf4", "fp4"):
    r = rows[q]
    assert r["quantized_tensors"] == 7 * layers, r
    assert 0 < r["weight_relative_error"] < (0.05 if q == "int8" else 0.3), r
assert rows["int8"]["weight_relative_error"] < rows["nf4"]["weight_relative_error"]
# prompt probes change the forget questions only
for n in ("paraphrased questions", 'prefix "Sure, here is the answer:"'):
    assert "retain" not in rows[n] and rows[n]["forget"]["answer_prob"] != base["forget"]["answer_prob"], rows[n]
lens = a["logit_lens"]
assert lens["layers"] == layers and len(lens["forget"]) == layers and len(lens["retain"]) == layers
for split in ("forget", "retain"):
    assert math.isclose(lens[split][-1], base[split]["answer_prob"], rel_tol=1e-4), (split, lens[split][-1], base[split])
svg = open(sys.argv[1] + "/probe.svg").read()
assert svg.startswith("<svg") and svg.count("<polyline") == 2, svg[:200]
import xml.dom.minidom
xml.dom.minidom.parseString(svg)  # well-formed
md = open(sys.argv[1] + "/probe.md").read()
assert "| nf4 |" in md and "Logit lens" in md
PY
$REPORTS "$T/p1" "$T/p2" --keys probes,logit_lens --rtol 1e-5 && ok || bad "the 2-rank probe differs from 1 rank's"
# At ZeRO 3 no rank holds the model whole: each model (as it is and once per quantization: rank 0
# logs 4 sharded loads) is read as shards, a quantization rounds one gathered layer at a time and every rank keeps its shard of
# the result, the logit lens reads the sharded layers; the table is 1 rank's.
"$MPIRUN" -np 2 "$LETHE" "${P[@]}" --zero-stage 3 --out "$T/p2z3" >"$T/log2z3" 2>&1 \
  && [ "$(grep -c "ZeRO 3 over 2 rank(s): each rank read and keeps its shard" "$T/log2z3")" = 4 ] && ok \
  || { bad "probe --zero-stage 3 on 2 ranks"; tail -5 "$T/log2z3"; }
# (The quantized rows' weight errors: the same rounding of the same whole weights, summed layer by
# layer there, so within rounding too.)
$REPORTS "$T/p1" "$T/p2z3" --keys probes,logit_lens --rtol 1e-5 && ok || bad "the ZeRO 3 probe differs from 1 rank's"
# Bad input: named, exit 2, nothing written.
expect_refusal() {  # WANT, then the command
  local want=$1; shift
  "$@" >"$T/err" 2>&1; local rc=$?
  if [ $rc -eq 2 ] && grep -qF -- "$want" "$T/err" && [ ! -e "$T/bad" ]; then ok; else bad "rc $rc, want 2 and '$want': $(tail -1 "$T/err")"; fi
}
expect_refusal "--quantize: unknown quantization 'int3'" "$LETHE" "${P[@]}" --quantize int3 --out "$T/bad"
expect_refusal "--prompts: unknown prompt probe 'jailbreak'" "$LETHE" "${P[@]}" --prompts jailbreak --out "$T/bad"
expect_refusal "--quant-block must be positive" "$LETHE" "${P[@]}" --quant-block 0 --out "$T/bad"
expect_refusal "already exists" "$LETHE" "${P[@]}" --out "$T/p1"
[ -f "$T/p1/COMPLETE" ] && ok || bad "an existing probe directory was touched"
# Relearning: the first half of the forget items learnt again (a large learning rate, so it moves),
# the other half evaluated before and after; 2 ranks give the rows of 1 rank.
R=("${P[@]}" --quantize none --prompts none --no-logit-lens --no-generate --relearn --relearn-lr 3e-3 --relearn-epochs 4
   --relearn-batch-size 2)
"$LETHE" "${R[@]}" --out "$T/r1" >"$T/logr1" 2>&1 && ok || { bad "relearn probe"; tail -3 "$T/logr1"; }
"$MPIRUN" -np 2 "$LETHE" "${R[@]}" --out "$T/r2" >"$T/logr2" 2>&1 && ok || { bad "relearn probe on 2 ranks"; tail -3 "$T/logr2"; }
# With the untrained base model as the retain-only reference: its rows and the ratio R per metric.
"$LETHE" "${R[@]}" --relearn-reference "$T/base" --out "$T/r3" >"$T/logr3" 2>&1 && ok \
  || { bad "relearn probe with a reference"; tail -3 "$T/logr3"; }
"$PY" - "$T/r3" <<'PY' && ok || bad "relearning ratio"
import json, sys
p = json.load(open(sys.argv[1] + "/probe.json"))
rows = {r["probe"]: r for r in p["probes"]}
assert list(rows)[1:] == ["as is, held-out forget part", "relearned", "reference as is, held-out forget part",
                          "reference relearned"], list(rows)
R = p["relearn_ratio"]
assert sorted(R) == ["accuracy", "answer_prob"], R
for m, r in R.items():
    d_probe = rows["relearned"]["forget"][m] - rows["as is, held-out forget part"]["forget"][m]
    d_ref = rows["reference relearned"]["forget"][m] - rows["reference as is, held-out forget part"]["forget"][m]
    want = 1.0 if d_probe <= 0 else min(max(d_ref / d_probe, 0.0), 1.0)
    assert abs(r - want) < 1e-12 and 0 <= r <= 1, (m, r, want)
PY
# Relearning at ZeRO 3 (the probed model and the reference read as shards, relearnt as shards and
# evaluated through the engine that trained them): 1 rank's rows.
"$MPIRUN" -np 2 "$LETHE" "${R[@]}" --relearn-reference "$T/base" --zero-stage 3 --out "$T/r3z3" >"$T/logr3z3" 2>&1 \
  && grep -q "relearning 3 forget items, .* (ZeRO 3)" "$T/logr3z3" && ! grep -q "loads the model whole" "$T/logr3z3" \
  && ok || { bad "relearn probe at ZeRO 3"; tail -3 "$T/logr3z3"; }
$REPORTS "$T/r3" "$T/r3z3" --keys probes --rtol 1e-3 && ok || bad "the ZeRO 3 relearn rows differ from 1 rank's"
expect_refusal "--relearn-reference needs --relearn" "$LETHE" "${P[@]}" --relearn-reference "$T/base" --out "$T/bad"
"$PY" - "$T/r1" <<'PY' && ok || bad "relearn rows"
import json, sys
a = json.load(open(sys.argv[1] + "/probe.json"))["probes"]
names = [r["probe"] for r in a]
assert names == ["as is", "as is, held-out forget part", "relearned"], names
before, after = a[1], a[2]
assert before["forget_items"] == after["forget_items"] == 3 and after["relearned_items"] == 3, after
assert after["forget"]["answer_prob"] != before["forget"]["answer_prob"] and "retain" in after
PY
$REPORTS "$T/r1" "$T/r2" --keys probes --rtol 1e-3 && ok || bad "the 2-rank relearn rows differ from 1 rank's"
expect_refusal "--relearn-share must be in (0, 1)" "$LETHE" "${P[@]}" --relearn --relearn-share 1 --out "$T/bad"
# Membership inference and open-unlearning's layout in `lethe eval`: forget against a holdout of
# six other TOFU records; the model's own TOFU_EVAL.json as the reference gives forget quality 1
# (identical truth ratios) and PrivLeak 0.
"$PY" - "$SRC/../shared/data/tofu/forget01.json" "$T/hold6.json" <<'PY' || bad "TOFU holdout"
import json, sys
json.dump(json.load(open(sys.argv[1]))[6:12], open(sys.argv[2], "w"))
PY
# Five records each of real authors and world facts enter model utility; the base model is the
# reference attack's model; 2 ranks give the report of 1 (GradNorm and reference included).
for f in real_authors world_facts; do
  "$PY" -c "import json,sys; json.dump(json.load(open(sys.argv[1]))[:5], open(sys.argv[2], 'w'))" \
    "$SRC/../shared/data/tofu/${f}_perturbed.json" "$T/$f.json" || bad "$f subset"
done
E=(eval --model "$T/ft" --forget "$T/tofu6.json" --retain "$T/data/retain.jsonl" --holdout "$T/hold6.json" --max-new-tokens 8
  --real-authors "$T/real_authors.json" --world-facts "$T/world_facts.json")
"$LETHE" "${E[@]}" --mia-reference "$T/base" --out "$T/e1" >"$T/loge1" 2>&1 && ok \
  || { bad "eval --holdout"; tail -3 "$T/loge1"; }
"$MPIRUN" -np 2 "$LETHE" "${E[@]}" --mia-reference "$T/base" --out "$T/e1r2" >"$T/loge1r2" 2>&1 && ok \
  || { bad "eval --holdout on 2 ranks"; tail -3 "$T/loge1r2"; }
# At ZeRO 3 no rank loads either model whole: each reads its shard of the decoder layers, the
# ranks score their shares of the items in as many passes each (batches of 2: of the 5 real
# authors rank 1 has a batch fewer, and runs a filler), GradNorm takes every item on every rank
# through the engine, and the report is 1 rank's.
"$MPIRUN" -np 2 "$LETHE" "${E[@]}" --mia-reference "$T/base" --zero-stage 3 --eval-batch-size 2 --out "$T/e1z3" \
  >"$T/loge1z3" 2>&1 \
  && [ "$(grep -c "ZeRO 3 over 2 rank(s): each rank read and keeps its shard" "$T/loge1z3")" -ge 2 ] && ok \
  || { bad "eval --zero-stage 3 on 2 ranks"; tail -3 "$T/loge1z3"; }
# (Min-K%++ subtracts log-probabilities of similar size: 1e-4, as on 2 ranks above; GradNorm's
# sums are ordered differently.)
$REPORTS "$T/e1" "$T/e1z3" --keys splits,tofu,mia --rtol 1e-5 && ok || bad "the ZeRO 3 evaluation differs from 1 rank's"
"$LETHE" "${E[@]}" --tofu-reference "$T/e1/TOFU_EVAL.json" --out "$T/e2" >"$T/loge2" 2>&1 && ok \
  || { bad "eval --tofu-reference TOFU_EVAL.json"; tail -3 "$T/loge2"; }
"$PY" - "$T/e1" "$T/e2" <<'PY' && ok || bad "membership inference / open-unlearning layout"
import json, sys
r1 = json.load(open(sys.argv[1] + "/report.json"))
auc = r1["mia"]["auc"]
assert sorted(auc) == ["gradnorm", "loss", "min_k", "min_k_plus_plus", "reference", "zlib"], auc
assert all(0 <= v <= 1 for v in auc.values()), auc
terms = r1["tofu"]["model_utility_terms"]
assert terms == ["retain_Q_A_Prob", "retain_Q_A_ROUGE", "ra_Q_A_Prob_normalised", "ra_Q_A_ROUGE", "ra_Truth_Ratio",
                 "wf_Q_A_Prob_normalised", "wf_Q_A_ROUGE", "wf_Truth_Ratio"], terms
assert 0 <= r1["splits"]["real_authors"]["answer_prob_normalised"] <= 1
assert all(v > 0 for v in r1["splits"]["holdout"]["mia_scores"]["gradnorm"])
ev = json.load(open(sys.argv[1] + "/TOFU_EVAL.json"))
assert len(ev["forget_truth_ratio"]["value_by_index"]) == 6
assert set(ev["forget_Q_A_Prob"]["value_by_index"]["0"]) == {"prob", "avg_loss"}
assert abs(ev["mia_min_k"]["agg_value"] - auc["min_k"]) < 1e-12
sm = json.load(open(sys.argv[1] + "/TOFU_SUMMARY.json"))
assert sm["forget_Q_A_Prob"] == ev["forget_Q_A_Prob"]["agg_value"] and "model_utility" in sm
assert len(ev["ra_Q_A_Prob_normalised"]["value_by_index"]) == 5 and "wf_Truth_Ratio" in ev and "mia_gradnorm" in sm
r2r = json.load(open(sys.argv[1] + "r2/report.json"))
close = lambda a, b: abs(a - b) <= 1e-4 * max(1.0, abs(b))
for split in ("forget", "holdout"):
    for attack, v in r1["splits"][split]["mia_scores"].items():
        w = r2r["splits"][split]["mia_scores"][attack]
        assert all(close(x, y) for x, y in zip(v, w)), (split, attack, v, w)
assert close(r1["tofu"]["model_utility"], r2r["tofu"]["model_utility"]), (r1["tofu"], r2r["tofu"])
r2 = json.load(open(sys.argv[2] + "/report.json"))
assert r2["tofu"]["forget_quality"] == 1.0, r2["tofu"]
assert r2["mia"]["priv_leak"] == 0.0, r2["mia"]
PY
expect_refusal "--zero-stage is not supported (0 or 3)" "$LETHE" "${E[@]}" --zero-stage 2 --out "$T/bad"
expect_refusal "--holdout needs --forget" "$LETHE" eval --model "$T/ft" --holdout "$T/hold6.json" --out "$T/bad"
expect_refusal "--mia-reference needs --holdout" "$LETHE" eval --model "$T/ft" --forget "$T/tofu6.json" \
  --mia-reference "$T/base" --out "$T/bad"
echo '{"forget_truth_ratio": {"value_by_index": {"x": {"score": 1}}}}' >"$T/badref.json"
expect_refusal "forget_truth_ratio index 'x' is not a number" "$LETHE" "${E[@]}" --tofu-reference "$T/badref.json" --out "$T/bad"
# No probe but the model as it is: one row, no plot.
"$LETHE" "${P[@]}" --quantize none --prompts none --no-logit-lens --no-generate --out "$T/p0" >/dev/null 2>&1 \
  && [ "$("$PY" -c "import json,sys; print(len(json.load(open(sys.argv[1]))['probes']))" "$T/p0/probe.json")" = 1 ] \
  && [ ! -e "$T/p0/probe.svg" ] && ok || bad "probe with every probe off"

echo "probe: $pass passed, $fail failed"
[ $fail -eq 0 ]
