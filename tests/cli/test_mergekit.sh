#!/usr/bin/env bash
# `lethe merge` against mergekit (tests/reference/mergekit_reference.py) on the same base and
# three random models of one tiny Llama: task_arithmetic, linear and ties (weights, density,
# lambda, normalize) and dare_linear / dare_ties at density 1 must give the same weights
# (||lethe - mergekit|| / ||mergekit|| <= 1e-6 over the whole model). With mergekit's semantics
# selected (--merge.trim topk, --merge.rescale l1, --merge.normalize false for dare) where they
# differ from lethe's defaults. At density 0.5 the DARE masks are random in both, so the kept
# fraction (binomial, within 5 sigma of 0.5) and the L1 norm of the rescaled delta are checked.
# usage: test_mergekit.sh LETHE SRC
set -uo pipefail
LETHE=$1; SRC=$2
PY=${LETHE_PYTHON:-$SRC/.venv/bin/python}
"$PY" -c "import mergekit, safetensors, torch" 2>/dev/null \
  || { echo "FAIL: mergekit, safetensors and torch are required in $PY (run scripts/setup.sh)"; exit 1; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
CMP="$PY $SRC/tests/reference/compare_weights.py"

for s in 1 2 3 4; do
  "$LETHE" init --model-config "$SRC/configs/models/tiny-llama.json" --seed $s --out "$T/m$s" >/dev/null 2>&1 \
    || { echo "FAIL: lethe init"; exit 1; }
done
B=$T/m1; M=("$T/m2" "$T/m3" "$T/m4")

# case name | lethe merge options | mergekit method | mergekit parameters (JSON)
run_case() {
  local name=$1 lethe_opts=$2 method=$3 params=$4 tol=${5:-1e-6}
  # shellcheck disable=SC2086
  "$LETHE" merge --base "$B" --models "${M[@]}" --format hf --out "$T/l_$name" $lethe_opts >"$T/l_$name.log" 2>&1 \
    || { bad "$name: lethe merge failed: $(tail -2 "$T/l_$name.log")"; return; }
  "$PY" "$SRC/tests/reference/mergekit_reference.py" "$T/k_$name" "$B" "$method" "$params" "${M[@]}" \
    >"$T/k_$name.log" 2>&1 || { bad "$name: mergekit failed: $(tail -3 "$T/k_$name.log")"; return; }
  grep "\[ reference \]" "$T/k_$name.log"
  if out=$($CMP "$T/l_$name" "$T/k_$name" --rtol "$tol" 2>&1); then
    ok; echo "[ reference ] mergekit parity $name: $out"
  else
    bad "$name differs from mergekit: $out"
  fi
}

W='"weights": [1.0, 0.5, 2.0]'
run_case task_arithmetic "--merge task_arithmetic --merge.weights 1,0.5,2 --merge.lambda 0.7" \
  task_arithmetic "{$W, \"lambda\": 0.7}"
run_case task_arithmetic_normalized "--merge task_arithmetic --merge.weights 1,0.5,2 --merge.normalize true" \
  task_arithmetic "{$W, \"normalize\": true}"
run_case linear "--merge linear --merge.weights 1,0.5,2" linear "{$W}"
run_case ties "--merge ties --merge.weights 1,0.5,2 --merge.density 0.3 --merge.lambda 1.2 --merge.trim topk" \
  ties "{$W, \"density\": 0.3, \"lambda\": 1.2}"
run_case ties_unnormalized "--merge ties --merge.weights 1,0.5,2 --merge.density 0.5 --merge.trim topk --merge.normalize false" \
  ties "{$W, \"density\": 0.5, \"normalize\": false}"
# Random models have no equal magnitudes, so lethe's default trim (threshold) agrees too.
run_case ties_threshold "--merge ties --merge.density 0.2" ties '{"weights": [1, 1, 1], "density": 0.2}'
run_case dare_linear_d1 "--merge dare_linear --merge.weights 1,0.5,2 --merge.density 1 --merge.lambda 0.8" \
  dare_linear "{$W, \"density\": 1.0, \"lambda\": 0.8}"
run_case dare_ties_d1 "--merge dare_ties --merge.weights 1,0.5,2 --merge.density 1 --merge.normalize false" \
  dare_ties "{$W, \"density\": 1.0}"

# Density 0.5, L1 rescale, weights 1 and 0 (so the merged delta is model 2's dropped delta): both
# keep ~half of each delta and match its L1 norm.
"$LETHE" merge --base "$B" --models "$T/m2" "$T/m3" --merge.weights 1,0 --merge dare_linear --merge.density 0.5 \
  --merge.rescale l1 --merge.seed 3 --format hf --out "$T/l_dare05" >"$T/l_dare05.log" 2>&1 \
  || bad "lethe dare_linear 0.5: $(tail -1 "$T/l_dare05.log")"
"$PY" "$SRC/tests/reference/mergekit_reference.py" "$T/k_dare05" "$B" dare_linear \
  '{"weights": [1.0, 0.0], "density": 0.5}' "$T/m2" "$T/m3" >"$T/k_dare05.log" 2>&1 \
  || bad "mergekit dare_linear 0.5: $(tail -2 "$T/k_dare05.log")"
if "$PY" - "$B" "$T/m2" "$T/l_dare05" "$T/k_dare05" <<'PY'
import glob, math, sys
import torch
from safetensors.torch import load_file
def load(d):
    out = {}
    for f in glob.glob(f"{d}/*.safetensors"):
        out.update(load_file(f))
    return out
base, model, ours, theirs = (load(d) for d in sys.argv[1:5])
ok = True
for who, merged in (("lethe", ours), ("mergekit", theirs)):
    kept = total = 0
    worst_l1 = 0.0
    for name, b in base.items():
        d = (model[name] - b).float()
        m = (merged[name] - b).float()
        nz = d != 0
        kept += int((m[nz] != 0).sum()); total += int(nz.sum())
        if not bool(nz.any()):
            continue  # norm weights: 1.0 in every random model, no delta to drop
        worst_l1 = max(worst_l1, abs(float(m.abs().sum()) - float(d.abs().sum())) / float(d.abs().sum()))
    frac = kept / total
    sigma = math.sqrt(0.25 / total)
    good = abs(frac - 0.5) < 5 * sigma and worst_l1 < 1e-4
    ok &= good
    print(f"[ reference ] dare density 0.5 ({who}): kept {frac:.4f} of {total} entries "
          f"(|x - 0.5| / sigma = {abs(frac - 0.5) / sigma:.2f}), worst per-tensor L1 mismatch {worst_l1:.1e}")
sys.exit(0 if ok else 1)
PY
then ok; else bad "dare density 0.5: kept fraction or L1 rescale off"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
