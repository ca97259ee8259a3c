# Shared by the mpirun CLI tests (sourced after LETHE, SRC and MPIRUN are set): mpirun as root
# with oversubscription, a scratch directory removed on exit, pass/fail counters, and the
# comparisons of weights (tests/reference/compare_weights.py) and reports (compare_reports.py).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
PY=${LETHE_PYTHON:-$SRC/.venv/bin/python}  # the project environment (safetensors, torch)
CMP="$PY $SRC/tests/reference/compare_weights.py"
REPORTS="$PY $SRC/tests/reference/compare_reports.py"  # two report.json files agree (numbers within a tolerance)

# The small synthetic data set ($T/data) and a random tiny model with its own tokenizer ($T/base),
# of the family in MODEL_CONFIG (default configs/models/tiny-llama.json).
make_tiny_model() {
  "$LETHE" synth --out "$T/data" --people 3 --books 1 >/dev/null 2>&1
  "$LETHE" init --model-config "${MODEL_CONFIG:-$SRC/configs/models/tiny-llama.json}" --train-tokenizer "$T/data/train.jsonl" \
    --vocab-size 300 --out "$T/base" >/dev/null 2>&1
}

# make_tiny_model, then $T/ft: the tiny model finetuned on the synthetic training data (20 steps).
make_finetuned_model() {
  make_tiny_model
  "$LETHE" finetune --model "$T/base" --data "$T/data/train.jsonl" --batch-size 8 --lr 3e-3 --steps 20 --log-every 20 \
    --out "$T/ft" >/dev/null 2>&1 || bad "finetune"
}
