#!/usr/bin/env bash
# `lethe sweep` end to end on a tiny model: a grid of 6 configurations (ga and npo, two step
# counts, two npo betas) on 1 rank, on 4 ranks (4 groups, configurations queued) and on 4 ranks in
# 2 groups of 2: the same table (1e-4), the Pareto front recomputed from the table, the plot; a
# per-method LoRA (MemFlex) and learning rate with --eval-retain, also at ZeRO 3 on 2 ranks (kept
# sharded, the same table and models); a resume reruns only what was not finished; bad grids and
# an existing --out are refused.
# usage: test_sweep.sh LETHE_BINARY SOURCE_DIR MPIRUN
set -u
LETHE=$1; SRC=$2; MPIRUN=$3
# shellcheck source=mpi_common.sh
source "$SRC/tests/cli/mpi_common.sh"

make_finetuned_model
D="$T/data"
cat >"$T/grid.json" <<'JSON'
{"methods": ["ga", "npo"], "lr": [1e-3], "steps": [2, 3], "options": {"npo": {"npo.beta": [0.1, 0.5]}}}
JSON
S=(sweep --model "$T/ft" --forget "$D/forget.jsonl" --retain "$D/retain.jsonl" --grid "$T/grid.json" --batch-size 4
   --no-generate --log-every 10)
"$LETHE" "${S[@]}" --out "$T/s1" >"$T/log1" 2>&1 && ok || { bad "sweep on 1 rank"; tail -5 "$T/log1"; }
"$MPIRUN" -np 4 "$LETHE" "${S[@]}" --out "$T/s4" >"$T/log4" 2>&1 && ok || { bad "sweep on 4 ranks"; tail -5 "$T/log4"; }
"$MPIRUN" -np 4 "$LETHE" "${S[@]}" --groups 2 --out "$T/s22" >"$T/log22" 2>&1 && ok \
  || { bad "sweep on 2 groups of 2"; tail -5 "$T/log22"; }
"$PY" - "$T/s1" "$T/s4" "$T/s22" <<'PY' && ok || bad "sweep tables"
import json, sys, os
runs = [json.load(open(d + "/sweep.json")) for d in sys.argv[1:]]
names = [r["name"] for r in runs[0]["results"]]
assert names == ["ga_lr0.001_s2", "ga_lr0.001_s3", "npo_lr0.001_s2_npo.beta0.1", "npo_lr0.001_s2_npo.beta0.5",
                 "npo_lr0.001_s3_npo.beta0.1", "npo_lr0.001_s3_npo.beta0.5"], names
assert runs[1]["group_sizes"] == [1, 1, 1, 1] and runs[2]["group_sizes"] == [2, 2], [r["group_sizes"] for r in runs]
for r in runs[0]["results"]:
    assert r["steps_done"] == r["steps"] and 0 <= r["x"] <= 1 and r["y"] > 0, r
    assert r["y"] == r["tofu"]["model_utility"] and abs(r["x"] - (1 - r["summary"]["forget"]["answer_prob"])) < 1e-12
close = lambda a, b: abs(a - b) <= 1e-4 * max(1.0, abs(b))
for other in runs[1:]:
    for a, b in zip(runs[0]["results"], other["results"]):
        assert a["name"] == b["name"] and close(a["x"], b["x"]) and close(a["y"], b["y"]), (a, b)
        assert a["pareto"] == b["pareto"], (a["name"], a["pareto"], b["pareto"])
# The front, recomputed: no other point at least as good on both and better on one.
pts = [(r["x"], r["y"]) for r in runs[0]["results"]]
for i, r in enumerate(runs[0]["results"]):
    dom = any(j != i and p[0] >= pts[i][0] and p[1] >= pts[i][1] and p != pts[i] for j, p in enumerate(pts))
    assert r["pareto"] == (not dom), (r["name"], r["pareto"])
assert any(r["pareto"] for r in runs[0]["results"])
md = open(sys.argv[1] + "/sweep.md").read()
assert all(n in md for n in names) and "Pareto" in md
svg = open(sys.argv[1] + "/sweep.svg").read()
assert svg.startswith("<svg") and svg.count("<circle") == 6
for n in names:
    assert os.path.exists(f"{sys.argv[1]}/runs/{n}/eval/report.json"), n
PY
# Resume: one configuration's result gone (an interrupted sweep): only it runs again.
cp -r "$T/s1" "$T/sr" && rm "$T/sr/runs/npo_lr0.001_s3_npo.beta0.5/result.json" "$T/sr/sweep.md"
"$LETHE" "${S[@]}" --resume --out "$T/sr" >"$T/logr" 2>&1 && ok || { bad "sweep --resume"; tail -5 "$T/logr"; }
[ "$(grep -c "was finished before" "$T/logr")" = 5 ] && grep -q "runs npo_lr0.001_s3_npo.beta0.5" "$T/logr" && ok \
  || bad "resume did not rerun exactly the unfinished configuration"
cmp -s <("$PY" -c "import json,sys; print([(r['name'], r['x'], r['y']) for r in json.load(open(sys.argv[1]))['results']])" "$T/s1/sweep.json") \
       <("$PY" -c "import json,sys; print([(r['name'], r['x'], r['y']) for r in json.load(open(sys.argv[1]))['results']])" "$T/sr/sweep.json") \
  && ok || bad "the resumed sweep's table differs"
# Per-method settings: MemFlex with its own LoRA and learning rate beside full-parameter gd, both
# evaluated on a sample of the retain set (--eval-retain) while gd trains on all of it.
head -n 6 "$D/retain.jsonl" >"$T/retain_eval.jsonl"
cat >"$T/grid_lora.json" <<'JSON'
{"methods": ["gd", "memflex"], "lr": {"memflex": [1e-2]}, "steps": [2],
 "lora": {"memflex": {"rank": 4, "alpha": 8, "dropout": 0}}, "options": {"memflex": {"memflex.sigma": [0.0]}}}
JSON
"$LETHE" "${S[@]/$T\/grid.json/$T/grid_lora.json}" --lr 1e-3 --eval-retain "$T/retain_eval.jsonl" --keep-models \
  --out "$T/sl" >"$T/logl" 2>&1 && ok || { bad "sweep with a per-method LoRA"; tail -5 "$T/logl"; }
# The same grid at ZeRO 3 on one group of 2 ranks: each run keeps its layers as shards from
# loading to the end (MemFlex locates its adapters through the engine), the evaluation gathers
# one layer at a time and the kept models are written from the shards; the table and the models
# are those of 1 rank.
"$MPIRUN" -np 2 "$LETHE" "${S[@]/$T\/grid.json/$T/grid_lora.json}" --lr 1e-3 --eval-retain "$T/retain_eval.jsonl" \
  --keep-models --groups 1 --zero-stage 3 --out "$T/sz3" >"$T/logz3" 2>&1 && ok \
  || { bad "sweep at ZeRO 3 on 2 ranks"; tail -5 "$T/logz3"; }
grep -q "no rank holds them whole" "$T/logz3" && ! grep -q "loads the model whole" "$T/logz3" && ok \
  || bad "a ZeRO 3 sweep run loaded the model whole"
for n in gd_lr0.001_s2 memflex_lr0.01_s2_lora4_memflex.sigma0.0; do
  $CMP "$T/sz3/runs/$n/model" "$T/sl/runs/$n/model" --rtol 1e-5 >/dev/null && ok \
    || bad "$n: the model kept by the ZeRO 3 sweep differs from 1 rank's"
done
"$PY" - "$T/sl" "$T/sz3" <<'PY' && ok || bad "the ZeRO 3 sweep's table differs from 1 rank's"
import json, sys
a, b = (json.load(open(d + "/sweep.json"))["results"] for d in sys.argv[1:])
close = lambda u, v: abs(u - v) <= 1e-4 * max(1.0, abs(v))
assert [r["name"] for r in a] == [r["name"] for r in b]
for u, v in zip(a, b):
    assert close(u["x"], v["x"]) and close(u["y"], v["y"]), (u, v)
    for split, fields in u["summary"].items():
        for k, x in fields.items():
            assert close(x, v["summary"][split][k]), (u["name"], split, k, x, v["summary"][split][k])
PY
"$PY" - "$T/sl" "$T/logl" "$D/retain.jsonl" <<'PY' && ok || bad "per-method LoRA and --eval-retain"
import json, re, sys
s = json.load(open(sys.argv[1] + "/sweep.json"))
names = [r["name"] for r in s["results"]]
assert names == ["gd_lr0.001_s2", "memflex_lr0.01_s2_lora4_memflex.sigma0.0"], names
gd, mf = s["results"]
assert "lora" not in gd and mf["lora"] == {"rank": 4, "alpha": 8, "dropout": 0}, (gd, mf)
assert gd["lr"] == 1e-3 and mf["lr"] == 1e-2
trained = [int(n) for n in re.findall(r"training (\d+) parameters", open(sys.argv[2]).read())]
assert len(set(trained)) == 2 and min(trained) * 20 < max(trained), trained  # LoRA matrices vs every weight
n_retain = sum(1 for _ in open(sys.argv[3]))
for n in names:
    rep = json.load(open(f"{sys.argv[1]}/runs/{n}/eval/report.json"))
    assert rep["splits"]["retain"]["items"] == 6 != n_retain, rep["splits"]["retain"]["items"]
assert "LoRA r4 a8 d0, memflex.sigma=0.0" in open(sys.argv[1] + "/sweep.md").read()
PY
# Groups that finish far apart: config 0 takes 1 step, config 1 several hundred, and the collective
# deadline is 1 s. Rank 0 waits at the groups' join longer than that, under --join-timeout instead
# (and a join timeout shorter than the wait ends the job with the deadline's message).
cat >"$T/grid_uneven.json" <<'JSON'
{"methods": ["ga"], "steps": [1, 400]}
JSON
U=("${S[@]/$T\/grid.json/$T/grid_uneven.json}")
"$MPIRUN" -np 2 "$LETHE" "${U[@]}" --timeout 1 --out "$T/su" >"$T/logu" 2>&1 \
  && [ "$("$PY" -c "import json,sys; print(len(json.load(open(sys.argv[1]))['results']))" "$T/su/sweep.json")" = 2 ] \
  && ok || { bad "groups finishing far apart (--timeout 1)"; tail -5 "$T/logu"; }
if "$MPIRUN" -np 2 "$LETHE" "${U[@]}" --timeout 1 --join-timeout 0.01 --out "$T/sj" >"$T/logj" 2>&1; then
  bad "a join longer than --join-timeout was accepted"
else
  grep -q "barrier on communicator 'world' did not complete within 0.01 s" "$T/logj" && ok || { bad "join-timeout message"; tail -3 "$T/logj"; }
fi
# Bad input: one message, nothing written.
expect_refusal() {  # message, grid text
  echo "$2" >"$T/bad.json"
  if "$LETHE" "${S[@]/$T\/grid.json/$T/bad.json}" --out "$T/bad" >"$T/err" 2>&1; then bad "accepted: $1"; return; fi
  grep -qF -- "$1" "$T/err" && [ ! -e "$T/bad" ] && ok || { bad "refusal '$1'"; tail -3 "$T/err"; }
}
expect_refusal "unknown unlearning method 'nope'" '{"methods": ["nope"]}'
expect_refusal "method 'npo' has no option 'npo.gamma2'" '{"methods": ["npo"], "options": {"npo": {"npo.gamma2": [1.0]}}}'
expect_refusal "'lr' holds -1" '{"methods": ["ga"], "lr": [-1]}'
expect_refusal "'options.npo.npo.beta' holds \"x\"" '{"methods": ["npo"], "options": {"npo": {"npo.beta": ["x"]}}}'
expect_refusal "unknown field 'method'" '{"method": ["ga"]}'
expect_refusal "not a JSON object" '[1, 2]'
expect_refusal "'lora.ga': 'rank' must be a positive integer" '{"methods": ["ga"], "lora": {"ga": {"rank": 0}}}'
"$LETHE" "${S[@]}" --out "$T/s1" >"$T/err" 2>&1 && bad "an existing --out was accepted" \
  || { grep -q "already exists" "$T/err" && ok || bad "existing --out message"; }

echo "sweep: $pass passed, $fail failed"
[ $fail -eq 0 ]
