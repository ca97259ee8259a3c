#!/usr/bin/env bash
# The checks that need a GPU (one is enough), after scripts/build_offline.sh (or a normal build
# with CUDA + NCCL): device and versions; the distributed test binary on one rank with its NCCL
# test; lethe on the GPU vs the CPU (finetune and unlearning, ZeRO 0 and 3 on the NCCL
# communicator: the same model within fp32 kernel-rounding tolerance); training-step throughput vs
# Hugging Face transformers on the same GPU; the 1B step's MFU against the batch and its operator
# calls per step. Writes logs and a summary into OUT.
# Hardware: one CUDA GPU; about 5 minutes on an H100. usage: bench/gpu_check.sh BUILD OUT
set -uo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd); B=$(cd "$1" && pwd); O=$2; mkdir -p "$O"
[ -f "$B/env.sh" ] && source "$B/env.sh"
PY=${PYTHON:-python3}; L=$B/lethe; MPIRUN=${MPIRUN:-mpirun.openmpi}
S=$O/summary.txt; : >"$S"
say() { echo "$*" | tee -a "$S"; }
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "nccl", torch.cuda.nccl.version())'; } 2>&1 | tee -a "$S"

"$MPIRUN" -np 1 "$B/tests/lethe_dist_tests" >"$O/dist_np1.log" 2>&1; say "dist tests, 1 rank (NCCL test included): exit $?"
grep -E "^\[ +(OK|SKIPPED|FAILED) +\] Nccl|PASSED|FAILED" "$O/dist_np1.log" | tee -a "$S"

T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
"$L" synth --out "$T/data" --people 3 --books 1 >/dev/null 2>&1
"$L" init --model-config "$SRC/configs/models/tiny-llama.json" --train-tokenizer "$T/data/train.jsonl" \
  --vocab-size 300 --out "$T/base" >/dev/null 2>&1
FT=(finetune --model "$T/base" --data "$T/data/train.jsonl" --batch-size 8 --lr 2e-3 --steps 20 --format hf)
UL=(unlearn --method npo --forget "$T/data/forget.jsonl" --retain "$T/data/retain.jsonl" --batch-size 8 --lr 1e-3
    --steps 10 --format hf)
CMP="$PY $SRC/tests/reference/compare_weights.py"
for dev in cpu cuda; do
  "$L" "${FT[@]}" --device $dev --out "$T/ft_$dev" >>"$O/runs.log" 2>&1 || say "finetune on $dev failed"
done
say "finetune 20 steps, cuda vs cpu: $($CMP "$T/ft_cuda" "$T/ft_cpu" --rtol 1e-4 2>&1 | tail -1)"
for z in 0 3; do
  for dev in cpu cuda; do
    "$L" "${UL[@]}" --model "$T/ft_cpu" --zero-stage $z --device $dev --out "$T/npo_${dev}_$z" >>"$O/runs.log" 2>&1 \
      || say "npo on $dev ZeRO $z failed"
  done
  say "npo 10 steps ZeRO $z (NCCL communicator), cuda vs cpu: $($CMP "$T/npo_cuda_$z" "$T/npo_cpu_$z" --rtol 1e-4 2>&1 | tail -1)"
done
# ZeRO 3 on NCCL overlaps by default (--zero3-overlap auto: gathers and reduce-scatters started on
# the communication stream); without it the model must be the same exactly.
"$L" "${UL[@]}" --model "$T/ft_cpu" --zero-stage 3 --zero3-overlap off --device cuda --out "$T/npo_cuda_3_off" \
  >>"$O/runs.log" 2>&1 || say "npo on cuda ZeRO 3 without overlap failed"
say "npo ZeRO 3 on cuda, overlap (auto) vs off: $($CMP "$T/npo_cuda_3" "$T/npo_cuda_3_off" --exact 2>&1 | tail -1)"

# CONFIG BATCH SEQ METHOD STEPS DTYPE ATTN LORA_RANK: lethe bench step vs transformers (+ peft), alternating.
for spec in "tiny-llama.json 16 64 ga 20 float32 eager 0" "llama-1b.json 4 2048 ga 5 bfloat16 sdpa 0" \
            "llama-1b.json 4 2048 gd 5 bfloat16 sdpa 0" "llama3-8b.json 1 2048 npo 3 bfloat16 sdpa 16"; do
  read -r cfg b t m n dt attn lr <<<"$spec"
  say "$(PYTHON=$PY BUILD=$B bash "$SRC/bench/run_train_step.sh" "$SRC/configs/models/$cfg" $b $t $m $n 16 2 $lr cuda $dt $attn 2>&1)"
done
# Host time against GPU time (where CUDA graphs would pay): the 1B ga step at 1, 2 and 4 sequences
# of 2048 (lethe alone; a step bound by the host's operator calls gains MFU with the batch), and
# the operator calls of one step on this device (--count-ops; that run is slower, its time unused).
for b in 1 2 4; do
  say "1B ga bf16 B=$b: $("$L" bench step --model-config "$SRC/configs/models/llama-1b.json" --batch-size $b --seq-len 2048 \
    --steps 4 --warmup 2 --method ga --device cuda --dtype bfloat16 --json --log-level warn 2>&1 | tail -1)"
done
say "1B ga bf16 B=4, operator calls: $("$L" bench step --model-config "$SRC/configs/models/llama-1b.json" --batch-size 4 \
  --seq-len 2048 --steps 2 --warmup 1 --method ga --device cuda --dtype bfloat16 --count-ops --json --log-level warn 2>&1 \
  | tail -1)"
