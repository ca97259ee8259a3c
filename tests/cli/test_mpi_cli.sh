#!/usr/bin/env bash
# `lethe` under mpirun on the CPU machine: N ranks give the same model as one process,
# SIGUSR1 checkpoints and exits with code 75 and --resume continues bit-identically, and a
# rank killed with SIGKILL never hangs the job (the last complete checkpoint resumes).
# usage: test_mpi_cli.sh LETHE_BINARY SOURCE_DIR MPIRUN
set -u
LETHE=$1; SRC=$2; MPIRUN=$3
# shellcheck source=mpi_common.sh
source "$SRC/tests/cli/mpi_common.sh"

make_tiny_model
FT=(finetune --model "$T/base" --data "$T/data/train.jsonl" --batch-size 8 --lr 2e-3 --log-every 1 --format hf)

# ---- 1 rank vs 2 and 4 ranks, ZeRO 0/1/2 ----
"$LETHE" "${FT[@]}" --steps 6 --out "$T/one" >"$T/log1" 2>&1 || { bad "1-rank finetune"; cat "$T/log1"; }
for np in 2 4; do
  for z in 0 2 3; do
    if "$MPIRUN" -np $np "$LETHE" "${FT[@]}" --steps 6 --zero-stage $z --out "$T/np${np}z$z" >"$T/log" 2>&1; then
      $CMP "$T/np${np}z$z" "$T/one" --rtol 1e-5 && ok || bad "$np ranks ZeRO $z differ from 1 rank"
    else
      bad "$np-rank finetune ZeRO $z failed"; tail -20 "$T/log"
    fi
  done
done
# A sharded output written by both ranks at once (shard j by rank j mod 2) holds exactly the
# weights the same 2-rank run writes into one file
"$MPIRUN" -np 2 "$LETHE" "${FT[@]}" --steps 6 --zero-stage 0 --max-shard-size 100KB --out "$T/np2_sharded" >"$T/log" 2>&1 \
  && [ "$(ls "$T/np2_sharded" | grep -c '^model-.*safetensors$')" -ge 4 ] && [ -f "$T/np2_sharded/COMPLETE" ] \
  && $CMP "$T/np2_sharded" "$T/np2z0" --exact >/dev/null && ok \
  || { bad "2 ranks writing a sharded output differ from the single-file output"; tail -5 "$T/log"; }
# ZeRO 3 from loading to saving without a whole copy: the layers read as shards, the output
# written from them one layer at a time in 100 KB shards, exactly the weights of the
# single-file ZeRO 3 output above
"$MPIRUN" -np 2 "$LETHE" "${FT[@]}" --steps 6 --zero-stage 3 --max-shard-size 100KB --out "$T/np2z3_sharded" >"$T/log" 2>&1 \
  && grep -q "each rank reads its shard of the decoder layers" "$T/log" \
  && [ "$(ls "$T/np2z3_sharded" | grep -c '^model-.*safetensors$')" -ge 4 ] \
  && $CMP "$T/np2z3_sharded" "$T/np2z3" --exact >/dev/null && ok \
  || { bad "ZeRO 3 loaded and saved as shards differs from its single-file output"; tail -5 "$T/log"; }
# ZeRO 3 overlap (each layer's all-gather started while the layer before it runs, in forward and
# backward, and its gradient reduce-scatter finished during the next layer's backward; off by
# default over MPI), also with gradient accumulation: the same weights exactly
"$MPIRUN" -np 2 "$LETHE" "${FT[@]}" --steps 6 --zero-stage 3 --zero3-overlap on --out "$T/np2z3_overlap" >"$T/log" 2>&1 \
  && $CMP "$T/np2z3_overlap" "$T/np2z3" --exact >/dev/null && ok \
  || { bad "ZeRO 3 with overlap differs from without"; tail -5 "$T/log"; }
for ov in off on; do
  "$MPIRUN" -np 2 "$LETHE" "${FT[@]}" --steps 3 --grad-accum 2 --zero-stage 3 --zero3-overlap $ov \
    --out "$T/np2z3_ga_$ov" >"$T/log" 2>&1 || { bad "ZeRO 3 with gradient accumulation, overlap $ov"; tail -5 "$T/log"; }
done
$CMP "$T/np2z3_ga_on" "$T/np2z3_ga_off" --exact >/dev/null && ok \
  || bad "ZeRO 3 with overlap and gradient accumulation differs from without"
# LoRA (seeded adapter init; dropout off, since masks are drawn per rank) under ZeRO 3
"$LETHE" "${FT[@]}" --steps 4 --lora-rank 4 --lora-dropout 0 --out "$T/lora1" >/dev/null 2>&1
"$MPIRUN" -np 2 "$LETHE" "${FT[@]}" --steps 4 --lora-rank 4 --lora-dropout 0 --zero-stage 3 --out "$T/lora2" >"$T/log" 2>&1 \
  && grep -q "frozen base weights included" "$T/log" \
  && $CMP "$T/lora2" "$T/lora1" --rtol 1e-5 && ok || { bad "LoRA under ZeRO 3 on 2 ranks differs"; tail "$T/log"; }
# ... its layers (frozen base weights included) stay shards to the end: the adapter gathered from
# them, merged onto the base by peft's merge_and_unload, is lethe's output written from the shards
# (100 KB files, adapters merged layer by layer), which equals the single-file output exactly
"$MPIRUN" -np 2 "$LETHE" "${FT[@]}" --steps 4 --lora-rank 4 --lora-dropout 0 --zero-stage 3 --max-shard-size 100KB \
  --adapter-out "$T/lora2_adapter" --out "$T/lora2s" >"$T/log" 2>&1 \
  && [ "$(ls "$T/lora2s" | grep -c '^model-.*safetensors$')" -ge 4 ] \
  && $CMP "$T/lora2s" "$T/lora2" --exact >/dev/null && ok \
  || { bad "LoRA at ZeRO 3 saved from shards differs from its single-file output"; tail -5 "$T/log"; }
PYTHONPATH="$SRC/tests/reference" "$PY" - "$T/base" "$T/lora2_adapter" "$T/lora2s" <<'PY' && ok || bad "peft's merge of the ZeRO 3 adapter differs from lethe's output"
import sys, peft, torch
from hf_load import load_causal_lm
base, adapter, lethe = sys.argv[1:4]
merged = peft.PeftModel.from_pretrained(load_causal_lm(base), adapter).merge_and_unload().state_dict()
ours = load_causal_lm(lethe).state_dict()
assert merged.keys() == ours.keys(), sorted(set(merged) ^ set(ours))
worst = max(((merged[k] - ours[k]).abs().max() / ours[k].abs().max().clamp_min(1e-12)).item() for k in ours)
before = load_causal_lm(base).state_dict()
changed = sum(not torch.equal(ours[k], before[k]) for k in ours if "proj" in k)
assert worst < 1e-6 and changed > 0, (worst, changed)
PY
"$MPIRUN" -np 2 "$LETHE" eval --model "$T/one" --forget "$T/data/forget.jsonl" --retain "$T/data/retain.jsonl" \
  --out "$T/ev2" --max-new-tokens 8 >/dev/null 2>&1 && "$LETHE" eval --model "$T/one" --forget "$T/data/forget.jsonl" \
  --retain "$T/data/retain.jsonl" --out "$T/ev1" --max-new-tokens 8 >/dev/null 2>&1
# Every number of the splits within 1e-6; the per-item membership scores within 1e-4 (Min-K%++
# subtracts two log-probabilities of similar size, so the rounding of differently padded batches
# shows).
$REPORTS "$T/ev1" "$T/ev2" && ok || bad "2-rank evaluation differs from 1 rank"
# A peft adapter evaluated at ZeRO 3 stays attached to its sharded layers (the merged model's
# function, gathered with the layer): 1 rank's merged evaluation within 1e-5 (Min-K%++ 1e-4).
EA=(eval --model "$T/base" --adapter "$T/lora2_adapter" --forget "$T/data/forget.jsonl" --retain "$T/data/retain.jsonl"
  --no-generate)
"$MPIRUN" -np 2 "$LETHE" "${EA[@]}" --zero-stage 3 --out "$T/eva3" >"$T/log" 2>&1 \
  && "$LETHE" "${EA[@]}" --out "$T/eva1" >/dev/null 2>&1 && ok || { bad "eval of an adapter at ZeRO 3"; tail -3 "$T/log"; }
$REPORTS "$T/eva1" "$T/eva3" --rtol 1e-5 && ok || bad "ZeRO 3 evaluation of an adapter differs"
# Quantized at ZeRO 3 with the adapter attached: each gathered layer's base weight becomes
# Q(W + s B A) - s B A, so the layer computes the merged, quantized weight the whole probe gets
# (the adapter merged before it quantizes): the same rounding, the same rows within 1e-5.
PA=(probe --model "$T/base" --adapter "$T/lora2_adapter" --forget "$T/data/forget.jsonl" --retain "$T/data/retain.jsonl"
  --no-generate --prompts none --no-logit-lens --quantize int8,nf4)
"$MPIRUN" -np 2 "$LETHE" "${PA[@]}" --zero-stage 3 --out "$T/pra3" >"$T/log" 2>&1 \
  && "$LETHE" "${PA[@]}" --out "$T/pra1" >/dev/null 2>&1 && ok || { bad "probe of an adapter at ZeRO 3"; tail -3 "$T/log"; }
$REPORTS "$T/pra1" "$T/pra3" --keys probes --rtol 1e-5 && ok \
  || bad "ZeRO 3 quantization of an adapted model differs from the merged one's"

# ---- preemption: SIGUSR1 -> checkpoint, exit 75; --resume is bit-identical ----
LONG=("${FT[@]}" --steps 40 --zero-stage 1)
"$MPIRUN" -np 2 "$LETHE" "${LONG[@]}" --out "$T/straight" >"$T/log" 2>&1 || bad "uninterrupted 2-rank run"
"$MPIRUN" -np 2 "$LETHE" "${LONG[@]}" --out "$T/pre" >"$T/logp" 2>&1 &
mp=$!
for _ in $(seq 600); do grep -q "step 5/40" "$T/logp" 2>/dev/null && break; sleep 0.1; done
kill -USR1 $mp
wait $mp; rc=$?
[ $rc -eq 75 ] && ok || { bad "preempted run exited $rc, want 75"; tail -5 "$T/logp"; }
grep -q "preempted at step" "$T/logp" && [ ! -e "$T/pre" ] && ok || bad "no preemption message, or output written"
"$MPIRUN" -np 2 "$LETHE" "${LONG[@]}" --out "$T/pre" --resume >"$T/logr" 2>&1 || { bad "resume failed"; tail "$T/logr"; }
grep -q "resumed from" "$T/logr" && ok || bad "did not resume"
$CMP "$T/pre" "$T/straight" --exact && ok || bad "resumed run is not bit-identical"
# and resume onto another rank count (4 ranks, ZeRO 2) from the 2-rank checkpoint
"$MPIRUN" -np 2 "$LETHE" "${LONG[@]}" --out "$T/pre4" --checkpoint-every 10 >/dev/null 2>&1
rm -rf "$T/pre4" "$T/pre4.ckpt/step-00000030" "$T/pre4.ckpt/step-00000040"
"$MPIRUN" -np 4 "$LETHE" "${FT[@]}" --steps 40 --zero-stage 2 --out "$T/pre4" --resume >"$T/log4" 2>&1 \
  && grep -q "written by 2 rank" "$T/log4" && $CMP "$T/pre4" "$T/straight" --rtol 1e-5 && ok \
  || { bad "resume on 4 ranks from a 2-rank checkpoint"; tail "$T/log4"; }

# ---- a rank killed with SIGKILL: the job ends non-zero within the deadline ----
"$MPIRUN" -np 2 "$LETHE" "${FT[@]}" --steps 400 --checkpoint-every 3 --timeout 10 --out "$T/killed" >"$T/logk" 2>&1 &
mp=$!
for _ in $(seq 600); do grep -q "checkpoint for step 6" "$T/logk" 2>/dev/null && break; sleep 0.1; done
victim=$(pgrep -f "lethe finetune.*$T/killed" | tail -1)
start=$(date +%s)
kill -9 "$victim"
wait $mp; rc=$?
took=$(( $(date +%s) - start ))
[ $rc -ne 0 ] && [ $took -le 40 ] && ok || bad "after SIGKILL: exit $rc after ${took}s"
pgrep -f "lethe finetune.*$T/killed" >/dev/null && bad "ranks still running after SIGKILL" || ok
"$MPIRUN" -np 2 "$LETHE" "${FT[@]}" --steps 8 --checkpoint-every 3 --out "$T/killed" --resume >"$T/logk2" 2>&1 \
  && grep -q "resumed from" "$T/logk2" && ok || { bad "last checkpoint did not resume"; tail "$T/logk2"; }

# ---- SIGTERM to the launcher (scripts/lethe-mpirun): every rank checkpoints, the job exits 75 ----
MPIRUN="$MPIRUN" "$SRC/scripts/lethe-mpirun" -np 2 "$LETHE" "${FT[@]}" --steps 400 --checkpoint-every 100 --out "$T/term" >"$T/logt" 2>&1 &
mp=$!
for _ in $(seq 600); do grep -q "step 5/400" "$T/logt" 2>/dev/null && break; sleep 0.1; done
kill -TERM $mp
wait $mp; rc=$?
[ $rc -eq 75 ] && [ "$(grep -c 'preempted at step' "$T/logt")" -eq 2 ] && ok \
  || { bad "SIGTERM through lethe-mpirun: exit $rc, want 75 with both ranks preempted"; tail -3 "$T/logt"; }

# ---- a rank that never gets through MPI_Init: the start-up deadline ends the job ----
cat >"$T/stall.sh" <<'SH'
#!/usr/bin/env bash
[ "${OMPI_COMM_WORLD_RANK:-0}" = 1 ] && kill -STOP $$  # rank 1 stops before it starts lethe
exec "$@"
SH
chmod +x "$T/stall.sh"
start=$(date +%s)
timeout 120 "$MPIRUN" -np 2 "$T/stall.sh" "$LETHE" "${FT[@]}" --steps 2 --first-step-timeout 5 --out "$T/stalled" \
  >"$T/logs" 2>&1; rc=$?
took=$(( $(date +%s) - start ))
[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $took -le 30 ] && grep -q "rank 0 did not finish start-up within 5 s (waiting in MPI_Init" "$T/logs" \
  && ok || { bad "stalled start-up: exit $rc after ${took}s"; tail -3 "$T/logs"; }
sleep 1
pgrep -f "$T/stall.sh" >/dev/null && bad "a stalled rank was left running" || ok

echo "mpi cli: $pass passed, $fail failed"
[ $fail -eq 0 ]
