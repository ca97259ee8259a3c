#!/usr/bin/env bash
# Peak resident memory per rank for ZeRO 0/1/2/3 at 1, 2 and 4 ranks on a 56M-parameter Llama
# (configs/models/small-llama-50m.json with the Llama-2 tokenizer's 32000-token vocabulary),
# next to the expected (params + grads + Adam state) / N share. Hardware: any CPU machine with
# ~8 GiB; about 4 minutes on 2 cores. Results: docs/DISTRIBUTED.md.
# usage: bench/zero_memory.sh [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
STEPS=${1:-2}
L=build/lethe
TOK=../shared/data/tokenizers/llama2/tokenizer.json
[ -f "$TOK" ] || { echo "needs the Llama-2 tokenizer in ../shared/data/tokenizers" >&2; exit 2; }
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
$L synth --out "$W/data" --people 4 --books 2 >/dev/null 2>&1
$L init --model-config configs/models/small-llama-50m.json --tokenizer "$TOK" --out "$W/base" >/dev/null 2>&1
$L convert --in "$W/base" --out "$W/base_native" --to native >/dev/null 2>&1  # loading cost is the same for all runs
echo "| ranks | ZeRO | peak RSS per rank (MiB) | max | expected model state per rank (MiB) |"
echo "|---:|---:|---|---:|---:|"
for np in 1 2 4; do
  for z in 0 1 2 3; do
    mpirun -np $np $L finetune --model "$W/base_native" --data "$W/data/train.jsonl" --template llama2 --steps "$STEPS" \
      --batch-size 4 --max-len 64 --zero-stage $z --out "$W/o_${np}_$z" --threads 1 >"$W/log" 2>&1 \
      || { tail "$W/log"; exit 1; }
    peaks=$(grep -o 'peak resident memory per rank (MiB): .*' "$W/log" | sed 's/.*: //')
    /usr/bin/python3 - "$np" "$z" "$peaks" <<'PY'
import json, sys
n, z, peaks = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
P = 56369664 * 4 / 2**20          # fp32 parameters, MiB
G, O = P, 2 * P                    # fp32 gradients, Adam m and v
expected = P + G + O if z == 0 else P + G + O / n if z == 1 else P + (G + O) / n if z == 2 else (P + G + O) / n
print(f"| {n} | {z} | {', '.join(map(str, peaks))} | {max(peaks)} | {expected:.0f} |")
PY
    rm -rf "$W/o_${np}_$z" "$W/o_${np}_$z.ckpt"
  done
done
